"""Algorithm names in sshd_config: which names each OpenSSH release knows, and whether
sshd accepts an algorithm list. Pure.

sshd checks the first argument of ``KexAlgorithms``, ``Ciphers``, ``MACs`` and the key
algorithm lists (``HostKeyAlgorithms``, ``PubkeyAcceptedAlgorithms``,
``HostbasedAcceptedAlgorithms``, ``CASignatureAlgorithms``) while reading the file, and
refuses to start on a name it does not know: "Bad SSH2 KexAlgorithms", "Bad SSH2 cipher
spec", "Bad SSH2 mac spec", "Bad key types" (servconf.c; kex.c/kex-names.c
``kex_names_valid``, cipher.c ``ciphers_valid``, mac.c ``mac_valid``, sshkey.c
``sshkey_names_valid2``). A list starting with ``-`` (remove) is not checked; ``+`` and
``^`` are cut before the check; key algorithm lists may use ``*``/``?`` wildcards that
must match some known name. A name only a newer release knows is the classic failure:
``KexAlgorithms mlkem768x25519-sha256`` (new in 9.9) stops an older sshd.

:data:`NAMES` was read from kex.h + kex.c (kex-names.c from 9.8), cipher.c, mac.c and
sshkey.c (9.x: the ``/* .name = */`` of ssh-*.c) of openssh-portable at V_7_4_P1 ..
V_10_5_P1, for a build with OpenSSL (as distributions build it): name -> ((first, last)
release, ...). XMSS (a build option off by default) and the SSH-1 ciphers are left out.
"""

from __future__ import annotations

from typing import Optional

from mkdoctor.openssh.keywords import FIRST_RELEASE, LAST_RELEASE, ServerBuild, Version
from mkdoctor.openssh.patterns import match_pattern_list

NAMES: dict[str, dict[str, tuple[tuple[Version, Version], ...]]] = {
    "kex": {
        "curve25519-sha256": (((7, 4), (10, 5)),),
        "curve25519-sha256@libssh.org": (((7, 4), (10, 5)),),
        "diffie-hellman-group-exchange-sha1": (((7, 4), (10, 5)),),
        "diffie-hellman-group-exchange-sha256": (((7, 4), (10, 5)),),
        "diffie-hellman-group1-sha1": (((7, 4), (10, 5)),),
        "diffie-hellman-group14-sha1": (((7, 4), (10, 5)),),
        "diffie-hellman-group14-sha256": (((7, 4), (10, 5)),),
        "diffie-hellman-group16-sha512": (((7, 4), (10, 5)),),
        "diffie-hellman-group18-sha512": (((7, 4), (10, 5)),),
        "ecdh-sha2-nistp256": (((7, 4), (10, 5)),),
        "ecdh-sha2-nistp384": (((7, 4), (10, 5)),),
        "ecdh-sha2-nistp521": (((7, 4), (10, 5)),),
        "mlkem768nistp256-sha256": (((10, 5), (10, 5)),),
        "mlkem768x25519-sha256": (((9, 9), (10, 5)),),
        "sntrup4591761x25519-sha512@tinyssh.org": (((8, 0), (8, 4)),),
        "sntrup761x25519-sha512": (((9, 9), (10, 5)),),
        "sntrup761x25519-sha512@openssh.com": (((8, 5), (10, 5)),),
    },
    "cipher": {
        "3des-cbc": (((7, 4), (10, 5)),),
        "aes128-cbc": (((7, 4), (10, 5)),),
        "aes128-ctr": (((7, 4), (10, 5)),),
        "aes128-gcm@openssh.com": (((7, 4), (10, 5)),),
        "aes192-cbc": (((7, 4), (10, 5)),),
        "aes192-ctr": (((7, 4), (10, 5)),),
        "aes256-cbc": (((7, 4), (10, 5)),),
        "aes256-ctr": (((7, 4), (10, 5)),),
        "aes256-gcm@openssh.com": (((7, 4), (10, 5)),),
        "arcfour": (((7, 4), (7, 5)),),
        "arcfour128": (((7, 4), (7, 5)),),
        "arcfour256": (((7, 4), (7, 5)),),
        "blowfish-cbc": (((7, 4), (7, 5)),),
        "cast128-cbc": (((7, 4), (7, 5)),),
        "chacha20-poly1305@openssh.com": (((7, 4), (10, 5)),),
        "rijndael-cbc@lysator.liu.se": (((7, 4), (8, 4)),),
    },
    "mac": {
        "hmac-md5": (((7, 4), (10, 5)),),
        "hmac-md5-96": (((7, 4), (10, 5)),),
        "hmac-md5-96-etm@openssh.com": (((7, 4), (10, 5)),),
        "hmac-md5-etm@openssh.com": (((7, 4), (10, 5)),),
        "hmac-ripemd160": (((7, 4), (7, 5)),),
        "hmac-ripemd160-etm@openssh.com": (((7, 4), (7, 5)),),
        "hmac-ripemd160@openssh.com": (((7, 4), (7, 5)),),
        "hmac-sha1": (((7, 4), (10, 5)),),
        "hmac-sha1-96": (((7, 4), (10, 5)),),
        "hmac-sha1-96-etm@openssh.com": (((7, 4), (10, 5)),),
        "hmac-sha1-etm@openssh.com": (((7, 4), (10, 5)),),
        "hmac-sha2-256": (((7, 4), (10, 5)),),
        "hmac-sha2-256-etm@openssh.com": (((7, 4), (10, 5)),),
        "hmac-sha2-512": (((7, 4), (10, 5)),),
        "hmac-sha2-512-etm@openssh.com": (((7, 4), (10, 5)),),
        "umac-128-etm@openssh.com": (((7, 4), (10, 5)),),
        "umac-128@openssh.com": (((7, 4), (10, 5)),),
        "umac-64-etm@openssh.com": (((7, 4), (10, 5)),),
        "umac-64@openssh.com": (((7, 4), (10, 5)),),
    },
    "key": {
        "ecdsa-sha2-nistp256": (((7, 4), (10, 5)),),
        "ecdsa-sha2-nistp256-cert-v01@openssh.com": (((7, 4), (10, 5)),),
        "ecdsa-sha2-nistp384": (((7, 4), (10, 5)),),
        "ecdsa-sha2-nistp384-cert-v01@openssh.com": (((7, 4), (10, 5)),),
        "ecdsa-sha2-nistp521": (((7, 4), (10, 5)),),
        "ecdsa-sha2-nistp521-cert-v01@openssh.com": (((7, 4), (10, 5)),),
        "rsa-sha2-256": (((7, 4), (10, 5)),),
        "rsa-sha2-256-cert-v01@openssh.com": (((7, 8), (10, 5)),),
        "rsa-sha2-512": (((7, 4), (10, 5)),),
        "rsa-sha2-512-cert-v01@openssh.com": (((7, 8), (10, 5)),),
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": (((8, 2), (10, 5)),),
        "sk-ecdsa-sha2-nistp256@openssh.com": (((8, 2), (10, 5)),),
        "sk-ssh-ed25519-cert-v01@openssh.com": (((8, 2), (10, 5)),),
        "sk-ssh-ed25519@openssh.com": (((8, 2), (10, 5)),),
        "ssh-dss": (((7, 4), (10, 0)),),
        "ssh-dss-cert-v01@openssh.com": (((7, 4), (10, 0)),),
        "ssh-ed25519": (((7, 4), (10, 5)),),
        "ssh-ed25519-cert-v01@openssh.com": (((7, 4), (10, 5)),),
        "ssh-rsa": (((7, 4), (10, 5)),),
        "ssh-rsa-cert-v01@openssh.com": (((7, 4), (10, 5)),),
        "webauthn-sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": (((10, 3), (10, 5)),),
        "webauthn-sk-ecdsa-sha2-nistp256@openssh.com": (((8, 4), (10, 5)),),
    },
}

