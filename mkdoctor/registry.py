"""The catalogue: every check, in the order of shared/CHECKS.md.

One explicit table with real imports, like pre-commit's table of languages: a check
exists when its module (in ``checks/``, the package ``mkdoctor.checks``) is imported and
listed here. Each module defines ``CHECK``. The order here is the report order. Check
modules keep heavy imports inside their functions, so this table costs little at start-up.
"""

from __future__ import annotations

from mkdoctor.model import Check
from mkdoctor.checks import (
    mk101_local_addresses,
    mk102_public_address,
    mk103_nat,
    mk201_ssh_client,
    mk202_key_pair,
    mk203_local_ports,
    mk204_local_firewall,
    mk205_local_sshd,
    mk301_host_resolves,
    mk302_ssh_port_reachable,
    mk303_host_key_known,
    mk304_passwordless_login,
    mk305_authorized_keys,
    mk306_clean_shell,
    mk310_permit_root_login,
    mk311_password_authentication,
    mk312_tcp_forwarding,
    mk401_kernel_found,
    mk402_kernel_starts,
    mk403_link_path,
    mk404_kernel_link,
    mk501_config_consistent,
    mk601_scheduler_found,
    mk602_allocation,
    mk603_node_kernel,
    mk604_node_link_path,
    mk605_node_kernel_link,
)

CATALOGUE = (
    mk101_local_addresses.CHECK,
    mk102_public_address.CHECK,
    mk103_nat.CHECK,
    mk201_ssh_client.CHECK,
    mk202_key_pair.CHECK,
    mk203_local_ports.CHECK,
    mk204_local_firewall.CHECK,
    mk205_local_sshd.CHECK,
    mk301_host_resolves.CHECK,
    mk302_ssh_port_reachable.CHECK,
    mk303_host_key_known.CHECK,
    mk304_passwordless_login.CHECK,
    mk305_authorized_keys.CHECK,
    mk306_clean_shell.CHECK,
    mk310_permit_root_login.CHECK,
    mk311_password_authentication.CHECK,
    mk312_tcp_forwarding.CHECK,
    mk401_kernel_found.CHECK,
    mk402_kernel_starts.CHECK,
    mk403_link_path.CHECK,
    mk404_kernel_link.CHECK,
    mk501_config_consistent.CHECK,
    mk601_scheduler_found.CHECK,
    mk602_allocation.CHECK,
    mk603_node_kernel.CHECK,
    mk604_node_link_path.CHECK,
    mk605_node_kernel_link.CHECK,
)


def all_checks() -> tuple[Check, ...]:
    return CATALOGUE


def check_ids() -> list[str]:
    return [c.id for c in CATALOGUE]


def get(check_id: str) -> Check:
    for check in CATALOGUE:
        if check.id == check_id.upper():
            return check
    raise KeyError(check_id)
