"""MK401 kernel-found and MK402 kernel-starts, for real: a real sshd (the sandbox), the
stand-in kernel (tests/standin_kernel.py) installed in the standard Linux paths — shown
at /usr/local/Wolfram and /opt/Wolfram for the sandbox's sshd only, through its private
mount namespace (SSHSandbox(bind_mounts=...)) — and mkdoctor run as a user would.

Also the pure parts of checks/kernel.py (discovery output, version choice, the kernel
output classifier) with unit and property tests.

Shared helpers for tests/test_link_scenarios.py live here too: installing the stand-in and
asserting that no kernel, ssh or mkdoctor process is left behind.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest
from hypothesis import given, strategies as st

from mkdoctor import kernel as kernel_mod
from mkdoctor.kernel import (Install, choose, classify_run, discovery_script, non_posix_shell,
                           parse_discovery, run_expression, start_script, version_from_path,
                           version_key)
from tests.harness.sshd import SSHSandbox
from tests.helpers import by_id, free_port_pair, json_report, mkdoctor_env

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin_kernel.py"
KERNEL_NAMES = ("WolframKernel", "MathKernel")
LOGIN = "MK301,MK302,MK303,MK304"


# ------------------------------------------------------------------ shared helpers


def install_standin(root: Path, relative: str) -> Path:
    """Copy the stand-in kernel to ``root/relative`` (mode 755, directories 755)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STANDIN, path)
    path.chmod(0o755)
    d = path.parent
    while True:
        d.chmod(0o755)
        if d == root or d == d.parent:
            break
        d = d.parent
    return path


def _suspects(markers: list[str], kinds: tuple[str, ...] = ("kernel", "ssh", "mkdoctor")
              ) -> list[str]:
    """Running processes of a test (naming one of ``markers``) of the given kinds."""
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = proc.info.get("cmdline") or []
        if not cmd or proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        line = " ".join(cmd)
        # a kernel of this test: the stand-ins live under the test's own directories (the
        # suite runs files in parallel: another file's kernels are not this test's)
        kernel = (any(Path(c).name in KERNEL_NAMES or "standin_kernel" in c for c in cmd[:2])
                  and any(m in line for m in markers))
        ssh = Path(cmd[0]).name == "ssh" and any(m in line for m in markers)
        ours = "-m mkdoctor" in line and any(m in line for m in markers)
        if (kernel and "kernel" in kinds) or (ssh and "ssh" in kinds) or (ours and "mkdoctor" in kinds):
            out.append(f"{proc.info['pid']}: {line[:200]}")
    return out


def assert_nothing_left(markers: Iterable[str], wait: float = 5.0) -> None:
    """No stand-in kernel anywhere, no ssh client or mkdoctor naming ``markers``."""
    markers = list(markers)
    end = time.monotonic() + wait
    left = _suspects(markers)
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = _suspects(markers)
    assert not left, "processes left running:\n" + "\n".join(left)


@pytest.fixture
def nothing_left(sandbox_factory: Callable[..., SSHSandbox], sandbox_dir: Path) -> Iterator[None]:
    """After the test (and before its sandboxes stop — stopping would kill the evidence),
    no kernel, ssh or mkdoctor process of the test is running."""
    yield
    assert_nothing_left([str(sandbox_dir)])


def sandbox_args(box: SSHSandbox) -> list[str]:
    return ["--ssh-config", str(box.client_config), "--host", box.alias]


def report(box: SSHSandbox, only: str, *extra: str, netns: str | None = None) -> dict:
    data, done = json_report(*sandbox_args(box), "--only", only, "--offline", "--timeout", "3",
                             *extra, netns=netns)
    assert "Traceback" not in done.stderr, done.stderr
    return by_id(data)


# ------------------------------------------------------------------ pure: discovery


def test_version_from_path() -> None:
    assert version_from_path("/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel") == "14.1"
    assert version_from_path("/opt/Wolfram/WolframEngine/13.3.1/Executables/MathKernel") == "13.3.1"
    assert version_from_path("/Applications/Mathematica 7.app/Contents/MacOS/MathKernel") == "7"
    assert version_from_path("/Applications/Mathematica.app/Contents/MacOS/WolframKernel") == ""
    assert version_from_path(
        "C:\\Program Files\\Wolfram Research\\Wolfram Engine\\14.0\\WolframKernel.exe") == "14.0"
    assert version_from_path("/usr/bin/math") == ""


