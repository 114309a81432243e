"""Typed facts: the values checks publish in ``Result.facts`` that others read.

A fact is named once, here, with the check that publishes it, its key and its type:
readers (the setup flow, other checks) use these constants instead of guessing keys
("processor_count"? "processors"? "ProcessorCount"?). tests/test_wizard_facts.py runs the
publishing checks for real and asserts that every fact declared here is published with
its type, and that the setup flow reads no fact by a bare string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Mapping, Optional, TypeVar

T = TypeVar("T")
_EMPTY = (None, "", [])


@dataclass(frozen=True)
class Fact(Generic[T]):
    check: str  # the check that publishes it
    key: str  # its key in that check's Result.facts
    type: type  # what it holds (bool, int, str, list)
    doc: str = ""

    def of(self, result: Any, default: Optional[T] = None) -> Optional[T]:
        """The value in ``result`` (that check's Result, or None), else ``default``;
        empty values ("" or []) count as absent."""
        if result is None:
            return default
        value = result.facts.get(self.key)
        return default if value in _EMPTY else value

    def get(self, results: Mapping[str, Any], default: Optional[T] = None) -> Optional[T]:
        """The value from a map of check ID -> Result."""
        return self.of(results.get(self.check), default)


LINK_ADDRESS = Fact("MK101", "link_address", str, "the laptop address the kernel connects back to")
PUBLIC_ADDRESS = Fact("MK102", "public_address", str, "this network's public address")
RECOMMENDED_MODE = Fact("MK103", "recommended_mode", str, "tunnel or direct")
BEHIND_NAT = Fact("MK103", "behind_nat", bool, "the laptop is behind NAT")
LOGIN_FAILURE = Fact("MK304", "reason", str, "why the key login failed (permission-denied, ...)")
KERNEL_PATH = Fact("MK401", "kernel", str, "the kernel found (or given)")
KERNEL_PATH_VERSION = Fact("MK401", "version", str, "the version the kernel's path encodes")
KERNEL_MODULE = Fact("MK401", "module", str, "the module that puts the kernel on PATH (or '')")
KERNEL_MODULE_INIT = Fact("MK401", "module_init", str, "that module system's init script (or '')")
KERNEL_INSTALLS = Fact("MK401", "installs", list, "every install found: {path, version, resolved}")
KERNEL_VERSION_NUMBER = Fact("MK402", "version_number", str, "$VersionNumber of the kernel")
PROCESSOR_COUNT = Fact("MK402", "processor_count", int, "$ProcessorCount of the remote host")
KERNEL_START_FAILURE = Fact("MK402", "reason", str,
                            "why the kernel did not start ('licence-processes': every licence "
                            "process in use; 'licence', 'not-found', 'hang', ...)")
STRANGER_CONNECTIONS = Fact("MK310", "stranger_connections", list,
                            "the sshd -T -C specs of the connections a stranger could make "
                            "(MK311 publishes them too)")
DROPIN_LOSES = Fact("MK310", "dropin_loses", str,
                    "why a line of mkdoctor's hardening drop-in would not win ('' if it would)")
PERMIT_ROOT_LOGIN = Fact("MK310", "permitrootlogin", str, "sshd's effective PermitRootLogin")

ALL: tuple[Fact, ...] = (LINK_ADDRESS, PUBLIC_ADDRESS, RECOMMENDED_MODE, BEHIND_NAT,
                         LOGIN_FAILURE, KERNEL_PATH, KERNEL_PATH_VERSION, KERNEL_INSTALLS,
                         KERNEL_VERSION_NUMBER, PROCESSOR_COUNT, PERMIT_ROOT_LOGIN,
                         KERNEL_MODULE, KERNEL_MODULE_INIT, STRANGER_CONNECTIONS, DROPIN_LOSES,
                         KERNEL_START_FAILURE)

# Published only on a cluster run (MK601 needs a scheduler): the cluster setup test of
# tests/test_slurm_checks.py reads PARTITION through setup against the real test cluster.
PARTITION = Fact("MK601", "partition", str, "the partition the run uses (given or the default)")
PARTITIONS = Fact("MK601", "partitions", list, "every partition of the cluster")
PARTITION_NOTES = Fact("MK601", "partition_notes", dict,
                       "per partition: 'no: why' when it takes no job of this user, else its time limit or ''")
CLUSTER: tuple[Fact, ...] = (PARTITION, PARTITIONS, PARTITION_NOTES)
