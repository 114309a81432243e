"""The catalogue: every check, in the order of shared/CHECKS.md.

One explicit table, like pre-commit's table of languages: a check exists when its
module is listed here. Each module (in ``checks.catalogue``) defines ``CHECK``. The
order here is the report order.
"""

from __future__ import annotations

import functools
import importlib

from checks.model import Check

CATALOGUE = (
    "mk101_local_addresses",
    "mk102_public_address",
    "mk103_nat",
    "mk201_ssh_client",
    "mk202_key_pair",
    "mk203_local_ports",
    "mk204_local_firewall",
    "mk205_local_sshd",
    "mk301_host_resolves",
    "mk302_ssh_port_reachable",
    "mk303_host_key_known",
    "mk304_passwordless_login",
    "mk305_authorized_keys",
    "mk306_clean_shell",
    "mk310_permit_root_login",
    "mk311_password_authentication",
    "mk312_tcp_forwarding",
    "mk401_kernel_found",
    "mk402_kernel_starts",
    "mk403_link_path",
    "mk404_kernel_link",
    "mk501_config_consistent",
)


@functools.lru_cache(maxsize=None)
def all_checks() -> tuple[Check, ...]:
    return tuple(importlib.import_module(f"checks.catalogue.{name}").CHECK for name in CATALOGUE)


def check_ids() -> list[str]:
    return [c.id for c in all_checks()]


def get(check_id: str) -> Check:
    for check in all_checks():
        if check.id == check_id.upper():
            return check
    raise KeyError(check_id)
