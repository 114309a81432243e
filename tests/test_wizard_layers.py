"""Layering: the checks do not import the setup flow, and the command line and the
setup flow do not import each other (both use mkdoctor.args). Checked in a fresh
interpreter, where sys.modules shows what an import really pulled in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_checks_do_not_import_the_wizard():
    mods = imported_after("from mkdoctor.registry import all_checks\nall_checks()\n"
                          "import mkdoctor.checks.mk501_config_consistent as m\n"
                          "m.inspect.__globals__")
    assert not {m for m in mods if m.startswith("mkdoctor.wizard")}


def test_the_setup_flow_does_not_import_the_command_line():
    mods = imported_after("import mkdoctor.wizard.main, mkdoctor.wizard.flow, mkdoctor.wizard.config_show\n"
                          "from mkdoctor.wizard.flow import steps\nsteps()")
    assert "mkdoctor.cli" not in mods


def test_the_command_line_does_not_import_the_setup_flow_until_setup_runs():
    mods = imported_after("import mkdoctor.cli")
    assert not {m for m in mods if m.startswith("mkdoctor.wizard")}
