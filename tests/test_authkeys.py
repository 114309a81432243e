"""The authorized_keys parser (mkdoctor.openssh.authorized_keys), the known_hosts helpers
(mkdoctor.openssh.known_hosts) and the pure helpers of MK304-MK306: unit and property tests.

The expected behaviour is OpenSSH's (auth-options.c, misc.c, sshkey.c); one test below
also asks the real ``ssh-keygen`` for the fingerprint, so our SHA256 cannot drift.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mkdoctor.openssh import authorized_keys as authkeys
from mkdoctor.openssh.authorized_keys import (BadLine, KeyLine, OptionError, from_matches, listen_permitted,
                             parse_file, parse_line, parse_options, split_options)
from mkdoctor.checks import mk304_passwordless_login as mk304
from mkdoctor.checks import mk305_authorized_keys as mk305
from mkdoctor.checks import mk306_clean_shell as mk306
from mkdoctor.openssh.known_hosts import (KEYSCAN_TYPES, HostKey, KnownEntry, judge, lookup_name,
                                          parse_keygen_find, parse_keyscan, scan_types)


def make_blob(keytype: str = "ssh-ed25519", payload: bytes = b"\x01" * 32) -> str:
    """A structurally valid key blob: string(type) string(32-byte public key)."""
    def s(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b
    return base64.b64encode(s(keytype.encode()) + s(payload)).decode()


BLOB = make_blob()
KEY_LINE = f"ssh-ed25519 {BLOB} me@laptop"
KEY = f"ssh-ed25519 {BLOB} me@laptop"


@pytest.fixture(scope="module")
def real_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A key made by the real ssh-keygen: (pub line, ssh-keygen -l fingerprint)."""
    d = tmp_path_factory.mktemp("k")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "c", "-f", str(d / "k")],
                   check=True, timeout=30)
    fp = subprocess.run(["ssh-keygen", "-lf", str(d / "k.pub")], capture_output=True, text=True,
                        check=True, timeout=30).stdout.split()[1]
    return (d / "k.pub").read_text().strip(), fp


# --- lines ----------------------------------------------------------------------------


def test_plain_key_line() -> None:
    line = parse_line(KEY, 1)
    assert isinstance(line, KeyLine)
    assert (line.keytype, line.blob, line.comment, line.options) == ("ssh-ed25519", BLOB, "me@laptop", [])
    assert line.port_forwarding


def test_fingerprint_matches_ssh_keygen(real_key: tuple[str, str]) -> None:
    pub, fp = real_key
    line = parse_line(pub, 1)
    assert isinstance(line, KeyLine) and line.fingerprint == fp


@pytest.mark.parametrize("text", ["", "   ", "# comment", "  # indented comment", "\r"])
def test_blank_and_comment_lines_are_ignored(text: str) -> None:
    assert parse_line(text, 1) is None


def test_quoted_option_with_comma_space_and_escaped_quote() -> None:
    text = r'command="echo \"a, b\" c",no-pty,from="10.0.0.0/8,!10.1.*" ' + KEY
    line = parse_line(text, 7)
    assert isinstance(line, KeyLine), line
    assert line.values("command") == ['echo "a, b" c']
    assert line.values("from") == ["10.0.0.0/8,!10.1.*"]
    assert [str(o) for o in line.options][1] == "no-pty"
    assert line.blob == BLOB


def test_options_are_case_insensitive_and_in_order() -> None:
    assert not parse_line(f"NO-PORT-FORWARDING {KEY}", 1).port_forwarding
    assert not parse_line(f"restrict {KEY}", 1).port_forwarding
    assert parse_line(f"restrict,port-forwarding {KEY}", 1).port_forwarding
    # flags apply in order: restrict after port-forwarding turns it off again
    assert not parse_line(f"port-forwarding,restrict {KEY}", 1).port_forwarding


