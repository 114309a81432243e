"""Kernels on a cluster's compute node, through the login node (Slurm).

The launch command the front end runs for a cluster profile is::

    ssh [-F CONFIG] -o ExitOnForwardFailure=yes -R P1:127.0.0.1:P1 -R P2:127.0.0.1:P2 LOGIN \\
        'exec python3 -c RELAY login P1 P2 PREFIX -- SRUN_OPTIONS -- KERNEL -wstp'

* The two ``-R`` forwards are the tunnel mode's: they listen on the login node's
  loopback and lead to the front end's link ports on the laptop.
* On the login node the relay (:mod:`mkdoctor.cluster_relay`, shipped inside the command)
  runs ``srun`` for one task on one node and, in that task, the relay's node side, which
  starts the kernel with a link to two ports of the node's own loopback and carries both
  connections over srun's stdin/stdout. srun's standard I/O is the one path from a compute
  node to the login node that every Slurm cluster has (the nodes' slurmstepd connects
  back to srun on the login node): nothing is needed from the admins — no
  ``GatewayPorts`` (``ssh -R`` on the login node binds loopback, out of the node's
  reach), no ssh into the node (``pam_slurm_adopt`` or none at all), no listener on the
  login node's cluster address (which every user of the cluster could reach).
* The allocation ends with the kernel: srun created it, so the job is over when its one
  task (the node relay) exits; the node relay ends the kernel when the link closes,
  when srun's stdin closes or on SIGTERM; the login relay runs ``scancel`` when its ssh
  session ends (the front end quit or killed ssh, the connection dropped, ``kill -9`` of
  the local ssh) or on SIGHUP/SIGTERM/SIGINT. srun runs with ``--kill-on-bad-exit=1``.

Where the login node refuses port forwarding (``AllowTcpForwarding no``), ``via="stdio"``
(``--cluster-link stdio``) runs a relay on the laptop too: ``PYTHON -c RELAY laptop P1 P2
-- ssh LOGIN 'exec python3 -c RELAY pipe …'``, the frames go on through the ssh session
itself, and the laptop relay connects them to the front end's ports. PYTHON is mkdoctor's
own interpreter (the launch command is then tied to this installation).

The quoting: the local shell (the front end runs the command with a POSIX shell) sees
the remote command as one word; the login node's shell sees each relay/srun/kernel
argument as one word (:func:`shlex.quote`); srun passes its argv to the task without a
shell, so a partition, account or kernel path reaches Slurm and ``execve`` as it was typed.
Slurm facts: ``srun`` options ``--partition``, ``--time``, ``--cpus-per-task``,
``--account``, ``--licenses``, ``--kill-on-bad-exit``, ``--unbuffered``, ``--immediate``
and ``--job-name`` (slurm.schedmd.com/srun.html); ``scancel --name --user``
(slurm.schedmd.com/scancel.html); ``squeue`` reasons (slurm.schedmd.com/squeue.html,
"JOB REASON CODES").
"""

from __future__ import annotations

import base64
import functools
import re
import shlex
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from mkdoctor.fileio import read_or_empty
from mkdoctor.frontend import wl_comment, wl_string
from mkdoctor.launch import (LaunchSpec, _join, kernel_words, link_flag, mlopen_arguments,
                             quote_readable)

SCHEDULERS = ("slurm",)
SLURM_COMMANDS = ("sinfo", "srun", "squeue", "scancel")
JOB_PREFIX = "mkdoctor"


@dataclass(frozen=True)
class ClusterSpec:
    """Everything the cluster launch command depends on."""

    destination: str  # the login node: the managed Host alias mk-NAME
    kernel: str  # the kernel path on the compute nodes
    link_ports: tuple[int, int]
    kernel_version: str = ""
    partition: str = ""
    time: str = ""  # Slurm time limit, e.g. 01:00:00
    cpus: int = 0  # --cpus-per-task; 0: Slurm's default
    account: str = ""
    licenses: str = ""  # e.g. mathematica:1 at sites that meter licence tokens
    ssh_config: Optional[str] = None
    ssh_binary: str = "ssh"
    job_prefix: str = JOB_PREFIX
    subkernels: int = 0  # extra task slots in the same job for parallel subkernels
    # "forward": ssh -R to the login node (the default); "stdio": no forwarding at all, the
    # frames go on through the ssh session to a relay on the laptop (login nodes with
    # AllowTcpForwarding off), run by ``laptop_python`` (mkdoctor's own interpreter)
    via: str = "forward"
    laptop_python: str = ""
    # the kernel is on PATH only after ``module load MODULE`` (MK401 on the login node):
    # loaded on the node before the kernel starts, as the one-host launch command does
    module: str = ""
    module_init: str = ""


