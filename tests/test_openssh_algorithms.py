"""Algorithm names (mkdoctor/openssh/algorithms.py) against the real sshd of this machine:
every name some OpenSSH release knows, for each keyword that takes it, plus names no
release knows and the list syntax (+, -, ^, wildcards), must be accepted or refused by
the evaluator as ``sshd -T`` does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mkdoctor.openssh.algorithms import KINDS, NAMES, list_verdict
from mkdoctor.openssh.keywords import UNKNOWN_BUILD, parse_banner

SSHD = "/usr/sbin/sshd"
LOCAL_BUILD = parse_banner(subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr)
KEYWORD_OF = {"kex": "KexAlgorithms", "cipher": "Ciphers", "mac": "MACs",
              "key": "PubkeyAcceptedAlgorithms"}
EXTRA = [("KexAlgorithms", "mlkem768x25519-sha256"), ("KexAlgorithms", "-nosuch"),
         ("KexAlgorithms", "+curve25519-sha256,nosuch"), ("Ciphers", "+none"),
         ("Ciphers", "^aes128-ctr"), ("MACs", "-*"), ("HostKeyAlgorithms", "ssh-ed25519*"),
         ("HostKeyAlgorithms", "nomatch*"), ("CASignatureAlgorithms", "foo"),
         ("PubkeyAcceptedKeyTypes", "+ssh-rsa"), ("KexAlgorithms", "curve25519-sha256,")]


def test_unknown_build_never_refuses_a_name_some_release_knows():
    refusal, note = list_verdict("KexAlgorithms", "mlkem768x25519-sha256", UNKNOWN_BUILD)
    assert refusal is None and "depends on the build" in note
    assert list_verdict("KexAlgorithms", "mlkem768x25519-sha256", parse_banner("OpenSSH_9.9"))[0] is None
    assert list_verdict("KexAlgorithms", "mlkem768x25519-sha256", parse_banner("OpenSSH_9.8"))[0]
    assert list_verdict("Ciphers", "arcfour", parse_banner("OpenSSH_7.5"))[0] is None
    assert list_verdict("Ciphers", "arcfour", parse_banner("OpenSSH_7.6"))[0]


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="sshd -T needs root")
def test_every_algorithm_name_as_this_sshd_treats_it(tmp_path: Path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")],
                   check=True, capture_output=True)
    cases = [(KEYWORD_OF[kind], name) for kind in NAMES for name in sorted(NAMES[kind])] + EXTRA
    assert {k.lower() for k, _ in cases} <= set(KINDS)
    wrong = []
    for keyword, arg in cases:
        (tmp_path / "c").write_text(f"{keyword} {arg}\n")
        done = subprocess.run([SSHD, "-T", "-f", str(tmp_path / "c"), "-h", str(tmp_path / "hk")],
                              capture_output=True, text=True, timeout=20)
        refusal, _ = list_verdict(keyword, arg, LOCAL_BUILD)
        if (done.returncode != 0) != bool(refusal):
            wrong.append(f"{keyword} {arg}: sshd rc={done.returncode} "
                         f"{done.stderr.strip()[:80]!r}, ours {refusal!r}")
    print(f"\n{len(cases)} algorithm lists checked against {LOCAL_BUILD.describe()}")
    assert not wrong, "\n".join(wrong)
