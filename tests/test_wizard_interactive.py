"""`mkdoctor setup` on a real terminal (pexpect): the questions, a password typed at
ssh's own prompt to install the key, and Ctrl-C leaving every file as it was."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.helpers import ROOT, by_id, json_report, mkdoctor_env
from tests.test_wizard import install_standin

PASSWORD = "correct horse 42"
DOWN, ENTER = "\x1b[B", "\r"

pytestmark = pytest.mark.integration


@pytest.fixture
def box(sandbox_factory):
    """A sandbox that allows password login and does not know our key yet."""
    return sandbox_factory(password=PASSWORD, authorize_client_key=False)


def spawn(box, tmp_path: Path, kernel: Path) -> tuple[pexpect.spawn, dict]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    kh = tmp_path / "kh"
    cfg = tmp_path / "ssh_config"
    if not cfg.exists():
        cfg.write_text(f"Host *\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n")
    env = mkdoctor_env(tmp_path / "conf", HOME=str(home), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    env.pop("CI", None)  # a real terminal on both ends: prompts are allowed
    env.pop("SSH_AUTH_SOCK", None)
    args = ["-m", "mkdoctor", "setup", "--ssh-config", str(cfg), "--offline",
            "--host", f"{box.user}@127.0.0.1:{box.port}", "--name", "tty", "--mode", "direct",
            "--link-host", "127.0.0.1", "--kernel", str(kernel)]
    child = pexpect.spawn(sys.executable, args, env=env, cwd=str(ROOT), encoding="utf-8",
                          timeout=30, dimensions=(40, 200))
    log = io.StringIO()
    child.logfile_read = log  # everything the terminal showed, start to end
    return child, {"home": home, "kh": kh, "cfg": cfg, "conf": tmp_path / "conf", "log": log}


def assert_secret_nowhere(secret: str, shown: str, *dirs: Path) -> None:
    """Not on the terminal (the whole session) and in no file under ``dirs``."""
    assert secret not in shown
    leaked = [str(f) for d in dirs for f in d.rglob("*")
              if f.is_file() and secret.encode() in f.read_bytes()]
    assert leaked == []


def answer_key_questions(child: pexpect.spawn) -> None:
    child.expect("Which key should the front end use")
    child.send(ENTER)  # default: create a new ed25519 key
    # no agent in this environment: said, and "no passphrase" is the default
    child.expect("note: no ssh-agent answers here")
    child.expect("Protect the new key with a passphrase")
    child.expect("no agent runs here: setup stops")
    child.send(ENTER)  # no passphrase
    child.expect("is not known yet")
    child.expect(r"Is SHA256:\S+ the fingerprint of")


def test_interactive_setup_installs_the_key_with_a_password(box, tmp_path):
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    child, where = spawn(box, tmp_path, kernel)
    try:
        child.expect("fail  MK202 key-pair: no SSH key")
        # the wizard itself fixes it in step 4: no command to type is given here
        child.expect(r"later: step 4 offers to create a key")
        answer_key_questions(child)
        child.send("y")
        child.expect("does not accept this key yet")
        child.expect("Install the public key")
        assert "fail  MK304" not in child.before  # the expected case is not shown as a failure
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
                child.send("n")
            else:
                break
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, where["log"].getvalue()
    assert "password:" in where["log"].getvalue()  # ssh's own prompt was on this terminal
    # two logins in all: the password once (the install's session: AuthorizedKeysFile and
    # the append share it), then the new key once for every later step
    log = box.log_text()
    assert log.count("Accepted password") == 1 and log.count("Accepted publickey") == 1, log
    assert_secret_nowhere(PASSWORD, where["log"].getvalue(), where["home"], where["conf"])
    key_pub = (where["home"] / ".ssh" / "id_ed25519_mk-tty.pub").read_text().strip()
    assert box.authorized_keys_path.read_text().splitlines() == [key_pub]
    # the key login works now, with the written configuration
    report, _ = json_report("--profile", "tty", "--only", "MK304,MK404,MK501", "--offline",
                            config_dir=where["conf"], env={"HOME": str(where["home"])})
    assert {c["id"]: c["status"] for c in report["checks"]} == {
        "MK304": "pass", "MK404": "pass", "MK501": "pass"}, report


def files_of(*dirs: Path) -> dict[str, bytes]:
    return {str(f): f.read_bytes() for d in dirs if d.exists() for f in d.rglob("*") if f.is_file()}


def interrupt(child: pexpect.spawn, how: str) -> None:
    """Ctrl-C as a SIGINT to mkdoctor (``how="signal"``) or typed on its terminal."""
    if how == "signal":
        child.kill(signal.SIGINT)
    else:
        child.send("\x03")


@pytest.mark.parametrize("how", ["signal", "keypress"])
def test_ctrl_c_at_a_prompt_changes_nothing(box, tmp_path, how):
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    kh = tmp_path / "kh"
    cfg.write_text(f"Host *\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n")
    kh.write_text("# known hosts of the user\n")
    before = files_of(tmp_path)
    child, where = spawn(box, tmp_path, kernel)
    try:
        answer_key_questions(child)  # a new key now exists; the host key is being asked
        assert (where["home"] / ".ssh" / "id_ed25519_mk-tty").exists()
        child.send("y")  # record the host key ...
        child.expect("Install the public key")  # ... and interrupt the next question
        assert kh.read_text() != "# known hosts of the user\n"
        interrupt(child, how)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130, child.before
    assert files_of(tmp_path) == before  # the key pair removed, known_hosts restored
    assert box.authorized_keys_path.read_text() == ""
