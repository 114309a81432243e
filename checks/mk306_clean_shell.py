"""MK306 clean-shell: a non-interactive remote command prints exactly its own output.

sshd runs every command through the user's login shell (``$SHELL -c COMMAND``), and
that shell reads startup files even when nobody types into it: bash reads ``~/.bashrc``
when sshd starts it (Debian and most distributions build bash with SSH_SOURCE_BASHRC,
and /etc/bash.bashrc with it; verified for ``ssh host cmd`` by this check's tests), zsh
reads ``~/.zshenv`` for every shell, fish its ``config.fish``; sshd itself runs
``~/.ssh/rc`` and ``/etc/ssh/sshrc`` first (sshd(8) SSHRC). Anything they print lands in
front of the command's own output: it corrupts ``scp``/``rsync`` transfers and the
kernel's launch, and an ``stty`` without a terminal prints errors.

The run's remote commands are framed by a sentinel (:meth:`mkdoctor.openssh.session.SSHClient.run`),
so what came before it is exactly this noise. We show it, find the line that printed
it when we can (``grep -F`` for the text in the startup files), and name the fix.
"""

from __future__ import annotations

import posixpath
import re
import secrets

from mkdoctor.model import Check, Result, failed, needs_target, passed

# Startup files each shell reads for ``sh -c`` style non-interactive commands started
# by sshd, most likely first; sshd's rc files apply whatever the shell.
STARTUP_FILES = {
    "bash": ["~/.bashrc", "/etc/bash.bashrc", "~/.bash_profile", "~/.profile", "~/.bash_aliases"],
    "zsh": ["~/.zshenv", "/etc/zsh/zshenv", "/etc/zshenv"],
    "fish": ["~/.config/fish/config.fish", "/etc/fish/config.fish"],
    "tcsh": ["~/.tcshrc", "~/.cshrc", "/etc/csh.cshrc"],
    "csh": ["~/.cshrc", "/etc/csh.cshrc"],
}
SSHRC_FILES = ["~/.ssh/rc", "/etc/ssh/sshrc"]

GUARDS = {
    "bash": "put  [[ $- == *i* ]] || return  at the top of {file}, or move the output into "
            "an interactive-only block",
    "zsh": "move the output from {file} into ~/.zshrc (read by interactive shells only), or "
           "guard it with  [[ -o interactive ]] &&",
    "fish": "wrap the output in {file} in  if status is-interactive ... end",
    "tcsh": "wrap the output in {file} in  if ( $?prompt ) then ... endif",
    "csh": "wrap the output in {file} in  if ( $?prompt ) then ... endif",
}

# Finds which startup file prints the noise: $1 token, $2 number of needles, then the
# needles, then the files (~/ expanded here, on the remote side).
FIND_SCRIPT = r"""
T=$1; n=$2; shift 2
i=0
while [ "$i" -lt "$n" ]; do
  i=$((i+1)); eval "needle_$i=\$1"; shift
done
for f in "$@"; do
  case $f in "~/"*) f="$HOME/${f#"~/"}";; esac
  [ -f "$f" ] || continue
  printf '%s F %s\n' "$T" "$f"
  i=0
  while [ "$i" -lt "$n" ]; do
    i=$((i+1)); eval "needle=\$needle_$i"
    grep -n -F -e "$needle" -- "$f" 2>/dev/null | head -n 3 | sed "s/^/$T M $i /"
  done
done
"""

_BASH_ERROR = re.compile(r"^(/\S+): line (\d+): ")  # "/home/u/.bashrc: line 3: foo: ..."
_PROGRAM = re.compile(r"^(?:\S+: line \d+: )?([A-Za-z0-9_.-]+): ")  # "stty: 'standard input': ..."


def needles(noise: str) -> list[str]:
    """What to look for in the startup files: the printed lines themselves, and the
    program named at the start of an error message (``stty: ...``)."""
    out: list[str] = []
    for line in noise.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _PROGRAM.match(line)
        candidate = m.group(1) if m and not line.startswith("/") else line[:80]
        if candidate not in out:
            out.append(candidate)
        if len(out) >= 4:
            break
    return out


