"""MK201 ssh-client: OpenSSH ``ssh`` and ``ssh-keygen`` are installed, and recent enough.

The front end launches the remote kernel with the system ``ssh``; mkdoctor uses the same
client for every remote step, and ``ssh-keygen`` to make and inspect keys (MK202).
Features the setup relies on, by the OpenSSH release that added them:

- 7.3: ``ProxyJump`` / ``-J`` (release notes of OpenSSH 7.3, 2016-08-01);
- 7.6: ``StrictHostKeyChecking accept-new`` (release notes of OpenSSH 7.6, 2017-10-03;
  bugzilla.mindrot.org bug 2400).

Older clients get ``warn`` naming what they lack; a missing client fails with how to
install it on this operating system.
"""

from __future__ import annotations

import platform
import re
import shutil
from typing import Optional

from mkdoctor.model import Check, Result, failed, passed, warned

MIN_VERSION = (7, 6)

# (version, what a client older than that lacks)
FEATURES = (
    ((7, 3), "ProxyJump / ssh -J"),
    ((7, 6), "StrictHostKeyChecking accept-new"),
)

INSTALL = {
    "Linux": "install the OpenSSH client: sudo apt install openssh-client "
             "(Fedora/RHEL: sudo dnf install openssh-clients; Arch: sudo pacman -S openssh)",
    "Darwin": "macOS ships OpenSSH in /usr/bin/ssh; if it is missing, reinstall it or run "
              "brew install openssh",
    "Windows": "install the OpenSSH client: Settings > System > Optional features > "
               "OpenSSH Client, or in PowerShell as administrator: "
               "Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0",
}


def parse_version(text: str) -> Optional[tuple[int, int, str]]:
    """``OpenSSH_9.2p1 Debian-2, OpenSSL ...`` -> (9, 2, "OpenSSH_9.2p1")."""
    m = re.search(r"OpenSSH_for_Windows_(\d+)\.(\d+)\S*|OpenSSH_(\d+)\.(\d+)\S*", text)
    if not m:
        return None
    major = int(m.group(1) or m.group(3))
    minor = int(m.group(2) or m.group(4))
    return major, minor, m.group(0).rstrip(",")


def lacks(version: tuple[int, int]) -> list[str]:
    """The features the setup uses that a client of ``version`` does not have."""
    return [what for since, what in FEATURES if version < since]


def run(ctx) -> Result:
    install = INSTALL.get(platform.system(), INSTALL["Linux"])
    paths = {tool: shutil.which(tool) for tool in ("ssh", "ssh-keygen")}
    missing = [tool for tool, path in paths.items() if path is None]
    if missing:
        return failed(f"not found on PATH: {', '.join(missing)}", install,
                      [f"PATH has no {tool}" for tool in missing])
    ssh, keygen = paths["ssh"], paths["ssh-keygen"]
    details = [f"ssh: {ssh}", f"ssh-keygen: {keygen}"]
    if shutil.which("ssh-add") is None:
        details.append("ssh-add: not found (needed only for passphrase-protected keys)")
    done = ctx.run_local([ssh, "-V"])
    text = (done.stderr + done.stdout).strip()
    details.append(f"ssh -V: {text or '(no output)'}")
    if done.returncode != 0:
        why = "timed out" if done.timed_out else f"exited with {done.returncode}"
        return failed(f"{ssh} does not run: ssh -V {why}", "reinstall the OpenSSH client; " + install,
                      details, ssh_path=ssh, keygen_path=keygen)
    version = parse_version(text)
    if version is None:
        first = text.splitlines()[0] if text else "no version output"
        return warned(f"ssh is not OpenSSH ({first})",
                      "the front end and mkdoctor expect OpenSSH's ssh; " + install,
                      details, ssh_path=ssh, keygen_path=keygen, version=None)
    major, minor, name = version
    facts = {"version": f"{major}.{minor}", "ssh_path": ssh, "keygen_path": keygen}
    missing_features = lacks((major, minor))
    if missing_features:
        return warned(
            f"{name} is older than OpenSSH {MIN_VERSION[0]}.{MIN_VERSION[1]} "
            f"(no {', no '.join(missing_features)})",
            "upgrade the OpenSSH client; " + install,
            details, **facts,
        )
    return passed(f"{name} ({ssh})", details, **facts)


CHECK = Check(
    id="MK201",
    name="ssh-client",
    group="client",
    title="OpenSSH ssh and ssh-keygen are present; version and what it lacks",
    run=run,
    fix_hints=(
        ("", "install OpenSSH's client"),
    ),
)
