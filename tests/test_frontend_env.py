"""The launch command in the front end's environment, not mkdoctor's (issue 13, item 3).

On Linux the front end puts its own SystemFiles/Libraries first in LD_LIBRARY_PATH for
what it starts, and the system ssh then loads the front end's libcrypto and cannot start
(observed: "libcrypto.so.1.0.0: no version information available (required by ssh)");
a GUI app's PATH is not the shell's; SSH_AUTH_SOCK may be missing. Here:

- a real incompatible libcrypto: a shared object named libcrypto.so.3, compiled with gcc,
  with none of the versioned symbols ssh needs: the real /usr/bin/ssh fails on it exactly
  as reported (exit 127, "no version information available (required by /usr/bin/ssh)");
- MK404 against the sandbox's real sshd and the stand-in kernel (no Mathematica here),
  given that directory as the front end's (MKDOCTOR_FRONTEND_LIBRARIES): the OLD command
  form (bare ``ssh``, no env prefix) fails naming the front end's libraries, the new one
  (``/usr/bin/env -u LD_LIBRARY_PATH /usr/bin/ssh``) passes; without that directory, MK404's
  own stand-in library directory catches the old form all the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mkdoctor.checks.mk404_kernel_link import (GUI_PATH, frontend_environment, proof_lines,
                                               with_run_options)
from mkdoctor.launch import (LaunchSpec, frontend_unset, launch_command, split_launch, ssh_index,
                             ssh_part, substitute)
from tests.helpers import by_id, json_report
from tests.test_kernel_checks import LOGIN, assert_nothing_left
from tests.test_link_scenarios import FAST, PORTS, _same_network, kernel_in

integration = pytest.mark.integration
SSH = "/usr/bin/ssh"


# ------------------------------------------------------------------ pure parts


def test_the_command_names_the_tested_ssh_behind_env_u() -> None:
    spec = LaunchSpec("mk-ws", "/opt/k/WolframKernel", "tunnel", (50001, 50002), "14.1")
    command = launch_command(spec)
    tested = os.path.abspath(shutil.which("ssh"))
    assert command.startswith(f"/usr/bin/env -u LD_LIBRARY_PATH {tested} -R 50001:")
    local, _ = split_launch(substitute(command, "x", "y"))
    assert ssh_index(local) == 3 and ssh_part(local)[0] == tested
    old = LaunchSpec("mk-ws", "/opt/k/WolframKernel", "tunnel", (50001, 50002), "14.1",
                     ssh_binary="ssh", unset_env=())
    assert launch_command(old).startswith("ssh -R 50001:")


def test_platform_variables() -> None:
    assert frontend_unset("linux") == ("LD_LIBRARY_PATH",)
    assert frontend_unset("darwin") == ("DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH")
    assert frontend_unset("win32") == ()


def test_ssh_index_reads_env_prefixes() -> None:
    assert ssh_index(["ssh", "h", "k"]) == 0
    assert ssh_index(["/usr/bin/env", "-u", "A", "-u", "B", "/usr/bin/ssh", "h", "k"]) == 5
    assert ssh_index(["env", "-i", "X=1", "ssh", "h", "k"]) == 3
    assert ssh_index(["env", "-uA", "ssh", "h"]) == 2
    assert ssh_index(["/usr/bin/env", "python", "x"]) == -1
    assert ssh_index(["math", "-x"]) == -1


def test_run_options_go_after_ssh_behind_a_prefix() -> None:
    local = ["/usr/bin/env", "-u", "LD_LIBRARY_PATH", SSH, "-R", "1:127.0.0.1:1", "mk-ws", "k"]
    argv = with_run_options(local, "/tmp/cm", "/c/cfg", 2222)
    assert argv[:5] == ["/usr/bin/env", "-u", "LD_LIBRARY_PATH", SSH, "-F"]
    assert argv[-3:] == ["1:127.0.0.1:1", "mk-ws", "k"] and "-p" in argv


def test_frontend_environment() -> None:
    base = {"PATH": "/home/u/bin:/usr/bin", "LD_LIBRARY_PATH": "/own", "SSH_AUTH_SOCK": "/a",
            "HOME": "/home/u", "DYLD_FALLBACK_LIBRARY_PATH": "/x"}
    env = frontend_environment(base, "/fe/SystemFiles/Libraries", None)
    assert env["PATH"] == GUI_PATH and env["HOME"] == "/home/u"
    assert env["LD_LIBRARY_PATH"] == "/fe/SystemFiles/Libraries:/own"
    assert env["DYLD_LIBRARY_PATH"] == "/fe/SystemFiles/Libraries"
    assert "SSH_AUTH_SOCK" not in env and "DYLD_FALLBACK_LIBRARY_PATH" not in env
    assert frontend_environment(base, "/fe", "/desk")["SSH_AUTH_SOCK"] == "/desk"


def test_proof_lines_say_what_was_emulated() -> None:
    new = ["/usr/bin/env", "-u", "LD_LIBRARY_PATH", SSH, "h", "k"]
    proved, doubts = proof_lines(new, SSH, None, "systemctl --user show-environment")
    text = "\n".join(proved)
    assert f"names ssh by its path ({SSH})" in text and "the ssh MK201 tested" in text
    assert "removes it for ssh (env -u LD_LIBRARY_PATH)" in text
    assert "agent: none" in text and doubts == []
    _, doubts = proof_lines(["ssh", "h", "k"], "/opt/brew/bin/ssh", None, "x")
    assert doubts and "not the ssh MK201 tested (/opt/brew/bin/ssh)" in doubts[0]


def test_env_u_removes_the_variable_for_real() -> None:
    done = subprocess.run(["/bin/sh", "-c", "/usr/bin/env -u LD_LIBRARY_PATH /bin/sh -c "
                           "'echo ${LD_LIBRARY_PATH-unset}'"], capture_output=True, text=True,
                          env={"PATH": GUI_PATH, "LD_LIBRARY_PATH": "/fe"}, timeout=10)
    assert done.stdout.strip() == "unset"


# ------------------------------------------------------------------ the real ssh


@pytest.fixture(scope="module")
def frontend_libs(tmp_path_factory) -> Path:
    """A front end's SystemFiles/Libraries with an incompatible libcrypto.so.3: a real
    shared object (gcc) that has none of the versioned OpenSSL symbols ssh needs."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the incompatible libcrypto")
    d = tmp_path_factory.mktemp("fe") / "SystemFiles" / "Libraries" / "Linux-x86-64"
    d.mkdir(parents=True)
    src = d.parent / "standin.c"
    src.write_text("int mkdoctor_frontend_libcrypto_standin(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcrypto.so.3", "-o",
                    str(d / "libcrypto.so.3"), str(src)], check=True, timeout=60)
    for p in (d, *d.parents[:3]):
        p.chmod(0o755)
    return d


