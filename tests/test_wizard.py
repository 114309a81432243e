"""`mkdoctor setup` unattended, against real sshd sandboxes and the stand-in kernel.

Tunnel and direct mode run in two network namespaces joined by a veth pair: the
"laptop" runs mkdoctor (and later the front end's launch command), the "server" runs the
sandbox sshd and the stand-in kernel. Nothing real is touched: HOME is a temp dir,
MKDOCTOR_CONFIG_DIR too, and the managed block goes into a COPY of the sandbox's client
ssh_config (``--ssh-config``). ssh takes ``~`` from the passwd entry, not $HOME, so every
config used here names its known_hosts file explicitly.
"""

from __future__ import annotations

import json
import os
import socket
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.netns import link
from tests.helpers import ROOT as ROOT_DIR, by_id, json_report, mkdoctor_env, run_mkdoctor

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin_kernel.py"
LAPTOP, SERVER = "10.93.0.1", "10.93.0.2"
EXTRA = b"# the user's own lines\r\nHost build\r\n  HostName build.example.org\r\n# last line, no newline"

pytestmark = pytest.mark.integration


def install_standin(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STANDIN, path)
    path.chmod(0o755)
    d = path.parent
    while d != root and d != d.parent:
        d.chmod(0o755)
        d = d.parent
    return path


