"""``mkdoctor setup`` as a flow: an ordered table of steps over one state and one session.

The table :func:`steps` is the whole setup, in order, one module per step under
:mod:`mkdoctor.wizard.steps` (like flutter doctor's list of validators, or pre-commit's
explicit table): each ``run(flow)`` reads what earlier steps put into
:class:`~mkdoctor.wizard.state.SetupState` (``flow.state``) and adds its own part. The
services every step uses are on :class:`Flow`: printing, the questions
(:class:`~mkdoctor.wizard.prompts.Asker`), the journal of changed files, and running
checks through **one SSH session for the whole setup** while the target and its resolved
configuration are unchanged (:meth:`Flow.session_for`): setup logs in once with the key
(plus once with the password when the key has to be installed first).

The order and what is written when (docs/setup.md is the user guide):
local checks -> the remote host -> the network and the mode -> the key -> (the staged ssh
config) -> the host key -> installing the key (MK304 must pass) -> the kernel (MK401)
-> the link ports (MK203, the server can bind them) -> proof with the exact strings about
to be written (MK403, MK404, with MK402 starting the kernel on its own at the same time;
on a cluster MK401 and MK601-MK605) -> the files (shown, one question, then
written, then checked as written) -> sshd advice (MK310, MK311) -> a summary.

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

A new step: a module in ``wizard/steps/`` with ``run(flow)``, its fields in
:class:`SetupState`, and its place in :func:`steps` (docs/architecture.md, "Setup flow").
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.options import Options, Target, UsageError
from mkdoctor.wizard import writers
from mkdoctor.wizard.prompts import Asker
from mkdoctor.wizard.state import SetupState


class StepFailed(Exception):
    """A step failed: the message (and fix) are printed, nothing is written, exit 1."""


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


def default_name(target: Target) -> str:
    host = target.host
    if host.startswith(sshconfig.ALIAS_PREFIX):
        host = host[len(sshconfig.ALIAS_PREFIX):]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", host).strip("-.") or "remote"
    if not name[0].isalnum():
        name = "h" + name
    return name[:64]


# --- the managed block: derived in ONE place ----------------------------------------------


def build_block(flow: "Flow") -> sshconfig.HostBlock:
    """The managed block of the setup (staged in step 4, written in step 10): everything
    ``ssh -G`` resolved for the host the user named that is not a default, except what
    mkdoctor sets on purpose (:func:`mkdoctor.openssh.client_config.managed_block`).
    Worked out once per identity."""
    st = flow.state
    key = (st.alias, str(st.identity), st.target.display if st.target else "")
    cached = getattr(flow, "_block", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    t = st.target
    try:
        block = sshconfig.managed_block(
            flow.runner(), st.alias, t.host, str(st.identity),
            ssh_config=flow.ssh_config_path() if flow.args.ssh_config else None,
            config_path=flow.ssh_config_path(), user=t.user, port=t.port, resolved=st.resolved)
    except sshconfig.SshGError as exc:
        raise StepFailed(str(exc)) from None
    flow._block = (key, block)
    return block


# --- the step table ------------------------------------------------------------------------


def steps() -> list[tuple[str, Callable[["Flow"], Any]]]:
    """The setup, in order: (name, run) per step."""
    from mkdoctor.wizard.steps import (host, host_key, kernel, key, local, login, network,
                                       ports, prove, sshd_advice, stage, summary, write)

    return [
        ("local", local.run),  # 1 this computer
        ("host", host.run),  # 2 the remote host, name and alias
        ("network", network.run),  # 3 the mode
        ("key", key.run),  # 4 the key
        ("stage", stage.run),  # the staged ssh config (no heading)
        ("host_key", host_key.run),  # 5
        ("login", login.run),  # 6 MK304, key install
        ("kernel", kernel.run),  # 7 MK401
        ("ports", ports.run),  # 8 MK203
        ("prove", prove.run),  # 9 MK403, MK404 (MK402 beside them)
        ("write", write.run),  # 10 the one question, the files
        ("verify", write.verify_written),  # the files as written
        ("sshd_advice", sshd_advice.run),  # 11 MK310, MK311
        ("summary", summary.run),  # 12
    ]


class Flow:
    """The services of the setup and its state; :meth:`run` runs :func:`steps`."""

    def __init__(self, args: argparse.Namespace, ask: Asker) -> None:
        self.args = args
        self.ask = ask
        self.state = SetupState()
        self.journal = writers.Journal()
        self.opts: Options = Options()
        self.results: dict[str, Any] = {}
        self.step_no = 0
        self.fixed_later: dict[str, str] = {}  # check ID -> the step that fixes it
        self.sessions: dict[tuple, Any] = {}  # see session_for
        self._background: dict[str, tuple[threading.Thread, dict]] = {}  # see background
        self._print_lock = threading.RLock()
        from mkdoctor.live import LivePrinter

        # lines as they come and, on a terminal outside CI, a status line naming the check
        # that runs and for how long (nothing is drawn while a question is asked: no check
        # runs then)
        self.printer = LivePrinter(sys.stdout)

    # convenience for the ending messages (main.setup_one)
    @property
    def committed(self) -> bool:
        return self.state.committed

    # --- output -----------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        with self._print_lock:
            self.printer.line(text)

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say(f"\n[{self.step_no}] {title}")

    def show_result(self, shown: set, check, result) -> None:
        """Print one check's line, once per run (the engine calls this from its worker
        threads, possibly after run_checks returned)."""
        with self._print_lock:
            self.printer.stop(check.id)
            if check.id in shown:
                return
            shown.add(check.id)
            self.results[check.id] = result
            self.show(check, result)

    def show(self, check, result) -> None:
        self.say(f"  {result.status.value:<5} {check.id} {check.name}: {result.summary}")
        if result.status.value not in ("pass", "skip") and result.fix:
            later = self.fixed_later.get(check.id)
            self.say(f"        {'later: ' + later if later else 'fix: ' + result.fix}")
        if self.args.verbose:
            for d in result.details:
                self.say(f"        {d}")

    # --- checks, through the setup's session ---------------------------------------------

    def run_checks(self, ids: Sequence[str], opts: Options, target: Optional[Target],
                   show: bool = True, live: bool = True) -> dict[str, Any]:
        """Run the checks ``ids`` (catalogue order), printing each as it finishes (unless
        ``show`` is false: the caller words the outcome; ``live`` false: not on the status
        line either, for :meth:`background` work). Returns {id: Result}."""
        from mkdoctor.context import Context
        from mkdoctor.engine import run_checks
        from mkdoctor.live import doing
        from mkdoctor.registry import all_checks

        selection = [c for c in all_checks() if c.id in ids]
        shown: set[str] = set()
        ctx = Context(opts, target, session=self.session_for(opts, target))
        try:
            pairs = run_checks(ctx, selection,
                               (lambda c, r: self.show_result(shown, c, r)) if show else None,
                               (lambda c: self.printer.start(c.id, "  " + doing(c), float(c.id[2:])))
                               if live else None)
        finally:
            ctx.close()
            if live:
                for check in selection:
                    self.printer.stop(check.id)
        for check, result in pairs:
            if show:
                self.show_result(shown, check, result)
            else:
                self.results[check.id] = result
        self.drop_failed_sessions()
        return {c.id: r for c, r in pairs}

    # --- work that a later step shows, done while an earlier step waits --------------------

    def background(self, key: str, work: Callable[[], Any]) -> None:
        """Start ``work`` now, in a thread, silently; :meth:`collected` gives its value to
        the step that needs it (setup reads the sshd configuration while the kernel starts
        in step 9: the two do not depend on each other). It shares the setup's session."""
        box: dict = {}

        def run() -> None:
            try:
                box["value"] = work()
            except Exception:  # noqa: BLE001 - no value: the step does the work itself
                pass

        thread = threading.Thread(target=run, name=f"setup-{key}", daemon=True)
        self._background[key] = (thread, box)
        thread.start()

    def collected(self, key: str) -> Any:
        """The value of :meth:`background` work ``key`` (waiting for it), or None when
        there was none or it failed (the step then does the work itself)."""
        thread, box = self._background.pop(key, (None, {}))
        if thread is None:
            return None
        thread.join(timeout=max(self.opts.deadline, 1))
        return None if thread.is_alive() else box.get("value")

    def _end_background(self) -> None:
        for thread, _ in self._background.values():
            thread.join(timeout=max(self.opts.timeout * 2, 5))
        self._background.clear()

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

    # --- shared helpers of the steps -------------------------------------------------------

    def runner(self):
        from mkdoctor.openssh.keys import local_runner

        return local_runner(max(self.opts.timeout * 2, 10))

    def ssh_config_path(self) -> Path:
        if self.args.ssh_config:
            return Path(self.args.ssh_config).expanduser().absolute()
        return writers.default_ssh_config()

    def final_ssh_config(self) -> Optional[str]:
        return str(self.ssh_config_path()) if self.args.ssh_config else None

    def remote_options(self, **over: Any) -> Options:
        st = self.state
        opts = copy.copy(self.opts)
        opts.ssh_config = st.staged
        opts.identity = None
        opts.mode = st.mode
        opts.link_host = st.link_host
        for k, v in over.items():
            setattr(opts, k, v)
        return opts

    def profile(self, ssh_config: Optional[str]):
        from mkdoctor.launch import LaunchSpec, launch_command, mlopen_arguments
        from mkdoctor.profile import Profile

        st = self.state
        spec = LaunchSpec(destination=st.alias, kernel=st.kernel, mode=st.mode,
                          link_ports=st.ports, kernel_version=st.kernel_version,
                          link_host=st.link_host, ssh_config=ssh_config,
                          module=st.module, module_init=st.module_init)
        prof = Profile(
            name=st.name, host=st.alias, hostname=st.hostname, user=st.user,
            port=st.port, identity=str(st.identity), ssh_config=ssh_config or "",
            kernel=st.kernel, kernel_version=st.kernel_version, mode=st.mode,
            module=st.module, module_init=st.module_init,
            link_ports=[st.ports[0], st.ports[1]], link_host=st.link_host or "",
            sshd_config=(self.opts.sshd_config if self.opts.sshd_config != "/etc/ssh/sshd_config" else ""),
            launch_command=launch_command(spec), mlopen_arguments=mlopen_arguments(spec),
        )
        o = self.opts
        if o.scheduler:  # a cluster profile: the kernel runs on a node the scheduler allocates
            import sys

            from mkdoctor import cluster

            prof.scheduler, prof.partition, prof.time = o.scheduler, o.partition, o.time_limit
            prof.cpus, prof.account, prof.licenses = o.cpus, o.account, o.licenses
            prof.subkernels = o.subkernels
            prof.cluster_link = o.cluster_link or ""
            prof.mode = "tunnel"  # the link reaches the laptop through the login node's session
            if prof.cluster_link == "stdio":
                prof.laptop_python = sys.executable
            prof.launch_command = cluster.launch_command(prof)
            prof.mlopen_arguments = cluster.mlopen(prof)
        return prof

    # --- the flow ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Validate every flag and load the profile named, before any step."""
        from mkdoctor.args import options_from_args

        a, st = self.args, self.state
        probe = copy.copy(a)
        probe.hosts_file = None
        probe.host = a.host or ["localhost"]  # validate every flag now; no profile auto-load
        self.opts, targets = options_from_args(probe)
        self.opts.profile = None
        st.target = targets[0] if a.host else None
        if a.profile:
            from mkdoctor import profile as profiles

            st.previous = profiles.load_profile(a.profile)
            a.name = a.name or st.previous.name
        if st.target is None and not self.ask.interactive and st.previous is None:
            from mkdoctor import profile as profiles

            if not (a.name and profiles.profile_path(a.name).is_file()):
                raise UsageError("setup --yes needs the remote host: give --host USER@HOST[:PORT] "
                                 "(or --name NAME of a saved profile)")

    def run(self) -> int:
        self.prepare()
        self.printer.__enter__()  # the ticker; cleanup() closes it on every exit path
        self.say("mkdoctor setup: a remote Mathematica kernel over SSH, step by step. "
                 "Nothing is written until step 10 asks.")
        home_note = home_mismatch() if not self.args.ssh_config else None
        if home_note:
            self.say(f"  note: {home_note}")
        for _name, run_step in steps():
            run_step(self)
        st = self.state
        rc = 0
        if st.verify_error:
            print(f"mkdoctor setup: the configuration is written, but it does NOT work as "
                  f"written: {st.verify_error}\n{self.written_note()}; after the fix, "
                  f"`mkdoctor --profile {st.name}` re-checks it.", file=sys.stderr)
            rc = 1
        if not st.hardened:
            print(f"mkdoctor setup: the sshd hardening was NOT applied: {st.hardening_error}\n"
                  "The configuration files above are written.", file=sys.stderr)
            rc = 1
        return rc

    # --- ending ----------------------------------------------------------------------------

    def written_note(self) -> str:
        """What step 10 left on disk, for the last message (after it committed)."""
        written = self.state.written
        if not written:
            return "the configuration files were already up to date (nothing was changed)"
        backups = [w.backup.name for w in written if w.backup]
        return ("the configuration files of step 10 stay written"
                + (f" (backups: {', '.join(backups)})" if backups else " (all new, no backups)"))

    def hardening_note(self) -> str:
        st = self.state
        if st.applied:
            return "the sshd hardening was applied"
        if st.applying:
            return ("the sshd hardening was interrupted while being applied: the server puts "
                    "its previous configuration back unless the change had reached the reload; "
                    f"mkdoctor --profile {st.name} --only MK310,MK311 shows which")
        return "the sshd hardening was not applied"

    def abort(self) -> None:
        """Put back every file changed before the final write."""
        self.journal.rollback()

    def cleanup(self) -> None:
        self.printer.close()
        self._end_background()  # before the sessions it uses are closed
        self.close_sessions()
        if self.state.stage_dir is not None:
            shutil.rmtree(self.state.stage_dir, ignore_errors=True)
            self.state.stage_dir = None
