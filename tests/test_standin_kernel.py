"""The stand-in kernel (tests/standin_kernel.py) behaves like the kernel's command line in
what mkdoctor uses: ``-noprompt -run``, the small language subset, the link options
(case-insensitive) connecting to both ports, and the faults on demand."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mkdoctor.launch import LaunchSpec, kernel_argv
from mkdoctor.listen import LinkListener
from tests.test_kernel_checks import assert_nothing_left, install_standin


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    path = install_standin(tmp_path, "Wolfram/Mathematica/13.2/Executables/WolframKernel")
    yield path
    assert_nothing_left([str(tmp_path)])


def run(kernel: Path, *args: str, fault: str = "", stdin: str = "", timeout: float = 20):
    return subprocess.run([str(kernel), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "STANDIN_FAULT": fault,
                                                "HOME": str(kernel.parent)})


def test_run_evaluates_the_subset(kernel: Path) -> None:
    done = run(kernel, "-noprompt", "-run",
               'Print["a" <> "b", 1]; WriteString[$Output, ToString[$VersionNumber] <> "|"]; '
               'WriteString[$Output, $Version]; Exit[3]')
    assert done.returncode == 3
    assert done.stdout.startswith("ab1\n13.2|13.2.0 for Linux")


def test_options_are_case_insensitive_and_stdin_is_read_after_run(kernel: Path) -> None:
    done = run(kernel, "-NoPrompt", "-RUN", 'Print["x"]', stdin='Print[$ProcessorCount]\nExit[]\n')
    assert done.returncode == 0
    assert done.stdout == f"x\n{os.cpu_count()}\n"
    assert run(kernel, "-run", "Exit[]").stdout.startswith("Wolfram Language 13.2")  # banner
    bad = run(kernel, "-noprompt", "-run", 'Print["unterminated]')
    assert "Syntax::" in bad.stdout


def test_version_from_an_app_bundle_name(tmp_path: Path) -> None:
    k = install_standin(tmp_path, "Applications/Mathematica 7.app/Contents/MacOS/MathKernel")
    assert run(k, "-noprompt", "-run", "Print[$VersionNumber]").stdout == "7.\n"


@pytest.mark.parametrize("fault, rc, text", [
    ("licence", 1, "Mathematica cannot find a valid password."),
    ("activation", 1, "not activated"),
    ("crash", -signal.SIGSEGV, ""),
    ("expired", 1, "password has expired"),
    ("activation-limit", 1, "maximum number of activations"),
    ("mathlm", 1, "Could not connect to the MathLM license server"),
    ("processes:0", 1, "maximum number of kernel processes"),
])
def test_faults(kernel: Path, fault: str, rc: int, text: str) -> None:
    done = run(kernel, "-noprompt", "-run", "Exit[]", fault=fault)
    assert done.returncode == rc
    assert text in done.stdout + done.stderr


def test_fault_file_in_home_and_hang(kernel: Path) -> None:
    (kernel.parent / ".standin-fault").write_text("hang\n")
    env = {**os.environ, "HOME": str(kernel.parent)}
    env.pop("STANDIN_FAULT", None)
    proc = subprocess.Popen([str(kernel), "-noprompt", "-run", "Exit[]"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1)
    proc.kill()
    proc.wait()


def test_slow_start(kernel: Path) -> None:
    started = time.monotonic()
    assert run(kernel, "-noprompt", "-run", "Exit[]", fault="slow:1").returncode == 0
    assert time.monotonic() - started >= 1


def _ports() -> tuple[int, int]:
    out = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            out.append(s.getsockname()[1])
    return out[0], out[1]


@pytest.mark.parametrize("version", ["14.1", "9.0"])
def test_link_connects_to_both_ports_and_exits_when_closed(kernel: Path, version: str) -> None:
    ports = _ports()
    argv = kernel_argv(LaunchSpec("h", str(kernel), "tunnel", ports, kernel_version=version))
    assert argv[1] == ("-mathlink" if version == "9.0" else "-wstp")
    with LinkListener("127.0.0.1", ports) as lis:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert lis.connected_all(10), proc.stderr
            assert proc.poll() is None  # stays connected
            lis.close_connections()
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_link_fails_when_nobody_listens(kernel: Path) -> None:
    ports = _ports()
    done = run(kernel, "-wstp", "-linkmode", "connect", "-linkprotocol", "TCPIP", "-linkname",
               f"{ports[0]},{ports[1]}", "-linkhost", "127.0.0.1")
    assert done.returncode == 1
    assert "LinkConnect" in done.stderr


def test_spawn_hang_leaves_a_child_in_the_same_process_group(kernel: Path) -> None:
    """The fault MK402's process-group kill is tested with: two processes, one group."""
    import psutil

    proc = subprocess.Popen([str(kernel), "-noprompt", "-run", "Exit[]"], start_new_session=True,
                            env={**os.environ, "STANDIN_FAULT": "spawn-hang"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def forked() -> list:
            """The stand-in's forked child: a copy of the running interpreter (the same
            command line). Not a helper of the interpreter's start (pyenv's shims run
            shell subshells with their own parent's command line before Python starts)."""
            try:
                me = psutil.Process(proc.pid).cmdline()
                kids = psutil.Process(proc.pid).children()
            except (psutil.ZombieProcess, psutil.NoSuchProcess):
                return []
            if not me or "python" not in Path(me[0]).name or str(kernel) not in " ".join(me):
                return []  # the interpreter has not started yet
            out = []
            for c in kids:
                try:
                    if c.cmdline() == me:
                        out.append(c)
                except (psutil.ZombieProcess, psutil.NoSuchProcess):
                    continue
            return out

        end = time.monotonic() + 10
        while not forked() and time.monotonic() < end:
            time.sleep(0.05)
        (child,) = forked()
        assert os.getpgid(child.pid) == os.getpgid(proc.pid) == proc.pid
        time.sleep(0.5)
        assert proc.poll() is None and child.is_running()  # both hang
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        child.wait(timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_link_linger_outlives_the_closed_link(kernel: Path) -> None:
    ports = _ports()
    argv = kernel_argv(LaunchSpec("h", str(kernel), "tunnel", ports, kernel_version="14.1"))
    with LinkListener("127.0.0.1", ports) as lis:
        proc = subprocess.Popen(argv, env={**os.environ, "STANDIN_FAULT": "link-linger"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert lis.connected_all(10)
            lis.close_connections()
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
        finally:
            proc.kill()
            proc.communicate()


def test_processes_fault_counts_the_other_kernels(kernel: Path) -> None:
    """processes:1 passes while no other stand-in runs, fails while one does."""
    assert run(kernel, "-noprompt", "-run", "Exit[]", fault="processes:1").returncode == 0
    other = subprocess.Popen([str(kernel), "-noprompt"], env={**os.environ, "STANDIN_FAULT": "hang"},
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        done = run(kernel, "-noprompt", "-run", "Exit[]", fault="processes:1")
        assert done.returncode == 1 and "maximum number of kernel processes" in done.stdout
    finally:
        other.kill()
        other.wait()


def test_mathlm_fault_needs_a_listening_server(kernel: Path) -> None:
    lic = kernel.parent / ".Wolfram" / "Licensing"
    lic.mkdir(parents=True)
    (lic / "mathpass").write_text("!127.0.0.1\n")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        ok = subprocess.run([str(kernel), "-noprompt", "-run", "Exit[]"], capture_output=True,
                            text=True, timeout=20,
                            env={**os.environ, "STANDIN_FAULT": "mathlm", "HOME": str(kernel.parent),
                                 "STANDIN_MATHLM_PORT": str(port)})
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([str(kernel), "-noprompt", "-run", "Exit[]"], capture_output=True,
                         text=True, timeout=20,
                         env={**os.environ, "STANDIN_FAULT": "mathlm", "HOME": str(kernel.parent),
                              "STANDIN_MATHLM_PORT": str(port)})
    assert bad.returncode == 1 and "127.0.0.1" in bad.stderr


def test_playing_wolframscript(tmp_path: Path) -> None:
    """Installed as wolframscript: answers -version like wolframscript, evaluates -code,
    never speaks WSTP with -wstp (hangs), and evaluates nothing given -noprompt -run."""
    ws = install_standin(tmp_path, "Wolfram/Mathematica/14.1/Executables/wolframscript")
    assert run(ws, "-version").stdout.startswith("WolframScript 1.12.0 for Linux")
    assert run(ws, "-code", 'Print["a" <> "b"]').stdout == "ab\n"
    done = run(ws, "-noprompt", "-run", 'Print["x"]; Exit[]')
    assert (done.returncode, done.stdout) == (0, "")
    with pytest.raises(subprocess.TimeoutExpired):
        run(ws, "-wstp", timeout=1.5)
