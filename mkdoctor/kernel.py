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

import contextlib
import math
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional, TypeVar

from mkdoctor.model import Result, failed, skipped

T = TypeVar("T")

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
        "environment modules / Lmod: module -t avail, mathematica* and wolfram* modules",
    ]


def discovery_script(given: Optional[str]) -> str:
    """One ``sh`` script that reports the OS, the given path as the login shell reads it
    (:func:`reading_script`), every kernel candidate, and the kernels environment modules
    provide (:func:`module_scan_script`: when no path was given and no kernel is on the
    plain PATH, or when a bare name given is not on it). Output lines (tab-separated):

    - ``U <uname -s>``
    - ``P``/``H``/``S`` for the given path (see :func:`reading_script`)
    - ``K <source> <path> <resolved path> <Info.plist version>`` per candidate
    - ``M``/``N`` for modules

    Raises ValueError for a given ``~user`` path whose user part is no user name.
    """
    lines = [
        "LC_ALL=C; export LC_ALL",
        "u=$(uname -s 2>/dev/null) || u='?'",
        "printf 'U\\t%s\\n' \"$u\"",
        RES_FUNCTION.strip(),
        "plist() { [ -f \"$1\" ] && sed -n '/CFBundleShortVersionString/{n;s/.*<string>\\(.*\\)<\\/string>.*/\\1/p;}' \"$1\" 2>/dev/null | head -n 1; }",
        "onpath=''",
        "emit() { [ -f \"$2\" ] && [ -x \"$2\" ] && { [ \"$1\" = path ] && onpath=1; "
        "printf 'K\\t%s\\t%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$(res \"$2\")\" \"$3\"; }; }",
    ]
    scan = "want_modules=''"
    if given is not None:
        lines.append(reading_script(given))
        if classify_typed(given)[0] == HOW_PATH:
            scan = "want_modules=''; [ \"$gs\" = notfound ] && want_modules=1"
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
    if given is None:
        scan = "want_modules=''; [ -z \"$onpath\" ] && want_modules=1"
    lines.append(scan)
    lines.append("if [ -n \"$want_modules\" ]; then\n" + module_scan_script() + "fi")
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
    reading: "Reading" = field(default_factory=lambda: Reading())
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
    found = Discovery(reading=parse_reading(text))
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
    r = found.reading
    if r.state:
        found.given_state = r.state
        if r.path:
            version = version_from_path(r.path) or version_from_path(r.target)
            found.given = Install(r.path, r.target or r.path, version, "given")
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


# --------------------------------------------------------------------------- the kernel path
#
# The front end runs the launch command; sshd hands its remote part to the account's login
# shell, which runs it non-interactively in the home directory (sshd(8): "All commands are
# run under the user's login shell", after changing to the home directory). So a typed
# kernel path means there what that shell makes of it:
# - ``/abs/path``: itself;
# - ``~/x``, ``~``: the home directory ($HOME);  ``~user/x``: that user's home;
# - ``dir/x``, ``./x``: relative to the home directory (the shell's working directory);
# - ``name`` (no slash): looked up in PATH as that shell has it (what its startup files
#   for a non-interactive shell set), NOT in the working directory: a wrapper
#   ``~/math.sh`` typed as ``math.sh`` is "not found" for the launch command.
# The launch command, MK402 and MK404 then run the absolute path this reading found, so all
# of them run the same file. A kernel that only a module provides (environment modules,
# Lmod) is run after ``module load`` in the same command.

HOW_ABSOLUTE, HOW_HOME, HOW_TILDE, HOW_PATH, HOW_MODULE = (
    "absolute", "home-relative", "tilde", "path-lookup", "module")
_USER_NAME = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
# What a module name or a module init script path may hold: they go into the launch
# command inside single quotes read by any login shell (sh, csh/tcsh, fish), so no quote,
# '$', '!', backslash, space or control character (see launch.module_prefix).
SAFE_MODULE_WORD = re.compile(r"[A-Za-z0-9._+/@=:,-]+")
KERNEL_BASENAMES = ("WolframKernel", "MathKernel", "wolfram", "math", "WolframKernel.exe",
                    "MathKernel.exe", "math.exe", "wolfram.exe")
