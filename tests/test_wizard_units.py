"""Wizard pieces without a server: the key-install script (run by a real sh), hashed
known_hosts entries (checked by the real ssh-keygen), answers files, unattended refusals,
the sshd advice, the Host aliases of an ssh config and its Includes (real files)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from mkdoctor.openssh.known_hosts import HostKey
from mkdoctor.options import UsageError, parse_host
from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.wizard import remote, security, writers
from mkdoctor.wizard.main import answers_argv, default_name, parse_args
from mkdoctor.wizard.prompts import Asker

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake mkdoctor test"


def run_install(home: Path, authorized_keys: Path) -> str:
    """The remote install script, run by /bin/sh as the remote login shell would."""
    done = subprocess.run(["/bin/sh", "-c", remote.install_command(KEY, str(authorized_keys))],
                          capture_output=True, text=True, env={"HOME": str(home), "PATH": os.environ["PATH"]},
                          timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_install_script_file_modes_idempotence_and_existing_lines(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    ak = home / ".ssh" / "authorized_keys"
    assert run_install(home, ak) == f"MKD-KEY added {ak}"
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE(ak.stat().st_mode) == 0o600
    assert ak.read_text() == KEY + "\n"
    assert run_install(home, ak) == f"MKD-KEY present {ak}"
    assert ak.read_text() == KEY + "\n"
    mine = home / "keys dir" / "mine"  # a path with a space
    mine.parent.mkdir()
    mine.write_text("ssh-rsa AAAAB3existing other@host")  # no final newline
    mine.chmod(0o640)
    assert run_install(home, mine) == f"MKD-KEY added {mine}"
    assert mine.read_text() == "ssh-rsa AAAAB3existing other@host\n" + KEY + "\n"
    assert stat.S_IMODE(mine.stat().st_mode) == 0o640  # an existing file keeps its mode


def akf_for(tmp_path: Path, main_text: str, user: str = "alice", files: dict | None = None):
    """authorized_keys_target on the real evaluator's answer for ``main_text``."""
    from mkdoctor.openssh.sshd_config import Connection, LocalLoader, evaluate

    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    main = tmp_path / "sshd_config"
    main.write_text(main_text)
    cfg = evaluate(str(main), LocalLoader(), Connection(user, "192.0.2.9", "192.0.2.9",
                                                        "192.0.2.1", 22, ("alice",)))
    return remote.authorized_keys_target(cfg, "/home/alice", user, "1000", str(main))


def test_authorized_keys_file_is_what_sshd_reads_not_a_guess(tmp_path):
    """The cases an awk reading of sshd_config got wrong: ``=`` syntax, quotes, %U, %%,
    Match blocks for our connection (Match All ends one), the first value winning."""
    assert akf_for(tmp_path, "AuthorizedKeysFile=/etc/ssh/keys/%U\n") == ("/etc/ssh/keys/1000", "")
    assert akf_for(tmp_path, 'AuthorizedKeysFile "keys/%u" .ssh/authorized_keys\n') == \
        ("/home/alice/keys/alice", "")
    assert akf_for(tmp_path, "AuthorizedKeysFile /srv/100%%/%u\n") == ("/srv/100%/alice", "")
    # a Match block for this user sets it (first value wins: the global line comes after)
    text = "Match User alice\n  AuthorizedKeysFile /k/%u\nMatch All\nAuthorizedKeysFile .ssh/other\n"
    assert akf_for(tmp_path, text) == ("/k/alice", "")
    assert akf_for(tmp_path, text, user="bob") == ("/home/alice/.ssh/other", "")
    # an Include with the setting
    inc = tmp_path / "10-keys.conf"
    assert akf_for(tmp_path, f"Include {inc}\nAuthorizedKeysFile .ssh/other\n",
                   files={"10-keys.conf": "AuthorizedKeysFile %h/keys/mine\n"}) == \
        ("/home/alice/keys/mine", "")
    assert akf_for(tmp_path, "AuthorizedKeysFile none\n") == ("/home/alice/.ssh/authorized_keys", "")
    assert akf_for(tmp_path, "# nothing\n") == ("/home/alice/.ssh/authorized_keys", "")


