"""`mkdoctor setup` on a real terminal through step 4's passphrase path: ssh-keygen asks
for the passphrase (twice) and ssh-add for it once, on the terminal itself; the key goes
into a real ssh-agent started here; the public key is installed with the sandbox user's
password. Then MK202/MK304 pass with that agent, and MK202 fails without one (the front
end cannot type a passphrase). The passphrase never appears in the wizard's output."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pexpect
import pytest

from tests.helpers import ROOT, by_id, json_report, mkdoctor_env
from tests.test_wizard import install_standin

PASSWORD = "correct horse 42"
PASSPHRASE = "Tr0ub4dor&3-unlock-me"
DOWN, ENTER = "\x1b[B", "\r"
NAME = "pp"

pytestmark = pytest.mark.integration


@pytest.fixture
def box(sandbox_factory):
    """A sandbox that allows password login and does not know our key yet."""
    return sandbox_factory(password=PASSWORD, authorize_client_key=False)


class Agent:
    def __init__(self) -> None:
        # a short path: unix socket paths are limited to ~108 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="mkd-agent-", dir="/tmp"))
        self.sock = str(self.dir / "agent.sock")
        self.proc = subprocess.Popen(["ssh-agent", "-D", "-a", self.sock],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SSH_AUTH_SOCK": self.sock}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def agent() -> Iterator[Agent]:
    a = Agent()
    try:
        yield a
    finally:
        a.stop()  # whatever the test's outcome


def spawn(box, tmp_path: Path, kernel: Path, sock: str) -> tuple[pexpect.spawn, dict, io.StringIO]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    kh = tmp_path / "kh"
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host *\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n")
    env = mkdoctor_env(tmp_path / "conf", HOME=str(home), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1",
                       SSH_AUTH_SOCK=sock)
    env.pop("CI", None)  # a real terminal on both ends: prompts are allowed
    env.pop("SSH_ASKPASS", None)
    env.pop("DISPLAY", None)
    args = ["-m", "mkdoctor", "setup", "--ssh-config", str(cfg), "--offline",
            "--host", f"{box.user}@127.0.0.1:{box.port}", "--name", NAME, "--mode", "direct",
            "--link-host", "127.0.0.1", "--kernel", str(kernel)]
    child = pexpect.spawn(sys.executable, args, env=env, cwd=str(ROOT), encoding="utf-8",
                          timeout=30, dimensions=(40, 200))
    log = io.StringIO()
    child.logfile_read = log  # everything the terminal showed
    return child, {"home": home, "kh": kh, "cfg": cfg, "conf": tmp_path / "conf"}, log


def test_passphrase_key_goes_into_the_agent_and_logs_in(no_leaked_processes, box, agent, tmp_path,
                                                        monkeypatch):
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    child, where, log = spawn(box, tmp_path, kernel, agent.sock)
    key = where["home"] / ".ssh" / f"id_ed25519_mk-{NAME}"
    try:
        child.expect("Which key should the front end use")
        child.send(ENTER)  # default: create a new ed25519 key
        child.expect("Protect the new key with a passphrase")
        child.send(ENTER)  # default: passphrase + ssh-agent (recommended)
        # ssh-keygen's own prompts, on the terminal
        child.expect(r"Enter passphrase \(empty for no passphrase\):")
        child.sendline(PASSPHRASE)
        child.expect("Enter same passphrase again:")
        child.sendline(PASSPHRASE)
        child.expect(r"created .*id_ed25519_mk-" + NAME + r" \(ed25519, passphrase\)")
        # ssh-add's own prompt
        child.expect(r"Enter passphrase for .*id_ed25519_mk-" + NAME)
        child.sendline(PASSPHRASE)
        child.expect("Identity added")
        child.expect("is not known yet")
        child.expect(r"Is SHA256:\S+ the fingerprint of")
        assert "not in the agent" not in child.before
        child.send("y")
        child.expect("does not accept this key yet")
        child.expect("Install the public key")
        child.send("y")
        child.expect("password:")
        child.sendline(PASSWORD)
        child.expect("public key added to")
        child.expect("Link ports")
        child.send(ENTER)  # the proposed pair
        child.expect("Write these files")
        child.send("y")
        while True:
            i = child.expect([r"Apply this on the remote host", r"\[12\] Done", pexpect.EOF])
            if i == 0:
                child.send("n")  # decline the sshd hardening
            else:
                break
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = log.getvalue()
    assert child.exitstatus == 0, shown
    assert PASSPHRASE not in shown
    assert PASSWORD not in shown

    # the private key is encrypted: an empty passphrase does not open it
    opened = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(key)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert opened.returncode != 0, opened.stdout
    key_pub = Path(str(key) + ".pub").read_text().strip()
    blob = key_pub.split()[1]
    # the agent holds it
    listed = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True,
                            env=agent.env(), stdin=subprocess.DEVNULL)
    assert listed.returncode == 0, listed.stderr
    assert blob in [ln.split()[1] for ln in listed.stdout.splitlines() if ln.strip()]
    # installed once, with nothing else
    assert box.authorized_keys_path.read_text().splitlines() == [key_pub]
    # the profile was written
    profile = where["conf"] / "profiles" / f"{NAME}.toml"
    assert profile.is_file()
    assert str(key) in profile.read_text()

    # the written configuration works with the agent ...
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    env = {"HOME": str(where["home"])}
    report, done = json_report("--profile", NAME, "--only", "MK202,MK304", "--offline",
                               config_dir=where["conf"], env={**env, "SSH_AUTH_SOCK": agent.sock})
    assert {c["id"]: c["status"] for c in report["checks"]} == {
        "MK202": "pass", "MK304": "pass"}, report
    assert "passphrase in the agent" in by_id(report)["MK202"]["summary"]

    # ... and without an agent MK202 says the front end cannot type the passphrase
    agent.stop()
    for extra in ({}, {"SSH_AUTH_SOCK": agent.sock}):  # unset / the stopped agent's socket
        report, done = json_report("--profile", NAME, "--only", "MK202,MK304", "--offline",
                                   config_dir=where["conf"], env={**env, **extra})
        r202 = by_id(report)["MK202"]
        assert r202["status"] == "fail", report
        assert "cannot type a passphrase" in r202["summary"], r202
        assert by_id(report)["MK304"]["status"] != "pass", report


def test_passphrase_without_an_agent_stops_before_anything_is_installed(no_leaked_processes, box,
                                                                        tmp_path):
    """No agent answers: "no passphrase" is the default and the other choice says setup
    would stop; taken anyway, setup stops once the key cannot go into an agent, before
    installing anything on the server, and the new key is rolled back."""
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    before = box.authorized_keys_path.read_bytes() if box.authorized_keys_path.exists() else None
    child, where, log = spawn(box, tmp_path, kernel, str(tmp_path / "no-agent.sock"))
    try:
        child.expect("Which key should the front end use")
        child.send(ENTER)  # create a new key
        child.expect("note: no ssh-agent answers here")
        child.expect("Protect the new key with a passphrase")
        child.send(DOWN + ENTER)  # the menu wraps: from "no passphrase" to the passphrase
        child.expect(r"Enter passphrase \(empty for no passphrase\):")
        child.sendline(PASSPHRASE)
        child.expect("Enter same passphrase again:")
        child.sendline(PASSPHRASE)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = log.getvalue()
    assert child.exitstatus == 1, shown
    assert "could not be added to an ssh-agent" in shown and "Nothing was written" in shown
    assert PASSPHRASE not in shown
    assert not list((where["home"] / ".ssh").glob("id_ed25519_mk-*"))  # rolled back
    after = box.authorized_keys_path.read_bytes() if box.authorized_keys_path.exists() else None
    assert after == before
    assert not (where["conf"] / "profiles" / f"{NAME}.toml").exists()
