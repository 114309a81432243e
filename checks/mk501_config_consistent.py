"""MK501 config-consistent: the written configuration agrees with the saved profile.

``mkdoctor setup`` writes a profile, a managed ``Host mk-NAME`` block in the ssh config
and the front-end files (the two *Advanced Options* strings, a .wl file that installs
them). They drift apart when somebody edits one of them by hand, and a few edits are
known traps that break the remote kernel in confusing ways:

- quotes around `` `linkname` `` in the launch command: the front end substitutes the
  placeholder and the remote shell then passes the quotes on, so the kernel gets a link
  name it cannot parse (docs/setup.md, "Known traps");
- ``localhost`` in a LinkName: it may resolve to ``::1`` first, where no forward listens
  (tunnel mode forwards 127.0.0.1 only);
- a launch command ("LoginScript") that does not use the managed alias ``mk-NAME``: the
  front end then uses other ssh settings than the ones mkdoctor tested;
- link ports in the launch command or the Arguments to MLOpen that differ from the
  profile (or from ``--link-ports``): the kernel connects where nobody listens;
- a parallel-kernels file that launches another host, port, user, key or kernel than the
  profile's, or a kernel count that is not the one its own header states (the profile
  does not record the count); for a cluster profile, subkernels whose srun template
  starts another kernel, module or link flag than the profile's.

The strings are rebuilt from the profile with :mod:`mkdoctor.launch` (the same code that
wrote them) and compared; ``ssh -G`` on the alias shows whether an earlier block of the
ssh config overrides the managed one (ssh uses the first value it finds, ssh_config(5)).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from mkdoctor.model import Check, Result, failed, passed


def no_profile(ctx) -> Optional[tuple[str, str]]:
    if ctx.options.profile is None:
        return ("no profile loaded (use --profile NAME, or run mkdoctor setup first)",
                "mkdoctor --profile NAME, or mkdoctor setup to write one")
    return None


def expected_strings(prof) -> tuple[str, str]:
    from mkdoctor.launch import LaunchSpec, launch_command, mlopen_arguments

    if getattr(prof, "scheduler", ""):  # a cluster profile: the srun relay's command
        from mkdoctor import cluster

        return cluster.launch_command(prof), cluster.mlopen(prof)

    spec = LaunchSpec(
        destination=prof.host, kernel=prof.kernel, mode=prof.mode,
        link_ports=(int(prof.link_ports[0]), int(prof.link_ports[1])),
        kernel_version=prof.kernel_version, link_host=prof.link_host or None,
        ssh_config=prof.ssh_config or None,
        module=getattr(prof, "module", "") or "", module_init=getattr(prof, "module_init", "") or "",
    )
    return launch_command(spec), mlopen_arguments(spec)


def string_traps(label: str, launch: str, mlopen: str, prof) -> list[str]:
    """Known traps in a pair of front-end strings (``label`` says where they were read)."""
    from mkdoctor.launch import split_launch, ssh_part, substitute

    problems: list[str] = []
    if re.search(r"""["']`linkname`["']""", launch):
        problems.append(f"{label}: quotes around `linkname` in the launch command")
    for what, text in (("launch command", launch), ("Arguments to MLOpen", mlopen)):
        if re.search(r"-LinkName\s+\S*localhost", text, re.IGNORECASE):
            problems.append(f"{label}: 'localhost' in the LinkName of the {what} (use 127.0.0.1)")
    ports = [int(p) for p in prof.link_ports]
    names = re.findall(r"-LinkName\s+(\S+)", mlopen)
    got = sorted({int(p) for n in names for p in re.findall(r"(\d+)@", n)})
    if got and got != sorted(ports):
        problems.append(f"{label}: Arguments to MLOpen use ports {got}, the profile {ports}")
    try:
        local, remote = split_launch(substitute(launch, "1@127.0.0.1,2@127.0.0.1", "127.0.0.1"))
    except ValueError as exc:
        return problems + [f"{label}: the launch command does not parse as a shell command ({exc})"]
    dest = _destination(ssh_part(local))  # after an env prefix (launch.py)
    if dest != prof.host:
        problems.append(f"{label}: the launch command connects to {dest!r}, not the managed alias "
                        f"{prof.host!r}")
    forwards = [local[i + 1] for i, a in enumerate(local[:-1]) if a == "-R"]
    if prof.mode == "tunnel":
        want = [f"{p}:127.0.0.1:{p}" for p in ports]
        if sorted(forwards) != sorted(want):
            problems.append(f"{label}: the launch command forwards {forwards or 'nothing'}, the "
                            f"profile's ports need {want}")
        if "-LinkName" in remote:
            name = remote[remote.index("-LinkName") + 1] if remote.index("-LinkName") + 1 < len(remote) else ""
            rports = sorted(int(p) for p in re.findall(r"(\d+)@", name))
            if rports != sorted(ports):
                problems.append(f"{label}: the kernel's LinkName uses ports {rports}, the profile {ports}")
    return problems


def _destination(argv: list[str]) -> str:
    """The ssh destination in a local ssh argv (options with an argument skipped)."""
    with_arg = set("BbcDEeFIiJLlmOoPpQRSWw")
    i = 1
    while i < len(argv) - 1:
        a = argv[i]
        if a == "--":
            return argv[i + 1]
        if a.startswith("-") and len(a) >= 2:
            if a[1] in with_arg and len(a) == 2:
                i += 2
                continue
            i += 1
            continue
        return a
    return ""


def inspect(prof, ssh_g: Optional[dict[str, str]] = None) -> list[str]:
    """Every disagreement between the profile and what was written. ``ssh_g``: the
    effective settings of the alias (``ssh -G``), when available."""
    from mkdoctor.openssh import client_config as sshconfig
    from mkdoctor import frontend as wl

    problems: list[str] = []
    try:
        want_launch, want_mlopen = expected_strings(prof)
    except ValueError as exc:  # e.g. a hand-edited kernel path with a backquote
        want_launch = want_mlopen = None
        problems.append(f"profile: its settings make no launch command ({exc})")
    if want_launch is not None and (prof.launch_command != want_launch
                                    or prof.mlopen_arguments != want_mlopen):
        problems.append("profile: the saved front-end strings do not match its settings "
                        "(host, kernel, mode, ports)")
    problems += string_traps("profile", prof.launch_command, prof.mlopen_arguments, prof)

    files = [Path(f).expanduser() for f in (prof.files or [])]
    if not files:
        problems.append("profile: it lists no written files")
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            problems.append(f"{path}: missing")
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc.strerror})")
            continue
        name = path.name
        if name.endswith("-kernel-configuration.txt"):
            lines = text.splitlines()
            launch = _after(lines, "Launch command:")
            mlopen = _after(lines, "Arguments to MLOpen:")
            if launch != prof.launch_command or mlopen != prof.mlopen_arguments:
                problems.append(f"{path}: the front-end strings differ from the profile")
            if launch is not None and mlopen is not None:
                problems += string_traps(str(path), launch, mlopen, prof)
        elif name.endswith("-install-kernel.wl"):
            launch = wl.find_rule(text, "LoginScript")
            mlopen = wl.find_rule(text, "MLOpenArguments")
            if launch != prof.launch_command or mlopen != prof.mlopen_arguments:
                problems.append(f"{path}: LoginScript/MLOpenArguments differ from the profile")
            if launch is not None and mlopen is not None:
                problems += string_traps(str(path), launch, mlopen, prof)
        elif name.endswith("-parallel-kernels.wl"):
            problems += parallel_problems(str(path), text, prof)
        elif name.endswith("-check-link.nb"):  # the verification notebook: its evaluator
            from mkdoctor.frontend import wl_string

            if f"Evaluator -> {wl_string(prof.name)}" not in text:
                problems.append(f"{path}: the notebook is not evaluated by the kernel {prof.name}")
        else:  # the ssh config
            try:
                block = sshconfig.parse_block(text, prof.host)
            except Exception as exc:  # noqa: BLE001 - UsageError: damaged markers
                problems.append(f"{path}: {exc}")
                continue
            if block is None:
                problems.append(f"{path}: the managed Host {prof.host} block is missing")
                continue
            want = {"hostname": prof.hostname, "user": prof.user, "port": str(prof.port),
                    "identityfile": prof.identity, "identitiesonly": "yes",
                    "exitonforwardfailure": "yes"}
            for key, value in want.items():
                if value and block.get(key) != value:
                    problems.append(f"{path}: Host {prof.host} has {key} {block.get(key)!r}, the "
                                    f"profile {value!r}")
    if ssh_g:
        for key, value in (("hostname", prof.hostname), ("user", prof.user), ("port", str(prof.port))):
            got = ssh_g.get(key)
            if value and got is not None and got != value:
                problems.append(f"ssh -G {prof.host}: {key} is {got!r}, the managed block says "
                                f"{value!r} (an earlier line of the ssh config overrides it)")
    return problems


