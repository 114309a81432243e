"""MK304 passwordless-login: ``ssh -o BatchMode=yes`` logs in with no prompt.

The front end cannot answer a password or passphrase prompt, so the login must work in
batch mode. This check opens the run's ControlMaster connection, which every later
remote check reuses: one authentication per run.
"""

from __future__ import annotations

import os
import re
import shlex

from mkdoctor.model import Check, Result, failed, needs_target, passed
from mkdoctor.openssh.session import RemoteUnavailable

PUBLICKEY_CAUSES = [
    "our public key is not in the remote ~/.ssh/authorized_keys (see MK305)",
    "the server refuses it because of modes: home, ~/.ssh or authorized_keys writable "
    "by others (StrictModes)",
    "the server's AllowUsers/DenyUsers/AllowGroups excludes this user",
    "the account is locked or expired",
    "the key is not offered: wrong IdentityFile, or an encrypted key not loaded in the agent (MK202)",
]


# What makes the remote files StrictModes-safe (sshd(8) FILES: ~/.ssh and
# authorized_keys must not be writable by others; auth_secure_path checks home too).
SAFE_MODES = "chmod go-w ~ && chmod 700 ~/.ssh && chmod 600 ~/.ssh/authorized_keys"


def classify(stderr: str, timed_out: bool, destination: str, install_key: str = "",
             fix_modes: str = "") -> tuple[str, str, list[str], str]:
    """ssh's own words -> (summary, fix, details, reason). ``install_key`` is the
    command that installs our public key on the server, ``fix_modes`` the one that makes
    the files there StrictModes-safe.

    A refused key says only "Permission denied (publickey)": sshd sends the client no
    reason, so a key missing from authorized_keys and a key in a file that sshd ignores
    for its modes (StrictModes) look the same from here, and both fixes are given, the
    modes first (the key may well be installed: a re-install would not help)."""
    text = stderr.strip()
    last = [ln for ln in text.splitlines() if ln.strip()]
    shown = last[-3:] if last else ["(ssh printed nothing)"]
    if timed_out:
        return ("login timed out", "check MK302; a slow server may need a longer --timeout",
                shown, "timeout")
    if re.search(r"REMOTE HOST IDENTIFICATION HAS CHANGED", text):
        return ("the host key CHANGED: possible man-in-the-middle attack",
                "verify the new key with the server's administrator before removing the old one "
                f"(ssh-keygen -R {destination}); see MK303", shown, "host-key-changed")
    if re.search(r"Host key verification failed|No \S+ host key is known", text):
        return ("host key verification failed (the host key is not known)",
                "record the host key after verifying its fingerprint (see MK303)", shown,
                "host-key")
    m = re.search(r"Permission denied \(([^)]*)\)", text)
    if m:
        methods = m.group(1)
        details = [f"ssh: Permission denied ({methods})", "likely causes:"] + [
            f"  - {c}" for c in PUBLICKEY_CAUSES] + [
            "the server's log says which: sudo journalctl -u ssh -n 50 (or /var/log/auth.log, "
            "/var/log/secure)"]
        if "publickey" not in methods:
            return (f"the server does not accept public keys (offers: {methods})",
                    "enable PubkeyAuthentication yes in the server's sshd_config", details,
                    "no-publickey")
        details.insert(1, "from here a key missing from authorized_keys and a key file that "
                          "sshd ignores for unsafe modes (StrictModes) look the same: sshd "
                          "tells the client only 'Permission denied'")
        return ("key login refused: Permission denied (" + methods + ")",
                "if your key is already in ~/.ssh/authorized_keys on the server, sshd refuses "
                "it for unsafe modes (StrictModes): make them safe (this asks for your "
                f"password once): {fix_modes or 'on the server, ' + SAFE_MODES}; otherwise "
                "install your public key (this asks for your password once): " + (
                    install_key or f"ssh-copy-id -i ~/.ssh/id_ed25519.pub {destination}")
                + "; or run mkdoctor setup", details, "permission-denied")
    if re.search(r"Connection refused", text):
        return ("connection refused", "see MK302: nothing listens on the SSH port", shown, "refused")
    if re.search(r"Connection timed out|Operation timed out|timed out during banner", text):
        return ("connection timed out", "see MK302: a firewall drops the packets", shown, "timeout")
    if re.search(r"Could not resolve hostname|Name or service not known", text):
        return ("the host name does not resolve", "see MK301: check the host name", shown,
                "resolve")
    if re.search(r"Too many authentication failures", text):
        return ("too many authentication failures (the agent offers too many keys)",
                "add IdentitiesOnly yes and the right IdentityFile to the Host block",
                shown, "too-many-keys")
    if re.search(r"Connection closed|Connection reset|kex_exchange_identification", text):
        return ("the server closed the connection during login",
                "check the server's sshd log; MaxStartups, fail2ban or TCP wrappers may block you",
                shown, "closed")
    return ("login failed: " + (last[-1] if last else "no message from ssh"),
            "run ssh -v " + destination + " and read where it stops", shown, "other")