@functools.lru_cache(maxsize=1)
def relay_blob() -> str:
    """The relay's source without docstrings and comments (:func:`ast.unparse`),
    zlib-compressed, base64: what the launch command carries."""
    import ast

    tree = ast.parse(Path(__file__).with_name("cluster_relay.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    source = ast.unparse(tree).encode()
    return base64.b64encode(zlib.compress(source, 9)).decode()


def relay_program() -> str:
    """The ``python3 -c`` program: unpacks and runs the relay (no file on the cluster)."""
    from mkdoctor.cluster_relay import STUB

    return STUB % relay_blob()


def srun_args(spec: ClusterSpec) -> list[str]:
    """The allocation the launch command asks for (one task on one node)."""
    if spec.subkernels:
        # Task 0 is the relay and the kernel; the others hold slots for subkernels
        # (cluster_relay.hold). --input=0: the link's frames go to task 0 only; --wait: the
        # holders end a few seconds after task 0, so the job ends with the kernel.
        args = [f"--ntasks={int(spec.subkernels) + 1}", "--input=0", "--wait=5"]
    else:
        args = ["--nodes=1", "--ntasks=1"]
    args += ["--kill-on-bad-exit=1", "--unbuffered"]
    if spec.partition:
        args.append(f"--partition={spec.partition}")
    if spec.time:
        args.append(f"--time={spec.time}")
    if spec.cpus:
        args.append(f"--cpus-per-task={int(spec.cpus)}")
    if spec.account:
        args.append(f"--account={spec.account}")
    if spec.licenses:
        args.append(f"--licenses={spec.licenses}")
    return args


def _refuse(spec: ClusterSpec) -> None:
    for what, value in (("destination", spec.destination), ("kernel path", spec.kernel),
                        ("partition", spec.partition), ("account", spec.account),
                        ("time", spec.time), ("licenses", spec.licenses),
                        ("ssh config path", spec.ssh_config or "")):
        if "`" in value:
            raise ValueError(f"{value!r}: a {what} with a backquote cannot go into the launch "
                             "command (the front end treats `...` as a placeholder)")
        if re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError(f"{value!r}: a {what} with control characters")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", spec.job_prefix):
        raise ValueError(f"{spec.job_prefix!r}: not a usable job name prefix")


VIAS = ("forward", "stdio")


def remote_words(spec: ClusterSpec) -> list[str]:
    """The command the login node's shell runs, as words."""
    _refuse(spec)
    if spec.via not in VIAS:
        raise ValueError(f"{spec.via!r}: the link goes via forward or stdio")
    p1, p2 = spec.link_ports
    role = ["login", str(p1), str(p2)] if spec.via == "forward" else ["pipe"]
    return ["exec", "python3", "-c", relay_program(), *role,
            spec.job_prefix, "--", *srun_args(spec), "--", *kernel_words(spec),
            link_flag(spec.kernel_version)]


def ssh_argv(spec: ClusterSpec) -> list[str]:
    """The local command line of the launch command."""
    _refuse(spec)
    dest = spec.destination
    if not dest or dest.startswith("-") or re.search(r"[\s\x00-\x1f\x7f]", dest):
        raise ValueError(f"{spec.destination!r}: not a usable ssh destination")
    argv = [spec.ssh_binary]
    if spec.ssh_config:
        argv += ["-F", spec.ssh_config]
    if spec.via == "forward":
        argv += ["-o", "ExitOnForwardFailure=yes"]
        for p in spec.link_ports:
            argv += ["-R", f"{p}:127.0.0.1:{p}"]
    argv += [dest, " ".join(shlex.quote(w) for w in remote_words(spec))]
    if spec.via == "stdio":
        import sys

        python = spec.laptop_python or sys.executable
        if "`" in python or re.search(r"[\x00-\x1f\x7f]", python):
            raise ValueError(f"{python!r}: not a usable Python path for the launch command")
        p1, p2 = spec.link_ports
        argv = [python, "-c", relay_program(), "laptop", str(p1), str(p2), "--", *argv]
    return argv


def launch_command(spec) -> str:
    """The front end's "Launch command" for a cluster profile: a :class:`ClusterSpec`, or
    a saved profile (:func:`spec_from_profile`)."""
    if not isinstance(spec, ClusterSpec):
        spec = spec_from_profile(spec)
    return _join(ssh_argv(spec), quote_readable)


def mlopen(spec) -> str:
    """The "Arguments to MLOpen" field: the front end listens on both ports (tunnel form)."""
    if not isinstance(spec, ClusterSpec):
        spec = spec_from_profile(spec)
    return mlopen_arguments(LaunchSpec(destination=spec.destination, kernel=spec.kernel,
                                       mode="tunnel", link_ports=spec.link_ports))


def spec_from_profile(profile, destination: Optional[str] = None) -> ClusterSpec:
    """The spec a saved profile describes (its ``host`` is the login node's alias)."""
    return ClusterSpec(
        destination=destination or profile.host, kernel=profile.kernel,
        link_ports=tuple(profile.link_ports), kernel_version=profile.kernel_version or "",
        partition=getattr(profile, "partition", "") or "", time=getattr(profile, "time", "") or "",
        cpus=int(getattr(profile, "cpus", 0) or 0), account=getattr(profile, "account", "") or "",
        licenses=getattr(profile, "licenses", "") or "",
        ssh_config=profile.ssh_config or None,
        via=getattr(profile, "cluster_link", "") or "forward",
        subkernels=int(getattr(profile, "subkernels", 0) or 0),
        laptop_python=getattr(profile, "laptop_python", "") or "",
        module=getattr(profile, "module", "") or "",
        module_init=getattr(profile, "module_init", "") or "")


def is_cluster_command(command: str) -> bool:
    """True if a launch command is this module's (it carries the relay's login role)."""
    return "mkdoctor-relay" in command


# ------------------------------------------------------------------ parallel kernels


def parallel_kernels_file(kernel: str, kernel_version: str = "", form: str = "srun",
                          profile: str = "", module: str = "", module_init: str = "",
                          subkernels: int = 0) -> str:
    """A Wolfram Language file that launches parallel subkernels on the nodes of the
    cluster kernel's own job. It is evaluated *in the cluster kernel* (the master kernel
    the front end started with a launch command built with ``subkernels=N``): that job
    holds N extra task slots (:func:`srun_args`), so the subkernels need no allocation of
    their own and end with the job — none can outlive the master kernel's allocation.

    ``form="srun"`` (every version; what setup writes): ``Needs["SubKernels`RemoteKernels`"]``
    and ``LaunchKernels[{RemoteMachine[node, template, k], ...}]``; RemoteMachine's command
    template fills in `` `1` `` (the host), `` `2` `` (the link name) and `` `4` `` (the link
    protocol options) (reference.wolfram.com/language/SubKernels/ref/RemoteMachine.html;
    the classic ``-subkernel -noinit`` template). Here the template is ``srun --jobid=JOB
    --overlap --nodes=1 --ntasks=1 -w `1` KERNEL -wstp -linkmode Connect `4` -linkname
    '`2`' -subkernel -noinit``: each subkernel is a step of the job on that node, and
    connects straight to the master kernel over the cluster network. A kernel that is on
    PATH only after ``module load`` is started through :func:`kernel_words` (srun runs
    its argv without a shell, so the ``sh -c`` prefix loads the module on the node).

    ``form="ssh"`` (13.1 and later, and only where the cluster lets you ssh into the nodes
    of your own job, e.g. pam_slurm_adopt): ``LaunchKernels[{"ssh://node/KERNEL?k", ...}]``
    (the URL form of LaunchKernels: reference.wolfram.com/language/ref/LaunchKernels.html).
    A URL names an executable only, so a kernel that needs a module has no ssh form
    (ValueError). ``LaunchKernels[{ker1, ker2, ...}]`` launches each (same page);
    ``CloseKernels[]`` ends them (reference.wolfram.com/language/ref/CloseKernels.html).
    The node list and the slots per node come from Slurm's
    ``SLURM_JOB_NODELIST``/``SLURM_TASKS_PER_NODE`` (slurm.schedmd.com/srun.html, OUTPUT
    ENVIRONMENT VARIABLES) and ``scontrol show hostnames`` (slurm.schedmd.com/scontrol.html),
    at the time the file is evaluated: the file holds no node names or counts, and says
    so when the job has no slots beyond the master kernel's.
    """
    from types import SimpleNamespace
    from urllib.parse import quote

    if form not in ("srun", "ssh"):
        raise ValueError(f"{form!r}: the form is srun or ssh")
    if "`" in kernel or re.search(r"[\x00-\x1f\x7f]", kernel) or not kernel:
        raise ValueError(f"{kernel!r}: not a kernel path that can go into the file")
    if form == "ssh" and module:
        raise ValueError(f"the kernel needs module load {module}: an ssh:// URL cannot load it "
                         "(use the srun form)")
    words = kernel_words(SimpleNamespace(kernel=kernel, module=module, module_init=module_init))
    flag = link_flag(kernel_version)
    again = f"mkdoctor setup --profile {profile} --subkernels N" if profile else \
        "mkdoctor setup --subkernels N"
    head = (f"(* Written by mkdoctor{' (profile ' + wl_comment(profile) + ')' if profile else ''}: "
            "parallel subkernels on the nodes of this cluster kernel's Slurm job.\n"
            "   Evaluate it in the cluster kernel (started with subkernel slots); the subkernels\n"
            "   are steps of the same job and end with it.\n"
            + (f"   The launch command asks Slurm for {subkernels} subkernel slot(s) beside the kernel"
               f"{' (module load ' + module + ' first on each node)' if module else ''}.\n"
               if subkernels else
               f"   The launch command asks for no subkernel slots: set them with\n   {again}.\n")
            + "*)\n")
    common = """job = Environment["SLURM_JOB_ID"];
If[! StringQ[job], Print["not in a Slurm job: evaluate this in the cluster kernel"]; Abort[]];
nodes = ReadList["!scontrol show hostnames \\"$SLURM_JOB_NODELIST\\"", String];
perNode = Flatten[StringCases[StringSplit[Environment["SLURM_TASKS_PER_NODE"], ","],
   {n : DigitCharacter .. ~~ "(x" ~~ r : DigitCharacter .. ~~ ")" :>
      ConstantArray[ToExpression[n], ToExpression[r]],
    n : DigitCharacter .. :> {ToExpression[n]}}]];
slots = Select[Transpose[{nodes, perNode - UnitVector[Length[nodes], 1]}], #[[2]] > 0 &];
""" + f"""If[slots === {{}}, Print[{wl_string("this job has no subkernel slots: " + again)}]; Abort[]];
"""
    if form == "srun":
        step = " ".join(["srun", "--jobid=\x01", "--overlap", "--nodes=1", "--ntasks=1", "-w", "`1`",
                         "--kill-on-bad-exit=1", *(shlex.quote(w) for w in words), flag, "-linkmode",
                         "Connect", "`4`", "-linkname", "'`2`'", "-subkernel", "-noinit"])
        template = wl_string(step).replace("\\:0001", '" <> job <> "')  # \x01 marks the job
        body = ('Needs["SubKernels`RemoteKernels`"];\n' + common +
                f"template = {template};\n"
                "kernels = LaunchKernels[RemoteMachine[#[[1]], template, #[[2]]] & /@ slots];\n")
    else:
        path = quote(kernel, safe="/")
        body = (common + "If[$VersionNumber < 13.1, Print[\"the ssh:// form needs 13.1 or later\"]; Abort[]];\n"
                f"kernels = LaunchKernels[(\"ssh://\" <> #[[1]] <> {wl_string(path)} <> \"?\" <> "
                "ToString[#[[2]]]) & /@ slots];\n")
    return head + body + ('Print[Length[kernels], " subkernels on ", '
                          'Union[ParallelEvaluate[$MachineName]]];\n'
                          "(* when done: CloseKernels[] (the job ends with the cluster kernel) *)\n")


def parallel_template(text: str, job: str = "JOB") -> str:
    """The RemoteMachine command template of a file :func:`parallel_kernels_file` wrote
    (srun form), as the cluster kernel builds it: ``job`` where the file joins in the job's
    ID. ValueError when the file holds no such template."""
    from mkdoctor.frontend import STRING_RE, parse_wl_string

    lit = STRING_RE.pattern
    m = re.search(rf"^template = ({lit}(?: <> job <> {lit})*);$", text, re.M)
    if not m:
        raise ValueError("no srun template (template = \"srun ...\")")
    return job.join(parse_wl_string(p) for p in re.findall(lit, m.group(1)))


def read_parallel_kernels(text: str) -> tuple[str, str, str, str]:
    """(kernel, module, module_init, link flag) of the srun template in a file that
    :func:`parallel_kernels_file` wrote (MK501 compares them with the profile).
    ValueError when the file holds no such template."""
    from mkdoctor.launch import read_kernel_words

    line = parallel_template(text)
    try:
        words = shlex.split(line)
        start = words.index("--kill-on-bad-exit=1") + 1
        end = next(i for i in range(start, len(words)) if words[i] in ("-wstp", "-mathlink"))
    except (ValueError, StopIteration):
        raise ValueError("the srun template has no kernel between srun's options and -wstp") from None
    kernel, module, module_init = read_kernel_words(words[start:end])
    return kernel, module, module_init, words[end]


# ------------------------------------------------------------------ for the MK6xx checks


def only_cluster(ctx):
    """Precondition: skip unless this is a cluster run (``--scheduler``, or a profile's)."""
    if not getattr(ctx.options, "scheduler", None):
        return ("not a cluster profile (the kernel runs on the host itself)",
                "for a cluster: mkdoctor --scheduler slurm --host LOGIN-NODE --partition NAME")
    return None


def not_cluster(instead: str):
    """Precondition for the single-host checks that a cluster check replaces."""

    def pre(ctx):
        if getattr(ctx.options, "scheduler", None):
            return (f"not applicable to a cluster profile ({instead})",
                    f"nothing to do: {instead.split()[0]} checks it")
        return None

    pre.__name__ = "not_cluster"
    return pre


def spec_for_run(ctx, kernel: Optional[str] = None) -> ClusterSpec:
    """The cluster spec this run describes: the partition MK601 resolved, the options'
    allocation, the destination as the run reaches it."""
    o = ctx.options
    t = ctx.target
    prof = o.profile
    dest = (prof.host if prof is not None else (f"{t.user}@{t.host}" if t.user else t.host))
    return ClusterSpec(
        destination=dest, kernel=kernel or o.kernel or ctx.fact("MK401", "kernel") or "",
        link_ports=ctx.link_ports,
        kernel_version=str(ctx.fact("MK401", "version") or ""),
        partition=o.partition or ctx.fact("MK601", "partition") or "",
        time=o.time_limit, cpus=o.cpus, account=o.account, licenses=o.licenses,
        subkernels=int(getattr(o, "subkernels", 0) or 0),
        ssh_config=str(o.ssh_config) if o.ssh_config else None,
        via=getattr(o, "cluster_link", "") or "forward",
        module=(prof.module if prof is not None else ctx.fact("MK401", "module")) or "",
        module_init=(prof.module_init if prof is not None else ctx.fact("MK401", "module_init")) or "")


def check_job_name() -> str:
    import secrets

    return f"{JOB_PREFIX}-check-{secrets.token_hex(4)}"


CANCEL_STEP_S = 3.0  # the cancel at the run's deadline (or interrupt): one remote command


@contextmanager
def cancelled_at_deadline(ctx, name: str) -> Iterator[None]:  # noqa: ANN001 - a Context
    """While a check's test job ``name`` may be queued or running: if the run's deadline
    passes first (or the run is interrupted), the job is cancelled on the login node at
    once (``scancel --name --user``), before the run's programs are killed. The check's
    own script would cancel it, but it goes with our ssh session and its srun would hold
    the allocation until its ``timeout`` (up to --kernel-timeout)."""
    script = f'scancel --name {shlex.quote(name)} --user "$(id -un)"'
    remove = ctx.at_deadline(lambda: ctx.ssh.run(script, CANCEL_STEP_S))
    try:
        yield
    finally:
        remove()


# Each remote script below is a POSIX sh script; every value in it went through
# shlex.quote. "timeout" ends srun (SIGTERM: srun then cancels its job), and the script
# cancels the job by name whatever happened, so a check never leaves a job behind.

def allocation_script(srun: list[str], name: str, limit: float) -> str:
    """MK602: ask for the allocation, watch ``squeue`` while it waits, release it."""
    q = shlex.quote
    args = " ".join(q(a) for a in srun)
    secs = max(2, int(limit))
    return f"""\
n={q(name)}; u=$(id -un); err=$(mktemp 2>/dev/null || echo /tmp/mkd-alloc-$$)
start=$(date +%s)
timeout -k 3 {secs} srun --job-name="$n" {args} hostname >"$err.out" 2>"$err" </dev/null &
sp=$!
last=""
while kill -0 "$sp" 2>/dev/null; do
  l=$(squeue -h -u "$u" -n "$n" -o '%i|%T|%r|%N' 2>/dev/null | head -n 1)
  [ -n "$l" ] && last=$l
  sleep 0.3
done
wait "$sp"; rc=$?
echo "MKD-RC $rc $(( $(date +%s) - start ))"
echo "MKD-LAST $last"
echo "MKD-NODE $(head -n 1 "$err.out" 2>/dev/null)"
sed 's/^/MKD-ERR /' "$err" 2>/dev/null | tail -n 8
scancel --name "$n" --user "$u" 2>/dev/null
i=0; left=x
while [ $i -lt 20 ]; do
  left=$(squeue -h -u "$u" -n "$n" -o '%i|%T' 2>/dev/null)
  [ -z "$left" ] && break
  sleep 0.5; i=$((i+1))
done
echo "MKD-LEFT $left"
rm -f "$err" "$err.out"
"""


def node_kernel_script(srun: list[str], name: str, kernel: str, args: list[str],
                       limit: float, prefix: list[str] = ()) -> str:
    """MK603: on a compute node: its name, whether the kernel path exists there, then the
    kernel itself (-noprompt -run EXPR), ended after ``limit`` seconds. ``prefix``: the
    words that load a module first (:func:`mkdoctor.launch.kernel_words`)."""
    q = shlex.quote
    secs = max(2, int(limit))
    inner = (f'echo "MKD-NODE $(hostname) ${{SLURM_JOB_ID:-?}}"; '
             f'if [ ! -e {q(kernel)} ]; then echo MKD-NOKERNEL; exit 127; fi; '
             f'if [ ! -x {q(kernel)} ]; then echo MKD-NOEXEC; exit 126; fi; '
             f'exec timeout -k 2 {secs} ' + " ".join(q(a) for a in [*prefix, kernel, *args]))
    srun_args = " ".join(q(a) for a in srun)
    return f"""\
n={q(name)}; u=$(id -un)
timeout -k 3 {secs + 15} srun --job-name="$n" {srun_args} /bin/sh -c {q(inner)} </dev/null
rc=$?
scancel --name "$n" --user "$u" 2>/dev/null
exit $rc
"""


UNRESOLVABLE = {
    # squeue reasons that do not go away by waiting (slurm.schedmd.com/squeue.html,
    # JOB REASON CODES; resource_limits.html for the Assoc*/QOS* limits)
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "the time limit is longer than the partition's maximum",
    "ReqNodeNotAvail": "the requested nodes are not available (down, drained or reserved)",
    "InvalidAccount": "the account is not valid",
    "InvalidQOS": "the QOS is not valid",
    "AccountNotAllowed": "the account may not use this partition",
    "QOSMaxWallDurationPerJobLimit": "the time limit is longer than the QOS allows",
    "AssocMaxWallDurationPerJobLimit": "the time limit is longer than the association allows",
    "AssocGrpCPULimit": "the account's CPU limit is reached",
    "AssocMaxJobsLimit": "the account's limit of running jobs is reached",
    "Licenses": "the licence tokens (--licenses) are all in use",
    "JobHeldUser": "the job is held",
    "JobHeldAdmin": "an administrator holds the job",
}


@dataclass
class LaunchRun:
    """What :func:`run_launch` saw."""

    connected: bool = False
    data_ok: bool = False
    ports_connected: tuple = ()
    node: str = ""
    job: str = ""
    exit_code: Optional[int] = None
    exited_after_close: bool = False
    left: str = ""  # the job still in the queue after the link closed
    output: str = ""
    argv: tuple = ()


def fresh_connection_argv(local: list[str], ssh_config: Optional[str], port: Optional[int]) -> list[str]:
    """The launch command's argv as the front end runs it, plus, right after its ``ssh``
    (the first word, or the laptop relay's command after ``--``), BatchMode=yes (no
    prompt can hang a check) and ControlPath=none (a connection of its own, as the front
    end's: the login relay's watchdog is its ssh session)."""
    at = 0
    if "laptop" in local and "--" in local:
        at = local.index("--", local.index("laptop")) + 1
    ssh_part = local[at:]
    extra = ["-o", "BatchMode=yes", "-o", "ControlPath=none", "-o", "ControlMaster=no"]
    if ssh_config and "-F" not in ssh_part[:-1]:
        extra = ["-F", ssh_config] + extra
    if port and "-p" not in ssh_part[:-1]:
        extra += ["-p", str(port)]
    return [*local[:at], ssh_part[0], *extra, *ssh_part[1:]]


def run_launch(ctx, command: str, want: Optional[bytes] = None) -> LaunchRun:
    """Run a cluster launch command as the front end does (listening on both ports,
    ``sh -c``, stdin /dev/null), wait for both connections (and ``want`` on each), close
    the link, and check that the command exits and its job leaves the queue."""
    import os
    import tempfile
    import time

    from mkdoctor.listen import LinkListener

    out = LaunchRun()
    ports = ctx.link_ports
    local = shlex.split(command)
    argv = fresh_connection_argv(local, str(ctx.options.ssh_config) if ctx.options.ssh_config else None,
                                 ctx.target.port)
    out.argv = tuple(argv)
    listener = LinkListener("127.0.0.1", ports).open()
    tmp = tempfile.mkdtemp(prefix="mkd-cluster-")
    log = os.path.join(tmp, "launch.log")
    proc = None
    limit = min(ctx.options.kernel_timeout, max(2.0, ctx.remaining() - 30))
    try:
        proc = ctx.runner.spawn(["sh", "-c", shlex.join(argv)], stdout_path=log)
        end = time.monotonic() + limit
        while proc is not None and time.monotonic() < end and proc.poll() is None:
            if listener.connected_all(0.2):
                break
        out.connected = listener.connected_all(0.3)
        if out.connected and want is not None:
            out.data_ok = listener.received_all({p: want for p in ports}, min(10.0, limit))
        out.ports_connected = tuple(p for p in ports if listener.states[p].peers)
        text = read_or_empty(log)
        m = re.search(r"mkdoctor-relay: kernel on (\S+) (\S+)", text)
        if m:
            out.node, out.job = m.group(1), m.group(2)
        listener.close_connections()  # the link ends: the kernel must exit, the job end
        if proc is not None:
            try:
                proc.wait(timeout=20)
                out.exited_after_close = True
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                out.exited_after_close = False
            out.exit_code = ctx.runner.stop(proc, grace=0.1)
            proc = None
    finally:
        listener.close()
        if proc is not None and proc.poll() is None:
            ctx.runner.stop(proc)
        out.output = read_or_empty(log)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if not out.job:
        m = re.search(r"mkdoctor-relay: kernel on (\S+) (\S+)", out.output)
        if m:
            out.node, out.job = m.group(1), m.group(2)
    if out.job.isdigit():
        out.left = job_left(ctx, out.job)
    return out


def job_left(ctx, job: str, wait: float = 20.0) -> str:
    """``squeue`` for ``job`` until it is gone (or ``wait`` passes); what is left."""
    script = (f"i=0; while [ $i -lt {int(wait * 2)} ]; do l=$(squeue -h -j {shlex.quote(job)} "
              "-t PD,R,S,CG,CF -o '%i %T %j' 2>/dev/null); [ -z \"$l\" ] && exit 0; sleep 0.5; i=$((i+1)); done; "
              f"echo \"$l\"; scancel {shlex.quote(job)} 2>/dev/null")
    done = ctx.ssh.run(script, ctx.step_timeout(wait + 10))
    return done.stdout.strip()