# Programs that sit beside the kernel and are not a WSTP kernel: wolframscript (a script
# interpreter that starts a kernel itself: reference.wolfram.com/language/ref/program/
# wolframscript.html), the notebook front end (``Mathematica``/``mathematica``, since 14.1
# ``WolframNB``: reference.wolfram.com/language/ref/program/mathematica-unix.html).
LOOKALIKES = {
    "wolframscript": "wolframscript (the script interpreter, not a WSTP kernel)",
    "wolframscript.exe": "wolframscript (the script interpreter, not a WSTP kernel)",
    "mathematica": "the Mathematica front end (the notebook interface), not the kernel",
    "Mathematica": "the Mathematica front end (the notebook interface), not the kernel",
    "WolframNB": "the Wolfram notebook front end, not the kernel",
    "Mathematica.exe": "the Mathematica front end (the notebook interface), not the kernel",
    "WolframNB.exe": "the Wolfram notebook front end, not the kernel",
}
SIBLING_KERNELS = ("WolframKernel", "MathKernel", "math")


@dataclass(frozen=True)
class KernelPath:
    """One reading of the kernel path, shared by MK401, MK402, MK404, the launch command
    and the parallel-kernels file.

    ``resolved`` is the absolute path the login shell runs (symlinks not resolved: that is
    :attr:`target`); ``how`` says how it was found; with ``how == "module"`` the kernel is
    on PATH only after ``module load <module>`` with ``module`` defined by sourcing
    ``module_init``."""

    as_typed: str
    resolved: str
    how: str
    module: Optional[str] = None
    module_init: Optional[str] = None
    target: str = ""  # symlinks resolved (readlink -f), "" when unknown

    @property
    def name(self) -> str:
        return (self.target or self.resolved).rstrip("/").rpartition("/")[2]

    def facts(self) -> dict:
        return {"kernel": self.resolved, "kernel_as_typed": self.as_typed, "kernel_how": self.how,
                "module": self.module or "", "module_init": self.module_init or "",
                "kernel_target": self.target}

    @classmethod
    def from_facts(cls, facts: dict) -> Optional["KernelPath"]:
        path = facts.get("kernel") or ""
        if not path:
            return None
        return cls(facts.get("kernel_as_typed") or path, path, facts.get("kernel_how") or HOW_ABSOLUTE,
                   facts.get("module") or None, facts.get("module_init") or None,
                   facts.get("kernel_target") or "")

    def describe(self) -> str:
        if self.how == HOW_MODULE:
            return f"{self.resolved} (after module load {self.module})"
        if self.as_typed == self.resolved:
            return self.resolved
        word = {HOW_PATH: "found on PATH", HOW_TILDE: "~ expanded",
                HOW_HOME: "relative to the home directory"}.get(self.how, self.how)
        return f"{self.as_typed} -> {self.resolved} ({word})"


def classify_typed(typed: str) -> tuple[str, str, str]:
    """How the login shell reads ``typed``: (how, user for ``~user``, rest). Raises
    ValueError for a ``~user`` whose user part is not a user name (the shell would not
    expand it either), and for control characters (a tab or line break cannot travel in the
    tab-separated answer, and no kernel path holds one)."""
    if re.search(r"[\x00-\x1f\x7f]", typed):
        raise ValueError(f"{typed!r}: a path with a control character")
    if typed.startswith("/"):
        return HOW_ABSOLUTE, "", typed
    if typed == "~" or typed.startswith("~/"):
        return HOW_TILDE, "", typed[2:] if typed.startswith("~/") else ""
    if typed.startswith("~"):
        user, _, rest = typed[1:].partition("/")
        if not _USER_NAME.fullmatch(user):
            raise ValueError(f"{typed!r}: '~{user}' is not a user's home directory")
        return HOW_TILDE, user, rest
    if "/" in typed:
        return HOW_HOME, "", typed
    return HOW_PATH, "", typed


