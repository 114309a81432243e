"""MK305 authorized-keys: our key is in the remote AuthorizedKeysFile, safely.

MK304 proves that a key login works today; this check says why, and what would break
it or the remote kernel:

- where our key is (the files of the server's effective ``AuthorizedKeysFile``, tokens
  ``%h``/``%u``/``%U``/``%%`` expanded, relative paths under the home directory; OpenSSH's
  default is ``.ssh/authorized_keys .ssh/authorized_keys2``, sshd_config(5));
- StrictModes: sshd refuses a key file when it, or a directory above it up to the home
  directory, is writable by others or owned by someone other than the user or root
  (sshd(8) FILES, ``auth_secure_path``/``safe_path`` in OpenSSH). Group-writable is
  refused upstream, but Debian and Ubuntu accept it when the group contains only the
  user (Debian patch user-group-modes,
  https://sources.debian.org/patches/openssh/1:9.2p1-2+deb12u7/user-group-modes.patch/),
  so it is a warning here;
- the options on our key's line (sshd(8) AUTHORIZED_KEYS FILE FORMAT): ``command=``
  replaces every command the front end sends, the kernel launch included;
  ``no-port-forwarding`` or ``restrict`` without ``port-forwarding`` refuse the tunnel's
  ``-R`` forwards; ``permitlisten=`` must allow both link ports; ``from=`` must match the
  address the server sees us from. The line judged is the one sshd uses: a line whose
  ``from=`` refuses us is skipped for the next one holding our key (auth2-pubkeyfile.c);
- a forced command (``command=`` or ``ForceCommand``) also replaces our own commands:
  when nothing we send runs, a second ``ssh -v`` login reads the line sshd used from its
  "Remote: FILE:N: key options" debug messages;
- malformed lines, named by number (sshd skips them; a key broken in two when pasted is
  the usual cause), and a key found only in the deprecated ``authorized_keys2``.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Optional

from mkdoctor.openssh.authorized_keys import KeyLine, from_matches, listen_permitted, parse_file
from mkdoctor.openssh.pubkey import fingerprint as key_fingerprint
from mkdoctor.openssh.pubkey import parse_public_key
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped, warned
from mkdoctor.openssh.session import RemoteUnavailable

DEFAULT_AUTHORIZED_KEYS_FILE = ".ssh/authorized_keys .ssh/authorized_keys2"
MAX_FILE_BYTES = 262144

# Lists each path with ``ls -ldnL`` (mode, links, uid, gid...: the same on GNU, BSD,
# macOS and busybox, unlike stat; -L follows symlinks as sshd's stat() does), then the
# contents of the first ``$n`` paths, framed by a random token.
LIST_SCRIPT = r"""
T=$1; n=$2; shift 2
i=0
for p in "$@"; do
  i=$((i+1))
  printf '%s L %s ' "$T" "$i"
  ls -ldnL -- "$p" 2>/dev/null || echo -
done
i=0
for p in "$@"; do
  i=$((i+1))
  [ "$i" -gt "$n" ] && break
  if [ -f "$p" ]; then
    printf '%s B %s\n' "$T" "$i"
    head -c MAXBYTES -- "$p" 2>/dev/null || printf '%s UNREADABLE\n' "$T"
    printf '\n%s E %s\n' "$T" "$i"
  fi
done
""".replace("MAXBYTES", str(MAX_FILE_BYTES))

INFO_SCRIPT = 'printf "%s\\n" "$HOME"; id -un; id -u; printf "%s\\n" "${SSH_CONNECTION:-}"'


@dataclass
class Entry:
    """``ls -ldn`` of one remote path."""

    path: str
    exists: bool
    is_dir: bool = False
    mode: str = ""  # "rwxr-xr-x"
    uid: int = -1


@dataclass
class Problem:
    severity: str  # "fail" or "warn"
    summary: str
    fix: str
    details: list[str] = field(default_factory=list)


@dataclass
class OurKey:
    keytype: str
    blob: str
    source: str  # where we found it (a .pub file, MK202)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.blob)


# --- pure helpers (unit-tested) ---------------------------------------------------------


def expand(pattern: str, home: str, user: str, uid: str) -> str:
    """An AuthorizedKeysFile entry as sshd expands it (sshd_config(5) TOKENS: %% %h %U
    %u); a relative path is taken relative to the home directory."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%" and i + 1 < len(pattern):
            token = pattern[i + 1]
            out.append({"%": "%", "h": home, "u": user, "U": uid}.get(token, "%" + token))
            i += 2
            continue
        out.append(c)
        i += 1
    path = "".join(out)
    if path.startswith("~/"):
        path = posixpath.join(home, path[2:])
    elif not path.startswith("/"):
        path = posixpath.join(home, path)
    return posixpath.normpath(path)


