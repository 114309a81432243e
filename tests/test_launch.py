"""Property tests of checks/launch.py: the strings survive the two real shells.

The front end runs the launch command with a POSIX shell; ssh passes its last argument
to the remote user's shell. Both are played here by a real ``/bin/sh``: the local line is
run with ``ssh`` replaced by a function that prints its arguments NUL-separated, and the
remote string is run with ``printf`` in front of it. The words must be exactly the
intended argv, for any alias, kernel path and ssh config path the wizard accepts.
"""

from __future__ import annotations

import subprocess

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checks import launch
from checks.launch import LaunchSpec, kernel_argv, launch_command, mlopen_arguments, split_launch, substitute
from checks.profile import NAME_RE

# What the wizard accepts: --kernel rejects NUL and line breaks; profile names NAME_RE.
paths = st.text(st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)),
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
    return sh_words("ssh() { printf '%s\\0' ssh \"$@\"; }\n" + command)


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


@given(paths)
@settings(max_examples=50, deadline=None)
def test_user_text_never_becomes_a_placeholder(kernel):
    assume("`" not in kernel)
    spec = LaunchSpec("mk-x", kernel, "tunnel", (50001, 50002))
    assert "`linkname`" not in launch_command(spec)


def test_tunnel_strings_exact():
    spec = LaunchSpec("mk-hpc", "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel",
                      "tunnel", (50001, 50002), "14.1")
    assert mlopen_arguments(spec) == ("-LinkMode Listen -LinkProtocol TCPIP -LinkName "
                                      "50001@127.0.0.1,50002@127.0.0.1 -LinkOptions MLDontInteract")
    assert launch_command(spec) == (
        'ssh -R 50001:127.0.0.1:50001 -R 50002:127.0.0.1:50002 mk-hpc '
        '"/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel -wstp -LinkMode Connect '
        '-LinkProtocol TCPIP -LinkName 50001@127.0.0.1,50002@127.0.0.1 -LinkHost 127.0.0.1"')


def test_mathlink_before_10():
    spec = LaunchSpec("mk-old", "/opt/M/math", "direct", (50001, 50002), "9.0.1", "192.0.2.1")
    assert " -mathlink " in launch_command(spec)
    assert " -wstp " in launch_command(LaunchSpec("mk-n", "k", "tunnel", (50001, 50002), "10.0"))
