"""``mkdoctor setup``: the first-time questionnaire (docs/setup.md is the user guide).

The flow: local checks -> the remote host -> the network and the mode -> the key -> the
host key -> installing the key (MK304 must pass) -> the kernel (MK401, MK402) -> the
link ports (MK203, the server can bind them) -> proof with the exact strings about to be
written (MK403, MK404) -> the files (shown, one question, then written) -> sshd advice
(MK310, MK311) -> a summary.

Nothing is written before the one question of step 10, except what a step needs to go
on and the user agreed to: a new key pair (step 4) and a confirmed host key (step 5).
Those are journaled, and Ctrl-C or a failure puts them back: every file is left as it
was. The remote ``authorized_keys`` is the one change that stays (it is on the server).

Until the files are written, the checks run against a *staged* copy of the ssh config
(the user's file with the new managed block, in a private 0700 temp directory), so the
strings proven in step 9 are the written ones except for the ``-F`` path to that copy.
Once written, MK501 (and MK304 + MK404) run again on the files as written: without
``--ssh-config`` the written launch command has no ``-F`` and ssh reads other files.

After step 10 the files stay: Ctrl-C or a failure from then on says so (they were
written on the user's explicit yes) instead of "every file is as it was".
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

from mkdoctor.cli import ArgumentParser, add_target_args, interactive, options_from_args
from mkdoctor.options import Options, Target, UsageError, parse_host, parse_link_host, parse_link_ports
from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.wizard import remote, writers
from mkdoctor.wizard.prompts import Asker

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DYNAMIC_PORTS = (49152, 65535)  # IANA dynamic/private range (RFC 6335)

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


def home_mismatch() -> Optional[str]:
    """ssh finds ``~/.ssh`` through the password database, mkdoctor through ``$HOME``: when
    they differ (``sudo -E``, some containers) the alias would be written where ssh never
    looks. The warning names both and the flag that settles it."""
    import pwd

    try:
        real = os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None
    home = os.path.realpath(os.path.expanduser("~"))
    if real == home:
        return None
    return (f"HOME is {home}, but ssh reads ~/.ssh from {real} (your home in the password "
            f"database): files go under {home}; give --ssh-config {real}/.ssh/config to write "
            "where ssh looks, or run without overriding HOME")


class StepFailed(Exception):
    """A step failed: the message (and fix) are printed, nothing is written, exit 1."""


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
        from mkdoctor.cli import read_hosts_file

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
            from mkdoctor.cli import one_line

            print(f"mkdoctor setup: error: {one_line(f'{host}: {exc}')}", file=sys.stderr)
            rc = EXIT_USAGE
        if rc == EXIT_INTERRUPTED:
            return rc
        outcome.append((host, rc))
    words = {EXIT_OK: "set up", EXIT_FAIL: "FAILED (see above)", EXIT_USAGE: "needs a flag (see above)"}
    print("\nmkdoctor setup: " + "; ".join(f"{h}: {words.get(rc, rc)}" for h, rc in outcome))
    return max(rc for _, rc in outcome)


def setup_one(args: argparse.Namespace, unattended: bool) -> int:
    wizard = Wizard(args, Asker(not unattended))
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


def default_name(target: Target) -> str:
    host = target.host
    if host.startswith(sshconfig.ALIAS_PREFIX):
        host = host[len(sshconfig.ALIAS_PREFIX):]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", host).strip("-.") or "remote"
    if not name[0].isalnum():
        name = "h" + name
    return name[:64]


def first_fact(result, *names: str, default: Any = None) -> Any:
    if result is None:
        return default
    for n in names:
        value = result.facts.get(n)
        if value not in (None, "", []):
            return value
    return default


def port_free(port: int, address: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
            s.bind((address, port))
        return True
    except OSError:
        return False


def pick_ports(address: str, rng: Optional[random.Random] = None) -> tuple[int, int]:
    """Two consecutive free ports from the dynamic range."""
    rng = rng or random.Random()
    for _ in range(200):
        p = rng.randrange(DYNAMIC_PORTS[0], DYNAMIC_PORTS[1] - 1)
        if port_free(p, address) and port_free(p + 1, address):
            return p, p + 1
    raise StepFailed("no two free ports in 49152-65535; give --link-ports P1,P2")


class Wizard:
    def __init__(self, args: argparse.Namespace, ask: Asker) -> None:
        self.args = args
        self.ask = ask
        self.journal = writers.Journal()
        self.stage_dir: Optional[Path] = None
        self.written: list[writers.Written] = []
        self.previous = None  # the existing profile of the same name
        self.results: dict[str, Any] = {}
        self.step_no = 0
        self.fixed_later: dict[str, str] = {}  # check ID -> the step that fixes it
        self.hardening_error = ""
        self.committed = False  # step 10 is done: the files stay, whatever happens next
        self.applying = False  # step 11 is changing the server
        self.applied = False  # step 11 changed it
        self.proved_link = False  # MK404 ran in step 9 (so it runs again on the written files)
        self.verify_error = ""  # why the files as written do not work (step 10's re-check)
        self.verified: list[str] = []  # the checks that passed on the files as written
        # The setup's SSH sessions (one ControlMaster each), kept across steps while the
        # target and its configuration are unchanged: see session_for.
        self.sessions: dict[tuple, Any] = {}
        self._print_lock = threading.RLock()

    # --- output -----------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        with self._print_lock:
            print(text, flush=True)

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say(f"\n[{self.step_no}] {title}")

    def show_result(self, shown: set, check, result) -> None:
        """Print one check's line, once per run (the engine calls this from its worker
        threads, possibly after run_checks returned)."""
        with self._print_lock:
            if check.id in shown:
                return
            shown.add(check.id)
            self.results[check.id] = result
            self._show(check, result)

    def _show(self, check, result) -> None:
        self.say(f"  {result.status.value:<5} {check.id} {check.name}: {result.summary}")
        if result.status.value not in ("pass", "skip") and result.fix:
            later = self.fixed_later.get(check.id)
            self.say(f"        {'later: ' + later if later else 'fix: ' + result.fix}")
        if self.args.verbose:
            for d in result.details:
                self.say(f"        {d}")

    def run_checks(self, ids: Sequence[str], opts: Options, target: Optional[Target],
                   keep: bool = False, show: bool = True):
        """Run the checks ``ids`` (catalogue order), printing each as it finishes (unless
        ``show`` is false: the caller words the outcome). Returns {id: Result} (and the
        open context when ``keep``)."""
        from mkdoctor.context import Context
        from mkdoctor.engine import run_checks
        from mkdoctor.registry import all_checks

        selection = [c for c in all_checks() if c.id in ids]
        shown: set[str] = set()
        ctx = Context(opts, target, session=self.session_for(opts, target))
        try:
            pairs = run_checks(ctx, selection,
                               (lambda c, r: self.show_result(shown, c, r)) if show else None)
        finally:
            if not keep:
                ctx.close()
        for check, result in pairs:
            if show:
                self.show_result(shown, check, result)
            else:
                self.results[check.id] = result
        self.drop_failed_sessions()
        out = {c.id: r for c, r in pairs}
        return (out, ctx) if keep else out

    # --- one SSH session for the whole setup ------------------------------------------------

    def session_for(self, opts: Options, target: Optional[Target]):
        """The setup's session for ``target`` as ``opts`` reach it: the same one for every
        step while the destination and its configuration are unchanged, so setup logs in
        once with the key (not once per step). A configuration that ssh resolves to the
        very same options (``ssh -G`` output identical: the files as written, when they
        say what the staged copy said) uses the same session too: ssh's behaviour is a
        function of those options. None without a target."""
        if target is None:
            return None
        from mkdoctor.openssh.session import RemoteUnavailable, SSHClient
        from mkdoctor.proc import ProcessRunner

        key = (target.host, target.user, target.port, str(opts.ssh_config or ""),
               str(opts.identity or ""))
        if key in self.sessions:
            return self.sessions[key]
        client = SSHClient(target.host, ProcessRunner(), user=target.user, port=target.port,
                           ssh_config=opts.ssh_config, identity=opts.identity,
                           connect_timeout=opts.timeout)
        try:
            resolved = client.config(max(opts.timeout, 5))
            for other in self.sessions.values():
                if other.connected and other.config(max(opts.timeout, 5)) == resolved:
                    client.close()
                    self.sessions[key] = other
                    return other
        except RemoteUnavailable:
            pass  # ssh -G fails: the checks say so (MK301)
        self.sessions[key] = client
        return client

    def drop_failed_sessions(self) -> None:
        """A session whose login failed (the key is not installed yet) is forgotten:
        the next step logs in afresh."""
        for key, client in list(self.sessions.items()):
            login = getattr(client, "_login", None)
            if login is not None and not login.ok:
                del self.sessions[key]
                if client not in self.sessions.values():
                    client.close()

    def close_sessions(self) -> None:
        for client in {id(c): c for c in self.sessions.values()}.values():
            client.close()
        self.sessions.clear()

    # --- the flow ---------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        probe = copy.copy(a)
        probe.hosts_file = None
        probe.host = a.host or ["localhost"]  # validate every flag now; no profile auto-load
        self.opts, targets = options_from_args(probe)
        self.opts.profile = None
        self.target: Optional[Target] = targets[0] if a.host else None
        if a.profile:
            from mkdoctor import profile as profiles

            self.previous = profiles.load_profile(a.profile)
            a.name = a.name or self.previous.name
        if self.target is None and not self.ask.interactive and self.previous is None:
            from mkdoctor import profile as profiles

            if not (a.name and profiles.profile_path(a.name).is_file()):
                raise UsageError("setup --yes needs the remote host: give --host USER@HOST[:PORT] "
                                 "(or --name NAME of a saved profile)")
        self.say("mkdoctor setup: a remote Mathematica kernel over SSH, step by step. "
                 "Nothing is written until step 10 asks.")
        home_note = home_mismatch() if not self.args.ssh_config else None
        if home_note:
            self.say(f"  note: {home_note}")
        self.step_local()
        self.step_host()
        self.step_network()
        self.step_key()
        self.stage()
        self.step_host_key()
        self.step_login()
        self.step_kernel()
        self.step_ports()
        self.step_prove()
        self.step_write()
        self.verify_written()
        hardened = self.step_security()
        self.step_summary()
        rc = EXIT_OK
        if self.verify_error:
            print(f"mkdoctor setup: the configuration is written, but it does NOT work as "
                  f"written: {self.verify_error}\n{self.written_note()}; after the fix, "
                  f"`mkdoctor --profile {self.name}` re-checks it.", file=sys.stderr)
            rc = EXIT_FAIL
        if not hardened:
            print(f"mkdoctor setup: the sshd hardening was NOT applied: {self.hardening_error}\n"
                  "The configuration files above are written.", file=sys.stderr)
            rc = EXIT_FAIL
        return rc

    # 1 ------------------------------------------------------------------------------------

    def step_local(self) -> None:
        self.step("This computer (MK1xx, MK2xx)")
        opts = copy.copy(self.opts)
        # what a later step of this wizard fixes is said so, not given as a command to type
        self.fixed_later = {"MK202": "step 4 offers to create a key (or choose another one)",
                            "MK203": "step 8 proposes two free link ports"}
        try:
            res = self.run_checks([f"MK{n}" for n in (101, 102, 103, 201, 202, 203, 204, 205)],
                                  opts, None)
        finally:
            self.fixed_later = {}
        if res["MK201"].status.value in ("fail", "error"):
            raise StepFailed(f"{res['MK201'].summary}; fix: {res['MK201'].fix}")
        self.local = res

    # 2 ------------------------------------------------------------------------------------

    def ssh_config_path(self) -> Path:
        if self.args.ssh_config:
            return Path(self.args.ssh_config).expanduser().absolute()
        return writers.default_ssh_config()

    def step_host(self) -> None:
        self.step("The remote host")
        a = self.args
        cfg_path = self.ssh_config_path()
        if self.target is None and self.previous is None and a.name:
            from mkdoctor import profile as profiles

            if profiles.profile_path(a.name).is_file():
                self.previous = profiles.load_profile(a.name)
        if self.target is None and self.previous is not None:
            p = self.previous
            self.target = parse_host(f"{p.user}@{p.hostname}:{p.port}" if p.user else
                                     f"{p.hostname}:{p.port}")
        if self.target is None:
            aliases = [(h, f) for h, f in sshconfig.config_aliases(cfg_path)
                       if not h.startswith(sshconfig.ALIAS_PREFIX)]
            choice = None
            if aliases:
                choices = [(h, f"{h}  (Host alias in {f})") for h, f in aliases]
                choices.append(("", "another host: USER@HOST[:PORT]"))
                choice = self.ask.select("Which remote host runs the kernel?", choices, None,
                                         "--host", safe=False)
            if not choice:
                def valid(text: str) -> Optional[str]:
                    try:
                        parse_host(text.strip())
                    except UsageError as exc:
                        return str(exc)
                    return None

                choice = self.ask.text("Remote host (USER@HOST[:PORT]):", None, "--host",
                                       valid, safe=False).strip()
            self.target = parse_host(choice)
        t = self.target
        run = self.runner()
        argv = ["ssh"] + (["-F", str(cfg_path)] if a.ssh_config else [])
        argv += (["-l", t.user] if t.user else []) + (["-p", str(t.port)] if t.port else [])
        done = run(argv + ["-G", "--", t.host])
        if done.returncode != 0:
            raise StepFailed(f"ssh -G {t.display} failed: {(done.stderr or done.stdout).strip()}")
        g: dict[str, list[str]] = {}
        for line in done.stdout.splitlines():
            k, _, v = line.partition(" ")
            g.setdefault(k.lower(), []).append(v)
        self.resolved = g
        self.hostname = g.get("hostname", [t.host])[0]
        self.user = g.get("user", [t.user or ""])[0]
        self.port = int(g.get("port", ["22"])[0])
        if not self.previous:
            from mkdoctor import profile as profiles

            name = a.name or default_name(t)
            if profiles.profile_path(name).is_file():
                try:
                    self.previous = profiles.load_profile(name)
                except UsageError:
                    self.previous = None
        self.name = a.name or (self.previous.name if self.previous else default_name(t))
        self.alias = sshconfig.ALIAS_PREFIX + self.name
        self.extra: dict[str, str] = {}
        hka = g.get("hostkeyalias", ["none"])[0]
        if hka.lower() != "none":
            self.extra["HostKeyAlias"] = hka
        jump = g.get("proxyjump", ["none"])[0]
        if jump and jump.lower() != "none":
            self.extra["ProxyJump"] = jump
        from mkdoctor.openssh import known_hosts as hostkeys

        ukh = hostkeys.split_files(" ".join(g.get("userknownhostsfile", [])))
        home = Path.home()
        defaults = [str(home / ".ssh" / "known_hosts"), str(home / ".ssh" / "known_hosts2")]
        if ukh and ukh != defaults:
            self.extra["UserKnownHostsFile"] = " ".join(sshconfig.config_path_value(f) for f in ukh)
        self.say(f"  {t.display} is {self.user}@{self.hostname} port {self.port}"
                 + (f" via ProxyJump {jump}" if "ProxyJump" in self.extra else ""))
        self.say(f"  profile {self.name}, ssh alias {self.alias} (in {cfg_path})")

    def runner(self):
        from mkdoctor.openssh.keys import local_runner

        return local_runner(max(self.opts.timeout * 2, 10))

    # 3 ------------------------------------------------------------------------------------

    def step_network(self) -> None:
        self.step("The network")
        a, prev = self.args, self.previous
        r101, r102, r103 = (self.local.get(i) for i in ("MK101", "MK102", "MK103"))
        local_addr = first_fact(r101, "link_address")
        public = first_fact(r102, "public_address")
        self.say(f"  this computer: {local_addr or 'no routable address'}; public address: "
                 f"{public or 'unknown (offline or no answer)'}")
        recommended = first_fact(r103, "recommended_mode", default="tunnel")
        behind = first_fact(r103, "behind_nat")
        why = {
            "tunnel": "tunnel: the kernel's connections come back inside the SSH connection, "
                      "so nothing inbound is needed on this computer"
                      + (" (it is behind NAT)" if behind else ""),
            "direct": "direct: this computer's address is reachable, so the kernel can connect "
                      "straight back to it (no tunnel needed)",
        }
        self.say(f"  NAT: {r103.summary if r103 else 'not checked'}")
        self.say(f"  recommended: {why.get(recommended, recommended)}")
        if a.mode:
            self.mode = a.mode
        else:
            default = prev.mode if prev else recommended
            self.mode = self.ask.select(
                "Connection mode?",
                [("tunnel", "tunnel  - through the SSH connection (works behind NAT and firewalls)"),
                 ("direct", "direct  - the kernel connects to this computer (same LAN, VPN, public address)")],
                default, "--mode")
        self.link_host: Optional[str] = None
        if self.mode == "direct":
            default = a.link_host or (prev.link_host if prev and prev.link_host else None) or local_addr
            if a.link_host:
                self.link_host = parse_link_host(a.link_host)
            else:
                def valid(text: str) -> Optional[str]:
                    try:
                        parse_link_host(text.strip())
                    except UsageError as exc:
                        return str(exc)
                    return None

                self.link_host = parse_link_host(self.ask.text(
                    "The address of this computer that the kernel connects back to:",
                    default, "--link-host", valid).strip())
        self.say(f"  mode: {self.mode}" + (f", link address {self.link_host}" if self.link_host else ""))

    # 4 ------------------------------------------------------------------------------------

    def step_key(self) -> None:
        self.step("The key")
        from mkdoctor.openssh import keys

        a, prev = self.args, self.previous
        run = self.runner()
        reuse = False  # the key of the existing profile: a re-run keeps it
        if a.identity:
            candidates = [Path(a.identity).expanduser()]
        elif prev and prev.identity and Path(prev.identity).expanduser().exists():
            candidates = [Path(prev.identity).expanduser()]
            reuse = True
        else:
            candidates = []
            for value in self.resolved.get("identityfile", []):
                path = keys.expand_identity_path(value, host=self.hostname, remote_user=self.user)
                if path not in candidates:
                    candidates.append(path)
        usable: list[tuple[Path, Any]] = []
        for path in candidates:
            if not path.exists():
                continue
            info = keys.inspect_identity(path, run)
            findings = keys.assess(info, self.alias)
            if keys.acceptable(info):
                usable.append((path, info))
                self.say(f"  usable: {path} ({info.kind} {info.bits} bits {info.fingerprint})")
            else:
                for f in findings:
                    self.say(f"  {f.status}: {f.summary}\n        fix: {f.fix}")
        if a.identity and not usable:
            raise StepFailed(f"--identity {a.identity} cannot be used (see above)")
        choices: list[tuple[Any, str]] = [(str(p), f"use {p} ({i.kind}, {i.fingerprint})") for p, i in usable]
        choices.append(("new", "create a new ed25519 key for this host"))
        if usable and (reuse or not a.new_key):
            default = str(usable[0][0])
        else:
            default = "new" if (a.new_key or self.ask.interactive) else None
        if usable and a.identity:
            choice = str(usable[0][0])
        elif not self.ask.interactive and default is None:
            raise UsageError(f"no usable SSH key for {self.alias}: give --identity FILE or "
                             "--new-key (creates an ed25519 key without a passphrase)")
        else:
            choice = self.ask.select("Which key should the front end use?", choices, default, "--new-key")
        if choice != "new":
            self.identity = Path(choice)
            self.public_line = (usable[[str(p) for p, _ in usable].index(choice)][1].public.line)
            return
        passphrase = False
        if self.ask.interactive:
            # A passphrase key works for the front end only through an agent: with none
            # answering here, it is not the recommended choice.
            agent = keys.agent_keys(run)
            self.say("  passphrase + ssh-agent: a copied key file is useless without the "
                     "passphrase; unlock it once per session with ssh-add")
            self.say("  no passphrase: the front end can use it without an agent, but anyone "
                     "who copies the file can log in")
            if not agent.available:
                self.say(f"  note: no ssh-agent answers here ({agent.error or 'SSH_AUTH_SOCK is not set'}); "
                         "start one first (eval \"$(ssh-agent -s)\", or your desktop's) "
                         "for a passphrase key")
            with_agent = ("passphrase + ssh-agent (recommended)" if agent.available else
                          "passphrase + ssh-agent (no agent runs here: setup stops)")
            passphrase = self.ask.select(
                "Protect the new key with a passphrase?",
                [(True, with_agent), (False, "no passphrase")],
                agent.available, "--new-key") is True
        path = remote.new_key_path(self.alias)
        comment = f"mkdoctor {self.alias}"
        remote.create_key(path, comment, passphrase, self.journal.before_change)
        self.say(f"  created {path} (ed25519{', passphrase' if passphrase else ', no passphrase'})")
        if passphrase and not remote.add_to_agent(path):
            # The key would not log in without a prompt (MK202/MK304): stop here, before
            # anything is installed on the server; the new key is rolled back.
            raise StepFailed(f"the new key could not be added to an ssh-agent, and the front "
                             f"end cannot type its passphrase: start an agent (eval "
                             f"\"$(ssh-agent -s)\") and run setup again, or choose no passphrase")
        self.identity = path
        self.public_line = Path(str(path) + ".pub").read_text().strip()

    # staged ssh config ---------------------------------------------------------------------

    def block(self) -> sshconfig.HostBlock:
        return sshconfig.HostBlock(self.alias, self.hostname, self.user, self.port,
                                   str(self.identity), extra=dict(self.extra))

    def stage(self) -> None:
        """A private copy of the ssh config with the new block, for every check until
        the files are written."""
        self.stage_dir = Path(tempfile.mkdtemp(prefix="mkd-setup-"))
        real = self.ssh_config_path()
        text = sshconfig.read_text(writers.read_bytes(real) or b"")
        self.staged = self.stage_dir / "ssh_config"
        fd = os.open(self.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(sshconfig.to_bytes(sshconfig.upsert_block(text, self.block())))

    def remote_options(self, **over: Any) -> Options:
        opts = copy.copy(self.opts)
        opts.ssh_config = self.staged
        opts.identity = None
        opts.mode = self.mode
        opts.link_host = self.link_host
        for k, v in over.items():
            setattr(opts, k, v)
        return opts

    # 5 ------------------------------------------------------------------------------------

    def step_host_key(self) -> None:
        self.step("The host key")
        res = self.run_checks(["MK301", "MK302"], self.remote_options(), Target(self.alias))
        for cid in ("MK301", "MK302"):
            if res[cid].status.value in ("fail", "error"):
                raise StepFailed(f"{cid}: {res[cid].summary}; fix: {res[cid].fix}")
        run = self.runner()
        cfg = remote.ssh_g(run, self.alias, self.staged)
        state = remote.probe_host_key(run, cfg, self.opts.timeout)
        fp = state.fingerprint
        if state.verdict == "known":
            self.say(f"  known and unchanged: {state.key.keytype} {fp}")
            return
        if state.verdict == "unscannable":
            raise StepFailed(f"cannot read the host key of {state.name}: {state.error}")
        if state.verdict in ("changed", "revoked", "other-types"):
            raise StepFailed(
                f"the host key of {state.name} does NOT match the one recorded "
                f"({state.verdict}; the server now shows {fp}). This can be a man-in-the-middle "
                "attack. Never accept it blindly: ask the server's administrator for the new "
                f"fingerprint; only then remove the old entry: ssh-keygen -R '{state.name}'")
        if state.verdict == "cert-authority":
            self.say("  the host is vouched for by a @cert-authority line; nothing to record")
            return
        self.say(f"  the host key of {state.name} is not known yet:")
        self.say(f"    {state.key.keytype} {fp}")
        self.say("  Compare it with the server's own (on the server: ssh-keygen -lf "
                 "/etc/ssh/ssh_host_ed25519_key.pub), or ask its administrator.")
        given = self.args.accept_host_key
        if given:
            if given.rstrip("=") != fp.rstrip("="):
                raise UsageError(f"--accept-host-key {given} does not match the server's key {fp}: "
                                 "not recorded")
            ok = True
        elif self.ask.interactive:
            ok = self.ask.confirm(f"Is {fp} the fingerprint of {state.name}?", False,
                                  "--accept-host-key")
        else:
            raise UsageError(f"the host key of {state.name} is unknown ({state.key.keytype} {fp}); "
                             f"after verifying it, give --accept-host-key {fp}")
        if not ok:
            raise StepFailed("the host key was not confirmed")
        path, backup = remote.record_host_key(state, self.journal.before_change)
        self.say(f"  recorded in {path}{' (hashed)' if state.hashed else ''}"
                 + (f" (backup: {backup.name})" if backup else ""))

    # 6 ------------------------------------------------------------------------------------

    def step_login(self) -> None:
        self.step("Logging in with the key (MK304)")
        res = self.run_checks(["MK304"], self.remote_options(), Target(self.alias), show=False)
        reason = first_fact(res["MK304"], "reason", default="")
        if res["MK304"].status.value == "pass" or reason not in ("permission-denied", ""):
            from mkdoctor.registry import get

            self._show(get("MK304"), res["MK304"])
            if res["MK304"].status.value == "pass":
                return
            raise StepFailed(f"MK304: {res['MK304'].summary}; fix: {res['MK304'].fix}")
        # The expected case for a key the server has not seen: say so plainly, then offer
        # to install it (MK304's own fix would point back at this very setup).
        self.say(f"  {self.target.display} does not accept this key yet "
                 f"(ssh: {res['MK304'].summary.split(': ', 1)[-1]}): it has to be installed once")
        a = self.args
        t = self.target
        base = ["ssh"] + (["-F", str(self.ssh_config_path())] if a.ssh_config else [])
        base += (["-l", t.user] if t.user else []) + (["-p", str(t.port)] if t.port else [])
        pub = Path(str(self.identity) + ".pub")
        if self.ask.interactive:
            ok = self.ask.confirm(
                f"Install the public key {pub.name} on {t.display}? ssh asks for your password "
                "there, typed into this terminal (never stored)", True, "--install-key")
            if not ok:
                raise StepFailed(f"the key is not installed; install it with: ssh-copy-id -i "
                                 f"{pub} {t.display}, then run mkdoctor setup again")
        elif not a.install_key:
            raise UsageError(f"the key is not accepted by {t.display} yet: give --install-key "
                             f"(uses a login that already works without a prompt), or run "
                             f"ssh-copy-id -i {pub} {t.display} first")
        argv = remote.install_argv(base, t.host, self.public_line, self.opts.sshd_config,
                                   batch=not self.ask.interactive, timeout=self.opts.timeout)
        ok, message, note = remote.install_key(argv, self.ask.interactive,
                                               sshd_config=self.opts.sshd_config)
        if not ok:
            raise StepFailed(f"installing the key failed: {message}; install it by hand: "
                             f"ssh-copy-id -i {pub} {t.display}")
        self.say(f"  {message}")
        if note:
            self.say(f"  note: {note}")
        res = self.run_checks(["MK304"], self.remote_options(), Target(self.alias))
        if res["MK304"].status.value != "pass":
            raise StepFailed(f"MK304 still fails after installing the key: {res['MK304'].summary}; "
                             f"fix: {res['MK304'].fix}")

    # 7 ------------------------------------------------------------------------------------

    def step_kernel(self) -> None:
        self.step("The kernel (MK401, MK402)")
        a, prev = self.args, self.previous
        given = a.kernel or (prev.kernel if prev else None)
        res = self.run_checks(["MK401"], self.remote_options(kernel=given), Target(self.alias))
        r401 = res["MK401"]
        found = first_fact(r401, "kernel")
        installs = first_fact(r401, "installs", "candidates", default=[]) or []
        paths = []
        versions: dict[str, str] = {}  # path -> the version MK401 reports
        for i in installs:
            p = i.get("path") if isinstance(i, dict) else (getattr(i, "path", None) or i)
            v = i.get("version") if isinstance(i, dict) else getattr(i, "version", "")
            if isinstance(p, str) and p not in paths:
                paths.append(p)
                versions[p] = str(v or "")
        if found and found not in paths:
            paths.insert(0, found)
            versions[found] = str(first_fact(r401, "version", default=""))
        if a.kernel:
            kernel = a.kernel
        elif len(paths) > 1 and self.ask.interactive:
            choices = [(p, f"{p}  (version {versions.get(p) or 'unknown'})") for p in paths]
            kernel = self.ask.select("Which kernel?", choices, found or paths[0], "--kernel")
        elif paths:
            kernel = found or paths[0]
        elif given:
            kernel = given
        else:
            kernel = self.ask.text("Path of the kernel on the remote host (e.g. "
                                   "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel):",
                                   None, "--kernel", lambda s: None if s.strip() else "required",
                                   safe=False).strip()
        res = self.run_checks(["MK402"], self.remote_options(kernel=kernel), Target(self.alias))
        r402 = res["MK402"]
        if r402.status.value in ("fail", "error"):
            raise StepFailed(f"MK402: {r402.summary}; fix: {r402.fix}")
        self.kernel = kernel
        self.kernel_version = str(first_fact(r402, "version_number", default="")
                                  or first_fact(r401, "version", default="")
                                  or (prev.kernel_version if prev and prev.kernel == kernel else ""))
        self.processors = int(first_fact(r402, "processor_count", "processors", "ProcessorCount",
                                         default=1) or 1)
        self.say(f"  kernel {kernel}" + (f" (version {self.kernel_version})" if self.kernel_version else ""))

    # 8 ------------------------------------------------------------------------------------

    def step_ports(self) -> None:
        self.step("The link ports (MK203)")
        a, prev = self.args, self.previous
        address = "0.0.0.0" if self.mode == "direct" else "127.0.0.1"
        explicit = bool(a.link_ports)
        for attempt in range(5):
            if explicit:
                ports = parse_link_ports(a.link_ports)
            elif attempt == 0 and prev:
                ports = (int(prev.link_ports[0]), int(prev.link_ports[1]))
            else:
                ports = pick_ports(address)
            if self.ask.interactive and not explicit:
                def valid(text: str) -> Optional[str]:
                    try:
                        parse_link_ports(text)
                    except UsageError as exc:
                        return str(exc)
                    return None

                ports = parse_link_ports(self.ask.text("Link ports (two free ports, P1,P2):",
                                                       f"{ports[0]},{ports[1]}", "--link-ports", valid))
            opts = self.remote_options(link_ports=ports, link_ports_given=True)
            res = self.run_checks(["MK203"], opts, None)
            problem = res["MK203"].status.value in ("fail", "error")
            if not problem and self.mode == "tunnel":
                problem = not self.remote_can_bind(opts, ports)
            if not problem:
                self.ports = ports
                return
            if explicit:
                raise StepFailed(f"the link ports {ports[0]},{ports[1]} cannot be used; "
                                 "choose others with --link-ports P1,P2")
        raise StepFailed("no usable pair of link ports after 5 tries; give --link-ports P1,P2")

    def remote_can_bind(self, opts: Options, ports: tuple[int, int]) -> bool:
        """Tunnel mode: the server can listen on both ports (a reverse forward each)."""
        from mkdoctor.context import Context

        target = Target(self.alias)
        ctx = Context(opts, target, session=self.session_for(opts, target))
        try:
            if not ctx.ssh.login(ctx.step_timeout(opts.timeout * 2 + 2)).ok:
                return True  # MK304 passed a moment ago; MK403 will tell
            for p in ports:
                spec = f"{p}:127.0.0.1:{p}"
                done = ctx.ssh.control("forward", "-R", spec, timeout=ctx.step_timeout())
                if done.returncode != 0:
                    self.say(f"  the remote host cannot listen on port {p}: "
                             f"{(done.stderr or done.stdout).strip()}")
                    return False
                ctx.ssh.control("cancel", "-R", spec, timeout=ctx.step_timeout())
            self.say(f"  the remote host can listen on {ports[0]} and {ports[1]}")
            return True
        finally:
            ctx.close()

    # 9 ------------------------------------------------------------------------------------

    def profile(self, ssh_config: Optional[str]):
        from mkdoctor.launch import LaunchSpec, launch_command, mlopen_arguments
        from mkdoctor.profile import Profile

        spec = LaunchSpec(destination=self.alias, kernel=self.kernel, mode=self.mode,
                          link_ports=self.ports, kernel_version=self.kernel_version,
                          link_host=self.link_host, ssh_config=ssh_config)
        return Profile(
            name=self.name, host=self.alias, hostname=self.hostname, user=self.user,
            port=self.port, identity=str(self.identity), ssh_config=ssh_config or "",
            kernel=self.kernel, kernel_version=self.kernel_version, mode=self.mode,
            link_ports=[self.ports[0], self.ports[1]], link_host=self.link_host or "",
            sshd_config=(self.opts.sshd_config if self.opts.sshd_config != "/etc/ssh/sshd_config" else ""),
            launch_command=launch_command(spec), mlopen_arguments=mlopen_arguments(spec),
        )

    def final_ssh_config(self) -> Optional[str]:
        return str(self.ssh_config_path()) if self.args.ssh_config else None

    def step_prove(self) -> None:
        self.step("Proving the link with the strings about to be written (MK403, MK404)")
        staged = self.profile(str(self.staged))
        final = self.profile(self.final_ssh_config())
        self.say(f"  Arguments to MLOpen: {final.mlopen_arguments}")
        self.say(f"  Launch command:      {final.launch_command}")
        opts = self.remote_options(link_ports=self.ports, link_ports_given=True, kernel=self.kernel,
                                   profile=staged)
        res = self.run_checks(["MK403", "MK404"], opts, Target(self.alias))
        for cid in ("MK403", "MK404"):
            if res[cid].status.value in ("fail", "error"):
                raise StepFailed(f"{cid}: {res[cid].summary}; fix: {res[cid].fix}")
        self.proved_link = res["MK404"].status.value != "skip"
        if any(r.status.value == "skip" for r in res.values()):
            self.say("  note: not everything could be proven (see the skips above); "
                     "`mkdoctor` re-checks after setup")

    # 10 -----------------------------------------------------------------------------------

    def step_write(self) -> None:
        self.step("Writing the configuration")
        prof = self.profile(self.final_ssh_config())
        if self.previous is not None and self.previous.path is not None:
            prof.path = None  # always the standard place: profiles/NAME.toml
        changes = writers.plan(prof, self.block(), self.ssh_config_path(), self.processors)
        self.profile_written = prof
        pending = [c for c in changes if c.changed]
        for c in changes:
            state = "unchanged" if not c.changed else ("new" if c.old is None else "changes")
            self.say(f"  {state:<9} {c.path}  ({c.what})")
        if not pending:
            self.say("  everything is already up to date: nothing written")
            self.journal.commit()
            self.committed = True
            return
        ssh_change = changes[0]
        if ssh_change.changed:
            block = sshconfig.block_text(sshconfig.read_text(ssh_change.new), self.alias) or ""
            self.say(f"\n  The block in {ssh_change.path}:")
            for line in block.splitlines():
                self.say(f"    {line}")
            self.say("  (everything else in that file stays as it is; a backup is kept)")
        if not self.ask.confirm("Write these files?", True, "--yes"):
            raise StepFailed("you chose not to write the files")
        self.written = writers.apply(changes)
        self.journal.commit()
        self.committed = True
        for w in self.written:
            self.say(f"  wrote {w.real}" + (f" (backup: {w.backup.name})" if w.backup else ""))

    def verify_written(self) -> None:
        """Step 9 proved the strings through a staged copy of the ssh config (``-F``),
        and with ``-F`` ssh reads neither ``~/.ssh/config`` nor ``/etc/ssh/ssh_config``;
        a launch command written without ``--ssh-config`` has no ``-F`` and reads both.
        So the files as written are checked again, as ``mkdoctor --profile NAME`` would
        (but logging in as the front end does, with the alias's own key): MK501, and
        MK304 + MK404 when MK404 ran in step 9. A failure (a skip too: it was proven a
        moment ago) is :attr:`verify_error`; the files stay written."""
        from mkdoctor import profile as profiles

        prof = profiles.load_profile(str(writers.profile_file(self.name)))
        ids = ["MK501"] + (["MK304", "MK404"] if self.proved_link else [])
        self.say(f"\n  checking the files as written ({', '.join(ids)}):")
        opts = copy.copy(self.opts)
        opts.profile = prof
        opts.ssh_config = Path(prof.ssh_config).expanduser() if prof.ssh_config else None
        opts.identity = None
        opts.kernel = prof.kernel or None
        opts.mode = prof.mode
        opts.link_ports = (int(prof.link_ports[0]), int(prof.link_ports[1]))
        opts.link_ports_given = True
        opts.link_host = prof.link_host or None
        res = self.run_checks(ids, opts, Target(prof.host))
        for cid in ids:
            r = res[cid]
            if r.status.value in ("pass", "warn"):
                self.verified.append(cid)
                continue
            # ssh reading another ~/.ssh than the one written is the cause a check's own
            # fix ("rewrite the files") would not cure
            home_note = home_mismatch() if not self.args.ssh_config else None
            fix = home_note or r.fix
            if r.status.value == "skip":
                self.verify_error = f"{cid} could not be re-checked: {r.summary}; fix: {fix}"
            else:
                self.verify_error = f"{cid}: {r.summary}; fix: {fix}"
            return

    # 11 -----------------------------------------------------------------------------------

    def step_security(self) -> bool:
        """Advice, and the change if asked for. False only when an apply was asked for
        and did not succeed (:attr:`hardening_error` says why): the run then ends with
        exit status 1 although the files are written."""
        self.step("The remote SSH server (MK310, MK311)")
        from mkdoctor.wizard import security

        opts = copy.copy(self.opts)
        opts.ssh_config = Path(self.final_ssh_config()) if self.final_ssh_config() else None
        opts.identity = None
        res = self.run_checks(["MK310", "MK311"], opts, Target(self.alias))
        advice = security.advice(res, self.user)
        kept = security.kept_for_root(res, self.user)
        if kept:
            self.say(f"  note: {kept}")
        if not advice:
            self.say("  nothing to change")
            return True
        self.say(advice.text)
        apply = self.args.apply_sshd_hardening
        if not apply and self.ask.interactive:
            apply = self.ask.confirm("Apply this on the remote host now (sudo asks for your "
                                     "password there)?", False, "--apply-sshd-hardening")
        elif not apply:
            self.say("  not applied (--apply-sshd-hardening applies it)")
        if not apply:
            return True
        self.applying = True
        ok, message = security.apply(advice, self.alias, opts.ssh_config, self.ask.interactive,
                                     sshd_config=str(self.opts.sshd_config))
        self.applying = False
        self.applied = ok
        self.say(f"  {message}")
        if not ok:
            self.hardening_error = message
            return False
        self.say("  after the change:")
        after = self.run_checks(["MK310", "MK311"], opts, Target(self.alias))
        if security.advice(after, self.user):
            self.hardening_error = ("applied, but MK310/MK311 still do not pass (see above): "
                                    "another file sets these values first")
            return False
        return True

    # 12 -----------------------------------------------------------------------------------

    def step_summary(self) -> None:
        self.step("Done")
        prof = self.profile_written
        paths = writers.frontend_paths(prof.name)
        if self.verify_error:
            self.say(f"  NOT WORKING AS WRITTEN: {self.verify_error}")
        else:
            self.say(f"  checked as written: {', '.join(self.verified)} passed")
        self.say(f"  profile:        {writers.profile_file(prof.name)}")
        self.say(f"  ssh alias:      {self.alias} in {self.ssh_config_path()}")
        self.say(f"  front end:      {paths['text']}")
        self.say(f"                  (or evaluate {paths['install']})")
        self.say(f"  parallel:       {paths['parallel']}")
        self.say("  In the front end: Evaluation > Notebook's Kernel > " + prof.name)
        self.say(f"  Re-check any time: mkdoctor --profile {prof.name}   "
                 f"(mkdoctor config show --profile {prof.name} prints the strings)")

    # --- ending ----------------------------------------------------------------------------

    def written_note(self) -> str:
        """What step 10 left on disk, for the last message (after it committed)."""
        if not self.written:
            return "the configuration files were already up to date (nothing was changed)"
        backups = [w.backup.name for w in self.written if w.backup]
        return ("the configuration files of step 10 stay written"
                + (f" (backups: {', '.join(backups)})" if backups else " (all new, no backups)"))

    def hardening_note(self) -> str:
        if self.applied:
            return "the sshd hardening was applied"
        if self.applying:
            return ("the sshd hardening was interrupted while being applied: the server puts "
                    "its previous configuration back unless the change had reached the reload; "
                    f"mkdoctor --profile {self.name} --only MK310,MK311 shows which")
        return "the sshd hardening was not applied"

    def abort(self) -> None:
        """Put back every file changed before the final write."""
        self.journal.rollback()

    def cleanup(self) -> None:
        self.close_sessions()
        if self.stage_dir is not None:
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            self.stage_dir = None