def reading_script(typed: str) -> str:
    """``sh`` lines that read ``typed`` as the login shell would and print
    ``P <how> <state> <path> <target>`` (state: ok, missing, dir, noexec, notfound),
    ``H <path>`` when a bare name is not on PATH but exists in the home directory, and
    ``S <name> <path>`` for each kernel executable beside the target. Every value from the
    user travels as one single-quoted word (shlex.quote); ``~user`` is written only after
    its user part was checked to be a plain user name."""
    how, user, rest = classify_typed(typed)
    q = shlex.quote
    lines = []
    if how == HOW_ABSOLUTE:
        lines.append(f"gp={q(typed)}")
    elif how == HOW_TILDE:
        home = f"~{user}" if user else '"$HOME"'
        lines.append(f"gp={home}" + (f"/{q(rest)}" if rest else ""))
    elif how == HOW_HOME:
        lines.append(f"gp=\"$PWD\"/{q(typed)}")
    else:
        lines.append(f"gp=$(command -v -- {q(typed)} 2>/dev/null) || gp=''; "
                     "case $gp in /*) ;; *) gp='';; esac; "
                     f"if [ -z \"$gp\" ] && [ -e \"$PWD\"/{q(typed)} ]; then "
                     f"printf 'H\\t%s\\n' \"$PWD\"/{q(typed)}; fi")
    lines.append(
        f"if [ -z \"$gp\" ]; then gs=notfound; elif [ -d \"$gp\" ]; then gs=dir; "
        "elif [ ! -e \"$gp\" ]; then gs=missing; elif [ ! -x \"$gp\" ]; then gs=noexec; else gs=ok; fi; "
        f"gt=''; [ -n \"$gp\" ] && gt=$(res \"$gp\"); printf 'P\\t{how}\\t%s\\t%s\\t%s\\n' \"$gs\" \"$gp\" \"$gt\"; "
        "if [ -n \"$gt\" ]; then gd=${gt%/*}; for n in " + " ".join(SIBLING_KERNELS) + "; do "
        "[ -f \"$gd/$n\" ] && [ -x \"$gd/$n\" ] && [ \"$gd/$n\" != \"$gt\" ] && "
        "printf 'S\\t%s\\t%s\\n' \"$n\" \"$gd/$n\"; done; fi")
    return "\n".join(lines)


# Environment modules and Lmod define ``module`` as a shell function in their init scripts,
# which login and interactive shells source from /etc/profile.d; a command run by sshd
# (non-interactive, not a login shell) has no ``module`` at all. The scan sources each
# init script it finds in a subshell of its own. Debian: environment-modules installs
# /usr/share/modules/init/sh (and /etc/profile.d/modules.sh), lmod /etc/profile.d/lmod.sh
# (which sets MODULEPATH from /etc/lmod/modulespath, then sources
# /usr/share/lmod/lmod/init/sh); other systems: $MODULESHOME/init/sh (environment modules
# and Lmod both set it), $LMOD_PKG/init/sh, /usr/share/Modules/init/sh (RHEL's
# environment-modules), /etc/profile.d/z00_lmod.sh (RHEL's Lmod).
MODULE_INITS = ("/etc/profile.d/lmod.sh", "/etc/profile.d/z00_lmod.sh",
                "/usr/share/lmod/lmod/init/sh", "/usr/share/modules/init/sh",
                "/usr/share/Modules/init/sh")
MODULE_PATTERN = "mathematica|wolfram"


def module_scan_script() -> str:
    """``sh`` lines printing ``M <init> <module> <kernel path> <target>`` for each
    Mathematica/Wolfram module (``module -t avail``; names matched case-insensitively) that
    puts a kernel on PATH once loaded, and ``N <init>`` for each module system found."""
    inits = " ".join(shlex.quote(i) for i in MODULE_INITS)
    names = " ".join(PATH_NAMES)
    return (
        "seen=''\n"
        f"for mi in {inits} ${{MODULESHOME:+\"$MODULESHOME/init/sh\"}} "
        "${LMOD_PKG:+\"$LMOD_PKG/init/sh\"}; do\n"
        "  [ -f \"$mi\" ] && [ -r \"$mi\" ] || continue\n"
        "  case \" $seen \" in *\" $mi \"*) continue;; esac; seen=\"$seen $mi\"\n"
        "  ( . \"$mi\" >/dev/null 2>&1 </dev/null\n"
        "    command -v module >/dev/null 2>&1 || exit 0\n"
        "    printf 'N\\t%s\\n' \"$mi\"\n"
        "    avail=$(module -t avail 2>&1 </dev/null | sed -e 's/([^)]*)//g' -e 's/[[:space:]]//g' "
        f"| grep -v ':$' | grep -i -E '^({MODULE_PATTERN})' | sort -u)\n"
        # Lmod's spider also lists modules of a hierarchy that load only after others
        # (a compiler, an MPI): named, not loaded.
        "    for m in $(module -t spider 2>&1 </dev/null | sed -e 's/([^)]*)//g' -e 's/[[:space:]]//g' "
        f"| grep -v -e ':$' -e '/$' | grep -i -E '^({MODULE_PATTERN})/' | sort -u); do\n"
        "      case \" $(echo $avail) \" in *\" $m \"*) ;; *) printf 'Q\\t%s\\t%s\\n' \"$mi\" \"$m\";; esac\n"
        "    done\n"
        "    for m in $avail; do\n"
        "      ( module load \"$m\" >/dev/null 2>&1 </dev/null || exit 0\n"
        f"        for n in {names}; do k=$(command -v \"$n\" 2>/dev/null) || continue\n"
        "          case $k in /*) printf 'M\\t%s\\t%s\\t%s\\t%s\\n' \"$mi\" \"$m\" \"$k\" \"$(res \"$k\")\"; break;; esac\n"
        "        done )\n"
        "    done )\n"
        "done\n"
    )


