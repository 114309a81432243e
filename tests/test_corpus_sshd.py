"""The sshd evaluator against the real sshd on real-world files (the shared corpus).

Every main file of the corpus (``NNN-*.conf``, with its drop-ins ``NNN-*.d/`` seen as
``/etc/ssh/sshd_config.d/``; the standalone drop-ins 006, 009 and 014 as main files; the
Fedora CoreOS drop-ins 017 beside 016's, as on a real host) is given to the real
``sshd -T -C ...`` and to the evaluator, for three connections: ours (an ordinary user
from 127.0.0.1) and an attacker's (root, and a user that does not exist, from an internet
address whose host name is not known). Every keyword the product uses must agree, and
where sshd refuses a file the evaluator must say so; sshd's reason is recorded.

The real sshd reads the files at their real paths: it runs in a private mount namespace
(``unshare -m``) where a copy of the files is bind-mounted over ``/etc/ssh``; the
machine's own ``/etc/ssh`` is never touched, and the corpus (read-only) is only read.
The figures (files that agree, per connection; files refused, and why) are printed: run
with ``-s`` to see them.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mkdoctor.openssh import sshd_config as sc
from mkdoctor.openssh.keywords import ServerBuild, VENDOR_FEATURES, parse_banner
from mkdoctor.openssh.sshd_config import Connection, evaluate

CORPUS = Path("/work/shared/corpus/openssh/sshd")
SSHD = "/usr/sbin/sshd"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
LOCAL_BUILD = parse_banner(subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr)
MAIN = "/etc/ssh/sshd_config"
DROPINS = "/etc/ssh/sshd_config.d"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root"),
    pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not on this machine"),
]


def _ordinary_user() -> pwd.struct_passwd:
    users = [p for p in pwd.getpwall() if 1000 <= p.pw_uid < 60000]
    return users[0] if users else pwd.getpwnam("nobody")


def _groups(name: str) -> tuple[str, ...]:
    import grp

    pw = pwd.getpwnam(name)
    return tuple(grp.getgrgid(g).gr_name for g in os.getgrouplist(name, pw.pw_gid))


USER = _ordinary_user().pw_name
SERVER_ADDR = "203.0.113.10"  # the server's public address, as the attacker reaches it
CONNECTIONS = {
    "ours": Connection(USER, "127.0.0.1", "127.0.0.1", "127.0.0.1", 22, _groups(USER)),
    "attacker-root": Connection("root", "198.51.100.7", "198.51.100.7", SERVER_ADDR, 22,
                                _groups("root")),
    "attacker-user": Connection("mkdnosuchuser", "198.51.100.7", "198.51.100.7", SERVER_ADDR,
                                22, ()),
}


@dataclass
class Case:
    """One configuration as sshd sees it: path under /etc/ssh -> the corpus file."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)  # synthetic files (017's main)
    links: dict[str, str] = field(default_factory=dict)  # path -> symlink target


def _dropins(case: Case, folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            case.files[f"{DROPINS}/{path.relative_to(folder)}"] = path


def cases() -> list[Case]:
    out: list[Case] = []
    for main in sorted(CORPUS.glob("[0-9][0-9][0-9]-*.conf")):
        case = Case(main.stem, {MAIN: main})
        folder = main.with_suffix(".d")
        if main.stem.startswith("009-"):
            # macOS: /etc/ssh/crypto.conf is a symlink to crypto/apple.conf
            for path in sorted((folder / "crypto").glob("*")):
                case.files[f"/etc/ssh/crypto/{path.name}"] = path
            case.links["/etc/ssh/crypto.conf"] = "crypto/apple.conf"
        elif folder.is_dir():
            _dropins(case, folder)
        out.append(case)
    # Fedora CoreOS: 017's drop-ins sit beside 016's 50-redhat.conf, under 016's main file
    fedora = next(c for c in out if c.name.startswith("016-"))
    coreos = Case("017-fedora-coreos-overlay-dropins+016", dict(fedora.files))
    _dropins(coreos, CORPUS / "017-fedora-coreos-overlay-dropins.d")
    out.append(coreos)
    return out


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def mapping(case: Case) -> dict[str, str]:
    files = {p: _read(src) for p, src in case.files.items()}
    files.update(case.text)
    for link, target in case.links.items():
        files[link] = files[str(Path(link).parent / target)]
    return files


# Runs inside a private mount namespace: nothing mounted here is seen outside it.
_RUN = 'mount --make-rprivate / && mount --bind "$1" /etc/ssh && shift && exec "$@"'


def sshd_t(root: Path, conn: Connection, usedns: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [UNSHARE, "-m", "sh", "-c", _RUN, "sh", str(root / "etc-ssh"), SSHD, "-T",
         "-f", MAIN, "-h", "/etc/ssh/mkd_test_hostkey", "-C", conn.spec(usedns)],
        capture_output=True, text=True, timeout=30)


def materialise(case: Case, root: Path) -> None:
    etc = root / "etc-ssh"
    etc.mkdir()
    for path, src in case.files.items():
        dest = etc / Path(path).relative_to("/etc/ssh")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)  # a copy: the corpus is never written
    for path, text in case.text.items():
        (etc / Path(path).relative_to("/etc/ssh")).write_text(text)
    for link, target in case.links.items():
        os.symlink(target, etc / Path(link).relative_to("/etc/ssh"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(etc / "mkd_test_hostkey")], check=True, capture_output=True)


