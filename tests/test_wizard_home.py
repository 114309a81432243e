"""setup warns when $HOME is not the home ssh uses (the password database's)."""

from __future__ import annotations

import os
import pwd

from mkdoctor.wizard.main import home_mismatch


def test_no_note_when_home_is_the_real_home(monkeypatch):
    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    assert home_mismatch() is None


def test_note_names_both_homes_and_the_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    note = home_mismatch()
    real = os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)
    assert note is not None
    assert str(tmp_path) in note and real in note
    assert f"--ssh-config {real}/.ssh/config" in note
