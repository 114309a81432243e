"""``mkdoctor setup``: the command line of the setup (docs/setup.md is the user guide).

The flags, ``--answers FILE.toml``, several hosts one after another, and how a setup
ends (Ctrl-C, a failed step, the files written or not). The setup itself is the table
of steps in :mod:`mkdoctor.wizard.flow` (one module per step in
:mod:`mkdoctor.wizard.steps`, one :class:`~mkdoctor.wizard.state.SetupState`).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Sequence

from mkdoctor.args import ArgumentParser, add_target_args, interactive
from mkdoctor.options import UsageError, parse_host
from mkdoctor.wizard.flow import Flow, StepFailed, default_name, home_mismatch  # noqa: F401
from mkdoctor.wizard.prompts import Asker

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Set up a remote Mathematica kernel step by step: checks this computer, the remote host,
the key and host key, finds and starts the kernel, proves the link, then writes the
profile, a managed `Host mk-NAME` block in the ssh config and the front-end settings.
Unattended: --yes (or --answers FILE.toml) with --host; see docs/setup.md."""

EPILOG = """\
unattended examples:
  mkdoctor setup --yes --host alice@hpc.example.org --name hpc
  mkdoctor setup --yes --host hpc --accept-host-key SHA256:... --new-key --install-key
exit status: 0 written (or already up to date), 1 a step failed (nothing written), the
files as written do not work or the requested sshd hardening was not applied (the files
are written),
2 usage error or an answer is missing (the message names the flag), 130 interrupted."""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="mkdoctor setup", description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_args(p, for_setup=True)
    g = p.add_argument_group("setup")
    g.add_argument("--name", metavar="NAME", help="the profile name and the ssh alias mk-NAME "
                   "(default: from the host)")
    g.add_argument("-y", "--yes", action="store_true",
                   help="unattended: take the recommended answer, fail naming the flag where none is safe")
    g.add_argument("--answers", metavar="FILE.toml", help="unattended, answers from a TOML file "
                   "(keys are the long flags: host = \"...\", link_ports = \"P1,P2\", install_key = true)")
    g.add_argument("--accept-host-key", metavar="SHA256:...",
                   help="record the server's unknown host key if its fingerprint is this one")
    g.add_argument("--new-key", action="store_true",
                   help="unattended: create a new ed25519 key for this host (no passphrase; a re-run keeps the profile's key)")
    g.add_argument("--install-key", action="store_true",
                   help="unattended: install the public key using a login that already works "
                        "without a prompt (agent or another key)")
    g.add_argument("--apply-sshd-hardening", action="store_true",
                   help="apply the sshd advice on the remote host (sudo; validated with sshd -t)")
    g.add_argument("-v", "--verbose", action="store_true", help="details of every check")
    g.add_argument("--no-color", action="store_true", help="accepted for symmetry; setup prints no colour")
    return p


BOOL_KEYS = {"yes", "new_key", "install_key", "apply_sshd_hardening", "offline", "verbose"}


def answers_argv(path: str) -> list[str]:
    """``--answers FILE.toml`` as command-line flags (the command line wins)."""
    from mkdoctor.profile import _loads

    try:
        data = _loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--answers {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - TOMLDecodeError, OSError, UnicodeDecodeError
        raise UsageError(f"--answers {path}: cannot read: {exc}") from None
    known = {a.dest: a for a in build_parser()._actions if a.option_strings}
    argv: list[str] = []
    for key, value in data.items():
        dest = key.replace("-", "_")
        action = known.get(dest)
        if action is None or dest in ("answers", "help", "version"):
            raise UsageError(f"--answers {path}: unknown key {key!r}")
        flag = action.option_strings[-1]
        if dest in BOOL_KEYS or action.nargs == 0:
            if not isinstance(value, bool):
                raise UsageError(f"--answers {path}: {key} must be true or false")
            argv += [flag] if value else []
        elif isinstance(value, list) and dest == "link_ports":
            argv += [flag, ",".join(str(v) for v in value)]
        elif isinstance(value, list):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.answers:
        command_line_hosts = list(args.host)
        merged = answers_argv(args.answers) + list(argv)
        args = parser.parse_args(merged)
        if command_line_hosts:  # the command line's --host wins over the file's
            args.host = command_line_hosts
    if args.name is not None:
        from mkdoctor.profile import NAME_RE

        if not NAME_RE.match(args.name):
            raise UsageError(f"--name {args.name!r}: letters, digits, '.', '_', '-' (at most 64)")
    if args.accept_host_key is not None and not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}=?",
                                                              args.accept_host_key):
        raise UsageError(f"--accept-host-key {args.accept_host_key!r}: give the SHA256:... "
                         "fingerprint (ssh-keygen -lf the server's host key)")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    unattended = bool(args.yes or args.answers)
    if not unattended and not interactive():
        raise UsageError("setup asks questions and there is no terminal (or CI is set): run "
                         "it unattended with --yes --host USER@HOST[:PORT] (or --answers FILE.toml)")
    hosts = list(args.host)
    if args.hosts_file:
        from mkdoctor.args import read_hosts_file

        hosts += read_hosts_file(args.hosts_file)
    if len(hosts) > 1:
        return setup_many(args, hosts, unattended)
    args.host, args.hosts_file = hosts, None
    return setup_one(args, unattended)