@pytest.mark.parametrize("options, reason", [
    ("nosuchoption", "unknown key option"),
    ("command=echo", "missing start quote"),
    ('command="echo', "unterminated"),
    ("no-pty,", "trailing comma"),
    ('command="a",command="b"', "multiple"),
    ('permitlisten="x:99999"', "permitlisten"),
    ('environment="1A=b"', "environment"),
    ("restricted", "unknown key option"),
])
def test_options_sshd_refuses_make_a_bad_line(options: str, reason: str) -> None:
    line = parse_line(f"{options} {KEY}", 3)
    assert isinstance(line, BadLine) and line.number == 3
    assert reason in line.reason


@pytest.mark.parametrize("text, reason", [
    ("garbage here", "not a key line"),
    (f"ssh-ed25519 {BLOB[:21]}", "base64"),
    (f"ssh-ed25519 {BLOB[:20]}", "cut short"),
    (f"ssh-rsa {BLOB}", "does not match its type"),
    ("ssh-ed25519", "without the key data"),
    ("no-pty ssh-foo AAAA", "unknown key type"),
])
def test_malformed_lines(text: str, reason: str) -> None:
    line = parse_line(text, 2)
    assert isinstance(line, BadLine) and reason in line.reason, line


def test_one_garbage_line_does_not_hide_the_rest() -> None:
    text = f"garbage\n\n# c\nssh-ed25519 AAAA\n{KEY}\nrestrict {KEY}\n"
    keys, bad = parse_file(text)
    assert [b.number for b in bad] == [1, 4]
    assert [k.number for k in keys] == [5, 6]


def test_split_options_respects_quotes() -> None:
    assert split_options(f'command="a b" {KEY}') == ('command="a b"', KEY)
    with pytest.raises(OptionError):
        split_options('command="a b ' + KEY)


# --- what options allow ---------------------------------------------------------------


@pytest.mark.parametrize("values, port, ok", [
    ([], 31415, True),
    (["31415"], 31415, True),
    (["31415"], 31416, False),
    (["localhost:31415"], 31415, True),
    (["localhost:*"], 31416, True),
    (["*:31416"], 31416, True),
    (["127.0.0.1:31415"], 31415, False),  # ssh asks to listen on "localhost", not the address
    (["[::1]:31415"], 31415, False),
])
def test_listen_permitted(values: list[str], port: int, ok: bool) -> None:
    assert listen_permitted(values, port) is ok


@pytest.mark.parametrize("patterns, addr, ok", [
    ("10.0.0.0/8", "10.1.2.3", True),
    ("10.0.0.0/8", "192.168.1.2", False),
    ("192.168.1.*", "192.168.1.9", True),
    ("*,!192.168.1.9", "192.168.1.9", False),
    ("127.0.0.1", "127.0.0.1", True),
    ("*.example.org", "10.0.0.1", None),  # a host-name pattern: cannot tell from an address
    # addrmatch.c addr_pton_cidr: host bits set or a mask too long is an invalid list
    # (-2), and auth-options.c refuses the key for every client
    ("10.0.0.1/8", "10.1.2.3", False),
    ("10.0.0.0/33", "10.1.2.3", False),
    ("192.168.1.0/24,10.0.0.1/8", "192.168.1.9", False),
    ("2001:db8::1/32", "2001:db8::5", False),
    ("10.0.0.0/8", "10.1.2.3", True),
])
def test_from_matches(patterns: str, addr: str, ok: bool | None) -> None:
    assert from_matches(patterns, addr) is ok


def test_from_host_names_count_only_with_usedns_yes() -> None:
    """auth.c auth_get_canonical_hostname: under UseDNS no (the default) sshd matches
    from= host-name patterns against the address."""
    assert from_matches("*.example.org", "10.0.0.1", "pc.example.org", usedns="no") is False
    assert from_matches("*.example.org", "10.0.0.1", "pc.example.org", usedns="yes") is True
    assert from_matches("*.example.org,!bad.example.org", "10.0.0.1", "bad.example.org",
                        usedns="yes") is False


