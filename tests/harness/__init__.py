"""Integration-test harness for mkdoctor: a real sshd (:mod:`.sshd`) and network
namespaces (:mod:`.netns`)."""

from .netns import Link, NatTopology, Netns, NetnsError, link, nat_topology, netns_unavailable_reason, tcp_connect
from .sshd import SSHSandbox, SSHSandboxError, openssh_version

__all__ = [
    "Link", "NatTopology", "Netns", "NetnsError", "SSHSandbox", "SSHSandboxError",
    "link", "nat_topology", "netns_unavailable_reason", "openssh_version", "tcp_connect",
]