@dataclass
class Reading:
    """What :func:`parse_reading` learned: the typed path's state, the hint for a bare
    name found only in the home directory, kernels beside it, and modules."""

    how: str = ""
    state: str = ""  # ok, missing, dir, noexec, notfound
    path: str = ""
    target: str = ""
    home_hint: str = ""
    siblings: list[tuple[str, str]] = field(default_factory=list)
    modules: list["ModuleKernel"] = field(default_factory=list)
    module_systems: list[str] = field(default_factory=list)
    hidden_modules: list[str] = field(default_factory=list)  # only in ``module spider``


@dataclass(frozen=True)
class ModuleKernel:
    init: str
    module: str
    path: str
    target: str

    @property
    def version(self) -> str:
        m = re.search(r"(\d+(?:\.\d+){0,3})", self.module)
        return (version_from_path(self.path) or version_from_path(self.target)
                or (m.group(1) if m else ""))

    def reading(self, typed: str) -> KernelPath:
        return KernelPath(typed, self.path, HOW_MODULE, self.module, self.init, self.target)


def parse_reading(text: str) -> Reading:
    r = Reading()
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "P" and len(parts) >= 5:
            path = re.sub(r"/(?:\./)+", "/", parts[3])  # "$PWD/./x" -> "$PWD/x"
            r.how, r.state, r.path, r.target = parts[1], parts[2], path, parts[4] or path
        elif parts[0] == "H" and len(parts) >= 2:
            r.home_hint = parts[1]
        elif parts[0] == "S" and len(parts) >= 3:
            r.siblings.append((parts[1], parts[2]))
        elif parts[0] == "N" and len(parts) >= 2:
            r.module_systems.append(parts[1])
        elif parts[0] == "Q" and len(parts) >= 3 and parts[2] not in r.hidden_modules:
            r.hidden_modules.append(parts[2])
        elif parts[0] == "M" and len(parts) >= 5:
            mk = ModuleKernel(parts[1], parts[2], parts[3], parts[4] or parts[3])
            if SAFE_MODULE_WORD.fullmatch(mk.module) and SAFE_MODULE_WORD.fullmatch(mk.init) \
                    and all(mk.module != o.module for o in r.modules):
                r.modules.append(mk)
    return r


def lookalike(path: str, target: str = "") -> str:
    """What ``path`` (or the file its symlinks lead to) is when it is a known program beside
    the kernel that is not a WSTP kernel; "" otherwise."""
    for p in (target, path):
        base = (p or "").replace("\\", "/").rstrip("/").rpartition("/")[2]
        if base in LOOKALIKES:
            return LOOKALIKES[base]
    return ""


def wolframscript_answer(text: str) -> bool:
    """Is this what ``wolframscript -version`` prints ("WolframScript 1.3.0 for Linux
    64-bit ...": reference.wolfram.com/language/workflow/InstallWolframScript.html)?"""
    return bool(re.search(r"^\s*WolframScript\s+\d", text, re.M))