@pytest.mark.parametrize("option, ok", [
    ('permitopen="localhost:31415"', True),
    ('permitopen="a:b:22"', False),  # hpdelim2: host "a", port "b:22"
    ('permitopen="host/22"', True),  # hpdelim2 also splits at "/"
    ('permitopen="[::1]:22"', True),
    ('permitopen="[::1]x:22"', False),
    ('permitopen=":22"', True),  # an empty host is accepted by auth-options.c
    ('permitlisten="31415"', True),
    ('permitlisten="localhost:31415:1"', False),
    ('permitopen="31415"', False),  # a bare port only for permitlisten
])
def test_permit_options_split_like_hpdelim2(option: str, ok: bool) -> None:
    line = f"{option} {KEY_LINE}"
    parsed = authkeys.parse_line(line, 1)
    assert isinstance(parsed, KeyLine) is ok, parsed


# --- properties -----------------------------------------------------------------------

_value = st.text(alphabet=st.characters(blacklist_characters='\x00\n\r"\\', min_codepoint=32,
                                        max_codepoint=126), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["no-pty", "restrict", "port-forwarding", "no-agent-forwarding", "pty",
                     "cert-authority", "no-x11-forwarding", "user-rc"]),
    st.builds(lambda v: ("command", v), _value),
    st.builds(lambda v: ("environment", "A=" + v), _value),
), min_size=1, max_size=6, unique_by=lambda x: x if isinstance(x, str) else x[0]))
def test_written_options_parse_back(items: list) -> None:
    """Options written the way sshd(8) documents them parse back to the same values,
    and the key after them is always found."""
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        else:
            name, value = item
            parts.append(f'{name}="{value}"')
    line = parse_line(",".join(parts) + " " + KEY, 1)
    assert isinstance(line, KeyLine), line
    assert line.blob == BLOB
    for item in items:
        if not isinstance(item, str):
            assert line.values(item[0]) == [item[1]]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_parse_line_never_raises(text: str) -> None:
    result = parse_line(text, 1)
    assert result is None or isinstance(result, (KeyLine, BadLine))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=60), max_size=8))
def test_garbage_never_hides_a_valid_key(garbage: list[str]) -> None:
    text = "\n".join(garbage + [KEY] + garbage)
    keys, _ = parse_file(text)
    assert any(k.blob == BLOB and k.number == len(garbage) + 1 for k in keys)


# --- known_hosts ------------------------------------------------------------------------

K1 = HostKey("ssh-ed25519", make_blob(payload=b"\x01" * 32))
K2 = HostKey("ssh-ed25519", make_blob(payload=b"\x02" * 32))
R1 = HostKey("ssh-rsa", make_blob("ssh-rsa", b"\x03" * 64))


def entry(key: HostKey, marker: str = "") -> KnownEntry:
    return KnownEntry("/kh", 1, key, marker)


def test_lookup_name() -> None:
    assert lookup_name("h.example", 22) == "h.example"
    assert lookup_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    assert lookup_name("127.0.0.1", 2222, "myalias") == "myalias"


JUDGE_CASES = [
    ([K1], [entry(K1)], "known"),
    ([K1], [], "unknown"),
    ([K1], [entry(K2)], "changed"),
    ([K1, R1], [entry(R1), entry(K2)], "changed"),  # ssh prefers ed25519, which differs
    ([K1, R1], [entry(R1)], "known"),  # ssh picks the recorded type
    ([K1], [entry(R1)], "other-types"),
    ([K1], [entry(K1, "revoked")], "revoked"),
    # hostfile.c: @revoked revokes that key, not the host. ssh negotiates one key (the
    # types it has plain entries for first, sshconnect2.c order_hostkeyalgs).
    ([K1, R1], [entry(K1), entry(R1, "revoked")], "known"),
    ([K1, R1], [entry(R1), entry(K1, "revoked")], "known"),
    ([K1, R1], [entry(K1, "revoked")], "revoked"),  # nothing recorded: ssh takes ed25519
    ([K1], [entry(K2, "cert-authority")], "cert-authority"),
]


