"""The managed ``Host mk-NAME`` block of the ssh client configuration.

The block is delimited by two marker comments::

    # >>> mkdoctor mk-NAME >>>
    ...
    # <<< mkdoctor mk-NAME <<<

Everything outside the markers is kept byte for byte: comments, ``Include`` lines, CRLF
line endings, a missing final newline, odd bytes (decoded with ``surrogateescape``).

Placement. ssh uses, for each option, the *first* value it obtains (ssh_config(5):
"For each parameter, the first obtained value will be used"), and options written
before the first ``Host``/``Match`` line apply to every host. So a block appended at the
end of a file that has ``Host *`` (or global options) above it can be silently
overridden. A new block is therefore inserted at the very top of the file, and it ends
with a ``Host *`` line of its own: whatever global options follow (originally before any
``Host`` line) still apply to every host, exactly as before. An existing block is
replaced where it is (if the user moved it, that was their choice; MK501 compares
``ssh -G mk-NAME`` with the profile and reports any override).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mkdoctor.options import UsageError
from mkdoctor.openssh.tokens import QuoteError, argv_split

ALIAS_PREFIX = "mk-"


def start_marker(alias: str) -> str:
    return f"# >>> mkdoctor {alias} >>>"


def end_marker(alias: str) -> str:
    return f"# <<< mkdoctor {alias} <<<"


# Keys in the order written; values are strings. These are the options mkdoctor sets
# on purpose: the chosen key (and only it), forward failures that end the connection,
# and keep-alives. Everything else comes from what ``ssh -G HOST`` resolves.
BLOCK_KEYS = ("HostName", "User", "Port", "IdentityFile", "IdentitiesOnly", "ServerAliveInterval",
              "ExitOnForwardFailure")
# The legacy ``extra`` dict of :class:`HostBlock` (kept for callers that still build one).
CARRIED_KEYS = ("HostKeyAlias", "UserKnownHostsFile", "ProxyJump")


@dataclass
class HostBlock:
    """What the managed block says. ``carried``: the options derived from ``ssh -G HOST``
    as (Key, value already in config syntax) pairs, see :func:`derive_options`;
    ``extra``: the older hand-picked options (key -> value), still accepted."""

    alias: str
    hostname: str
    user: str
    port: int
    identity: str
    server_alive_interval: int = 30
    extra: dict[str, str] = field(default_factory=dict)
    carried: list[tuple[str, str]] = field(default_factory=list)

    def options(self) -> list[tuple[str, str]]:
        opts = [
            # HostName takes %-tokens (ssh_config(5) TOKENS): an IPv6 zone's % is doubled
            ("HostName", config_value("HostName", self.hostname).replace("%", "%%")),
            ("User", config_value("User", self.user)),
            ("Port", str(self.port)),
            ("IdentityFile", config_path_value(self.identity)),
            ("IdentitiesOnly", "yes"),
            ("ServerAliveInterval", str(self.server_alive_interval)),
            ("ExitOnForwardFailure", "yes"),
        ]
        for key in CARRIED_KEYS:
            if self.extra.get(key):
                value = self.extra[key]
                # UserKnownHostsFile arrives as a list of words already quoted.
                opts.append((key, _checked_words(key, value) if key == "UserKnownHostsFile"
                             else config_value(key, value)))
        done = {k.lower() for k, _ in opts}
        opts += [(k, v) for k, v in self.carried if k.lower() not in done or k.lower() in MULTI_LINE]
        return opts


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A Host alias the block may name: one word, no pattern or comment characters.
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Already-quoted lists of words (UserKnownHostsFile): bare words or whole "..." words.
_WORDS = re.compile(r'(?:"[^"]*"|[^"\s]+)(?:[ \t]+(?:"[^"]*"|[^"\s]+))*')


def quote_word(value: str, what: str = "value") -> str:
    """``value`` as ONE ssh_config argument, read back by ssh as exactly ``value``.

    Since OpenSSH 8.7 every config line is split like a shell word (misc.c
    ``argv_split``): ``'`` and ``"`` open quotes, and ``\\``, ``\\'``, ``\\"`` are escapes;
    so those three characters get a backslash, and a value with white space or ``#``
    (or an empty one) is double-quoted. A control character (a line break would start
    a directive of its own) cannot be written: :class:`UsageError`. ``%`` is left
    alone: only the caller knows whether the option takes %-tokens."""
    if any(c in value for c in "\r\n\x00"):
        raise UsageError(f"{what} {value!r}: a value with a control character cannot be "
                         "written to the ssh config")
    escaped = re.sub(r"""([\\'"])""", r"\\\1", value)
    return f'"{escaped}"' if not value or re.search(r"[\s#]", value) else escaped


def config_value(key: str, value: str) -> str:
    """One ssh_config argument (see :func:`quote_word`); no control character at all
    (a host or user name with one is a mistake, not something to write)."""
    if _CONTROL.search(value):
        raise UsageError(f"{key} {value!r}: a value with a control character cannot be "
                         "written to the ssh config")
    return quote_word(value, key)


def _checked_words(key: str, value: str) -> str:
    if _CONTROL.search(value) or not _WORDS.fullmatch(value):
        raise UsageError(f"{key} {value!r}: cannot be written to the ssh config")
    return value


def config_path_value(path: str) -> str:
    """A file name as an ssh_config value of an option that takes %-tokens, read back
    by ssh as exactly ``path``: ``%`` doubled (ssh_config(5) TOKENS: ``%%`` is a literal
    percent), then quoted as :func:`quote_word`. A line break or NUL cannot be written."""
    if any(c in path for c in "\r\n\x00"):
        raise UsageError(f"{path!r}: a key path with a line break cannot be written to the "
                         "ssh config")
    return quote_word(path.replace("%", "%%"), "path")


def render_block(block: HostBlock, eol: str = "\n") -> str:
    if not _ALIAS.fullmatch(block.alias):
        raise UsageError(f"{block.alias!r}: not a usable ssh Host alias")
    lines = [
        start_marker(block.alias),
        "# Written by `mkdoctor setup`: replaced as a whole on the next run, edit the profile",
        "# instead. It stays first in the file because ssh uses the first value it finds.",
        f"Host {block.alias}",
    ]
    lines += [f"    {k} {v}" for k, v in block.options()]
    lines += [
        "# The next line ends this block: what follows applies to every host, as before.",
        "Host *",
        end_marker(block.alias),
    ]
    return eol.join(lines) + eol


def detect_eol(text: str) -> str:
    """The file's line ending, from its first line (LF for an empty file)."""
    first = text.split("\n", 1)
    return "\r\n" if len(first) == 2 and first[0].endswith("\r") else "\n"


@dataclass
class BlockSpan:
    start: int  # character offset of the start marker line
    end: int  # character offset just after the end marker line (its EOL included)


def find_block(text: str, alias: str) -> Optional[BlockSpan]:
    """The managed block of ``alias`` in ``text``, or None. A start marker without an end
    marker (or two blocks of the same alias) is a :class:`UsageError`: we will not guess
    where the user's content begins."""
    starts: list[int] = []
    ends: list[int] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == start_marker(alias):
            starts.append(offset)
        elif stripped == end_marker(alias):
            ends.append(offset + len(line))
        offset += len(line)
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        raise UsageError(
            f"the ssh config has a damaged mkdoctor block for {alias} ({len(starts)} start and "
            f"{len(ends)} end marker(s)); remove the lines from '{start_marker(alias)}' to "
            f"'{end_marker(alias)}' by hand and run mkdoctor setup again")
    return BlockSpan(starts[0], ends[0])


def upsert_block(text: str, block: HostBlock) -> str:
    """``text`` with the managed block of ``block.alias`` replaced (where it is) or
    inserted at the top. Content outside the block is kept exactly."""
    eol = detect_eol(text)
    rendered = render_block(block, eol)
    span = find_block(text, block.alias)
    if span is None:
        return rendered + text
    return text[:span.start] + rendered + text[span.end:]


def remove_block(text: str, alias: str) -> str:
    span = find_block(text, alias)
    return text if span is None else text[:span.start] + text[span.end:]


def block_text(text: str, alias: str) -> Optional[str]:
    span = find_block(text, alias)
    return None if span is None else text[span.start:span.end]


def parse_block(text: str, alias: str) -> Optional[dict[str, str]]:
    """The options of the managed block (keys lower-case, first value wins, quotes and
    ``%%`` undone), or None when there is no block."""
    body = block_text(text, alias)
    if body is None:
        return None
    opts: dict[str, str] = {}
    in_host = False
    for line in body.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"(\S+?)(?:\s*=\s*|\s+)(.*)$", s)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key == "host":
            in_host = value == alias
            continue
        if not in_host:
            continue
        if key in ("identityfile", "userknownhostsfile"):
            try:  # quotes and escapes as ssh reads them (the inverse of config_path_value)
                value = " ".join(argv_split(value))
            except QuoteError:
                pass
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key in ("identityfile", "hostname"):
            value = value.replace("%%", "%")
        opts.setdefault(key, value)
    return opts


def host_aliases(text: str) -> list[str]:
    """Concrete Host aliases of a config file (no patterns, no negations), in order."""
    out: list[str] = []
    for line in text.splitlines():
        for name in _host_names(line):
            if name not in out:
                out.append(name)
    return out


def _host_names(line: str) -> list[str]:
    m = re.match(r"\s*host(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
    if not m:
        return []
    names = (n.strip('"') for n in m.group(1).split("#", 1)[0].split())
    return [n for n in names if n and not any(c in n for c in "*?!,")]


# OpenSSH stops at this depth of nested Include (readconf.c, READCONF_MAX_DEPTH).
MAX_INCLUDE_DEPTH = 16


def include_paths(line: str, home: Path) -> list[Path]:
    """The files an ``Include`` line names, as ssh reads them for a user configuration
    (ssh_config(5), Include): ``~`` is the home directory, a relative path is relative
    to ``~/.ssh``, globs are expanded and read in lexical order. [] for another line."""
    import glob
    import os

    m = re.match(r"\s*include(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
    if not m:
        return []
    out: list[Path] = []
    for word in re.findall(r'"[^"]*"|\S+', m.group(1)):
        if word.startswith("#"):
            break
        word = word.strip('"')
        if word == "~" or word.startswith("~/"):
            word = str(home) + word[1:]
        elif word.startswith("~"):
            word = os.path.expanduser(word)
        if not os.path.isabs(word):
            word = str(home / ".ssh" / word)
        out += [Path(f) for f in sorted(glob.glob(word))]
    return out


def _applies_to_all(line: str) -> Optional[bool]:
    """For a ``Host``/``Match`` line: whether it applies to every host (``Host *``, a
    ``*`` among its patterns, ``Match all``); None for any other line."""
    m = re.match(r"\s*(host|match)(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
    if not m:
        return None
    words = [w.strip('"') for w in m.group(2).split("#", 1)[0].split()]
    if m.group(1).lower() == "match":
        return [w.lower() for w in words] == ["all"]
    return "*" in words


def config_aliases(path: Path, home: Optional[Path] = None) -> list[tuple[str, Path]]:
    """Concrete Host aliases of the ssh config ``path`` and of the files it includes
    (recursively, in the order ssh reads them, at most :data:`MAX_INCLUDE_DEPTH` deep),
    each with the file that names it. An ``Include`` inside a ``Host``/``Match`` block
    counts only when the block applies to every host: ssh reads the others only for
    the hosts they match (readconf.c, SSHCONF_NEVERMATCH), so their aliases would
    never apply. Files that cannot be read are passed over."""
    home = home if home is not None else Path.home()
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def walk(file: Path, depth: int) -> None:
        try:
            text = read_text(file.read_bytes())
        except OSError:  # missing, unreadable, a directory
            return
        everywhere = True  # before any Host/Match line
        for line in text.splitlines():
            block = _applies_to_all(line)
            if block is not None:
                everywhere = block
            for name in _host_names(line):
                if name not in seen:
                    seen.add(name)
                    out.append((name, file))
            if everywhere and depth < MAX_INCLUDE_DEPTH:
                for inc in include_paths(line, home):
                    walk(inc, depth + 1)

    walk(Path(path), 0)
    return out


def read_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# --- ssh -G: the one reader ----------------------------------------------------------------

SshG = dict[str, list[str]]


class SshGError(RuntimeError):
    """``ssh -G`` failed (bad config, bad host name): the message is ssh's own."""


def ssh_g_argv(destination: str, ssh_config: Optional[Path | str] = None, *,
               user: Optional[str] = None, port: Optional[int] = None,
               base: Optional[list[str]] = None) -> list[str]:
    """``ssh [-F CONFIG] [-l USER] [-p PORT] -G -- DESTINATION``. ``base`` replaces the
    leading ``ssh [-F CONFIG]`` (a caller with options of its own, e.g. the session)."""
    argv = list(base) if base is not None else (
        ["ssh"] + (["-F", str(ssh_config)] if ssh_config else []))
    argv += (["-l", user] if user else []) + (["-p", str(port)] if port else [])
    return argv + ["-G", "--", destination]


def parse_ssh_g(stdout: str) -> SshG:
    """``ssh -G`` output: each key (lower-case) with ALL its values, in order
    (``identityfile``, ``sendenv``, ``localforward``, ... come once per value)."""
    out: SshG = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key:
            out.setdefault(key.lower(), []).append(value)
    return out


def first_values(g: SshG) -> dict[str, str]:
    """Each key's first value (what ssh uses for a single-valued option)."""
    return {k: v[0] for k, v in g.items() if v}


def read_ssh_g(run, destination: str, ssh_config: Optional[Path | str] = None, *,
               user: Optional[str] = None, port: Optional[int] = None,
               base: Optional[list[str]] = None) -> SshG:
    """Run ``ssh -G`` with ``run`` (argv -> Completed) and parse it; :class:`SshGError`
    with ssh's message when it fails."""
    done = run(ssh_g_argv(destination, ssh_config, user=user, port=port, base=base))
    if done.returncode != 0:
        raise SshGError(f"ssh -G {destination} failed: "
                        f"{(done.stderr or done.stdout or '').strip() or 'no output'}")
    return parse_ssh_g(done.stdout)


# --- the managed block, derived from ssh -G ------------------------------------------------

# Set by mkdoctor on purpose (see HostBlock.options) or pinned: never carried.
SET_BY_MKDOCTOR = frozenset({
    "hostname", "user", "port", "identityfile", "identitiesonly", "serveraliveinterval",
    "serveralivecountmax", "exitonforwardfailure",
    # The host name is already the final one (ssh -G prints it after canonicalisation):
    # the block pins CanonicalizeHostname no so it is not canonicalised (or re-parsed) again.
    "canonicalizehostname", "canonicaldomains", "canonicalizefallbacklocal",
    "canonicalizemaxdots", "canonicalizepermittedcnames",
})
# What happens inside a session rather than how the connection is made: mkdoctor runs its
# own commands, forwards, multiplexing and batch mode, so these are left to the rest of
# the user's config (they are not written into the block). ``host`` is ssh -G's echo of
# the name asked for; ``tag`` only selects ``Match tagged`` blocks.
NOT_CARRIED = frozenset({
    "host", "tag", "batchmode",
    "controlmaster", "controlpath", "controlpersist",
    "localforward", "remoteforward", "dynamicforward", "clearallforwardings", "gatewayports",
    "permitremoteopen", "streamlocalbindmask", "streamlocalbindunlink", "tunnel", "tunneldevice",
    "forwardagent", "forwardx11", "forwardx11trusted", "forwardx11timeout", "xauthlocation",
    "remotecommand", "localcommand", "permitlocalcommand", "requesttty", "sessiontype",
    "stdinnull", "forkafterauthentication", "escapechar", "enableescapecommandline",
    "loglevel", "logverbose", "syslogfacility", "visualhostkey",
})
# One config line per value (they accumulate).
MULTI_LINE = frozenset({"identityfile", "certificatefile", "sendenv", "localforward",
                        "remoteforward", "dynamicforward"})
# Printed once per value, but only the FIRST line of the config counts (readconf.c takes
# SetEnv only while none is set): all values go on one line.
ONE_LINE_ALL = frozenset({"setenv"})
# One line, several arguments (ssh -G joins them with a space).
WORD_LIST = frozenset({"userknownhostsfile", "globalknownhostsfile", "canonicaldomains", "ipqos",
                       "rekeylimit", "permitremoteopen", "logverbose",
                       "canonicalizepermittedcnames", "channeltimeout"})
# The rest of the line, taken as written (readconf.c): written back unquoted.
RAW_LINE = frozenset({"proxycommand", "localcommand", "remotecommand", "knownhostscommand"})
# Printed by ssh -G AFTER %-token (and ~) expansion: a literal % is doubled on the way back.
EXPANDED = frozenset({"userknownhostsfile", "identityagent", "controlpath", "localforward",
                      "remoteforward", "remotecommand"})
# Printed as written, %-tokens intact: %n (the host name as typed) and %k (HostKeyAlias,
# else the host name as typed) would name mk-NAME in the alias, so they are replaced by
# the original name; every other token (%h %p %r %C %d %u ...) means the same there.
RAW_TOKENS = frozenset({"proxycommand", "proxyjump", "localcommand", "knownhostscommand",
                        "certificatefile", "revokedhostkeys"})
# What ssh reads as "not set" for options that ssh -G leaves out when unset.
RESETS = {"proxycommand": "none", "proxyjump": "none", "knownhostscommand": "none",
          "revokedhostkeys": "none", "pkcs11provider": "none",
          "identityagent": "SSH_AUTH_SOCK", "securitykeyprovider": "internal"}
# StrictHostKeyChecking values that turn checking off: mkdoctor never writes them itself.
_NO_CHECKING = ("false", "no", "off")

# Config spelling of the keys (ssh reads keys case-insensitively; this is for people).
_SPELLING = {k.lower(): k for k in (
    "AddKeysToAgent AddressFamily BindAddress BindInterface CASignatureAlgorithms "
    "CertificateFile ChannelTimeout CheckHostIP Ciphers Compression ConnectionAttempts "
    "ConnectTimeout EnableSSHKeysign FingerprintHash GlobalKnownHostsFile "
    "GSSAPIAuthentication GSSAPIDelegateCredentials GSSAPIKexAlgorithms GSSAPIKeyExchange "
    "GSSAPIRenewalForcesRekey GSSAPIServerIdentity GSSAPIClientIdentity GSSAPITrustDns "
    "HashKnownHosts HostbasedAcceptedAlgorithms HostbasedAuthentication HostKeyAlgorithms "
    "HostKeyAlias IdentityAgent IPQoS KbdInteractiveAuthentication KbdInteractiveDevices "
    "KexAlgorithms KnownHostsCommand MACs NoHostAuthenticationForLocalhost "
    "NumberOfPasswordPrompts ObscureKeystrokeTiming PasswordAuthentication PKCS11Provider "
    "PreferredAuthentications ProxyCommand ProxyJump ProxyUseFdpass PubkeyAcceptedAlgorithms "
    "PubkeyAuthentication RekeyLimit RequiredRSASize RevokedHostKeys SecurityKeyProvider "
    "SendEnv SetEnv StrictHostKeyChecking TCPKeepAlive UpdateHostKeys UserKnownHostsFile "
    "VerifyHostKeyDNS CanonicalizeHostname").split()}


def spelled(key: str) -> str:
    return _SPELLING.get(key.lower(), key)


def _original_tokens(value: str, original: str, hostkeyalias: Optional[str]) -> str:
    """%n and %k of a value ssh -G printed as written, replaced by what they meant for
    the user's host (a literal, so ``%`` in it is doubled); other tokens are kept."""
    literal = original.replace("%", "%%")
    alias = hostkeyalias.replace("%", "%%") if hostkeyalias else literal

    def sub(m: "re.Match[str]") -> str:
        return {"n": literal, "k": alias}.get(m.group(1), m.group(0))

    return re.sub(r"%(.)", sub, value)


def render_option(key: str, value: str, original: str = "",
                  hostkeyalias: Optional[str] = None) -> str:
    """One value as ssh -G printed it (key lower-case), written in config syntax so that
    ssh reads it back identically for the alias."""
    if key in RAW_TOKENS:
        value = _original_tokens(value, original, hostkeyalias)
    if key in RAW_LINE:
        if _CONTROL.search(value):
            raise UsageError(f"{key} {value!r}: cannot be written to the ssh config")
        return value
    words = value.split(" ") if key in WORD_LIST else [value]
    if key in EXPANDED:
        words = [w.replace("%", "%%") for w in words]
    return " ".join(quote_word(w, spelled(key)) for w in words)


def _same(key: str, a: Optional[list[str]], b: Optional[list[str]]) -> bool:
    """Two ssh -G values of one key agree (order-free and once each for the
    accumulating keys: the rest of the config may add the same value again)."""
    a, b = a or [], b or []
    if key in MULTI_LINE:
        return list(dict.fromkeys(a)) == list(dict.fromkeys(b))
    if key in ONE_LINE_ALL:
        return a == b
    return a[:1] == b[:1]


def render_values(key: str, values: list[str], original: str = "",
                  hostkeyalias: Optional[str] = None) -> list[str]:
    """All ssh -G values of ``key`` as the values of the config lines to write."""
    if key in ONE_LINE_ALL:
        return [" ".join(render_option(key, v, original, hostkeyalias) for v in values)]
    return [render_option(key, v, original, hostkeyalias)
            for v in (values if key in MULTI_LINE else values[:1])]


def derive_options(resolved: SshG, defaults: SshG, original: str) -> list[tuple[str, str]]:
    """The block's options beyond the ones mkdoctor sets: every key of ``ssh -G HOST``
    (``resolved``) whose value differs from ssh's defaults (``ssh -F /dev/null -G HOST``),
    except :data:`SET_BY_MKDOCTOR` and :data:`NOT_CARRIED`, in config syntax."""
    hka = (resolved.get("hostkeyalias") or [None])[0]
    opts: list[tuple[str, str]] = [("CanonicalizeHostname", "no")]
    for key, values in resolved.items():
        if key in SET_BY_MKDOCTOR or key in NOT_CARRIED or _same(key, values, defaults.get(key)):
            continue
        if key == "stricthostkeychecking" and values[0].lower() in _NO_CHECKING:
            continue
        opts += [(spelled(key), v) for v in render_values(key, values, original, hka)]
    return opts


# Keys whose values the alias and the host must share for "connects the same way".
def compared_keys(a: SshG, b: SshG) -> list[str]:
    keys = dict.fromkeys(list(a) + list(b))
    return [k for k in keys if k not in SET_BY_MKDOCTOR and k not in NOT_CARRIED]


def differences(host_g: SshG, alias_g: SshG, original: str = "", alias: str = ""
                ) -> dict[str, tuple[list[str], list[str]]]:
    """Keys (beyond what mkdoctor sets) on which ``ssh -G ALIAS`` and ``ssh -G HOST``
    disagree: key -> (host's values, alias's values). Values printed with their tokens
    are compared with %n/%k as each name means them (``original``, ``alias``).
    StrictHostKeyChecking that the user turned off counts as agreeing when the alias
    checks more strictly."""
    out = {}
    hka_h = (host_g.get("hostkeyalias") or [None])[0]
    hka_m = (alias_g.get("hostkeyalias") or [None])[0]
    for key in compared_keys(host_g, alias_g):
        h, m = host_g.get(key), alias_g.get(key)
        if key in RAW_TOKENS and h and m:
            h = [_original_tokens(v, original, hka_h) for v in h]
            m = [_original_tokens(v, alias, hka_m) for v in m]
        if _same(key, h, m):
            continue
        if key == "stricthostkeychecking" and h and h[0].lower() in _NO_CHECKING:
            continue
        out[key] = (h or [], m or [])
    return out


def _staged_config(text: str, block: HostBlock, system: bool) -> str:
    staged = upsert_block(text, block)
    if system:  # ssh -F skips the system file that ssh without -F reads after the user's
        staged += "\nMatch all\nInclude /etc/ssh/ssh_config\n"
    return staged


def managed_block(run, alias: str, host: str, identity: str, *,
                  ssh_config: Optional[Path] = None, config_path: Optional[Path] = None,
                  user: Optional[str] = None, port: Optional[int] = None,
                  resolved: Optional[SshG] = None, server_alive_interval: int = 30,
                  rounds: int = 3) -> HostBlock:
    """The managed ``Host ALIAS`` block that connects exactly as ``host`` does.

    ``ssh_config``: the file passed with -F (None: ssh's own files, the user's
    ~/.ssh/config then /etc/ssh/ssh_config); ``config_path``: the file the block goes into
    (default: ``ssh_config`` or ~/.ssh/config). The options are :func:`derive_options`
    of ``ssh -G HOST``; then the block is tried in a private copy of the file and any
    option on which ``ssh -G ALIAS`` still differs (set for every host by a later
    ``Host *`` or ``Match`` line, say) is written explicitly, for at most ``rounds``
    rounds. :class:`SshGError` when ssh -G fails, :class:`UsageError` when a value
    cannot be written."""
    import os
    import tempfile

    g = resolved if resolved is not None else read_ssh_g(run, host, ssh_config, user=user, port=port)
    defaults = read_ssh_g(run, host, "/dev/null")
    first = first_values(g)
    block = HostBlock(alias, first.get("hostname", host), first.get("user", user or ""),
                      int(first.get("port", port or 22)), identity,
                      server_alive_interval=server_alive_interval,
                      carried=derive_options(g, defaults, host))
    target = Path(config_path) if config_path else (
        Path(ssh_config) if ssh_config else Path.home() / ".ssh" / "config")
    try:
        text = read_text(target.read_bytes())
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise UsageError(f"cannot read {target}: {exc.strerror or exc}") from None
    hka = first.get("hostkeyalias")
    fd, tmp = tempfile.mkstemp(prefix="mkd-alias-", suffix=".conf")
    os.close(fd)
    try:
        for _ in range(rounds):
            Path(tmp).write_bytes(to_bytes(_staged_config(text, block, ssh_config is None)))
            try:
                alias_g = read_ssh_g(run, alias, tmp)
            except SshGError as exc:  # a value ssh prints but will not read back
                raise UsageError(f"the mkdoctor block for {alias} is refused by ssh: {exc}") from None
            diff = differences(g, alias_g, host, alias)
            fixes: list[tuple[str, str]] = []
            for key, (want, _got) in diff.items():
                if not want:
                    if key not in RESETS:
                        raise UsageError(
                            f"the ssh config sets {key} for {alias} but not for {host}, and "
                            f"{spelled(key)} cannot be unset in the mkdoctor block")
                    fixes.append((spelled(key), RESETS[key]))
                else:
                    fixes += [(spelled(key), v) for v in render_values(key, want, host, hka)]
            if not fixes:
                return block
            have = {(k, v) for k, v in block.carried}
            new = [f for f in fixes if f not in have]
            if not new:
                break
            block.carried += new
    finally:
        os.unlink(tmp)
    return block
