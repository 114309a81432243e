"""Step 4: the key the front end uses (an existing one, or a new ed25519 key)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkdoctor.options import UsageError
from mkdoctor.wizard import remote
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("The key")
    from mkdoctor.openssh import keys

    a, prev = f.args, st.previous
    run = f.runner()
    reuse = False  # the key of the existing profile: a re-run keeps it
    if a.identity:
        candidates = [Path(a.identity).expanduser()]
    elif prev and prev.identity and Path(prev.identity).expanduser().exists():
        candidates = [Path(prev.identity).expanduser()]
        reuse = True
    else:
        candidates = []
        for value in st.resolved.get("identityfile", []):
            path = keys.expand_identity_path(value, host=st.hostname, remote_user=st.user)
            if path not in candidates:
                candidates.append(path)
    usable: list[tuple[Path, Any]] = []
    for path in candidates:
        if not path.exists():
            continue
        info = keys.inspect_identity(path, run)
        findings = keys.assess(info, st.alias)
        if keys.acceptable(info):
            usable.append((path, info))
            f.say(f"  usable: {path} ({info.kind} {info.bits} bits {info.fingerprint})")
        else:
            for finding in findings:
                f.say(f"  {finding.status}: {finding.summary}\n        fix: {finding.fix}")
    if a.identity and not usable:
        raise StepFailed(f"--identity {a.identity} cannot be used (see above)")
    choices: list[tuple[Any, str]] = [(str(p), f"use {p} ({i.kind}, {i.fingerprint})") for p, i in usable]
    choices.append(("new", "create a new ed25519 key for this host"))
    if usable and (reuse or not a.new_key):
        default = str(usable[0][0])
    else:
        default = "new" if (a.new_key or f.ask.interactive) else None
    if usable and a.identity:
        choice = str(usable[0][0])
    elif not f.ask.interactive and default is None:
        raise UsageError(f"no usable SSH key for {st.alias}: give --identity FILE or "
                         "--new-key (creates an ed25519 key without a passphrase)")
    else:
        choice = f.ask.select("Which key should the front end use?", choices, default, "--new-key")
    if choice != "new":
        st.identity = Path(choice)
        st.public_line = (usable[[str(p) for p, _ in usable].index(choice)][1].public.line)
        return
    passphrase = False
    if f.ask.interactive:
        # A passphrase key works for the front end only through an agent: with none
        # answering here, it is not the recommended choice.
        agent = keys.agent_keys(run)
        f.say("  passphrase + ssh-agent: a copied key file is useless without the "
                 "passphrase; unlock it once per session with ssh-add")
        f.say("  no passphrase: the front end can use it without an agent, but anyone "
                 "who copies the file can log in")
        if not agent.available:
            f.say(f"  note: no ssh-agent answers here ({agent.error or 'SSH_AUTH_SOCK is not set'}); "
                     "start one first (eval \"$(ssh-agent -s)\", or your desktop's) "
                     "for a passphrase key")
        with_agent = ("passphrase + ssh-agent (recommended)" if agent.available else
                      "passphrase + ssh-agent (no agent runs here: setup stops)")
        passphrase = f.ask.select(
            "Protect the new key with a passphrase?",
            [(True, with_agent), (False, "no passphrase")],
            agent.available, "--new-key") is True
    path = remote.new_key_path(st.alias)
    comment = f"mkdoctor {st.alias}"
    remote.create_key(path, comment, passphrase, f.journal.before_change)
    f.say(f"  created {path} (ed25519{', passphrase' if passphrase else ', no passphrase'})")
    if passphrase and not remote.add_to_agent(path):
        # The key would not log in without a prompt (MK202/MK304): stop here, before
        # anything is installed on the server; the new key is rolled back.
        raise StepFailed("the new key could not be added to an ssh-agent, and the front "
                         "end cannot type its passphrase: start an agent (eval "
                         "\"$(ssh-agent -s)\") and run setup again, or choose no passphrase")
    st.identity = path
    st.public_line = Path(str(path) + ".pub").read_text().strip()