@pytest.mark.parametrize("server, known, kind", JUDGE_CASES)
def test_judge(server: list[HostKey], known: list[KnownEntry], kind: str) -> None:
    assert judge(server, known).kind == kind


@pytest.mark.parametrize("server, known, kind", JUDGE_CASES)
def test_scanning_the_recorded_types_only_gives_the_same_verdict(
        server: list[HostKey], known: list[KnownEntry], kind: str) -> None:
    """MK303 fetches only scan_types(known): on the server's keys of those types judge
    decides as on all of them; when the server has none of them, MK303 scans every type."""
    types = scan_types(known)
    fetched = [k for k in server if not types or KEYSCAN_TYPES[k.keytype] in types]
    if fetched:
        assert judge(fetched, known).kind == kind
    else:
        assert kind == "other-types"


def test_scan_types() -> None:
    E1 = HostKey("ecdsa-sha2-nistp384", "x")
    assert scan_types([]) == []  # nothing recorded: every type (the key to record)
    assert scan_types([entry(K1, "cert-authority")]) == []
    assert scan_types([entry(K1), entry(R1), entry(K2)]) == ["ed25519", "rsa"]
    assert scan_types([entry(E1), entry(R1, "revoked")]) == ["ecdsa"]
    assert scan_types([entry(HostKey("ssh-unknown@example.org", "x"))]) == []


def test_parse_keygen_find_and_keyscan() -> None:
    out = (f"# Host [h]:22 found: line 3 \n|1|abc=|def= {K1.keytype} {K1.blob}\n"
           f"# Host [h]:22 found: line 5 REVOKED\n@revoked [h]:22 {K2.keytype} {K2.blob}\n")
    entries = parse_keygen_find(out, "/f")
    assert [(e.line, e.key, e.marker, e.hashed) for e in entries] == [
        (3, K1, "", True), (5, K2, "revoked", False)]
    scan = f"[h]:2 {K1.keytype} {K1.blob}\n# h:2 SSH-2.0-OpenSSH\n"
    assert parse_keyscan(scan) == [K1]


def test_host_key_fingerprint_is_sha256() -> None:
    assert authkeys.fingerprint(K1.blob).startswith("SHA256:") and "=" not in K1.fingerprint


def test_helpers_exist_for_real_files(tmp_path: Path) -> None:
    from mkdoctor.openssh.known_hosts import split_files
    spaced = tmp_path / "a b"
    spaced.write_text("")
    assert split_files(f"{spaced} /nonexistent/kh") == [str(spaced), "/nonexistent/kh"]


def test_parse_options_directly() -> None:
    opts = parse_options('no-pty,permitlisten="[::1]:99",tunnel="any"')
    assert [(o.name, o.value, o.negated) for o in opts] == [
        ("pty", None, True), ("permitlisten", "[::1]:99", False), ("tunnel", "any", False)]


# --- MK305 helpers ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern, path", [
    (".ssh/authorized_keys", "/home/u/.ssh/authorized_keys"),
    ("%h/.ssh/keys", "/home/u/.ssh/keys"),
    ("/etc/ssh/keys/%u", "/etc/ssh/keys/u"),
    ("/k/%U/100%%", "/k/1000/100%"),
])
def test_expand_authorized_keys_file(pattern: str, path: str) -> None:
    assert mk305.expand(pattern, "/home/u", "u", "1000") == path


def test_guarded_dirs_stop_at_home_or_root() -> None:
    assert mk305.guarded_dirs("/home/u/.ssh/authorized_keys", "/home/u") == ["/home/u/.ssh", "/home/u"]
    assert mk305.guarded_dirs("/etc/ssh/keys/u", "/home/u") == ["/etc/ssh/keys", "/etc/ssh", "/etc", "/"]


