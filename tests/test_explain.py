"""``mkdoctor explain "ERROR TEXT"``: the message table, the matching, the command line.

The real-thing tests make real OpenSSH print its messages (a real sshd sandbox, real
ssh, real shells) and feed exactly what it printed to ``explain``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkdoctor import cli, explain
from mkdoctor.messages import MESSAGES, ORIGINS
from mkdoctor.registry import check_ids

SSH = shutil.which("ssh") or "/usr/bin/ssh"


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(["explain", *argv])
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def top(text: str) -> str:
    found = explain.match(text)
    return found[0].message.key if found else ""


# ------------------------------------------------------------------ the table


def test_table_has_at_least_30_messages_each_cited_with_causes() -> None:
    assert len(MESSAGES) >= 30
    assert sum(len(m.samples) for m in MESSAGES) >= 90  # variants across versions
    keys = [m.key for m in MESSAGES]
    assert len(keys) == len(set(keys))
    known = set(check_ids())
    for m in MESSAGES:
        assert m.origin in ORIGINS, m.key
        assert m.samples and m.patterns and m.causes, m.key
        # a source: an OpenSSH file and function, a Wolfram page, or "observed"
        assert re.search(r"OpenSSH \S+\.c \w+\(\)|wolfram\.com|observed|glibc", m.source), m.key
        for cause in m.causes:
            assert cause.checks and set(cause.checks) <= known, (m.key, cause.checks)


@pytest.mark.parametrize("key,sample", [(m.key, s) for m in MESSAGES for s in m.samples])
def test_every_sample_ranks_its_own_entry_first(key: str, sample: str) -> None:
    assert top(sample) == key


@pytest.mark.parametrize("key,sample", [(m.key, s) for m in MESSAGES for s in m.samples])
def test_pasted_forms_still_match(key: str, sample: str) -> None:
    """What users paste: a prompt or log prefix, quotes, the line wrapped, spaces doubled,
    typographic quotes from a chat program, a trailing line of another program."""
    words = sample.split(" ")
    half = len(words) // 2
    wrapped = " ".join(words[:half]) + "\n  " + " ".join(words[half:]) if half else sample
    for pasted in (f"$ ssh lab\n{sample}\n$ ", f"'{sample}'", f"“{sample}”", wrapped,
                   sample.replace(" ", "  "), f"Dec  2 10:00:01 lab sshd[123]: {sample}"):
        assert top(pasted) == key, pasted


def test_the_issue_s_messages() -> None:
    """The texts the issue found exiting 2 'unknown check ID'."""
    assert top("The kernel Remote failed to connect to the front end. (Error = MLECONNECT). "
               "You should try running the kernel connection outside the front end.") == "mleconnect"
    assert top("MLECONNECT") == "mleconnect"
    assert top("Permission denied (publickey)") == "denied-publickey"
    assert top("Warning: remote port forwarding failed for listen port 31415") == "rfwd-failed"
    assert top("Host key verification failed.") == "host-key-unknown"
    assert top("kex_exchange_identification: read: Connection reset by peer") == "banner-closed"
    assert top("sh: 1: math: not found") == "not-found"
    assert top("LinkObject::linkd: Unable to communicate with closed link") == "linkd"


def test_more_specific_message_wins_over_its_parts() -> None:
    # "Connection refused" alone is ssh's; inside "open failed: connect failed:" it is a forward's
    assert top("Connection refused") == "refused"
    assert top("channel 3: open failed: connect failed: Connection refused") == "connect-to-failed"
    assert top("Received disconnect from 10.1.1.1 port 22:2: Too many authentication failures "
               "Disconnected from 10.1.1.1 port 22") == "too-many-auth"


def test_a_log_with_several_messages_lists_each() -> None:
    log = ("debug1: Connecting to lab [10.0.0.5] port 22.\n"
           "Warning: remote port forwarding failed for listen port 31415\n"
           "sh: 1: math: not found\n")
    keys = [m.message.key for m in explain.match(log)]
    assert {"rfwd-failed", "not-found"} <= set(keys)


def test_host_in_the_message_goes_into_the_command_quoted() -> None:
    code, out, _ = run_cli("bob@gpu-7.lab.example.org: Permission denied (publickey).")
    assert code == 0
    assert "mkdoctor --only MK304,MK305 --host bob@gpu-7.lab.example.org" in out
    # local checks need no host
    assert "run: mkdoctor --only MK202\n" in out
    # a hostile "host" is never put into a command
    found = explain.match("ssh: connect to host $(reboot) port 22: Connection refused")
    assert found[0].message.key == "refused"
    out = explain.render("x", found)
    assert "$(reboot)" not in out and "--profile NAME" in out


# ------------------------------------------------------------------ command line


def test_cli_known_text_exit_0_unknown_exit_1_id_page_bad_id_2() -> None:
    code, out, _ = run_cli("MLECONNECT")
    assert code == 0 and "MK403 link-path" in out and "run: mkdoctor --only" in out
    assert out.index("1. tunnel mode") < out.index("2. direct mode")
    code, out, _ = run_cli("Permission", "denied", "(publickey)")  # unquoted words
    assert code == 0 and "MK305 authorized-keys" in out
    code, out, _ = run_cli("the flux capacitor is out of sync")
    assert code == 1 and "does not recognise" in out
    code, out, _ = run_cli("mk304")
    assert code == 0 and out.startswith("# MK304")
    code, _, err = run_cli("MK999")
    assert code == 2 and "unknown check ID" in err
    code, _, err = run_cli("   ")
    assert code == 2 and err.count("\n") == 1
    code, out, _ = run_cli("-bash: WolframKernel: command not found")  # begins with '-'
    assert code == 0 and "MK401 kernel-found" in out
    code, out, _ = run_cli("-", stdin="Host key verification failed.\n")
    assert code == 0 and "MK303" in out
    code, out, _ = run_cli("--help")
    assert code == 0 and "error message" in out


def test_pasted_control_characters_are_never_echoed_raw() -> None:
    for text in ("\x1b[31mPermission denied (publickey).\x1b[0m", "\x1b]0;owned\x07 nothing known"):
        code, out, _ = run_cli(text)
        assert code in (0, 1) and "\x1b" not in out and "\x07" not in out
        assert "\\x1b" in out  # shown escaped


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_fuzz_any_text_exits_0_or_1_never_crashes(text: str) -> None:
    code, out, err = run_cli(text)
    if not text.strip() or text.strip() == "-" or re.fullmatch(r"(?i)MK\d{3}", text.strip()):
        assert code in (0, 1, 2)  # blank, or a check ID not in the catalogue: a usage error
    else:
        assert code in (0, 1), (text, err)
        assert "internal error" not in err and "Traceback" not in err


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([s for m in MESSAGES for s in m.samples]), st.text(max_size=60),
       st.text(max_size=60))
def test_fuzz_samples_inside_noise_still_match(sample: str, before: str, after: str) -> None:
    found = explain.match(f"{before}\n{sample}\n{after}")
    assert found  # the sample's entry, or a longer one the noise happened to form


def test_long_paste_is_fast() -> None:
    import time

    blob = ("debug1: " + "x" * 200 + "\n") * 2000 + "Permission denied (publickey).\n"
    t = time.monotonic()
    explain.match(blob)
    assert time.monotonic() - t < 2.0


# ------------------------------------------------------------------ the real thing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ssh(*args: str, timeout: float = 20) -> str:
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    done = subprocess.run([SSH, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)
    assert done.returncode != 0, done
    return done.stderr


def test_real_ssh_connection_refused() -> None:
    said = _ssh("-F", "/dev/null", "-o", "BatchMode=yes", "-p", str(_free_port()), "127.0.0.1", "true")
    assert "Connection refused" in said
    assert top(said) == "refused"


def test_real_ssh_bad_configuration_option(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text("Host *\n  FluxCapacitor yes\n")
    said = _ssh("-F", str(cfg), "-G", "x")
    assert top(said) == "config-option"


def test_real_ssh_identity_not_accessible_and_unresolvable(tmp_path: Path) -> None:
    said = _ssh("-F", "/dev/null", "-o", "BatchMode=yes", "-i", str(tmp_path / "nokey"),
                "-o", "ConnectTimeout=3", "nosuchhost.invalid", "true")
    assert "Could not resolve hostname" in said
    keys = [m.message.key for m in explain.match(said)]
    assert "resolve" in keys and "key-load" in keys


def test_real_shells_not_found() -> None:
    for shell in ("sh", "bash"):
        exe = shutil.which(shell)
        if not exe:
            continue
        done = subprocess.run([exe, "-c", "WolframKernel -noprompt"], capture_output=True, text=True)
        assert done.returncode == 127
        assert top(done.stderr) == "not-found", done.stderr


def test_real_sshd_permission_denied_publickey(sandbox_factory) -> None:
    box = sandbox_factory(authorize_client_key=False)
    done = box.ssh("true")
    assert done.returncode == 255
    assert "Permission denied (publickey" in done.stderr
    assert top(done.stderr) == "denied-publickey"
    code, out, _ = run_cli(done.stderr)
    assert code == 0 and f"--host {box.user}@" in out


def test_real_sshd_unknown_and_changed_host_key(sandbox, tmp_path: Path) -> None:
    said = sandbox.ssh("true", options=["-o", "UserKnownHostsFile=/dev/null",
                                         "-o", "StrictHostKeyChecking=yes"]).stderr
    assert top(said) == "host-key-unknown"
    other = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    line = sandbox.known_hosts.read_text().split()
    known.write_text(f"{line[0]} {other.with_suffix('.pub').read_text().split()[0]} "
                     f"{other.with_suffix('.pub').read_text().split()[1]}\n")
    said = sandbox.ssh("true", options=["-o", f"UserKnownHostsFile={known}",
                                         "-o", "StrictHostKeyChecking=yes"]).stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in said
    assert top(said) == "host-key-changed"


def test_real_sshd_refuses_reverse_forward(sandbox) -> None:
    box = sandbox
    box.add_dropin("10-noremote", "AllowTcpForwarding local")  # drop-ins win over the main file
    box.reload()
    port = _free_port()
    done = box.ssh("true", options=["-o", "ExitOnForwardFailure=yes",
                                     "-R", f"{port}:127.0.0.1:{port}"])
    assert f"remote port forwarding failed for listen port {port}" in done.stderr
    assert top(done.stderr) == "rfwd-failed"


def test_real_forward_to_nothing_connect_to_failed(sandbox) -> None:
    rport, lport = _free_port(), _free_port()  # nothing listens on lport: no front end
    script = (f"exec 3<>/dev/tcp/127.0.0.1/{rport} && sleep 1; exec 3>&-; sleep 1; true")
    done = sandbox.ssh("bash", "-c", repr(script), options=["-R", f"{rport}:127.0.0.1:{lport}"])
    assert f"connect_to 127.0.0.1 port {lport}: failed" in done.stderr, done.stderr
    assert top(done.stderr) == "connect-to-failed"


def test_real_unprotected_private_key(sandbox, tmp_path: Path) -> None:
    key = tmp_path / "id"
    shutil.copy(sandbox.client_key, key)
    os.chmod(key, 0o644)
    said = sandbox.ssh("true", options=["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes"]).stderr
    assert "UNPROTECTED PRIVATE KEY FILE" in said
    assert "key-perms" in [m.message.key for m in explain.match(said)]


def _one_shot_server(reply: bytes):
    """A TCP server on loopback that answers one connection with ``reply`` and closes."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(15)

    def serve() -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                if reply:
                    conn.sendall(reply)
        except OSError:
            pass
        finally:
            srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def test_real_ssh_closed_before_banner_and_not_an_ssh_server() -> None:
    port = _one_shot_server(b"")  # accepts, then closes: what a fail2ban'd sshd looks like
    said = _ssh("-F", "/dev/null", "-o", "BatchMode=yes", "-p", str(port), "127.0.0.1", "true")
    assert "kex_exchange_identification" in said, said
    assert top(said) == "banner-closed"
    port = _one_shot_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # a web server on the port
    said = _ssh("-F", "/dev/null", "-o", "BatchMode=yes", "-p", str(port), "127.0.0.1", "true")
    keys = [m.message.key for m in explain.match(said)]
    assert keys and keys[0] in ("banner-timeout", "banner-closed"), said


def test_real_sshd_unable_to_negotiate(sandbox) -> None:
    said = sandbox.ssh("true", options=["-o", "HostKeyAlgorithms=ssh-rsa"]).stderr
    assert "Unable to negotiate with" in said and "no matching host key type found" in said
    assert top(said) == "negotiate"


def test_real_sshd_too_many_authentication_failures(sandbox_factory, tmp_path: Path) -> None:
    box = sandbox_factory(authorize_client_key=False, extra_config="MaxAuthTries 2\n")
    keys = []
    for i in range(4):
        k = tmp_path / f"k{i}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
        keys += ["-i", str(k)]
    said = box.ssh("true", options=["-o", "IdentitiesOnly=yes", *keys]).stderr
    assert "Too many authentication failures" in said, said
    assert top(said) == "too-many-auth"
