"""OpenSSH public keys: the key types sshd reads, the SHA256 fingerprint, and one public
key line parsed. Pure. Follows sshkey.c (``sshkey_read``, ``sshkey_fingerprint`` with
SHA256: the unpadded base64 of the SHA-256 of the key blob, as ``ssh-keygen -l`` prints
it); the blob's structure per key type is checked with ``sshpubkeys``.

Used by authorized_keys.py (key lines), known_hosts.py (host keys), keys.py (the
identity and the agent's keys) and the checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Optional

# Key types sshkey_read() recognises (plain keys and certificates).
_KEYTYPE = re.compile(
    r"^(ssh-(rsa|dss|ed25519|xmss)|ecdsa-sha2-nistp(256|384|521)|"
    r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|"
    r"(ssh-(rsa|dss|ed25519|xmss)|ecdsa-sha2-nistp(256|384|521)|"
    r"sk-(ssh-ed25519|ecdsa-sha2-nistp256))-cert-v01@openssh\.com|"
    r"ssh-xmss@openssh\.com|ssh-xmss-cert-v01@openssh\.com)$"
)

KIND_BY_ALGORITHM = {
    "ssh-ed25519": "ed25519",
    "ssh-rsa": "rsa",
    "ssh-dss": "dsa",
    "ecdsa-sha2-nistp256": "ecdsa",
    "ecdsa-sha2-nistp384": "ecdsa",
    "ecdsa-sha2-nistp521": "ecdsa",
    "sk-ssh-ed25519@openssh.com": "ed25519-sk",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ecdsa-sk",
}


def fingerprint(blob_b64: str) -> str:
    """``SHA256:...`` of a base64 key blob, as ``ssh-keygen -l`` prints it."""
    raw = base64.b64decode(blob_b64 + "=" * (-len(blob_b64) % 4))
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def blob_error(keytype: str, blob_b64: str) -> Optional[str]:
    """Why ``blob_b64`` is not a valid ``keytype`` key, or None. Structural check (the
    blob's first field names the key type), then sshpubkeys' stricter one when it is
    installed and knows the type."""
    try:
        raw = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64 (broken or cut when pasted?)"
    if len(raw) < 4:
        return "the key data is too short"
    (n,) = struct.unpack(">I", raw[:4])
    inner = raw[4:4 + n].decode("ascii", "replace")
    if n > len(raw) - 4 or inner != keytype:
        return f"the key data does not match its type {keytype}"
    try:
        from sshpubkeys import SSHKey  # heavy import, only when needed
        from sshpubkeys.exceptions import InvalidKeyException
    except ImportError:  # pragma: no cover - sshpubkeys is a dependency
        return None
    try:
        SSHKey(f"{keytype} {blob_b64}", strict=False, skip_option_parsing=True).parse()
    except NotImplementedError:
        return None  # a type sshpubkeys does not know (certificates, xmss): structure is fine
    except (InvalidKeyException, ValueError, TypeError) as exc:
        return f"invalid {keytype} key, cut short or damaged when pasted? ({exc})"
    return None


def is_keytype(token: str) -> bool:
    return bool(_KEYTYPE.match(token))



@dataclass(frozen=True)
class PublicKey:
    """One public key line: ``ALGORITHM BLOB [COMMENT]``."""

    algorithm: str
    blob: str
    comment: str
    kind: str  # ed25519, rsa, ecdsa, dsa, ed25519-sk, ecdsa-sk, or the algorithm
    bits: int
    fingerprint: str  # SHA256:...

    @property
    def line(self) -> str:
        return f"{self.algorithm} {self.blob}" + (f" {self.comment}" if self.comment else "")


def parse_public_key(text: str) -> PublicKey:
    """Parse one public key line (the first non-comment line of ``text``).

    Raises ValueError when it is not a valid public key. Certificates and other types
    sshpubkeys does not know are accepted when their structure is sound (bits 0).
    """

    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError("empty")
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise ValueError("not a public key line")
    algorithm, blob = parts[0], parts[1]
    if not is_keytype(algorithm):
        raise ValueError(f"unknown key type {algorithm[:30]!r}")
    error = blob_error(algorithm, blob)
    if error:
        raise ValueError(error)
    return PublicKey(
        algorithm=algorithm,
        blob=blob,
        comment=parts[2].strip() if len(parts) > 2 else "",
        kind=KIND_BY_ALGORITHM.get(algorithm, algorithm),
        bits=_bits(algorithm, blob),
        fingerprint=fingerprint(blob),
    )


def _bits(algorithm: str, blob: str) -> int:
    """The key size sshpubkeys reports (0 for a type it does not know)."""
    from sshpubkeys import SSHKey  # heavy import, only when needed

    try:
        key = SSHKey(f"{algorithm} {blob}", strict=False, skip_option_parsing=True)
        key.parse()
    except Exception:  # noqa: BLE001 - the structure was checked by blob_error
        return 0
    return int(key.bits or 0)
