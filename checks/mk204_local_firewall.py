"""MK204 local-firewall: in direct mode, what the laptop's firewall says about the link ports.

In direct mode the remote kernel connects back to the laptop's two link ports, so the
laptop's firewall must let those inbound TCP connections in (tunnel mode needs nothing
inbound: the check does not apply there). This reads the active firewall's own rules —
ufw, firewalld, nftables/iptables on Linux; the application firewall and pf on macOS;
Windows Firewall through ``netsh advfirewall`` — without administrator rights: rules it
cannot read make it ``skip`` with the reason. The programs are looked for on PATH and in
/usr/local/sbin, /usr/sbin and /sbin, which a normal user's PATH often lacks. It is a heuristic (see
:mod:`mkdoctor.firewall`); MK403 link-path is the decisive test, connecting for real.
"""

from __future__ import annotations

from mkdoctor import firewall
from mkdoctor.model import Check, Result, only_mode, passed, skipped, warned

HEURISTIC = "(a reading of the rules, not a connection test: MK403 link-path tests the path for real)"


def run(ctx) -> Result:
    ports = list(ctx.link_ports)
    reading = firewall.inspect(ctx.run_local, ports)
    details = [f"firewalls found: {', '.join(reading.found) or 'none'}"]
    details += [f"could not read: {u}" for u in reading.unreadable]
    for v in reading.verdicts:
        details += [f"{v.firewall}: {note}" for note in v.notes] or [f"{v.firewall}: {v.reason}"]
    facts = {"firewalls": reading.found,
             "verdicts": {v.firewall: v.state for v in reading.verdicts}}
    plist = f"{ports[0]} and {ports[1]}"
    closed = [v for v in reading.verdicts if v.state == firewall.CLOSED]
    unsure = [v for v in reading.verdicts if v.state == firewall.UNKNOWN]
    if closed:
        v = closed[0]
        # The exact rule: a more specific cause than MK403's "a firewall drops it", so
        # MK403's fix leads with this one (mkdoctor.firstcause, topic inbound-link-ports).
        facts["findings"] = [{"topic": "inbound-link-ports", "cause": f"{v.firewall}: {v.reason}",
                              "fix": v.open_command}]
        return warned(f"{v.firewall} looks closed for TCP {plist}: {v.reason}",
                      v.open_command, details + [HEURISTIC], **facts)
    if unsure:
        v = unsure[0]
        return warned(f"{v.firewall} lets TCP {plist} in only under conditions: {v.reason}",
                      f"make sure the remote host is covered, or open the ports: {v.open_command}",
                      details + [HEURISTIC], **facts)
    if reading.unreadable:
        # Part of the rules could not be read: we cannot say the ports are open.
        return skipped(f"cannot read the firewall rules without administrator rights "
                       f"({reading.unreadable[0]})",
                       "run as root to read them (e.g. sudo mkdoctor --only MK204), or rely on "
                       "MK403 link-path", details, **facts)
    if not reading.verdicts:
        return skipped("no firewall found to read (ufw, firewalld, nft or iptables)",
                       "if a firewall filters this computer, list its rules yourself "
                       "(sudo nft list ruleset, or sudo iptables -S) and open TCP "
                       f"{plist}; MK403 link-path tests the ports for real", details, **facts)
    names = ", ".join(v.firewall for v in reading.verdicts)
    return passed(f"{names}: inbound TCP {plist} allowed", details + [HEURISTIC], **facts)


CHECK = Check(
    id="MK204",
    name="local-firewall",
    group="client",
    title="direct mode: what the laptop's firewall says about the link ports",
    run=run,
    needs=(),
    after=("MK103",),
    preconditions=(only_mode("direct"),),
    fix_hints=(
        ("", "open the link ports in the firewall"),
    ),
)
