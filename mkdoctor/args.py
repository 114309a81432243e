"""The command-line helpers ``mkdoctor`` and ``mkdoctor setup`` share: the parser that
reports usage errors in one line, the target flags, flags -> :class:`Options`, the hosts
file, whether prompts are allowed, one-line messages.

Both :mod:`mkdoctor.cli` and :mod:`mkdoctor.wizard` import this module; it imports
neither (the command line and the setup flow no longer import each other).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from mkdoctor.options import (
    MODES,
    Options,
    Target,
    UsageError,
    check_kernel,
    existing_file,
    local_path,
    nonempty,
    parse_host,
    parse_link_host,
    parse_link_ports,
    parse_timeout,
    ssh_config_file,
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]):  # noqa: ANN202
        # An option that takes one value must get a string: Python 3.11 drops a '--'
        # given as the value ('--host=--') and hands back an empty list instead.
        value = super()._get_values(action, arg_strings)
        if action.option_strings and action.nargs is None and isinstance(value, list):
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument, "
                       "not '--'")
        return value


def add_target_args(p: argparse.ArgumentParser, for_setup: bool = False) -> None:
    """The target flags. ``for_setup``: hosts are set up one after another, so
    --jobs is hidden."""
    g = p.add_argument_group("target")
    g.add_argument("--profile", metavar="NAME|PATH", help="a saved profile (flags override it)")
    g.add_argument("--host", action="append", default=[], metavar="[USER@]HOST[:PORT]",
                   help="the remote host, or a Host alias of the ssh config; repeatable" +
                   (" (one setup after another)" if for_setup else ""))
    g.add_argument("--hosts-file", metavar="FILE", help="every host listed in FILE (one per line)"
                   if for_setup else "check every host listed in FILE (one per line)")
    g.add_argument("--jobs", type=int, default=None, metavar="N", help=argparse.SUPPRESS if for_setup
                   else "hosts checked at once (default: all of them, up to 16)")
    g.add_argument("--ssh-config", metavar="FILE", help="use this ssh client config (ssh -F)")
    g.add_argument("--identity", metavar="FILE", help="the private key to use and check")
    g.add_argument("--kernel", metavar="PATH", help="the kernel executable on the remote host")
    g.add_argument("--mode", choices=MODES, help="connection mode (default: what MK103 recommends)")
    g.add_argument("--link-ports", metavar="P1,P2", help="the two link ports (default 31415,31416)")
    g.add_argument("--link-host", metavar="ADDRESS", help="direct mode: the address the kernel connects back to")
    g.add_argument("--sshd-config", metavar="PATH", help="the remote sshd config to judge (default /etc/ssh/sshd_config)")
    g.add_argument("--ip-service", action="append", default=[], metavar="URL",
                   help="a what-is-my-IP service (repeatable)")
    g.add_argument("--offline", action="store_true", help="do not look up the public address")
    g.add_argument("--timeout", default="5", metavar="SECONDS", help="each network step (default 5)")
    g.add_argument("--kernel-timeout", default="30", metavar="SECONDS",
                   help="starting the kernel (default 30)")
    g.add_argument("--deadline", default="60", metavar="SECONDS", help="the whole run (default 60)")
    c = p.add_argument_group("cluster (the kernel on a compute node reached through the login node --host)")
    c.add_argument("--scheduler", choices=("slurm",), help="the cluster's scheduler (MK6xx checks)")
    c.add_argument("--partition", metavar="NAME", help="the partition the launch command asks for")
    c.add_argument("--time", metavar="HH:MM:SS", help="the allocation's time limit")
    c.add_argument("--cpus", metavar="N", help="CPUs for the kernel (srun --cpus-per-task)")
    c.add_argument("--subkernels", metavar="N",
                   help="task slots for N parallel subkernels in the kernel's job (0: none; the "
                        "cluster's parallel-kernels file launches them)")
    c.add_argument("--account", metavar="NAME", help="the account to charge (srun --account)")
    c.add_argument("--cluster-link", choices=("forward", "stdio"),
                   help="how the link leaves the login node: ssh -R forwards (default) or the "
                        "ssh session itself (login nodes without port forwarding)")
    c.add_argument("--licenses", metavar="SPEC", help="licence tokens to request (srun --licenses), e.g. mathematica:1")


def env_flag(name: str) -> bool:
    """NO_COLOR / FORCE_COLOR / CI count only when set and non-empty."""
    return bool(os.environ.get(name))


def interactive() -> bool:
    """Prompts are allowed only with a terminal on both ends and outside CI."""
    return sys.stdin.isatty() and sys.stdout.isatty() and not env_flag("CI")


def read_hosts_file(path: str) -> list[str]:
    try:
        lines = local_path(path, "--hosts-file").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--hosts-file {path}: cannot read: {exc}") from None
    hosts = [ln.split("#", 1)[0].strip() for ln in lines]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise UsageError(f"--hosts-file {path}: no hosts in it")
    return hosts


def options_from_args(args: argparse.Namespace) -> tuple[Options, list[Optional[Target]]]:
    """Flags over the saved profile; validates everything the user typed."""
    from mkdoctor import profile as profiles

    opts = Options()
    prof = None
    if args.profile is not None:
        prof = profiles.load_profile(args.profile)
    elif not args.host and args.hosts_file is None:
        saved = profiles.list_profiles()
        if len(saved) == 1:  # one saved profile: it is the default target
            prof = profiles.load_profile(str(saved[0]))
    targets: list[Optional[Target]] = []
    if prof is not None:
        opts.profile = prof
        targets = [parse_host(prof.host)]
        opts.ssh_config = Path(prof.ssh_config).expanduser() if prof.ssh_config else None
        opts.identity = Path(prof.identity).expanduser() if prof.identity else None
        opts.kernel = prof.kernel or None
        opts.mode = prof.mode or None
        opts.link_ports = (prof.link_ports[0], prof.link_ports[1])
        opts.link_ports_given = True
        opts.link_host = prof.link_host or None
        if prof.sshd_config:
            opts.sshd_config = prof.sshd_config
        opts.scheduler = getattr(prof, "scheduler", "") or None
        opts.partition = getattr(prof, "partition", "") or ""
        opts.time_limit = getattr(prof, "time", "") or ""
        opts.cpus = int(getattr(prof, "cpus", 0) or 0)
        opts.subkernels = int(getattr(prof, "subkernels", 0) or 0)
        opts.account = getattr(prof, "account", "") or ""
        opts.licenses = getattr(prof, "licenses", "") or ""
        opts.cluster_link = getattr(prof, "cluster_link", "") or ""
    hosts = list(args.host)
    if args.hosts_file is not None:
        hosts += read_hosts_file(args.hosts_file)
    if hosts:
        targets = [parse_host(h) for h in hosts]
    if not targets:
        targets = [None]
    if args.ssh_config is not None:
        opts.ssh_config = ssh_config_file(args.ssh_config, "--ssh-config")
    elif prof is not None and prof.ssh_config:
        opts.ssh_config = existing_file(prof.ssh_config, f"profile {prof.name}: ssh config")
    if args.identity is not None:
        opts.identity = existing_file(args.identity, "--identity")
    if args.kernel is not None:
        opts.kernel = check_kernel(args.kernel, "--kernel")
    if args.mode:
        opts.mode = args.mode
    if args.link_ports is not None:
        opts.link_ports = parse_link_ports(args.link_ports)
        opts.link_ports_given = True
    if args.link_host is not None:
        opts.link_host = parse_link_host(args.link_host)
    if args.sshd_config is not None:
        opts.sshd_config = nonempty(args.sshd_config, "--sshd-config")
    for url in args.ip_service:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--ip-service {url!r}: must be an http:// or https:// URL")
    opts.ip_services = list(args.ip_service)
    opts.offline = args.offline
    opts.timeout = parse_timeout(args.timeout, "--timeout")
    opts.deadline = parse_timeout(args.deadline, "--deadline")
    opts.kernel_timeout = parse_timeout(args.kernel_timeout, "--kernel-timeout")
    _cluster_options(args, opts)
    if args.jobs is not None and (args.jobs < 1 or args.jobs > 64):
        raise UsageError("--jobs: must be from 1 to 64")
    return opts, targets


def _cluster_options(args: argparse.Namespace, opts: Options) -> None:
    """--scheduler, --partition, --time, --cpus, --subkernels, --account, --licenses over the
    profile's."""
    from mkdoctor.options import slurm_cpus, slurm_time, slurm_word

    if getattr(args, "scheduler", None):
        opts.scheduler = args.scheduler
    for flag, attr in (("partition", "partition"), ("account", "account"), ("licenses", "licenses")):
        value = getattr(args, flag, None)
        if value is not None:
            setattr(opts, attr, slurm_word(value, f"--{flag}"))
    if getattr(args, "cluster_link", None):
        opts.cluster_link = args.cluster_link
    if getattr(args, "time", None) is not None:
        opts.time_limit = slurm_time(args.time, "--time")
    if getattr(args, "cpus", None) is not None:
        opts.cpus = slurm_cpus(args.cpus, "--cpus")
    if getattr(args, "subkernels", None) is not None:
        opts.subkernels = slurm_cpus(args.subkernels, "--subkernels", lowest=0)
    given = [f for f in ("partition", "time", "cpus", "subkernels", "account", "licenses", "cluster_link")
             if getattr(args, f, None) is not None]
    if given and not opts.scheduler:
        raise UsageError(f"--{given[0].replace('_', '-')}: only with --scheduler slurm (a cluster profile)")


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``): an
    error message quotes what the user typed, and must stay one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
