"""The pure helpers of checks/ssh.py, exercised directly: sentinel framing (wrap/parse),
parse_jump, base_args and the ControlPath; then the same framing through a real sshd.

The framing is run by a real local ``sh`` (what sshd hands the command line to when the
login shell is sh), and ssh's own failures come from the real ``ssh`` binary: nothing
here imitates ssh.
"""

from __future__ import annotations

import os
import shlex
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkdoctor.proc import Completed, ProcessRunner
from mkdoctor.openssh.session import SSHClient, parse_jump
from tests.harness.procs import is_alive
from tests.harness.sshd import SSHSandbox

# What a remote command can print: any text but NUL (not in an argv) and lone surrogates.
_printable = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                     max_size=40)


def client(**kw) -> SSHClient:
    return SSHClient("h.example.org", ProcessRunner(), **kw)


def through_sh(c: SSHClient, command, before: str = "") -> Completed:
    """Run the remote command line the way sshd does with a POSIX login shell
    (``$SHELL -c LINE``), with ``before`` printed first like a noisy startup file."""
    line = c.wrap(command)
    if before:
        line = f"{before}; {line}"
    return ProcessRunner().run(["sh", "-c", line], timeout=20)


# --- sentinel framing -------------------------------------------------------------------


def test_a_command_that_exits_255_is_told_apart_from_ssh_failing():
    c = client()
    done = through_sh(c, "exit 255")
    assert done.returncode == 0  # the wrapper itself exits 0: ssh's 255 stays ssh's
    result = c.parse(done)
    assert result.exit_code == 255 and not result.ok
    # ssh's own 255 (nothing listens on port 1): no frame, so no exit code of a command
    ssh = ProcessRunner().run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-p", "1",
                               "127.0.0.1", c.wrap("true")], timeout=20)
    assert ssh.returncode == 255, ssh.stderr
    failed = c.parse(ssh)
    assert failed.exit_code is None and not failed.ok
    assert failed.stdout == "" and "refused" in failed.noise + failed.stderr


def test_noise_before_the_frame_is_kept_apart():
    c = client()
    result = c.parse(through_sh(c, ["printf", "%s", "out"],
                                before="echo noise; printf 'err-noise\\n' >&2"))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out", "")
    assert result.noise == "noise\nerr-noise\n"


def test_an_output_without_the_end_frame_has_no_exit_code():
    c = client()
    cut = Completed(["ssh"], None, f"{c.token}\npartial", f"{c.token}\n", timed_out=True)
    result = c.parse(cut)
    assert result.exit_code is None and result.stdout == "partial" and result.timed_out


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(out=_printable, err=_printable, noise=_printable, code=st.integers(0, 255))
def test_framing_recovers_exactly_what_the_command_printed(out, err, noise, code):
    c = client()
    q = shlex.quote
    body = f"printf '%s' {q(out)}; printf '%s' {q(err)} >&2; exit {code}"
    result = c.parse(through_sh(c, body, before=f"printf '%s' {q(noise)}"))
    assert (result.exit_code, result.stdout, result.stderr) == (code, out, err)
    assert result.noise == noise


# --- parse_jump -------------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("jump", ("jump", None)),
    ("alice@jump.example.org:2222", ("jump.example.org", 2222)),
    ("ssh://alice@jump:2200", ("jump", 2200)),
    ("ssh://jump", ("jump", None)),
    ("[2001:db8::1]:2222", ("2001:db8::1", 2222)),
    ("ssh://bob@[2001:db8::1]:22", ("2001:db8::1", 22)),
    ("2001:db8::1", ("2001:db8::1", None)),
    ("first:22,second:33", ("first", 22)),
    (" u@first , u@second", ("first", None)),
    ("jump:notaport", ("jump", None)),
])
def test_parse_jump(spec, expected):
    assert parse_jump(spec) == expected


_hostname = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)
_user = st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True)


@given(user=st.none() | _user, host=_hostname | st.ip_addresses(v=6).map(str),
       port=st.none() | st.integers(1, 65535), uri=st.booleans(),
       more=st.lists(_hostname, max_size=2))
