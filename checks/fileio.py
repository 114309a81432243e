"""Writing files the user owns: atomically, never half-written.

A temp file in the same directory, fsync, then rename over the target; symlinks are
written through to their target; the mode of an existing file is kept.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union


def resolve_target(path: Union[str, Path]) -> Path:
    """The real file behind ``path`` (a symlinked ~/.ssh/config is written through)."""
    p = Path(path).expanduser()
    return p.resolve() if p.is_symlink() else p


def atomic_write(path: Union[str, Path], data: Union[str, bytes], mode: Optional[int] = None) -> Path:
    """Replace ``path`` with ``data`` atomically. Returns the path really written.

    ``mode``: for a new file (default 0644 less the umask); an existing file keeps its own.
    """
    target = resolve_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        keep_mode: Optional[int] = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        keep_mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        elif mode is not None:
            os.chmod(tmp, mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return target
