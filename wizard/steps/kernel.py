"""Step 7: the kernel (MK401 finds it; step 9 starts it, MK402 beside MK404; on a cluster
MK601 picks the partition and the kernel starts on a compute node in step 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mkdoctor import facts
from mkdoctor.options import Target
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("The kernel (MK401)")
    a, prev = f.args, st.previous
    given = a.kernel or (prev.kernel if prev else None)
    res = f.run_checks(["MK401"], f.remote_options(kernel=given), Target(st.alias))
    r401 = res["MK401"]
    found = facts.KERNEL_PATH.of(r401)
    installs = facts.KERNEL_INSTALLS.of(r401, []) or []
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
        versions[found] = str(facts.KERNEL_PATH_VERSION.of(r401, ""))
    if a.kernel:
        kernel = a.kernel
    elif len(paths) > 1 and f.ask.interactive:
        choices = [(p, f"{p}  (version {versions.get(p) or 'unknown'})") for p in paths]
        kernel = f.ask.select("Which kernel?", choices, found or paths[0], "--kernel")
    elif paths:
        kernel = found or paths[0]
    elif given:
        kernel = given
    else:
        kernel = f.ask.text("Path of the kernel on the remote host (e.g. "
                               "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel):",
                               None, "--kernel", lambda s: None if s.strip() else "required",
                               safe=False).strip()
    if f.opts.scheduler:  # a cluster: the kernel runs on a compute node, not here
        cluster_partition(f)
        cluster_subkernels(f)
        if kernel != found:  # read as chosen: a module it needs (loaded on the node too)
            r401 = f.run_checks(["MK401"], f.remote_options(kernel=kernel), Target(st.alias))["MK401"]
        st.module = facts.KERNEL_MODULE.of(r401, "")
        st.module_init = facts.KERNEL_MODULE_INIT.of(r401, "")
        if st.module:
            f.say(f"  the kernel is on PATH after: module load {st.module} "
                  "(the launch command loads it on the compute node first)")
        st.kernel = kernel
        st.kernel_version = str(facts.KERNEL_PATH_VERSION.of(r401, "")
                                or (prev.kernel_version if prev and prev.kernel == kernel else ""))
        f.say(f"  kernel {kernel} (on the compute nodes: step 9 starts it there through "
              f"{f.opts.scheduler}, MK601-MK605; not on the login node)")
        return
    # The kernel is read once more only when the choice is not what MK401 found itself
    # (MK401 is then given the chosen path; when it found the kernel, it keeps what it was
    # given: its reading then has the same module, an absolute path would read as plain).
    # It is not started here: step 9 starts it on its own (MK402) at the same time as with
    # the exact launch command (MK404), so that a setup waits for one kernel start.
    st.kernel_arg = given if kernel == found else kernel
    if kernel != found:
        r401 = f.run_checks(["MK401"], f.remote_options(kernel=kernel), Target(st.alias))["MK401"]
    st.module = facts.KERNEL_MODULE.of(r401, "")
    st.module_init = facts.KERNEL_MODULE_INIT.of(r401, "")
    if st.module:
        f.say(f"  the kernel is on PATH after: module load {st.module} "
              f"(the launch command loads it first)")
    st.kernel = kernel
    st.kernel_version = str(facts.KERNEL_PATH_VERSION.of(r401, "")
                            or (prev.kernel_version if prev and prev.kernel == kernel else ""))
    f.say(f"  kernel {kernel}" + (f" (version {st.kernel_version})" if st.kernel_version else "")
          + "; step 9 starts it (MK402, beside the launch command's MK404)")


def cluster_subkernels(f: Flow) -> None:
    """How many parallel subkernels the kernel's job holds slots for (--subkernels; the
    profile's when set up again; 0 by default). MK602 and MK605 then ask Slurm for that
    allocation, and the cluster's parallel-kernels file launches them in the job."""
    from mkdoctor.options import UsageError, slurm_cpus

    if getattr(f.args, "subkernels", None) is not None:
        return

    def valid(text: str):
        try:
            slurm_cpus(text.strip(), "subkernels", lowest=0)
        except UsageError as exc:
            return str(exc)
        return None

    answer = f.ask.text("Parallel subkernels beside the kernel in its job (0 for none):",
                        str(f.opts.subkernels or 0), "--subkernels", valid)
    f.opts.subkernels = slurm_cpus(str(answer).strip(), "--subkernels", lowest=0)


def cluster_partition(f: Flow) -> None:
    """MK601 on the login node: Slurm's commands and the partition. Without --partition,
    the questionnaire offers the cluster's partitions (sinfo's, the default first)."""
    st = f.state
    res = f.run_checks(["MK601"], f.remote_options(), Target(st.alias))
    r = res["MK601"]
    parts = list(facts.PARTITIONS.of(r, []) or [])
    notes = facts.PARTITION_NOTES.of(r, {}) or {}
    usable = [p for p in parts if not str(notes.get(p, "")).startswith("no: ")]
    if not f.opts.partition and usable and f.ask.interactive:
        refused = [f"{p} ({notes[p][4:]})" for p in parts if p not in usable]
        if refused:  # said, not offered: a choice that cannot work is no choice
            f.say("  not offered: " + "; ".join(refused))
        default = facts.PARTITION.of(r) if facts.PARTITION.of(r) in usable else usable[0]
        choices = [(p, p + "".join(f"  ({w})" for w in (
                    "the default" if p == facts.PARTITION.of(r) else "", notes.get(p, "")) if w))
                   for p in usable]
        f.opts.partition = f.ask.select("Which partition?", choices, default, "--partition")
        if f.opts.partition != facts.PARTITION.of(r):
            r = f.run_checks(["MK601"], f.remote_options(), Target(st.alias))["MK601"]
    if r.status.value in ("fail", "error"):
        raise StepFailed(f"MK601: {r.summary}; fix: {r.fix}")
    f.opts.partition = f.opts.partition or facts.PARTITION.of(r, "")
