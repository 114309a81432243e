"""The keyword tables (mkdoctor/openssh/keywords.py) against the real sshd of this machine.

For every keyword some OpenSSH release or vendor build knows (and a few no build knows),
the real ``sshd -T`` is asked what it makes of a line with that keyword, globally and
inside a Match block, and its answer must be what :func:`keyword_status` says for this
build: "Bad configuration option" for an unknown keyword, "Deprecated option" for a
deprecated one, "Unsupported option" for a compiled-out one, "not allowed within a Match
block" for a global-only one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mkdoctor.openssh.keywords import (DEPRECATED, IGNORED, OPTION, UNKNOWN, UNSUPPORTED,
                                       ServerBuild, VENDOR_FEATURES, canonical_keywords,
                                       keyword_status, parse_banner)

SSHD = "/usr/sbin/sshd"
LOCAL_BUILD = parse_banner(subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr)
NEVER_KNOWN = ["mkdoctorbogus", "useroaming", "hostkeyfile2", "permitrootlogins"]


@pytest.fixture(scope="module")
def hostkey(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kw")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "hk")],
                   check=True, capture_output=True)
    return d


def ask(hostkey: Path, text: str) -> str:
    (hostkey / "c").write_text(text)
    done = subprocess.run([SSHD, "-T", "-f", str(hostkey / "c"), "-h", str(hostkey / "hk"),
                           "-C", "user=nobody,host=h,addr=192.0.2.1"],
                          capture_output=True, text=True, timeout=20)
    return done.stderr


def seen(stderr: str) -> str:
    if "Bad configuration option" in stderr:
        return UNKNOWN
    if "Deprecated option" in stderr:
        return DEPRECATED
    if "Unsupported option" in stderr:
        return UNSUPPORTED
    return OPTION


def test_banner_names_the_build():
    b = parse_banner("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6")
    assert (b.version, b.vendor) == ((9, 2), "debian")
    assert parse_banner("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5").vendor == "debian"
    plain = parse_banner("SSH-2.0-OpenSSH_8.7")  # RHEL 9: Red Hat adds nothing to the banner
    assert (plain.version, plain.vendor, plain.features) == ((8, 7), "", None)
    assert parse_banner("SSH-2.0-OpenSSH_8.7", vendor="redhat").features == VENDOR_FEATURES["redhat"]
    assert parse_banner("garbage") == ServerBuild(banner="garbage")


def test_release_history():
    """Facts read from servconf.c of each release."""
    assert keyword_status("requiredrsasize", parse_banner("OpenSSH_9.0")).kind == UNKNOWN
    assert keyword_status("requiredrsasize", parse_banner("OpenSSH_9.1")).kind == OPTION
    assert keyword_status("useprivilegeseparation", parse_banner("OpenSSH_7.4")).kind == OPTION
    assert keyword_status("useprivilegeseparation", parse_banner("OpenSSH_7.5")).kind == DEPRECATED
    assert keyword_status("protocol", parse_banner("OpenSSH_10.0")).kind == IGNORED
    assert keyword_status("pamauthenticationviakbdint", parse_banner("OpenSSH_10.4")).kind == UNKNOWN
    unknown = keyword_status("pamauthenticationviakbdint")
    assert unknown.kind == "depends" and unknown.may_refuse and "removed after" in unknown.why
    assert keyword_status("rsaauthentication").kind == DEPRECATED  # in every release
    assert keyword_status("subsystem", parse_banner("OpenSSH_9.4")).in_match is False
    assert keyword_status("subsystem", parse_banner("OpenSSH_9.5")).in_match is True


def test_vendor_keywords():
    debian = parse_banner("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6")
    redhat = ServerBuild((8, 7), "redhat", VENDOR_FEATURES["redhat"])
    upstream = ServerBuild((9, 9), "upstream", frozenset())
    assert keyword_status("debianbanner", debian).kind == OPTION
    assert keyword_status("debianbanner", redhat).kind == UNKNOWN
    assert keyword_status("kerberosusekuserok", redhat).kind == OPTION
    assert keyword_status("kerberosusekuserok", debian).kind == UNKNOWN
    assert keyword_status("gssapiauthentication", upstream).kind == UNSUPPORTED
    assert keyword_status("gssapiauthentication", redhat).kind == OPTION
    vague = keyword_status("gssapienablek5users")
    assert vague.kind == "depends" and vague.may_refuse and "Red Hat" in vague.why


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="sshd -T needs root")
def test_every_keyword_as_this_sshd_treats_it(hostkey):
    """Each keyword, globally and in a Match block, as the real sshd treats it."""
    wrong = []
    counts: dict[str, int] = {}
    for kw in sorted(canonical_keywords()) + NEVER_KNOWN:
        if kw in ("match", "include"):
            continue
        status = keyword_status(kw, LOCAL_BUILD)
        got = seen(ask(hostkey, f"{kw} no\n"))
        want = status.kind if status.kind != IGNORED else OPTION  # sIgnore logs at debug2
        counts[want] = counts.get(want, 0) + 1
        if got != want:
            wrong.append(f"{kw}: sshd {got}, table {status.kind}")
        if status.kind == UNKNOWN:
            continue
        in_match = "not allowed within a Match block" not in ask(
            hostkey, f"Match User nobody\n  {kw} no\n")
        if in_match != status.in_match:
            wrong.append(f"{kw}: in Match sshd {in_match}, table {status.in_match}")
    print(f"\nkeywords checked against {LOCAL_BUILD.describe()}: {counts}")
    assert not wrong, "\n".join(wrong)