def test_parse_jump_finds_the_first_hop(user, host, port, uri, more):
    hop = f"[{host}]" if ":" in host and port is not None else host
    if port is not None:
        hop += f":{port}"
    if user:
        hop = f"{user}@{hop}"
    if uri:
        hop = "ssh://" + hop
    assert parse_jump(",".join([hop, *more])) == (host, port)


# --- base_args and the ControlPath ------------------------------------------------------


def test_base_args_carry_the_run_options_and_never_relax_host_keys(tmp_path):
    cfg, key = tmp_path / "cfg", tmp_path / "id"
    args = client(ssh_config=cfg, identity=key, user="alice", port=2222,
                  connect_timeout=2.5).base_args()
    assert args == ["ssh", "-F", str(cfg), "-i", str(key), "-o", "IdentitiesOnly=yes",
                    "-l", "alice", "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3"]
    assert client().base_args() == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    assert not any("StrictHostKeyChecking" in a or "KnownHostsFile" in a for a in args)
    # ssh -G reads the configuration: without BatchMode/ConnectTimeout, all else kept
    assert SSHClient._without_run_options(args) == args[:-4]


@given(st.floats(0.001, 3600))
def test_connect_timeout_is_a_whole_second_at_least_the_step_timeout(timeout):
    (option,) = [a for a in client(connect_timeout=timeout).base_args()
                 if a.startswith("ConnectTimeout=")]
    value = int(option.split("=")[1])
    assert value >= 1 and value >= timeout and value - timeout < 1


def test_control_path_is_private_and_short_enough_for_a_socket(tmp_path, monkeypatch):
    import tempfile

    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(long_tmp))  # a long $TMPDIR (macOS) is not used
    monkeypatch.setattr(tempfile, "tempdir", None)
    c = client()
    path = c.control_path
    directory = os.path.dirname(path)
    try:
        st_dir = os.stat(directory)
        assert stat.S_IMODE(st_dir.st_mode) == 0o700 and st_dir.st_uid == os.getuid()
        assert len(path.encode()) < 104  # sun_path: 104 bytes on macOS, 108 on Linux
        assert c.mux_args()[-2:] == ["-o", f"ControlPath={path}"]
        assert c.control_path == path  # one directory per client
    finally:
        c.close()
    assert not os.path.exists(directory)


# --- through a real sshd ----------------------------------------------------------------


@pytest.mark.integration
def test_exit_255_through_a_real_connection_is_the_commands(sandbox: SSHSandbox):
    c = SSHClient(sandbox.alias, ProcessRunner(), ssh_config=sandbox.client_config)
    try:
        assert c.login(20).ok
        result = c.run("exit 255", timeout=20)
        assert result.exit_code == 255 and result.ssh.returncode == 0, result
        assert c.run(["sh", "-c", "echo hi; exit 3"], timeout=20).exit_code == 3
        check = c.control("check")
        master = int(check.stderr.split("pid=")[1].split(")")[0])
        assert is_alive(master)
    finally:
        c.close()
    assert sandbox.accepted_count() == 1  # every command went through the one master
    for _ in range(50):  # ssh -O exit: the master ends
        if not is_alive(master):
            break
        time.sleep(0.1)
    assert not is_alive(master)
    assert c._dir is None



def test_reading_the_config_does_not_wait_for_a_login_in_progress(tmp_path):
    """ssh -G (and the connection's shared objects) have their own lock: a check that
    reads the configuration while the run's login is still authenticating (MK303 beside
    MK304) gets it at once. The login here goes to a port that accepts and never
    answers, so it lasts its whole ConnectTimeout (2 s)."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host silent\n    HostName 127.0.0.1\n    Port {silent.getsockname()[1]}\n"
                   f"    UserKnownHostsFile {tmp_path}/known_hosts\n")
    c = SSHClient("silent", ProcessRunner(), ssh_config=cfg, connect_timeout=2)
    try:
        login = threading.Thread(target=c.login, args=(10,))
        login.start()
        time.sleep(0.3)  # the login holds its lock now
        assert login.is_alive()
        assert c.config(5)["port"] == [str(silent.getsockname()[1])]
        assert c.shared("k", object) is c.shared("k", object)
        assert login.is_alive(), "config() waited for the login to end"
        login.join(15)
        assert not c.connected
    finally:
        c.close()
        silent.close()
