"""Writing files the user owns: atomically, never half-written.

A temp file in the same directory, fsync, then rename over the target; symlinks are
written through to their target; the mode of an existing file is kept. A target that
exists and is not a regular file (a fifo, ``/dev/null``, ``/dev/stdout``, a terminal) is
opened and written, never replaced.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Optional, Union


def resolve_target(path: Union[str, Path]) -> Path:
    """The real file behind ``path`` (a symlinked ~/.ssh/config is written through)."""
    p = Path(path).expanduser()
    return p.resolve() if p.is_symlink() else p


def _special_file(path: Union[str, Path]) -> Optional[Path]:
    """``path`` when it exists (symlinks followed) and is neither a regular file nor a
    directory: renaming a temp file over it would replace the device or fifo itself."""
    p = Path(path).expanduser()
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else p


def atomic_write(path: Union[str, Path], data: Union[str, bytes], mode: Optional[int] = None) -> Path:
    """Replace ``path`` with ``data`` atomically. Returns the path really written.

    ``mode``: for a new file (default 0644 less the umask); an existing file keeps its own.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    special = _special_file(path)
    if special is not None:
        fd = os.open(special, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return special
    target = resolve_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
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


def read_or_empty(path: Union[str, Path]) -> str:
    """A log file's text (undecodable bytes replaced), or "" when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""
