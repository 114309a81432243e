"""The two strings the front end needs, built once and used everywhere.

*Kernel Configuration Options > Advanced Options* of the Mathematica front end has two
fields: "Arguments to MLOpen" (how the front end opens its side of the link) and
"Launch command" (how it starts the kernel). The wizard writes them, MK404 runs the
launch command exactly as the front end would, and MK501 reads them back: all three use
this module, so what is tested is what is written.

Facts this relies on:
- The front end's *Kernel Configuration Options* dialog adds, edits and removes kernels
  (reference.wolfram.com/language/ref/frontendobject/ModifyEvaluatorNames.html). Its
  default remote launch command is
  ``… math -mathlink -LinkMode Connect -LinkProtocol TCPIP -LinkName "`linkname`"
  -LinkHost `ipaddress` `` and, before running it, the front end replaces the
  placeholders `` `linkname` `` with the name of the link it created
  (``port1@host,port2@host``) and `` `ipaddress` `` with its own address: observed (the
  dialog's Advanced Options, as users quote them); no Wolfram reference page documents
  the template or the placeholders.
- A TCPIP link name is two ports, "port1@host,port2@host"
  (reference.wolfram.com/language/tutorial/RunningProgramsOnRemoteComputers.html);
  ``LinkProtocol -> "TCPIP"`` is a documented protocol
  (reference.wolfram.com/language/ref/LinkProtocol.html). Both ports must reach the
  front end, which is why tunnel mode forwards both with ``ssh -R``.
- ``-wstp`` is the kernel's option to "communicate only via WSTP"
  (reference.wolfram.com/language/ref/program/WolframKernel.html); ``-mathlink`` is its
  MathLink-era name (``"/usr/local/bin/math -mathlink"`` in the example of
  reference.wolfram.com/language/ref/c/WSOpenString.html). That kernels before version 10
  take only ``-mathlink`` and 10 and later ``-wstp`` (MathLink became WSTP in version 10)
  is observed, not stated on a reference page.
- Link arguments: ``-linkname`` and ``-linkprotocol`` are what WSOpenArgcArgv() reads,
  and it "is not sensitive to the case of argument names" and "ignores argument names
  that it does not recognize" (reference.wolfram.com/language/ref/c/WSOpenArgcArgv.html,
  and the same words on .../ref/c/MLOpenArgcArgv.html for MathLink); ``-linkmode`` is
  one of the "standard MathLink/WSTP specifications for establishing a link"
  (reference.wolfram.com/language/NETLink/ref/net/html/
  M_Wolfram_NETLink_MathLinkFactory_CreateKernelLink_1.htm). ``-LinkHost`` is in no
  reference page (observed in the default launch command above).
- The front end runs the launch command with a POSIX shell on macOS and Linux, and ssh
  hands the remote command to the remote user's shell: the command is quoted for two
  shells, the local one (the whole remote command is one argument) and the remote one
  (each kernel argument, such as a path with spaces, is one word).
- Tunnel mode uses numeric ``127.0.0.1``, never ``localhost``: ``localhost`` may resolve
  to ``::1`` first, where no forward listens.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Optional

LINKNAME = "`linkname`"
IPADDRESS = "`ipaddress`"
# Placeholders are swapped for inert tokens while quoting (so that the quoting is chosen
# for the text the front end puts in, not for the backquotes), then put back. User input
# can never carry a placeholder: a destination, kernel path or ssh config path with a
# backquote is refused (ValueError, see _refuse_backquote), so the only placeholders in
# the command are the whole words kernel_argv puts there in direct mode.
_TOKENS = {LINKNAME: "\x00MKDLINKNAME\x00", IPADDRESS: "\x00MKDIPADDRESS\x00"}


@dataclass(frozen=True)
class LaunchSpec:
    """Everything the two front-end strings depend on."""

    destination: str  # what ssh connects to: the managed Host alias mk-NAME
    kernel: str  # the kernel executable on the remote host
    mode: str  # "tunnel" or "direct"
    link_ports: tuple[int, int]
    kernel_version: str = ""  # "14.1"; empty: assume 10 or later
    link_host: Optional[str] = None  # direct mode: the laptop address the kernel connects to
    ssh_config: Optional[str] = None  # an ssh config other than ~/.ssh/config (ssh -F)
    # The ssh the front end runs: "" is the ssh on this computer's PATH, written as its
    # absolute path (the one mkdoctor tests: a GUI app's PATH is not the shell's).
    ssh_binary: str = ""
    # Variables removed for ssh (``/usr/bin/env -u NAME``): None is this computer's
    # platform's (see frontend_unset); () writes the bare form with no env prefix.
    unset_env: Optional[tuple[str, ...]] = None
    # The kernel is on PATH only after ``module load MODULE`` (environment modules, Lmod),
    # ``module`` being defined by sourcing MODULE_INIT: see kernel_prefix.
    module: str = ""
    module_init: str = ""


_SAFE_MODULE_WORD = re.compile(r"[A-Za-z0-9._+/@=:,-]+")


def kernel_prefix(module: str, module_init: str) -> list[str]:
    """The words before the kernel's argv when a module must be loaded first (empty
    without a module): ``sh -c '. INIT >/dev/null 2>&1; module load MODULE && exec "$0"
    "$@"'``, the kernel's argv following as ``$0 $@``.

    ``module`` is a shell function that only login and interactive shells define (they
    source the module system's init script from /etc/profile.d); the remote command of
    ssh runs in neither, so the init script is sourced here, by ``sh`` whatever the
    account's login shell is. The script is one single-quoted word holding no quote,
    ``!``, backslash, newline or ``$`` other than ``$0``/``$@``, which sh, bash, zsh,
    csh/tcsh and fish all keep as it is inside single quotes; module name and init path
    are limited to plain characters (ValueError otherwise)."""
    if not module:
        return []
    for what, value in (("module name", module), ("module init script", module_init)):
        if not _SAFE_MODULE_WORD.fullmatch(value or ""):
            raise ValueError(f"{value!r}: a {what} with characters that cannot go into the "
                             "launch command")
    if not module_init.startswith("/"):
        raise ValueError(f"{module_init!r}: the module init script must be an absolute path")
    return ["sh", "-c", f'. {module_init} >/dev/null 2>&1; module load {module} && exec "$0" "$@"']


def kernel_words(spec) -> list[str]:
    """The kernel's command words: :func:`kernel_prefix` (when a module must be loaded)
    and the kernel. ``spec``: anything with ``module``, ``module_init`` and ``kernel``
    (a LaunchSpec, a cluster spec, a parallel-kernels launch)."""
    return kernel_prefix(spec.module, spec.module_init) + [spec.kernel]


_PREFIX_SCRIPT = re.compile(r"\. (\S+) >/dev/null 2>&1; module load (\S+) && exec \"\$0\" \"\$@\"")


def read_kernel_words(words: list[str]) -> tuple[str, str, str]:
    """(kernel, module, module_init) from :func:`kernel_words`' words read back (the
    first word is the kernel when there is no module prefix)."""
    if len(words) >= 4 and words[:2] == ["sh", "-c"]:
        m = _PREFIX_SCRIPT.fullmatch(words[2])
        if m:
            return words[3], m.group(2), m.group(1)
    return (words[0] if words else ""), "", ""


def kernel_fields(reading) -> dict:
    """LaunchSpec's kernel fields from a :class:`mkdoctor.kernel.KernelPath` (MK401's
    reading): ``LaunchSpec(**kernel_fields(reading), destination=..., ...)``."""
    return {"kernel": reading.resolved, "module": reading.module or "",
            "module_init": reading.module_init or ""}


def remote_kernel_command(reading, args: list[str] = ()) -> str:
    """The kernel (module loaded first when there is one) as one remote shell command
    line, for the parallel-kernels file's kernel command; ``args`` follow it."""
    words = kernel_prefix(reading.module or "", reading.module_init or "") + [reading.resolved, *args]
    return " ".join(shlex.quote(w) for w in words)