def parallel_problems(label: str, text: str, prof) -> list[str]:
    """The parallel-kernels file against the launch the profile makes (same code as setup)."""
    from mkdoctor import frontend as wl

    if getattr(prof, "scheduler", ""):
        return cluster_parallel_problems(label, text, prof)
    try:
        got = wl.read_parallel(text)
        want = wl.parallel_launch(alias=prof.host, user=prof.user, hostname=prof.hostname,
                                  port=int(prof.port), kernel=prof.kernel,
                                  kernel_version=prof.kernel_version, count=got.count,
                                  identity=prof.identity,
                                  ssh_config=wl.parallel_ssh_config(prof),
                                  module=getattr(prof, "module", "") or "",
                                  module_init=getattr(prof, "module_init", "") or "")
    except ValueError as exc:
        return [f"{label}: cannot read its parallel-kernels launch ({exc})"]
    if got.form != want.form:
        kinds = {"url": "an ssh:// URL (13.1 and later)", "remote-machine": "RemoteMachine (before 13.1)"}
        return [f"{label}: launches with {kinds[got.form]}, the profile's kernel version "
                f"{prof.kernel_version or 'unknown'} needs {kinds[want.form]}"]
    problems = []
    for field, what in (("host", "host"), ("user", "user"), ("port", "port"), ("kernel", "kernel"),
                        ("identity", "SSHIdentity"), ("ssh_config", "ssh config"),
                        ("module", "module"), ("module_init", "module init script")):
        g, w = getattr(got, field), getattr(want, field)
        if g != w:
            problems.append(f"{label}: the parallel kernels use {what} {g!r}, the profile {w!r}")
    stated = re.search(r"(\d+) processor\(s\)", text)
    if got.count < 1 or (stated and int(stated.group(1)) != got.count):
        problems.append(f"{label}: launches {got.count} parallel kernel(s), its header says "
                        f"{stated.group(1) if stated else 'nothing'}")
    return problems


