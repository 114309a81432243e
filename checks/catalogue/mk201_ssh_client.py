"""MK201 ssh-client: OpenSSH ``ssh`` and ``ssh-keygen`` are installed, and recent enough.

The front end launches the remote kernel with the system ``ssh``; mkdoctor uses the same
client for every remote step. OpenSSH 7.6 added ``StrictHostKeyChecking accept-new``
(release notes of OpenSSH 7.6, 2017-10-03), which the setup relies on being available.
"""

from __future__ import annotations

import platform
import re
import shutil
from typing import Optional

from checks.model import Check, Result, failed, passed, warned

MIN_VERSION = (7, 6)

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


def run(ctx) -> Result:
    install = INSTALL.get(platform.system(), INSTALL["Linux"])
    missing = [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        return failed(f"not found on PATH: {', '.join(missing)}", install)
    done = ctx.run_local(["ssh", "-V"])
    text = (done.stderr + done.stdout).strip()
    version = parse_version(text)
    details = [f"ssh: {shutil.which('ssh')}", f"ssh-keygen: {shutil.which('ssh-keygen')}", text]
    if version is None:
        return warned(
            f"ssh is not OpenSSH ({text.splitlines()[0] if text else 'no version output'})",
            "the front end and mkdoctor expect OpenSSH's ssh; " + install,
            details,
        )
    major, minor, name = version
    if (major, minor) < MIN_VERSION:
        return warned(
            f"{name} is older than OpenSSH 7.6 (no StrictHostKeyChecking accept-new)",
            "upgrade the OpenSSH client; " + install,
            details, version=f"{major}.{minor}",
        )
    return passed(f"{name} ({shutil.which('ssh')})", details, version=f"{major}.{minor}")


CHECK = Check(
    id="MK201",
    name="ssh-client",
    group="client",
    title="OpenSSH ssh and ssh-keygen are present; version and what it lacks",
    run=run,
)
