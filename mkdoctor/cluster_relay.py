"""The cluster relay: carries the kernel's two link connections from a compute node to
the login node through ``srun``'s own stdin/stdout, and ends the job on every exit path.

This file is shipped inside the launch command (compressed, base64: see
:func:`mkdoctor.cluster.relay_code`) and runs with the cluster's ``python3`` (3.6+,
standard library only), in two roles:

``login PORT1 PORT2 NAME -- SRUN_ARGS... -- KERNEL LINKFLAG``
    On the login node, started by the ssh session of the launch command (whose ``-R``
    forwards listen on the login node's 127.0.0.1:PORT1/PORT2). It runs ``srun
    SRUN_ARGS python3 -c CODE node KERNEL LINKFLAG`` with pipes for stdin/stdout and
    connects each link channel the node opens to 127.0.0.1:PORTn. It is the watchdog:
    when its ssh session ends (its parent process dies: the connection dropped, the front
    end killed ssh, ``kill -9`` of the local ssh) or it gets SIGHUP/SIGTERM/SIGINT, it runs
    ``scancel --name NAME --user USER`` and ends ``srun``. Its stdin is not watched: the
    front end may run the launch command with stdin at end of file.
``pipe PREFIX -- SRUN_ARGS... -- KERNEL LINKFLAG`` and ``laptop PORT1 PORT2 -- SSH_ARGV``
    The way for login nodes that refuse port forwarding: on the login node, ``pipe`` runs
    the same srun and passes the frames through unchanged between srun and its own ssh
    session's stdin/stdout (the end of its stdin, which is the laptop relay's pipe, ends
    the job like the loss of its parent); on the laptop, ``laptop`` runs that ssh and
    connects the channels to the front end's ports on 127.0.0.1 (the ``login`` role's
    work, done one hop later).
``node KERNEL LINKFLAG``
    On the compute node (a task of that srun). Listens on two free ports of the node's
    127.0.0.1, starts the kernel in its own process group with
    ``-LinkMode Connect -LinkProtocol TCPIP -LinkName n1@127.0.0.1,n2@127.0.0.1``, and
    relays each accepted connection as a channel over stdout (to srun) and stdin (from
    srun). The kernel's own output goes to stderr (srun carries it to the launch
    command's stderr). It ends the kernel's process group when the link closes (after a
    grace period), when its stdin ends (the login side is gone) or on SIGTERM (scancel,
    the end of the time limit), and exits with the kernel's status.

The channel protocol is one text line per message (so that no line buffering anywhere
can hold back a frame): ``O ch`` opened, ``D ch BASE64`` data, ``C ch`` closed,
``N host job`` where the kernel runs, ``K status`` the kernel exited, ``E text`` an
error of the node side.
"""

import base64
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import zlib

PROBE = "@probe"  # the kernel argument that asks for the path probe instead of a kernel
_PROBE_CODE = (
    "import socket,sys\n"
    "n=sys.argv[sys.argv.index('-LinkName')+1]\n"
    "s=[socket.create_connection(('127.0.0.1',int(p.split('@')[0])),10) for p in n.split(',')]\n"
    "[c.sendall(b'mkdoctor-probe\\n') for c in s]\n"
    "s[0].recv(1)\n")
GRACE = 5.0  # seconds a kernel may take to exit after its link closed
CHUNK = 16384


def _say(text):
    try:
        sys.stderr.write("mkdoctor-relay: %s\n" % text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _Lines(object):
    """Reads newline-ended lines from a file descriptor without blocking."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def read(self):
        """New complete lines, or None at end of file."""
        data = os.read(self.fd, CHUNK * 2)
        if not data:
            return None
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return lines


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _frame(kind, ch=None, payload=b""):
    parts = [kind.encode()]
    if ch is not None:
        parts.append(str(ch).encode())
    if payload:
        parts.append(payload)
    return b" ".join(parts) + b"\n"


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (OSError, ProcessLookupError):
        pass


# ---------------------------------------------------------------------------- node


def hold():
    """Tasks other than task 0 hold the allocation's extra slots (for subkernels, which
    run as steps of this job with srun --overlap) and do nothing else; they end on
    SIGTERM, which srun --wait sends after task 0 (the relay with the kernel) ended."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    while not stop:
        time.sleep(0.5)
    return 0


