"""The remote kernel: discovery script, start script, and the parsers of their output.

Pure functions (they build ``sh`` scripts and read their output); the checks MK401-MK404
run them through the run's SSH connection. Facts about the Wolfram kernel used here:

- The command-line programs are ``WolframKernel`` (the standalone kernel; ``-wstp``,
  ``-run cmd``, ``-noprompt``), ``wolfram`` ("on some systems, wolfram and WolframKernel
  are the same program"), and in older versions ``MathKernel``/``math``:
  reference.wolfram.com/language/ref/program/WolframKernel.html,
  reference.wolfram.com/language/ref/program/wolfram.html,
  reference.wolfram.com/language/ref/program/MathKernel.html.
- ``-noprompt``: "Do not print banner or In[] and Out[] prompts or ask for user input due
  to startup errors (useful for batch scripts)"; ``-run cmd``: "Run the command on
  startup" (same pages).
- Standard install locations. Documented: the installation directory is typically
  ``/usr/local/Wolfram/Wolfram/<version>`` on Linux, ``/Applications/Wolfram.app/Contents``
  on macOS and ``C:\\Program Files\\Wolfram Research\\Wolfram\\<version>`` on Windows
  (reference.wolfram.com/language/ref/$InstallationDirectory.html,
  reference.wolfram.com/language/tutorial/WolframSystemFileOrganization.html). Observed,
  not in those pages: the kernels sit in ``<dir>/Executables`` on Linux and
  ``Contents/MacOS`` on macOS; older products and the Wolfram Engine use the product
  names ``Mathematica``, ``WolframEngine`` (``Wolfram Engine`` on Windows) in place of
  ``Wolfram``, and app bundles named ``Mathematica.app``/``Mathematica <version>.app``
  (a path quoted on documents.wolfram.com/v5/GettingStarted/System-SpecificInformation/
  SpecialWaysToRunTheKernel.html: "/Applications/Mathematica 5.0.app/Contents/MacOS/
  MathKernel"); ``/opt/Wolfram`` is a prefix administrators commonly choose.
- macOS app version: ``CFBundleShortVersionString`` in ``Contents/Info.plist`` is "the
  release or version number of the bundle" (developer.apple.com/documentation/
  bundleresources/information-property-list/cfbundleshortversionstring); that the Wolfram
  apps carry their version there is observed. It wins over a number in the bundle's name,
  which the user may have changed.
- Licence failures print, depending on the product and version (observed wordings,
  as users quote them; no Wolfram reference page lists the messages): "Mathematica
  cannot find a valid password." (the classic mathpass failure), "Your Wolfram Engine
  installation is not activated or is experiencing a license-related problem." (Wolfram
  Engine, github.com/njpipeorgan/wolfram-language-notebook/issues/3), "The product exited
  during an activation attempt because an error occurred."
  (github.com/mmatera/iwolfram/issues/17). Licence passwords live in a ``mathpass`` file,
  and a line ``!server`` there names a MathLM licence server
  (reference.wolfram.com/language/tutorial/RegistrationAndPasswords.html,
  support.wolfram.com/112).
- Windows: the Windows OpenSSH server's default shell is cmd.exe
  (learn.microsoft.com/windows-server/administration/openssh/openssh_server_configuration),
  where no ``sh`` script of ours runs; cmd.exe and PowerShell answer an unknown command
  with "... is not recognized as ..." (observed wording), which :func:`non_posix_shell`
  recognises.
"""

from __future__ import annotations

import math
import re
import shlex
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from mkdoctor.model import Result, failed, skipped

if TYPE_CHECKING:  # pragma: no cover
    from mkdoctor.context import Context

# Programs looked up on the remote PATH, in order of preference for one install.
PATH_NAMES = ("WolframKernel", "MathKernel", "wolfram", "math")
KERNEL_NAMES = ("WolframKernel", "MathKernel")
LINUX_PREFIXES = ("/usr/local/Wolfram", "/opt/Wolfram")
LINUX_PRODUCTS = ("Mathematica", "Wolfram", "WolframEngine")
MAC_APPS = ("/Applications/Mathematica*.app", "/Applications/Wolfram*.app")
WINDOWS_ROOTS = ("/c/Program Files/Wolfram Research", "/cygdrive/c/Program Files/Wolfram Research")
WINDOWS_PRODUCTS = ("Mathematica", "Wolfram", "Wolfram Engine")


# --------------------------------------------------------------------------- discovery


