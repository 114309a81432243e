"""Step 9: proving the link with the strings about to be written (MK403, MK404)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mkdoctor.options import Target
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("Proving the cluster launch command on a compute node (MK601-MK605)" if f.opts.scheduler
           else "Proving the link with the strings about to be written (MK403, MK404)")
    staged = f.profile(str(st.staged))
    final = f.profile(f.final_ssh_config())
    f.say(f"  Arguments to MLOpen: {final.mlopen_arguments}")
    f.say(f"  Launch command:      {final.launch_command}")
    opts = f.remote_options(link_ports=st.ports, link_ports_given=True, kernel=st.kernel,
                               profile=staged)
    ids = ["MK403", "MK404"]
    if f.opts.scheduler:  # the cluster launch command, end to end (MK404 is for one host)
        ids = ["MK601", "MK602", "MK603", "MK604", "MK605"]
    res = f.run_checks(ids, opts, Target(st.alias))
    for cid in ids:
        if res[cid].status.value in ("fail", "error"):
            raise StepFailed(f"{cid}: {res[cid].summary}; fix: {res[cid].fix}")
    st.proved_link = res[ids[-1]].status.value != "skip"
    if any(r.status.value == "skip" for r in res.values()):
        f.say("  note: not everything could be proven (see the skips above); "
                 "`mkdoctor` re-checks after setup")