def guarded_dirs(path: str, home: str) -> list[str]:
    """The directories sshd checks above a key file: up to and including the home
    directory when the file is under it, else up to ``/``."""
    dirs = []
    d = posixpath.dirname(path)
    home = posixpath.normpath(home)
    under_home = path.startswith(home.rstrip("/") + "/")
    while True:
        dirs.append(d)
        if (under_home and d == home) or d in ("/", ".", ""):
            break
        d = posixpath.dirname(d)
    return dirs


def parse_ls(line: str, path: str) -> Entry:
    """One ``ls -ldn`` line (``-`` when the path does not exist)."""
    fields = line.split(None, 4)
    if len(fields) < 4 or len(fields[0]) < 10 or not fields[2].isdigit():
        return Entry(path, False)
    return Entry(path, True, fields[0][0] == "d", fields[0][1:10], int(fields[2]))


def parse_listing(stdout: str, token: str, paths: list[str]) -> tuple[dict[str, Entry], dict[str, Optional[str]]]:
    """The script's output -> (entries by path, contents by path; None = unreadable)."""
    entries: dict[str, Entry] = {}
    contents: dict[str, Optional[str]] = {}
    lines = stdout.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == token and parts[2].isdigit():
            index = int(parts[2]) - 1
            if 0 <= index < len(paths):
                path = paths[index]
                if parts[1] == "L":
                    entries[path] = parse_ls(parts[3] if len(parts) > 3 else "-", path)
                elif parts[1] == "B":
                    end = f"{token} E {index + 1}"
                    body: list[str] = []
                    i += 1
                    while i < len(lines) and lines[i] != end:
                        body.append(lines[i])
                        i += 1
                    # The newline printed before the end mark ends the last line: joining
                    # the lines gives the file's text exactly.
                    text = "\n".join(body)
                    contents[path] = None if f"{token} UNREADABLE" in text else text
        i += 1
    return entries, contents


def mode_problem(entry: Entry, uid: int) -> Optional[tuple[str, str]]:
    """("other"|"owner"|"group", text) when StrictModes would object, else None."""
    what = "directory" if entry.is_dir else "file"
    if entry.uid not in (0, uid):
        return "owner", f"{entry.path}: {what} owned by uid {entry.uid}, not by you or root"
    if entry.mode[7] == "w":
        return "other", f"{entry.path}: {what} writable by everyone ({entry.mode})"
    if entry.mode[4] == "w":
        return "group", f"{entry.path}: {what} writable by its group ({entry.mode})"
    return None