def public_key_path(ctx) -> str:
    """The public half of the identity ssh offers first: ``--identity``, else the first
    IdentityFile of ``ssh -G`` whose ``.pub`` exists."""
    if ctx.options.identity:
        return f"{ctx.options.identity}.pub"
    try:
        files = ctx.ssh.config(ctx.step_timeout()).get("identityfile") or []
    except RemoteUnavailable:
        files = []
    for path in files:
        pub = os.path.expanduser(path) + ".pub"
        if os.path.isfile(pub):
            return pub
    return "~/.ssh/id_ed25519.pub"


def install_command(ctx) -> str:
    """How to put our key into the remote authorized_keys with a password login."""
    pub = public_key_path(ctx)
    quoted = pub if pub.startswith("~/") else shlex.quote(pub)
    dest = shlex.quote(ctx.target.display)
    if ctx.options.ssh_config is None and ctx.options.identity is None:
        return f"ssh-copy-id -i {quoted} {dest}"
    # ssh-copy-id cannot take -F: append the key through the same ssh command line.
    remote = ("umask 077 && mkdir -p ~/.ssh && cat >> ~/.ssh/authorized_keys")
    return f"{_ssh_to(ctx)} {shlex.quote(remote)} < {quoted}"


def modes_command(ctx) -> str:
    """How to make the remote home, ~/.ssh and authorized_keys StrictModes-safe with a
    password login."""
    return f"{_ssh_to(ctx)} {shlex.quote(SAFE_MODES)}"


def _ssh_to(ctx) -> str:
    """``ssh [-F CONFIG] DESTINATION``, quoted, as the user would type it."""
    ssh = ["ssh"] + (["-F", str(ctx.options.ssh_config)] if ctx.options.ssh_config else [])
    return f"{shlex.join(ssh)} {shlex.quote(ctx.target.display)}"


def run(ctx) -> Result:
    # This login runs while MK303 still fetches and judges the host key (``overlaps``).
    # Where MK303 can judge it (the first hop is the host itself), the login refuses any
    # key known_hosts does not hold, so a changed or unknown key never sees our
    # authentication; when MK303 then finds an unknown key that the user's
    # StrictHostKeyChecking accept-new/no lets ssh record, the login is tried once more
    # as the front end's ssh would make it.
    # (the command line may have started this login already: Context.begin_login)
    judged = ctx.login_judged()
    login = ctx.login()
    if not login.ok and judged and "Host key verification failed" in login.stderr:
        mk303 = ctx.wait_result("MK303")
        if mk303 is not None and mk303.facts.get("reason") == "unknown-accepted":
            login = ctx.ssh.login(ctx.step_timeout(ctx.options.timeout * 2 + 2), again=True)
    if login.ok:
        return passed(f"logged in as {ctx.target.display} with no prompt (BatchMode=yes)")
    if login.dropped:
        return failed(
            "the server limits simultaneous logins (MaxStartups): it dropped the login "
            "before authentication twice",
            "check fewer hosts behind this server at once (--jobs N), or wait and re-run; "
            "its administrator can raise MaxStartups in sshd_config (default 10:30:100)",
            [ln for ln in login.stderr.splitlines() if ln.strip()][-3:], reason="max-startups")
    summary, fix, details, reason = classify(login.stderr, login.timed_out, ctx.target.display,
                                             install_command(ctx), modes_command(ctx))
    return failed(summary, fix, details, reason=reason)


CHECK = Check(
    id="MK304",
    name="passwordless-login",
    group="server",
    title="ssh -o BatchMode=yes logs in with no prompt; the failure is classified",
    run=run,
    # needs_if_run: MK302/MK303 skip behind ProxyCommand/ProxyJump, and logging in is
    # then the only test of the path; their failures still block it.
    needs_if_run=("MK301", "MK302", "MK303"),
    # logs in while MK301 reads ssh's configuration for the host, MK302 reads the banner
    # and MK303 judges the host key (see run): skipped after the fact if one of them
    # fails (the login would have failed the same way, in the same timeout). MK202's
    # words are not needed.
    overlaps=("MK301", "MK302", "MK303"),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "set up key login (mkdoctor setup)"),
        ("permission-denied", "install your key (mkdoctor setup)"),
        ("no-publickey", "enable PubkeyAuthentication"),
        ("host-key", "verify the host key (MK303)"),
        ("host-key-changed", "verify the changed host key"),
        ("refused", "start sshd / check the port (MK302)"),
        ("timeout", "check reachability (MK302)"),
        ("resolve", "correct the host name (MK301)"),
        ("too-many-keys", "IdentitiesOnly yes"),
        ("closed", "read the server's sshd log"),
        ("max-startups", "fewer hosts at once (--jobs)"),
        ("other", "ssh -v to see where it stops"),
    ),
)
