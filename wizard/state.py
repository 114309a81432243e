"""What the setup steps learn and decide, in one place (:class:`SetupState`).

Each step reads what earlier steps put here and adds its own part; the comments say
which step sets a field. The services the steps use (printing, questions, running
checks, the SSH session) are on :class:`mkdoctor.wizard.flow.Flow`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mkdoctor.options import Target


@dataclass
class SetupState:
    # before step 1 (the command line, a saved profile)
    target: Optional[Target] = None
    previous: Any = None  # the existing profile of the same name (mkdoctor.profile.Profile)
    # step 1: this computer
    local: dict[str, Any] = field(default_factory=dict)  # check ID -> Result
    # step 2: the remote host, as ssh -G resolves it
    resolved: dict[str, list[str]] = field(default_factory=dict)
    hostname: str = ""
    user: str = ""
    port: int = 22
    name: str = ""
    alias: str = ""
    # step 3: the network
    mode: str = "tunnel"
    link_host: Optional[str] = None
    # step 4: the key
    identity: Optional[Path] = None
    public_line: str = ""
    # the staged ssh config (after step 4)
    stage_dir: Optional[Path] = None
    staged: Optional[Path] = None
    # step 5: a recorded host key is read beside step 6's login (judged there)
    host_key_pending: bool = False
    # step 7: the kernel
    kernel: str = ""
    kernel_version: str = ""
    module: str = ""  # step 7: the module that puts the kernel on PATH (MK401)
    module_init: str = ""  # step 7: the module system's init script
    processors: int = 1
    kernel_arg: Optional[str] = None  # what MK401 is given to read the kernel as chosen
    # step 8: the link ports
    ports: tuple[int, int] = (0, 0)
    # step 9: the proof
    proved_link: bool = False  # MK404 ran (so it runs again on the written files)
    # step 10: the files
    profile_written: Any = None
    written: list[Any] = field(default_factory=list)
    committed: bool = False  # written: the files stay, whatever happens next
    verify_error: str = ""  # why the files as written do not work
    verified: list[str] = field(default_factory=list)  # checks that passed on them
    # the link check not repeated on the written files (same ssh -G as step 9's proof)
    carried: str = ""
    # step 11: the sshd advice
    applying: bool = False
    applied: bool = False
    hardening_error: str = ""
    hardened: bool = True  # False: an apply was asked for and did not succeed
