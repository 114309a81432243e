"""Remote accounts whose login shell is not a POSIX shell (csh/tcsh, fish).

sshd runs every remote command with the account's login shell, so a command line that
only sh can read breaks every remote check for a tcsh user. These tests run the real
shells (test.sh installs tcsh and fish) and a real sshd whose user logs in with them.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mkdoctor.launch import LaunchSpec
from mkdoctor.openssh.session import login_shell_command
from tests.helpers import by_id, json_report, run_mkdoctor
from tests.test_remote_checks import as_user
from tests.test_wizard import install_standin

pytestmark = pytest.mark.integration

SHELLS = ["sh", "dash", "bash", "tcsh", "fish"]


def shell_path(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/test.sh installs it)")
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An empty home: no user startup files (fish writes its own under it)."""
    return tmp_path_factory.mktemp("shell-home")


def run_in(shell: str, command_line: str, home, text: bool = True
           ) -> subprocess.CompletedProcess:
    """``SHELL -c LINE``, as sshd runs a command (``text=False``: the bytes as they came,
    without the newline translation of text mode, which turns a ``\r`` into ``\n``)."""
    return subprocess.run([shell_path(shell), "-c", command_line], capture_output=True,
                          text=text, timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})


# A script with everything that broke before: several lines, quotes of both kinds,
# backslash pairs, '!', $ and backquotes, a here-document, non-ASCII, an exit status.
SCRIPT = r"""if [ ! -e /nonexistent/mkdoctor ]; then
  echo 'single quoted' "double $((1+1))" `echo back` $(echo sub)
fi
printf '%s|%s\n' 'a\\b' "c\\d" 'e\'"'"'f'
cat <<'EOF'
here $x \n !
EOF
printf '%s\n' 'é ✓'
exit 3
"""


@pytest.mark.parametrize("shell", SHELLS)
def test_every_login_shell_runs_the_script_as_sh_does(shell, home):
    want = subprocess.run(["/bin/sh", "-c", SCRIPT], capture_output=True, text=True, timeout=30)
    assert want.returncode == 3 and "here $x \\n !" in want.stdout
    got = run_in(shell, login_shell_command(SCRIPT), home)
    assert (got.returncode, got.stdout, got.stderr) == (3, want.stdout, want.stderr)


def test_the_plain_command_line_is_what_broke_tcsh(home):
    """The fault this guards against, for real: tcsh cannot read a multi-line sh -c word."""
    got = run_in("tcsh", "exec sh -c " + shlex.quote(SCRIPT), home)
    assert got.returncode != 3 and "Unmatched" in got.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               max_size=40))
@example(text="a\rb\r\n")
def test_any_argument_arrives_intact_through_every_shell(home, text):
    line = login_shell_command("printf '%s' " + shlex.quote(text))
    for shell in ("dash", "tcsh", "fish"):
        got = run_in(shell, line, home, text=False)
        assert got.stdout == text.encode(), (shell, got.stderr)


# --- a real sshd whose user logs in with tcsh or fish ------------------------------------


STARTUP = {"tcsh": ".tcshrc", "fish": ".config/fish/config.fish"}


@pytest.mark.parametrize("shell", ["tcsh", "fish"])
def test_setup_and_every_remote_check_work_for_the_login_shell(sandbox_factory, tmp_path, shell):
    """The wizard installs a new key through the login shell, and every remote check
    passes; then a noisy startup file of that shell fails MK306, naming the file."""
    box = sandbox_factory(login_shell=shell_path(shell))
    # really that shell: a variable only it sets
    assert box.ssh({"tcsh": "echo $tcsh", "fish": "echo $FISH_VERSION"}[shell]).stdout.strip()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    shutil.copyfile(box.client_config, cfg)
    home = tmp_path / "home"
    home.mkdir()
    confdir = tmp_path / "conf"
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host",
                        "sandbox", "--name", "sh", "--mode", "tunnel", "--kernel", str(kernel),
                        "--new-key", "--install-key", config_dir=confdir,
                        env={"HOME": str(home)}, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    new_line = (home / ".ssh" / "id_ed25519_mk-sh.pub").read_text().strip()
    assert box.authorized_keys_path.read_text().splitlines()[-1] == new_line

    only = "MK301,MK302,MK303,MK304,MK305,MK306,MK312,MK401,MK402,MK501"
    report, done = json_report("--profile", "sh", "--only", only, "--offline",
                               "--sshd-config", str(box.sshd_config_path),
                               config_dir=confdir, env={"HOME": str(home)})
    checks = by_id(report)
    assert {k: v["status"] for k, v in checks.items()} == dict.fromkeys(only.split(","), "pass"), checks
    assert f"login shell {shell}" in checks["MK306"]["summary"]

    rc = box.home / STARTUP[shell]
    rc.parent.mkdir(parents=True, exist_ok=True)
    os_chown_tree(box, rc.parent)
    as_user(box, rc, "echo hello from my shell\n", 0o644)
    report, _ = json_report("--profile", "sh", "--only", "MK304,MK306", "--offline",
                            config_dir=confdir, env={"HOME": str(home)})
    mk306 = by_id(report)["MK306"]
    assert mk306["status"] == "fail", mk306
    assert f"~/{STARTUP[shell]}" in mk306["summary"]
    assert any("hello from my shell" in d for d in mk306["details"])


def os_chown_tree(box, path) -> None:
    import os

    while path != box.home and path != path.parent:
        os.chown(path, box.uid, box.gid)
        path = path.parent


# --- the front end's launch command, read by the remote login shell ----------------------

# Kernel paths as installs have them (spaces, parentheses, quotes, $, non-ASCII): every
# printable character but the two that csh and fish treat specially even inside single
# quotes, '!' (csh history) and '\' (fish), which no install path contains; and no
# backquote, which the launch command refuses (the front end's placeholders).
kernel_paths = st.text(st.characters(blacklist_characters="\x00\n\r!\\`", blacklist_categories=("Cs", "Cc")),
                       min_size=1, max_size=40).map(lambda s: "/" + s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_paths, st.sampled_from(["tunnel", "direct"]))
def test_launch_commands_remote_part_splits_alike_in_every_shell(home, kernel, mode):
    """The part of the launch command that ssh hands to the remote login shell gives the
    kernel the same argv under tcsh and fish as under sh."""
    from mkdoctor.launch import kernel_argv, launch_command, split_launch, substitute

    spec = LaunchSpec("mk-x", kernel, mode, (50001, 50002), "14.1", link_host="192.0.2.1")
    filled = substitute(launch_command(spec), "50001@192.0.2.1,50002@192.0.2.1", "192.0.2.1")
    local, want = split_launch(filled)
    remote = local[-1]
    for shell in ("sh", "tcsh", "fish"):
        got = run_in(shell, "printf '%s\\n' " + remote, home)
        assert got.returncode == 0 and got.stdout.split("\n")[:-1] == want, (shell, remote, got)


def test_sshd_hardening_applies_for_a_tcsh_account(sandbox_factory, tmp_path):
    """Step 11's script (sudo sh -c ..., several lines) through a tcsh login shell: the
    drop-in is written and validated on the real sandbox sshd."""
    from mkdoctor.wizard import security

    box = sandbox_factory(sudo=True, login_shell=shell_path("tcsh"))
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    ok, message = security.apply(security.Advice(["PermitRootLogin no"]), "sandbox", cfg,
                                 interactive=False)
    assert ok, message
    dropin = box.etc_ssh_dir / "sshd_config.d" / security.DROPIN.rsplit("/", 1)[1]
    assert "PermitRootLogin no" in dropin.read_text()
    assert box.ssh("true").returncode == 0