def test_an_unreadable_configuration_is_said_and_the_default_used(tmp_path):
    from mkdoctor.openssh.sshd_config import Connection, FileUnavailable, Snapshot, evaluate

    conn = Connection("alice", "192.0.2.9", "192.0.2.9", "192.0.2.1", 22)
    snap = Snapshot(files={"/etc/ssh/sshd_config": FileUnavailable("Permission denied")})
    cfg = evaluate("/etc/ssh/sshd_config", snap, conn)
    path, src = remote.authorized_keys_target(cfg, "/home/alice", "alice", "1000", "/etc/ssh/sshd_config")
    assert path == "/home/alice/.ssh/authorized_keys"
    note = remote.source_note(src, "/etc/ssh/sshd_config", path)
    assert note.startswith("/etc/ssh/sshd_config cannot be read by this user on the server (mode 0600")
    snap = Snapshot(files={"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n",
                           "/etc/ssh/sshd_config.d/50-x.conf": FileUnavailable("Permission denied")},
                    globs={"/etc/ssh/sshd_config.d/*.conf": ["/etc/ssh/sshd_config.d/50-x.conf"]})
    cfg = evaluate("/etc/ssh/sshd_config", snap, conn)
    path, src = remote.authorized_keys_target(cfg, "/home/alice", "alice", "1000", "/etc/ssh/sshd_config")
    assert path == "/home/alice/.ssh/authorized_keys"
    assert "/etc/ssh/sshd_config.d/50-x.conf (an Include of /etc/ssh/sshd_config) cannot be read" in \
        remote.source_note(src, "/etc/ssh/sshd_config", path)
    path, src = remote.authorized_keys_target(None, "/home/alice", "alice", "1000", "/etc/x")
    assert "does not exist on the server" in remote.source_note(src, "/etc/x", path)


def test_hashed_known_hosts_entry_is_found_by_ssh_keygen(tmp_path):
    blob = KEY.split()[1]
    state = remote.HostKeyState("unknown", "[192.0.2.9]:2222", HostKey("ssh-ed25519", blob),
                                known_files=[str(tmp_path / "kh")], hashed=True)
    path, backup = remote.record_host_key(state, lambda p: None)
    assert backup is None  # a new file: nothing to back up
    line = path.read_text()
    assert line.startswith("|1|") and "192.0.2.9" not in line
    found = subprocess.run(["ssh-keygen", "-F", "[192.0.2.9]:2222", "-f", str(path)],
                           capture_output=True, text=True)
    assert found.returncode == 0 and blob in found.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_record_host_key_appends_after_a_line_without_newline(tmp_path):
    kh = tmp_path / "kh"
    kh.write_text("example.org ssh-ed25519 AAAA")
    state = remote.HostKeyState("unknown", "h", HostKey("ssh-ed25519", "BBBB"), known_files=[str(kh)])
    remote.record_host_key(state, lambda p: None)
    assert kh.read_text() == "example.org ssh-ed25519 AAAA\nh ssh-ed25519 BBBB\n"


