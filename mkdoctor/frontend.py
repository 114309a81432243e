"""Wolfram Language files the setup writes for the front end (read back by MK501).

- The *install* file puts the kernel entry into the front end's global option
  ``EvaluatorNames`` (reference.wolfram.com/language/ref/EvaluatorNames.html: "a global
  option that specifies the kernels that are currently configured"; it is a list of
  ``"name" -> {options}`` rules, the dialog *Evaluation > Kernel Configuration Options*
  edits the same list). It replaces an entry of the same name and keeps all others.
  A remote entry's options: ``"RemoteMachine" -> True``, ``"LoginScript"`` (the dialog's
  "Launch command"), ``"MLOpenArguments"`` ("Arguments to MLOpen"),
  ``"AutoStartOnLaunch"``, ``"AppendNameToCellLabel"``, ``"TranslateReturns"``.
- The *parallel* file launches parallel kernels on the same host. From 13.1,
  ``LaunchKernels["ssh://mk-NAME/path?N"]``: LaunchKernels and KernelConfiguration take
  "ssh://user@hostname:port/path" and "ssh://hostname" ("use the default path, user and
  port on the given machine"), the kernel path and count as URL parameters or as the
  properties "KernelCommand" and "KernelCount"; the "SSHCommand" is "ssh", "Username" and
  "Port" default to None, "SSHIdentity" is "the private SSH key to use", and on macOS and
  Linux LinkLaunch runs that ssh (reference.wolfram.com/language/ref/LaunchKernels.html,
  reference.wolfram.com/language/ref/KernelConfiguration.html; 13.1 is when
  KernelConfiguration superseded RemoteKernelObject,
  reference.wolfram.com/language/ref/RemoteKernelObject.html). So the URL names the
  managed alias and ssh applies its block (HostName, User, Port, IdentityFile, ProxyJump):
  the settings mkdoctor tested. An alias in another ssh config file (``--ssh-config``) is
  not seen by a plain ``ssh``, and the default "SSHArguments" are not documented (giving
  ``-F`` there would replace them), so then the URL names user, host and port and
  "SSHIdentity" the key, with a warning when the block needs a ProxyJump. Before 13.1,
  ``SubKernels`RemoteKernels``` and ``RemoteMachine[host, template, n]`` with the
  classic template ``ssh ... `1` "kernel -linkmode Connect `4` -linkname '`2`'
  -subkernel -noinit"`` (`1` host, `2` link name, `4` link protocol options).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote, urlsplit

from mkdoctor.launch import kernel_words, read_kernel_words


def wl_string(text: str) -> str:
    """``text`` as a Wolfram Language string literal, ASCII only: ``\\`` and ``"``
    escaped, control characters as ``\\n``/``\\t``/``\\r`` or ``\\:XXXX``, non-ASCII as
    ``\\:XXXX`` (or ``\\|XXXXXX`` beyond the BMP)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or 0x7F <= code <= 0xFFFF:
            out.append(f"\\:{code:04x}")
        elif code > 0xFFFF:
            out.append(f"\\|{code:06x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_ESC = re.compile(r'\\(?:(\\)|(")|(n)|(t)|(r)|:([0-9a-fA-F]{4})|\|([0-9a-fA-F]{6}))')


def parse_wl_string(literal: str) -> str:
    """Inverse of :func:`wl_string` (the escapes it writes)."""
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"':
        raise ValueError("not a string literal")
    body = literal[1:-1]

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "\\"
        if m.group(2):
            return '"'
        if m.group(3):
            return "\n"
        if m.group(4):
            return "\t"
        if m.group(5):
            return "\r"
        return chr(int(m.group(6) or m.group(7), 16))

    return _ESC.sub(sub, body)


STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def find_rule(text: str, key: str) -> Optional[str]:
    """The string value of ``"key" -> "..."`` in a file we wrote, or None."""
    m = re.search(re.escape(wl_string(key)) + r"\s*->\s*(" + STRING_RE.pattern + ")", text)
    return parse_wl_string(m.group(1)) if m else None


