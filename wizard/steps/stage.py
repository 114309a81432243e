"""After step 4: the staged ssh config every check uses until the files are written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.wizard import writers
from mkdoctor.wizard.flow import build_block

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    """A private copy of the ssh config with the new block, for every check until
    the files are written."""
    st = f.state
    st.stage_dir = Path(tempfile.mkdtemp(prefix="mkd-setup-"))
    real = f.ssh_config_path()
    text = sshconfig.read_text(writers.read_bytes(real) or b"")
    st.staged = st.stage_dir / "ssh_config"
    fd = os.open(st.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(sshconfig.to_bytes(sshconfig.upsert_block(text, build_block(f))))