def test_record_host_key_is_atomic_backed_up_and_undone(tmp_path):
    """An existing known_hosts: its bytes kept exactly, then the new line; a timestamped
    backup with the old bytes and mode; the mode kept; replaced by a rename (a new
    inode), written through a symlink; a rollback restores it and removes the backup."""
    real = tmp_path / "real_known_hosts"
    old = b"# mine\r\n|1|abc=|def= ssh-ed25519 AAAA\r\n\xff odd bytes\n"
    real.write_bytes(old)
    real.chmod(0o644)
    kh = tmp_path / "kh"
    kh.symlink_to(real)
    inode = real.stat().st_ino
    state = remote.HostKeyState("unknown", "[192.0.2.9]:2222", HostKey("ssh-ed25519", "BBBB"),
                                known_files=[str(kh)], hashed=True)
    journal = writers.Journal()
    path, backup = remote.record_host_key(state, journal.before_change)
    assert path == kh and kh.is_symlink()
    data = real.read_bytes()
    assert data.startswith(old) and data.count(b"\n") == old.count(b"\n") + 1
    assert data[len(old):].startswith(b"|1|") and data.endswith(b" ssh-ed25519 BBBB\n")
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    assert real.stat().st_ino != inode  # a new file renamed over, not appended in place
    assert backup is not None and backup.parent == tmp_path
    assert backup.name.startswith("real_known_hosts.mkdoctor-backup-")
    assert backup.read_bytes() == old and stat.S_IMODE(backup.stat().st_mode) == 0o644
    found = subprocess.run(["ssh-keygen", "-F", "[192.0.2.9]:2222", "-f", str(real)],
                           capture_output=True, text=True)
    assert found.returncode == 0 and "BBBB" in found.stdout
    journal.rollback()  # Ctrl-C before step 10: every file as it was
    assert real.read_bytes() == old and not backup.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kh", "real_known_hosts"]


def test_unattended_asker_refuses_without_a_safe_default():
    ask = Asker(interactive=False)
    with pytest.raises(UsageError, match="--host"):
        ask.select("Which remote host?", [("a", "a")], None, "--host", safe=False)
    with pytest.raises(UsageError, match="--kernel"):
        ask.text("Path of the kernel:", None, "--kernel")
    assert ask.select("Mode?", [("tunnel", "t"), ("direct", "d")], "tunnel", "--mode") == "tunnel"
    assert ask.confirm("Write?", True, "--yes") is True