def snapshot(*dirs: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for d in dirs:
        for f in sorted(Path(d).rglob("*")):
            if f.is_file() and not f.is_symlink():
                st = f.stat()
                out[str(f)] = (f.read_bytes(), st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture
def pair(netns_factory, sandbox_factory, tmp_path):
    """(laptop netns, sandbox in the server netns, kernel path, ssh config copy, env)."""
    laptop, server = netns_factory("mklap"), netns_factory("mksrv")
    link(laptop, server, f"{LAPTOP}/24", f"{SERVER}/24")
    box = sandbox_factory(netns=server.name, address=SERVER)
    kernel = install_standin(box.home, "Wolfram Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes() + EXTRA)
    cfg.chmod(0o600)
    home = tmp_path / "home"
    home.mkdir()
    return laptop, box, kernel, cfg, {"HOME": str(home)}


def setup(laptop, cfg, confdir, env, *args):
    return run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", *args,
                        netns=laptop.name, config_dir=confdir, env=env, timeout=180)


def frontend_connects(laptop, command: str, mode: str, ports, link_host: str) -> str:
    """Run the written launch command as the front end does (placeholders substituted,
    a POSIX shell) while listening on both link ports; return "ok" when the kernel
    connected to both."""
    from mkdoctor.launch import direct_linkname, substitute, tunnel_linkname

    if mode == "tunnel":
        filled = substitute(command, tunnel_linkname(ports), "127.0.0.1")
        listen = "127.0.0.1"
    else:
        filled = substitute(command, direct_linkname(ports, link_host), link_host)
        listen = link_host
    code = f"""
import socket, subprocess, sys, time
socks = []
for p in {list(ports)!r}:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(({listen!r}, p)); s.listen(1); s.settimeout(30); socks.append(s)
proc = subprocess.Popen(["sh", "-c", {filled!r}], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    conns = [s.accept()[0] for s in socks]
    print("ok")
    for c in conns: c.close()
finally:
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
"""
    done = subprocess.run(["ip", "netns", "exec", laptop.name, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=90)
    return done.stdout.strip() or f"exit {done.returncode}: {done.stderr[-800:]}"


def test_tunnel_mode_end_to_end_and_idempotent(pair, tmp_path):
    """The first run takes every answer from an --answers file (no --yes: the file makes
    it unattended); the second gives the same answers as flags and changes nothing."""
    laptop, box, kernel, cfg, env = pair
    confdir = tmp_path / "conf"
    answers = tmp_path / "answers.toml"
    answers.write_text(f'host = "sandbox"\nname = "lab"\nmode = "tunnel"\nkernel = "{kernel}"\n'
                       f'ssh-config = "{cfg}"\noffline = true\n')
    done = run_mkdoctor("setup", "--answers", str(answers), netns=laptop.name, config_dir=confdir,
                        env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Connection mode? ->" not in done.stdout  # the file's mode, not the recommendation
    # the files as written were checked again, with the written launch command
    assert "checked as written: MK501, MK304 passed; MK404 proven in step 9 (the same ssh -G)" in done.stdout, done.stdout
    # the ssh config: our block first, the user's bytes after it unchanged
    text = cfg.read_bytes()
    assert text.startswith(b"# >>> mkdoctor mk-lab >>>")
    assert text.endswith(box.client_config.read_bytes() + EXTRA)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert len(list(tmp_path.glob("ssh_config.mkdoctor-backup-*"))) == 1

    show = run_mkdoctor("config", "show", "--profile", "lab", "--format", "json", config_dir=confdir)
    data = json.loads(show.stdout)
    prof = data["profile"]
    assert prof["mode"] == "tunnel" and prof["host"] == "mk-lab" and prof["kernel"] == str(kernel)
    launch = data["frontend"]["launch_command"]
    assert "-R" in launch and "mk-lab" in launch and str(cfg) in launch
    assert str(cfg) in data["files"]

    # MK404 runs the written launch command; MK501 compares every written file
    report, rc = json_report("--profile", "lab", "--only", "MK304,MK404,MK501", "--offline",
                             netns=laptop.name, config_dir=confdir, env=env)
    checks = by_id(report)
    assert [checks[i]["status"] for i in ("MK304", "MK404", "MK501")] == ["pass"] * 3, report
    # and independently: the written command, run as the front end runs it
    text_file = Path([f for f in data["files"] if f.endswith("-kernel-configuration.txt")][0])
    lines = text_file.read_text().splitlines()
    written = lines[lines.index("Launch command:") + 1]
    assert written == launch
    assert frontend_connects(laptop, written, "tunnel", prof["link_ports"], "") == "ok"

    # a second identical run changes no byte and makes no backup
    before = snapshot(tmp_path, confdir)
    again = setup(laptop, cfg, confdir, env, "--host", "sandbox", "--name", "lab", "--mode", "tunnel",
                  "--kernel", str(kernel))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing written" in again.stdout
    assert snapshot(tmp_path, confdir) == before


def test_setup_of_a_host_reached_only_through_a_proxycommand(pair, tmp_path):
    """The host's name resolves nowhere; only the user's ProxyCommand reaches it (a
    bastion, IAP or cloudflared in real life; nc here). ssh-keyscan cannot follow a
    ProxyCommand: the host key is read through ssh itself (into a private file), shown,
    confirmed, recorded; then setup goes through and the written alias works."""
    laptop, box, kernel, _, env = pair
    confdir = tmp_path / "conf"
    kh = tmp_path / "kh"
    cfg = tmp_path / "pc_config"
    cfg.write_text(f"Host ws\n    HostName ws.internal.example\n    User {box.user}\n"
                   f"    Port {box.port}\n    ProxyCommand nc {SERVER} %p\n"
                   f"    IdentityFile {box.client_key}\n    UserKnownHostsFile {kh}\n"
                   "    GlobalKnownHostsFile /dev/null\n")
    cfg.chmod(0o600)
    args = ["--host", "ws", "--name", "pc", "--mode", "tunnel", "--kernel", str(kernel)]
    fp = subprocess.run(["ssh-keygen", "-lf", str(box.host_key_pub)], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    done = setup(laptop, cfg, confdir, env, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--accept-host-key {fp}" in done.stderr, done.stdout + done.stderr
    assert not kh.exists() and not (confdir / "profiles").exists()

    done = setup(laptop, cfg, confdir, env, *args, "--accept-host-key", fp)
    assert done.returncode == 0, done.stdout + done.stderr
    found = subprocess.run(["ssh-keygen", "-F", f"[ws.internal.example]:{box.port}", "-f", str(kh)],
                           capture_output=True, text=True)
    assert found.returncode == 0, kh.read_text()
    assert "ProxyCommand nc" in cfg.read_text().split("<<< mkdoctor mk-pc")[0]
    report, _ = json_report("--profile", "pc", "--only", "MK304,MK404,MK501", "--offline",
                            netns=laptop.name, config_dir=confdir, env=env)
    assert {c["id"]: c["status"] for c in report["checks"]} == {
        "MK304": "pass", "MK404": "pass", "MK501": "pass"}, report


def test_direct_mode_unknown_host_key_and_traps(pair, tmp_path):
    laptop, box, kernel, _, env = pair
    confdir = tmp_path / "conf"
    kh = tmp_path / "kh"
    cfg = tmp_path / "plain_config"
    cfg.write_text(f"Host *\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n"
                   "    HashKnownHosts yes\n")
    dest = f"{box.user}@{SERVER}:{box.port}"
    args = ["--host", dest, "--identity", str(box.client_key), "--name", "direct",
            "--mode", "direct", "--link-host", LAPTOP, "--kernel", str(kernel)]

    done = setup(laptop, cfg, confdir, env, *args)
    fp = subprocess.run(["ssh-keygen", "-lf", str(box.host_key_pub)], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--accept-host-key {fp}" in done.stderr
    assert not kh.exists() and not (confdir / "profiles").exists()

    wrong = "SHA256:" + "A" * 43
    done = setup(laptop, cfg, confdir, env, *args, "--accept-host-key", wrong)
    assert done.returncode == 2 and "does not match" in done.stderr and not kh.exists()

    done = setup(laptop, cfg, confdir, env, *args, "--accept-host-key", fp)
    assert done.returncode == 0, done.stdout + done.stderr
    entry = kh.read_text()
    assert entry.startswith("|1|") and entry.count("\n") == 1  # hashed (HashKnownHosts yes)
    found = subprocess.run(["ssh-keygen", "-F", f"[{SERVER}]:{box.port}", "-f", str(kh)],
                           capture_output=True, text=True)
    assert found.returncode == 0

    report, _ = json_report("--profile", "direct", "--only", "MK304,MK404,MK501", "--offline",
                            netns=laptop.name, config_dir=confdir, env=env)
    assert {c["id"]: c["status"] for c in report["checks"]} == {
        "MK304": "pass", "MK404": "pass", "MK501": "pass"}, report
    show = json.loads(run_mkdoctor("config", "show", "--format", "json", config_dir=confdir).stdout)
    assert "`linkname`" in show["frontend"]["launch_command"]
    assert frontend_connects(laptop, show["frontend"]["launch_command"], "direct",
                             show["profile"]["link_ports"], LAPTOP) == "ok"

    # the known traps, injected by hand into the written files: MK501 fails and names them
    text_file = Path([f for f in show["files"] if f.endswith("-kernel-configuration.txt")][0])
    original = text_file.read_text()
    text_file.write_text(original.replace("-LinkName `linkname`", "-LinkName \"`linkname`\""))
    block = cfg.read_text()
    cfg.write_text(block.replace(f"Port {box.port}", f"Port {box.port + 1}", 1))
    report, done = json_report("--profile", "direct", "--only", "MK501", config_dir=confdir, env=env)
    mk501 = by_id(report)["MK501"]
    assert mk501["status"] == "fail" and done.returncode == 1
    assert any("quotes around `linkname`" in d for d in mk501["details"])
    assert any(f"has port '{box.port + 1}'" in d for d in mk501["details"])
    assert "mkdoctor setup --name direct" in mk501["fix"]

    # setup again repairs both (with backups), and MK501 passes
    done = setup(laptop, cfg, confdir, env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert text_file.read_text() == original
    assert list(tmp_path.glob("plain_config.mkdoctor-backup-*"))
    report, _ = json_report("--profile", "direct", "--only", "MK501", config_dir=confdir, env=env)
    assert by_id(report)["MK501"]["status"] == "pass"

    # a second identical run changes no byte and makes no backup
    before = snapshot(tmp_path, confdir)
    again = setup(laptop, cfg, confdir, env, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing written" in again.stdout
    assert snapshot(tmp_path, confdir) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_written_files_that_do_not_work_as_written_fail_the_setup(sandbox, tmp_path):
    """Step 9 proves the strings through a staged copy (-F); the written launch command
    has no -F without --ssh-config, so ssh reads ~/.ssh/config of the password
    database's home. Here HOME is another directory (as with sudo -E): the files are
    written where HOME says and ssh never sees them. The re-check of the files as written
    catches it: exit 1, said clearly with the cause, the files stay written and their
    backups are named. Setup runs in a private mount namespace where /etc/passwd is a copy
    naming a temp directory as this user's home (the real one is never read or written)."""
    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    ssh_home = tmp_path / "ssh-home"  # what ssh sees as its home
    (ssh_home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copyfile(sandbox.known_hosts, ssh_home / ".ssh" / "known_hosts")
    home = tmp_path / "home"  # $HOME: where setup writes
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    user_cfg = home / ".ssh" / "config"
    mine = b"# my own settings\nHost *\n    ServerAliveCountMax 3\n"
    user_cfg.write_bytes(mine)
    user_cfg.chmod(0o600)
    confdir = tmp_path / "conf"
    args = ["setup", "--yes", "--offline", "--host", f"{sandbox.user}@127.0.0.1:{sandbox.port}",
            "--identity", str(sandbox.client_key), "--name", "asw", "--mode", "direct",
            "--link-host", "127.0.0.1", "--kernel", str(kernel)]
    passwd = tmp_path / "passwd"  # root's home in the password database: ssh_home
    passwd.write_text("".join(
        ":".join(f[:5] + [str(ssh_home)] + f[6:]) if f[2] == str(os.getuid()) else ":".join(f)
        for f in (line.split(":") for line in Path("/etc/passwd").read_text().splitlines(True))))
    done = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/passwd && shift && exec "$@"',
                           "sh", str(passwd), sys.executable, "-m", "mkdoctor", *args],
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                          cwd=str(ROOT_DIR), env=mkdoctor_env(confdir, HOME=str(home)))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    step9, tail = done.stdout.split("checking the files as written", 1)
    assert "pass  MK404" in step9, out  # proven through the staged copy
    assert "fail  MK501" in tail and "fail  MK304" in tail, out
    assert "NOT WORKING AS WRITTEN: MK501" in done.stdout
    assert "does NOT work as written: MK501" in done.stderr
    # the fix is the one that helps (not MK501's "rewrite the files")
    assert f"fix: HOME is {home}, but ssh reads ~/.ssh from {ssh_home}" in done.stderr
    assert f"--ssh-config {ssh_home}/.ssh/config" in done.stderr
    assert "Nothing was written" not in out
    # written, with the backup of the user's own file named
    text = user_cfg.read_bytes()
    assert text.startswith(b"# >>> mkdoctor mk-asw >>>") and text.endswith(mine)
    backups = list((home / ".ssh").glob("config.mkdoctor-backup-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == mine
    assert f"backups: {backups[0].name}" in done.stderr
    assert (confdir / "profiles" / "asw.toml").is_file()
    assert sorted(p.name for p in (ssh_home / ".ssh").iterdir()) == ["known_hosts"]


def test_new_key_installed_with_a_working_login(sandbox, tmp_path):
    """--new-key --install-key: the new key is appended to authorized_keys through the
    login that already works (the alias's own key), once, keeping the existing line."""
    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    shutil.copyfile(sandbox.client_config, cfg)
    home = tmp_path / "home"
    home.mkdir()
    ak = sandbox.authorized_keys_path
    ak.write_bytes(ak.read_bytes().rstrip(b"\n"))  # an existing file without a final newline
    old = ak.read_text()
    confdir = tmp_path / "conf"
    args = ["setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host", "sandbox",
            "--name", "fresh", "--mode", "direct", "--link-host", "127.0.0.1",
            "--kernel", str(kernel), "--new-key"]

    done = run_mkdoctor(*args, config_dir=confdir, env={"HOME": str(home)}, timeout=180)
    assert done.returncode == 2 and "--install-key" in done.stderr, done.stdout + done.stderr
    assert not list((home / ".ssh").glob("id_ed25519*"))  # the new key was rolled back
    assert ak.read_text() == old

    done = run_mkdoctor(*args, "--install-key", config_dir=confdir, env={"HOME": str(home)},
                        timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    key = home / ".ssh" / "id_ed25519_mk-fresh"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = ak.read_text().splitlines()
    new_line = (home / ".ssh" / "id_ed25519_mk-fresh.pub").read_text().strip()
    assert lines == old.splitlines() + [new_line]
    assert stat.S_IMODE(ak.stat().st_mode) == 0o600

    again = run_mkdoctor(*args, "--install-key", config_dir=confdir, env={"HOME": str(home)},
                         timeout=180)
    assert again.returncode == 0 and "nothing written" in again.stdout, again.stdout + again.stderr
    assert ak.read_text().splitlines().count(new_line) == 1


def test_key_install_says_when_sshd_config_cannot_be_read(sandbox, tmp_path):
    """sshd_config 0600, as on RHEL/Fedora: the user cannot read its AuthorizedKeysFile,
    so the key goes to sshd's default file, and setup says which file and why."""
    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    shutil.copyfile(sandbox.client_config, cfg)
    home = tmp_path / "home"
    home.mkdir()
    sandbox.sshd_config_path.chmod(0o600)  # root's; the sandbox user cannot read it
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host", "sandbox",
                        "--name", "unread", "--mode", "direct", "--link-host", "127.0.0.1",
                        "--kernel", str(kernel), "--new-key", "--install-key",
                        "--sshd-config", str(sandbox.sshd_config_path),
                        config_dir=tmp_path / "conf", env={"HOME": str(home)}, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    ak = sandbox.authorized_keys_path
    notes = [ln for ln in done.stdout.splitlines() if ln.startswith("  note: ")
             and "AuthorizedKeysFile" in ln]
    assert notes == [f"  note: {sandbox.sshd_config_path} cannot be read by this user on the "
                     f"server (mode 0600, as on RHEL/Fedora), so its AuthorizedKeysFile is "
                     f"unknown: the key went to {ak}, sshd's default; give --sshd-config PATH "
                     "of a readable copy if sshd looks elsewhere"], done.stdout
    new_line = (home / ".ssh" / "id_ed25519_mk-unread.pub").read_text().strip()
    assert new_line in ak.read_text().splitlines()


def test_setup_help_and_several_hosts_usage(tmp_path):
    done = run_mkdoctor("setup", "--help", config_dir=tmp_path)
    assert done.returncode == 0
    assert "--hosts-file" in done.stdout and "--jobs" not in done.stdout
    env = {"HOME": str(tmp_path)}
    for extra, words in ((["--host", "carol@ws2", "--name", "x"], "--name applies to one host"),
                         (["--host", "alice@ws"], "would both be set up as profile 'ws'"),
                         (["--host", "-bad"], "--host")):
        done = run_mkdoctor("setup", "--yes", "--offline", "--host", "bob@ws", *extra,
                            config_dir=tmp_path, env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert words in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert "===" not in done.stdout  # refused before any setup started


def test_setup_yes_without_host_names_the_flag(tmp_path):
    done = run_mkdoctor("setup", "--yes", config_dir=tmp_path, env={"HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "--host" in done.stderr and done.stderr.count("\n") == 1


def test_setup_without_terminal_or_yes_fails_at_once(tmp_path):
    done = run_mkdoctor("setup", "--host", "example.org", config_dir=tmp_path,
                        env={"HOME": str(tmp_path)}, timeout=20)
    assert done.returncode == 2 and "--yes" in done.stderr
    assert done.stdout == ""
    done = run_mkdoctor("setup", "--yes", "--host", "example.org", "--accept-host-key", "nope",
                        config_dir=tmp_path, env={"HOME": str(tmp_path)}, timeout=20)
    assert done.returncode == 2 and "--accept-host-key" in done.stderr


def test_answers_file_usage_errors(tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text('name = "bad name"\n')
    done = run_mkdoctor("setup", "--answers", str(answers), config_dir=tmp_path)
    assert done.returncode == 2 and "--name" in done.stderr
    answers.write_text('bogus = 1\n')
    done = run_mkdoctor("setup", "--answers", str(answers), config_dir=tmp_path)
    assert done.returncode == 2 and "unknown key 'bogus'" in done.stderr


def test_several_hosts_are_set_up_one_after_another(sandbox_factory, tmp_path):
    """--hosts-file with two real servers and one that is down: each server gets its own
    profile and Host block from one ssh config, the one that is down fails on its own,
    the summary names each, and the exit status is the worst (1)."""
    config = ""
    for alias in ("ws-a", "ws-b"):
        kernels = tmp_path / f"kernels-{alias}"
        install_standin(kernels, "Mathematica/14.1/Executables/WolframKernel")
        box = sandbox_factory(bind_mounts={"/usr/local/Wolfram": kernels})
        config += box.client_config.read_text().replace(f"Host {box.alias}\n", f"Host {alias}\n")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config += (f"Host ws-down\n    HostName 127.0.0.1\n    Port {dead}\n    User nobody\n"
               f"    IdentityFile {box.client_key}\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(config)
    hosts = tmp_path / "hosts"
    hosts.write_text("# the lab\nws-a\nws-down   # switched off\n")
    confdir = tmp_path / "conf"
    env = {"HOME": str(tmp_path / "home")}
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--mode",
                        "tunnel", "--host", "ws-b", "--hosts-file", str(hosts),
                        config_dir=confdir, env=env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert [ln for ln in done.stdout.splitlines() if ln.startswith("=== ")] == [
        "=== mkdoctor setup 1/3: ws-b ===", "=== mkdoctor setup 2/3: ws-a ===",
        "=== mkdoctor setup 3/3: ws-down ==="]
    assert done.stdout.rstrip().splitlines()[-1] == (
        "mkdoctor setup: ws-b: set up; ws-a: set up; ws-down: FAILED (see above)")
    assert sorted(p.name for p in (confdir / "profiles").iterdir()) == ["ws-a.toml", "ws-b.toml"]
    text = cfg.read_text()
    assert "Host mk-ws-a\n" in text and "Host mk-ws-b\n" in text and "mk-ws-down" not in text
    # one parallel-kernels file for the hosts set up: each host's own launch, in order
    fleet = confdir / "frontend" / "fleet-parallel-kernels.wl"
    assert f"parallel kernels on all 2 hosts: {fleet}" in done.stdout
    launches = [ln for ln in fleet.read_text().splitlines() if ln.startswith("LaunchKernels[")]
    own = [ln.rstrip(";") + ";" for name in ("ws-b", "ws-a") for ln in
           (confdir / "frontend" / f"{name}-parallel-kernels.wl").read_text().splitlines()
           if ln.startswith("LaunchKernels[")]
    assert launches == own and len(own) == 2, fleet.read_text()
    for name in ("ws-a", "ws-b"):
        report, _ = json_report("--profile", name, "--only", "MK304,MK401,MK402,MK501",
                                "--offline", config_dir=confdir, env=env)
        assert {c["id"]: c["status"] for c in report["checks"]} == dict.fromkeys(
            ["MK304", "MK401", "MK402", "MK501"], "pass"), report


def _counting_kernel(sandbox) -> tuple[Path, Path]:
    """The stand-in kernel, counting its starts in ~/.standin-starts (one line each)."""
    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    log = sandbox.home / ".standin-starts"
    log.write_text("")
    os.chown(log, sandbox.uid, sandbox.gid)
    return kernel, log


def _starts(log: Path) -> list[str]:
    return log.read_text().splitlines()


def _setup(sandbox, tmp_path, name: str, kernel: Path, *extra: str):
    cfg = tmp_path / "ssh_config"
    shutil.copyfile(sandbox.client_config, cfg)
    (tmp_path / "home").mkdir(exist_ok=True)
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host", "sandbox",
                        "--name", name, "--mode", "direct", "--link-host", "127.0.0.1",
                        "--kernel", str(kernel), "--kernel-timeout", "15", *extra,
                        config_dir=tmp_path / "conf", env={"HOME": str(tmp_path / "home")},
                        timeout=180)
    return done, cfg


def test_setup_waits_for_one_kernel_start(sandbox, tmp_path):
    """Step 9 starts the kernel on its own (MK402) and with the launch command (MK404) at
    the same time: with a kernel that takes 2 s to start, the second start begins before
    the first one could have ended its wait. Step 7 starts none."""
    kernel, log = _counting_kernel(sandbox)
    (sandbox.home / ".standin-fault").write_text("slow:2\n")
    done, _ = _setup(sandbox, tmp_path, "once", kernel)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    starts = _starts(log)
    assert len(starts) == 2, starts
    assert sorted("-linkmode" in s.lower() for s in starts) == [False, True], starts
    first, second = sorted(float(s.split()[0]) for s in starts)
    assert second - first < 2.0, starts  # overlapping: the first was still in its 2 s wait
    step7 = done.stdout.split("[7] ")[1].split("[8] ")[0]
    assert "  MK402 kernel-starts" not in step7 and "pass  MK402" in done.stdout.split("[9] ")[1]
    par = next((tmp_path / "conf").rglob("once-parallel-kernels.wl")).read_text()
    assert ", 2 processor(s)" in par or "processor(s)" in par  # MK402's $ProcessorCount


def test_setup_whose_kernel_does_not_start_stops_with_mk402(sandbox, tmp_path):
    """The kernel itself does not start (a licence message): MK404 fails and so does
    MK402, which says why; setup stops with MK402's diagnosis and writes nothing."""
    kernel, log = _counting_kernel(sandbox)
    (sandbox.home / ".standin-fault").write_text("licence\n")
    done, cfg = _setup(sandbox, tmp_path, "nolic", kernel)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "fail  MK402" in done.stdout and "MK402: " in done.stderr, done.stdout + done.stderr
    assert "licen" in done.stderr.lower() and "MK404: " not in done.stderr
    assert len(_starts(log)) == 2
    assert cfg.read_bytes() == sandbox.client_config.read_bytes()
    assert not list((tmp_path / "conf").rglob("nolic.toml"))


@pytest.mark.parametrize("fault", ["slow:1+processes:1", "processes:1"])
def test_setup_with_a_licence_for_one_kernel_at_a_time(sandbox, tmp_path, fault):
    """A licence that allows one kernel process. Started at once (both kernels take 1 s
    before they ask for a licence), each sees the other and both are refused: that is
    mkdoctor's doing, not the user's fault, so each refused check (MK402 in the background,
    MK404 in the step: they share the session's OwnKernels) starts its kernel again alone,
    one at a time, step 9 says so, and setup goes on. Started instantly they may not meet."""
    kernel, log = _counting_kernel(sandbox)
    (sandbox.home / ".standin-fault").write_text(fault + "\n")
    done, _ = _setup(sandbox, tmp_path, "onelic", kernel)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    step9 = done.stdout.split("[9] ")[1].split("[10] ")[0]
    assert step9.count("pass  MK404") == 1 and step9.count("pass  MK402") == 1, step9
    again = step9.count("the licence allows one kernel at a time here")
    assert len(_starts(log)) == 2 + again, (_starts(log), step9)
    if fault.startswith("slow"):  # one or both of the two refused; then one at a time
        assert again in (1, 2), step9


def test_setup_whose_licence_refuses_every_kernel_tries_one_at_a_time_then_stops(sandbox, tmp_path):
    """Both kernels refused a licence process (``slow:1+processes:0``: both ask at once,
    and are refused even alone): each check starts its kernel once more alone before it
    calls it a licence problem (four starts: two at once, then one and one); setup stops
    with MK402's diagnosis."""
    kernel, log = _counting_kernel(sandbox)
    (sandbox.home / ".standin-fault").write_text("slow:1+processes:0\n")
    done, _ = _setup(sandbox, tmp_path, "nolic0", kernel)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    step9 = done.stdout.split("[9] ")[1]
    assert step9.count("fail  MK404") == 1 and step9.count("fail  MK402") == 1, step9
    assert "MK402: all licence processes are in use" in done.stderr, done.stderr
    assert len(_starts(log)) == 4, _starts(log)


def test_setup_whose_link_is_dropped_says_which_part_fails(sandbox, tmp_path):
    """Step 9 proves the link with MK404 alone; when it fails, MK403 runs to say which
    part: here a firewall on this computer drops the kernel's connections to the link
    ports (direct mode), so the kernel starts (MK402 passes) but never connects (MK404
    fails), the path check fails too (MK403), setup stops with MK403's diagnosis and
    writes nothing. Without the rule the same setup passes (the test above)."""
    from tests.helpers import free_port_pair

    kernel, _ = _counting_kernel(sandbox)
    p1, p2 = free_port_pair()
    rules = [["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(p), "-j", "DROP"] for p in (p1, p2)]
    for rule in rules:
        subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        done, cfg = _setup(sandbox, tmp_path, "dropped", kernel, "--link-ports", f"{p1},{p2}",
                           "--kernel-timeout", "4", "--timeout", "2")
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", *rule], check=False)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    step9 = done.stdout.split("[9] ")[1]
    assert "pass  MK402" in step9 and "fail  MK404" in step9 and "fail  MK403" in step9, step9
    assert "MK403: " in done.stderr, done.stderr
    assert cfg.read_bytes() == sandbox.client_config.read_bytes()
    assert not list((tmp_path / "conf").rglob("dropped.toml"))


def test_setup_stops_on_a_changed_host_key_before_any_password(sandbox, tmp_path):
    """A host whose recorded key no longer matches (known_hosts holds another ed25519
    key for it): the scan that runs beside step 6's login (a recorded key is read there)
    is judged before anything else, so setup stops with the man-in-the-middle warning,
    offers no key installation (no password is asked for, even with --install-key),
    and writes nothing; the user's known_hosts is unchanged."""
    import subprocess as sp

    kernel, _ = _counting_kernel(sandbox)
    other = tmp_path / "other_key"
    sp.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    entry = sandbox.known_hosts.read_text().split()[0]
    before = f"{entry} {other.with_suffix('.pub').read_text().split()[0]} " \
             f"{other.with_suffix('.pub').read_text().split()[1]}\n"
    sandbox.known_hosts.write_text(before)
    done, cfg = _setup(sandbox, tmp_path, "mitm", kernel, "--install-key")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "does NOT match the one recorded" in done.stderr and "man-in-the-middle" in done.stderr, \
        done.stderr
    assert "Install the public key" not in done.stdout and "installing the key" not in done.stdout
    assert sandbox.known_hosts.read_text() == before
    assert not list((tmp_path / "conf").rglob("mitm.toml"))