def link_flag(kernel_version: str) -> str:
    """``-mathlink`` for kernels before 10, ``-wstp`` otherwise (unknown: ``-wstp``)."""
    m = re.match(r"\s*(\d+)", kernel_version or "")
    if m and int(m.group(1)) < 10:
        return "-mathlink"
    return "-wstp"


def tunnel_linkname(ports: tuple[int, int]) -> str:
    return f"{ports[0]}@127.0.0.1,{ports[1]}@127.0.0.1"


def direct_linkname(ports: tuple[int, int], host: str) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{ports[0]}@{h},{ports[1]}@{h}"


def mlopen_arguments(spec: LaunchSpec) -> str:
    """The "Arguments to MLOpen" field: the front end listens on both link ports."""
    if spec.mode == "tunnel":
        name = tunnel_linkname(spec.link_ports)
    else:
        if not spec.link_host:
            raise ValueError("direct mode needs the laptop's link address")
        name = direct_linkname(spec.link_ports, spec.link_host)
    return f"-LinkMode Listen -LinkProtocol TCPIP -LinkName {name} -LinkOptions MLDontInteract"


def _refuse_backquote(spec: LaunchSpec) -> None:
    """The front end fills in every `` `name` `` of the launch command, so a backquote in
    user text could smuggle a placeholder in (or leave the template unbalanced)."""
    for what, value in (("destination", spec.destination), ("kernel path", spec.kernel),
                        ("ssh config path", spec.ssh_config or "")):
        if "`" in value:
            raise ValueError(f"{value!r}: a {what} with a backquote cannot go into the launch "
                             "command (the front end treats `...` as a placeholder)")


