"""Step 2: the remote host, its name and alias, as ``ssh -G`` resolves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.options import UsageError, parse_host
from mkdoctor.wizard.flow import StepFailed, default_name

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("The remote host")
    a = f.args
    cfg_path = f.ssh_config_path()
    if st.target is None and st.previous is None and a.name:
        from mkdoctor import profile as profiles

        if profiles.profile_path(a.name).is_file():
            st.previous = profiles.load_profile(a.name)
    if st.target is None and st.previous is not None:
        p = st.previous
        st.target = parse_host(f"{p.user}@{p.hostname}:{p.port}" if p.user else
                                 f"{p.hostname}:{p.port}")
    if st.target is None:
        aliases = [(h, f) for h, f in sshconfig.config_aliases(cfg_path)
                   if not h.startswith(sshconfig.ALIAS_PREFIX)]
        choice = None
        if aliases:
            choices = [(h, f"{h}  (Host alias in {f})") for h, f in aliases]
            choices.append(("", "another host: USER@HOST[:PORT]"))
            choice = f.ask.select("Which remote host runs the kernel?", choices, None,
                                     "--host", safe=False)
        if not choice:
            def valid(text: str) -> Optional[str]:
                try:
                    parse_host(text.strip())
                except UsageError as exc:
                    return str(exc)
                return None

            choice = f.ask.text("Remote host (USER@HOST[:PORT]):", None, "--host",
                                   valid, safe=False).strip()
        st.target = parse_host(choice)
    t = st.target
    run = f.runner()
    try:
        g = sshconfig.read_ssh_g(run, t.host, cfg_path if a.ssh_config else None,
                                 user=t.user, port=t.port)
    except sshconfig.SshGError as exc:
        raise StepFailed(str(exc)) from None
    st.resolved = g
    st.hostname = g.get("hostname", [t.host])[0]
    st.user = g.get("user", [t.user or ""])[0]
    st.port = int(g.get("port", ["22"])[0])
    if not st.previous:
        from mkdoctor import profile as profiles

        name = a.name or default_name(t)
        if profiles.profile_path(name).is_file():
            try:
                st.previous = profiles.load_profile(name)
            except UsageError:
                st.previous = None
    st.name = a.name or (st.previous.name if st.previous else default_name(t))
    st.alias = sshconfig.ALIAS_PREFIX + st.name
    jump = g.get("proxyjump", ["none"])[0]
    proxy = g.get("proxycommand", ["none"])[0]
    via = (f" via ProxyJump {jump}" if jump.lower() != "none" else
           f" via ProxyCommand {proxy}" if proxy.lower() != "none" else "")
    f.say(f"  {t.display} is {st.user}@{st.hostname} port {st.port}{via}")
    f.say(f"  profile {st.name}, ssh alias {st.alias} (in {cfg_path})")