def option_problems(line: KeyLine, where: str, mode: str, link_ports: tuple[int, int],
                    client_address: str) -> list[Problem]:
    """What the options on our key's line break (see the module docstring)."""
    out: list[Problem] = []
    commands = line.values("command")
    if commands:
        out.append(Problem(
            "fail", f"{where} forces command=\"{commands[0]}\": it runs instead of every command "
            "the front end sends, so the kernel never starts",
            f"remove command=\"...\" from {where} (or use a separate key for the kernel)"))
    if not line.port_forwarding:
        why = ("restrict (without port-forwarding)" if line.has("restrict")
               and not any(o.name == "port-forwarding" and not o.negated for o in line.options)
               else "no-port-forwarding")
        fix = (f"in {where}, change restrict to restrict,port-forwarding"
               if why.startswith("restrict") else f"remove no-port-forwarding from {where}")
        if mode == "tunnel":
            out.append(Problem("fail", f"{where} has {why}: the tunnel's reverse forwards "
                               "(ssh -R) are refused", fix))
        else:
            out.append(Problem("warn", f"{where} has {why}: fine in direct mode, but tunnel "
                               "mode would be refused", fix))
    listen = line.values("permitlisten")
    if listen and mode == "tunnel":
        refused = [p for p in link_ports if not listen_permitted(listen, p)]
        if refused:
            allow = ",".join(f'permitlisten="localhost:{p}"' for p in link_ports)
            out.append(Problem(
                "fail", f"{where} limits remote forwards to permitlisten={','.join(listen)}: "
                f"link port{'s' if len(refused) > 1 else ''} {', '.join(map(str, refused))} "
                "would be refused", f"add {allow} to the options of {where}"))
    for pattern in line.values("from"):
        verdict = from_matches(pattern, client_address) if client_address else None
        if verdict is False:
            out.append(Problem(
                "fail", f"{where} allows logins only from=\"{pattern}\", and the server sees "
                f"you as {client_address}",
                f"add {client_address} to from=\"...\" in {where}, or remove the from= option"))
        elif verdict is None:
            out.append(Problem(
                "warn", f"{where} allows logins only from=\"{pattern}\" (host names mkdoctor "
                "cannot compare with your address)",
                f"check that from=\"{pattern}\" in {where} covers every network you work from"))
    for expiry in line.values("expiry-time"):
        out.append(Problem("warn", f"{where} expires: expiry-time=\"{expiry}\"",
                           f"renew the key before then, or remove expiry-time from {where}"))
    return out


def judged_line(found: list[tuple[str, KeyLine]], client_address: str
                ) -> tuple[int, list[tuple[str, KeyLine, str]]]:
    """The line of ours that sshd uses, as sshd picks it: files in AuthorizedKeysFile
    order, lines in file order, skipping a line whose ``from=`` refuses the client's
    address (auth_check_authkey_line: "Refused by key options", then the next line).
    Returns its index in ``found`` and the lines skipped before it (file, line, pattern).
    When every line refuses the address, the first one is judged (its from= fails)."""
    skipped: list[tuple[str, KeyLine, str]] = []
    if not client_address:
        return 0, skipped
    for index, (path, line) in enumerate(found):
        refusing = [p for p in line.values("from") if from_matches(p, client_address) is False]
        if not refusing:
            return index, skipped
        skipped.append((path, line, refusing[0]))
    return 0, []


# Remote debug lines sshd sends to a client that logged in (ssh -v shows them as
# "debug1: Remote: ..."): auth_log_authopts names the file and line of the key that was
# used and its options, "command" among them for a forced command (OpenSSH >= 7.7);
# older servers say "Forced command." without a place.
_KEY_OPTIONS = re.compile(r"Remote: (?P<file>\S.*?):(?P<line>\d+): key options: (?P<opts>.*)$")
_FORCED_OLD = re.compile(r"Remote: Forced command", re.I)


def forced_command_place(verbose_stderr: str) -> Optional[tuple[str, int]]:
    """(file, line) of a forced command from ``ssh -v``'s Remote: lines; ("", 0) when
    the server says only that a command is forced; None when it says nothing of one."""
    place: Optional[tuple[str, int]] = None
    for text in verbose_stderr.splitlines():
        m = _KEY_OPTIONS.search(text)
        if m and "command" in m.group("opts").split():
            return m.group("file"), int(m.group("line"))
        if _FORCED_OLD.search(text):
            place = ("", 0)
    return place


