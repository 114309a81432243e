"""Pure parts of the cluster support (mkdoctor/cluster.py, cluster_relay.py, the options):
the quoting through two real shells, input validation, the relay's protocol between its
two roles on this machine (no Slurm: srun replaced by a program that runs the task)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mkdoctor import cluster
from mkdoctor.cluster_relay import STUB
from mkdoctor.options import UsageError, slurm_cpus, slurm_time, slurm_word
from tests.helpers import run_mkdoctor

PRINTER = "import json, sys; print(json.dumps(sys.argv[1:]))"


def _through_shells(command: str, tmp: Path) -> tuple[list[str], list[str]]:
    """Run the launch command with real sh as the front end does, ssh replaced by a program
    that prints its argv; then run its last argument (the remote command) with real sh,
    python3 replaced by the same printer. Returns (local argv, remote argv)."""
    printer = tmp / "printer"
    printer.write_text(f"#!{sys.executable}\n{PRINTER}\n")
    printer.chmod(0o755)
    assert command.startswith("ssh ")
    local = json.loads(subprocess.run(["sh", "-c", f"{printer} {command[4:]}"], capture_output=True,
                                      text=True, check=True).stdout)
    remote_cmd = local[-1]
    assert remote_cmd.startswith("exec python3 ")
    remote = json.loads(subprocess.run(["sh", "-c", f"exec {printer} {remote_cmd[len('exec python3 '):]}"],
                                       capture_output=True, text=True, check=True).stdout)
    return local, remote


HOSTILE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`\x00"),
                  min_size=1, max_size=30).filter(lambda s: not any(ord(c) < 32 or ord(c) == 127 for c in s))


@settings(max_examples=40, deadline=None)
@given(kernel=HOSTILE, partition=HOSTILE, account=HOSTILE)
def test_launch_command_words_survive_two_real_shells(tmp_path_factory, kernel, partition, account) -> None:
    tmp = tmp_path_factory.mktemp("sh")
    s = cluster.ClusterSpec(destination="mk-hpc", kernel="/opt/" + kernel, link_ports=(31415, 31416),
                            partition=partition, account=account, time="01:00:00", cpus=2)
    local, remote = _through_shells(cluster.launch_command(s), tmp)
    assert local[:-2] == ["-o", "ExitOnForwardFailure=yes", "-R", "31415:127.0.0.1:31415",
                          "-R", "31416:127.0.0.1:31416"]
    assert local[-2] == "mk-hpc"
    assert remote == cluster.remote_words(s)[2:]
    assert f"--partition={partition}" in remote and f"--account={account}" in remote
    assert remote[-2:] == ["/opt/" + kernel, "-wstp"]


def test_the_relay_program_is_the_module_itself() -> None:
    prog = cluster.relay_program()
    assert "`" not in prog and "\n" not in prog and "!" not in prog
    import base64
    import zlib

    blob = prog.split("B='", 1)[1].split("'", 1)[0]
    src = zlib.decompress(base64.b64decode(blob)).decode()
    assert "def login(" in src and "def node(" in src and '"""' not in src
    compile(src, "relay", "exec")


@pytest.mark.parametrize("field,value", [("kernel", "/opt/`linkname`/k"), ("partition", "a`b"),
                                         ("account", "x\ny"), ("destination", "-oProxyCommand=x")])
def test_launch_command_refuses_placeholders_and_control_characters(field, value) -> None:
    kw = dict(destination="mk-hpc", kernel="/k", link_ports=(31415, 31416))
    kw[field] = value
    with pytest.raises(ValueError):
        cluster.launch_command(cluster.ClusterSpec(**kw))


def test_option_validation() -> None:
    assert slurm_time("01:00:00") == "01:00:00" and slurm_time("1-12") == "1-12"
    for bad in ("1h", "", "01:00:00; rm", "-1"):
        with pytest.raises(UsageError):
            slurm_time(bad)
    assert slurm_cpus("4") == 4
    for bad in ("0", "x", "-2", "99999"):
        with pytest.raises(UsageError):
            slurm_cpus(bad)
    for bad in ("", "a b", "-p", "x`y"):
        with pytest.raises(UsageError):
            slurm_word(bad, "--partition")


