"""Wolfram Language files written by the wizard.

- The *install* file puts the kernel entry into the front end's global option
  ``EvaluatorNames`` (reference.wolfram.com/language/ref/EvaluatorNames.html: "a global
  option that specifies the kernels that are currently configured"; it is a list of
  ``"name" -> {options}`` rules, the dialog *Evaluation > Kernel Configuration Options*
  edits the same list). It replaces an entry of the same name and keeps all others.
  A remote entry's options: ``"RemoteMachine" -> True``, ``"LoginScript"`` (the dialog's
  "Launch command"), ``"MLOpenArguments"`` ("Arguments to MLOpen"),
  ``"AutoStartOnLaunch"``, ``"AppendNameToCellLabel"``, ``"TranslateReturns"``.
- The *parallel* file launches parallel kernels on the same host: from 13.1,
  ``LaunchKernels["ssh://user@host:port/path?N"]`` (reference.wolfram.com/language/ref/
  LaunchKernels.html and KernelConfiguration.html: "ssh://user@hostname:port/path", the
  kernel count as a URL parameter; 13.1 is when KernelConfiguration superseded
  RemoteKernelObject, reference.wolfram.com/language/ref/RemoteKernelObject.html); before
  13.1, ``SubKernels`RemoteKernels``` and ``RemoteMachine[host, template, n]`` with the
  classic template ``ssh ... `1` "kernel -linkmode Connect `4` -linkname '`2`'
  -subkernel -noinit"`` (`1` host, `2` link name, `4` link protocol options).
"""

from __future__ import annotations

import re
import shlex
from typing import Optional
from urllib.parse import quote


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
   Options, replacing an entry of the same name and keeping every other kernel. *)
Module[{{name = {wl_string(name)}, entry, others}},
  entry = name -> {{
    "RemoteMachine" -> True,
    "AutoStartOnLaunch" -> False,
    "AppendNameToCellLabel" -> True,
    "TranslateReturns" -> True,
    "MLOpenArguments" -> {wl_string(mlopen_arguments)},
    "LoginScript" -> {wl_string(launch_command)}
  }};
  others = DeleteCases[EvaluatorNames /. Options[$FrontEnd, EvaluatorNames],
    (Rule | RuleDelayed)[name, _]];
  SetOptions[$FrontEnd, EvaluatorNames -> Append[others, entry]];
  name
]
"""


def wl_comment(text: str) -> str:
    return text.replace("(*", "( *").replace("*)", "* )")


def version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"\s*(\d+)(?:\.(\d+))?", version or "")
    if not m:
        return (0, 0)
    return int(m.group(1)), int(m.group(2) or 0)


def ssh_url(user: str, hostname: str, port: int, kernel: str, count: int) -> str:
    host = f"[{hostname}]" if ":" in hostname else hostname
    who = f"{quote(user, safe='')}@" if user else ""
    path = quote(kernel, safe="/")
    if not path.startswith("/"):
        path = "/" + path
    return f"ssh://{who}{host}:{port}{path}?{count}"


def parallel_file(*, profile: str, alias: str, user: str, hostname: str, port: int,
                  kernel: str, kernel_version: str, processors: int,
                  ssh_config: Optional[str] = None) -> str:
    """Launch ``processors`` parallel kernels on the remote host."""
    count = max(1, int(processors or 1))
    known = f"kernel version {kernel_version}" if kernel_version else "kernel version unknown"
    head = (f"(* Written by `mkdoctor setup` (profile {profile}): parallel kernels on "
            f"{wl_comment(user + '@' + hostname)}, {known}, {count} processor(s). *)\n")
    if kernel_version and version_tuple(kernel_version) < (13, 1):
        flag = "-mathlink" if version_tuple(kernel_version) < (10, 0) else "-wstp"
        remote = " ".join([shlex.quote(kernel), flag, "-linkmode", "Connect", "`4`",
                           "-linkname", "'`2`'", "-subkernel", "-noinit"])
        ssh = ["ssh", "-x", "-f"] + (["-F", shlex.quote(ssh_config)] if ssh_config else [])
        template = " ".join(ssh + ["`1`", shlex.quote(remote)])
        return head + (
            "(* Before 13.1: SubKernels`RemoteKernels`. The subkernels connect back to this\n"
            "   computer, so this needs the direct path (it does not use the tunnel). *)\n"
            'Needs["SubKernels`RemoteKernels`"];\n'
            f"LaunchKernels[RemoteMachine[{wl_string(alias)}, {wl_string(template)}, {count}]]\n")
    return head + f"LaunchKernels[{wl_string(ssh_url(user, hostname, port, kernel, count))}]\n"