def test_parse_discovery_dedups_and_prefers_the_standard_name() -> None:
    text = (
        "U\tLinux\n"
        "K\tpath\t/usr/local/bin/wolfram\t/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel\t\n"
        "K\tstandard\t/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel\t"
        "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel\t\n"
        "K\tstandard\t/usr/local/Wolfram/Mathematica/9.0/Executables/MathKernel\t"
        "/usr/local/Wolfram/Mathematica/9.0/Executables/MathKernel\t\n"
        "K\tstandard\t/Applications/Wolfram.app/Contents/MacOS/WolframKernel\t"
        "/Applications/Wolfram.app/Contents/MacOS/WolframKernel\t14.2.0\n"
        "garbage line\n"
    )
    found = parse_discovery(text)
    assert found.uname == "Linux"
    paths = {i.path: i.version for i in found.installs}
    assert paths == {
        "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel": "14.1",
        "/usr/local/Wolfram/Mathematica/9.0/Executables/MathKernel": "9.0",
        "/Applications/Wolfram.app/Contents/MacOS/WolframKernel": "14.2.0",
    }
    assert choose(found.installs).path == "/Applications/Wolfram.app/Contents/MacOS/WolframKernel"


def test_given_path_states() -> None:
    found = parse_discovery("U\tLinux\nP\tabsolute\tnoexec\t/x/Mathematica/13.0/Executables/MathKernel\t"
                            "/x/Mathematica/13.0/Executables/MathKernel\n")
    assert found.given_state == "noexec" and found.given.version == "13.0"


