"""Every client config of the corpus, as a user's ``~/.ssh/config``, with a real host in front.

For each file of ``/work/shared/corpus/openssh/ssh_config`` (drop-ins of ``NNN-*.d``
mapped under ``~/.ssh`` as the corpus's SOURCES.md says) a fresh ssh home gets the file
as ``~/.ssh/config`` behind a ``Host mkreal`` block that reaches the ONE sandbox sshd of
this module, once directly (HostName/Port) and once through a ProxyCommand (``nc``,
wrapped so that every use is logged: the managed alias must go through it too). Then:

- plain ``ssh -o BatchMode=yes mkreal true`` is run;
- ``mkdoctor setup --yes`` (no --ssh-config: it writes ``~/.ssh/config``) must succeed
  exactly when plain ssh does, and fail otherwise;
- the file keeps everything outside the managed block byte for byte;
- ``ssh -G`` of every other Host of the file (and its includes) is unchanged;
- ``ssh -G mk-real`` agrees with ``ssh -G mkreal`` on every option beyond the ones
  mkdoctor sets.

ssh takes ``~`` from the password database, so every ssh and mkdoctor here runs in a
private mount namespace where /etc/passwd is a copy naming the fresh home as root's
(the real one is neither read for ~ nor written). The stand-in kernel replaces
Mathematica.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mkdoctor.openssh import client_config as cc
from tests.harness.sshd import SSHSandbox
from tests.helpers import ROOT, free_port_pair, mkdoctor_env
from tests.test_wizard import install_standin

CORPUS = Path("/work/shared/corpus/openssh/ssh_config")
FILES = sorted(p.name for p in CORPUS.glob("*.conf")) if CORPUS.is_dir() else []
ALIAS = "mk-real"
pytestmark = pytest.mark.integration
RESULTS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    base = Path(__import__("tempfile").mkdtemp(prefix="mkd-corpus-", dir="/tmp"))
    base.chmod(0o755)
    sandbox = SSHSandbox(base / "sbx")
    sandbox.start()
    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    yield sandbox, kernel
    sandbox.stop()
    shutil.rmtree(base, ignore_errors=True)
    if RESULTS and os.environ.get("MKD_CORPUS_RESULTS"):  # the figures, for the record
        import json

        Path(os.environ["MKD_CORPUS_RESULTS"]).write_text(json.dumps(
            {f"{n} {w}": v for (n, w), v in sorted(RESULTS.items())}, indent=1))


def place_dropins(name: str, ssh_dir: Path) -> None:
    """``NNN-*.d`` under ~/.ssh: ``config.d/`` for ``Include config.d/*``; 012 keeps its
    ``conf.d/`` level; 011's linux variant is the ``config_1password_agent`` it includes."""
    d = CORPUS / (name[: -len(".conf")] + ".d")
    if not d.is_dir():
        return
    if (d / "conf.d").is_dir():
        shutil.copytree(d, ssh_dir, dirs_exist_ok=True)
    elif (d / "linux").is_dir():
        shutil.copyfile(d / "linux" / "config_1password_agent", ssh_dir / "config_1password_agent")
    else:
        shutil.copytree(d, ssh_dir / "config.d")


def front(sandbox: SSHSandbox, ssh_dir: Path, proxied: bool) -> bytes:
    lines = ["# the real host, in front of the corpus file",
             "Host mkreal",
             f"    HostName {sandbox.address}",
             f"    Port {sandbox.port}",
             f"    User {sandbox.user}",
             f"    IdentityFile {sandbox.client_key}",
             f"    UserKnownHostsFile {ssh_dir}/known_hosts"]
    if proxied:
        lines.append(f"    ProxyCommand sh -c 'echo %n >> {ssh_dir}/proxy.log; exec nc %h %p'")
    lines += ["# what follows applies to every host, as in the corpus file", "Host *", ""]
    return "\n".join(lines).encode()


class Home:
    """A fresh home that ssh (through the password database) and mkdoctor ($HOME) use."""

    def __init__(self, root: Path):
        self.path = root / "home"
        self.ssh = self.path / ".ssh"
        self.ssh.mkdir(parents=True, mode=0o700)
        self.runtime = root / "run"
        self.runtime.mkdir(mode=0o700)
        self.passwd = root / "passwd"
        uid = str(os.getuid())
        self.passwd.write_text("".join(
            ":".join(f[:5] + [str(self.path)] + f[6:]) if f[2] == uid else ":".join(f)
            for f in (line.split(":") for line in Path("/etc/passwd").read_text().splitlines(True))))

    def run(self, argv: list[str], timeout: float = 30, env=None) -> subprocess.CompletedProcess:
        # as in a login session: HOME is the home (ssh 9.2 expands the ~ of an Include
        # with it), and XDG_RUNTIME_DIR is set (configs name ${XDG_RUNTIME_DIR})
        env = dict(env if env is not None else os.environ, HOME=str(self.path),
                   XDG_RUNTIME_DIR=str(self.runtime))
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/passwd && shift && exec "$@"',
             "sh", str(self.passwd), *argv], capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, cwd=str(ROOT), env=env)

    def ssh_g_raw(self, host: str) -> tuple[int, str]:
        done = self.run(cc.ssh_g_argv(host), timeout=15)
        return done.returncode, done.stdout

    def ssh_g(self, host: str) -> cc.SshG:
        done = self.run(cc.ssh_g_argv(host), timeout=15)
        assert done.returncode == 0, done.stderr
        return cc.parse_ssh_g(done.stdout)


@pytest.fixture
def short_root():
    """A short directory for the home: a ControlPath under it must stay below the
    108 bytes of a Unix socket name, as under a real /home/USER."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="mkc-", dir="/tmp"))
    yield root
    # ControlPersist masters that the configs' own ControlMaster lines started here
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and args.startswith("ssh: " + str(root)):
            try:
                os.kill(int(proc.name), 15)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)


def first_cause(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if "Pseudo-terminal" not in ln]
    bad = [ln for ln in lines if " line " in ln]  # the refused line, when ssh names one
    return (bad or lines or [""])[0]


@pytest.mark.skipif(not FILES, reason="the corpus is not on this machine")
@pytest.mark.parametrize("way", ["direct", "proxycommand"])
@pytest.mark.parametrize("name", FILES)
def test_corpus_file(box, short_root, name, way):
    sandbox, kernel = box
    home = Home(short_root)
    shutil.copyfile(sandbox.known_hosts, home.ssh / "known_hosts")
    place_dropins(name, home.ssh)
    cfg = home.ssh / "config"
    original = front(sandbox, home.ssh, way == "proxycommand") + (CORPUS / name).read_bytes()
    cfg.write_bytes(original)
    cfg.chmod(0o600)
    others = [h for h, _ in cc.config_aliases(cfg, home=home.path) if h != "mkreal"]
    before = {h: home.ssh_g_raw(h) for h in others + ["unrelated.example"]}
    rc, out = home.ssh_g_raw("mkreal")
    for path in cc.parse_ssh_g(out).get("controlpath", []) if rc == 0 else []:
        if path != "none":  # the user of such a config has made its directory
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    plain = home.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "mkreal", "true"])
    log = home.ssh / "proxy.log"
    if way == "proxycommand" and plain.returncode == 0:
        assert log.read_text().split() == ["mkreal"]
        log.unlink()

    confdir = short_root / "conf"
    setup = home.run([sys.executable, "-m", "mkdoctor", "setup", "--yes", "--offline",
                      "--host", "mkreal", "--name", "real", "--mode", "direct",
                      "--link-host", "127.0.0.1", "--kernel", str(kernel),
                      # a free pair of its own: the suite runs files in parallel, and other
                      # files' link tests use the default pair on this loopback
                      "--link-ports", "%d,%d" % free_port_pair(),
                      "--identity", str(sandbox.client_key)],
                     timeout=240, env=mkdoctor_env(confdir, HOME=str(home.path)))
    out = setup.stdout + setup.stderr
    if plain.returncode != 0:
        cause = first_cause(plain.stderr)
        RESULTS[(name, way)] = "plain ssh fails: " + cause
        assert setup.returncode != 0, out
        assert cause in out, f"setup failed for another cause than {cause!r}:\n{out}"
        assert cfg.read_bytes() == original  # nothing written
        return
    assert setup.returncode == 0, f"plain ssh works, setup does not:\n{out}"
    RESULTS[(name, way)] = "set up"

    text = cfg.read_bytes()
    assert text.startswith(b"# >>> mkdoctor mk-real >>>")
    assert cc.to_bytes(cc.remove_block(cc.read_text(text), ALIAS)) == original
    for h, was in before.items():
        assert home.ssh_g_raw(h) == was, f"ssh -G {h} changed"
    host_g, alias_g = home.ssh_g("mkreal"), home.ssh_g(ALIAS)
    assert cc.differences(host_g, alias_g, "mkreal", ALIAS) == {}
    for key in ("hostname", "port", "user"):
        assert alias_g[key] == host_g[key]
    if way == "proxycommand":  # setup's connections went through the user's ProxyCommand
        # (%n there means the host as the user typed it, so the alias logs "mkreal" too)
        assert log.is_file() and set(log.read_text().split()) == {"mkreal"}, out
        log.unlink()
    # and the alias still logs in as written, the same way (on a connection of its own:
    # -S none, not a master that the config's ControlMaster left from plain ssh)
    again = home.run(["ssh", "-o", "BatchMode=yes", "-S", "none", ALIAS, "true"])
    assert again.returncode == 0, again.stderr
    assert log.is_file() == (way == "proxycommand")


