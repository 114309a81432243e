"""Property tests of checks/launch.py: the strings survive the two real shells.

The front end runs the launch command with a POSIX shell; ssh passes its last argument
to the remote user's shell. Both are played here by a real ``/bin/sh``: the local line is
run with ``ssh`` replaced by a function that prints its arguments NUL-separated, and the
remote string is run with ``printf`` in front of it. The words must be exactly the
intended argv, for any alias, kernel path and ssh config path the wizard accepts.
"""

from __future__ import annotations

import re
import subprocess
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mkdoctor import launch
from mkdoctor.launch import LaunchSpec, kernel_argv, launch_command, mlopen_arguments, split_launch, substitute
from mkdoctor.options import UsageError, parse_host
from mkdoctor.profile import NAME_RE
from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.wizard import wl

# What the wizard accepts: --kernel and --ssh-config reject NUL, line breaks and
# backquotes; profile names NAME_RE.
paths = st.text(st.characters(blacklist_characters="\x00\n\r`", blacklist_categories=("Cs",)),
                min_size=1, max_size=40)
names = st.from_regex(NAME_RE, fullmatch=True)
ports = st.tuples(st.integers(1024, 65535), st.integers(1024, 65535)).filter(lambda p: p[0] != p[1])
modes = st.sampled_from(["tunnel", "direct"])
versions = st.sampled_from(["", "9.0", "10.4", "14.1"])
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


def sh_words(script: str) -> list[str]:
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=10)
    assert done.returncode == 0, (script, done.stderr)
    out = done.stdout.decode("utf-8", "surrogateescape")
    assert out.endswith("\0")
    return out[:-1].split("\0")


def local_words(command: str) -> list[str]:
    # printf in front: the words the shell hands to the command, whatever its first word
    # (/usr/bin/env -u LD_LIBRARY_PATH /usr/bin/ssh ..., or a bare ssh)
    return sh_words("printf '%s\\0' " + command)


def remote_words(remote: str) -> list[str]:
    return sh_words("printf '%s\\0' " + remote)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, paths, modes, ports, versions, ipv4, st.one_of(st.none(), paths))
def test_launch_command_survives_both_shells(name, kernel, mode, link_ports, version, host, cfg):
    spec = LaunchSpec(destination="mk-" + name, kernel=kernel, mode=mode, link_ports=link_ports,
                      kernel_version=version, link_host=host, ssh_config=cfg)
    command = launch_command(spec)
    linkname = (launch.tunnel_linkname(link_ports) if mode == "tunnel"
                else launch.direct_linkname(link_ports, host))
    filled = substitute(command, linkname, host)
    want_remote = [substitute(w, linkname, host) for w in kernel_argv(spec)]

    local = local_words(filled)
    assert local[:-1] == launch.ssh_argv(spec)[:-1]
    assert remote_words(local[-1]) == want_remote
    # and the pure splitter agrees with the real shells
    assert split_launch(filled) == (local, want_remote)


@given(names, paths)
@settings(max_examples=50, deadline=None)
def test_direct_mode_placeholders_are_never_quoted(name, kernel):
    spec = LaunchSpec("mk-" + name, kernel, "direct", (50001, 50002), link_host="192.0.2.1")
    command = launch_command(spec)
    assert command.count("`linkname`") == 1 and command.count("`ipaddress`") == 1
    assert "'`linkname`'" not in command and '"`linkname`"' not in command
    assert " -LinkName `linkname` -LinkHost `ipaddress`" in command


# Paths that may carry a placeholder (or a lone backquote) inside: launch.py must refuse them.
def _with(inner):
    return st.builds(lambda a, b, c: a + b + c, paths, inner, paths)


tricky = st.one_of(paths, _with(st.sampled_from([launch.LINKNAME, launch.IPADDRESS, "`"])))
LINK, ADDR = "40001@198.51.100.7,40002@198.51.100.7", "203.0.113.5"  # what the front end fills in


@given(names, tricky, st.one_of(st.none(), tricky))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_placeholders_only_where_intended(name, kernel, cfg):
    """Direct mode has placeholders: after the front end fills them in, the two real shells
    must see the link name and address exactly as -LinkName's and -LinkHost's values, and
    nowhere else; user text with a backquote is refused instead."""
    spec = LaunchSpec("mk-" + name, kernel, "direct", (40001, 40002), link_host="198.51.100.7",
                      ssh_config=cfg)
    if "`" in kernel or "`" in (cfg or ""):
        with pytest.raises(ValueError, match="backquote"):
            launch_command(spec)
        return
    assume(not any(m in w for m in ("198.51.100.7", ADDR) for w in (kernel, cfg or "")))
    local = local_words(substitute(launch_command(spec), LINK, ADDR))
    remote = remote_words(local[-1])
    assert not any(m in w for m in ("198.51.100.7", ADDR) for w in local[:-1])
    assert [i for i, w in enumerate(remote) if "198.51.100.7" in w] == [remote.index("-LinkName") + 1]
    assert [i for i, w in enumerate(remote) if ADDR in w] == [remote.index("-LinkHost") + 1]
    assert remote[remote.index("-LinkName") + 1] == LINK and remote[-1] == ADDR
    at = launch.ssh_index(local)
    assert remote[0] == kernel and (cfg is None or local[at + 1:at + 3] == ["-F", cfg])


