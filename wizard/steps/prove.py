"""Step 9: proving the link with the strings about to be written (MK404; MK403 when it
fails, to say which part), with the kernel started on its own (MK402) beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mkdoctor import facts
from mkdoctor.kernel import ALONE_NOTE
from mkdoctor.launch import link_flag
from mkdoctor.options import Target
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("Proving the cluster launch command on a compute node (MK601-MK605)" if f.opts.scheduler
           else "Proving the link with the strings about to be written (MK404)")
    # independent of the link: the server's sshd policy (step 11), read while this step waits
    f.background("sshd", lambda: f.run_checks(["MK310", "MK311"], f.remote_options(),
                                              Target(st.alias), show=False, live=False))
    # MK404 proves the whole link; MK403 (the network path alone) runs only when MK404 does
    # not pass, to say which part fails (step 8 already had the server listen on the ports)
    ids = ["MK404"]
    if f.opts.scheduler:  # the cluster launch command, end to end (MK404 is for one host);
        # MK401 reads the kernel as the nodes' checks use it (a module to load included)
        ids = ["MK401", "MK601", "MK602", "MK603", "MK604", "MK605"]
    # MK402 beside MK404: one kernel start's wait, not two. A licence for one kernel at a
    # time refuses one of the two: the checks start the refused one again alone (they
    # share the session's OwnKernels, mkdoctor/kernel.py), and say so.
    for attempt in (1, 2):
        staged = f.profile(str(st.staged))
        final = f.profile(f.final_ssh_config())
        f.say(f"  Arguments to MLOpen: {final.mlopen_arguments}")
        f.say(f"  Launch command:      {final.launch_command}")
        opts = f.remote_options(link_ports=st.ports, link_ports_given=True, kernel=st.kernel,
                                profile=staged)
        if not f.opts.scheduler:
            f.background("kernel", lambda: kernel_alone(f, show=False))
        res = f.run_checks(ids, opts, Target(st.alias))
        if f.opts.scheduler:
            break
        linked = res["MK404"].status.value == "pass"
        res.update(collect_kernel(f))
        for cid in ("MK402", "MK404"):
            if res[cid].details[:1] == [ALONE_NOTE]:
                f.say(f"  the licence allows one kernel at a time here: {cid}'s kernel, refused "
                      "beside the other, was started again alone")
        r402 = res["MK402"]
        assumed = link_flag(st.kernel_version)
        if r402.status.value == "pass":
            st.kernel_version = str(facts.KERNEL_VERSION_NUMBER.of(r402, "") or st.kernel_version)
            st.processors = int(facts.PROCESSOR_COUNT.of(r402, 1) or 1)
        if attempt == 1 and not linked and r402.status.value == "pass" \
                and link_flag(st.kernel_version) != assumed:
            f.say(f"  the kernel is version {st.kernel_version}: it takes "
                  f"{link_flag(st.kernel_version)}, not {assumed}; proving the rebuilt strings")
            continue
        break
    if not f.opts.scheduler and not linked and res["MK402"].status.value == "pass":
        res.update(f.run_checks(["MK403"], opts, Target(st.alias)))  # which part fails
    # a kernel that does not start first, then the network path, then the launch command
    order = ids if f.opts.scheduler else [c for c in ("MK402", "MK403", "MK404") if c in res]
    for cid in order:
        if res[cid].status.value in ("fail", "error"):
            raise StepFailed(f"{cid}: {res[cid].summary}; fix: {res[cid].fix}")
    st.proved_link = res[ids[-1]].status.value != "skip"
    if any(r.status.value == "skip" for r in res.values()):
        f.say("  note: not everything could be proven (see the skips above); "
                 "`mkdoctor` re-checks after setup")


def kernel_alone(f: Flow, show: bool = True) -> dict:
    """MK401 and MK402: the kernel started on its own (no link), read as step 7 chose it:
    its version, $ProcessorCount, and a kernel that does not start (path, licence, a
    look-alike) told apart from a link that does not work."""
    return f.run_checks(["MK401", "MK402"], f.remote_options(kernel=f.state.kernel_arg),
                        Target(f.state.alias), show=show, live=show)


def collect_kernel(f: Flow) -> dict:
    """MK402's result from beside MK404, shown now (run now when it could not run beside)."""
    res = f.collected("kernel")
    if res is None or "MK402" not in res:
        return kernel_alone(f)
    from mkdoctor.registry import get

    f.show_result(set(), get("MK402"), res["MK402"])
    return res
