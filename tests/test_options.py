"""Validation of user input: hostile host names and ports never reach ssh."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mkdoctor.options import UsageError, parse_host, parse_link_ports


@pytest.mark.parametrize("text, host, user, port", [
    ("ws", "ws", None, None),
    ("alice@ws.example.org", "ws.example.org", "alice", None),
    ("alice@ws:2222", "ws", "alice", 2222),
    ("[2001:db8::1]:22", "2001:db8::1", None, 22),
    ("2001:db8::1", "2001:db8::1", None, None),
    ("mk-work", "mk-work", None, None),
])
def test_parse_host_valid(text, host, user, port):
    t = parse_host(text)
    assert (t.host, t.user, t.port) == (host, user, port)


@pytest.mark.parametrize("text", [
    "", "-oProxyCommand=touch /tmp/x", "a b", "host\n", "host\x00", "@host", "u@", "h:0",
    "h:70000", "h:abc", "u@-host", "h;rm -rf /", "$(id)", "`id`", "[::1", "-l root",
])
def test_parse_host_rejects(text):
    with pytest.raises(UsageError):
        parse_host(text)


@given(st.text(max_size=40))
def test_parse_host_never_returns_an_option_or_shell_metacharacters(text):
    try:
        t = parse_host(text)
    except UsageError:
        return
    assert not t.host.startswith("-")
    assert not any(c in t.host for c in " \t\n;|&$`'\"<>(){}*?!\\")
    assert t.user is None or not t.user.startswith("-")


@pytest.mark.parametrize("text, ports", [("31415,31416", (31415, 31416)), (" 2000 , 3000", (2000, 3000))])
def test_link_ports_valid(text, ports):
    assert parse_link_ports(text) == ports


@pytest.mark.parametrize("text", ["1,2", "31415", "31415,31415", "a,b", "1024,65536", "1,2,3", ""])
def test_link_ports_invalid(text):
    with pytest.raises(UsageError):
        parse_link_ports(text)


@given(st.integers(-10, 70000), st.integers(-10, 70000))
def test_link_ports_property(a, b):
    ok = 1024 <= a <= 65535 and 1024 <= b <= 65535 and a != b
    try:
        assert parse_link_ports(f"{a},{b}") == (a, b) and ok
    except UsageError:
        assert not ok
