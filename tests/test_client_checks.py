"""MK201 ssh-client, MK203 local-ports, MK204 local-firewall — run as a user would.

The faults are real: a PATH without ssh, a fake old ``ssh`` first on PATH, a port held
by a real listening process, iptables/nftables rules inside a network namespace, and an
unprivileged user who cannot read the rules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from mkdoctor import firewall
from mkdoctor.checks.mk201_ssh_client import lacks, parse_version
from tests.helpers import ROOT, by_id, free_port_pair, json_report, mkdoctor_env

# --- MK201 ssh-client ------------------------------------------------------------------


def mk201(env: dict[str, str]) -> dict:
    report, _ = json_report("--only", "MK201", env=env)
    return by_id(report)["MK201"]


def test_mk201_passes_with_the_system_ssh():
    check = mk201({})
    assert check["status"] == "pass"
    assert check["summary"].startswith("OpenSSH_")


def test_mk201_fails_when_ssh_is_not_on_path(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    check = mk201({"PATH": str(empty)})
    assert check["status"] == "fail"
    assert "not found on PATH: ssh, ssh-keygen" in check["summary"]
    assert "apt install openssh-client" in check["fix"]


def test_mk201_fails_when_only_ssh_keygen_is_missing(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").symlink_to(shutil.which("ssh"))
    check = mk201({"PATH": str(bindir)})
    assert check["status"] == "fail"
    assert check["summary"] == "not found on PATH: ssh-keygen"


def test_mk201_warns_for_an_old_openssh(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ssh"
    fake.write_text("#!/bin/sh\necho 'OpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017' >&2\n")
    fake.chmod(0o755)
    check = mk201({"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert check["status"] == "warn"
    assert "OpenSSH_7.4p1" in check["summary"] and "accept-new" in check["summary"]
    assert "ProxyJump" not in check["summary"]  # 7.4 has it
    assert check["fix"].startswith("upgrade the OpenSSH client")


def test_mk201_warns_for_a_non_openssh_client(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ssh"
    fake.write_text("#!/bin/sh\necho 'Dropbear v2022.83' >&2\n")
    fake.chmod(0o755)
    check = mk201({"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert check["status"] == "warn"
    assert "not OpenSSH" in check["summary"]


def test_parse_version():
    assert parse_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15") == (9, 2, "OpenSSH_9.2p1")
    assert parse_version("OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2") == (8, 1, "OpenSSH_for_Windows_8.1p1")
    assert parse_version("OpenSSH_10.0p2, OpenSSL 3.5") == (10, 0, "OpenSSH_10.0p2")
    assert parse_version("Dropbear v2022.83") is None
    assert lacks((7, 2)) == ["ProxyJump / ssh -J", "StrictHostKeyChecking accept-new"]
    assert lacks((7, 6)) == [] and lacks((10, 0)) == []


# --- MK203 local-ports -----------------------------------------------------------------


@pytest.fixture
def holder():
    """``start(port, host)``: a real child process listening on host:port; killed after."""
    procs: list[subprocess.Popen] = []

    def start(port: int, host: str = "127.0.0.1") -> subprocess.Popen:
        code = ("import socket, sys, time\n"
                "s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
                "print('ready', flush=True); time.sleep(120)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, host, str(port)],
                                stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=5)


def mk203(*args: str) -> dict:
    report, _ = json_report("--only", "MK203", "--offline", *args)
    return by_id(report)["MK203"]


def test_mk203_free_ports_pass():
    p1, p2 = free_port_pair()
    check = mk203("--mode", "tunnel", "--link-ports", f"{p1},{p2}")
    assert check["status"] == "pass"
    assert check["summary"] == f"ports {p1} and {p2} are free on 127.0.0.1"


def test_mk203_port_held_by_a_process_fails_naming_it(holder):
    p1, p2 = free_port_pair()
    proc = holder(p2)
    check = mk203("--mode", "tunnel", "--link-ports", f"{p1},{p2}")
    assert check["status"] == "fail"
    assert f"port {p2} already in use: PID {proc.pid}" in check["summary"]
    assert check["fix"].startswith(f"kill {proc.pid}")
    assert any(f"PID {proc.pid}" in d and "socket.socket()" in d for d in check["details"])


def test_mk203_direct_mode_sees_a_loopback_listener_when_binding_all(holder):
    """Direct mode binds 0.0.0.0: a listener on 127.0.0.1 blocks it too."""
    p1, p2 = free_port_pair()
    proc = holder(p1)
    check = mk203("--mode", "direct", "--link-ports", f"{p1},{p2}")
    assert check["status"] == "fail"
    assert str(proc.pid) in check["summary"]


def test_mk203_link_host_not_local_falls_back(holder):
    p1, p2 = free_port_pair()
    check = mk203("--mode", "direct", "--link-host", "192.0.2.77", "--link-ports", f"{p1},{p2}")
    assert check["status"] == "pass"
    assert any("not an address of this computer" in d for d in check["details"])


@pytest.mark.integration
def test_mk203_owner_invisible_to_an_unprivileged_user(holder):
    """A port held by root, checked by nobody: the owner cannot be named; say so."""
    python = unprivileged_python()
    p1, p2 = free_port_pair()
    holder(p1)
    done = run_as_nobody(python, "--only", "MK203", "--mode", "tunnel", "--link-ports", f"{p1},{p2}")
    check = by_id(done)["MK203"]
    assert check["status"] == "fail"
    assert "administrator rights" in check["summary"]
    assert "lsof" in check["fix"]


# --- MK204 local-firewall ----------------------------------------------------------------


# A normal user's PATH on Debian and Ubuntu: no sbin directory, where iptables and nft live.
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


def mk204_in(ns, *args: str, env: dict[str, str] | None = None) -> dict:
    report, _ = json_report("--only", "MK204", "--offline", "--link-ports", "31415,31416",
                            *args, netns=ns.name, env=env)
    return by_id(report)["MK204"]


@pytest.mark.integration
def test_mk204_iptables_policy_drop_warns_then_accept_rules_pass(netns_factory):
    ns = netns_factory()
    assert mk204_in(ns, "--mode", "direct")["status"] == "pass"  # empty ruleset
    ns.iptables("-P", "INPUT", "DROP")
    check = mk204_in(ns, "--mode", "direct")
    assert check["status"] == "warn"
    assert "iptables looks closed" in check["summary"] and "policy DROP" in check["summary"]
    assert check["fix"] == ("sudo iptables -I INPUT -p tcp --dport 31415 -j ACCEPT && "
                            "sudo iptables -I INPUT -p tcp --dport 31416 -j ACCEPT")
    ns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "31415", "-j", "ACCEPT")
    assert mk204_in(ns, "--mode", "direct")["status"] == "warn"  # one port is still closed
    ns.iptables("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "31416,8080", "-j", "ACCEPT")
    check = mk204_in(ns, "--mode", "direct")
    assert check["status"] == "pass", check


@pytest.mark.integration
def test_mk204_the_fix_command_opens_the_ports(netns_factory):
    ns = netns_factory()
    ns.iptables("-P", "INPUT", "DROP")
    check = mk204_in(ns, "--mode", "direct")
    assert check["status"] == "warn"
    for part in check["fix"].split(" && "):
        argv = part.split()
        assert argv[:2] == ["sudo", "iptables"]
        ns.iptables(*argv[2:])
    assert mk204_in(ns, "--mode", "direct")["status"] == "pass"


@pytest.mark.integration
def test_mk204_reject_rule_at_the_end_warns(netns_factory):
    ns = netns_factory()
    ns.iptables("-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    ns.iptables("-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    ns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    ns.iptables("-A", "INPUT", "-j", "REJECT")
    check = mk204_in(ns, "--mode", "direct")
    assert check["status"] == "warn"
    assert "rejected by" in check["summary"]


@pytest.mark.integration
def test_mk204_native_nftables_drop_warns(netns_factory):
    ns = netns_factory()
    ruleset = ("table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n"
               "  ct state established,related accept\n  iifname \"lo\" accept\n"
               "  tcp dport 22 accept\n }\n}\n")
    ns.exec(["nft", "-f", "-"], input=ruleset)
    check = mk204_in(ns, "--mode", "direct")
    assert check["status"] == "warn"
    assert "nftables looks closed" in check["summary"]
    assert check["fix"] == "sudo nft insert rule inet filter input tcp dport { 31415, 31416 } accept"
    ns.exec(["nft", "insert", "rule", "inet", "filter", "input", "tcp", "dport", "{ 31415, 31416 }", "accept"])
    assert mk204_in(ns, "--mode", "direct")["status"] == "pass"


@pytest.mark.integration
def test_mk204_skips_in_tunnel_mode(netns_factory):
    ns = netns_factory()
    ns.iptables("-P", "INPUT", "DROP")
    check = mk204_in(ns, "--mode", "tunnel")
    assert check["status"] == "skip"
    assert "tunnel mode" in check["summary"]


@pytest.mark.integration
def test_mk204_skips_when_the_rules_cannot_be_read():
    """Not root, with a user's PATH (no sbin): iptables and nft are still found, and
    refuse; MK204 skips with the reason, never fails."""
    python = unprivileged_python()
    report = run_as_nobody(python, "--only", "MK204", "--mode", "direct", PATH=USER_PATH)
    check = by_id(report)["MK204"]
    assert check["status"] == "skip", check
    assert "cannot read the firewall rules" in check["summary"]
    assert "Permission denied" in check["summary"] or "not permitted" in check["summary"]
    assert "sudo mkdoctor --only MK204" in check["fix"]


@pytest.mark.integration
def test_mk204_finds_the_firewall_outside_a_users_path(netns_factory):
    """iptables lives in /usr/sbin, which a Debian user's PATH lacks: it is found anyway."""
    assert not any(Path(d, "iptables").exists() for d in USER_PATH.split(":")), \
        "iptables is on the user PATH here: this test would prove nothing"
    ns = netns_factory()
    ns.iptables("-P", "INPUT", "DROP")
    check = mk204_in(ns, "--mode", "direct", env={"PATH": USER_PATH})
    assert check["status"] == "warn", check
    assert "iptables looks closed" in check["summary"]
    assert check["fix"].startswith("sudo iptables -I INPUT -p tcp --dport 31415 -j ACCEPT")