def refusal(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    bad = [ln for ln in lines if re.search(r"Bad configuration option|not allowed within|"
                                           r"terminating|fatal|Bad|invalid|Unsupported Match",
                                           ln, re.I)]
    return (bad or lines or ["(no message)"])[0].strip()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every case for every connection: {(case, conn): (agree?, detail)}."""
    out: dict[tuple[str, str], tuple[bool, str]] = {}
    refused: dict[str, str] = {}
    for case in cases():
        root = tmp_path_factory.mktemp(case.name[:20])
        materialise(case, root)
        files = mapping(case)
        for label, conn in CONNECTIONS.items():
            ours = evaluate(MAIN, files, conn, build=LOCAL_BUILD)
            usedns = ours.values["usedns"]
            done = sshd_t(root, conn, usedns)
            if done.returncode != 0:
                refused[case.name] = refusal(done.stderr)
                ok = bool(ours.problems)
                out[(case.name, label)] = (ok, "" if ok else
                                           f"sshd refuses ({refused[case.name]}), we see no problem")
                continue
            theirs = sc.parse_sshd_t(done.stdout)
            diffs = [f"{kw}: ours {ours.values[kw]!r} ({ours.origin[kw]}) != sshd -T "
                     f"{theirs.get(kw, '')!r}" for kw in sc.KEYWORDS
                     if ours.values[kw] != theirs.get(kw, "")]
            if ours.problems:
                diffs.append(f"sshd accepts, we complain: {ours.problems}")
            out[(case.name, label)] = (not diffs, "; ".join(diffs))
    return out, refused


def test_every_corpus_file_agrees_with_sshd_T(results):
    out, refused = results
    names = sorted({name for name, _ in out})
    print(f"\ncorpus: {len(names)} configurations, sshd {LOCAL_BUILD.describe()}, "
          f"keywords compared: {', '.join(sorted(sc.KEYWORDS))}")
    for label in CONNECTIONS:
        agree = sum(out[(n, label)][0] for n in names)
        print(f"  {label:14s} ({CONNECTIONS[label].spec()}): {agree}/{len(names)} agree")
    print(f"  refused by sshd: {len(refused)}")
    for name, why in sorted(refused.items()):
        print(f"    {name}: {why}")
    bad = [f"{n} [{label}]: {d}" for (n, label), (ok, d) in sorted(out.items()) if not ok]
    assert not bad, "\n".join(bad)


# The files Debian 12's sshd (OpenSSH_9.2p1 Debian-2+deb12u10) refuses, with its own
# reason (measured), and what the evaluator's problem must name.
EXPECTED_REFUSED: dict[str, tuple[str, str]] = {
    "004-rhel9-freeipa-custom": (
        "/etc/ssh/sshd_config: line 43: Bad configuration option: KerberosUseKuserok",
        'line 43: unknown keyword "KerberosUseKuserok"'),
    "005-grapheneos-infra-arch-hardened": (
        "/etc/ssh/sshd_config line 23: Bad SSH2 KexAlgorithms 'mlkem768x25519-sha256'.",
        "line 23: Bad SSH2 KexAlgorithms 'mlkem768x25519-sha256'"),
}


@pytest.mark.skipif(LOCAL_BUILD.version != (9, 2) or LOCAL_BUILD.vendor != "debian",
                    reason="the refusals were measured with Debian 12's sshd")
def test_refused_files_are_the_expected_ones(results):
    _, refused = results
    assert refused == {k: v[0] for k, v in EXPECTED_REFUSED.items()}
    for name, (_, ours_says) in EXPECTED_REFUSED.items():
        case = next(c for c in cases() if c.name == name)
        r = evaluate(MAIN, mapping(case), CONNECTIONS["ours"], build=LOCAL_BUILD)
        assert any(ours_says in p for p in r.problems), r.problems


def test_deprecated_keywords_do_not_stop_sshd():
    """011 and 044 use keywords OpenSSH dropped long ago (RSAAuthentication,
    UsePrivilegeSeparation, KeyRegenerationInterval, ServerKeyBits, ...): sshd logs
    "Deprecated option" and starts, and so the evaluator reports no problem, only notes."""
    for prefix in ("011-", "044-"):
        case = next(c for c in cases() if c.name.startswith(prefix))
        r = evaluate(MAIN, mapping(case), CONNECTIONS["ours"], build=LOCAL_BUILD)
        assert not [p for p in r.problems if "unknown keyword" in p], r.problems
        assert any("Deprecated option" in n for n in r.notes), r.notes


def test_vendor_keywords_are_judged_for_the_build():
    """004 (RHEL 9 + FreeIPA) uses Red Hat's KerberosUseKuserok and GSSAPIEnablek5users:
    Red Hat's sshd accepts them, Debian's refuses to start, and an sshd of unknown build
    'depends on the build' (a note, not a refusal)."""
    case = next(c for c in cases() if c.name.startswith("004-"))
    files = mapping(case)
    conn = CONNECTIONS["ours"]
    redhat = ServerBuild((9, 0), "redhat", VENDOR_FEATURES["redhat"])
    r = evaluate(MAIN, files, conn, build=redhat)
    assert not [p for p in r.problems if "Kuserok" in p or "k5users" in p], r.problems
    debian = evaluate(MAIN, files, conn, build=parse_banner("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6"))
    assert any('unknown keyword "KerberosUseKuserok"' in p for p in debian.problems), debian.problems
    unknown = evaluate(MAIN, files, conn)
    assert not [p for p in unknown.problems if "Kuserok" in p], unknown.problems
    assert any("KerberosUseKuserok" in n and "depends on the sshd build" in n for n in unknown.notes)