def test_discovery_script_quotes_a_hostile_given_path(tmp_path: Path) -> None:
    evil = tmp_path / "a b$(touch pwned)'\"`x`"
    evil.write_text("#!/bin/sh\n")
    evil.chmod(0o755)
    done = subprocess.run(["sh", "-c", discovery_script(str(evil))], capture_output=True,
                          text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = parse_discovery(done.stdout)
    assert found.given_state == "ok" and found.given.path == str(evil)
    assert not (tmp_path / "pwned").exists()
    missing = parse_discovery(subprocess.run(
        ["sh", "-c", discovery_script(str(tmp_path / "nope"))], capture_output=True, text=True,
        timeout=30).stdout)
    assert missing.given_state == "missing"


def _plist(version: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
            "\t<key>CFBundleName</key>\n\t<string>Mathematica</string>\n"
            f"\t<key>CFBundleShortVersionString</key>\n\t<string>{version}</string>\n"
            "</dict>\n</plist>\n")


def test_discovery_script_finds_mac_and_windows_installs(tmp_path: Path, monkeypatch) -> None:
    """The real discovery script, run by the real sh, with the macOS and Windows places
    pointed at temp directories: app bundles (version from Info.plist, which wins over the
    bundle's name; none at all: unknown, ranked oldest) and a Git-Bash style Windows tree."""
    apps, win = tmp_path / "Applications", tmp_path / "c" / "Program Files" / "Wolfram Research"
    install_standin(apps, "Mathematica 13.app/Contents/MacOS/MathKernel")
    (apps / "Mathematica 13.app/Contents/Info.plist").write_text(_plist("13.0.1"))
    install_standin(apps, "Mathematica.app/Contents/MacOS/WolframKernel")  # no Info.plist
    exe = win / "Mathematica" / "13.3" / "WolframKernel.exe"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"MZ")
    exe.chmod(0o755)
    monkeypatch.setattr(kernel_mod, "MAC_APPS", (f"{apps}/Mathematica*.app", f"{apps}/Wolfram*.app"))
    monkeypatch.setattr(kernel_mod, "WINDOWS_ROOTS", (str(win),))
    monkeypatch.setattr(kernel_mod, "LINUX_PREFIXES", (str(tmp_path / "none"),))
    done = subprocess.run(["sh", "-c", discovery_script(None)], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    found = parse_discovery(done.stdout)
    versions = {i.path: i.version for i in found.installs}
    assert versions == {
        f"{apps}/Mathematica 13.app/Contents/MacOS/MathKernel": "13.0.1",
        f"{apps}/Mathematica.app/Contents/MacOS/WolframKernel": "",
        str(exe): "13.3",
    }
    assert choose(found.installs).path == str(exe)  # the newest; the unknown one ranks last


def test_non_posix_shell_is_recognised() -> None:
    assert non_posix_shell("'exec' is not recognized as an internal or external command,\r\n"
                           "operable program or batch file.")
    assert non_posix_shell("exec : The term 'exec' is not recognized as the name of a cmdlet, "
                           "function, script file, or operable program.")
    assert not non_posix_shell("sh: 1: exec: WolframKernel: not found")


versions = st.lists(st.integers(0, 30), min_size=1, max_size=3).map(lambda v: ".".join(map(str, v)))


@given(st.lists(versions, min_size=1, max_size=6))
def test_choose_picks_the_newest(vs: list[str]) -> None:
    installs = [Install(f"/opt/Wolfram/Mathematica/{v}/Executables/WolframKernel",
                        f"/r{i}", v, "standard") for i, v in enumerate(vs)]
    best = choose(installs)
    assert version_key(best.version) == max(version_key(v) for v in vs)


# ------------------------------------------------------------------ pure: kernel output


def test_classify_ok_needs_the_joined_sentinel() -> None:
    token = "abcd"
    # The command line (which contains the parts of the sentinel) echoed back is no answer.
    echoed = classify_run(run_expression(token), "", 0, token)
    assert echoed.outcome == "no-answer"
    ok = classify_run(f"MKDOK{token}|14.1.0 for Linux x86 (64-bit) (July 16, 2024)|14.1|8\n", "", 0, token)
    assert (ok.outcome, ok.version_number, ok.processor_count) == ("ok", "14.1", 8)
    assert ok.version.startswith("14.1.0 for Linux")


@pytest.mark.parametrize("out, err, rc, outcome", [
    ("\nMathematica cannot find a valid password.\n", "", 1, "licence"),
    ("", "Could not connect to the MathLM license server lm.example.org.", 1, "licence-server"),
    ("The maximum number of kernel processes allowed by your license (2) are already running.",
     "", 1, "licence-processes"),
    ("All licenses are in use.", "", 1, "licence-processes"),
    ("Your Mathematica password has expired.", "", 1, "licence-expired"),
    ("", "This activation key has reached the maximum number of activations (machines).", 1,
     "activation-limit"),
    ("", "Your Wolfram Engine installation is not activated or is experiencing a "
         "license-related problem.", 255, "activation"),
    ("The product exited during an activation attempt because an error occurred.", "", 1,
     "activation"),
    ("", "", 139, "crash"),
    ("MKD-KERNEL-TIMEOUT\n", "Killed", 137, "hang"),
    ("", "sh: 1: /x/WolframKernel: not found", 127, "not-found"),
    ("", "", 126, "not-executable"),
    ("In[1]:=", "", 0, "no-answer"),
])
def test_classify_failures(out: str, err: str, rc: int, outcome: str) -> None:
    assert classify_run(out, err, rc, "tok").outcome == outcome


def test_standin_outputs_are_classified_locally(tmp_path: Path) -> None:
    """The real wrapper script and the real stand-in, without ssh: each fault is told apart,
    and the hang is killed by the wrapper's own timeout."""
    kernel = install_standin(tmp_path, "Wolfram/Mathematica/13.3/Executables/WolframKernel")
    expected = {"": "ok", "licence": "licence", "activation": "activation", "crash": "crash",
                "hang": "hang"}
    for fault, outcome in expected.items():
        script = start_script(str(kernel), ["-noprompt", "-run", run_expression("t1")], 1)
        r, w = os.pipe()
        try:
            done = subprocess.run(["sh", "-c", script], stdin=r, capture_output=True, text=True,
                                  timeout=30, env={**os.environ, "STANDIN_FAULT": fault})
        finally:
            os.close(r)
            os.close(w)
        got = classify_run(done.stdout, done.stderr, done.returncode, "t1")
        assert got.outcome == outcome, (fault, done.stdout, done.stderr)
        if outcome == "ok":
            assert got.version_number == "13.3"
    assert_nothing_left([str(tmp_path)])


def test_wrapper_kills_the_kernel_when_our_client_goes_away(tmp_path: Path) -> None:
    kernel = install_standin(tmp_path, "WolframKernel")
    r, w = os.pipe()
    proc = subprocess.Popen(["sh", "-c", start_script(str(kernel), ["-noprompt"], 60)], stdin=r,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "STANDIN_FAULT": "hang"})
    os.close(r)
    time.sleep(0.5)
    started = time.monotonic()
    os.close(w)  # what the remote side sees when the local ssh dies
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - started < 3
    assert "MKD-CLIENT-GONE" in err
    assert_nothing_left([str(tmp_path)])


# ------------------------------------------------------------------ integration

integration = pytest.mark.integration


def _standard_layout(root: Path) -> tuple[Path, Path]:
    usr = root / "usr-local-Wolfram"
    opt = root / "opt-Wolfram"
    install_standin(usr, "Mathematica/13.3/Executables/WolframKernel")
    install_standin(usr, "WolframEngine/14.1/Executables/WolframKernel")
    install_standin(usr, "Wolfram/14.2/Executables/WolframKernel")  # the product's name since 14.1
    install_standin(opt, "Mathematica/9.0/Executables/MathKernel")
    return usr, opt