def where_we_look() -> list[str]:
    """Human-readable list of the places discovery searches (for the report)."""
    return [
        "the remote PATH: " + ", ".join(PATH_NAMES),
        *(f"{pre}/{{{','.join(LINUX_PRODUCTS)}}}/<version>/Executables/{{{','.join(KERNEL_NAMES)}}}"
          for pre in LINUX_PREFIXES),
        *(f"{app}/Contents/MacOS/{{{','.join(KERNEL_NAMES)}}}" for app in MAC_APPS),
        "C:\\Program Files\\Wolfram Research\\{"
        + ",".join(WINDOWS_PRODUCTS) + "}\\<version>\\WolframKernel.exe (POSIX shells on Windows)",
    ]


def discovery_script(given: Optional[str]) -> str:
    """One ``sh`` script that reports the OS, the given path's state, and every kernel
    candidate. Output lines (tab-separated):

    - ``U <uname -s>``
    - ``G <state> <path>`` for the given path: ok, missing, dir, noexec
    - ``K <source> <path> <resolved path> <Info.plist version>`` per candidate
    """
    lines = [
        "LC_ALL=C; export LC_ALL",
        "u=$(uname -s 2>/dev/null) || u='?'",
        "printf 'U\\t%s\\n' \"$u\"",
        # readlink -f: GNU and macOS >= 12.3; otherwise the path itself.
        "res() { r=$(readlink -f -- \"$1\" 2>/dev/null) && [ -n \"$r\" ] && printf '%s' \"$r\" || printf '%s' \"$1\"; }",
        "plist() { [ -f \"$1\" ] && sed -n '/CFBundleShortVersionString/{n;s/.*<string>\\(.*\\)<\\/string>.*/\\1/p;}' \"$1\" 2>/dev/null | head -n 1; }",
        "emit() { [ -f \"$2\" ] && [ -x \"$2\" ] && printf 'K\\t%s\\t%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$(res \"$2\")\" \"$3\"; }",
    ]
    if given is not None:
        g = shlex.quote(given)
        lines.append(
            f"g={g}; if [ -d \"$g\" ]; then s=dir; elif [ ! -e \"$g\" ]; then s=missing; "
            "elif [ ! -x \"$g\" ]; then s=noexec; else s=ok; fi; "
            "printf 'G\\t%s\\t%s\\t%s\\n' \"$s\" \"$g\" \"$(res \"$g\")\""
        )
    names = " ".join(PATH_NAMES)
    lines.append(
        f"for n in {names}; do p=$(command -v \"$n\" 2>/dev/null) || continue; "
        "case $p in /*) emit path \"$p\" '';; esac; done"
    )
    kernels = " ".join(KERNEL_NAMES)
    for prefix in LINUX_PREFIXES:
        products = " ".join(shlex.quote(p) for p in LINUX_PRODUCTS)
        lines.append(
            f"for prod in {products}; do for d in {shlex.quote(prefix)}/\"$prod\"/*/Executables; do "
            f"[ -d \"$d\" ] || continue; for k in {kernels}; do emit standard \"$d/$k\" ''; done; done; done"
        )
    for app in MAC_APPS:
        base, _, pattern = app.rpartition("/")
        lines.append(
            f"for a in {shlex.quote(base)}/{pattern}; do [ -d \"$a\" ] || continue; "
            "v=$(plist \"$a/Contents/Info.plist\"); "
            f"for k in {kernels}; do emit standard \"$a/Contents/MacOS/$k\" \"$v\"; done; done"
        )
    for root in WINDOWS_ROOTS:
        products = " ".join(shlex.quote(p) for p in WINDOWS_PRODUCTS)
        lines.append(
            f"for prod in {products}; do for d in {shlex.quote(root)}/\"$prod\"/*; do "
            "[ -d \"$d\" ] || continue; emit standard \"$d/WolframKernel.exe\" ''; done; done"
        )
    lines.append("true")  # no exit: the caller's framing (ssh.wrap) runs after us
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Install:
    """One kernel executable found on the remote host."""

    path: str  # as found (what the launch command should use)
    resolved: str  # symlinks resolved
    version: str  # "14.1", "" when unknown
    source: str  # "path", "standard" or "given"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rpartition("/")[2]

    def describe(self) -> str:
        version = f"version {self.version}" if self.version else "version unknown"
        via = "" if self.resolved == self.path else f" (-> {self.resolved})"
        return f"{self.path}{via}: {version}" + (" [on PATH]" if self.source == "path" else "")


@dataclass
class Discovery:
    uname: str = ""
    given_state: str = ""  # ok, missing, dir, noexec ("" when no path was given)
    given: Optional[Install] = None
    installs: list[Install] = field(default_factory=list)


_VERSION_DIR = re.compile(r"/(\d+(?:\.\d+){0,3})/(?:Executables/|[^/]*\.exe$)")
_APP_VERSION = re.compile(r"/(?:Mathematica|Wolfram)[^/]*?\s(\d+(?:\.\d+){0,3})\.app/")