def test_answers_file_maps_to_flags(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('host = "alice@hpc"\nlink_ports = [51000, 51001]\ninstall_key = true\n'
                 'new-key = false\nmode = "tunnel"\n')
    assert answers_argv(str(f)) == ["--host", "alice@hpc", "--link-ports", "51000,51001",
                                    "--install-key", "--mode", "tunnel"]
    args = parse_args(["--answers", str(f), "--host", "bob@other"])
    assert args.host == ["bob@other"] and args.install_key and args.link_ports == "51000,51001"
    f.write_text("install_key = 1\n")
    with pytest.raises(UsageError, match="true or false"):
        answers_argv(str(f))


@pytest.mark.parametrize("host, name", [("hpc.example.org", "hpc.example.org"),
                                        ("alice@10.0.0.5:2222", "10.0.0.5"),
                                        ("mk-lab", "lab"), ("[::1]:22", "1")])
def test_default_name(host, name):
    assert default_name(parse_host(host)) == name


def test_sshd_advice_and_commands():
    from mkdoctor.model import Result, Status

    def R(status):  # as MK310/MK311 report a setting at fault
        return Result(Status(status), "s", ["password login is on: PasswordAuthentication yes"],
                      "", {"permitrootlogin": "yes"})

    assert security.advice({"MK310": R("pass"), "MK311": R("skip")}) is None
    adv = security.advice({"MK310": R("warn"), "MK311": R("fail")})
    assert adv.lines == ["PermitRootLogin no", "PasswordAuthentication no",
                         "KbdInteractiveAuthentication no"]
    assert "sudo sshd -t && sudo systemctl reload ssh" in adv.text
    assert security.DROPIN in adv.text


def test_sshd_advice_never_locks_out_a_root_login():
    """The setup logs in as root: PermitRootLogin no would lock it out, so the advice is
    prohibit-password (only where root passwords are allowed), and it says why."""
    from mkdoctor.model import Result, Status

    def r310(value, status="warn"):
        return Result(Status(status), "s", [], "", {"permitrootlogin": value})

    pw = Result(Status("warn"), "s", ["password login is on: PasswordAuthentication yes"], "", {})
    adv = security.advice({"MK310": r310("yes", "fail"), "MK311": pw}, "root")
    assert adv.lines == ["PermitRootLogin prohibit-password", "PasswordAuthentication no",
                         "KbdInteractiveAuthentication no"]
    assert "PermitRootLogin no" not in adv.content
    assert "this setup logs in as root" in adv.text and "lock" in adv.text
    assert adv.expected.startswith("permitrootlogin prohibit-password\n")
    # already key-only for root (sshd -T says without-password): nothing asked of it
    for value in ("prohibit-password", "without-password", "forced-commands-only"):
        assert security.advice({"MK310": r310(value)}, "root") is None
        assert f"stays {value}" in security.kept_for_root({"MK310": r310(value)}, "root")
    assert security.advice({"MK310": r310("without-password"), "MK311": pw}, "root").lines == [
        "PasswordAuthentication no", "KbdInteractiveAuthentication no"]
    # any other user: no, as before, and no note
    adv = security.advice({"MK310": r310("prohibit-password")}, "alice")
    assert adv.lines == ["PermitRootLogin no"] and adv.notes == []
    assert security.kept_for_root({"MK310": r310("prohibit-password")}, "alice") is None


def test_apply_script_reads_without_password_as_prohibit_password(tmp_path):
    """sshd -T prints prohibit-password as without-password: the script's check that the
    drop-in took effect must not call that "no effect". Run with a stand-in sshd."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sshd"
    fake.write_text("#!/bin/sh\ncase \"$1\" in -T) echo 'permitrootlogin without-password';; esac\n"
                    "exit 0\n")
    fake.chmod(0o755)
    (tmp_path / "d").mkdir()
    adv = security.Advice(["PermitRootLogin prohibit-password"])
    script = security.APPLY_SCRIPT.replace("PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH",
                                           f"PATH={bindir}:$PATH")
    script = script.replace(security.RELOAD, "true")
    done = subprocess.run(["/bin/sh", "-c", script, "sh", str(tmp_path / "d" / "50.conf"),
                           adv.content, adv.expected, str(tmp_path / "cfg")],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and "MKD-SSHD applied" in done.stdout, done.stdout + done.stderr
    # and a value that really differs is still caught
    done = subprocess.run(["/bin/sh", "-c", script, "sh", str(tmp_path / "d" / "50.conf"),
                           "x", "permitrootlogin no\n", str(tmp_path / "cfg")],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 5 and "permitrootlogin is still prohibit-password" in done.stdout


def test_host_aliases_follow_include_like_ssh(tmp_path):
    """Real files: relative Includes from ~/.ssh, ~, absolute paths, globs read in
    lexical order, nested Includes, each alias with its file; a loop stops at ssh's
    depth limit; missing files are passed over."""
    home = tmp_path / "home"
    dot = home / ".ssh"
    (dot / "config.d").mkdir(parents=True)
    (dot / "config.d" / "20-work").write_text("Host work-b\n  HostName b\n")
    (dot / "config.d" / "10-lab").write_text("Include nested\nHost lab1 lab2 *.lab\n")
    (dot / "nested").write_text("Host deep\n")
    (home / "extra.conf").write_text("host = tilde\n")
    absolute = tmp_path / "abs.conf"
    absolute.write_text('Include loop.conf\nHost "quoted"\n')
    (dot / "loop.conf").write_text("Include loop.conf\nHost looped\n")  # a loop
    main = dot / "config"
    (dot / "only-for-first").write_text("Host never\n")
    main.write_text(f"Include config.d/* ~/extra.conf\nHost first\n  Include only-for-first\n"
                    f'Host * !x\nInclude "{absolute}" missing.conf # a comment\nHost last !neg\n')
    got = sshconfig.config_aliases(main, home)
    # (an Include inside "Host first" is read by ssh for that host only: "never" would
    # never apply, so it is not offered)
    assert [a for a, _ in got] == ["deep", "lab1", "lab2", "work-b", "tilde", "first",
                                   "looped", "quoted", "last"]
    assert dict(got)["deep"] == dot / "nested" and dict(got)["tilde"] == home / "extra.conf"
    assert dict(got)["looped"] == dot / "loop.conf"