@pytest.mark.integration
def test_mk204_no_firewall_program_skips_with_a_fix(tmp_path):
    """No firewall program anywhere (the sbin directories hidden by empty mounts in a
    mount namespace of its own): skip, and the fix says what to do."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a mount namespace")
    hide = [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin")
            if os.path.isdir(d) and not os.path.islink(d)]
    script = "".join(f"mount -t tmpfs none {d} && " for d in hide) + 'exec "$@"'
    env = mkdoctor_env(tmp_path, PATH=USER_PATH)
    done = subprocess.run(
        ["unshare", "--mount", "--", "/bin/sh", "-c", script, "sh", sys.executable, "-m", "mkdoctor",
         "--only", "MK204", "--offline", "--mode", "direct", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    try:
        check = by_id(json.loads(done.stdout))["MK204"]
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON:\n{done.stdout}\n{done.stderr}") from None
    assert check["status"] == "skip", check
    assert check["summary"].startswith("no firewall found to read")
    assert "sudo nft list ruleset" in check["fix"] and "31415 and 31416" in check["fix"]


# --- MK205 local-sshd: a program named sshd that another user started ---------------------------

# Stands for an attacker's program named sshd: run with -T, as MK205 runs an sshd, it leaves
# a marker and claims a safe configuration; otherwise it waits, like a server.
FAKE_SSHD = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-T")) {
            FILE *f = fopen(MARKER, "w");
            if (f) fclose(f);
            puts("permitrootlogin no\npasswordauthentication no");
            return 0;
        }
    sleep(120);
    return 0;
}
"""