def install_file(name: str, launch_command: str, mlopen_arguments: str, profile: str) -> str:
    """A .wl file that adds (or replaces) the kernel entry ``name`` in EvaluatorNames."""
    return f"""(* Written by `mkdoctor setup` (profile {profile}); `mkdoctor config show` prints the same strings.
   Evaluate this file once in a notebook (File > Open..., then Evaluation > Evaluate Notebook,
   or Get["<this file>"]): it adds the kernel {wl_comment(name)} to Evaluation > Kernel Configuration
   Options, replacing an entry of the same name where it stands and keeping every
   other kernel. *)
Module[{{name = {wl_string(name)}, entry, current, pos}},
  entry = name -> {{
    "RemoteMachine" -> True,
    "AutoStartOnLaunch" -> False,
    "AppendNameToCellLabel" -> True,
    "TranslateReturns" -> True,
    "MLOpenArguments" -> {wl_string(mlopen_arguments)},
    "LoginScript" -> {wl_string(launch_command)}
  }};
{_REPLACE_ENTRY}  name
]
"""


# The entry takes the place of the first one of the same name (later ones are dropped),
# or is appended when there is none. Position[list, pattern, {1}, n, Heads -> False]:
# the first n positions among the list's own elements
# (reference.wolfram.com/language/ref/Position.html); Take[list, 0] is {}, Drop[list, i]
# the elements after the i-th (reference.wolfram.com/language/ref/Take.html, Drop.html).
_REPLACE_ENTRY = """\
  current = EvaluatorNames /. Options[$FrontEnd, EvaluatorNames];
  pos = Position[current, (Rule | RuleDelayed)[name, _], {1}, 1, Heads -> False];
  SetOptions[$FrontEnd, EvaluatorNames -> If[pos === {},
    Append[current, entry],
    With[{i = pos[[1, 1]]},
      Join[Take[current, i - 1], {entry},
        DeleteCases[Drop[current, i], (Rule | RuleDelayed)[name, _]]]]]];
"""


def wl_comment(text: str) -> str:
    return text.replace("(*", "( *").replace("*)", "* )")


def version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"\s*(\d+)(?:\.(\d+))?", version or "")
    if not m:
        return (0, 0)
    return int(m.group(1)), int(m.group(2) or 0)


def ssh_url(host: str, kernel: str = "", count: int = 0, user: str = "",
            port: Optional[int] = None) -> str:
    """``ssh://[user@]host[:port][/kernel][?count]``, escaped as RFC 3986 says: the user
    name and the kernel path percent-encoded (a space is ``%20``, non-ASCII its UTF-8
    bytes), an IPv6 address in brackets with a zone's ``%`` as ``%25`` (RFC 6874).
    ``kernel`` is an absolute path (or empty)."""
    h = host.replace("%", "%25")
    if ":" in h:
        h = f"[{h}]"
    who = f"{quote(user, safe='')}@" if user else ""
    where = f":{port}" if port else ""
    path = quote(kernel, safe="/") if kernel else ""
    return f"ssh://{who}{h}{where}{path}{f'?{count}' if count else ''}"


@dataclass(frozen=True)
class ParallelLaunch:
    """What the parallel-kernels file launches: written by :func:`parallel_file`, read
    back by :func:`read_parallel` (MK501 compares the two)."""

    form: str  # "url" (13.1 and later) or "remote-machine" (before 13.1)
    host: str  # the URL's host, or RemoteMachine's first argument
    kernel: str
    count: int
    user: str = ""
    port: Optional[int] = None
    identity: str = ""  # "SSHIdentity"
    ssh_config: str = ""  # remote-machine: ssh -F in the template
    module: str = ""  # ``module load MODULE`` before the kernel (launch.kernel_prefix)
    module_init: str = ""


def parallel_launch(*, alias: str, user: str, hostname: str, port: int, kernel: str,
                    kernel_version: str, count: int, identity: str = "",
                    ssh_config: Optional[str] = None, module: str = "",
                    module_init: str = "") -> ParallelLaunch:
    """The launch for a profile. ``ssh_config``: None when the managed block is in the ssh
    config that a plain ``ssh`` reads (~/.ssh/config); then the URL names the alias.
    ``module``: the kernel is on PATH after ``module load MODULE`` (sourcing
    ``module_init``), loaded first as in the launch command."""
    if "`" in kernel or "`" in (ssh_config or ""):
        # `1`, `2`, `4` are the template's placeholders before 13.1
        raise ValueError(f"{kernel!r}: a kernel or ssh config path with a backquote cannot be "
                         "written to the parallel-kernels file")
    mod = {"module": module, "module_init": module_init if module else ""}
    if kernel_version and version_tuple(kernel_version) < (13, 1):
        return ParallelLaunch("remote-machine", alias, kernel, count, ssh_config=ssh_config or "",
                              **mod)
    if ssh_config is None:
        return ParallelLaunch("url", alias, kernel, count, **mod)
    return ParallelLaunch("url", hostname, kernel, count, user=user, port=port, identity=identity,
                          **mod)