def test_backquote_refused_even_in_tunnel_mode():
    for spec in (LaunchSpec("mk-x", "/opt/`linkname`/math", "tunnel", (50001, 50002)),
                 LaunchSpec("mk-x", "/opt/math", "tunnel", (50001, 50002), ssh_config="/c`x`"),
                 LaunchSpec("mk-`x`", "/opt/math", "tunnel", (50001, 50002))):
        with pytest.raises(ValueError, match="backquote"):
            launch_command(spec)


# Host and user names as the wizard accepts them: whatever --host USER@HOST parses to.
host_texts = st.from_regex(r"[A-Za-z0-9._%-][A-Za-z0-9._:%-]{0,30}", fullmatch=True)
user_texts = st.from_regex(r"[A-Za-z0-9._][A-Za-z0-9._@-]{0,20}", fullmatch=True)
# Key files: absolute paths config_path_value accepts (quotes and backslashes included:
# OpenSSH 8.7+ reads them as shell-like quoting, so the block escapes them).
identities = st.text(st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)),
                     min_size=1, max_size=30).map(lambda t: "/" + t)
absolute_kernels = paths.map(lambda t: "/" + t)


def ssh_G(cfg, host):
    done = subprocess.run(["ssh", "-G", "-F", str(cfg), host], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode("utf-8", "surrogateescape")
    return dict(line.split(" ", 1) for line in out.split("\n") if " " in line)


@given(names, host_texts, user_texts, st.integers(1, 65535), identities, absolute_kernels,
       st.integers(1, 512), st.booleans())
@example(name="Work", host_text="Fe80::1%Eth0", user_text="a.b@c", port=2222,
         identity="/home/a b/.ssh/id 100%", kernel="/opt/Wolfram Mathematica/14.1/Kernel é?#",
         count=8, own_config=True)
@example(name="w", host_text="WS.Example.org", user_text="alice", port=22, identity="/k/%d/id",
         kernel="/usr/local/bin/wolfram", count=1, own_config=False)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_block_and_parallel_url_round_trip(tmp_path, name, host_text, user_text, port, identity,
                                           kernel, count, own_config):
    """The managed block through the real ``ssh -G``, and the parallel-kernels URL through
    urllib: both give back exactly the host, user, port, key and kernel intended."""
    try:
        target = parse_host(f"{user_text}@{host_text}")
    except UsageError:
        assume(False)
    host, user, port = target.host, target.user, target.port or port
    alias = "mk-" + name
    cfg = tmp_path / "config"
    cfg.write_text(sshconfig.render_block(sshconfig.HostBlock(alias, host, user, port, identity)))
    g = ssh_G(cfg, alias)
    # ssh normalises a host name (lower case, a number such as "10" as 0.0.0.10): compare
    # with what it makes of the same name given on its command line, without any config
    plain = ssh_G("/dev/null", host)["hostname"]
    assert (g["hostname"], g["user"], g["port"]) == (plain, user, str(port))
    assert g["identityfile"].replace("%%", "%") == identity  # printed as written: %% is a %

    pl = wl.parallel_launch(alias=alias, user=user, hostname=host, port=port, kernel=kernel,
                            kernel_version="14.1", count=count, identity=identity,
                            ssh_config=str(cfg) if own_config else None)
    expr = wl.launch_expression(pl)
    url = urlsplit(wl.parse_wl_string(wl.STRING_RE.search(expr).group(0)))
    assert url.scheme == "ssh" and unquote(url.path) == kernel and url.query == str(count)
    assert url.fragment == "" and " " not in url.geturl()
    assert re.fullmatch(r"(?:[^%]|%[0-9A-Fa-f]{2})*", url.geturl())  # every % starts an escape
    if own_config:  # the URL carries user, host and port; the key goes in as SSHIdentity
        userinfo, _, hostport = url.netloc.rpartition("@")
        url_host = hostport[1:hostport.index("]")] if ":" in host else hostport.rsplit(":", 1)[0]
        assert (unquote(userinfo), unquote(url_host), url.port) == (user, host, port)
        assert f'"SSHIdentity" -> {wl.wl_string(identity)}' in expr
    else:  # the URL names the alias alone: ssh takes everything else from the block
        assert url.netloc == alias and url.port is None
        assert ssh_G(cfg, url.netloc)["hostname"] == plain
    assert wl.read_parallel(expr) == pl


def test_tunnel_strings_exact():
    spec = LaunchSpec("mk-hpc", "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel",
                      "tunnel", (50001, 50002), "14.1")
    assert mlopen_arguments(spec) == ("-LinkMode Listen -LinkProtocol TCPIP -LinkName "
                                      "50001@127.0.0.1,50002@127.0.0.1 -LinkOptions MLDontInteract")
    assert launch_command(spec) == launch.ENV + " -u LD_LIBRARY_PATH " + (
        launch.resolved_ssh("") + ' -R 50001:127.0.0.1:50001 -R 50002:127.0.0.1:50002 mk-hpc '
        '"/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel -wstp -LinkMode Connect '
        '-LinkProtocol TCPIP -LinkName 50001@127.0.0.1,50002@127.0.0.1 -LinkHost 127.0.0.1"')


def test_mathlink_before_10():
    spec = LaunchSpec("mk-old", "/opt/M/math", "direct", (50001, 50002), "9.0.1", "192.0.2.1")
    assert " -mathlink " in launch_command(spec)
    assert " -wstp " in launch_command(LaunchSpec("mk-n", "k", "tunnel", (50001, 50002), "10.0"))