def fake_sshd_block(details: list[str], pid: int) -> list[str]:
    """MK205's detail lines about the server with this pid (its line and the indented ones)."""
    start = next((i for i, d in enumerate(details) if d.startswith(f"sshd pid {pid} (")), None)
    assert start is not None, details
    block = [details[start]]
    for d in details[start + 1:]:
        if not d.startswith(" "):
            break
        block.append(d)
    return block


@pytest.mark.integration
@pytest.mark.parametrize("case", ["nobody's program", "root's program in a world-writable directory",
                                  "root's program in root's directory"])
def test_mk205_never_runs_another_users_sshd(tmp_path, case):
    """Root runs MK205 while the user nobody runs a program named sshd: that program is not
    run (it would run as root); its -f file is still judged. The control case — the same
    program where only root can change it — is run, so the marker does detect a run."""
    import pwd
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("gcc"):
        pytest.skip("needs root, setpriv and gcc")
    marker = tmp_path / "ran-as-root"
    source = tmp_path / "fake_sshd.c"
    source.write_text(FAKE_SSHD)
    trusted = case == "root's program in root's directory"
    where = Path(tempfile.mkdtemp(prefix="mkd-fake-sshd-",
                                  dir=pwd.getpwuid(0).pw_dir if trusted else None))
    proc = None
    try:
        os.chmod(where, 0o700 if trusted else 0o777)
        fake, config = where / "sshd", where / "sshd_config"
        subprocess.run(["gcc", "-O", f'-DMARKER="{marker}"', "-o", str(fake), str(source)], check=True)
        config.write_text("PermitRootLogin yes\nPasswordAuthentication no\n")
        os.chmod(fake, 0o755)
        os.chmod(config, 0o644)
        if case == "nobody's program":
            os.chown(fake, 65534, 65534)
            os.chown(config, 65534, 65534)
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 str(fake), "-D", "-f", str(config)], stdin=subprocess.DEVNULL)
        for _ in range(100):
            try:
                if os.readlink(f"/proc/{proc.pid}/exe") == str(fake):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the fake sshd did not start")
        report, _ = json_report("--only", "MK205", "--offline")
        check = by_id(report)["MK205"]
        block = fake_sshd_block(check["details"], proc.pid)
        if trusted:  # the control: this program may be run, and it was
            assert marker.exists(), block
            assert any("source: sshd -T on this computer" in d for d in block), block
            return
        assert not marker.exists(), f"{fake} was run as root: {block}"
        assert check["status"] == "fail", check
        assert block[1].startswith("  fail: root may log in"), block
        why = ("belongs to nobody (uid 65534), not to root or you" if case == "nobody's program"
               else f"the directory {where} is writable by group or others (mode 0777)")
        source_line = next(d for d in block if "source:" in d)
        assert f"its program {fake} was not run as sshd -T: " in source_line, block
        assert why in source_line, source_line
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(where, ignore_errors=True)