def version_from_path(path: str) -> str:
    """The version a standard install path encodes: ``…/Mathematica/14.1/Executables/…``,
    ``C:/…/Wolfram Research/Mathematica/14.1/WolframKernel.exe``, ``/Applications/
    Mathematica 7.app/…``. Empty when the path does not say."""
    norm = path.replace("\\", "/")
    m = _VERSION_DIR.search(norm) or _APP_VERSION.search(norm)
    return m.group(1) if m else ""


def version_key(version: str) -> tuple[int, ...]:
    """Sort key: numeric components; unknown versions sort first (oldest)."""
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4]) if version else (-1,)


def parse_discovery(text: str) -> Discovery:
    """Read the output of :func:`discovery_script`; installs deduplicated by resolved path."""
    found = Discovery()
    by_resolved: dict[str, Install] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        tag = parts[0]
        if tag == "U" and len(parts) >= 2:
            found.uname = parts[1].strip()
        elif tag == "G" and len(parts) >= 4:
            found.given_state = parts[1]
            path, resolved = parts[2], parts[3] or parts[2]
            version = version_from_path(path) or version_from_path(resolved)
            found.given = Install(path, resolved, version, "given")
        elif tag == "K" and len(parts) >= 4:
            source, path, resolved = parts[1], parts[2], parts[3] or parts[2]
            plist = parts[4].strip() if len(parts) > 4 else ""
            version = plist or version_from_path(path) or version_from_path(resolved)
            install = Install(path, resolved, version, source)
            old = by_resolved.get(resolved)
            # A standard path is a better name than a PATH symlink to the same file.
            if old is None or (old.source == "path" and source == "standard"):
                by_resolved[resolved] = install
    found.installs = list(by_resolved.values())
    return found


def non_posix_shell(text: str) -> bool:
    """Did the remote login shell reject our command line the way cmd.exe or PowerShell
    do (``'exec' is not recognized as an internal or external command``, ``The term
    'exec' is not recognized as the name of a cmdlet``)? See the module docstring."""
    return bool(re.search(r"is not recognized as (?:an internal or external command|the name of a cmdlet)",
                          text, re.I))


def choose(installs: list[Install]) -> Optional[Install]:
    """The newest install; within one version, WolframKernel before MathKernel before
    wolfram/math, and a standard path before a PATH entry."""
    if not installs:
        return None

    def rank(i: Install) -> tuple:
        name = i.name.removesuffix(".exe")
        pref = PATH_NAMES.index(name) if name in PATH_NAMES else len(PATH_NAMES)
        return (version_key(i.version), -pref, i.source == "standard", i.path)

    return max(installs, key=rank)


# --------------------------------------------------------------------------- starting it

SENTINEL_PARTS = ("MKD", "OK")  # joined by the kernel itself, never present in the input


def run_expression(token: str) -> str:
    """The Wolfram Language expression MK402 evaluates: one line with a sentinel that only
    appears if the kernel really evaluated ``<>`` (the command line contains the parts, not
    the joined word), ``$Version``, ``$VersionNumber``, ``$ProcessorCount``; then Exit[]."""
    a, b = SENTINEL_PARTS
    return (
        f'WriteString[$Output, "{a}" <> "{b}" <> "{token}|" <> $Version <> "|" <> '
        'ToString[$VersionNumber] <> "|" <> ToString[$ProcessorCount] <> "\\n"]; Exit[]'
    )


TIMEOUT_MARK = "MKD-KERNEL-TIMEOUT"
GONE_MARK = "MKD-CLIENT-GONE"


def start_script(kernel: str, args: list[str], timeout: float) -> str:
    """``sh`` script: run the kernel in its own process group (setsid; perl or python3
    where there is no setsid, e.g. macOS), with stdin from /dev/null, and kill the whole
    group when ``timeout`` passes or when our ssh client goes away (its stdin reaches EOF:
    a multiplexed session's processes are not signalled when the client dies, so the
    local side holds stdin open for as long as it waits). Prints :data:`TIMEOUT_MARK`
    or :data:`GONE_MARK` when it had to kill; exits with the kernel's status."""
    argv = " ".join(shlex.quote(a) for a in [kernel, *args])
    seconds = max(1, math.ceil(timeout))
    return f"""\
exec 3<&0
if command -v setsid >/dev/null 2>&1; then set -- setsid
elif command -v perl >/dev/null 2>&1; then set -- perl -e 'setpgrp(0,0); exec {{$ARGV[0]}} @ARGV or exit 127' --
elif command -v python3 >/dev/null 2>&1; then set -- python3 -c 'import os,sys; os.setpgid(0,0); os.execvp(sys.argv[1], sys.argv[1:])'
else set --; fi
( exec "$@" {argv} ) </dev/null 3<&- &
kp=$!
cat <&3 >/dev/null 2>&1 &
cp=$!
exec 3<&-
killk() {{ kill -9 -"$kp" 2>/dev/null; kill -9 "$kp" 2>/dev/null; }}
end=$(( $(date +%s) + {seconds} + 1 ))
while kill -0 "$kp" 2>/dev/null; do
  # Kill first, then tell: a write to a closed channel (the client gone) would end us.
  if [ "$(date +%s)" -ge "$end" ]; then killk; echo {TIMEOUT_MARK}; break; fi
  if ! kill -0 "$cp" 2>/dev/null; then killk; echo {GONE_MARK} >&2; break; fi
  sleep 0.2 2>/dev/null || sleep 1
done
wait "$kp"; rc=$?
kill "$cp" 2>/dev/null
(exit "$rc")  # the status, without leaving the caller's framing (ssh.wrap)
"""


