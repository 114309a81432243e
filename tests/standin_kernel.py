#!/usr/bin/env python3
"""A STAND-IN for the Wolfram kernel, for mkdoctor's tests only.

Mathematica cannot be installed on the test machines (it is licensed software), so the
tests install this script where a kernel would be (``/usr/local/Wolfram/Mathematica/
14.1/Executables/WolframKernel``, a path with spaces, ...) and mkdoctor runs it over a real
SSH connection exactly as it would run the real kernel. It implements only what mkdoctor
uses, with the documented command-line behaviour:

- ``-noprompt``: "Do not print banner or In[] and Out[] prompts or ask for user input due
  to startup errors" (reference.wolfram.com/language/ref/program/WolframKernel.html,
  .../program/wolfram.html, .../program/MathKernel.html).
- ``-run cmd``: "Run the command on startup" (same pages). A small subset of the Wolfram
  Language is evaluated: strings, ``<>``, ``$Version``, ``$VersionNumber``,
  ``$ProcessorCount``, ``ToString``, ``Print``, ``WriteString[$Output, ...]``,
  ``Exit[]``/``Exit[n]``, ``;`` sequencing. Then, like the console kernel, it reads
  further input from stdin until end of file.
- ``-wstp`` ("Communicate only via WSTP", WolframKernel.html) and its MathLink-era name
  ``-mathlink`` (``"/usr/local/bin/math -mathlink"`` in the example of
  reference.wolfram.com/language/ref/c/WSOpenString.html), with the link options:
  ``-linkname`` and ``-linkprotocol`` are the arguments WSOpenArgcArgv() recognises, and it
  "is not sensitive to the case of argument names" and "ignores argument names that it does
  not recognize" (reference.wolfram.com/language/ref/c/WSOpenArgcArgv.html); ``-linkmode``
  (listen, connect, launch) is one of the "standard MathLink/WSTP specifications for
  establishing a link" (reference.wolfram.com/language/NETLink/ref/net/html/
  M_Wolfram_NETLink_MathLinkFactory_CreateKernelLink_1.htm). ``-linkhost`` is in no Wolfram
  reference page we found: it is in the front end's default remote launch command
  (observed; see checks/launch.py), and the stand-in uses it only as the host of a link
  name that names none. ``-linkmode connect -linkprotocol tcpip -linkname "p1@h,p2@h"``
  connects to both ports (a TCPIP link name is two ports, "port1@host,port2@host":
  reference.wolfram.com/language/tutorial/RunningProgramsOnRemoteComputers.html) and stays
  connected until the other side closes a connection, or for ``STANDIN_LINK_TIMEOUT``
  seconds (default 120).

The version is the ``<version>`` directory of its own path (``.../Mathematica/13.3/
Executables/...`` -> 13.3) or the number in an app bundle name (``Mathematica 7.app``),
else 14.1.

Faults on demand: the first line of ``~/.standin-fault`` (the remote user's home) or the
environment variable ``STANDIN_FAULT``:

- ``licence``    print the classic password failure ("Mathematica cannot find a valid
                 password.") and exit 1
- ``activation`` print the Wolfram Engine activation failure ("Your Wolfram Engine
                 installation is not activated or is experiencing a license-related
                 problem.") and exit 1
                 (both wordings observed, as users quote them: see checks/kernel.py)
- ``hang``       never answer (sleep until killed)
- ``crash``      kill itself with SIGSEGV
- ``slow:N``     wait N seconds before starting; ``slow:N+FAULT`` waits, then FAULT
- ``spawn-hang`` start a child process (fork: same process group), then both never
                 answer: only a kill of the whole process group ends both
- ``link-linger`` in link mode, stay running after the front end closed the link (a
                 kernel that outlives its link would hold a licence)
- ``mathlm``     a network licence: every ``!server`` line of ``~/.Wolfram/Licensing/
                 mathpass`` is tried on TCP port ``STANDIN_MATHLM_PORT`` (default 16286);
                 none answering: print that the licence server cannot be reached, exit 1
- ``processes:N`` the licence allows N kernel processes: with N or more other stand-in
                 kernels of the same user running (read from /proc), print that the
                 maximum number of kernel processes is running, exit 1
- ``expired``    print that the licence password has expired, exit 1
- ``activation-limit`` print that the activation key reached its maximum number of
                 activations (machines), exit 1
(these four wordings are the stand-in's own, shaped like what users quote: the real
kernel's licence messages are documented nowhere; see mkdoctor/kernel.py)

Starts counted: when ``~/.standin-starts`` exists, each start appends the time
(``time.time()``) and its arguments to it (one line), so a test can count how often a run
started the kernel, and see which starts overlapped.

Playing wolframscript: installed under the name ``wolframscript`` (or with
``STANDIN_AS=wolframscript``) it answers ``-version``/``--version`` like wolframscript
("WolframScript 1.12.0 for Linux x86 (64-bit)"; the form on reference.wolfram.com/language/
workflow/InstallWolframScript.html), evaluates ``-code EXPR`` and otherwise does what is
observed of the real one when a front end or MK402 starts it as a kernel: with ``-wstp``
it never speaks WSTP and hangs (observed: ``LinkLaunch["wolframscript -wstp"]`` hangs), and
with ``-noprompt -run`` it evaluates nothing and exits when stdin ends.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import sys
import time
from typing import Any, Optional

LICENCE_TEXT = (
    "\nMathematica cannot find a valid password.\n\n"
    "Please see the help for information on how to obtain a password.\n"
)
ACTIVATION_TEXT = (
    "\nYour Wolfram Engine installation is not activated or is experiencing a "
    "license-related problem.\n\nPlease run wolframscript with the -activate option, and "
    "then try\n your original wolframscript command again.\n"
)


def own_version(path: str) -> str:
    norm = os.path.abspath(path)
    m = re.search(r"/(\d+(?:\.\d+)*)/Executables/", norm) or re.search(
        r"/(?:Mathematica|Wolfram)[^/]*?\s(\d+(?:\.\d+)*)\.app/", norm)
    return m.group(1) if m else "14.1"


VERSION = own_version(sys.argv[0])


def fault() -> str:
    text = os.environ.get("STANDIN_FAULT", "")
    if not text:
        try:
            with open(os.path.expanduser("~/.standin-fault"), encoding="utf-8") as fh:
                text = fh.readline()
        except OSError:
            text = ""
    return text.strip().lower()


# --------------------------------------------------------------------------- the language


class WLError(Exception):
    pass


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>\d+(?:\.\d*)?)|'
                    r'(?P<sym>\$?[A-Za-z][A-Za-z0-9$]*)|(?P<op><>|[\[\],;]))')


def tokenize(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WLError(f"Syntax::sntxf: \"{text[pos:pos + 20]}\" cannot be parsed.")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class Evaluator:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.symbols = {
            "$Version": f"{VERSION}.0 for Linux x86 (64-bit) (mkdoctor stand-in kernel)",
            "$VersionNumber": float(".".join(VERSION.split(".")[:2])),
            "$ProcessorCount": os.cpu_count() or 1,
            "$Output": "$Output",
        }

    def run(self, text: str) -> Any:
        self.toks, self.i = tokenize(text), 0
        result: Any = None
        while self.i < len(self.toks):
            if self.peek() == ";":
                self.i += 1
                result = None
                continue
            result = self.expr()
            if self.i < len(self.toks) and self.peek() != ";":
                raise WLError(f"Syntax::sntxf: unexpected {self.peek()!r}.")
        return result

    def peek(self) -> str:
        return self.toks[self.i][1] if self.i < len(self.toks) else ""

    def take(self, value: str) -> None:
        if self.peek() != value:
            raise WLError(f"Syntax::sntxf: expected {value!r}, got {self.peek()!r}.")
        self.i += 1

    def expr(self) -> Any:
        value = self.atom()
        while self.peek() == "<>":
            self.i += 1
            right = self.atom()
            if not isinstance(value, str) or not isinstance(right, str):
                raise WLError("StringJoin::string: String expected.")
            value += right
        return value

    def atom(self) -> Any:
        if self.i >= len(self.toks):
            raise WLError("Syntax::sntxi: Incomplete expression; more input is needed.")
        kind, text = self.toks[self.i]
        self.i += 1
        if kind == "str":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "sym":
            if self.peek() == "[":
                self.i += 1
                args = []
                while self.peek() != "]":
                    args.append(self.expr())
                    if self.peek() == ",":
                        self.i += 1
                self.take("]")
                return self.call(text, args)
            return self.symbols.get(text, text)
        raise WLError(f"Syntax::sntxf: unexpected {text!r}.")

    def call(self, name: str, args: list[Any]) -> Any:
        if name == "ToString":
            (x,) = args
            return fmt(x)
        if name == "Print":
            self.out.write("".join(fmt(a) for a in args) + "\n")
            self.out.flush()
            return None
        if name == "WriteString":
            self.out.write("".join(fmt(a) for a in args[1:]))
            self.out.flush()
            return None
        if name in ("Exit", "Quit"):
            raise Exit(int(args[0]) if args else 0)
        return f"{name}[{', '.join(fmt(a) for a in args)}]"


def fmt(x: Any) -> str:
    if isinstance(x, float):  # $VersionNumber prints like the kernel: 14.1, 7.
        return f"{x:.10g}" if x != int(x) else f"{int(x)}."
    return "" if x is None else str(x)


def evaluate(text: str, ev: Evaluator) -> Optional[int]:
    """Evaluate one input; the exit code when it called Exit."""
    try:
        ev.run(text)
    except Exit as done:
        return done.code
    except (WLError, ValueError) as err:
        sys.stdout.write(f"{err}\n")
        sys.stdout.flush()
    return None


# --------------------------------------------------------------------------- the link


def parse_linkname(name: str, default_host: str) -> list[tuple[str, int]]:
    """``p1@h1,p2@h2`` (``[v6]`` allowed, host optional) -> [(host, port), ...]."""
    out = []
    for part in name.strip().strip('"').split(","):
        port, _, host = part.strip().partition("@")
        host = host.strip("[]") or default_host
        out.append((host, int(port)))
    return out


def link(options: dict[str, str]) -> int:
    mode = options.get("-linkmode", "").lower()
    proto = options.get("-linkprotocol", "").lower()
    if mode != "connect" or proto not in ("tcpip", "tcp"):
        sys.stderr.write(f"stand-in: only -linkmode connect -linkprotocol tcpip (got {mode} {proto})\n")
        return 1
    try:
        ends = parse_linkname(options.get("-linkname", ""), options.get("-linkhost", "127.0.0.1"))
    except ValueError:
        sys.stderr.write(f"stand-in: bad -linkname {options.get('-linkname')!r}\n")
        return 1
    socks = []
    for host, port in ends:
        try:
            socks.append(socket.create_connection((host, port), timeout=10))
        except OSError as err:
            sys.stderr.write(f"LinkConnect: cannot connect to {port}@{host}: {err}\n")
            return 1
    limit = float(os.environ.get("STANDIN_LINK_TIMEOUT", "120"))
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data:  # the front end closed the link: the kernel exits
                if fault() == "link-linger":
                    while True:
                        signal.pause()
                return 0
    return 0


# --------------------------------------------------------------------------- main

VALUE_OPTIONS = {"-run", "-linkmode", "-linkname", "-linkprotocol", "-linkhost",
                 "-linkoptions", "-initfile", "-pwfile"}


MATHLM_TEXT = "\nCould not connect to the MathLM license server {server}.\n"
PROCESSES_TEXT = ("\nThe maximum number of kernel processes allowed by your license ({n}) "
                  "are already running.\n")
EXPIRED_TEXT = "\nYour Mathematica password has expired.\n"
ACTIVATION_LIMIT_TEXT = ("\nThis activation key has reached the maximum number of "
                         "activations (machines).\n")


def mathpass_servers() -> list[str]:
    try:
        with open(os.path.expanduser("~/.Wolfram/Licensing/mathpass"), encoding="utf-8") as fh:
            return [ln.strip()[1:].split()[0] for ln in fh if ln.strip().startswith("!")
                    and ln.strip()[1:]]
    except OSError:
        return []


def other_kernels() -> int:
    """Stand-in kernels of this user and this installation (the same Executables
    directory: one licence) running now, this one not counted."""
    me, uid, count = os.getpid(), os.getuid(), 0
    here = os.path.dirname(os.path.realpath(sys.argv[0])).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (me, os.getppid()):
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if any((b"standin" in a or os.path.basename(a) in (b"WolframKernel", b"MathKernel"))
               and os.path.dirname(os.path.realpath(a)) == here
               for a in argv[:2]) and b"-version" not in argv:
            count += 1
    return count


def wolframscript(argv: list[str]) -> int:
    low = [a.lower() for a in argv]
    if "-version" in low or "--version" in low:
        sys.stdout.write("WolframScript 1.12.0 for Linux x86 (64-bit)\n")
        return 0
    if "-code" in low or "-c" in low:
        i = low.index("-code") if "-code" in low else low.index("-c")
        code = evaluate(argv[i + 1] if i + 1 < len(argv) else "", Evaluator(sys.stdout))
        return code or 0
    if "-wstp" in low or "-mathlink" in low:
        while True:  # observed: never speaks WSTP
            signal.pause()
    for _ in sys.stdin:
        pass
    return 0


def count_start(argv: list[str]) -> None:
    path = os.path.expanduser("~/.standin-starts")
    if os.path.exists(path):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.time():.3f} " + " ".join(argv).replace("\n", " ") + "\n")


def main(argv: list[str]) -> int:
    count_start(argv)
    if (os.path.basename(sys.argv[0]) == "wolframscript"
            or os.environ.get("STANDIN_AS") == "wolframscript"):
        return wolframscript(argv)
    options: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i].lower()
        if arg in VALUE_OPTIONS and i + 1 < len(argv):
            options[arg] = argv[i + 1]
            i += 2
            continue
        flags.add(arg)
        i += 1

    what = fault()
    if what.startswith("slow:") and "+" in what:  # slow:N+FAULT: the wait, then FAULT
        slow, _, what = what.partition("+")
        time.sleep(float(slow.partition(":")[2] or "0"))
    if what.startswith("slow:"):
        time.sleep(float(what.partition(":")[2] or "0"))
    elif what in ("licence", "license"):
        sys.stdout.write(LICENCE_TEXT)
        sys.stdout.flush()
        return 1
    elif what == "activation":
        sys.stderr.write(ACTIVATION_TEXT)
        return 1
    elif what == "hang":
        while True:
            signal.pause()
    elif what == "spawn-hang":
        os.fork()  # parent and child alike: never answer
        while True:
            signal.pause()
    elif what == "mathlm":
        servers = mathpass_servers()
        port = int(os.environ.get("STANDIN_MATHLM_PORT", "16286"))
        for server in servers:
            try:
                socket.create_connection((server, port), timeout=2).close()
                break
            except OSError:
                continue
        else:
            sys.stderr.write(MATHLM_TEXT.format(server=servers[0] if servers else "(none)"))
            return 1
    elif what.startswith("processes:"):
        n = int(what.partition(":")[2] or "1")
        if other_kernels() >= n:
            sys.stdout.write(PROCESSES_TEXT.format(n=n))
            return 1
    elif what == "expired":
        sys.stdout.write(EXPIRED_TEXT)
        return 1
    elif what == "activation-limit":
        sys.stderr.write(ACTIVATION_LIMIT_TEXT)
        return 1
    elif what == "crash":
        sys.stdout.flush()
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)

    if "-wstp" in flags or "-mathlink" in flags or "-linkmode" in options:
        return link(options)

    if "-noprompt" not in flags:
        sys.stdout.write(f"Wolfram Language {VERSION} (mkdoctor stand-in kernel)\n\n")
    ev = Evaluator(sys.stdout)
    if "-run" in options:
        code = evaluate(options["-run"], ev)
        if code is not None:
            return code
    for line in sys.stdin:
        if line.strip():
            code = evaluate(line, ev)
            if code is not None:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
