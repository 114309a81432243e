"""The ``mkdoctor`` command.

Start-up is kept light: ``--help`` and ``--version`` import nothing heavy (no requests,
questionary, psutil or netifaces; the checks import those when they run).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from mkdoctor import __version__
from mkdoctor.options import UsageError, output_path

from mkdoctor.args import (  # noqa: F401 - shared with the setup flow; re-exported
    ArgumentParser,
    add_target_args,
    env_flag,
    interactive,
    one_line,
    options_from_args,
    read_hosts_file,
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
  mkdoctor explain "TEXT"      what an error message means, and which checks to run
"""

EPILOG = """\
exit status: 0 no check failed, 1 a check failed or broke (--strict: or warned),
2 usage or input error.
examples:
  mkdoctor --host alice@workstation.example.org
  mkdoctor --profile work --format junit --output mkdoctor.xml
  mkdoctor setup
"""


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


def use_color(no_color_flag: bool, stream=None) -> bool:
    stream = stream or sys.stdout
    if no_color_flag or env_flag("NO_COLOR"):
        return False
    if env_flag("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _is_stdout(path: Path) -> bool:
    """``path`` is where stdout goes (/dev/stdout, or the file it is redirected to)."""
    try:
        a, b = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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
    out_path = output_path(args.output, "--output") if args.output is not None else None

    # One host and every check: the remote checks will share one login (MK304 reports
    # it). It starts now, while Python loads the checks, not when they start.
    early = None
    if len(targets) == 1 and targets[0] is not None and args.only is None and args.skip is None:
        from mkdoctor.context import Context
        from mkdoctor.fleet import Fleet
        from mkdoctor.proc import interrupt_on_sigterm

        interrupt_on_sigterm()  # as the run does: its cleanup ends this login too
        early = Context(opts, targets[0], Fleet(tuple(opts.link_ports)))
        early.begin_login()
    try:
        return _check(args, opts, targets, out_path, early)
    finally:
        if early is not None:
            early.close()  # (the run closed it already, unless it never started)


def _check(args, opts, targets, out_path, early) -> int:  # noqa: ANN001
    from mkdoctor.registry import all_checks, check_ids
    from mkdoctor.options import parse_ids

    known = check_ids()
    if args.only is not None:
        opts.only = parse_ids(args.only, "--only", known)
    if args.skip is not None:
        opts.skip = parse_ids(args.skip, "--skip", known)
    selection = [c for c in all_checks()
                 if (not opts.only or c.id in opts.only) and c.id not in opts.skip]

    from mkdoctor.runner import run_targets

    # The text report goes to stdout as it is known (live.py): a status line only on a
    # terminal outside CI. JSON, JUnit or Markdown on stdout: printed once, at the end.
    # --output /dev/stdout (or the file stdout goes to): the report first, then the text.
    text_after = out_path is not None and _is_stdout(out_path)
    text_on_stdout = (out_path is not None or args.format == "text") and not text_after
    stream = printer = None
    if text_on_stdout:
        from mkdoctor.live import CheckStream, LivePrinter

        printer = LivePrinter(sys.stdout)
        stream = CheckStream(printer, selection, len(targets), color=use_color(args.no_color),
                             verbose=opts.verbose)
    try:
        if printer is not None:
            with printer:
                reports = run_targets(opts, targets, selection, jobs=args.jobs, live=stream,
                                      prepared=early)
                stream.finish()
        else:
            reports = run_targets(opts, targets, selection, jobs=args.jobs, prepared=early)
    finally:
        if printer is not None:
            printer.close()

    from mkdoctor.engine import exit_status
    from mkdoctor.reports import render

    if out_path is not None:
        from mkdoctor.fileio import atomic_write

        write_error = ""
        try:
            atomic_write(out_path, render(args.format, reports, verbose=opts.verbose))
        except OSError as exc:
            write_error = f"--output {args.output}: cannot write the report: {exc.strerror or exc}"
        if text_after:
            sys.stdout.write(render("text", reports, color=use_color(args.no_color),
                                    verbose=opts.verbose))
        if write_error:  # the run's summary is printed all the same
            sys.stdout.flush()
            raise UsageError(write_error)
    elif args.format != "text":
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
    p = ArgumentParser(prog="mkdoctor explain",
                       description="A check's documentation (mkdoctor explain MK304), or what an "
                       "error message means: its likely causes, the checks that diagnose them "
                       "and the command to run (mkdoctor explain \"Permission denied "
                       "(publickey)\"; - reads the text from stdin). Exit 0; 1 when the text "
                       "is not recognised.")
    p.add_argument("text", nargs="+", metavar="ID|TEXT")
    # Not parsed by argparse: a pasted message may begin with '-' ("-bash: math: command
    # not found"). Only a lone -h/--help is an option; '--' may precede the text.
    words = list(argv)
    if words in (["-h"], ["--help"]):
        p.print_help()
        return EXIT_OK
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        p.error("the following arguments are required: ID|TEXT")
    from mkdoctor.registry import check_ids

    if words == ["-"]:
        words = [sys.stdin.read()]
    text = " ".join(words)
    cid = text.strip().upper()
    if cid in check_ids():
        from mkdoctor.docs import doc_page

        sys.stdout.write(doc_page(cid))
        return EXIT_OK
    if not text.strip():
        raise UsageError("explain: give a check ID or the text of an error message")
    if re.fullmatch(r"MK\d{3}", cid):
        raise UsageError(f"unknown check ID {text.strip()!r}; valid IDs: {', '.join(check_ids())}")
    from mkdoctor import explain

    found = explain.match(text)
    if not found:
        sys.stdout.write(explain.unknown(text))
        return EXIT_FAIL
    sys.stdout.write(explain.render(text, found))
    return EXIT_OK


def cmd_setup(argv: Sequence[str]) -> int:
    from mkdoctor.wizard.main import main as setup_main

    return setup_main(argv)


def cmd_config(argv: Sequence[str]) -> int:
    from mkdoctor.wizard.config_show import main as config_main

    return config_main(argv)


def _interrupted(exc: BaseException) -> bool:
    """``exc`` was caused by an interrupt: Python wraps one raised while a class is
    created (a dataclass's field, ``__set_name__``) in a RuntimeError, and SIGTERM during
    the imports of a run meets exactly that."""
    seen: set[int] = set()
    cur: Optional[BaseException] = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


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
        if _interrupted(exc):  # Ctrl-C or SIGTERM in the middle of an import, say
            print("mkdoctor: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"mkdoctor: internal error: {type(exc).__name__}: {exc} (run with -v for details)",
              file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