def node(argv):
    if os.environ.get("SLURM_PROCID", "0") != "0":
        return hold()
    kernel = argv[-2]  # KERNEL FLAG, after the words that load a module (if any)
    listeners = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        listeners.append(s)
    ports = [s.getsockname()[1] for s in listeners]
    linkname = "%d@127.0.0.1,%d@127.0.0.1" % (ports[0], ports[1])
    out = sys.stdout.fileno()
    argv = list(argv)
    if kernel == PROBE:  # MK604: no kernel, only the path (connect both ports, hold them)
        argv = [sys.executable, "-c", _PROBE_CODE]
    try:
        proc = subprocess.Popen(
            argv + ["-LinkMode", "Connect", "-LinkProtocol", "TCPIP", "-LinkName",
             linkname, "-LinkHost", "127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(),
            preexec_fn=os.setsid)
    except OSError as err:
        _write_all(out, _frame("E", None, ("cannot start %s: %s" % (kernel, err)).encode()))
        _say("cannot start the kernel %r on %s: %s" % (kernel, socket.gethostname(), err))
        return 127
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    _write_all(out, _frame("N", None, ("%s %s" % (socket.gethostname(),
                                                  os.environ.get("SLURM_JOB_ID", "?"))).encode()))
    sel = selectors.DefaultSelector()
    for ch, s in enumerate(listeners):
        sel.register(s, selectors.EVENT_READ, ("listen", ch))
    lines = _Lines(sys.stdin.fileno())
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, ("stdin", None))
    conns = {}
    pending = {0: [], 1: []}
    closed_at = None
    while True:
        if stop or proc.poll() is not None:
            break
        if closed_at is not None and time.monotonic() - closed_at > GRACE:
            _say("the kernel did not exit within %gs of its link closing: ending it" % GRACE)
            break
        for key, _ in sel.select(timeout=0.5):
            what, ch = key.data
            if what == "listen":
                conn, _ = key.fileobj.accept()
                sel.unregister(key.fileobj)
                key.fileobj.close()
                conns[ch] = conn
                for data in pending[ch]:
                    conn.sendall(data)
                pending[ch] = []
                sel.register(conn, selectors.EVENT_READ, ("conn", ch))
                _write_all(out, _frame("O", ch))
            elif what == "conn":
                if conns.get(ch) is not key.fileobj:
                    continue  # closed above, in this same batch, on the login side's "C"
                try:
                    data = key.fileobj.recv(CHUNK)
                except OSError:
                    data = b""
                if data:
                    _write_all(out, _frame("D", ch, base64.b64encode(data)))
                else:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    conns.pop(ch, None)
                    _write_all(out, _frame("C", ch))
                    closed_at = closed_at or time.monotonic()
            else:
                got = lines.read()
                if got is None:  # the login side is gone
                    stop.append("stdin")
                    break
                for line in got:
                    kind, _, rest = line.partition(b" ")
                    c, _, payload = rest.partition(b" ")
                    c = int(c) if c.isdigit() else -1
                    if kind == b"D" and c in (0, 1):
                        data = base64.b64decode(payload)
                        if c in conns:
                            try:
                                conns[c].sendall(data)
                            except OSError:
                                pass
                        else:
                            pending[c].append(data)
                    elif kind == b"C" and c in conns:
                        conn = conns.pop(c)
                        sel.unregister(conn)
                        conn.close()
                        closed_at = closed_at or time.monotonic()
    for conn in conns.values():
        conn.close()
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        end = time.monotonic() + 3
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        _kill_group(proc, signal.SIGKILL)
    rc = proc.wait()
    try:
        _write_all(out, _frame("K", None, str(rc).encode()))
    except OSError:
        pass
    return rc if rc >= 0 else 128 - rc


# ---------------------------------------------------------------------------- login