def read_kernel(ctx: "Context") -> Optional[KernelPath]:
    """The run's reading of the kernel path: MK401's when it ran, else (``--only MK402``
    with ``--kernel``) read now with the same script. None when there is none."""
    facts = {k: ctx.fact("MK401", k) for k in ("kernel", "kernel_as_typed", "kernel_how",
                                              "module", "module_init", "kernel_target")}
    reading = KernelPath.from_facts({k: v for k, v in facts.items() if v})
    if reading is not None:
        return reading
    typed = ctx.options.kernel
    if not typed:
        return None
    try:
        script = RES_FUNCTION + reading_script(typed) + "\ntrue\n"
    except ValueError:
        return None
    done = ctx.ssh.run(script, ctx.step_timeout(ctx.options.timeout * 2))
    r = parse_reading(done.stdout)
    if r.state != "ok":
        return None
    return KernelPath(typed, r.path, r.how, target=r.target)


def early_reading(ctx: "Context") -> Optional[KernelPath]:
    """The kernel path as typed, for a check that runs beside MK401 (declares it in
    ``overlaps``) before MK401's remote reading is in: an absolute ``--kernel`` path is
    run as typed (the login shell reads it so: :func:`classify_typed`), unless its name is
    a look-alike (wolframscript, a front end). None otherwise, or once MK401 has a result:
    then the caller waits for MK401 and uses :func:`read_kernel`. If MK401 then fails (the
    path is missing, not executable, a look-alike behind a symlink), the engine replaces
    the caller's result by the skip naming MK401."""
    typed = ctx.options.kernel
    if not typed or ctx.result("MK401") is not None:
        return None
    try:
        how = classify_typed(typed)[0]
    except ValueError:
        return None
    if how != HOW_ABSOLUTE or lookalike(typed):
        return None
    return KernelPath(typed, typed, HOW_ABSOLUTE)


# readlink -f: GNU and macOS >= 12.3; otherwise the path itself.
RES_FUNCTION = ("res() { r=$(readlink -f -- \"$1\" 2>/dev/null) && [ -n \"$r\" ] && "
                "printf '%s' \"$r\" || printf '%s' \"$1\"; }\n")


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


def start_script(kernel: str, args: list[str], timeout: float,
                 module: str = "", module_init: str = "") -> str:
    """``sh`` script: run the kernel in its own process group (setsid; perl or python3
    where there is no setsid, e.g. macOS), with stdin from /dev/null, and kill the whole
    group when ``timeout`` passes or when our ssh client goes away (its stdin reaches EOF:
    a multiplexed session's processes are not signalled when the client dies, so the
    local side holds stdin open for as long as it waits). Prints :data:`TIMEOUT_MARK`
    or :data:`GONE_MARK` when it had to kill; exits with the kernel's status. With
    ``module``, the kernel starts after ``module load`` exactly as in the launch command
    (:func:`mkdoctor.launch.kernel_prefix`)."""
    from mkdoctor.launch import kernel_prefix

    argv = " ".join(shlex.quote(a) for a in [*kernel_prefix(module, module_init), kernel, *args])
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
# The watchdog polls; this shell waits for the kernel itself, so its exit is seen at once.
( while :; do
    # Once it acts, it ignores our TERM (sent when the kernel is gone) until it has told.
    # Kill first, then tell: a write to a closed channel (the client gone) would end it.
    if [ "$(date +%s)" -ge "$end" ]; then trap '' TERM; killk; echo {TIMEOUT_MARK}; exit; fi
    if ! kill -0 "$cp" 2>/dev/null; then trap '' TERM; killk; echo {GONE_MARK} >&2; exit; fi
    sleep 0.2 </dev/null >/dev/null 2>&1 || sleep 1 </dev/null >/dev/null 2>&1
  done ) </dev/null &
wp=$!
wait "$kp"; rc=$?
kill "$wp" 2>/dev/null; wait "$wp" 2>/dev/null
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


