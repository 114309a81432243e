"""``mkdoctor config show [--profile NAME] [--format text|json]``.

The saved profile, the files ``mkdoctor setup`` wrote, and the two front-end strings.
JSON (shared/CHECKS.md): ``{"profile": {...}, "files": [...], "frontend":
{"launch_command": "...", "mlopen_arguments": "..."}}``; ``files`` lists the profile
itself first, then every file it records.
"""

from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

from mkdoctor.options import UsageError

EXIT_OK = 0


def pick_profile(name: Optional[str]):
    from mkdoctor import profile as profiles

    if name:
        return profiles.load_profile(name)
    saved = profiles.list_profiles()
    if len(saved) == 1:
        return profiles.load_profile(str(saved[0]))
    if not saved:
        raise UsageError(f"no saved profile in {profiles.profiles_dir()}; run mkdoctor setup first")
    names = ", ".join(p.stem for p in saved)
    raise UsageError(f"several profiles are saved ({names}): choose one with --profile NAME")


def as_json(prof) -> dict:
    data = prof.to_toml_dict()
    frontend = data.pop("frontend")
    data.pop("files", None)
    files = [str(prof.path)] if prof.path else []
    files += [f for f in (prof.files or []) if f not in files]
    return {"profile": data, "files": files, "frontend": frontend}


def as_text(prof) -> str:
    data = as_json(prof)
    p = data["profile"]
    width = max(len(k) for k in p)
    lines = [f"Profile {prof.name} ({prof.path})", ""]
    for key, value in p.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        lines.append(f"  {key:<{width}}  {value}")
    lines += ["", "Files written by mkdoctor setup:"]
    lines += [f"  {f}" for f in data["files"]]
    lines += ["", "Kernel Configuration Options > Advanced Options:", "",
              "Arguments to MLOpen:", data["frontend"]["mlopen_arguments"], "",
              "Launch command:", data["frontend"]["launch_command"], "",
              f"Re-check with: mkdoctor --profile {prof.name}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    from mkdoctor.args import ArgumentParser

    p = ArgumentParser(prog="mkdoctor config", description="The saved configuration.")
    sub = p.add_subparsers(dest="action", metavar="show")
    show = sub.add_parser("show", help="the saved profile, the files written, the front-end strings")
    show.add_argument("--profile", metavar="NAME|PATH", help="which profile (default: the only one)")
    show.add_argument("--format", default="text", choices=("text", "json"))
    args = p.parse_args(list(argv))
    if args.action != "show":
        raise UsageError("usage: mkdoctor config show [--profile NAME] [--format text|json]")
    prof = pick_profile(args.profile)
    if args.format == "json":
        sys.stdout.write(json.dumps(as_json(prof), indent=2) + "\n")
    else:
        sys.stdout.write(as_text(prof))
    return EXIT_OK
