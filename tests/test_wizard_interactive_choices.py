"""`mkdoctor setup` on a real terminal (pexpect): the choices not covered elsewhere —
one of the ssh config's Host aliases as the remote host, one of several kernels (MK401),
applying the sshd hardening with sudo asking for the password on this terminal, and
Ctrl-C once the files are written."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pexpect
import pytest

from tests.helpers import ROOT, by_id, json_report, mkdoctor_env, run_mkdoctor
from tests.test_kernel_checks import install_standin
from tests.test_wizard_interactive import assert_secret_nowhere, files_of, interrupt
from tests.test_wizard_security import DROPIN_NAME, SITE, reloads
from mkdoctor.wizard import security

DOWN, ENTER = "\x1b[B", "\r"
PASSWORD = "sudo pw 42"

pytestmark = pytest.mark.integration


def spawn(tmp_path: Path, *args: str) -> tuple[pexpect.spawn, Path]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = mkdoctor_env(tmp_path / "conf", HOME=str(home), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    env.pop("CI", None)  # a real terminal on both ends: prompts are allowed
    env.pop("SSH_AUTH_SOCK", None)
    child = pexpect.spawn(sys.executable, ["-m", "mkdoctor", "setup", "--offline", *args], env=env,
                          cwd=str(ROOT), encoding="utf-8", timeout=40, dimensions=(40, 200))
    child.logfile_read = io.StringIO()  # the whole session, as the terminal showed it
    return child, tmp_path / "conf"


def finish(child: pexpect.spawn) -> None:
    """Accept the proposed ports and write the files, then run to the end."""
    child.expect("Link ports")
    child.send(ENTER)
    child.expect("Write these files")
    child.send("y")


def to_step_11(box, tmp_path: Path, name: str) -> tuple[pexpect.spawn, Path, Path, int]:
    """Setup in direct mode on a terminal, from the start to step 11's question, on a
    sandbox whose site drop-in makes MK310 warn (so step 11 has advice and asks). Returns
    (the child at that question, the config dir, the ssh config, sshd's reload count)."""
    box.add_dropin("60-site", SITE)
    box.reload()
    hups = reloads(box)
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    cfg.chmod(0o600)
    child, conf = spawn(tmp_path, "--ssh-config", str(cfg), "--host", "sandbox", "--name", name,
                        "--mode", "direct", "--link-host", "127.0.0.1", "--kernel", str(kernel))
    try:
        child.expect("Which key should the front end use")
        child.send(ENTER)
        finish(child)
        child.expect("Apply this on the remote host now")
    except BaseException:
        child.close()
        raise
    return child, conf, cfg, hups


def test_pick_a_host_alias_and_one_of_two_kernels(sandbox_factory, sandbox_dir, tmp_path):
    layout = sandbox_dir / "layout"
    install_standin(layout, "Mathematica/13.3/Executables/WolframKernel")
    install_standin(layout, "Mathematica/14.1/Executables/WolframKernel")
    box = sandbox_factory(bind_mounts={"/usr/local/Wolfram": layout})
    cfg = tmp_path / "ssh_config"
    # the sandbox is the SECOND alias, and it is in a file the config Includes (a glob):
    # the list follows Include as ssh does; the choice must really move the selection
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lab.conf").write_text(box.client_config.read_text())
    cfg.write_text("Host elsewhere\n    HostName 192.0.2.7\n    User nobody\n\n"
                   f"Host *\nInclude {tmp_path}/conf.d/*.conf\n")
    cfg.chmod(0o600)
    child, conf = spawn(tmp_path, "--ssh-config", str(cfg), "--mode", "direct",
                        "--link-host", "127.0.0.1")
    older = "/usr/local/Wolfram/Mathematica/13.3/Executables/WolframKernel"
    newer = "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel"
    try:
        child.expect("Which remote host runs the kernel")
        child.expect(f"sandbox  \\(Host alias in {tmp_path}/conf.d/lab.conf\\)")
        child.expect("another host")  # the whole list is drawn
        child.send(DOWN + ENTER)  # elsewhere -> sandbox
        child.expect(f"profile sandbox, ssh alias mk-sandbox")
        child.expect("Which key should the front end use")
        child.send(ENTER)  # the alias's own key
        child.expect("Which kernel")
        # each choice says the version MK401 found (in either order); the newest is proposed
        seen: set[int] = set()
        while len(seen) < 2:
            seen.add(child.expect([r"» \S+14\.1/Executables/WolframKernel  \(version 14\.1\)",
                                   r"\S+13\.3/Executables/WolframKernel  \(version 13\.3\)"]))
        child.send(DOWN + ENTER)  # two entries: one step (the menu wraps) is the other one
        child.expect(f"kernel {older}")
        finish(child)
        # step 11 judges this machine's own /etc/ssh here (a sandbox without sudo): no
        if child.expect([r"Apply this on the remote host", r"\[12\] Done"]) == 0:
            child.send("n")
            child.expect(r"\[12\] Done")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    show = run_mkdoctor("config", "show", "--profile", "sandbox", "--format", "json",
                        config_dir=conf)
    prof = json.loads(show.stdout)["profile"]
    assert (prof["host"], prof["hostname"], prof["port"], prof["user"]) == (
        "mk-sandbox", "127.0.0.1", box.port, box.user), prof
    assert prof["kernel"] == older and str(prof["kernel_version"]).startswith("13.3"), prof
    assert "Host mk-sandbox" in cfg.read_text()


def test_apply_hardening_with_the_sudo_password(sandbox_factory, tmp_path):
    box = sandbox_factory(sudo_password=True, password=PASSWORD)
    child, _, _, hups = to_step_11(box, tmp_path, "hard")
    try:
        child.send("y")
        child.expect(r"\[sudo\] password for " + box.user)
        child.sendline(PASSWORD)
        child.expect(f"applied {security.DROPIN}")
        child.expect("after the change:")
        child.expect(r"pass  MK310")
        child.expect(r"\[12\] Done")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = child.logfile_read.getvalue()
    assert child.exitstatus == 0, shown
    assert_secret_nowhere(PASSWORD, shown, tmp_path / "home", tmp_path / "conf")
    # (MK311 may warn too: this sandbox shares the machine's interfaces and addresses)
    assert "PermitRootLogin no" in (box.dropin_dir / DROPIN_NAME).read_text().splitlines()
    assert reloads(box) == hups + 1
    assert box.ssh("true").returncode == 0


@pytest.mark.parametrize("how", ["keypress", "signal"])
def test_ctrl_c_after_the_files_are_written_says_they_stay(sandbox_factory, tmp_path, how):
    """Ctrl-C at step 11's question comes after step 10 wrote the files (on the user's
    yes): they stay, intact, and the message says so (not "every file is as it was");
    nothing is applied on the server; exit status 130."""
    box = sandbox_factory(sudo=True)
    child, conf, cfg, hups = to_step_11(box, tmp_path, "intr")
    try:
        written = files_of(tmp_path)
        interrupt(child, how)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = child.logfile_read.getvalue()
    assert child.exitstatus == 130, shown
    assert "every file is as it was" not in shown
    assert ("interrupted; the configuration files of step 10 stay written (backups: "
            "ssh_config.mkdoctor-backup-") in shown
    assert "the sshd hardening was not applied" in shown
    assert files_of(tmp_path) == written  # nothing rolled back, nothing half-written
    assert "Host mk-intr" in cfg.read_text() and (conf / "profiles" / "intr.toml").is_file()
    report, _ = json_report("--profile", "intr", "--only", "MK501", "--offline", config_dir=conf,
                            env={"HOME": str(tmp_path / "home")})
    assert by_id(report)["MK501"]["status"] == "pass", report
    assert not (box.dropin_dir / DROPIN_NAME).exists() and reloads(box) == hups


@pytest.mark.parametrize("how", ["keypress", "signal"])
def test_ctrl_c_at_sudos_password_prompt(sandbox_factory, tmp_path, how):
    """Ctrl-C at sudo's own prompt (step 11, after the files are written). Typed, it
    goes through ssh -t's terminal to sudo on the server: the change is not applied,
    exit 1, and the files are said to stay written. A SIGINT to mkdoctor itself: exit
    130, and the message says the files stay and the change was cut off. Either way
    the server is untouched and nothing written locally is rolled back."""
    box = sandbox_factory(sudo_password=True, password=PASSWORD)
    child, _, _, hups = to_step_11(box, tmp_path, "sudo")
    try:
        child.send("y")
        child.expect(r"\[sudo\] password for " + box.user)
        written = files_of(tmp_path)
        interrupt(child, how)
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close()
    shown = child.logfile_read.getvalue()
    assert "every file is as it was" not in shown and "Nothing was written" not in shown
    if how == "signal":
        assert child.exitstatus == 130, shown
        assert "interrupted; the configuration files of step 10 stay written (backups: " in shown
        assert "the sshd hardening was interrupted while being applied" in shown
    else:
        assert child.exitstatus == 1, shown
        assert "the sshd hardening was NOT applied: not applied: the command on the server " \
               "did not finish (interrupted there, e.g. Ctrl-C at sudo's prompt" in shown
        assert "The configuration files above are written." in shown
    assert files_of(tmp_path) == written
    assert not (box.dropin_dir / DROPIN_NAME).exists() and reloads(box) == hups
    assert box.ssh("true").returncode == 0