# Licence failures, most specific first. None of these wordings is on a Wolfram reference
# page (the kernel's licence messages are not documented): they are patterns for what users
# quote (observed), broad on purpose. What IS documented: a mathpass line "!server" names
# a MathLM server, tried before the lines below it (support.wolfram.com/112); MathLM "issues
# licenses to clients until all available licenses are in use" and "if all of the process
# slots are already in use, the client ... process cannot be started"
# (reference.wolfram.com/language/tutorial/WhatIsMathLM.html); $MaxLicenseProcesses is the
# number of controlling processes a licence allows, and "starting a third session leads to
# ... a kernel license failure message" on a "2,2,8,8" single-user licence
# (support.wolfram.com/36293); $LicenseExpirationDate is the expiry date of a temporary
# licence, $LicenseServer the MathLM server in use (reference.wolfram.com/language/guide/
# SystemAndLicenseManagement.html); ``-licenseinfo`` displays $LicenseID "as well as related
# information and exit[s]", ``-lmverbose`` prints the kernel's exchange with MathLM to
# stderr (reference.wolfram.com/language/ref/program/wolfram.html).
LICENCE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("activation-limit", re.compile(r"maximum number of (?:\w+ )*(?:activations|machines|computers)|"
                                    r"activation limit|too many (?:activations|machines)", re.I)),
    ("activation", re.compile(r"not activated|activation attempt|could not be activated|"
                              r"-activate|activation key", re.I)),
    ("licence-expired", re.compile(r"(?:password|licen[cs]e)\s+(?:has\s+|is\s+)?expired|"
                                   r"expired\s+(?:password|licen[cs]e)", re.I)),
    ("licence-processes", re.compile(r"maximum number of (?:\w+ )*(?:processes|kernels)|"
                                     r"licen[cs]es?\s+(?:are\s+)?(?:all\s+|already\s+)*in use|"
                                     r"no (?:more |free )?licen[cs]es? (?:is |are )?available|"
                                     r"kernel licen[cs]e failure", re.I)),
    ("licence-server", re.compile(r"MathLM|license server|licence server", re.I)),
    ("licence", re.compile(r"cannot find a valid password|no valid password|mathpass|"
                           r"licen[cs]e", re.I)),
]

class OwnKernels:
    """The kernels this run has started on one host and not yet ended (MK402's test
    kernel, MK404's through the launch command), which run at the same time so that a run
    waits for one kernel start, not two.

    A licence that allows one kernel at a time ($MaxLicenseProcesses 1, or a MathLM
    server with one process slot left) refuses one of two kernels started together. The
    refused check knows it from the ``licence-processes`` outcome; when another of this
    run's kernels ran during its attempt (:attr:`Attempt.overlapped`), it waits until
    that kernel has ended (:meth:`alone`) and starts its own once more, alone
    (:func:`start_retrying_alone`). A refusal with no kernel of ours beside it is
    reported as it is."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._solo = threading.Lock()
        self._active: dict[int, "OwnKernels.Attempt"] = {}
        self._next = 0

    @dataclass
    class Attempt:
        overlapped: bool = False  # another of this run's kernels ran during it

    def begin(self, attempt: "OwnKernels.Attempt") -> int:
        """A kernel of this run starts (``attempt`` is told of any other beside it)."""
        with self._cond:
            key = self._next
            self._next += 1
            for other in self._active.values():
                other.overlapped = True
            attempt.overlapped = attempt.overlapped or bool(self._active)
            self._active[key] = attempt
        return key

    def end(self, key: int) -> None:
        """That kernel has ended (or was made sure to be gone)."""
        with self._cond:
            self._active.pop(key, None)
            self._cond.notify_all()

    @contextlib.contextmanager
    def running(self, attempt: "OwnKernels.Attempt") -> Iterator[None]:
        """:meth:`begin` and :meth:`end` around one kernel's life."""
        key = self.begin(attempt)
        try:
            yield
        finally:
            self.end(key)

    @contextlib.contextmanager
    def alone(self, timeout: float) -> Iterator[bool]:
        """For a start again alone: one at a time (two refused checks do not retry
        together), once none of this run's kernels runs; yields False when that did not
        happen within ``timeout``."""
        end = time.monotonic() + max(0.0, timeout)
        if not self._solo.acquire(timeout=max(0.0, timeout)):
            yield False
            return
        try:
            with self._cond:
                ok = self._cond.wait_for(lambda: not self._active, max(0.0, end - time.monotonic()))
            yield ok
        finally:
            self._solo.release()


def own_kernels(ctx: "Context") -> OwnKernels:
    """This host's :class:`OwnKernels`: one per connection to it, so that the contexts of
    one setup (MK402 in the background, MK404 in the step) share it."""
    return ctx.ssh.shared("kernel.own-kernels", OwnKernels)