def _on_path(box: SSHSandbox, name: str, target: str) -> None:
    """``~/bin/NAME -> TARGET`` on the sandbox user's PATH (bash reads ~/.bashrc for a
    command run by sshd)."""
    bin_dir = box.home / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).symlink_to(target)
    rc = box.home / ".bashrc"
    if not rc.exists():
        rc.write_text('PATH="$HOME/bin:$PATH"; export PATH\n')
        rc.chmod(0o644)


@integration
def test_discovery_in_the_standard_linux_paths(sandbox_factory, sandbox_dir: Path,
                                               nothing_left: None) -> None:
    usr, opt = _standard_layout(sandbox_dir / "layout")
    box = sandbox_factory(bind_mounts={"/usr/local/Wolfram": usr, "/opt/Wolfram": opt})
    assert not Path("/usr/local/Wolfram").exists()  # the real machine is untouched
    # On the PATH: `math`, a link to a kernel outside the standard places, and `wolfram`,
    # a link to a standard install (listed once, under its standard name).
    # `MathKernel`, a link to a kernel whose path has no version.
    private = install_standin(box.home, "opt/Mathematica/12.0/Executables/MathKernel")
    _on_path(box, "math", str(private))
    newest = "/usr/local/Wolfram/Wolfram/14.2/Executables/WolframKernel"
    _on_path(box, "wolfram", newest)
    unversioned = install_standin(box.home, "kernels/MathKernel")
    _on_path(box, "MathKernel", str(unversioned))
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel-timeout", "10")
    mk401, mk402 = checks["MK401"], checks["MK402"]
    assert mk401["status"] == "pass", (mk401, checks)
    assert mk401["summary"].startswith(newest + " (version 14.2); 6 installs found")
    details = "\n".join(mk401["details"])
    assert "/usr/local/Wolfram/Mathematica/13.3/Executables/WolframKernel: version 13.3" in details
    assert "/usr/local/Wolfram/WolframEngine/14.1/Executables/WolframKernel: version 14.1" in details
    assert "/opt/Wolfram/Mathematica/9.0/Executables/MathKernel: version 9.0" in details
    assert f"{box.home}/bin/math (-> {private}): version 12.0 [on PATH]" in details
    assert f"{box.home}/bin/wolfram" not in details  # the same file as the standard 14.2
    assert f"{box.home}/bin/MathKernel (-> {unversioned}): version unknown [on PATH]" in details
    assert "cannot be read from its path counts as the oldest" in details
    assert "--kernel" in details  # how to choose another
    assert mk402["status"] == "pass", mk402
    assert "version 14.2" in mk402["summary"]
    assert "-wstp" in "\n".join(mk402["details"])


@integration
def test_no_kernel_anywhere_fails_with_where_it_looked(sandbox_factory, nothing_left: None) -> None:
    box = sandbox_factory()
    checks = report(box, f"{LOGIN},MK401,MK402")
    mk401 = checks["MK401"]
    assert mk401["status"] == "fail"
    assert mk401["summary"] == "no Wolfram kernel found on the remote host"
    assert "--kernel PATH" in mk401["fix"]
    assert any("/usr/local/Wolfram/" in d for d in mk401["details"])
    assert checks["MK402"]["status"] == "skip"


@integration
def test_kernel_path_with_spaces(sandbox_factory, nothing_left: None) -> None:
    box = sandbox_factory()
    kernel = install_standin(box.home, "Applications/Mathematica 7.app/Contents/MacOS/MathKernel")
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel", str(kernel), "--kernel-timeout", "10")
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    assert "version 7" in checks["MK401"]["summary"]
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    assert "version 7" in checks["MK402"]["summary"]
    assert "-mathlink" in "\n".join(checks["MK402"]["details"])  # before version 10


@integration
def test_given_kernel_missing_or_not_executable(sandbox_factory, nothing_left: None) -> None:
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    checks = report(box, f"{LOGIN},MK401", "--kernel", str(kernel) + "-typo")
    assert checks["MK401"]["status"] == "fail"
    assert "does not exist" in checks["MK401"]["summary"]
    kernel.chmod(0o644)
    checks = report(box, f"{LOGIN},MK401", "--kernel", str(kernel))
    assert checks["MK401"]["status"] == "fail"
    assert "not executable" in checks["MK401"]["summary"]
    assert checks["MK401"]["fix"].startswith("make it executable")