def test_parse_listing_and_modes() -> None:
    t = "TOK"
    out = (f"{t} L 1 -rw-rw-rw- 1 1000 1000 10 Jan  1 00:00 /h/.ssh/authorized_keys\n"
           f"{t} L 2 -\n"
           f"{t} L 3 drwx------. 2 0 0 4096 Jan  1 00:00 /h/.ssh\n"
           f"{t} B 1\nline one\nline two\n\n{t} E 1\n")
    paths = ["/h/.ssh/authorized_keys", "/h/.ssh/authorized_keys2", "/h/.ssh"]
    entries, contents = mk305.parse_listing(out, t, paths)
    assert contents == {"/h/.ssh/authorized_keys": "line one\nline two\n"}
    assert not entries["/h/.ssh/authorized_keys2"].exists
    assert entries["/h/.ssh"].is_dir and entries["/h/.ssh"].uid == 0
    assert mk305.mode_problem(entries["/h/.ssh/authorized_keys"], 1000)[0] == "other"
    assert mk305.mode_problem(entries["/h/.ssh"], 1000) is None
    assert mk305.mode_problem(mk305.Entry("/x", True, False, "rw-rw-r--", 1000), 1000)[0] == "group"
    assert mk305.mode_problem(mk305.Entry("/x", True, False, "rw-------", 5), 1000)[0] == "owner"


@pytest.mark.parametrize("options, mode, severities", [
    ("", "tunnel", []),
    ("no-port-forwarding", "tunnel", ["fail"]),
    ("no-port-forwarding", "direct", ["warn"]),
    ('command="x"', "direct", ["fail"]),
    ('from="10.0.0.0/8"', "tunnel", ["fail"]),
    ('from="127.0.0.0/8"', "tunnel", []),
    ('from="*.example.org"', "tunnel", ["warn"]),
    ('permitlisten="31415"', "tunnel", ["fail"]),
    ('permitlisten="31415"', "direct", []),
    ('expiry-time="20300101"', "tunnel", ["warn"]),
])
def test_option_problems(options: str, mode: str, severities: list[str]) -> None:
    line = parse_line(f"{options} {KEY}".strip(), 1)
    assert isinstance(line, KeyLine)
    problems = mk305.option_problems(line, "f line 1", mode, (31415, 31416), "127.0.0.1")
    assert [p.severity for p in problems] == severities
    assert all(p.fix for p in problems)


# --- MK304 and MK306 helpers ------------------------------------------------------------


@pytest.mark.parametrize("stderr, reason", [
    ("u@h: Permission denied (publickey).", "permission-denied"),
    ("u@h: Permission denied (password,keyboard-interactive).", "no-publickey"),
    ("@@@\nWARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\nHost key verification failed.",
     "host-key-changed"),
    ("No ED25519 host key is known for [h]:2 and you have requested strict checking.\n"
     "Host key verification failed.", "host-key"),
    ("ssh: connect to host h port 22: Connection refused", "refused"),
    ("ssh: connect to host h port 22: Connection timed out", "timeout"),
    ("ssh: Could not resolve hostname x: Name or service not known", "resolve"),
    ("kex_exchange_identification: Connection closed by remote host", "closed"),
    ("something new", "other"),
])
def test_mk304_classifies_ssh_words(stderr: str, reason: str) -> None:
    summary, fix, details, got = mk304.classify(stderr, False, "h", "ssh-copy-id -i k.pub h")
    assert got == reason and summary and fix


def test_mk306_helpers() -> None:
    noise = "hello world\nstty: 'standard input': Inappropriate ioctl for device\n"
    assert mk306.needles(noise) == ["hello world", "stty"]
    assert mk306.direct_location("/home/u/.bashrc: line 3: foo: command not found") == (
        "/home/u/.bashrc", 3)
    out = "T F /home/u/.bashrc\nT M 1 2:echo hello world\nT F /etc/bash.bashrc\n"
    assert mk306.parse_matches(out, "T") == [("/home/u/.bashrc", 2, "echo hello world")]
