"""Process-tree helpers built on ``/proc`` only (no psutil needed).

Used by the harness to find and kill everything a test started: an sshd and its
per-connection children, the remote user's shells, processes left in a network
namespace.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterable


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2:].split()


def all_pids() -> list[int]:
    """Every pid currently visible in ``/proc``."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def ppid_of(pid: int) -> int | None:
    """Parent pid, or None if the process is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if gone: with the pid, it
    names one process for good, where a pid alone may be reused."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid`` (children, grandchildren, ...), parents first."""
    children: dict[int, list[int]] = {}
    for p in all_pids():
        parent = ppid_of(p)
        if parent is not None:
            children.setdefault(parent, []).append(p)
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pids_of_uid(uid: int) -> list[int]:
    """Pids whose real uid is ``uid``."""
    out = []
    for p in all_pids():
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        out.append(p)
                    break
        except (OSError, ValueError, IndexError):
            continue
    return out


def pids_with_env(entry: str) -> list[int]:
    """Pids whose initial environment contains ``entry`` (``NAME=value``), if readable."""
    needle = entry.encode()
    out = []
    for p in all_pids():
        try:
            if needle in Path(f"/proc/{p}/environ").read_bytes().split(b"\0"):
                out.append(p)
        except OSError:
            continue
    return out


def cmdline(pid: int) -> list[str]:
    """argv of ``pid`` (empty if gone or a kernel thread)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid, ignoring those already gone."""
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM ``pids``, wait up to ``timeout`` s, then SIGKILL the survivors.

    Zombies count as gone (their parent reaps them). Never raises for vanished pids.
    """
    pids = [p for p in pids if p != os.getpid()]
    signal_pids(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(is_alive(p) for p in pids):
            return
        time.sleep(0.05)
    signal_pids([p for p in pids if is_alive(p)], signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.05)


def terminate_tree(root: int, timeout: float = 5.0) -> None:
    """Terminate ``root`` and its descendants, deepest first, so that every parent is
    still alive to reap its children (an orphan's new parent, pid 1, may never reap)."""
    depth: dict[int, int] = {root: 0}
    for p in descendants(root):  # parents come before their children
        parent = ppid_of(p)
        depth[p] = depth.get(parent, 0) + 1 if parent is not None else 1
    for level in sorted(set(depth.values()), reverse=True):
        terminate([p for p, d in depth.items() if d == level], timeout=timeout)