@integration
def test_incompatible_libcrypto_breaks_the_real_ssh_as_reported(frontend_libs: Path) -> None:
    if "libcrypto.so.3" not in subprocess.run(["ldd", SSH], capture_output=True, text=True).stdout:
        pytest.fail("this test needs an ssh linked against libcrypto.so.3")
    env = {"PATH": GUI_PATH, "LD_LIBRARY_PATH": str(frontend_libs)}
    broken = subprocess.run(["/bin/sh", "-c", "ssh -V"], capture_output=True, text=True, env=env,
                            timeout=10)
    assert broken.returncode == 127, broken
    # the very words users report
    assert "libcrypto.so.3: no version information available (required by ssh)" in broken.stderr
    fixed = subprocess.run(["/bin/sh", "-c", f"/usr/bin/env -u LD_LIBRARY_PATH {SSH} -V"],
                           capture_output=True, text=True, env=env, timeout=10)
    assert fixed.returncode == 0 and fixed.stderr.startswith("OpenSSH_"), fixed


def _mk404(netns_factory, sandbox_factory, sandbox_dir: Path, command_of, env: dict) -> dict:
    from mkdoctor.profile import Profile, save_profile

    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    results = {}
    for label, (ssh_binary, unset) in command_of.items():
        spec = LaunchSpec(destination=box.alias, kernel=kernel, mode="tunnel", link_ports=PORTS,
                          kernel_version="14.1", ssh_config=str(box.client_config),
                          ssh_binary=ssh_binary, unset_env=unset)
        path = sandbox_dir / f"{label}.toml"
        save_profile(Profile(name=label, host=box.alias, ssh_config=str(box.client_config),
                             kernel=kernel, kernel_version="14.1", mode="tunnel",
                             link_ports=list(PORTS), launch_command=launch_command(spec),
                             path=path))
        data, done = json_report("--profile", str(path), "--only", f"{LOGIN},MK201,MK402,MK403,MK404",
                                 *FAST, netns=laptop.name, env=env)
        assert "Traceback" not in done.stderr, done.stderr
        results[label] = by_id(data)
    assert_nothing_left([str(sandbox_dir)])
    return results