@integration
def test_given_kernel_is_a_directory(sandbox_factory, sandbox_dir: Path, nothing_left: None) -> None:
    """--kernel names the install directory, not the executable in it: the fix names the
    executable inside it; with a kernel found in the standard places, that one."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    install_dir = kernel.parent.parent
    mk401 = report(box, f"{LOGIN},MK401", "--kernel", str(install_dir))["MK401"]
    assert mk401["status"] == "fail", mk401
    assert mk401["summary"] == f"--kernel {install_dir} is a directory, not the kernel executable"
    assert mk401["fix"] == f"give the executable inside it, e.g. --kernel {kernel}"

    usr, opt = _standard_layout(sandbox_dir / "layout")
    box = sandbox_factory(bind_mounts={"/usr/local/Wolfram": usr, "/opt/Wolfram": opt})
    mk401 = report(box, f"{LOGIN},MK401", "--kernel", "/usr/local/Wolfram/Wolfram/14.2")["MK401"]
    assert mk401["status"] == "fail", mk401
    assert "is a directory" in mk401["summary"]
    assert mk401["fix"] == ("use the kernel that exists: --kernel "
                            "/usr/local/Wolfram/Wolfram/14.2/Executables/WolframKernel")


# A stand-in for cmd.exe as the login shell of a Windows OpenSSH server (its default shell):
# it runs nothing and answers as cmd.exe does for an unknown command (observed wording).
FAKE_CMD = """#!/bin/sh
w=$(printf '%s\\n' "$2" | awk '{print $1; exit}')
printf "'%s' is not recognized as an internal or external command,\\r\\noperable program or batch file.\\r\\n" "$w" >&2
exit 1
"""


@integration
def test_windows_cmd_login_shell_is_named(sandbox_factory, sandbox_dir: Path,
                                          nothing_left: None) -> None:
    """A remote login shell that is not a POSIX sh (Windows OpenSSH's cmd.exe): login works
    (ssh -N runs no shell), the search cannot run, and MK401 says why instead of guessing."""
    shell = sandbox_dir / "fake-cmd"
    shell.write_text(FAKE_CMD)
    shell.chmod(0o755)
    box = sandbox_factory(login_shell=str(shell))
    checks = report(box, f"{LOGIN},MK401,MK402")
    assert checks["MK304"]["status"] == "pass", checks["MK304"]
    mk401 = checks["MK401"]
    assert mk401["status"] == "skip", (mk401["summary"], mk401["details"])
    assert "cmd.exe or PowerShell" in mk401["summary"]
    assert "POSIX sh" in mk401["fix"]
    assert any("is not recognized as an internal or external command" in d for d in mk401["details"])


FAULTS = {
    "licence": ("no valid licence", "activate"),
    "expired": ("licence (password) has expired", "-licenseinfo"),
    "activation-limit": ("reached its limit of machines", "deactivate"),
    "activation": ("not activated", "wolframscript -activate"),
    "crash": ("crashed (SIGSEGV)", "by hand"),
    "hang": ("did not answer within 2 s", "--kernel-timeout"),
}


@integration
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_kernel_faults(fault: str, sandbox_factory, nothing_left: None) -> None:
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    fault_file = box.home / ".standin-fault"
    fault_file.write_text(fault + "\n")
    fault_file.chmod(0o644)
    started = time.monotonic()
    checks = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "2")
    mk402 = checks["MK402"]
    summary, fix = FAULTS[fault]
    assert mk402["status"] == "fail", mk402
    assert summary in mk402["summary"]
    assert fix in mk402["fix"]
    if fault == "hang":
        assert time.monotonic() - started < 15
    # nothing_left: no stand-in process remains on the server (same machine, psutil)


@integration
def test_slow_start_within_the_timeout_passes(sandbox_factory, nothing_left: None) -> None:
    """A kernel that takes 3 s to start, under an 8 s kernel timeout: MK402 waits for it
    (and took at least those 3 s: the fault was really there) and passes."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text("slow:3\n")
    checks = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "8")
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    assert checks["MK402"]["duration_s"] >= 3, checks["MK402"]