def start_retrying_alone(ctx: "Context", start: Callable[["OwnKernels.Attempt"], T],
                         reason: Callable[[T], str]) -> tuple[T, bool]:
    """``start(attempt)`` (which runs its kernel inside ``own_kernels(ctx).running(attempt)``
    or between ``begin(attempt)`` and ``end``),
    and when ``reason`` of what it returned is ``licence-processes`` while another of this
    run's kernels ran beside it, once more alone. Returns (the last start's value, whether
    it was started again)."""
    attempt = OwnKernels.Attempt()
    value = start(attempt)
    if reason(value) == "licence-processes" and attempt.overlapped:
        with own_kernels(ctx).alone(ctx.remaining()) as alone:
            if alone:
                return start(OwnKernels.Attempt()), True
    return value, False


ALONE_NOTE = ("the first start was refused a licence process while this run's other kernel "
              "(MK402 beside MK404) ran; started again alone, after it ended")


# MathLM's TCP port. NOT verified in the Wolfram pages we could read (mathlm.html lists no
# port option); 16286 is the port administrators and Wolfram's installation notes are quoted
# with (observed). The fix names it as the one to check first.
MATHLM_PORT = 16286


def mathpass_script(kernel_target: str, port: int = MATHLM_PORT, timeout: float = 3) -> str:
    """``sh`` lines printing ``F <file>`` for each mathpass file found and ``L <server>
    <reachable: yes|no|unknown>`` for each ``!server`` line in them, testing a TCP connection
    from the remote host to ``server:port``. The files: the user's (~/.Wolfram/Licensing,
    ~/.Mathematica/Licensing, ~/Library/Wolfram/Licensing on macOS: reference.wolfram.com/
    language/tutorial/ConfigurationFiles.html), the system-wide ones (/usr/share/Wolfram,
    /usr/share/Mathematica: observed) and the installation's Configuration/Licensing
    (``$InstallationDirectory``, the parent of the Executables directory)."""
    install = kernel_target.rsplit("/Executables/", 1)[0] if "/Executables/" in kernel_target else ""
    files = ["$HOME/.Wolfram/Licensing/mathpass", "$HOME/.Mathematica/Licensing/mathpass",
             "$HOME/Library/Wolfram/Licensing/mathpass", "$HOME/Library/Mathematica/Licensing/mathpass",
             "/usr/share/Wolfram/Licensing/mathpass", "/usr/share/Mathematica/Licensing/mathpass"]
    quoted = " ".join(f'"{f}"' for f in files)
    if install:
        quoted += " " + shlex.quote(install + "/Configuration/Licensing/mathpass")
    t = max(1, math.ceil(timeout))
    return (
        f"for f in {quoted}; do [ -f \"$f\" ] && [ -r \"$f\" ] || continue; printf 'F\\t%s\\n' \"$f\"; "
        "sed -n 's/^[[:space:]]*!\\([^[:space:]]*\\).*/\\1/p' \"$f\" | while read -r h; do "
        "case $h in -*|*[!A-Za-z0-9._:-]*|'') continue;; esac; "
        "if command -v python3 >/dev/null 2>&1; then "
        f"python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], {port}), {t}).close()' \"$h\" "
        ">/dev/null 2>&1 && r=yes || r=no; "
        f"elif command -v nc >/dev/null 2>&1; then nc -z -w {t} \"$h\" {port} >/dev/null 2>&1 && r=yes || r=no; "
        "else r=unknown; fi; printf 'L\\t%s\\t%s\\n' \"$h\" \"$r\"; done; done\n"
    )


def parse_mathpass(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    files, servers = [], []
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "F" and len(parts) >= 2:
            files.append(parts[1])
        elif parts[0] == "L" and len(parts) >= 3 and (parts[1], parts[2]) not in servers:
            servers.append((parts[1], parts[2]))
    return files, servers


# The account's running kernels and front ends (each holds a licence process).
RUNNING_KERNELS_SCRIPT = (
    "ps -u \"$(id -u)\" -o pid= -o args= 2>/dev/null | "
    "grep -E 'WolframKernel|MathKernel|/math( |$)|WolframNB|Mathematica( |$)|mathematica( |$)' | "
    "grep -v -E 'grep -E|ps -u' | head -n 20\n"
)


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
    """The absolute kernel path the launch command runs (MK401's reading of ``--kernel``,
    or what it found); see :func:`read_kernel` for the whole reading."""
    reading = read_kernel(ctx)
    return reading.resolved if reading is not None else None
