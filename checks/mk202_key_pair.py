"""MK202 key-pair: the identity ssh will use is a usable key pair.

The front end starts the remote kernel with ``ssh`` and no terminal: the login must work
with a key and without a prompt. So the private key must exist and be private (ssh
ignores a key that others can read: "UNPROTECTED PRIVATE KEY FILE"), its public half
must match (it is what gets installed on the remote host), a passphrase-protected key
must be loaded in the agent (the front end cannot type a passphrase), and the key type
and size must be accepted by current OpenSSH (DSA is gone; small RSA keys are refused).

The identity is ``--identity``, else the first existing IdentityFile of ``ssh -G`` for
the target (or, with no target, ssh's defaults). The private key is never read by
mkdoctor: see :mod:`mkdoctor.openssh.keys`.
"""

from __future__ import annotations

from mkdoctor.openssh import keys
from mkdoctor.model import Check, Result, failed, passed, skipped, warned
from mkdoctor.openssh.session import RemoteUnavailable


def run(ctx) -> Result:
    try:
        candidates, source = keys.identity_candidates(ctx)
    except (RemoteUnavailable, RuntimeError) as exc:  # ssh -G failed: the config is broken
        lines = str(exc).splitlines() or [type(exc).__name__]
        return skipped(f"cannot tell which key ssh uses: {lines[0]}",
                       "check your ssh config: ssh -G HOST must work (see MK301)", lines[1:])
    destination = ctx.target.display if ctx.target else "USER@HOST"
    existing = [p for p in candidates if p.exists()]
    if not existing:
        tried = ", ".join(str(p) for p in candidates) or "(none)"
        defaults = [p for p in candidates if p == keys.expand_identity_path(keys.DEFAULT_KEY)]
        target = keys.DEFAULT_KEY if (defaults or not candidates) else str(candidates[0])
        return failed(
            "no SSH key: none of the identity files ssh would use exists",
            f"{keys.keygen_command(target)}, then install it: "
            f"ssh-copy-id -i {target}.pub {destination}",
            [f"identity files ({source}): {tried}"],
            identity=None,
        )
    path = existing[0]
    info = keys.inspect_identity(path, ctx.run_local)
    findings = keys.assess(info, destination)
    facts = info.facts()
    details = [f"identity: {path} (from {source})"]
    if info.public:
        details.append(f"public key: {info.public.kind} {info.bits} bits {info.fingerprint}")
    details.append("passphrase: " + {True: "yes", False: "no", None: "unknown"}[info.encrypted]
                   + ("" if info.in_agent is None else
                      f"; in the agent: {'yes' if info.in_agent else 'no'}"))
    if info.matches is False:
        details.append(f"{info.pub_path}: {info.pub.fingerprint}; "
                       f"the private key: {info.private_fingerprint}")
    if info.agent is not None and not info.agent.available:
        details.append(f"agent: not reachable ({info.agent.error})")
    fails = [f for f in findings if f.status == "fail"]
    warns = [f for f in findings if f.status == "warn"]
    details += [f"{f.status}: {f.summary} -> {f.fix}" for f in findings[1:]]
    if fails or warns:
        first = findings[0]
        more = len(findings) - 1
        summary = first.summary + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
        fix = "; ".join(dict.fromkeys(f.fix for f in (fails or warns)))
        return (failed if fails else warned)(summary, fix, details, **facts)
    kind = info.kind or "key"
    enc = ", passphrase in the agent" if info.encrypted else ""
    match = ", public half matches" if info.matches else ""
    return passed(f"{path}: {kind} {info.bits} bits{enc}{match}", details, **facts)


CHECK = Check(
    id="MK202",
    name="key-pair",
    group="client",
    title="the identity ssh will use exists, mode 0600, public half matches, type and size "
          "accepted, passphrase key in the agent",
    run=run,
    needs=("MK201",),
    after=(),
    per_host=True,  # the identity ssh uses for the host (IdentityFile of ssh -G)
    fix_hints=(
        ("", "fix the key (mkdoctor setup)"),
    ),
)