OLD_AND_NEW = {"old": ("ssh", ()), "new": ("", None)}


@integration
def test_mk404_old_command_fails_and_new_passes_with_the_front_ends_libcrypto(
        netns_factory, sandbox_factory, sandbox_dir: Path, frontend_libs: Path) -> None:
    got = _mk404(netns_factory, sandbox_factory, sandbox_dir, OLD_AND_NEW,
                 {"MKDOCTOR_FRONTEND_LIBRARIES": str(frontend_libs)})
    old, new = got["old"]["MK404"], got["new"]["MK404"]
    assert got["old"]["MK402"]["status"] == "pass"  # the kernel itself is fine
    assert old["status"] == "fail", old
    assert old["summary"].startswith("ssh cannot start in the front end's environment")
    assert "env -u LD_LIBRARY_PATH" in old["fix"]
    said = "\n".join(old["details"])
    assert "no version information available (required by ssh)" in said, said
    assert new["status"] == "pass", new
    assert "as the front end would" in new["summary"]
    details = "\n".join(new["details"])
    assert str(frontend_libs) in details and "removes it for ssh" in details
    assert "agent: none" in details


@integration
def test_mk404_own_stand_in_library_catches_the_old_command(
        netns_factory, sandbox_factory, sandbox_dir: Path) -> None:
    """No front end installed here: MK404's own stand-in library directory (an unloadable
    libcrypto) is enough to fail the old form and pass the new one."""
    got = _mk404(netns_factory, sandbox_factory, sandbox_dir, OLD_AND_NEW, {})
    assert got["old"]["MK404"]["status"] == "fail", got["old"]["MK404"]
    assert "front end's environment" in got["old"]["MK404"]["summary"]
    assert got["new"]["MK404"]["status"] == "pass", got["new"]["MK404"]


def test_login_probe_is_the_commands_own_login() -> None:
    from mkdoctor.checks.mk404_kernel_link import login_probe

    local = ["/usr/bin/env", "-u", "LD_LIBRARY_PATH", SSH, "-F", "c", "-R", "1:127.0.0.1:1",
             "-R2:127.0.0.1:2", "mk-ws", "/k -wstp"]
    assert login_probe(local, None, None) == [
        "/usr/bin/env", "-u", "LD_LIBRARY_PATH", SSH, "-o", "ControlPath=none", "-o",
        "ControlMaster=no", "-o", "BatchMode=yes", "-F", "c", "mk-ws", "exit 0"]