@integration
def test_slow_start_past_the_timeout_is_a_hang(sandbox_factory, nothing_left: None) -> None:
    """The same slow start (5 s) under a 2 s kernel timeout: a hang, stopped after 2 s, not
    waited for; nothing_left: the sleeping kernel was killed."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text("slow:5\n")
    checks = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "2")
    mk402 = checks["MK402"]
    assert mk402["status"] == "fail", mk402
    assert mk402["summary"] == "the kernel did not answer within 2 s (stopped; nothing left running)"
    assert 2 <= mk402["duration_s"] < 5, mk402


class KernelWatch:
    """Every process running ``kernel`` (its path on the command line), seen while a run
    goes on: pid, parent pid and start time, polled with psutil."""

    def __init__(self, kernel: Path) -> None:
        self.kernel = str(kernel)
        self.seen: dict[tuple[int, float], int] = {}  # (pid, create_time) -> ppid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "ppid", "cmdline", "create_time"]):
                if self.kernel in (proc.info.get("cmdline") or [])[:2]:
                    # the first parent seen: an orphan's parent changes when it is adopted
                    self.seen.setdefault((proc.info["pid"], proc.info["create_time"]),
                                         proc.info["ppid"])
            time.sleep(0.05)

    def __enter__(self) -> "KernelWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def parent_and_child(self) -> bool:
        pids = {pid for pid, _ in self.seen}
        return any(ppid in pids for ppid in self.seen.values())

    def alive(self) -> list[int]:
        import psutil

        out = []
        for pid, created in self.seen:
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out


@integration
def test_hung_kernel_with_a_child_is_killed_with_its_process_group(sandbox_factory,
                                                                   nothing_left: None) -> None:
    """The kernel forks a helper and both hang: MK402's timeout kills the whole process
    group, not just the kernel it started (a child left behind would hold a licence)."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text("spawn-hang\n")
    with KernelWatch(kernel) as watch:
        checks = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "2")
        time.sleep(0.5)
    mk402 = checks["MK402"]
    assert mk402["status"] == "fail", mk402
    assert "did not answer within 2 s" in mk402["summary"]
    assert watch.parent_and_child(), watch.seen  # the fault was there: a kernel and its child
    assert watch.alive() == [], watch.seen


@integration
@pytest.mark.parametrize("only", ["MK402", "MK401,MK404"])
def test_interrupted_run_leaves_no_kernel_on_the_server(sandbox_factory, sandbox_dir: Path,
                                                        nothing_left: None, only: str) -> None:
    """mkdoctor is stopped (SIGTERM) while a hung kernel runs with a 60 s kernel timeout:
    the remote kernel is gone within seconds, not after 60. MK402's ends when its ssh
    session does (its watchdog); the one MK404's launch command started does not, and is
    ended on the server as at the run's deadline."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text("hang\n")
    argv = [sys.executable, "-m", "mkdoctor", *sandbox_args(box), "--only", f"{LOGIN},{only}",
            "--offline", "--kernel", str(kernel), "--kernel-timeout", "60", "--format", "json"]
    cfg = sandbox_dir / "cfg"
    cfg.mkdir()
    tmp = sandbox_dir / "laptop-tmp"  # the run's temporary files (TMPDIR): none may stay
    tmp.mkdir()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=mkdoctor_env(cfg, TMPDIR=str(tmp)),
                            cwd=str(ROOT))
    try:
        end = time.monotonic() + 20
        # (MK404's kernel: the launch command's, not a check's probe)
        while not _suspects([str(sandbox_dir)], ("kernel",)) and time.monotonic() < end:
            time.sleep(0.1)
        assert _suspects([str(sandbox_dir)], ("kernel",)), "the stand-in never started"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        stopped = time.monotonic()
        assert_nothing_left([str(sandbox_dir)], wait=8)
        assert time.monotonic() - stopped < 8
        assert not list(tmp.iterdir()), list(tmp.iterdir())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.integration
def test_run_deadline_ends_a_hung_kernel_and_reports(sandbox_factory: Callable[..., SSHSandbox],
                                                     nothing_left: None) -> None:
    """The whole run's --deadline (3 s) passes while the kernel hangs under a 60 s kernel
    timeout: the run still ends and reports, MK402 is a fail ("timed out after"), MK404,
    which runs beside it, too (or skipped for MK402), and no kernel is left on the
    server: not MK402's (its watchdog ends it when our ssh goes) and not the one the
    launch command started for MK404 (a hung kernel does not exit when its ssh session
    ends: the engine's deadline cleanup kills it on the server before the run's programs
    are killed)."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text("hang\n")
    starts = counted_starts(box)
    started = time.monotonic()
    tmp = box.base_dir / "laptop-tmp"  # the run's temporary files (TMPDIR): none may stay
    tmp.mkdir()
    data, done = json_report(*sandbox_args(box), "--only", f"{LOGIN},MK401,MK402,MK404",
                             "--offline", "--kernel", str(kernel), "--kernel-timeout", "60",
                             "--deadline", "3", *own_pair(), env={"TMPDIR": str(tmp)})
    elapsed = time.monotonic() - started
    assert not list(tmp.iterdir()), list(tmp.iterdir())  # MK404's, cut off, cleaned up
    checks = by_id(data)
    assert elapsed < 10, elapsed
    assert done.returncode == 1
    assert checks["MK304"]["status"] == "pass"
    assert checks["MK402"]["status"] == "fail", checks["MK402"]
    assert "timed out after" in checks["MK402"]["summary"]
    # MK404 ran beside it: still at work when the deadline came ("timed out after"), or
    # done by then with its own failure, which the failed MK402 it overlaps replaces
    # (which of the two depends on how long Python took to start; both are the truth)
    mk404 = checks["MK404"]
    assert (mk404["status"] == "fail" and "timed out after" in mk404["summary"]
            or mk404["status"] == "skip" and "MK402" in mk404["summary"]), mk404
    # both kernels really started (so the cleanup had something to end)
    assert len(starts.read_text().splitlines()) == 2, (starts.read_text(), mk404)