def _parent_watch():
    """Ask Linux to send SIGTERM when the parent (the ssh session) dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the ppid poll below still works
        pass


def _signals(stop):
    def on_signal(signum, frame):
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _srun_command(argv):
    """(job name, srun argv) from ``PREFIX -- SRUN_ARGS -- KERNEL FLAG``."""
    # One name per launch: scancel --name must never reach another kernel's job.
    name = "%s-%s" % (argv[0], base64.b32encode(os.urandom(5)).decode().lower())
    rest = argv[2:]  # argv[1] == "--"
    cut = rest.index("--")
    srun_args, node_args = rest[:cut], rest[cut + 1:]
    blob = globals().get("B")
    if not blob:  # run as a file (tests): ship this file's own source
        with open(__file__, "rb") as fh:
            blob = base64.b64encode(zlib.compress(fh.read(), 9)).decode()
    node_cmd = ["python3", "-c", STUB % blob, "node"] + node_args
    return name, ["srun", "--job-name=" + name] + srun_args + node_cmd


def _connect_loop(child, ports, stop, parent, where):
    """Relay frames from ``child``'s stdout to connections to 127.0.0.1:PORTn (opened when
    the node says ``O n``) and back to ``child``'s stdin, until ``stop`` gets a reason,
    the child's output ends, or (``parent`` not None) our parent process changes.
    Returns the kernel's status when the node reported it."""
    to_node = child.stdin.fileno()
    sel = selectors.DefaultSelector()
    lines = _Lines(child.stdout.fileno())
    sel.register(child.stdout.fileno(), selectors.EVENT_READ, ("child", None))
    conns = {}
    rc = None
    while not stop:
        if parent is not None and os.getppid() != parent:
            stop.append("parent")
            break
        for key, _ in sel.select(timeout=0.5):
            what, ch = key.data
            if what == "child":
                got = lines.read()
                if got is None:
                    stop.append("child")
                    break
                for line in got:
                    kind, _, rest_ = line.partition(b" ")
                    c, _, payload = rest_.partition(b" ")
                    if kind == b"N":
                        _say("kernel on %s" % rest_.decode(errors="replace"))
                        continue
                    if kind == b"E":
                        _say(rest_.decode(errors="replace"))
                        continue
                    if kind == b"K":
                        rc = int(rest_) if rest_.strip().lstrip(b"-").isdigit() else None
                        continue
                    c = int(c) if c.isdigit() else -1
                    if c not in (0, 1):
                        continue
                    if kind == b"O":
                        try:
                            conn = socket.create_connection(("127.0.0.1", ports[c]), timeout=10)
                        except OSError as err:
                            _say("cannot reach link port %d on %s: %s" % (ports[c], where, err))
                            _write_all(to_node, _frame("C", c))
                            continue
                        conns[c] = conn
                        sel.register(conn, selectors.EVENT_READ, ("conn", c))
                    elif kind == b"D" and c in conns:
                        try:
                            conns[c].sendall(base64.b64decode(payload))
                        except OSError:
                            pass
                    elif kind == b"C" and c in conns:
                        conn = conns.pop(c)
                        sel.unregister(conn)
                        conn.close()
            else:
                if conns.get(ch) is not key.fileobj:
                    continue  # closed above, in this same batch, on the node's "C"
                try:
                    data = key.fileobj.recv(CHUNK)
                except OSError:
                    data = b""
                try:
                    if data:
                        _write_all(to_node, _frame("D", ch, base64.b64encode(data)))
                    else:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        conns.pop(ch, None)
                        _write_all(to_node, _frame("C", ch))
                except OSError:
                    pass
    for conn in conns.values():
        conn.close()
    return rc


def _end_srun(srun, name, stop):
    if srun.poll() is None:
        if stop and stop[0] != "child":
            _say("ending the job (%s)" % stop[0])
            _scancel(name)
        try:
            srun.stdin.close()
        except OSError:
            pass
        end = time.monotonic() + 10
        while srun.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        if srun.poll() is None:
            _scancel(name)
            os.killpg(srun.pid, signal.SIGKILL)
    code = srun.wait()
    return code if code >= 0 else 128 - code