@integration
def test_mk404_front_end_without_the_agent_this_run_used(
        netns_factory, sandbox_factory, sandbox_dir: Path) -> None:
    """mkdoctor runs with an ssh agent (SSH_AUTH_SOCK) the front end does not get (no
    desktop session here gives one). A key that needs no agent: MK404 proves the front
    end's own login and passes. The same key with a passphrase, only usable through the
    agent: the run's login works (through the agent) but MK404 fails naming the agent."""
    import signal

    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    sock = sandbox_dir / "agent.sock"
    started = subprocess.run(["ssh-agent", "-a", str(sock)], capture_output=True, text=True,
                             timeout=10, check=True)
    pid = int(started.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        askpass = sandbox_dir / "askpass"
        askpass.write_text("#!/bin/sh\necho agent-only-passphrase\n")
        askpass.chmod(0o700)
        agent_env = {"SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
                     "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}

        def mk404() -> dict:
            data, done = json_report("--ssh-config", str(box.client_config), "--host", box.alias,
                                     "--only", f"{LOGIN},MK402,MK403,MK404", "--mode", "tunnel",
                                     "--kernel", kernel, *FAST, netns=laptop.name,
                                     env={"SSH_AUTH_SOCK": str(sock)})
            assert "Traceback" not in done.stderr, done.stderr
            return by_id(data)

        subprocess.run(["ssh-add", str(box.client_key)], env={**os.environ, **agent_env},
                       check=True, timeout=10, capture_output=True, stdin=subprocess.DEVNULL)
        checks = mk404()
        assert checks["MK404"]["status"] == "pass", checks["MK404"]
        assert "a login without this run's agent worked" in "\n".join(checks["MK404"]["details"])

        subprocess.run(["ssh-keygen", "-p", "-q", "-P", "", "-N", "agent-only-passphrase", "-f",
                        str(box.client_key)], check=True, timeout=10, capture_output=True)
        checks = mk404()
        assert checks["MK304"]["status"] == "pass", checks["MK304"]  # through the agent
        mk = checks["MK404"]
        assert mk["status"] == "warn", mk  # no desktop session here: a warning
        assert mk["summary"].startswith("the front end may not log in: this run used an ssh agent")
        assert "Permission denied" in "\n".join(mk["details"]) or \
            "passphrase" in "\n".join(mk["details"]), mk["details"]
    finally:
        os.kill(pid, signal.SIGTERM)
    assert_nothing_left([str(sandbox_dir)])


@integration
def test_mk404_warns_when_a_bare_ssh_is_not_the_tested_one(
        netns_factory, sandbox_factory, sandbox_dir: Path) -> None:
    """mkdoctor's PATH finds another ssh first (a copy of the real one in its own
    directory, as a Homebrew ssh would be): MK201 tests that one. A command with a bare
    ``ssh`` runs /usr/bin/ssh under the front end's PATH: MK404 warns; the command that
    names the tested ssh by its path passes."""
    other = sandbox_dir / "brew" / "bin"
    other.mkdir(parents=True)
    shutil.copy2(SSH, other / "ssh")
    for p in (other, other.parent, sandbox_dir):
        p.chmod(0o755)
    env = {"PATH": f"{other}:{os.environ['PATH']}"}
    got = _mk404(netns_factory, sandbox_factory, sandbox_dir,
                 {"bare": ("ssh", None), "named": (str(other / "ssh"), None),
                  "system": (SSH, None)}, env)
    assert got["bare"]["MK201"]["summary"].endswith(f"({other / 'ssh'})"), got["bare"]["MK201"]
    bare, named = got["bare"]["MK404"], got["named"]["MK404"]
    assert bare["status"] == "warn", bare
    assert f"runs /usr/bin/ssh, not the ssh MK201 tested ({other / 'ssh'})" in bare["summary"]
    assert named["status"] == "pass", named
    assert f"names ssh by its path ({other / 'ssh'})" in "\n".join(named["details"])
    system = got["system"]["MK404"]  # an absolute path, but not the ssh that was tested
    assert system["status"] == "warn", system
    assert f"the command's ssh ({SSH}) is not the one MK201 tested" in system["summary"]
