"""Security review: hostile values must not inject commands, ssh options or ssh_config
directives. Real ``/bin/sh``, ``perl`` and ``ssh -G`` play their parts; nothing is mocked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mkdoctor.kernel import start_script
from mkdoctor.launch import LaunchSpec, launch_command, ssh_argv
from mkdoctor.options import UsageError
from mkdoctor.openssh import client_config as sshconfig

# --------------------------------------------------------------------------- MK402 start script


@pytest.mark.skipif(not shutil.which("perl"), reason="needs perl")
def test_start_script_kernel_path_is_not_a_perl_switch(tmp_path):
    """Without setsid (macOS) the script falls back to ``perl -e CODE``; perl keeps reading
    switches after the code, so a kernel "path" like ``-eCODE`` would be run as Perl."""
    marker = tmp_path / "pwned"
    kernel = f"-e;BEGIN{{system(q{{touch {marker}}})}}"
    bindir = tmp_path / "bin"  # a PATH with perl but no setsid
    bindir.mkdir()
    for tool in ("perl", "date", "sleep", "cat", "touch"):
        os.symlink(shutil.which(tool), bindir / tool)
    # MK402 passes -noprompt next, which perl happens to reject as a switch; the function
    # itself must not depend on that.
    script = start_script(kernel, [], 3)
    proc = subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": str(bindir)})
    time.sleep(1.5)
    proc.stdin.close()
    proc.stdin = None
    proc.communicate(timeout=15)
    assert not marker.exists()
    assert proc.returncode != 0  # no program of that name


def test_start_script_runs_kernel_through_perl_with_arguments(tmp_path):
    """The ``--`` fix keeps the perl fallback working: argv reaches the program intact."""
    if not shutil.which("perl"):
        pytest.skip("needs perl")
    out = tmp_path / "argv"
    prog = tmp_path / "k ernel"
    prog.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{out}'\n")
    prog.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("perl", "date", "sleep", "cat", "touch"):
        os.symlink(shutil.which(tool), bindir / tool)
    script = start_script(str(prog), ["-noprompt", "$(id)", "--"], 5)
    proc = subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": str(bindir)})
    time.sleep(1.0)
    proc.stdin.close()
    proc.stdin = None
    proc.communicate(timeout=15)
    assert out.read_text().splitlines() == ["-noprompt", "$(id)", "--"]


# --------------------------------------------------------------------------- launch command


@pytest.mark.parametrize("dest", ["-oProxyCommand=touch /tmp/x", "a b", "a\nb", ""])
def test_launch_destination_cannot_be_an_ssh_option(dest):
    spec = LaunchSpec(destination=dest, kernel="/k", mode="tunnel", link_ports=(50001, 50002))
    with pytest.raises(ValueError):
        ssh_argv(spec)
    with pytest.raises(ValueError):
        launch_command(spec)


# --------------------------------------------------------------------------- managed ssh block


def _ssh_g(cfg: Path, alias: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(cfg), "-G", "--", alias], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=10)


@pytest.mark.parametrize("field", ["hostname", "user", "HostKeyAlias", "ProxyJump",
                                   "UserKnownHostsFile"])
@pytest.mark.parametrize("evil", ["x\n    ProxyCommand touch /tmp/mkd-pwned",
                                  "x\r    ProxyCommand touch /tmp/mkd-pwned",
                                  "x\x00y", 'x" ProxyCommand "touch'])
def test_block_values_cannot_inject_directives(tmp_path, field, evil):
    kw = dict(alias="mk-t", hostname="h.example.org", user="alice", port=22,
              identity="/id", extra={})
    if field in ("hostname", "user"):
        kw[field] = evil
    else:
        kw["extra"] = {field: evil}
    block = sshconfig.HostBlock(**kw)
    try:
        text = sshconfig.render_block(block)
    except UsageError:
        return  # refused: fine
    cfg = tmp_path / "config"
    cfg.write_text(text)
    done = _ssh_g(cfg, "mk-t")
    assert not [ln for ln in done.stdout.splitlines() if ln.lower().startswith("proxycommand ")]
    # no line of its own, and no unescaped quote that ends the value before it (ssh reads
    # \" inside a quoted word as a quote: checked by ssh -G above)
    assert not [ln for ln in text.splitlines() if ln.strip().lower().startswith("proxycommand")]
    assert not re.search(r'(?<!\\)" ProxyCommand', text)


@pytest.mark.parametrize("field,value,key", [("hostname", "h h", "hostname"),
                                             ("hostname", "fe80::1%lo", "hostname"),
                                             ("user", "x y", "user")])
def test_block_value_with_space_stays_one_value(tmp_path, field, value, key):
    """ssh -G prints ``User "x y"`` of the user's config as ``user x y``: written back
    unquoted, the block breaks every ssh call ("extra arguments at end of line")."""
    kw = dict(alias="mk-t", hostname="h.example.org", user="alice", port=22, identity="/id")
    kw[field] = value
    cfg = tmp_path / "config"
    cfg.write_text(sshconfig.render_block(sshconfig.HostBlock(**kw)))
    done = _ssh_g(cfg, "mk-t")
    assert done.returncode == 0, done.stderr
    got = [ln.split(" ", 1)[1] for ln in done.stdout.splitlines() if ln.startswith(key + " ")]
    assert got == [value]
    assert sshconfig.parse_block(cfg.read_text(), "mk-t")[key] == value


@pytest.mark.parametrize("alias", ["mk-a b", "mk-a\nProxyCommand x", "-mk", "mk-a#b"])
def test_block_alias_is_validated(alias):
    with pytest.raises(UsageError):
        sshconfig.render_block(sshconfig.HostBlock(alias, "h", "u", 22, "/id"))
