"""Step 9: proving the link with the strings about to be written (MK403, MK404)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mkdoctor import facts
from mkdoctor.launch import link_flag
from mkdoctor.options import Target
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("Proving the cluster launch command on a compute node (MK601-MK605)" if f.opts.scheduler
           else "Proving the link with the strings about to be written (MK403, MK404)")
    # independent of the link and the kernel: the server's sshd policy (step 11) and the
    # host's cores (the parallel-kernels file), read while the kernel starts
    f.background("sshd", lambda: f.run_checks(["MK310", "MK311"], f.remote_options(),
                                              Target(st.alias), show=False, live=False))
    if not f.opts.scheduler:
        f.background("cores", lambda: cores_of_host(f))
    ids = ["MK403", "MK404"]
    if f.opts.scheduler:  # the cluster launch command, end to end (MK404 is for one host)
        ids = ["MK601", "MK602", "MK603", "MK604", "MK605"]
    for attempt in (1, 2):
        staged = f.profile(str(st.staged))
        final = f.profile(f.final_ssh_config())
        f.say(f"  Arguments to MLOpen: {final.mlopen_arguments}")
        f.say(f"  Launch command:      {final.launch_command}")
        opts = f.remote_options(link_ports=st.ports, link_ports_given=True, kernel=st.kernel,
                                profile=staged)
        res = f.run_checks(ids, opts, Target(st.alias))
        if f.opts.scheduler:
            break
        if res["MK404"].status.value == "pass":
            st.processors = f.collected("cores") or 1
            break
        assumed = link_flag(st.kernel_version)
        res.update(diagnose(f, res["MK404"].status.value == "skip"))  # MK402: does it start?
        if attempt == 1 and res["MK402"].status.value == "pass" \
                and link_flag(st.kernel_version) != assumed:
            f.say(f"  the kernel is version {st.kernel_version}: it takes "
                  f"{link_flag(st.kernel_version)}, not {assumed}; proving the rebuilt strings")
            continue
        break
    for cid in ["MK402", *ids] if "MK402" in res else ids:
        if res[cid].status.value in ("fail", "error"):
            raise StepFailed(f"{cid}: {res[cid].summary}; fix: {res[cid].fix}")
    st.proved_link = res[ids[-1]].status.value != "skip"
    if any(r.status.value == "skip" for r in res.values()):
        f.say("  note: not everything could be proven (see the skips above); "
                 "`mkdoctor` re-checks after setup")


def diagnose(f: Flow, untried: bool) -> dict:
    """MK401 and MK402 after the launch command did not connect: MK402 starts the kernel on
    its own (no link), so a kernel that does not start (path, licence, look-alike) is told
    apart from a link that does not work. Its version and $ProcessorCount are kept."""
    st = f.state
    f.say("  the launch command could not be tried: starting the kernel on its own (MK402)"
          if untried else "  the launch command did not connect: starting the kernel on its own "
          "(MK402) to see why")
    res = f.run_checks(["MK401", "MK402"], f.remote_options(kernel=st.kernel_arg), Target(st.alias))
    r402 = res["MK402"]
    if r402.status.value == "pass":
        st.kernel_version = str(facts.KERNEL_VERSION_NUMBER.of(r402, "") or st.kernel_version)
        st.processors = int(facts.PROCESSOR_COUNT.of(r402, 1) or 1)
    return res


def cores_of_host(f: Flow) -> int:
    """The parallel-kernels file's kernel count without starting a kernel for it: the
    host's processor cores (mkdoctor.kernel.CORES_SCRIPT), through the setup's session
    (0: unknown)."""
    from mkdoctor.kernel import CORES_SCRIPT, parse_cores

    client = f.session_for(f.remote_options(), Target(f.state.alias))
    done = client.run(CORES_SCRIPT, max(f.opts.timeout, 5)) if client is not None else None
    return parse_cores(done.stdout) if done is not None else 0