def direct_location(noise: str) -> tuple[str, int] | None:
    """bash names the file and line of its own errors."""
    for line in noise.splitlines():
        m = _BASH_ERROR.match(line.strip())
        if m:
            return m.group(1), int(m.group(2))
    return None


def parse_matches(stdout: str, token: str) -> list[tuple[str, int, str]]:
    """(file, line number, text) of each grep hit printed by FIND_SCRIPT."""
    hits: list[tuple[str, int, str]] = []
    current = ""
    for line in stdout.splitlines():
        if line.startswith(f"{token} F "):
            current = line[len(token) + 3:]
        elif line.startswith(f"{token} M ") and current:
            rest = line[len(token) + 3:].split(" ", 1)
            if len(rest) == 2:
                number, _, text = rest[1].partition(":")
                if number.isdigit():
                    hits.append((current, int(number), text.strip()))
    return hits


def tilde(path: str, home: str) -> str:
    return "~" + path[len(home):] if home not in ("", "/") and path.startswith(home + "/") else path


def run(ctx) -> Result:
    probe = ctx.ssh.run(["sh", "-c", 'printf "%s\\n" "${SHELL:-}" "$HOME"'], ctx.step_timeout())
    if probe.exit_code is None:
        said = (probe.noise + probe.stderr).strip() or (
            probe.ssh.stderr.strip() if probe.ssh else "") or "no output"
        return failed(
            "the remote shell did not run our command" + (" (timed out)" if probe.timed_out else ""),
            "check the account's login shell (getent passwd USER on the server: /usr/sbin/nologin "
            "refuses commands) and a command=\"...\" option on the key (MK305)",
            said.splitlines()[-5:], reason="no-command",
        )
    shell_path, _, home = probe.stdout.rstrip("\n").partition("\n")
    shell = posixpath.basename(shell_path) or "sh"
    noise = probe.noise
    if not noise.strip():
        return passed(f"a non-interactive command prints only its own output (login shell {shell})",
                      login_shell=shell_path)

    shown = [line for line in noise.splitlines() if line.strip()]
    details = ["printed before our command:"] + [f"  | {line[:120]}" for line in shown[:8]]
    if len(shown) > 8:
        details.append(f"  | … {len(shown) - 8} more lines")
    candidates = STARTUP_FILES.get(shell, []) + SSHRC_FILES
    location = direct_location(noise)
    if location is None and candidates:
        token = "MKS" + secrets.token_hex(6)
        look = needles(noise)
        found = ctx.ssh.run(["sh", "-c", FIND_SCRIPT, "sh", token, str(len(look)), *look,
                             *candidates], ctx.step_timeout())
        hits = parse_matches(found.stdout, token)
        if hits:
            location = (hits[0][0], hits[0][1])
            details.append(f"found: {tilde(hits[0][0], home)} line {hits[0][1]}: {hits[0][2][:100]}")
    if location:
        file = tilde(location[0], home)
        where = f"{file} line {location[1]}"
    else:
        file = (STARTUP_FILES.get(shell) or ["the shell's startup files"])[0]
        where = f"probably {file}"
        details.append("files the login shell reads here: " + ", ".join(candidates))
    if posixpath.basename(file) in ("rc", "sshrc"):
        fix = f"remove the output from {file}, or send it to /dev/null (sshd runs it before every command)"
    else:
        fix = GUARDS.get(shell, "make {file} print only in interactive shells").format(file=file)
    first = shown[0][:60] if shown else ""
    return failed(
        f"the remote login shell prints text before every command ({where}): {first!r}",
        fix, details, reason="noise", login_shell=shell_path, noise=noise[:2000],
    )


CHECK = Check(
    id="MK306",
    name="clean-shell",
    group="server",
    title="a non-interactive remote shell prints nothing",
    run=run,
    needs=("MK304",),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "silence the login shell's startup files"),
        ("no-command", "give the account a real shell"),
    ),
)