def commands_replaced(ctx, info) -> Result:
    """MK304 logged in and ssh ended normally, but our framed command never ran: something
    on the server runs instead of every command. Name it when the server says which."""
    rc = info.ssh.returncode
    printed = [ln for ln in (info.noise + info.stdout).strip().splitlines() if ln.strip()]
    details = [f"ssh exited {rc}, and the command mkdoctor sent never started"]
    if printed:
        details.append("what ran instead printed: " + " | ".join(printed[:3])[:200])
    # One more login with -v (not through the run's connection): sshd tells a client
    # that logged in which key line it used and that line's options.
    probe = ctx.run_local(ctx.ssh.base_args() + [
        "-v", "-T", "-o", "ControlMaster=no", "-o", "ControlPath=none",
        "--", ctx.ssh.destination, "true"])
    place = forced_command_place(probe.stderr or "")
    fix_other = "or use a separate key for the kernel"
    try:
        user = (ctx.ssh.config(ctx.step_timeout()).get("user") or ["USER"])[0]
    except RemoteUnavailable:
        user = "USER"
    if place is not None:
        path, number = place
        where = f"{path} line {number}" if path else "our key's line in authorized_keys"
        return failed(
            f"a forced command replaces every command: command=\"...\" on {where}, so the "
            "kernel never starts",
            f"remove command=\"...\" from {where} on the server ({fix_other})",
            details, forced_command_file=path, forced_command_line=number)
    # sshd's ForceCommand is not among what it tells the client, and the server's
    # configuration cannot be read when no command runs: name the likely causes.
    details.append("the server names no key line with command= (ssh -v)")
    return failed(
        "remote commands do not run: something on the server replaces them (likely a "
        "command=\"...\" forced command on our key's line, ForceCommand, or a login shell "
        "that is not a shell)",
        "on the server, look for command=\"...\" on your key's line in ~/.ssh/authorized_keys, "
        "ForceCommand in sudo sshd -T, and your login shell (the last field of "
        f"getent passwd {shlex.quote(user)})", details)


# --- the check -------------------------------------------------------------------------


def our_keys(ctx) -> list[OurKey]:
    """The public keys ssh may log in with: MK202's, --identity's, the IdentityFiles'."""
    keys: list[OurKey] = []

    def add(text: str, source: str) -> None:
        try:
            parsed = parse_public_key(text)
        except ValueError:
            return
        if all(k.blob != parsed.blob for k in keys):
            keys.append(OurKey(parsed.algorithm, parsed.blob, source))

    fact = ctx.fact("MK202", "public_key")
    if isinstance(fact, str) and fact.strip():
        if os.path.isfile(os.path.expanduser(fact.strip())):
            add(_read(os.path.expanduser(fact.strip())), fact.strip())
        else:
            add(fact, "MK202 key-pair")
    paths: list[str] = []
    if ctx.options.identity:
        paths.append(str(ctx.options.identity))
    try:
        paths += ctx.ssh.config(ctx.step_timeout()).get("identityfile") or []
    except RemoteUnavailable:
        pass
    for path in paths:
        pub = os.path.expanduser(path) + ".pub"
        if os.path.isfile(pub):
            add(_read(pub), pub)
    return keys


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(65536)
    except OSError:
        return ""


def sshd_settings(ctx) -> tuple[dict[str, str], str]:
    """The server's effective sshd settings (mkdoctor.sshd_remote, shared per run) and a
    note on where they came from; ({}, why) when they cannot be had."""
    try:
        from mkdoctor.sshd_remote import effective_sshd_config
    except ImportError:
        return {}, "the server's sshd configuration was not read"
    try:
        eff = effective_sshd_config(ctx)
        return {k.lower(): str(v) for k, v in dict(eff.values).items()}, \
            f"AuthorizedKeysFile from {getattr(eff, 'source', 'the server')}"
    except Exception as exc:  # noqa: BLE001 - another check's helper: fall back, say why
        return {}, f"could not read the server's sshd configuration ({exc})"


def tilde(path: str, home: str) -> str:
    return "~" + path[len(home):] if home not in ("", "/") and path.startswith(home + "/") else path


