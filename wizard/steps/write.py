"""Step 10: the files (shown, one question, written), then checked as written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.options import Target
from mkdoctor.wizard import writers
from mkdoctor.wizard.flow import StepFailed, build_block, home_mismatch

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("Writing the configuration")
    prof = f.profile(f.final_ssh_config())
    if st.previous is not None and st.previous.path is not None:
        prof.path = None  # always the standard place: profiles/NAME.toml
    changes = writers.plan(prof, build_block(f), f.ssh_config_path(), st.processors)
    st.profile_written = prof
    pending = [c for c in changes if c.changed]
    for c in changes:
        state = "unchanged" if not c.changed else ("new" if c.old is None else "changes")
        f.say(f"  {state:<9} {c.path}  ({c.what})")
    if not pending:
        f.say("  everything is already up to date: nothing written")
        f.journal.commit()
        st.committed = True
        return
    ssh_change = changes[0]
    if ssh_change.changed:
        block = sshconfig.block_text(sshconfig.read_text(ssh_change.new), st.alias) or ""
        f.say(f"\n  The block in {ssh_change.path}:")
        for line in block.splitlines():
            f.say(f"    {line}")
        f.say("  (everything else in that file stays as it is; a backup is kept)")
    if not f.ask.confirm("Write these files?", True, "--yes"):
        raise StepFailed("you chose not to write the files")
    st.written = writers.apply(changes)
    f.journal.commit()
    st.committed = True
    for w in st.written:
        f.say(f"  wrote {w.real}" + (f" (backup: {w.backup.name})" if w.backup else ""))


def verify_written(f: Flow) -> None:
    """Step 9 proved the strings through a staged copy of the ssh config (``-F``),
    and with ``-F`` ssh reads neither ``~/.ssh/config`` nor ``/etc/ssh/ssh_config``;
    a launch command written without ``--ssh-config`` has no ``-F`` and reads both.
    So the files as written are checked again, as ``mkdoctor --profile NAME`` would
    (but logging in as the front end does, with the alias's own key): MK501, and
    MK304 + MK404 (MK605 on a cluster) when the link was proven in step 9. A failure (a skip too: it was proven a
    moment ago) is :attr:`verify_error`; the files stay written."""
    st = f.state
    from mkdoctor import profile as profiles

    prof = profiles.load_profile(str(writers.profile_file(st.name)))
    link = "MK605" if getattr(prof, "scheduler", "") else "MK404"  # a cluster: the srun command
    ids = ["MK501"] + (["MK304", link] if st.proved_link else [])
    if st.proved_link and same_resolution(f, prof):
        # ssh resolves the alias from the written files exactly as from the staged copy step
        # 9 proved the command with, and the written command differs from that one only in
        # which file it names: starting the kernel again would prove nothing new
        ids.remove(link)
        st.carried = link
        f.say(f"  ({link} not repeated: ssh -G {prof.host} is the same from the written files "
              "as from the copy step 9 proved the launch command with)")
    f.say(f"\n  checking the files as written ({', '.join(ids)}):")
    opts = copy.copy(f.opts)
    opts.profile = prof
    opts.ssh_config = Path(prof.ssh_config).expanduser() if prof.ssh_config else None
    opts.identity = None
    opts.kernel = prof.kernel or None
    opts.mode = prof.mode
    opts.link_ports = (int(prof.link_ports[0]), int(prof.link_ports[1]))
    opts.link_ports_given = True
    opts.link_host = prof.link_host or None
    res = f.run_checks(ids, opts, Target(prof.host))
    for cid in ids:
        r = res[cid]
        if r.status.value in ("pass", "warn"):
            st.verified.append(cid)
            continue
        # ssh reading another ~/.ssh than the one written is the cause a check's own
        # fix ("rewrite the files") would not cure
        home_note = home_mismatch() if not f.args.ssh_config else None
        fix = home_note or r.fix
        if r.status.value == "skip":
            st.verify_error = f"{cid} could not be re-checked: {r.summary}; fix: {fix}"
        else:
            st.verify_error = f"{cid}: {r.summary}; fix: {fix}"
        return


def same_resolution(f: Flow, prof) -> bool:  # noqa: ANN001 - a Profile
    """``ssh -G ALIAS`` gives the same from the written configuration (what the front end's
    ssh reads) as from step 4's staged copy."""
    from mkdoctor.openssh.client_config import SshGError, read_ssh_g

    run = f.runner()
    written = Path(prof.ssh_config).expanduser() if prof.ssh_config else None
    try:
        return read_ssh_g(run, prof.host, written) == read_ssh_g(run, prof.host, f.state.staged)
    except SshGError:
        return False
