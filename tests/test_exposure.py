"""MK310/MK311 judge the server as a stranger meets it (mkdoctor/openssh/exposure.py).

Unit tests of the connections built per Match block, then integration tests against the
harness's REAL sshd: configurations whose Match blocks differ for the LAN and the
internet, Match User root, Match Group, negated criteria, a LocalPort sshd does not
listen on. Each case runs mkdoctor as a user would and then asks the real
``sshd -T -C`` (in the sandbox's own user database) for the very connection MK310/MK311
reported: the worst case reported is what sshd really applies to that connection.
"""

from __future__ import annotations

import subprocess

import pytest

from mkdoctor.openssh import exposure as ex
from mkdoctor.openssh import sshd_config as sc
from tests.harness.netns import link
from tests.harness.sshd import SSHD, UNSHARE, _MOUNT_AND_RUN
from tests.helpers import by_id, json_report

MAIN = "/etc/ssh/sshd_config"
REACH = ex.Reach(("203.0.113.5",), (22,))


def judge(text: str, role: str, reach: ex.Reach = REACH, user: str = "alice",
          groups=("alice",)) -> ex.Judged:
    loader = sc.MappingLoader({MAIN: text})
    blocks = ex.match_blocks([MAIN], loader.read)
    cands = ex.stranger_connections(role, blocks, reach, user, groups, ("root",))
    rank = ex.root_rank if role == "root" else ex.password_rank
    return ex.worst([(c, sc.evaluate(MAIN, loader, c.conn)) for c in cands], rank, blocks)


# --- pure ----------------------------------------------------------------------------------


def test_match_blocks_and_the_block_of_a_line():
    text = "PermitRootLogin no\nMatch User a\n  X11Forwarding no\nmatch=Address 10.0.0.0/8\n PasswordAuthentication no\n"
    blocks = ex.match_blocks([MAIN], {MAIN: text}.__getitem__)
    assert [(b.line, b.criteria, b.end) for b in blocks] == [
        (2, "User a", 3), (4, "Address 10.0.0.0/8", 6)]
    assert ex.block_of(blocks, f"{MAIN}:5").label == f"Match Address 10.0.0.0/8 at {MAIN}:4"
    assert ex.block_of(blocks, f"{MAIN}:1") is None and ex.block_of(blocks, "default") is None


@pytest.mark.parametrize("text,role,rank,block_line", [
    # the LAN gets no passwords, the internet the global yes: MK311 must see the yes
    ("PasswordAuthentication yes\nMatch Address 10.0.0.0/8\n PasswordAuthentication no\n",
     "user", 1, None),
    # a negated-only list never matches in sshd (verified with sshd -T below)
    ("PasswordAuthentication no\nMatch Address !10.0.0.0/8\n PasswordAuthentication yes\n",
     "user", 0, None),
    ("PasswordAuthentication no\nMatch Address *,!10.0.0.0/8\n PasswordAuthentication yes\n",
     "user", 1, 2),
    # the office's own public /24 is not where a stranger comes from; the world is
    ("PasswordAuthentication no\nMatch Address 198.51.100.0/24\n PasswordAuthentication yes\n",
     "user", 0, None),
    ("PasswordAuthentication no\nMatch Address 0.0.0.0/0\n PasswordAuthentication yes\n",
     "user", 1, 2),
    ("PermitRootLogin no\nMatch User root Address *,!10.0.0.0/8\n PermitRootLogin yes\n",
     "root", 3, 2),
    ("PermitRootLogin no\nMatch User *,!root\n PermitRootLogin yes\n", "root", 0, None),
    # a user name the attacker picks, a group a user of theirs is in
    ("PasswordAuthentication no\nMatch User deploy\n PasswordAuthentication yes\n", "user", 1, 2),
    ("PasswordAuthentication no\nMatch Group wheel\n PasswordAuthentication yes\n", "user", 1, 2),
    # local address and port are the server's, not the attacker's
    ("PasswordAuthentication no\nMatch LocalPort 2222\n PasswordAuthentication yes\n", "user", 0, None),
    ("PasswordAuthentication no\nMatch LocalPort 22\n PasswordAuthentication yes\n", "user", 1, 2),
    ("PasswordAuthentication no\nMatch LocalAddress 10.0.0.1\n PasswordAuthentication yes\n",
     "user", 0, None),
    ("PasswordAuthentication no\nMatch RDomain blue\n PasswordAuthentication yes\n", "user", 0, None),
    # Host is the address unless UseDNS yes
    ("PasswordAuthentication no\nMatch Host *.corp.example\n PasswordAuthentication yes\n",
     "user", 0, None),
    # an earlier block that turns it off for some strangers does not hide a later one
    ("PasswordAuthentication no\nMatch Address 100.0.0.0/8\n PasswordAuthentication no\n"
     "Match All\n PasswordAuthentication yes\n", "user", 1, 4),
])
def test_worst_stranger(text, role, rank, block_line):
    j = judge(text, role)
    assert j.rank == rank, (j.candidate, j.cfg.values)
    assert (j.block.line if j.block else None) == block_line
    if j.block:
        assert ex.describe(j, "X").startswith(f"Match {j.block.criteria} at {MAIN}:{block_line} gives X")


