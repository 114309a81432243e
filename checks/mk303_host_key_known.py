"""MK303 host-key-known: the server's host key is recorded in known_hosts, and matches.

The front end runs ssh with no terminal: it cannot answer "Are you sure you want to
continue connecting (yes/no)?", so an unknown host key makes every kernel launch fail
with "Host key verification failed". A key that differs from the recorded one is what a
man-in-the-middle attack looks like: we say so loudly and never offer to replace the
recorded key without verifying the new one first.

The server's keys come from ``ssh-keyscan``; the recorded ones from ``ssh-keygen -F``
over the files ssh itself reads (``UserKnownHostsFile``, ``GlobalKnownHostsFile`` from
``ssh -G``), under the name ssh looks up (``HostKeyAlias``, or ``[host]:port``). See
:mod:`mkdoctor.openssh.known_hosts` for how ssh decides, and the sources.
"""

from __future__ import annotations

import os
import shlex
import time

from mkdoctor.openssh.known_hosts import (KnownEntry, judge, keyscan_argv, lookup_name,
                                          parse_keygen_find, parse_keyscan, scan_host_keys,
                                          split_files)
from mkdoctor.model import (Check, Result, failed, needs_target, passed,
                          skipped, warned)
from mkdoctor.checks.mk301_host_resolves import first_hop
from mkdoctor.fleet import retry_pause

# ssh-keyscan fetches rsa, ecdsa, ed25519, ecdsa-sk and ed25519-sk keys by default
# (ssh-keyscan(1), -t), one connection per type, all open at once (ssh-keyscan.c conloop).
KEYSCAN_CONNECTIONS = 5


def known_entries(ctx, name: str, files: list[str]
                  ) -> tuple[list[KnownEntry], list[str], list[str]]:
    """Every entry for ``name`` in ``files`` (missing files are skipped): (entries, the
    files that exist, errors). ``ssh-keygen -F`` exits 1 when the name is not there."""
    entries: list[KnownEntry] = []
    present: list[str] = []
    errors: list[str] = []
    for path in files:
        if not os.path.isfile(path):
            continue
        present.append(path)
        done = ctx.run_local(["ssh-keygen", "-F", name, "-f", path])
        if done.returncode == 0:
            entries += parse_keygen_find(done.stdout, path)
        elif done.returncode != 1 or done.stderr.strip():
            errors.append(f"ssh-keygen -F {name} -f {path}: "
                          + ((done.stderr or done.stdout).strip() or f"exit status {done.returncode}"))
    return entries, present, errors


def shown_path(path: str) -> str:
    """``path`` for a shell command line, quoted, with the home directory as ``~``."""
    home = os.path.expanduser("~").rstrip("/")
    if home and path.startswith(home + "/"):
        return "~/" + shlex.quote(path[len(home) + 1:])
    return shlex.quote(path)


SCANNED = "/tmp/hostkey"


def verify_and_record(host: str, port: int, alias: str, target_file: str, keytype: str) -> str:
    """The fix: fetch the keys into a file, compare their fingerprints with the ones the
    administrator reads on the server, and only then append that same file (not a
    second scan) to known_hosts, under HostKeyAlias when one is set."""
    scan = ["ssh-keyscan"] + (["-p", str(port)] if port != 22 else []) + [host]
    short = keytype.replace("ssh-", "").split("-")[0]  # ed25519, ecdsa, rsa
    if alias:  # ssh looks the key up under the alias: record it under that name
        record = f"awk -v n={shlex.quote(alias)} '{{$1 = n; print}}' {SCANNED}"
    else:
        record = f"cat {SCANNED}"
    return "\n".join([
        f"{shlex.join(scan)} > {SCANNED} && ssh-keygen -lf {SCANNED}",
        "compare with what the server's administrator reads on the server: "
        f"ssh-keygen -lf /etc/ssh/ssh_host_{short}_key.pub",
        f"only if the fingerprints match: {record} >> {shown_path(target_file)}",
    ])


VIA_FIX = ("nothing to do here: MK304 passwordless-login verifies the host key; if it fails "
           "with host key verification, record the key: ssh -o StrictHostKeyChecking=ask HOST "
           "once, after comparing the fingerprint")