def in_url_path(pl: ParallelLaunch) -> bool:
    """The kernel goes into the URL's path (absolute, no module to load first)."""
    return pl.kernel.startswith("/") and not pl.module


def launch_expression(pl: ParallelLaunch, kernel_version: str = "") -> str:
    """The ``LaunchKernels[...]`` expression of ``pl``."""
    if pl.form == "remote-machine":
        flag = "-mathlink" if version_tuple(kernel_version) < (10, 0) else "-wstp"
        remote = " ".join([*(shlex.quote(w) for w in kernel_words(pl)), flag, "-linkmode",
                           "Connect", "`4`", "-linkname", "'`2`'", "-subkernel", "-noinit"])
        ssh = ["ssh", "-x", "-f"] + (["-F", shlex.quote(pl.ssh_config)] if pl.ssh_config else [])
        template = " ".join(ssh + ["`1`", shlex.quote(remote)])
        return f"LaunchKernels[RemoteMachine[{wl_string(pl.host)}, {wl_string(template)}, {pl.count}]]"
    in_url = in_url_path(pl)
    url = ssh_url(pl.host, pl.kernel if in_url else "", pl.count if in_url else 0, pl.user, pl.port)
    props: list[tuple[str, str]] = []
    if not in_url:  # a URL path is absolute: a command name goes in as a property, and so
        if pl.kernel:  # does a command line that loads a module first
            command = " ".join(shlex.quote(w) for w in kernel_words(pl)) if pl.module else pl.kernel
            props.append(("KernelCommand", wl_string(command)))
        props.append(("KernelCount", str(pl.count)))
    if pl.identity:
        props.append(("SSHIdentity", wl_string(pl.identity)))
    if not props:
        return f"LaunchKernels[{wl_string(url)}]"
    opts = ", ".join(f"{wl_string(k)} -> {v}" for k, v in props)
    return f"LaunchKernels[KernelConfiguration[{wl_string(url)}, {opts}]]"


def parallel_file(*, profile: str, alias: str, user: str, hostname: str, port: int,
                  kernel: str, kernel_version: str, processors: int,
                  ssh_config: Optional[str] = None, identity: str = "",
                  proxy_jump: str = "", module: str = "", module_init: str = "") -> str:
    """Launch ``processors`` parallel kernels on the remote host. ``ssh_config``: None
    when the managed block is in ~/.ssh/config; ``proxy_jump``: the block's ProxyJump;
    ``module``: loaded before the kernel starts (as in the launch command)."""
    count = max(1, int(processors or 1))
    pl = parallel_launch(alias=alias, user=user, hostname=hostname, port=port, kernel=kernel,
                         kernel_version=kernel_version, count=count, identity=identity,
                         ssh_config=ssh_config, module=module, module_init=module_init)
    loads = ""
    if pl.module:
        loads = (f"(* The kernel is on PATH only after `module load {wl_comment(pl.module)}`: each subkernel\n"
                 f"   is started as the launch command starts the kernel, by sh after sourcing\n"
                 f"   {wl_comment(pl.module_init)} and loading the module. *)\n")
    known = f"kernel version {kernel_version}" if kernel_version else "kernel version unknown"
    head = (f"(* Written by `mkdoctor setup` (profile {profile}): parallel kernels on "
            f"{wl_comment(user + '@' + hostname)}, {known}, {count} processor(s). *)\n")
    if pl.form == "remote-machine":
        return head + loads + (
            "(* Before 13.1: SubKernels`RemoteKernels`. The subkernels connect back to this\n"
            "   computer, so this needs the direct path (it does not use the tunnel). *)\n"
            'Needs["SubKernels`RemoteKernels`"];\n'
            f"{launch_expression(pl, kernel_version)}\n")
    a = wl_comment(alias)
    if pl.host == alias:
        jump = ", ProxyJump" if proxy_jump else ""
        notes = [f"(* ssh://{a} makes ssh use the managed Host {a} block of ~/.ssh/config (HostName,\n"
                 f"   User, Port, IdentityFile{jump}): the settings mkdoctor tested. *)"]
    else:
        notes = [f"(* The Host {a} block is in {wl_comment(ssh_config or '')}, which a plain ssh does\n"
                 "   not read: the URL names the user, host and port, \"SSHIdentity\" the key. *)"]
        if proxy_jump:
            notes.append(f"(* Warning: {a} reaches the host through ProxyJump {wl_comment(proxy_jump)},\n"
                         "   which this URL does not use. Copy the Host block into ~/.ssh/config and\n"
                         f"   launch \"ssh://{a}/<kernel path>?N\" instead. *)")
    if pl.module:
        notes.append(loads.rstrip("\n"))
        notes.append("(* How LaunchKernels hands \"KernelCommand\" to ssh is not documented: it is written\n"
                     "   as the command line the remote login shell runs (mkdoctor could not try it\n"
                     "   with Mathematica). If the subkernels do not start, put a wrapper script\n"
                     "   that loads the module and execs the kernel in the URL (docs/guides/kernels.md). *)")
    if in_url_path(pl) and quote(pl.kernel, safe="/") != pl.kernel:
        notes.append("(* The kernel path is percent-encoded in the URL (RFC 3986): %20 is a space. *)")
    return head + "\n".join(notes) + f"\n{launch_expression(pl)}\n"