def kernel_argv(spec: LaunchSpec) -> list[str]:
    """The kernel's command line on the remote host (placeholders in direct mode).
    A kernel path with a backquote is a ValueError."""
    _refuse_backquote(spec)
    if spec.mode == "tunnel":
        name, host = tunnel_linkname(spec.link_ports), "127.0.0.1"
    else:
        name, host = LINKNAME, IPADDRESS
    return kernel_words(spec) + [
        link_flag(spec.kernel_version), "-LinkMode", "Connect",
        "-LinkProtocol", "TCPIP", "-LinkName", name, "-LinkHost", host]


def ssh_argv(spec: LaunchSpec) -> list[str]:
    """The local command line: ssh, the forwards (tunnel mode), the alias, the remote command.
    The destination must be one word that ssh cannot take for an option, and no
    argument may hold a backquote (ValueError)."""
    _refuse_backquote(spec)
    dest = spec.destination
    if not dest or dest.startswith("-") or re.search(r"[\s\x00-\x1f\x7f]", dest):
        raise ValueError(f"{spec.destination!r}: not a usable ssh destination")
    argv = [*env_prefix(spec), resolved_ssh(spec.ssh_binary)]
    if spec.ssh_config:
        argv += ["-F", spec.ssh_config]
    if spec.mode == "tunnel":
        for p in spec.link_ports:
            argv += ["-R", f"{p}:127.0.0.1:{p}"]
    argv += [spec.destination, _join(kernel_argv(spec), shlex.quote)]
    return argv


# --- the front end's environment (how ssh is started) ----------------------------------
#
# The front end starts the launch command in its own environment, not the shell's:
# - Linux: it puts its own SystemFiles/Libraries first in LD_LIBRARY_PATH for the programs
#   it starts, so the system ssh loads the front end's libcrypto and cannot start
#   (observed: users quote "libcrypto.so.1.0.0: no version information available
#   (required by ssh)", and sakra/Tunnel's HISTORY, 1.1.1, has a "work-around for
#   SystemFiles/Libraries/libcrypto.so incompatibility with /usr/bin/ssh under Linux").
#   That the front end keeps libraries in SystemFiles/Libraries/$SystemID is documented
#   (reference.wolfram.com/language/tutorial/WolframSystemFileOrganization.html); that it
#   sets LD_LIBRARY_PATH to it is observed.
# - macOS: a GUI app gets launchd's PATH (/usr/bin:/bin:/usr/sbin:/sbin), not the shell's
#   (observed), so a bare "ssh" may not be the ssh that was tested; DYLD_* variables are
#   removed for the same reason as LD_LIBRARY_PATH (SIP already purges them for
#   /usr/bin/ssh; a Homebrew ssh is not protected).
# So the command names the tested ssh by its absolute path, behind
# ``/usr/bin/env -u VAR``. ``env -u`` is not POSIX (POSIX env has only -i, which would
# also drop SSH_AUTH_SOCK and HOME) but GNU coreutils, BusyBox, macOS and the BSDs all
# have it, and /usr/bin/env is where every Linux distribution and macOS put env.

