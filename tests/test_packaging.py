"""The built wheel carries everything an installed mkdoctor needs (docs pages included)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from mkdoctor.registry import check_ids
from tests.helpers import source_copy


def test_wheel_contains_packages_docs_and_entry_point(tmp_path):
    try:  # build offline with the installed setuptools when there is one
        import setuptools  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q",
         "-w", str(tmp_path), str(source_copy(tmp_path))],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("mkdoctor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for cid in check_ids():
        assert f"mkdoctor/docpages/{cid}.md" in names, cid
    assert "mkdoctor/cli.py" in names and "mkdoctor/wizard/__init__.py" in names
    assert "mkdoctor/checks/mk304_passwordless_login.py" in names
    assert "mkdoctor/openssh/session.py" in names
    # one import package: nothing else at the top of the wheel (PyPI has packages named
    # checks and wizard; installing ours as those names would break a shared environment)
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"mkdoctor"}, top
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "mkdoctor = mkdoctor.cli:main" in text