# Names a vendor's build knows beyond its release (observed: Debian 12's
# OpenSSH_9.2p1 Debian-2+deb12u10 accepts sntrup761x25519-sha512, upstream's name from 9.9).
VENDOR_NAMES = {"debian": {"kex": frozenset({"sntrup761x25519-sha512"})}}

# keyword -> which table its names come from
KINDS = {"kexalgorithms": "kex", "ciphers": "cipher", "macs": "mac",
         "hostkeyalgorithms": "key", "pubkeyacceptedalgorithms": "key",
         "pubkeyacceptedkeytypes": "key", "hostbasedacceptedalgorithms": "key",
         "hostbasedacceptedkeytypes": "key", "casignaturealgorithms": "key"}
_MESSAGE = {"kex": "Bad SSH2 KexAlgorithms", "cipher": "Bad SSH2 cipher spec",
            "mac": "Bad SSH2 mac spec", "key": "Bad key types"}


def known_at(kind: str, version: Version, vendor: str = "") -> frozenset[str]:
    """The names of ``kind`` that release ``version`` (of ``vendor``'s build) knows."""
    version = max(FIRST_RELEASE, min(version, LAST_RELEASE))
    names = {n for n, segs in NAMES[kind].items() if any(a <= version <= b for a, b in segs)}
    return frozenset(names | VENDOR_NAMES.get(vendor, {}).get(kind, frozenset()))


def _valid(kind: str, name: str, known: frozenset[str]) -> bool:
    if name in known:
        return True
    if kind == "key" and any(c in name for c in "*?"):
        return any(match_pattern_list(k, name) == 1 for k in known)
    return False


def list_verdict(keyword: str, arg: str, build: ServerBuild) -> tuple[Optional[str], Optional[str]]:
    """(refusal, note) for the first argument ``arg`` of an algorithm keyword:
    ``refusal`` is sshd's complaint when it refuses to start, ``note`` says the answer
    depends on the build (names only some releases know, build unknown)."""
    kind = KINDS.get(keyword.lower())
    if kind is None or arg.startswith("-"):
        return None, None
    body = arg[1:] if arg[:1] in "+^" else arg
    bad = f"{_MESSAGE[kind]} '{arg}'"
    if body == "":
        return f"{bad} (an empty list)", None
    names = []
    for name in body.split(","):  # the C loops stop at the first empty name
        if not name:
            break
        names.append(name)
    if build.version is not None:
        known = known_at(kind, build.version, build.vendor)
        if not all(_valid(kind, n, known) for n in names):
            return f"{bad} ({build.describe()} does not know it)", None
        return None, None
    every = [known_at(kind, v) for v in {a for segs in NAMES[kind].values() for a, _ in segs}
             | {FIRST_RELEASE, LAST_RELEASE}]
    union = frozenset().union(*every) | frozenset().union(
        *(v.get(kind, frozenset()) for v in VENDOR_NAMES.values()))
    if not all(_valid(kind, n, union) for n in names):
        return f"{bad} (no OpenSSH release knows it)", None
    odd = [n for n in names if not all(_valid(kind, n, k) for k in every)]
    if odd:
        return None, (f"{keyword}: {', '.join(odd)} is not known to every OpenSSH release "
                      "(an sshd that does not know it refuses to start): depends on the build")
    return None, None