def run(ctx) -> Result:
    ep = first_hop(ctx)
    if ep.proxycommand:
        return skipped(f"skipped: connected through ProxyCommand ({ep.proxycommand}); "
                       "MK304 verifies the host key when it logs in", VIA_FIX)
    if ep.via:
        return skipped(f"skipped: the host is reached through {ep.via}, so its key cannot be "
                       "fetched directly; MK304 verifies it when it logs in", VIA_FIX)
    cfg = ctx.ssh.config(ctx.step_timeout())
    alias = (cfg.get("hostkeyalias") or [""])[0]
    alias = "" if alias.lower() == "none" else alias
    name = lookup_name(ep.host, ep.port, alias)
    files = split_files(" ".join(cfg.get("userknownhostsfile") or ["~/.ssh/known_hosts"]))
    global_files = split_files(" ".join(cfg.get("globalknownhostsfile") or []))
    first_user_file = files[0] if files else os.path.expanduser("~/.ssh/known_hosts")

    # The recorded keys first: when there are some, only their types are fetched (one
    # connection and key exchange per type; openssh.known_hosts.scan_types says why the
    # verdict is the same), every type when none is recorded or the server has none of
    # those types any more.
    entries, present, errors = known_entries(ctx, name, files + global_files)
    if errors and not any(not e.marker for e in entries):
        return skipped("skipped: could not read the known_hosts files", details=errors,
                       fix="check that ssh-keygen works and the files are readable")
    wait = ctx.options.timeout

    def keyscan(types: list[str]):
        argv = keyscan_argv(ep.host, ep.port, wait, types)
        # ssh-keyscan opens one connection per host key type at once: it takes as many
        # of the first hop's slots (MaxStartups; see mkdoctor.fleet), and is tried once
        # more when a drop left it without a key while other hosts of the run knock on
        # the same server.
        weight = len(types) or KEYSCAN_CONNECTIONS
        with ctx.hop_slot(wait * 4, weight=weight):
            scan = ctx.run_local(argv, wait + 1)
        if not parse_keyscan(scan.stdout) and ctx.fleet.hosts > 1:
            time.sleep(retry_pause())
            with ctx.hop_slot(wait * 4, weight=weight):
                scan = ctx.run_local(argv, wait + 1)
        return scan

    server_keys, scan, types = scan_host_keys(keyscan, entries)
    if not server_keys:
        said = [ln for ln in scan.stderr.splitlines() if ln.strip() and not ln.startswith("#")]
        return skipped(
            f"skipped: could not fetch the host key of {ep.host} port {ep.port} with ssh-keyscan",
            fix="MK304 will verify the host key when it logs in; run "
                f"ssh-keyscan -p {ep.port} {ep.host} to see why",
            details=said[-3:] or ["ssh-keyscan printed no key"],
        )

    verdict = judge(server_keys, entries)
    key = verdict.server_key or server_keys[0]
    facts = {"fingerprint": key.fingerprint, "key_type": key.keytype, "known_name": name,
             "known_hosts_files": present}
    searched = ["looked in: " + (", ".join(shown_path(p) for p in present) or "(no known_hosts file)")]
    server = [f"server key: {k.keytype} {k.fingerprint}" for k in server_keys]
    if types:
        server.append(f"(fetched the types known_hosts records: ssh-keyscan -t {','.join(types)})")

    if verdict.kind == "known":
        m = verdict.match
        where = f"{shown_path(m.path)} line {m.line}" + (" (hashed)" if m.hashed else "")
        return passed(f"{key.keytype} {key.fingerprint} matches {where}",
                      server + searched, **facts, known_hosts_file=m.path, known_hosts_line=m.line)
    if verdict.kind == "unknown":
        fix = verify_and_record(ep.host, ep.port, alias, first_user_file, key.keytype)
        strict = (cfg.get("stricthostkeychecking") or ["ask"])[0].lower()
        if strict in ("false", "no", "off", "accept-new"):
            # ssh records an unknown key by itself then, unverified (ssh_config(5)).
            return warned(
                f"{key.keytype} {key.fingerprint} is not in known_hosts (no entry for {name}); "
                f"StrictHostKeyChecking {strict} makes ssh record it unverified",
                fix, server + searched, reason="unknown-accepted", **facts,
            )
        return failed(
            f"{key.keytype} {key.fingerprint} is not in known_hosts (no entry for {name}): ssh "
            "would ask about it, and the front end cannot answer",
            fix, server + searched, reason="unknown", **facts,
        )
    if verdict.kind in ("changed", "other-types"):
        recorded = [f"recorded: {e.key.keytype} {e.key.fingerprint} ({shown_path(e.path)} line {e.line})"
                    for e in verdict.known]
        summary = (f"the host key CHANGED (now {key.keytype} {key.fingerprint}): possible "
                   "man-in-the-middle attack, or the server was reinstalled"
                   if verdict.kind == "changed" else
                   f"the server's host keys ({key.keytype} {key.fingerprint}) differ from every "
                   "key recorded for it: possible man-in-the-middle attack, or the server was "
                   "reinstalled")
        first = verdict.known[0]
        return failed(
            summary,
            f"do NOT log in until the new key is verified; then remove the old entry with "
            f"ssh-keygen -R {shlex.quote(name)} -f {shown_path(first.path)}, and:\n"
            + verify_and_record(ep.host, ep.port, alias, first.path, key.keytype),
            server + recorded + searched, reason=verdict.kind, **facts,
        )
    if verdict.kind == "revoked":
        m = verdict.match
        return failed(
            f"the server presents a REVOKED host key ({key.keytype} {key.fingerprint}, "
            f"@revoked in {shown_path(m.path)} line {m.line})",
            "do not connect: the key was revoked on purpose; ask the server's administrator "
            "for the current host key",
            server + searched, reason="revoked", **facts,
        )
    # Only @cert-authority entries match: the server is trusted through a host
    # certificate, which ssh-keyscan does not fetch by default.
    m = verdict.match
    return skipped(
        f"skipped: {name} is trusted through a @cert-authority entry "
        f"({shown_path(m.path)} line {m.line}); MK304 verifies the host certificate when it logs in",
        "nothing to do here: MK304 passwordless-login verifies the certificate",
        details=server + searched, **facts,
    )


CHECK = Check(
    id="MK303",
    name="host-key-known",
    group="server",
    title="the server's host key is in known_hosts and matches; a changed key fails loudly",
    run=run,
    # needs_if_run: a skipped MK302 (ProxyCommand) must not hide this check's own
    # reason; a failed one still blocks it.
    needs_if_run=("MK301", "MK302"),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "verify and record the host key"),
        ("unknown", "verify and record the host key"),
        ("unknown-accepted", "verify and record the host key"),
        ("revoked", "do not connect: ask the admin"),
    ),
)