# the sandbox is on loopback: MK403 proves direct mode there (tunnel mode cannot tell a
# forward from a local connection on the same machine)
DIRECT = ("--mode", "direct", "--link-host", "127.0.0.1")


def own_pair() -> tuple[str, str]:
    """--link-ports with a free pair: other test workers use the default pair."""
    return ("--link-ports", "%d,%d" % free_port_pair())


def counted_starts(box: SSHSandbox) -> Path:
    """~/.standin-starts: the stand-in writes one line there per start."""
    log = box.home / ".standin-starts"
    log.write_text("")
    os.chown(log, box.uid, box.gid)
    return log


@integration
@pytest.mark.parametrize("fault", ["slow:1+processes:1", "processes:1"])
def test_run_with_a_licence_for_one_kernel_at_a_time(sandbox_factory, nothing_left: None,
                                                     fault: str) -> None:
    """A licence that allows one kernel process, and a run that starts MK402's kernel and
    MK404's (the launch command) at the same time. Both taking 1 s before they ask for a
    licence, each sees the other and is refused: mkdoctor's doing, not the user's fault,
    so each refused check starts its kernel again once this run's other kernel has ended,
    one at a time, and both pass; a note says so. Started instantly they may not meet."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text(fault + "\n")
    starts = counted_starts(box)
    checks = report(box, f"{LOGIN},MK401,MK402,MK403,MK404", "--kernel", str(kernel),
                    "--kernel-timeout", "15", "--deadline", "90", *DIRECT, *own_pair())
    for cid in ("MK402", "MK404"):
        assert checks[cid]["status"] == "pass", [(c, checks[c]["status"], checks[c]["summary"]) for c in ("MK402", "MK403", "MK404")]
    again = [cid for cid in ("MK402", "MK404") if any(
        "started again alone" in d for d in checks[cid]["details"])]
    n = len(starts.read_text().splitlines())
    assert n == 2 + len(again), (n, again)
    if fault.startswith("slow"):  # they met: one or both were refused, then one at a time
        assert again, checks


@integration
def test_leftover_look_reads_the_server_when_told_not_when_opened(sandbox_factory,
                                                                 nothing_left: None) -> None:
    """MK404's first look for a kernel left on the server runs in a session opened while
    the kernel ran: it must list the processes when told (after the link closed), not when
    the session opened. A process started after the session opened is in its listing;
    one that exits within LOOK_WAIT_S of the look is not (the look waits for it on the
    server, as for a kernel that exits when its link closes); a look that is closed
    untold lists nothing (None: the caller looks anew)."""
    import secrets

    from mkdoctor.checks.mk404_kernel_link import LOOK_WAIT_S, _LeftoverLook
    from mkdoctor.context import Context
    from mkdoctor.options import Options, Target

    box = sandbox_factory()
    marker = f"mkd-look-{secrets.token_hex(4)}"
    brief = f"mkd-brief-{secrets.token_hex(4)}"
    ctx = Context(Options(ssh_config=box.client_config, offline=True, timeout=10, deadline=60),
                  Target(box.alias))
    try:
        assert ctx.ssh.login(10).ok
        look = _LeftoverLook(ctx, 30)
        time.sleep(0.5)  # the look's session is open and waiting
        started = ctx.ssh.run(f"nohup sh -c 'sleep 30' {marker} >/dev/null 2>&1 &", 10)
        assert started.exit_code == 0, started
        look.go(marker)
        listing = look.output(10)
        assert listing is not None and marker in listing, listing
        # a process that ends soon after the look began (as a kernel does once its link
        # closed) is waited for, not listed (nothing is: nothing carrying the name stayed)
        look = _LeftoverLook(ctx, 30)
        time.sleep(0.5)
        started = ctx.ssh.run(f"nohup sh -c 'sleep 1' {brief} >/dev/null 2>&1 &", 10)
        assert started.exit_code == 0, started
        assert LOOK_WAIT_S > 1
        look.go(brief)
        listing = look.output(10)
        assert listing is not None and brief not in listing, listing
        untold = _LeftoverLook(ctx, 30)
        untold.close()
        assert untold.output(10) is None
    finally:
        ctx.ssh.run(["pkill", "-f", marker], 10)
        ctx.close()


@integration
def test_run_whose_licence_refuses_every_kernel_reports_it(sandbox_factory, nothing_left: None) -> None:
    """The fault is real: a licence that refuses every kernel (``processes:0``) is not
    retried into a pass. MK402 fails "all licence processes are in use" (after one more
    start alone, since MK404's kernel ran beside it), MK404 is skipped behind it, and
    each check started at most two kernels."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (box.home / ".standin-fault").write_text("slow:1+processes:0\n")
    starts = counted_starts(box)
    checks = report(box, f"{LOGIN},MK401,MK402,MK403,MK404", "--kernel", str(kernel),
                    "--kernel-timeout", "15", "--deadline", "90", *DIRECT, *own_pair())
    assert checks["MK402"]["status"] == "fail", checks["MK402"]
    assert checks["MK402"]["summary"].startswith("all licence processes are in use")
    assert checks["MK404"]["status"] == "skip" and "MK402" in checks["MK404"]["summary"], checks["MK404"]
    assert 2 <= len(starts.read_text().splitlines()) <= 4, starts.read_text()


def _mathpass(box: SSHSandbox, server: str) -> None:
    d = box.home / ".Wolfram" / "Licensing"
    d.mkdir(parents=True, exist_ok=True)
    (d / "mathpass").write_text(f"!{server}\n")
    for p in (box.home / ".Wolfram", d, d / "mathpass"):
        os.chown(p, box.uid, box.gid)
    (box.home / ".standin-fault").write_text("mathlm\n")


@integration
def test_mathlm_server_unreachable_names_the_port(sandbox_factory, nothing_left: None) -> None:
    """A network licence: mathpass names a MathLM server (!127.0.0.1) and nothing listens on
    its port: MK402 names the server and the port to open, tested from the remote host; with
    a listener there (the control), the stand-in gets its licence and MK402 passes."""
    import socket

    from mkdoctor.kernel import MATHLM_PORT

    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    _mathpass(box, "127.0.0.1")
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", MATHLM_PORT))
    except OSError:
        pytest.fail(f"port {MATHLM_PORT} on 127.0.0.1 is taken: the test needs it free")
    mk402 = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "10")["MK402"]
    assert mk402["status"] == "fail", mk402
    assert mk402["summary"] == ("the licence server (MathLM) 127.0.0.1 named in mathpass cannot be "
                                f"reached from the remote host (TCP port {MATHLM_PORT})")
    assert f"open TCP port {MATHLM_PORT} from the remote host to 127.0.0.1" in mk402["fix"]
    assert any("NOT reachable" in d for d in mk402["details"])
    probe.listen(8)
    try:
        mk402 = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "10")["MK402"]
    finally:
        probe.close()
    assert mk402["status"] == "pass", mk402


@integration
def test_all_licence_processes_in_use_lists_the_running_kernels(sandbox_factory,
                                                                nothing_left: None) -> None:
    """The licence allows one kernel and one already runs (left running in the background):
    MK402 says all licence processes are in use and names that kernel's pid to end; once it
    is ended, the same MK402 passes."""
    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    started = box.ssh(f"STANDIN_FAULT=hang nohup {shlex.quote(str(kernel))} -noprompt "
                      ">/dev/null 2>&1 </dev/null & echo $!")
    pid = started.stdout.strip()
    assert pid.isdigit(), started
    try:
        (box.home / ".standin-fault").write_text("processes:1\n")
        mk402 = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "10")["MK402"]
        assert mk402["status"] == "fail", mk402
        assert mk402["summary"] == "all licence processes are in use: the licence allows no further kernel"
        assert f"kill {pid}" in mk402["fix"], mk402
        assert "$MaxLicenseProcesses" in mk402["fix"]
    finally:
        box.ssh(f"kill {pid}")
    time.sleep(0.5)
    mk402 = report(box, f"{LOGIN},MK402", "--kernel", str(kernel), "--kernel-timeout", "10")["MK402"]
    assert mk402["status"] == "pass", mk402