@dataclass
class KernelRun:
    """What MK402 learned from one kernel start."""

    outcome: str  # ok, licence, activation, licence-server, crash, hang, not-found,
    #               not-executable, no-answer, error
    version: str = ""
    version_number: str = ""
    processor_count: Optional[int] = None
    signal_name: str = ""
    evidence: list[str] = field(default_factory=list)


LICENCE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("activation", re.compile(r"not activated|activation attempt|could not be activated|"
                              r"-activate|activation key", re.I)),
    ("licence-server", re.compile(r"MathLM|license server|licence server|"
                                  r"maximum number of (?:\w+ )*(?:processes|kernels|licen[cs]es)|"
                                  r"all licen[cs]es (?:are )?in use", re.I)),
    ("licence", re.compile(r"cannot find a valid password|no valid password|mathpass|"
                           r"password (?:has )?expired|licen[cs]e", re.I)),
]


def classify_run(stdout: str, stderr: str, exit_code: Optional[int], token: str) -> KernelRun:
    """Classify the output of :func:`start_script` (``exit_code`` None: never reported)."""
    text = stdout + "\n" + stderr
    lines: list[str] = []
    for ln in (ln.strip() for ln in text.splitlines()):
        # "Killed": the shell reporting our own kill of a hung kernel.
        if ln and ln not in lines and token not in ln and ln not in (GONE_MARK, "Killed"):
            lines.append(ln)
    evidence = lines[-6:]
    mark = "".join(SENTINEL_PARTS) + token + "|"
    for line in stdout.splitlines():
        if mark in line:
            rest = line.split(mark, 1)[1].strip()
            version, _, tail = rest.rpartition("|")
            version, _, number = version.rpartition("|")
            count = int(tail) if tail.strip().isdigit() else None
            return KernelRun("ok", version.strip(), number.strip(), count, evidence=evidence)
    if TIMEOUT_MARK in stdout:
        return KernelRun("hang", evidence=[ln for ln in evidence if ln != TIMEOUT_MARK])
    for outcome, pattern in LICENCE_PATTERNS:
        if pattern.search(text):
            hits = [ln for ln in lines if pattern.search(ln)]
            return KernelRun(outcome, evidence=(hits + [ln for ln in evidence if ln not in hits])[:6])
    if exit_code is not None and exit_code > 128:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        return KernelRun("crash", signal_name=name, evidence=evidence)
    if exit_code == 127:
        return KernelRun("not-found", evidence=evidence)
    if exit_code == 126:
        return KernelRun("not-executable", evidence=evidence)
    if exit_code is None:
        return KernelRun("error", evidence=evidence)
    return KernelRun("no-answer", evidence=evidence + [f"(exit status {exit_code})"])


def major_version(version: str) -> Optional[int]:
    m = re.match(r"\s*(\d+)", version or "")
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- shared steps


def ensure_login(ctx: "Context") -> Optional[Result]:
    """The run's SSH connection (one authentication, reused): None when logged in, else
    a skip naming MK304. Safe when MK304 already ran (login is idempotent)."""
    login = ctx.ssh.login(ctx.step_timeout(ctx.options.timeout * 2 + 2))
    if login.ok:
        return None
    if login.lost:  # the master died: a clear failure, never a second login
        return failed(login.stderr, "re-run mkdoctor; if the connection keeps ending, see "
                      "ServerAliveInterval/ClientAliveInterval and the server's sshd log")
    return skipped("skipped: cannot log in to the remote host (see MK304 passwordless-login)",
                   "fix MK304 passwordless-login first")


def kernel_path(ctx: "Context") -> Optional[str]:
    """``--kernel``, else what MK401 found."""
    return ctx.options.kernel or ctx.fact("MK401", "kernel")