ENV = "/usr/bin/env"
FRONTEND_UNSET = {
    "linux": ("LD_LIBRARY_PATH",),
    "darwin": ("DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH"),
}


def frontend_unset(platform: Optional[str] = None) -> tuple[str, ...]:
    """The library-path variables a front end on ``platform`` (sys.platform) sets that
    ssh must not see; none on Windows (its front end runs commands with cmd.exe)."""
    import sys

    plat = platform or sys.platform
    return FRONTEND_UNSET.get("linux" if plat.startswith("linux") else plat, ())


def env_prefix(spec: LaunchSpec) -> list[str]:
    names = frontend_unset() if spec.unset_env is None else spec.unset_env
    if not names:
        return []
    out = [ENV]
    for name in names:
        out += ["-u", name]
    return out


def resolved_ssh(binary: str) -> str:
    """``binary``, or with "" the absolute path of the ssh on PATH (bare "ssh" if none)."""
    import sys

    if binary:
        return binary
    if sys.platform == "win32":  # cmd.exe: a backslash path would need other quoting
        return "ssh"
    import shutil

    found = shutil.which("ssh")
    if not found or "`" in found:  # a backquote would read as a placeholder
        return "ssh"
    return os.path.abspath(found)


def ssh_index(local: list[str]) -> int:
    """Where ssh is in a launch command's local argv: 0, or after an ``env`` prefix
    (``env [-i] [-u NAME]... [NAME=VALUE]... ssh ...``); -1 when there is no ssh."""
    i = 0
    if local and os.path.basename(local[0]) == "env":
        i = 1
        while i < len(local):
            word = local[i]
            if word == "-u" and i + 1 < len(local):
                i += 2
            elif word in ("-i", "-") or word.startswith("-u") or (
                    "=" in word and not word.startswith("-") and "/" not in word.split("=")[0]):
                i += 1
            else:
                break
    if i < len(local) and os.path.basename(local[i]) == "ssh":
        return i
    return -1


def ssh_part(local: list[str]) -> list[str]:
    """A launch command's local argv from ssh on (an env prefix dropped)."""
    i = ssh_index(local)
    return local[i:] if i >= 0 else local


def launch_command(spec: LaunchSpec) -> str:
    """The "Launch command" field, as one line for a POSIX shell."""
    return _join(ssh_argv(spec), quote_readable)


def quote_readable(word: str) -> str:
    """Quote for a POSIX shell, preferring double quotes where they are safe (no ``$``,
    backquote, backslash or ``"`` inside) because they read better in the dialog.
    The launch command targets a macOS or Linux front end (a POSIX shell runs it): the
    single-quoted fallback is not quoting for a Windows front end (see docs/checks/MK501.md)."""
    if word and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    if not re.search(r'[$`\\"!]', word):
        return f'"{word}"'
    return shlex.quote(word)


def _join(words: list[str], quote) -> str:
    parts = []
    for w in words:
        if w in _TOKENS:  # a placeholder as a whole word stays bare (never quoted)
            parts.append(w)
            continue
        for placeholder, token in _TOKENS.items():
            w = w.replace(placeholder, token)
        q = quote(w)
        for placeholder, token in _TOKENS.items():
            q = q.replace(token, placeholder)
        parts.append(q)
    return " ".join(parts)


def substitute(command: str, linkname: str = "", ipaddress: str = "") -> str:
    """Fill in the placeholders as the front end does before it runs the command."""
    return command.replace(LINKNAME, linkname).replace(IPADDRESS, ipaddress)


def split_launch(command: str) -> tuple[list[str], list[str]]:
    """Split a (substituted) launch command as the two shells will: the local ssh argv,
    and the kernel argv the remote shell sees (the last argument of ssh)."""
    local = shlex.split(command, posix=True)
    return local, shlex.split(local[-1], posix=True)
