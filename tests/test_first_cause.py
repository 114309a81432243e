"""First cause first (mkdoctor.firstcause and the end of the text report).

- the report ends with the first broken link of the chain (network → ssh → server
  policy → kernel → link) and its fix;
- "not checked because you asked" (--offline, --only, --skip) is listed apart;
- a fix leads with a more specific finding of another check: the real fault is an
  iptables DROP rule in the laptop's network namespace, which MK204 names, and MK403's
  direct-mode failure then leads with MK204's command (not with tunnel mode).
"""

from __future__ import annotations

import pytest

from mkdoctor import firstcause
from mkdoctor.model import Check, Result, Status, failed, passed, skipped, warned
from mkdoctor.registry import get
from tests.helpers import by_id, json_report, run_mkdoctor
from tests.test_kernel_checks import LOGIN
from tests.test_link_scenarios import FAST, PORTS, TUNNEL_FIX, _same_network, nothing_left  # noqa: F401

MK204_FIX = "sudo iptables -I INPUT -p tcp -m multiport --dports 31415,31416 -j ACCEPT"
MK403_FIX = "use tunnel mode; or let the link ports in"


def _mk204(**kw) -> tuple[Check, Result]:
    return get("MK204"), warned("iptables looks closed", MK204_FIX, findings=[{
        "topic": "inbound-link-ports", "cause": "iptables: dropped by: -A INPUT ... -j DROP",
        "fix": MK204_FIX}], **kw)


def _mk403(topics=("inbound-link-ports",)) -> tuple[Check, Result]:
    return get("MK403"), failed("no answer", MK403_FIX, fix_topics=list(topics))


def test_reconcile_leads_with_the_more_specific_finding() -> None:
    out = dict((c.id, r) for c, r in firstcause.reconcile([_mk204(), _mk403()]))
    fix = out["MK403"].fix
    assert fix.startswith(MK204_FIX), fix
    assert "MK204 local-firewall found the cause: iptables: dropped by" in fix
    assert fix.splitlines()[-1] == f"if that is not enough: {MK403_FIX}"  # kept, as fallback
    assert out["MK204"].fix == MK204_FIX  # the finder itself is unchanged
    # idempotent: a second pass does not stack
    again = dict((c.id, r) for c, r in firstcause.reconcile([(get(k), v) for k, v in out.items()]))
    assert again["MK403"].fix == fix


def test_reconcile_leaves_fixes_alone_without_a_finding_on_their_topic() -> None:
    mk204_pass = (get("MK204"), passed("open", findings=[{"topic": "inbound-link-ports",
                                                           "fix": "x"}]))
    for results in ([_mk403()], [mk204_pass, _mk403()], [_mk204(), _mk403(topics=())]):
        out = dict((c.id, r) for c, r in firstcause.reconcile(results))
        assert out["MK403"].fix == MK403_FIX


def test_first_cause_follows_the_chain_not_the_catalogue() -> None:
    # MK203 (link: a port taken) comes before MK302 in the catalogue, but the network is
    # the first link of the chain: the SSH port unreachable is the cause to fix first.
    results = [(get("MK203"), failed("port taken", "end it")),
               (get("MK302"), failed("refused", "start sshd")),
               (get("MK304"), Result(Status.SKIP, "skipped: MK302 failed", blocked_by="MK302")),
               (get("MK402"), failed("licence", "activate"))]
    check, _ = firstcause.first_cause(results)
    assert check.id == "MK302"
    assert firstcause.first_cause([(get("MK101"), passed("ok")),
                                   (get("MK204"), warned("closed", "open it"))]) is None
    assert [c.id for c, _ in firstcause.to_fix(results)] == ["MK203", "MK302", "MK402"]


def test_by_request_skip_is_apart_from_what_to_fix() -> None:
    asked = (get("MK102"), skipped("skipped: --offline given", "run without --offline",
                                   by_request=True))
    cannot = (get("MK204"), skipped("cannot read the firewall rules", "sudo mkdoctor --only MK204"))
    assert firstcause.to_fix([asked, cannot]) == [cannot]
    assert firstcause.asked([asked, cannot]) == [asked]


def test_text_report_offline_and_only_listed_apart_first_cause_last() -> None:
    done = run_mkdoctor("--offline", "--only", "MK101,MK102,MK201,MK302", "--host", "127.0.0.1:1")
    out = done.stdout
    assert done.returncode == 1
    fix = out.split("What to fix", 1)[1].split("Not checked, as you asked", 1)[0]
    assert "MK302" in fix and "MK102" not in fix  # --offline needs no fix
    apart = out.split("Not checked, as you asked (nothing to fix):", 1)[1]
    assert "MK102 public-address: skipped: --offline given" in apart
    assert "not run (--only/--skip): MK103," in apart and "MK201" not in apart.split("Fix first")[0]
    last = out.rstrip().split("\n\n")[-1]
    assert last.startswith("Fix first (network): MK302 ssh-port-reachable:")
    assert "fix:" in last


def test_markdown_what_to_fix_leaves_out_offline() -> None:
    done = run_mkdoctor("--offline", "--only", "MK102,MK302", "--host", "127.0.0.1:1",
                        "--format", "markdown")
    fix = done.stdout.split("### What to fix", 1)[1]
    assert "`MK302`" in fix and "`MK102`" not in fix


def test_nothing_broken_no_fix_first_block() -> None:
    done = run_mkdoctor("--offline", "--only", "MK102")
    assert done.returncode == 0
    assert "Fix first" not in done.stdout and "What to fix" not in done.stdout
    assert "MK102 public-address: skipped: --offline given" in done.stdout


@pytest.mark.integration
def test_mk403_fix_leads_with_mk204_drop_rule(netns_factory, sandbox_factory,
                                              nothing_left: None) -> None:  # noqa: F811
    """The issue's case: the laptop's INPUT drops the link ports; MK204 names the rule and
    gives the command; MK403's fix leads with that command, then its own alternatives."""
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    ports = ",".join(map(str, PORTS))
    laptop.iptables("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP")
    common = ("--ssh-config", str(box.client_config), "--host", box.alias,
              "--only", f"MK103,MK204,{LOGIN},MK403", *FAST,
              "--mode", "direct", "--link-host", "10.88.0.1")
    data, _ = json_report(*common, netns=laptop.name)
    checks = by_id(data)
    mk204, mk403 = checks["MK204"], checks["MK403"]
    assert mk204["status"] == "warn" and "DROP" in mk204["summary"], mk204
    assert mk403["status"] == "fail", mk403
    assert mk403["fix"].startswith(mk204["fix"]), (mk403["fix"], mk204["fix"])
    assert "MK204 local-firewall found the cause:" in mk403["fix"]
    assert "DROP" in mk403["fix"].splitlines()[0]
    assert TUNNEL_FIX in mk403["fix"].splitlines()[-1]  # still offered, after

    done = run_mkdoctor(*common, netns=laptop.name)
    last = done.stdout.rstrip().split("\n\n")[-1]
    assert last.startswith("Fix first (link): MK403 link-path:"), done.stdout
    assert f"fix:  {mk204['fix']}" in last

    # Without the rule MK204 finds nothing to name, and MK403 (passing) has no fix.
    laptop.iptables("-D", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP")
    checks = by_id(json_report(*common, netns=laptop.name)[0])
    assert checks["MK403"]["status"] == "pass", checks["MK403"]
    assert checks["MK204"]["status"] == "pass", checks["MK204"]