def test_trusted_binary_follows_sshds_strict_modes(tmp_path):
    """The rule on real files: a program others can change is never run."""
    from mkdoctor.checks.mk205_local_sshd import trusted_binary

    assert trusted_binary("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else sys.executable)[1] == ""
    assert "not an absolute path" in trusted_binary("sshd")[1]
    safe = Path(os.path.realpath(tmp_path)) / "bin"
    safe.mkdir(mode=0o755)
    prog = safe / "sshd"
    prog.write_bytes(b"#!/bin/sh\n")
    prog.chmod(0o775)
    assert "writable by group or others (mode 0775)" in trusted_binary(str(prog))[1]
    link = tmp_path / "link-to-sshd"
    link.symlink_to(prog)
    # a link is resolved: the file it names is judged (and, when safe, is what runs)
    assert trusted_binary(str(link)) == trusted_binary(str(prog))
    prog.chmod(0o755)
    safe.chmod(0o777)
    assert trusted_binary(str(prog))[1] == f"the directory {safe} is writable by group or others (mode 0777)"
    assert "not a regular file" in trusted_binary(str(safe))[1]


# --- running as an unprivileged user ---------------------------------------------------------


def unprivileged_python() -> str:
    """A Python the user nobody can execute (the venv's may live under /root)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.path.exists(candidate):
            continue
        ok = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             candidate, "-c", "pass"], capture_output=True)
        if ok.returncode == 0:
            return candidate
    pytest.fail(f"no {version} interpreter is executable by the user nobody")


def run_as_nobody(python: str, *args: str, **env_extra: str) -> dict:
    """Run mkdoctor as the user nobody. The checkout and the venv may live where nobody
    cannot read (under /root): the package and psutil are copied into a world-readable
    temporary directory first, so the test does not depend on where CI clones the repo."""
    import tempfile

    import psutil

    base = Path(tempfile.mkdtemp(prefix="mkd-nobody-"))
    try:
        os.chmod(base, 0o755)
        src, site, cfg = base / "src", base / "site", base / "cfg"
        # the installed layout: mkdoctor/ with checks/, wizard/ and the docs pages inside
        shutil.copytree(ROOT / "mkdoctor", src / "mkdoctor")
        shutil.copytree(ROOT / "checks", src / "mkdoctor" / "checks")
        shutil.copytree(ROOT / "wizard", src / "mkdoctor" / "wizard")
        shutil.copytree(ROOT / "docs" / "checks", src / "mkdoctor" / "docpages")
        shutil.copytree(Path(psutil.__file__).parent, site / "psutil")
        cfg.mkdir()
        for d in (base, *base.rglob("*")):
            os.chmod(d, 0o777 if d == cfg else (0o755 if d.is_dir() else 0o644))
        env = mkdoctor_env(cfg, **{"HOME": "/tmp", **env_extra})
        env["PYTHONPATH"] = os.pathsep.join([str(src), str(site)])
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m", "mkdoctor",
             "--offline", "--format", "json", *args],
            capture_output=True, text=True, env=env, cwd="/tmp", timeout=60, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON:\n{done.stdout}\n{done.stderr}") from None


# --- firewall readers (pure) -------------------------------------------------------------------

IPTABLES_RHEL = """-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
"""

IPTABLES_CHAINS = """-P INPUT DROP
-N ufw-user-input
-N mk-ports
-A INPUT -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 31415:31416 -j mk-ports
-A mk-ports -m comment --comment "link ports" -j ACCEPT
"""


def test_iptables_reader():
    assert firewall.iptables_port_state(IPTABLES_RHEL, 31415)[0] == firewall.CLOSED
    assert firewall.iptables_port_state(IPTABLES_RHEL, 22)[0] == firewall.OPEN
    assert firewall.iptables_port_state(IPTABLES_CHAINS, 31416)[0] == firewall.OPEN
    assert firewall.iptables_port_state(IPTABLES_CHAINS, 31417)[0] == firewall.CLOSED
    assert firewall.iptables_port_state("-P INPUT ACCEPT\n", 31415)[0] == firewall.OPEN
    restricted = "-P INPUT DROP\n-A INPUT -s 10.0.0.0/8 -p tcp --dport 31415 -j ACCEPT\n"
    assert firewall.iptables_port_state(restricted, 31415)[0] == firewall.UNKNOWN
    ret = "-P INPUT DROP\n-N c\n-A INPUT -j c\n-A c -j RETURN\n-A c -j ACCEPT\n"
    assert firewall.iptables_port_state(ret, 31415)[0] == firewall.CLOSED


NFT_IPTABLES = """table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy drop;
		tcp dport 31415 counter packets 0 bytes 0 accept
		meta l4proto tcp tcp dport { 31416, 5000 } counter packets 0 bytes 0 accept
	}
}
"""

NFT_NATIVE = """table inet filter {
	set allowed {
		type inet_service
		elements = { 22, 80 }
	}

	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif "lo" accept
		udp dport 31415 accept
		tcp dport @allowed accept
		jump ports
	}

	chain ports {
		tcp dport 31415-31416 accept comment "link ports"
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
table ip6 filter {
	chain INPUT {
		type filter hook input priority filter; policy drop;
	}
}
"""


def test_nft_reader():
    assert firewall.nft_port_state(NFT_IPTABLES, 31415)[0] == firewall.OPEN
    assert firewall.nft_port_state(NFT_IPTABLES, 31416)[0] == firewall.OPEN
    assert firewall.nft_port_state(NFT_IPTABLES, 31417)[0] == firewall.CLOSED
    assert firewall.nft_port_state(NFT_IPTABLES, 31417, [("ip", "filter")])[0] == firewall.OPEN
    state, reason = firewall.nft_port_state(NFT_NATIVE, 31416)
    assert state == firewall.OPEN and "inet filter ports" in reason
    assert firewall.nft_port_state(NFT_NATIVE, 9999)[0] == firewall.UNKNOWN  # @allowed set
    chains = firewall.parse_nft(NFT_NATIVE)
    assert [(c.family, c.name, c.hook, c.policy) for c in chains] == [
        ("inet", "input", "input", "drop"), ("inet", "ports", "", "accept"),
        ("inet", "forward", "forward", "drop"), ("ip6", "INPUT", "input", "drop")]


UFW_STATUS = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW IN    Anywhere
31415,31416/tcp            ALLOW IN    192.168.1.0/24
8000:8010/tcp              DENY IN     Anywhere
22/tcp (v6)                ALLOW IN    Anywhere (v6)
"""


def test_ufw_reader():
    assert firewall.ufw_port_state(UFW_STATUS, 22)[0] == firewall.OPEN
    state, reason = firewall.ufw_port_state(UFW_STATUS, 31416)
    assert state == firewall.OPEN and "192.168.1.0/24" in reason
    assert firewall.ufw_port_state(UFW_STATUS, 8005)[0] == firewall.CLOSED
    assert firewall.ufw_port_state(UFW_STATUS, 31417)[0] == firewall.CLOSED
    assert firewall.ufw_open_command([31415, 31416]) == "sudo ufw allow proto tcp to any port 31415,31416"


FIREWALLD = """public (active)
  target: default
  icmp-block-inversion: no
  interfaces: eth0
  services: dhcpv6-client ssh
  ports: 31415-31416/tcp 9000/udp
  protocols:
"""


def test_firewalld_reader():
    assert firewall.firewalld_port_state(FIREWALLD, 31416)[0] == firewall.OPEN
    assert firewall.firewalld_port_state(FIREWALLD, 9000)[0] == firewall.CLOSED
    assert firewall.firewalld_port_state(FIREWALLD.replace("default", "ACCEPT"), 1)[0] == firewall.OPEN


NETSH_PROFILE = """
Private Profile Settings:
----------------------------------------------------------------------
State                                 ON
Firewall Policy                       BlockInbound,AllowOutbound
"""

NETSH_RULES = """
Rule Name:                            Wolfram kernel link
----------------------------------------------------------------------
Enabled:                              Yes
Direction:                            In
Protocol:                             TCP
LocalPort:                            31415,31416
Action:                               Allow

Rule Name:                            Block 31416
----------------------------------------------------------------------
Enabled:                              Yes
Direction:                            In
Protocol:                             TCP
LocalPort:                            31416
Action:                               Block
"""


def test_netsh_reader():
    assert firewall.netsh_port_state(NETSH_PROFILE, NETSH_RULES, 31415)[0] == firewall.OPEN
    assert firewall.netsh_port_state(NETSH_PROFILE, NETSH_RULES, 31416)[0] == firewall.CLOSED  # block wins
    assert firewall.netsh_port_state(NETSH_PROFILE, "", 31415)[0] == firewall.CLOSED
    assert firewall.netsh_port_state(NETSH_PROFILE.replace("ON", "OFF"), "", 31415)[0] == firewall.OPEN


@given(st.integers(1, 65535), st.integers(1, 65535), st.integers(1, 65535))
def test_port_spec_ranges(lo, hi, port):
    lo, hi = min(lo, hi), max(lo, hi)
    expected = lo <= port <= hi
    assert firewall._in_spec(port, f"{lo}:{hi}") == expected
    assert firewall._in_spec(port, f"{lo}-{hi}") == expected
    assert firewall._in_spec(port, f"{{ 1, {lo}-{hi} }}") == (expected or port == 1)