def run(ctx) -> Result:
    timeout = ctx.step_timeout()
    settings, source = sshd_settings(ctx)
    akf = settings.get("authorizedkeysfile", "").strip()
    notes: list[str] = []
    if not akf:
        akf = DEFAULT_AUTHORIZED_KEYS_FILE
        notes.append(f"{source}: assuming OpenSSH's default AuthorizedKeysFile {akf}")
    else:
        notes.append(f"{source}: {akf}")
    if akf.lower() == "none":
        return skipped("skipped: the server reads no authorized_keys files (AuthorizedKeysFile "
                       "none); keys come from AuthorizedKeysCommand",
                       "nothing to check here: MK304 passwordless-login shows whether the "
                       "AuthorizedKeysCommand accepts your key", details=notes)
    # StrictModes as the server reports it; None when unknown (the default is yes).
    strict = {"yes": True, "no": False}.get(settings.get("strictmodes", "").lower())

    info = ctx.ssh.run(["sh", "-c", INFO_SCRIPT], timeout)
    fields = info.stdout.split("\n")
    if info.exit_code != 0 or len(fields) < 3 or not fields[2].strip().isdigit():
        ended = (info.exit_code is None and info.ssh is not None and not info.timed_out
                 and info.ssh.returncode not in (None, 255) and ctx.ssh.token not in info.stdout
                 and ctx.ssh.token not in info.noise)
        if ended:
            return commands_replaced(ctx, info)
        said = (info.stderr or info.stdout or info.noise).strip().splitlines()
        why = ("remote commands do not run (a command=\"...\" forced command, or a login "
               "shell that refuses commands? see MK306)" if info.exit_code is None
               else "could not read the remote home directory and user id")
        return skipped(f"skipped: {why}", "re-run with -v to see what the server answered",
                       details=said[-3:] or ["no output"])
    home, user, uid = fields[0].rstrip("/") or "/", fields[1], int(fields[2])
    client_address = fields[3].split()[0] if len(fields) > 3 and fields[3].split() else ""

    files: list[str] = []
    for pattern in akf.split():
        path = expand(pattern, home, user, str(uid))
        if path not in files:
            files.append(path)
    dirs: list[str] = []
    for path in files:
        for d in guarded_dirs(path, home):
            if d not in dirs and d not in files:
                dirs.append(d)
    token = "MKA" + secrets.token_hex(6)
    listing = ctx.ssh.run(["sh", "-c", LIST_SCRIPT, "sh", token, str(len(files)), *files, *dirs],
                          ctx.step_timeout())
    if listing.exit_code is None:
        return skipped("skipped: could not list the authorized_keys files on the server",
                       "re-run with -v to see what the server answered", details=[(listing.stderr or "no answer").strip()[:200]])
    entries, contents = parse_listing(listing.stdout, token, files + dirs)

    problems: list[Problem] = []
    details = list(notes)
    keys = our_keys(ctx)
    wanted = {k.blob: k for k in keys}
    found: list[tuple[str, KeyLine]] = []  # (file, line) holding one of our keys
    for path in files:
        shown = tilde(path, home)
        if path not in contents:
            details.append(f"{shown}: " + ("not a regular file" if entries.get(path, Entry(path, False)).exists
                                           else "does not exist"))
            continue
        text = contents[path]
        if text is None:
            details.append(f"{shown}: exists but cannot be read")
            continue
        lines, bad = parse_file(text)
        details.append(f"{shown}: {len(lines)} key line{'s' if len(lines) != 1 else ''}")
        for b in bad:
            problems.append(Problem(
                "warn", f"{shown} line {b.number} is not a valid key line: {b.reason}",
                f"fix or delete line {b.number} of {shown} (sshd ignores it; a key broken "
                "across lines when pasted is the usual cause)", [f"line {b.number}: {b.text}"]))
        for line in lines:
            if line.blob in wanted and not line.has("cert-authority"):
                found.append((path, line))

    # StrictModes: the files and every directory above them up to home.
    holding = {p for p, _ in found}
    for path in files:
        if not entries.get(path, Entry(path, False)).exists:
            continue
        for p in [path] + guarded_dirs(path, home):
            entry = entries.get(p)
            if entry is None or not entry.exists:
                continue
            issue = mode_problem(entry, uid)
            if issue is None:
                continue
            kind, text = issue
            if any(text in pr.details for pr in problems):
                continue
            chmod = (f"sudo chown {shlex.quote(user)} {shlex.quote(p)}" if kind == "owner"
                     else f"chmod go-w {shlex.quote(p)}")
            # A file that holds our key was accepted at login (MK304 passed), so sshd does
            # not enforce StrictModes on it; it is a fail only if the server says it does.
            severe = kind != "group" and strict is True and path in holding
            if severe:
                summary = (f"{tilde(p, home)} is unsafe, so sshd (StrictModes yes) refuses "
                           f"{tilde(path, home)}; today's login must use another key source")
            elif kind == "group":
                summary = (f"{tilde(p, home)} is group-writable: upstream OpenSSH refuses it "
                           "(StrictModes), Debian/Ubuntu accept it only for a private group")
            elif path not in holding and strict is not False:
                summary = f"{tilde(p, home)} is unsafe, so sshd ignores {tilde(path, home)} (StrictModes)"
            else:
                summary = (f"{tilde(p, home)} is unsafe: anyone on the server could add a key and "
                           "log in as you (sshd accepts it only because StrictModes is off)")
            problems.append(Problem("fail" if severe else "warn", summary, chmod, [text]))

    facts: dict = {"authorized_keys_files": files, "client_address": client_address}
    if not keys:
        details.append("our public key is unknown: no .pub file next to the IdentityFile")
    elif not found:
        fps = ", ".join(f"{k.keytype} {k.fingerprint}" for k in keys)
        extra = settings.get("authorizedkeyscommand", "none")
        problems.append(Problem(
            "warn", "our key is in none of the authorized_keys files, though the login works "
            "(an agent key, a certificate or AuthorizedKeysCommand?)",
            "install the key ssh is configured with: ssh-copy-id -i "
            f"{shlex.quote(keys[0].source)} {shlex.quote(ctx.target.display)}",
            [f"looked for: {fps}"] + ([f"AuthorizedKeysCommand {extra}"]
                                      if extra.lower() != "none" else [])))
    else:
        index, passed_over = judged_line(found, client_address)
        path, line = found[index]
        where = f"{tilde(path, home)} line {line.number}"
        for skipped_path, skipped_line, pattern in passed_over:
            details.append(
                f"{tilde(skipped_path, home)} line {skipped_line.number} also holds our key, but "
                f"its from=\"{pattern}\" refuses {client_address}: sshd skips it and uses {where}")
        key = wanted[line.blob]
        details.insert(0, f"our key {key.keytype} {key.fingerprint} ({key.source}): {where}"
                       + (f", options {line.options_text}" if line.options_text else ""))
        facts.update(authorized_keys_file=path, authorized_keys_line=line.number,
                     key_fingerprint=key.fingerprint, key_options=line.options_text)
        problems += option_problems(line, where, ctx.mode, ctx.link_ports, client_address)
        if all(posixpath.basename(p) == "authorized_keys2" for p, _ in found):
            problems.append(Problem(
                "warn", f"our key is only in the deprecated {tilde(path, home)}",
                f"move it to ~/.ssh/authorized_keys: grep -F {shlex.quote(line.blob)} "
                f"{shlex.quote(tilde(path, home))} >> ~/.ssh/authorized_keys"))
    if client_address:
        details.append(f"the server sees you as {client_address}")

    for pr in problems:
        details.extend(pr.details)
    fails = [p for p in problems if p.severity == "fail"]
    warns = [p for p in problems if p.severity == "warn"]
    worst = fails or warns
    if not worst:
        if not keys:
            return skipped("skipped: could not tell which public key is ours (no .pub file next "
                           "to the IdentityFile); the files are safe",
                           "write the public half next to the key: ssh-keygen -y -f KEY > KEY.pub "
                           "(or pass --identity KEY)", details=details, **facts)
        where = f"{tilde(facts['authorized_keys_file'], home)} line {facts['authorized_keys_line']}"
        return passed(f"our key is in {where}; safe modes; no options in the way", details, **facts)
    summary = worst[0].summary + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    fix = "\n".join(dict.fromkeys(p.fix for p in fails + warns))
    make = failed if fails else warned
    return make(summary, fix, [p.summary for p in (fails + warns)[1:]] + details, **facts)


CHECK = Check(
    id="MK305",
    name="authorized-keys",
    group="server",
    title="our public key is in the remote AuthorizedKeysFile with safe modes and no options that break the setup",
    run=run,
    needs=("MK304",),
    after=("MK202",),
    preconditions=(needs_target,),
    reads=("mode",),  # ctx.mode: waits for the check that decides it
    fix_hints=(
        ("", "repair authorized_keys"),
    ),
)