def test_localport_where_sshd_listens_and_host_with_usedns():
    text = "PasswordAuthentication no\nMatch LocalPort 2222\n PasswordAuthentication yes\n"
    assert judge(text, "user", ex.Reach(("203.0.113.5",), (22, 2222))).rank == 1
    text = "PasswordAuthentication no\nMatch Host *.example\n PasswordAuthentication yes\n"
    assert judge(text, "user").rank == 0
    assert judge(text, "user", ex.Reach(("203.0.113.5",), (22,), usedns=True)).rank == 0
    text = "UseDNS yes\n" + text  # sshd matches Match Host against the name only then
    assert judge(text, "user", ex.Reach(("203.0.113.5",), (22,), usedns=True)).rank == 1


def test_wide_networks_give_an_address_inside():
    addrs = ex.stranger_addresses("2000::/3,!10.0.0.0/8,64.0.0.0/2")
    assert any(a.startswith("2") and ":" in a and a not in ex.STRANGER_ADDRESSES for a in addrs)
    import ipaddress
    assert all(ipaddress.ip_address(a).is_global for a in addrs)


# --- integration: the real sshd -------------------------------------------------------------


def real_sshd_T(sb, spec: str) -> dict[str, str]:
    """sshd -T -C SPEC as the sandbox's sshd sees its files and users."""
    etc = sb.etc_dir
    argv = [UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c",
            sb._mount_script() + _MOUNT_AND_RUN, "sh", str(etc / "passwd"), str(etc / "group"),
            str(etc / "shadow"), SSHD, "-T", "-C", spec, "-f", sb.sshd_config_in_namespace]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return sc.parse_sshd_t(done.stdout)


def checks_of(sb, netns=None, only="MK310,MK311"):
    report, _ = json_report(
        "--ssh-config", str(sb.client_dir / "ssh_config"), "--host", "sandbox",
        "--only", only, "--offline", "--sshd-config", str(sb.sshd_config_path), netns=netns)
    return by_id(report)


@pytest.fixture
def lan(netns_factory):
    """A server on a LAN (10.77.0.1, we come from 10.77.0.2) that also has a public
    address: reachable from the internet, so MK311 warns about passwords."""
    server, client = netns_factory("mkxs"), netns_factory("mkxc")
    ln = link(server, client, "10.77.0.1/24", "10.77.0.2/24")
    server.exec(["ip", "addr", "add", "203.0.113.5/32", "dev", "lo"])
    return server, client, ln


CASES = {
    # (drop-in, Match blocks at the end of sshd_config, check, status, what the summary names)
    "lan-off-internet-on": ("PasswordAuthentication yes",
                            "Match Address 10.0.0.0/8\n  PasswordAuthentication no\n",
                            "MK311", "warn", "PasswordAuthentication yes"),
    "internet-only-on": ("", "Match Address *,!10.0.0.0/8\n  PasswordAuthentication yes\n",
                         "MK311", "warn", "Match Address *,!10.0.0.0/8 at "),
    "negated-only-never-matches": ("", "Match Address !10.0.0.0/8\n  PasswordAuthentication yes\n",
                                   "MK311", "pass", "password logins are off"),
    "root-from-outside": ("", "Match User root Address *,!10.0.0.0/8\n  PermitRootLogin yes\n",
                          "MK310", "fail", "Match User root Address *,!10.0.0.0/8 at "),
    "root-from-lan-only": ("", "Match User root Address 10.0.0.0/8\n  PermitRootLogin yes\n",
                           "MK310", "pass", "PermitRootLogin no"),
    "group": ("", "Match Group {group}\n  PasswordAuthentication yes\n",
              "MK311", "warn", "Match Group {group} at "),
    "localport-not-listening": ("", "Match LocalPort 1\n  PasswordAuthentication yes\n",
                                "MK311", "pass", "password logins are off"),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(CASES))
