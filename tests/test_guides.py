"""The guides (docs/guides/*.md) and the README: every ``mkdoctor`` command in them.

- A command that needs no remote host (no --host, --hosts-file, --profile; not setup or
  config) is run for real, as written, and must exit 0 or 1 with no traceback; a JSON,
  JUnit or Markdown report must be one.
- Output shown under a ``$ mkdoctor ...`` line of a ``console`` block must be what the
  command prints: each shown line matches a printed line, in order (``…`` stands for any
  text within a line, and a line of ``…`` alone for any number of lines).
- A command that needs a remote host is not run; every flag it uses must be one that
  ``mkdoctor --help`` (or ``mkdoctor setup --help``) lists.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_mkdoctor

GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
REMOTE_FLAGS = {"--host", "--hosts-file", "--profile"}
NEEDED = {"same-lan", "vpn", "home-router-tunnel", "firewall-two-ports", "port-forwarding",
          "jump-host", "parallel-kernels", "frontends-macos-windows", "ci", "dynamic"}


@dataclass
class Command:
    where: str
    argv: list[str]
    shown: list[str] = field(default_factory=list)  # console output lines, when shown

    @property
    def needs_remote(self) -> bool:
        if self.argv[:1] in (["setup"], ["config"]):
            return "--help" not in self.argv
        return any(a.split("=", 1)[0] in REMOTE_FLAGS for a in self.argv)


def _argv(line: str) -> list[str]:
    """The mkdoctor arguments of one shell line: comments dropped, cut at ; | || && >."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    words: list[str] = []
    for tok in lex:
        if tok and set(tok) <= set(";|&<>()"):
            break
        words.append(tok)
    assert words and words[0] == "mkdoctor", line
    return words[1:]


def _joined(lines: list[str]) -> list[str]:
    out: list[str] = []
    for ln in lines:
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + ln.strip()
        else:
            out.append(ln)
    return out


def commands(path: Path) -> list[Command]:
    text = path.read_text(encoding="utf-8")
    found: list[Command] = []
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    blocks = re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    for m in blocks:
        lang, body = m.group(1), m.group(2).splitlines()
        if lang == "console":
            current: Command | None = None
            for ln in body:
                if ln.startswith("$ "):
                    current = Command(name, _argv(ln[2:]))
                    found.append(current)
                elif current is not None:
                    current.shown.append(ln.rstrip())
            continue
        for ln in _joined(body):
            s = ln.strip()
            s = re.sub(r"^-?\s*run:\s*", "", s)  # a CI step
            if s.startswith("mkdoctor ") or s == "mkdoctor":
                found.append(Command(name, _argv(s)))
    if path.name == "README.md" and path.parent == ROOT:  # indented blocks
        for ln in _joined([ln for ln in text.splitlines() if ln.startswith("    ")]):
            s = ln.strip()
            # a command, not an output line such as "mkdoctor 0.1.0: alice@..."
            if re.fullmatch(r"mkdoctor(?: +(?:-|#|check|setup|config|list|explain)\S*.*)?", s):
                found.append(Command(name, _argv(s)))
    return found


ALL = [c for p in [*GUIDES, ROOT / "README.md"] for c in commands(p)]
LOCAL = [c for c in ALL if not c.needs_remote]
REMOTE = [c for c in ALL if c.needs_remote]


def _id(c: Command) -> str:
    return f"{c.where}: mkdoctor {shlex.join(c.argv)}"[:120]


def test_every_situation_has_a_guide_with_commands() -> None:
    names = {p.stem for p in GUIDES}
    assert NEEDED <= names, NEEDED - names
    for p in GUIDES:
        assert commands(p), f"{p.name} shows no mkdoctor command"
    assert len(LOCAL) >= 15 and len(REMOTE) >= 10


def shown_matches(shown: list[str], printed: list[str]) -> tuple[bool, str]:
    """Each shown line matches a printed line, in order; '…' is a wildcard."""
    i = 0
    anywhere = False
    for want in shown:
        if want.strip() == "…":
            anywhere = True
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")) + r"\Z")
        while i < len(printed):
            ok = bool(pattern.match(printed[i].rstrip()))
            i += 1
            if ok:
                break
            if not anywhere and want.strip():
                return False, f"expected {want!r}, got {printed[i - 1]!r}"
        else:
            return False, f"{want!r} not printed"
        anywhere = False
    return True, ""


@pytest.mark.parametrize("cmd", LOCAL, ids=_id)
def test_local_command_runs_as_shown(cmd: Command) -> None:
    done = run_mkdoctor(*cmd.argv, timeout=90)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), (done.returncode, done.stderr)
    fmt = cmd.argv[cmd.argv.index("--format") + 1] if "--format" in cmd.argv else "text"
    if fmt == "json" and "--output" not in cmd.argv:
        data = json.loads(done.stdout)
        assert data["tool"] == "mkdoctor" and "checks" in data and "summary" in data
    elif fmt == "junit" and "--output" not in cmd.argv:
        assert ET.fromstring(done.stdout).tag == "testsuites"
    elif fmt == "markdown" and "--output" not in cmd.argv:
        assert done.stdout.startswith("## mkdoctor ")
    if cmd.shown:
        ok, why = shown_matches(cmd.shown, done.stdout.splitlines())
        assert ok, f"{why}\n--- printed:\n{done.stdout}"


@lru_cache(maxsize=None)
def _help(command: str) -> str:
    done = run_mkdoctor(*([command] if command else []), "--help")
    assert done.returncode == 0
    return done.stdout


@pytest.mark.parametrize("cmd", REMOTE, ids=_id)
def test_remote_command_uses_real_flags(cmd: Command) -> None:
    command = cmd.argv[0] if cmd.argv[:1] in (["setup"], ["config"]) else ""
    text = _help(command)
    for word in cmd.argv:
        flag = word.split("=", 1)[0]
        if flag.startswith("--"):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (flag, _id(cmd))


def test_the_shape_check_can_fail() -> None:
    printed = ["mkdoctor 0.1.0: this computer", "", "✓ MK201 ssh-client  OpenSSH_9.2p1"]
    assert shown_matches(["mkdoctor …: this computer", "…", "✓ MK201 ssh-client …"], printed)[0]
    assert not shown_matches(["✗ MK201 ssh-client …"], printed)[0]
    assert not shown_matches(["mkdoctor …: this computer", "✓ MK201 ssh-client …"], printed)[0]
    assert not shown_matches(["✓ MK201 ssh-client …", "mkdoctor …"], printed)[0]  # order


def test_the_extractor_sees_what_a_guide_writes(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("```console\n$ mkdoctor explain \"a b\"  # note\nout\n```\n"
                    "```sh\nmkdoctor --host h \\\n  --mode tunnel || status=$?\n```\n")
    got = commands(page)
    assert [c.argv for c in got] == [["explain", "a b"], ["--host", "h", "--mode", "tunnel"]]
    assert got[0].shown == ["out"] and got[1].needs_remote and not got[0].needs_remote