def _start_srun(argv):
    """The login node's part of both paths: watch the parent (sshd's session), catch the
    signals that end it, and start the job's srun. (name, srun, stop, parent), srun None
    when it cannot run."""
    name, srun_argv = _srun_command(argv)
    parent = os.getppid()
    _parent_watch()
    stop = []
    _signals(stop)
    try:
        srun = subprocess.Popen(srun_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                start_new_session=True)
    except OSError as err:
        _say("cannot run srun on the login node: %s" % err)
        srun = None
    return name, srun, stop, parent


def login(argv):
    """``P1 P2 PREFIX -- SRUN_ARGS -- KERNEL FLAG``: the link to the ssh -R forwards."""
    ports = [int(argv[0]), int(argv[1])]
    name, srun, stop, parent = _start_srun(argv[2:])
    if srun is None:
        return 127
    rc = _connect_loop(srun, ports, stop, parent, "the login node (the ssh -R forward)")
    code = _end_srun(srun, name, stop)
    return code if rc is None else rc


def pipe(argv):
    """``PREFIX -- SRUN_ARGS -- KERNEL FLAG``: no forwards; the frames go on through this
    ssh session's own stdin/stdout to the laptop relay (for login nodes that refuse
    ssh -R). The end of stdin is the end of the link here: our stdin is the laptop
    relay's pipe, never the front end's."""
    name, srun, stop, parent = _start_srun(argv)
    if srun is None:
        return 127
    pairs = {sys.stdin.fileno(): srun.stdin.fileno(), srun.stdout.fileno(): sys.stdout.fileno()}
    sel = selectors.DefaultSelector()
    for src in pairs:
        sel.register(src, selectors.EVENT_READ)
    while not stop:
        if os.getppid() != parent:
            stop.append("parent")
            break
        for key, _ in sel.select(timeout=0.5):
            try:
                data = os.read(key.fd, CHUNK * 4)
            except OSError:
                data = b""
            if not data:
                stop.append("child" if key.fd == srun.stdout.fileno() else "stdin")
                break
            try:
                _write_all(pairs[key.fd], data)
            except OSError:
                stop.append("laptop")
                break
    return _end_srun(srun, name, stop)


def laptop(argv):
    """``P1 P2 -- SSH_ARGV``: on the laptop, for the stdio path: run ssh (whose remote
    command is the ``pipe`` role) and connect the node's channels to the front end's
    link ports on this machine's 127.0.0.1."""
    ports = [int(argv[0]), int(argv[1])]
    ssh_argv = argv[3:]  # argv[2] == "--"
    stop = []
    _signals(stop)
    try:
        ssh = subprocess.Popen(ssh_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               start_new_session=True)
    except OSError as err:
        _say("cannot run ssh: %s" % err)
        return 127
    rc = _connect_loop(ssh, ports, stop, None, "this computer (the front end)")
    if ssh.poll() is None:
        try:
            ssh.stdin.close()  # the pipe role ends the job when its stdin ends
        except OSError:
            pass
        end = time.monotonic() + 10
        while ssh.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        if ssh.poll() is None:
            _kill_group(ssh, signal.SIGTERM)
    code = ssh.wait()
    code = code if code >= 0 else 128 - code
    return code if rc is None else rc


def _scancel(name):
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    try:
        subprocess.run(["scancel", "--name", name, "--user", user], timeout=20,
                       stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as err:
        _say("scancel failed: %s" % err)


# The one-line program that carries this file: B is its zlib-compressed source, base64.
STUB = ('import base64,zlib;B=%r;exec(compile(zlib.decompress(base64.b64decode(B)),'
        '"mkdoctor-relay","exec"))')


def main(argv):
    roles = {"login": login, "node": node, "pipe": pipe, "laptop": laptop}
    if not argv or argv[0] not in roles:
        _say("usage: login P1 P2 PREFIX -- SRUN_ARGS -- KERNEL FLAG | pipe PREFIX -- SRUN_ARGS "
             "-- KERNEL FLAG | laptop P1 P2 -- SSH_ARGV | node KERNEL FLAG")
        return 2
    return roles[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