def test_stranger_worst_case_is_what_the_real_sshd_applies(lan, sandbox_factory, case):
    server, client, ln = lan
    dropin, blocks, check, status, needle = CASES[case]
    sb = sandbox_factory(netns=server.name, address=ln.addr_a)
    blocks, needle = (s.format(group=sb.user) for s in (blocks, needle))  # uid == gid name
    sb.extra_config = blocks
    sb._write_sshd_config()
    if dropin:
        sb.add_dropin("30-site", dropin)
    sb.check_config()
    sb.reload()
    result = checks_of(sb, netns=client.name)[check]
    assert result["status"] == status, result
    assert needle in result["summary"], result
    import re

    worst = re.search(r"sshd -T -C (\S+) gives (\w+) (\S+) \(from (\S+)\)", " ".join(result["details"]))
    assert worst, result["details"]
    spec, keyword, want, origin = worst.groups()
    assert "addr=10." not in spec  # a stranger, not us
    real = real_sshd_T(sb, spec)
    assert keyword == ("permitrootlogin" if check == "MK310" else "passwordauthentication")
    assert sc.normalise(keyword, real[keyword]) == want, (spec, real[keyword], want)
    if "Match " in needle:  # the line named is the block's line that sets it
        path, _, line = origin.rpartition(":")
        assert path == str(sb.sshd_config_path)
        text = sb.sshd_config_path.read_text().splitlines()
        assert text[int(line) - 1].strip().lower() == f"{keyword} {want}"
        assert f"at {path}:{int(line) - 1} gives" in result["summary"]
    # our own connection (from the LAN) really gets something else where the fault is
    # a LAN/internet difference: the check would have passed judging our login
    if case in ("lan-off-internet-on", "internet-only-on", "root-from-outside"):
        ours = real_sshd_T(sb, spec.replace(f"addr={spec.split('addr=')[1].split(',')[0]}",
                                            f"addr={ln.addr_b}")
                           .replace(f"host={spec.split('host=')[1].split(',')[0]}",
                                    f"host={ln.addr_b}"))
        assert sc.normalise(keyword, ours[keyword]) != want


@pytest.mark.integration
@pytest.mark.parametrize("case", ["lan-off-internet-on", "root-from-outside"])
def test_the_servers_own_sshd_T_answers_for_every_stranger(lan, sandbox_factory, case):
    """With sudo -n allowed, sshd -T -C answers for each connection (one ssh run); the
    file and line still come from the evaluation, and the verdict is the same."""
    server, client, ln = lan
    dropin, blocks, check, status, needle = CASES[case]
    sb = sandbox_factory(netns=server.name, address=ln.addr_a, sudo=True, extra_config=blocks)
    if dropin:
        sb.add_dropin("30-site", dropin)
    sb.reload()
    result = checks_of(sb, netns=client.name)[check]
    assert result["status"] == status, result
    assert needle in result["summary"], result
    assert "sshd -T (the server's own answer) via sudo" in " ".join(result["details"]), result


@pytest.mark.integration
def test_the_report_says_when_the_drop_in_would_not_win(lan, sandbox_factory):
    """The main file sets PasswordAuthentication before its Include: MK311 warns, and
    says (predicted by the evaluator with the drop-in added) that a drop-in line would
    not win; the real sshd -T for the stranger agrees that the main file's line applies.
    A sudo sandbox: its sshd reads /etc/ssh/sshd_config.d, the drop-in's directory."""
    server, client, ln = lan
    sb = sandbox_factory(netns=server.name, address=ln.addr_a, sudo=True)
    sb.sshd_config_path.write_text("PasswordAuthentication yes\n" + sb.sshd_config_path.read_text())
    sb.add_dropin("0-mkdoctor", "PasswordAuthentication no")  # what the fix would add
    sb.check_config()
    sb.reload()
    result = checks_of(sb, netns=client.name, only="MK311")["MK311"]
    assert result["status"] == "warn", result
    text = " ".join(result["details"])
    assert ("a line in mkdoctor's drop-in would not win: " + str(sb.sshd_config_path)
            + " sets PasswordAuthentication at line 1, before its Include at line 2") in text, text
    assert f"change line 1 of {sb.sshd_config_path}" in result["fix"]
    spec = f"user={sb.user},host=100.42.17.9,addr=100.42.17.9,laddr=203.0.113.5,lport={sb.port}"
    assert real_sshd_T(sb, spec)["passwordauthentication"] == "yes"
