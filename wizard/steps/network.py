"""Step 3: the network and the connection mode (MK101-MK103's facts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from mkdoctor import facts
from mkdoctor.options import UsageError, parse_link_host

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("The network")
    a, prev = f.args, st.previous
    r101, r102, r103 = (st.local.get(i) for i in ("MK101", "MK102", "MK103"))
    local_addr = facts.LINK_ADDRESS.of(r101)
    public = facts.PUBLIC_ADDRESS.of(r102)
    f.say(f"  this computer: {local_addr or 'no routable address'}; public address: "
             f"{public or 'unknown (offline or no answer)'}")
    recommended = facts.RECOMMENDED_MODE.of(r103, "tunnel")
    behind = facts.BEHIND_NAT.of(r103)
    why = {
        "tunnel": "tunnel: the kernel's connections come back inside the SSH connection, "
                  "so nothing inbound is needed on this computer"
                  + (" (it is behind NAT)" if behind else ""),
        "direct": "direct: this computer's address is reachable, so the kernel can connect "
                  "straight back to it (no tunnel needed)",
    }
    f.say(f"  NAT: {r103.summary if r103 else 'not checked'}")
    f.say(f"  recommended: {why.get(recommended, recommended)}")
    if f.opts.scheduler:  # a compute node reaches this computer only through the login node
        st.mode = "tunnel"
        if a.mode == "direct":
            f.say("  note: --mode direct does not apply to a cluster: the kernel on a compute "
                  "node connects back through the login node's SSH connection")
    elif a.mode:
        st.mode = a.mode
    else:
        default = prev.mode if prev else recommended
        st.mode = f.ask.select(
            "Connection mode?",
            [("tunnel", "tunnel  - through the SSH connection (works behind NAT and firewalls)"),
             ("direct", "direct  - the kernel connects to this computer (same LAN, VPN, public address)")],
            default, "--mode")
    st.link_host: Optional[str] = None
    if st.mode == "direct":
        default = a.link_host or (prev.link_host if prev and prev.link_host else None) or local_addr
        if a.link_host:
            st.link_host = parse_link_host(a.link_host)
        else:
            def valid(text: str) -> Optional[str]:
                try:
                    parse_link_host(text.strip())
                except UsageError as exc:
                    return str(exc)
                return None

            st.link_host = parse_link_host(f.ask.text(
                "The address of this computer that the kernel connects back to:",
                default, "--link-host", valid).strip())
    f.say(f"  mode: {st.mode}" + (f", link address {st.link_host}" if st.link_host else ""))