_LAUNCH = re.compile(r"LaunchKernels\[\s*(KernelConfiguration\[\s*)?(" + STRING_RE.pattern + ")")
_PROPERTY = re.compile(r"\s*,\s*(" + STRING_RE.pattern + r")\s*->\s*(" + STRING_RE.pattern + r"|\d+)")
_REMOTE_MACHINE = re.compile(r"RemoteMachine\[\s*(" + STRING_RE.pattern + r")\s*,\s*("
                             + STRING_RE.pattern + r")\s*,\s*(\d+)\s*\]")


def read_parallel(text: str) -> ParallelLaunch:
    """The launch a parallel-kernels file holds (ValueError when there is none)."""
    m = _REMOTE_MACHINE.search(text)
    if m:
        words = shlex.split(parse_wl_string(m.group(2)))
        cfg = words[words.index("-F") + 1] if "-F" in words[:-1] else ""
        remote = shlex.split(words[-1]) if words else []
        kernel, module, init = read_kernel_words(remote)
        return ParallelLaunch("remote-machine", parse_wl_string(m.group(1)), kernel,
                              int(m.group(3)), ssh_config=cfg, module=module, module_init=init)
    m = _LAUNCH.search(text)
    if not m:
        raise ValueError("no LaunchKernels[\"ssh://...\"] or RemoteMachine[...] in it")
    url = urlsplit(parse_wl_string(m.group(2)))
    if url.scheme != "ssh":
        raise ValueError(f"{url.geturl()!r} is not an ssh:// URL")
    userinfo, _, hostport = url.netloc.rpartition("@")
    host = hostport[1:hostport.index("]")] if hostport.startswith("[") else hostport.split(":")[0]
    props: dict[str, str] = {}
    if m.group(1):
        pos = m.end()
        while (p := _PROPERTY.match(text, pos)):
            value = p.group(2)
            props[parse_wl_string(p.group(1))] = parse_wl_string(value) if value.startswith('"') else value
            pos = p.end()
    count = props.get("KernelCount", url.query)
    kernel, module, init = unquote(url.path), "", ""
    if "KernelCommand" in props:
        command = props["KernelCommand"]
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        kernel, module, init = read_kernel_words(words)
        if not module:  # a plain command name, as written
            kernel = command
    return ParallelLaunch("url", unquote(host), kernel, int(count) if count.isdigit() else 0,
                          user=unquote(userinfo), port=url.port,
                          identity=props.get("SSHIdentity", ""), module=module, module_init=init)


# --- which ssh config the parallel-kernels file names ----------------------------------------


def default_ssh_config() -> Path:
    """The file a plain ``ssh`` reads (its user configuration, ssh(1) FILES)."""
    return Path.home() / ".ssh" / "config"


def parallel_ssh_config(p: Any) -> Optional[str]:
    """The profile's ssh config for the parallel-kernels file: None when it is the one a
    plain ``ssh`` reads (~/.ssh/config), so that the file can name the alias alone."""
    if not p.ssh_config:
        return None
    given = Path(p.ssh_config).expanduser()
    try:
        same = given.resolve() == default_ssh_config().resolve()
    except OSError:  # pragma: no cover - a symlink loop
        same = False
    return None if same else p.ssh_config

