"""The ``mkdoctor`` command.

Start-up is kept light: ``--help`` and ``--version`` import nothing heavy (no requests,
questionary, psutil or netifaces; the checks import those when they run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from mkdoctor import __version__
from mkdoctor.options import (
    MODES,
    Options,
    Target,
    UsageError,
    check_kernel,
    existing_file,
    local_path,
    nonempty,
    output_path,
    parse_host,
    parse_link_host,
    parse_link_ports,
    parse_timeout,
    ssh_config_file,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS = ("check", "setup", "config", "list", "explain")

DESCRIPTION = """\
Checks every link between a Mathematica front end on this computer and a kernel on a
remote host over SSH, and says how to fix what is broken.

commands:
  mkdoctor [check] [OPTIONS]   run the checks (the default); with no remote host, the
                               checks of this computer only
  mkdoctor setup [OPTIONS]     the first-time setup wizard (--yes / --answers FILE unattended)
  mkdoctor config show         the saved profile, the files written, the front-end strings
  mkdoctor list                every check: ID, name, one line
  mkdoctor explain ID          a check's documentation
"""

EPILOG = """\
exit status: 0 no check failed, 1 a check failed or broke (--strict: or warned),
2 usage or input error.
examples:
  mkdoctor --host alice@workstation.example.org
  mkdoctor --profile work --format junit --output mkdoctor.xml
  mkdoctor setup
"""


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
    g.add_argument("--jobs", type=int, default=1, metavar="N", help=argparse.SUPPRESS if for_setup
                   else "hosts checked at once (default 1)")
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
    c.add_argument("--account", metavar="NAME", help="the account to charge (srun --account)")
    c.add_argument("--cluster-link", choices=("forward", "stdio"),
                   help="how the link leaves the login node: ssh -R forwards (default) or the "
                        "ssh session itself (login nodes without port forwarding)")
    c.add_argument("--licenses", metavar="SPEC", help="licence tokens to request (srun --licenses), e.g. mathematica:1")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--only", metavar="ID,...", help="run only these checks")
    g.add_argument("--skip", metavar="ID,...", help="do not run these checks")
    g.add_argument("--strict", action="store_true", help="warnings fail too")
    g.add_argument("--format", default="text", choices=("text", "json", "junit", "markdown"))
    g.add_argument("--output", metavar="FILE", help="write the report to FILE (the text summary still prints)")
    g.add_argument("-v", "--verbose", action="store_true", help="details and the commands each check ran")
    g.add_argument("--no-color", action="store_true", help="no colour (NO_COLOR is honoured too)")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="mkdoctor", description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mkdoctor {__version__}")
    add_target_args(p)
    add_run_args(p)
    return p


def env_flag(name: str) -> bool:
    """NO_COLOR / FORCE_COLOR / CI count only when set and non-empty."""
    return bool(os.environ.get(name))


def use_color(no_color_flag: bool, stream=None) -> bool:
    stream = stream or sys.stdout
    if no_color_flag or env_flag("NO_COLOR"):
        return False
    if env_flag("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


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
    if args.jobs < 1 or args.jobs > 64:
        raise UsageError("--jobs: must be from 1 to 64")
    return opts, targets


def _cluster_options(args: argparse.Namespace, opts: Options) -> None:
    """--scheduler, --partition, --time, --cpus, --account, --licenses over the profile's."""
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
    given = [f for f in ("partition", "time", "cpus", "account", "licenses", "cluster_link")
             if getattr(args, f, None) is not None]
    if given and not opts.scheduler:
        raise UsageError(f"--{given[0].replace('_', '-')}: only with --scheduler slurm (a cluster profile)")


def cmd_check(argv: Sequence[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        misplaced = next((word for word in extra if word in COMMANDS), None)
        if misplaced:
            raise UsageError(f"'{misplaced}' is a command: put it first "
                             f"(mkdoctor {misplaced} [OPTIONS])")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    opts, targets = options_from_args(args)
    opts.verbose = args.verbose
    opts.strict = args.strict

    from mkdoctor.registry import all_checks, check_ids
    from mkdoctor.options import parse_ids

    known = check_ids()
    if args.only is not None:
        opts.only = parse_ids(args.only, "--only", known)
    if args.skip is not None:
        opts.skip = parse_ids(args.skip, "--skip", known)
    selection = [c for c in all_checks()
                 if (not opts.only or c.id in opts.only) and c.id not in opts.skip]
    out_path = output_path(args.output, "--output") if args.output is not None else None

    from mkdoctor.runner import run_targets

    reports = run_targets(opts, targets, selection, jobs=args.jobs)

    from mkdoctor.engine import exit_status
    from mkdoctor.reports import render

    write_error = ""
    if out_path is not None:
        from mkdoctor.fileio import atomic_write

        try:
            atomic_write(out_path, render(args.format, reports, verbose=opts.verbose))
        except OSError as exc:
            write_error = f"--output {args.output}: cannot write the report: {exc.strerror or exc}"
        sys.stdout.write(render("text", reports, color=use_color(args.no_color), verbose=opts.verbose))
        if write_error:  # the run's summary is printed all the same
            sys.stdout.flush()
            raise UsageError(write_error)
    elif args.format == "text":
        sys.stdout.write(render("text", reports, color=use_color(args.no_color), verbose=opts.verbose))
    else:
        sys.stdout.write(render(args.format, reports, verbose=opts.verbose))
    sys.stdout.flush()
    return max(exit_status(r.results, opts.strict) for r in reports)


def cmd_list(argv: Sequence[str]) -> int:
    p = ArgumentParser(prog="mkdoctor list", description="Every check: ID, name, one line.")
    p.parse_args(argv)
    from mkdoctor.registry import all_checks

    checks = all_checks()
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.id}  {c.name:<{width}}  {c.title}")
    return EXIT_OK


def cmd_explain(argv: Sequence[str]) -> int:
    p = ArgumentParser(prog="mkdoctor explain", description="Show a check's documentation.")
    p.add_argument("id", metavar="ID")
    args = p.parse_args(argv)
    from mkdoctor.docs import doc_page
    from mkdoctor.registry import check_ids

    cid = args.id.strip().upper()
    if cid not in check_ids():
        raise UsageError(f"unknown check ID {args.id!r}; valid IDs: {', '.join(check_ids())}")
    sys.stdout.write(doc_page(cid))
    return EXIT_OK


def cmd_setup(argv: Sequence[str]) -> int:
    from mkdoctor.wizard.main import main as setup_main

    return setup_main(argv)


def cmd_config(argv: Sequence[str]) -> int:
    from mkdoctor.wizard.config_show import main as config_main

    return config_main(argv)


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``): an
    error message quotes what the user typed, and must stay one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        if argv and argv[0] in COMMANDS:
            command, rest = argv[0], argv[1:]
        else:
            command, rest = "check", argv
        handler = {"check": cmd_check, "setup": cmd_setup, "config": cmd_config,
                   "list": cmd_list, "explain": cmd_explain}[command]
        return handler(rest)
    except UsageError as exc:
        print(f"mkdoctor: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mkdoctor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAIL
    except Exception as exc:  # noqa: BLE001 - never a traceback unless asked
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"mkdoctor: internal error: {type(exc).__name__}: {exc} (run with -v for details)",
              file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