def cluster_parallel_problems(label: str, text: str, prof) -> list[str]:
    """A cluster profile's file (subkernels as steps of the kernel's job): its srun
    template starts the profile's kernel, with its module and link flag."""
    from mkdoctor import cluster
    from mkdoctor.launch import link_flag

    try:
        kernel, module, module_init, flag = cluster.read_parallel_kernels(text)
    except ValueError as exc:
        return [f"{label}: cannot read its parallel-kernels launch ({exc})"]
    problems = []
    for what, got, want in (("kernel", kernel, prof.kernel),
                            ("module", module, getattr(prof, "module", "") or ""),
                            ("module init script", module_init, getattr(prof, "module_init", "") or ""),
                            ("link flag", flag, link_flag(prof.kernel_version))):
        if got != want:
            problems.append(f"{label}: the subkernels use {what} {got!r}, the profile {want!r}")
    return problems


def _after(lines: list[str], header: str) -> Optional[str]:
    for i, line in enumerate(lines):
        if line.strip() == header and i + 1 < len(lines):
            return lines[i + 1]
    return None


def ssh_g(ctx, prof) -> Optional[dict[str, str]]:
    from mkdoctor.openssh import client_config as sshconfig

    cfg = Path(prof.ssh_config).expanduser() if prof.ssh_config else None
    try:
        return sshconfig.first_values(sshconfig.read_ssh_g(ctx.run_local, prof.host, cfg))
    except sshconfig.SshGError:
        return None


def run(ctx) -> Result:
    prof = ctx.options.profile
    problems = inspect(prof, ssh_g(ctx, prof))
    opts = ctx.options
    if tuple(opts.link_ports) != tuple(int(p) for p in prof.link_ports):
        problems.append(f"options: --link-ports {opts.link_ports[0]},{opts.link_ports[1]} differ "
                        f"from the written configuration ({prof.link_ports[0]},{prof.link_ports[1]})")
    if opts.mode and opts.mode != prof.mode:
        problems.append(f"options: --mode {opts.mode} differs from the written configuration ({prof.mode})")
    files = len(prof.files or [])
    if not problems:
        return passed(f"profile {prof.name} and its {files} written files agree; no known trap found")
    rewrite = f"mkdoctor setup --name {prof.name}"
    fix = (f"rewrite the files from the profile: {rewrite} (it backs up every file it changes), "
           f"or undo the hand edit")
    if any(p.startswith("options:") for p in problems):
        fix = (f"re-run {rewrite} with the new values (e.g. --link-ports P1,P2) so every file "
               "uses them, or drop the flag")
    return failed(problems[0], fix, problems, problems=problems)


CHECK = Check(
    id="MK501",
    name="config-consistent",
    group="config",
    title="the written front-end and ssh configuration agree with the profile and avoid the known traps",
    run=run,
    needs=(),
    after=(),
    preconditions=(no_profile,),
    fix_hints=(
        ("", "re-run mkdoctor setup"),
    ),
)