@pytest.mark.parametrize("args,message", [
    (["--scheduler", "slurm", "--time", "soon"], "--time"),
    (["--scheduler", "slurm", "--cpus", "0"], "--cpus"),
    (["--partition", "debug"], "only with --scheduler slurm"),
    (["--subkernels", "2"], "--subkernels: only with --scheduler slurm"),
    (["--scheduler", "slurm", "--subkernels", "-1"], "--subkernels '-1': must be a number from 0"),
    (["--scheduler", "slurm", "--subkernels", "two"], "--subkernels 'two'"),
    (["--scheduler", "pbs"], "invalid choice"),
])
def test_bad_cluster_flags_exit_2_in_one_line(args, message) -> None:
    done = run_mkdoctor(*args, "--only", "MK101")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_profile_cluster_fields_round_trip(tmp_path: Path) -> None:
    from mkdoctor.profile import Profile, load_profile, profile_from_dict, save_profile

    p = Profile(name="hpc", host="mk-hpc", kernel="/k", scheduler="slurm", partition="gpu",
                time="02:00:00", cpus=4, account="proj1", licenses="mathematica:1",
                path=tmp_path / "hpc.toml")
    save_profile(p)
    back = load_profile(str(tmp_path / "hpc.toml"))
    assert (back.scheduler, back.partition, back.time, back.cpus, back.account, back.licenses) == \
        ("slurm", "gpu", "02:00:00", 4, "proj1", "mathematica:1")
    with pytest.raises(UsageError):
        profile_from_dict({"host": "h", "scheduler": "slurm", "time": "later"})
    with pytest.raises(UsageError):
        profile_from_dict({"host": "h", "scheduler": "lsf"})


# ------------------------------------------------------------------ the relay, locally

FAKE_SRUN = textwrap.dedent("""\
    #!/bin/sh
    # stands in for srun: drops the options and runs the task here (the relay's protocol
    # is what is tested; the real srun is in tests/test_slurm_launch.py)
    while [ $# -gt 0 ]; do case "$1" in --*) shift;; *) break;; esac; done
    echo "$$" > "$FAKE_SRUN_PID"
    exec "$@"
""")
ECHO = textwrap.dedent("""\
    import selectors, socket, sys
    a = [x.lower() for x in sys.argv[1:]]
    name = sys.argv[1:][a.index("-linkname") + 1]
    socks = [socket.create_connection(("127.0.0.1", int(p.split("@")[0]))) for p in name.split(",")]
    sel = selectors.DefaultSelector()
    for s in socks: sel.register(s, selectors.EVENT_READ)
    while True:
        for k, _ in sel.select():
            d = k.fileobj.recv(65536)
            if not d: sys.exit(0)
            k.fileobj.sendall(d)
""")


def test_relay_roles_carry_binary_data_both_ways_locally(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(FAKE_SRUN)
    (bindir / "srun").chmod(0o755)
    (bindir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "scancel").chmod(0o755)
    (bindir / "python3").symlink_to(sys.executable)
    kernel = tmp_path / "echo-kernel"
    kernel.write_text(f"#!{sys.executable}\n{ECHO}")
    kernel.chmod(0o755)
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    ports = [s.getsockname()[1] for s in servers]
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_SRUN_PID=str(tmp_path / "pid"))
    relay = Path(cluster.__file__).with_name("cluster_relay.py")
    proc = subprocess.Popen([sys.executable, str(relay), "login", str(ports[0]), str(ports[1]),
                             "mkdoctor", "--", "--ntasks=1", "--", str(kernel), "-wstp"],
                            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        conns = []
        for s in servers:
            s.settimeout(20)
            conns.append(s.accept()[0])
        payload = bytes(range(256)) * 400 + b"\n\n\x00end"
        for c in conns:
            c.sendall(payload)
            got = b""
            c.settimeout(20)
            while len(got) < len(payload):
                got += c.recv(65536)
            assert got == payload
        conns[0].close()  # the front end closes the link: everything ends
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in servers:
            s.close()