def setup_many(args: argparse.Namespace, hosts: list[str], unattended: bool) -> int:
    """Several hosts (--host repeated, --hosts-file): one setup after another, each with
    its own profile and ``Host mk-NAME`` block named after the host. One after another,
    never at once: they write the same ssh config, and the questions need the terminal.
    Exit status: the worst of them (2 > 1 > 0); Ctrl-C stops at once (130)."""
    for flag, value in (("--name", args.name), ("--accept-host-key", args.accept_host_key),
                        ("--profile", args.profile)):
        if value:
            raise UsageError(f"{flag} applies to one host; with several, each profile is named "
                             "after its host (give each a Host alias to choose the names)")
    targets = [parse_host(h) for h in hosts]  # every host checked before any setup starts
    names: dict[str, str] = {}
    for host, target in zip(hosts, targets):
        name = default_name(target)
        if name in names:
            raise UsageError(f"{names[name]} and {host} would both be set up as profile "
                             f"{name!r}: give them distinct Host aliases in the ssh config")
        names[name] = host
    outcome: list[tuple[str, int]] = []
    for i, host in enumerate(hosts, 1):
        print(f"\n=== mkdoctor setup {i}/{len(hosts)}: {host} ===", flush=True)
        one = copy.copy(args)
        one.host, one.hosts_file = [host], None
        try:
            rc = setup_one(one, unattended)
        except UsageError as exc:
            from mkdoctor.args import one_line

            print(f"mkdoctor setup: error: {one_line(f'{host}: {exc}')}", file=sys.stderr)
            rc = EXIT_USAGE
        if rc == EXIT_INTERRUPTED:
            return rc
        outcome.append((host, rc))
    done_names = [name for name, host in names.items() if (host, EXIT_OK) in outcome]
    if len(done_names) > 1:
        from mkdoctor.wizard.writers import write_fleet_parallel

        path = write_fleet_parallel(done_names)
        if path is not None:
            print(f"\nparallel kernels on all {len(done_names)} hosts: {path}", flush=True)
    words = {EXIT_OK: "set up", EXIT_FAIL: "FAILED (see above)", EXIT_USAGE: "needs a flag (see above)"}
    print("\nmkdoctor setup: " + "; ".join(f"{h}: {words.get(rc, rc)}" for h, rc in outcome))
    return max(rc for _, rc in outcome)


def setup_one(args: argparse.Namespace, unattended: bool) -> int:
    wizard = Flow(args, Asker(not unattended))
    try:
        return wizard.run()
    except KeyboardInterrupt:
        wizard.abort()
        if wizard.committed:  # step 10 wrote the files (the user said yes): they stay
            print(f"\nmkdoctor setup: interrupted; {wizard.written_note()}; "
                  f"{wizard.hardening_note()}", file=sys.stderr)
        else:
            print("\nmkdoctor setup: interrupted; every file is as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StepFailed as exc:
        wizard.abort()
        after = f"{wizard.written_note()}." if wizard.committed else "Nothing was written."
        print(f"\nmkdoctor setup: {exc}\n{after}", file=sys.stderr)
        return EXIT_FAIL
    except BaseException:
        wizard.abort()
        raise
    finally:
        wizard.cleanup()
