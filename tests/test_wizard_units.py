"""Wizard pieces without a server: the key-install script (run by a real sh), hashed
known_hosts entries (checked by the real ssh-keygen), answers files, unattended refusals,
the sshd advice."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from checks.hostkeys import HostKey
from checks.options import UsageError, parse_host
from wizard import remote, security
from wizard.main import answers_argv, default_name, parse_args
from wizard.prompts import Asker

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake mkdoctor test"


def run_install(home: Path, sshd_config: Path) -> str:
    """The remote install script, run by /bin/sh as the remote login shell would."""
    done = subprocess.run(["/bin/sh", "-c", remote.install_command(KEY, str(sshd_config))],
                          capture_output=True, text=True, env={"HOME": str(home), "PATH": os.environ["PATH"]},
                          timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_install_script_default_file_modes_and_idempotence(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = run_install(home, tmp_path / "no_such_sshd_config")
    ak = home / ".ssh" / "authorized_keys"
    assert out == f"MKD-KEY added {ak}"
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE(ak.stat().st_mode) == 0o600
    assert ak.read_text() == KEY + "\n"
    assert run_install(home, tmp_path / "none") == f"MKD-KEY present {ak}"
    assert ak.read_text() == KEY + "\n"


def test_install_script_respects_authorized_keys_file_and_keeps_lines(tmp_path):
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    target = home / "keys" / "mine"
    target.write_text("ssh-rsa AAAAB3existing other@host")  # no final newline
    target.chmod(0o640)
    dropins = tmp_path / "sshd_config.d"
    dropins.mkdir()
    (dropins / "10-keys.conf").write_text("AuthorizedKeysFile %h/keys/mine .ssh/authorized_keys\n")
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"# main file\nInclude {dropins}/*.conf\nAuthorizedKeysFile .ssh/other\n"
                   "Match User nobody\n  AuthorizedKeysFile /dev/null\n")
    out = run_install(home, cfg)
    assert out == f"MKD-KEY added {target}"
    assert target.read_text() == "ssh-rsa AAAAB3existing other@host\n" + KEY + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # an existing file keeps its mode
    assert not (home / ".ssh").exists()


def test_hashed_known_hosts_entry_is_found_by_ssh_keygen(tmp_path):
    blob = KEY.split()[1]
    state = remote.HostKeyState("unknown", "[192.0.2.9]:2222", HostKey("ssh-ed25519", blob),
                                known_files=[str(tmp_path / "kh")], hashed=True)
    path = remote.record_host_key(state, lambda p: None)
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
    from checks.model import Result, Status

    def R(status):  # as MK310/MK311 report a setting at fault
        return Result(Status(status), "s", ["password login is on: PasswordAuthentication yes"],
                      "", {"permitrootlogin": "yes"})

    assert security.advice({"MK310": R("pass"), "MK311": R("skip")}) is None
    adv = security.advice({"MK310": R("warn"), "MK311": R("fail")})
    assert adv.lines == ["PermitRootLogin no", "PasswordAuthentication no",
                         "KbdInteractiveAuthentication no"]
    assert "sudo sshd -t && sudo systemctl reload ssh" in adv.text
    assert security.DROPIN in adv.text
