"""Step 11: advice for the remote sshd (MK310 PermitRootLogin, MK311 PasswordAuthentication).

The advice is a drop-in file in ``/etc/ssh/sshd_config.d/`` (read through the
``Include /etc/ssh/sshd_config.d/*.conf`` line that Debian, Ubuntu and Fedora put first in
sshd_config, so its values win: sshd uses the first value it finds, sshd_config(5)).
Applying it is opt-in: through ``ssh -t`` with ``sudo`` (the password goes to sudo's own
prompt), the file is written, ``sshd -t`` validates the whole configuration *before* any
reload (a failure removes the file again), and only then is sshd reloaded. A reload keeps
existing connections, and the wizard keeps its own connection open and tests a fresh
login afterwards, printing the command that undoes the change if the login fails.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DROPIN = "/etc/ssh/sshd_config.d/50-mkdoctor-hardening.conf"


@dataclass
class Advice:
    lines: list[str]

    @property
    def content(self) -> str:
        return ("# Written by mkdoctor setup: key logins only (see mkdoctor explain MK310/MK311)\n"
                + "\n".join(self.lines) + "\n")

    @property
    def text(self) -> str:
        q = shlex.quote(self.content)
        return (f"  Recommended drop-in {DROPIN}:\n"
                + "".join(f"    {ln}\n" for ln in self.content.splitlines())
                + "  On the remote host (keep this session open until a new login works):\n"
                + f"    printf '%s' {q} | sudo tee {DROPIN} >/dev/null\n"
                + "    sudo sshd -t && sudo systemctl reload ssh   # (sshd on Fedora/RHEL)\n"
                + f"  To undo: sudo rm {DROPIN} && sudo systemctl reload ssh")


def advice(results: dict) -> Optional[Advice]:
    lines: list[str] = []
    r310, r311 = results.get("MK310"), results.get("MK311")
    if r310 is not None and r310.status.value in ("warn", "fail"):
        lines.append("PermitRootLogin no")
    if r311 is not None and r311.status.value in ("warn", "fail"):
        lines += ["PasswordAuthentication no", "KbdInteractiveAuthentication no"]
    return Advice(lines) if lines else None


APPLY_SCRIPT = r"""
set -e
f=$1; content=$2
tmp=$(mktemp)
printf '%s' "$content" > "$tmp"
install -m 644 "$tmp" "$f"; rm -f "$tmp"
if ! sshd -t; then rm -f "$f"; echo "MKD-SSHD invalid: not applied"; exit 3; fi
systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || kill -HUP "$(cat /run/sshd.pid)"
echo "MKD-SSHD applied"
"""


def apply(adv: Advice, alias: str, ssh_config: Optional[Path], interactive: bool) -> tuple[bool, str]:
    base = ["ssh"] + (["-F", str(ssh_config)] if ssh_config else [])
    remote = " ".join(["sudo", "sh", "-c", shlex.quote(APPLY_SCRIPT), "sh", shlex.quote(DROPIN),
                       shlex.quote(adv.content)])
    # The wizard's own connection stays open while sshd reloads: a master first.
    import tempfile

    sock_dir = tempfile.mkdtemp(prefix="mkd-sec-")
    sock = f"{sock_dir}/cm"
    master = subprocess.run(base + ["-M", "-N", "-f", "-o", "ControlPersist=no", "-S", sock,
                                    "-o", "BatchMode=yes", "--", alias],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    keep = False
    try:
        argv = base + (["-t"] if interactive else ["-o", "BatchMode=yes"]) + ["--", alias, remote]
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=300,
                              stdin=None if interactive else subprocess.DEVNULL)
        if "MKD-SSHD applied" not in done.stdout:
            return False, "not applied: " + (done.stdout.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        fresh = subprocess.run(base + ["-o", "BatchMode=yes", "-S", "none", "--", alias, "true"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if fresh.returncode != 0:
            keep = True  # the user needs it to undo the change
            undo = f"ssh -S {sock} -t {alias} sudo sh -c {shlex.quote(f'rm -f {DROPIN} && systemctl reload ssh')}"
            return False, ("applied, but a NEW login fails; the old connection is still open. "
                           f"Undo now: {undo}")
        return True, f"applied {DROPIN}; a new key login still works"
    finally:
        if not keep:
            if master.returncode == 0:
                subprocess.run(base + ["-S", sock, "-O", "exit", "--", alias],
                               capture_output=True, timeout=10)
            import shutil

            shutil.rmtree(sock_dir, ignore_errors=True)
