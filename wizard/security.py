"""Step 11: advice for the remote sshd (MK310 PermitRootLogin, MK311 PasswordAuthentication).

The advice is the drop-in :data:`~mkdoctor.openssh.hardening.DROPIN`
(``/etc/ssh/sshd_config.d/0-mkdoctor.conf``, the file every printed fix names), read
through the ``Include /etc/ssh/sshd_config.d/*.conf`` line that Debian, Ubuntu and Fedora
put first in sshd_config; its name sorts before the other drop-ins (Ubuntu cloud images'
``50-cloud-init.conf``), so its values win: sshd uses the first value it finds,
sshd_config(5). Lines of an existing file of that name for other keywords are kept.

Applying it is opt-in, and every step is checked (:data:`APPLY_SCRIPT`, run as root with
``sudo``; interactively through ``ssh -t`` so sudo can ask for the password on the
user's terminal, unattended with ``sudo -n``, which fails instead of prompting):

1. the current configuration must already pass ``sshd -t`` (else nothing is touched: the
   error is someone else's and a reload would fail anyway);
2. the file is written next to its place under a name the ``*.conf`` glob does not match,
   then renamed into place (an existing file of that name is kept aside);
3. ``sshd -t`` validates the whole configuration and ``sshd -T`` must show the advised
   values, globally and with ``-C`` for each connection a stranger would make
   (:attr:`Advice.specs`, from MK310/MK311); when they do not, :func:`why_no_effect`
   says which line still wins (before the Include, no Include, an earlier drop-in, a
   Match block) and what to change; on any failure the previous state is restored and
   sshd is NOT reloaded;
4. sshd is reloaded (``systemctl reload ssh|sshd``, else SIGHUP to the pid in
   ``/run/sshd.pid``, else ``service ssh|sshd reload``); if none works the change is
   undone.

All of this runs through a master connection opened first and kept open: a reload keeps
existing connections, so if a *fresh* key login fails afterwards, the printed undo
command still gets in through it.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mkdoctor import facts
from mkdoctor.openssh.hardening import DROPIN  # the one drop-in every fix text names

DEFAULT_SSHD_CONFIG = "/etc/ssh/sshd_config"

# How sshd is reloaded, most specific first. Debian/Ubuntu name the unit "ssh", Red Hat,
# Fedora, SUSE and Arch "sshd"; without systemd, sshd re-reads its configuration on
# SIGHUP (sshd(8), SIGNALS) and records its pid in /run/sshd.pid (sshd_config(5),
# PidFile; /var/run on older systems). ``service`` comes last: Debian's init script
# reports success (--oknodo) even when no sshd matched its pid file.
RELOAD = (
    "systemctl reload ssh >/dev/null 2>&1 || systemctl reload sshd >/dev/null 2>&1 || "
    "{ r=1; for p in /run/sshd.pid /var/run/sshd.pid; do if [ -s \"$p\" ] && "
    "kill -HUP \"$(cat \"$p\")\" 2>/dev/null; then r=0; break; fi; done; [ $r = 0 ]; } || "
    "service ssh reload >/dev/null 2>&1 || service sshd reload >/dev/null 2>&1"
)

MARK = "MKD-SSHD"
APPLY_SCRIPT = r"""
PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH; export PATH
LC_ALL=C; export LC_ALL
f=$1; content=$2; expect=$3; cfg=$4; specs=$5; diag=$6
d=${f%/*}
say() { printf '%s %s\n' "$MARK" "$*"; }
if ! out=$(sshd -t -f "$cfg" 2>&1); then
  say invalid-before; printf '%s\n' "$out"; exit 3
fi
if [ ! -d "$d" ]; then
  say no-effect; echo "$d does not exist: is 'Include $d/*.conf' at the top of $cfg?"; exit 5
fi
keys=$(printf '%s\n' "$expect" | awk 'NF {printf "%s%s", s, $1; s="|"}')
umask 022
new="$d/.mkdoctor-new.$$"; old="$d/.mkdoctor-old.$$"
rm -f "$new" "$old"
if ! printf '%s' "$content" > "$new"; then rm -f "$new"; say write-failed; exit 7; fi
had=0
if [ -e "$f" ]; then
  if ! cp -p "$f" "$old"; then rm -f "$new"; say write-failed; exit 7; fi
  had=1
  # the lines a printed fix added to the same file (tee -a) for other keywords stay
  grep -v -i -E "^[[:space:]]*(($keys)([[:space:]=]|$)|# Written by mkdoctor)" "$old" >> "$new"
fi
undo() { if [ "$had" = 1 ]; then mv -f "$old" "$f"; else rm -f "$f"; fi; rm -f "$new"; }
trap 'undo; say interrupted; exit 130' HUP INT TERM
if ! mv -f "$new" "$f"; then undo; say write-failed; exit 7; fi
if ! out=$(sshd -t -f "$cfg" 2>&1); then
  undo; say invalid; printf '%s\n' "$out"; exit 4
fi
# the values sshd applies: globally, and to each connection a stranger would make
wrong=
set -f
for spec in '' $specs; do
  if [ -n "$spec" ]; then eff=$(sshd -T -C "$spec" -f "$cfg" 2>&1) || { undo; say invalid; printf '%s\n' "$eff"; exit 4; }
  else eff=$(sshd -T -f "$cfg" 2>&1) || { undo; say invalid; printf '%s\n' "$eff"; exit 4; }; fi
  w=$(printf '%s\n' "$expect" | while read -r k v; do
    [ -n "$k" ] || continue
    case $k,$spec in permitrootlogin,?*) case $spec in user=root,*) ;; *) continue ;; esac ;; esac
    cur=$(printf '%s\n' "$eff" | awk -v k="$k" '$1 == k {print $2; exit}')
    [ "$cur" = without-password ] && cur=prohibit-password
    if [ -n "$cur" ] && [ "$cur" != "$v" ]; then printf '%s is still %s%s; ' "$k" "$cur" "${spec:+ for $spec}"; fi
  done)
  if [ -n "$w" ]; then wrong="$wrong$w"; say wrong "${spec:-global}" "$w"; fi
done
set +f
if [ -n "$wrong" ]; then
  # where the winning lines are (file:line:text, sshd's reading order), for the report
  lines=$(grep -Hn -i -E "^[[:space:]]*(include|match|$keys)([[:space:]=]|$)" "$cfg" "$d"/*.conf 2>/dev/null)
  undo; say no-effect; echo "$wrong"
  if [ -n "$diag" ] && ( set -C; printf '%s\n' "$lines" > "$diag" ) 2>/dev/null; then
    [ -n "$SUDO_UID" ] && chown "$SUDO_UID" "$diag"
  else
    printf '%s\n' "$lines" | sed "s/^/$MARK where /"
  fi
  exit 5
fi
trap '' HUP INT TERM
if ( RELOAD_COMMANDS ); then
  rm -f "$old"; say applied; exit 0
fi
undo; say not-reloaded; exit 6
""".replace("RELOAD_COMMANDS", RELOAD).replace("$MARK", MARK)

FAILURES = {
    3: "the server's sshd configuration is already invalid (sshd -t fails before any "
       "change); nothing was changed: fix it first",
    4: "sshd -t rejects the configuration with the new drop-in; the drop-in was removed "
       "again and sshd was not reloaded",
    5: "the drop-in would have no effect (an earlier file or the main config sets these "
       "values first, or sshd_config does not Include the directory); it was removed "
       "again and sshd was not reloaded",
    6: "sshd could not be reloaded (no systemctl, pid file or service script worked); "
       "the drop-in was removed again",
    7: "the drop-in could not be written; nothing was changed",
    130: "interrupted; the previous configuration was restored",
}


# The values of PermitRootLogin that already refuse root passwords (``sshd -T`` prints
# ``prohibit-password`` as ``without-password``, its older name).
NO_ROOT_PASSWORD = ("prohibit-password", "without-password", "forced-commands-only")

ROOT_NOTE = ("PermitRootLogin prohibit-password, not no: this setup logs in as root, and "
             "no would lock that login out; prohibit-password keeps root's key logins and "
             "refuses root passwords")


@dataclass
class Advice:
    lines: list[str]
    notes: list[str] = field(default_factory=list)  # why the advice is what it is
    # the connections a stranger would make (sshd -T -C specifications, from MK310/MK311):
    # the change must win for each of them, not only for sshd's global settings
    specs: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return ("# Written by mkdoctor setup: key logins only (see mkdoctor explain MK310/MK311)\n"
                + "\n".join(self.lines) + "\n")

    @property
    def expected(self) -> str:
        """``keyword value`` lines as ``sshd -T`` prints them (lower-case keywords)."""
        return "".join(f"{k.lower()} {v}\n" for k, v in (ln.split(None, 1) for ln in self.lines))

    @property
    def text(self) -> str:
        q = shlex.quote(self.content)
        return (f"  Recommended drop-in {DROPIN}:\n"
                + "".join(f"    {ln}\n" for ln in self.content.splitlines())
                + "".join(f"  note: {n}\n" for n in self.notes)
                + "  On the remote host (keep this session open until a new login works):\n"
                + f"    printf '%s' {q} | sudo tee {DROPIN} >/dev/null\n"
                + "    sudo sshd -t && sudo systemctl reload ssh   # (sshd on Fedora/RHEL)\n"
                + f"  To undo: sudo rm {DROPIN} && sudo systemctl reload ssh")


def advice(results: dict, user: str = "") -> Optional[Advice]:
    """The lines MK310/MK311's results call for (None: nothing to change). A warning
    that is only about a broken configuration (to_result turns such a pass into a
    warn) asks for no setting: the drop-in would not help, and MK310/MK311's fix says
    to run ``sshd -t``.

    ``user`` is the remote user of the setup: when it is root, ``PermitRootLogin no``
    would lock out the very login the front end uses, so the advice is
    ``prohibit-password`` (only where root passwords are still allowed), with a note."""
    lines: list[str] = []
    r310, r311 = results.get("MK310"), results.get("MK311")
    current = (r310.facts.get("permitrootlogin") or "") if r310 is not None else ""
    if r310 is not None and r310.status.value in ("warn", "fail") and current != "no":
        if user != "root":
            lines.append("PermitRootLogin no")
        elif current not in NO_ROOT_PASSWORD:
            lines.append("PermitRootLogin prohibit-password")
    if (r311 is not None and r311.status.value in ("warn", "fail")
            and any(d.startswith("password login is on") for d in r311.details)):
        lines += ["PasswordAuthentication no", "KbdInteractiveAuthentication no"]
    if not lines:
        return None
    notes = [ROOT_NOTE] if "PermitRootLogin prohibit-password" in lines else []
    specs: list[str] = []
    for r in (r310, r311):
        if r is not None:
            specs += [x for x in (facts.STRANGER_CONNECTIONS.of(r, []) or []) if x not in specs]
            loses = facts.DROPIN_LOSES.of(r, "")
            if loses and r.status.value in ("warn", "fail"):
                notes.append(f"this drop-in alone will not win: {loses}")
    return Advice(lines, notes, specs)


def kept_for_root(results: dict, user: str) -> Optional[str]:
    """Why MK310's warning asks for no change when the setup logs in as root (None
    otherwise): one line for the wizard to say instead of a silent "nothing"."""
    r310 = results.get("MK310")
    if user != "root" or r310 is None or r310.status.value not in ("warn", "fail"):
        return None
    current = r310.facts.get("permitrootlogin") or ""
    if current not in NO_ROOT_PASSWORD:
        return None
    return (f"PermitRootLogin stays {current}: this setup logs in as root, and no would lock "
            "that login out (root passwords are refused already)")


def remote_command(adv: Advice, interactive: bool, sshd_config: str = DEFAULT_SSHD_CONFIG,
                   diag: str = "") -> str:
    """The remote command line (one string for the remote login shell, whichever it is).
    ``diag``: a new file where the script leaves, when the change would not win, the lines
    that decide (else they are printed, marked)."""
    from mkdoctor.openssh.session import login_shell_command

    sudo = ["sudo"] if interactive else ["sudo", "-n"]
    specs = "\n".join(x for x in adv.specs if _spec_ok(x))
    return login_shell_command(shlex.join(sudo + ["sh", "-c", APPLY_SCRIPT, "sh", DROPIN,
                                                  adv.content, adv.expected, sshd_config,
                                                  specs, diag]))


def _spec_ok(spec: str) -> bool:
    """A connection specification made of plain words (it is split by the script)."""
    import re

    return re.fullmatch(r"[A-Za-z0-9_.,=:@%+-]+", spec) is not None


def parse_spec(spec: str):
    """``user=..,host=..,addr=..,laddr=..,lport=..`` -> Connection (groups unknown)."""
    from mkdoctor.openssh.sshd_config import Connection

    kv = dict(part.partition("=")[::2] for part in spec.split(","))
    port = kv.get("lport", "22")
    return Connection(kv.get("user", ""), kv.get("host", ""), kv.get("addr", ""),
                      kv.get("laddr", ""), int(port) if port.isdigit() else 22)


def why_no_effect(adv: Advice, where_lines: list[str], sshd_config: str) -> list[str]:
    """Why the drop-in did not win, and what to change, from the script's ``grep -Hn``
    of the Include, Match and keyword lines (sshd's reading order) with the drop-in in
    place: the lines are put back at their line numbers and evaluated (pure)."""
    from mkdoctor.openssh import exposure, hardening
    from mkdoctor.openssh import sshd_config as sc

    files: dict[str, list[str]] = {}
    for entry in where_lines:
        path, _, rest = entry.partition(":")
        number, _, text = rest.partition(":")
        if not number.isdigit():
            continue
        lines = files.setdefault(path, [])
        lines += [""] * (int(number) - len(lines))
        lines[int(number) - 1] = text
    texts = {p: "\n".join(v) + "\n" for p, v in files.items()}
    for line in adv.lines:  # our file as written (grep saw it too, unless unreadable)
        texts.setdefault(DROPIN, "")
    texts.setdefault(sshd_config, "")
    loader = sc.MappingLoader(texts)
    blocks = exposure.match_blocks(list(texts), loader.read)
    inc = hardening.include_lines(texts[sshd_config], DROPIN)
    out: list[str] = []
    stranger = exposure.STRANGER_ADDRESSES[0]
    conns = [parse_spec(x) for x in adv.specs if _spec_ok(x)] + [
        sc.Connection(u, stranger, stranger, stranger, 22) for u in ("root", exposure.STRANGER_USER)]
    for ln in adv.lines:
        keyword, value = ln.split(None, 1)
        for conn in conns:
            if keyword.lower() == "permitrootlogin" and conn.user != "root":
                continue
            cfg = sc.evaluate(sshd_config, loader, conn)
            if cfg.get(keyword) == value:
                continue
            origin = cfg.origin.get(keyword.lower(), "default")
            block = exposure.block_of(blocks, origin)
            reason = hardening.loss_reason(keyword, origin, sshd_config, inc,
                                           block.label if block else "", DROPIN)
            if reason and reason not in out:
                out.append(reason)
    return out


def outcome_message(returncode: int, output: str) -> str:
    """One line for a failed apply, from the script's exit status and output (pure)."""
    lines = [ln.rstrip() for ln in output.replace("\r\n", "\n").splitlines()]
    details = [ln for ln in lines if ln.strip() and not ln.startswith(MARK)]
    marked = any(ln.startswith(MARK) for ln in lines)
    if marked and returncode in FAILURES:
        why = FAILURES[returncode]
    elif returncode == 255:
        why = "ssh failed"
    elif "a password is required" in output or "a terminal is required" in output:
        why = ("sudo needs a password on the server: run mkdoctor setup in a terminal (sudo "
               "asks there), or apply the commands above by hand")
        details = []
    else:
        why = f"not applied (exit status {returncode})"
    return why + (": " + " | ".join(details[-6:]) if details else "")


def _ssh(argv: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return subprocess.CompletedProcess(argv, 124, out, f"timed out after {timeout:.0f}s")


def _fresh_login(base: list[str], alias: str, adv: Advice, wait: float) -> tuple[bool, str]:
    """A NEW key login (not through the master), retried for ``wait`` seconds: a reload
    makes sshd close its listening socket and re-execute, so the first connection right
    after it may be refused. When password logins were switched off, also that the
    running sshd no longer offers them (the methods it lists after "none" fails)."""
    want_no_password = any(ln.startswith("PasswordAuthentication") for ln in adv.lines)
    deadline = time.monotonic() + wait
    problem = ""
    while True:
        login = _ssh(base + ["-S", "none", "-o", "BatchMode=yes", "--", alias, "true"], 60,
                     stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if login.returncode != 0:
            problem = f"a new key login fails: {(login.stderr or '').strip().splitlines()[-1:]}"
        elif want_no_password:
            probe = _ssh(base + ["-S", "none", "-o", "BatchMode=yes", "-o",
                                 "PreferredAuthentications=none", "--", alias, "true"], 60,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
            methods = (probe.stderr or "").rsplit("Permission denied (", 1)[-1].split(")")[0]
            if "password" in methods or "keyboard-interactive" in methods:
                problem = (f"sshd still offers {methods} logins: it has not re-read its "
                           "configuration")
            else:
                return True, ""
        else:
            return True, ""
        if time.monotonic() > deadline:
            return False, problem
        time.sleep(0.5)


def apply(adv: Advice, alias: str, ssh_config: Optional[Path], interactive: bool,
          sshd_config: str = DEFAULT_SSHD_CONFIG, wait: float = 15.0) -> tuple[bool, str]:
    """Apply ``adv`` on ``alias``: (True, what was done) or (False, why not / what to do).

    ``interactive``: ``ssh -t`` and plain ``sudo`` (it may ask for the password on this
    terminal; the output is shown, not captured); else ``sudo -n`` and captured output.
    """
    base = ["ssh"] + (["-F", str(ssh_config)] if ssh_config else [])
    sock_dir = tempfile.mkdtemp(prefix="mkd-sec-")
    sock = f"{sock_dir}/cm"
    # The connection that stays open through the change (``-f``: in the background once
    # logged in; ``-O exit`` below ends it).
    # Its output goes to a file, not a pipe: an ssh that keeps its standard streams open
    # once in the background (older OpenSSH) would hold a pipe open until it ends.
    with open(f"{sock_dir}/master.log", "w+") as log:
        master = _ssh(base + ["-M", "-N", "-f", "-o", "ControlPersist=no", "-S", sock,
                              "-o", "BatchMode=yes", "--", alias], 60,
                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.seek(0)
        master_err = log.read().strip()
    if master.returncode != 0:
        shutil.rmtree(sock_dir, ignore_errors=True)
        return False, ("not applied: could not open the connection that stays open during "
                       f"the change: {master_err or master.returncode}")
    keep = False
    diag = f"/tmp/.mkdoctor-why-{secrets.token_hex(8)}" if interactive else ""
    try:
        via = base + ["-S", sock, "-o", "ControlMaster=no"]
        command = remote_command(adv, interactive, sshd_config, diag)
        if interactive:
            done = _ssh(via + ["-t", "--", alias, command], 600)
            output = ""
        else:
            done = _ssh(via + ["-T", "-o", "BatchMode=yes", "--", alias, command], 120,
                        stdin=subprocess.DEVNULL, capture_output=True, text=True)
            output = (done.stdout or "") + (done.stderr or "")
        if done.returncode != 0:
            detail = outcome_message(done.returncode, output)
            if done.returncode == 5:
                where = [ln[len(MARK) + 7:] for ln in output.splitlines()
                         if ln.startswith(f"{MARK} where ")]
                if diag:
                    from mkdoctor.openssh.session import login_shell_command

                    read_back = login_shell_command(shlex.join(
                        ["sh", "-c", 'cat -- "$1" && rm -f -- "$1"', "sh", diag]))
                    got = _ssh(via + ["-T", "-o", "BatchMode=yes", "--", alias, read_back], 30,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
                    where = (got.stdout or "").splitlines() if got.returncode == 0 else []
                reasons = why_no_effect(adv, where, sshd_config)
                if reasons:
                    detail += ". Why: " + "; ".join(reasons)
            if interactive and done.returncode in FAILURES:
                detail += " (sshd's message is above)"
            elif interactive and done.returncode == 255:
                # the master is open, so ssh itself worked: the command on the server was
                # killed (Ctrl-C at sudo's prompt reaches it through the terminal) or the
                # connection broke. The script undoes a change cut off before the reload.
                detail = ("the command on the server did not finish (interrupted there, e.g. "
                          "Ctrl-C at sudo's prompt, or the connection broke); a change it had "
                          "begun is undone on the server")
            return False, f"not applied: {detail}"
        ok, problem = _fresh_login(base, alias, adv, wait)
        if not ok:
            keep = True  # the user needs it to undo the change
            undo = (f"ssh {'-F ' + shlex.quote(str(ssh_config)) + ' ' if ssh_config else ''}"
                    f"-S {sock} -t {alias} "
                    + shlex.quote(shlex.join(["sudo", "sh", "-c", f"rm -f {DROPIN} && ({RELOAD})"])))
            return False, (f"applied, but {problem}; the old connection is still open. "
                           f"Undo now: {undo}")
        return True, f"applied {DROPIN} (validated with sshd -t, sshd reloaded); a new key login works"
    finally:
        if not keep:
            _ssh(base + ["-S", sock, "-O", "exit", "--", alias], 10,
                 stdin=subprocess.DEVNULL, capture_output=True)
            shutil.rmtree(sock_dir, ignore_errors=True)
