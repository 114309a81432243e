"""Which ``sshd_config`` keywords an sshd accepts, and how: the keyword tables of the
OpenSSH releases in the field (7.4 to 10.5) and of the vendors' patched builds. Pure.

sshd reads every line through one table (servconf.c ``keywords[]``; from 10.4 the table is
built from ``SSHD_CONFIG_ENTRIES`` in servconf.h). A keyword is one of:

- an **option** it applies;
- **deprecated** (``sDeprecated``) or **ignored** (``sIgnore``, only ``Protocol``): sshd logs
  "LINE: Deprecated option KEYWORD" (``Protocol`` at debug level) and goes on;
- **unsupported** (``sUnsupported``: a feature compiled out, e.g. GSSAPI or Kerberos on a
  build without them): sshd logs "LINE: Unsupported option KEYWORD" and goes on;
- **unknown** (not in the table): "Bad configuration option", and sshd refuses to start.

A keyword allowed only in the global section (``SSHCFG_GLOBAL``) inside a ``Match`` block
is "Directive ... is not allowed within a Match block": sshd refuses to start.

:data:`UPSTREAM` was read from servconf.c / servconf.h of openssh-portable at the tags
V_7_4_P1 ... V_10_5_P1: keyword -> segments (first release, last release, treatment,
scope). ``needs FEATURE``: an option when sshd is built with it (``#ifdef GSSAPI``,
``KRB5``, ``USE_PAM``, ``USE_AFS``; ``!DISABLE_LASTLOG``), otherwise unsupported.
Vendor keywords come from the vendors' patches (:data:`VENDOR`). Which build runs is
told by the server's banner (:func:`parse_banner`); when it cannot be told, a keyword
whose treatment differs between builds is judged "depends on the build".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

OPTION, DEPRECATED, IGNORED, UNSUPPORTED, UNKNOWN, DEPENDS = (
    "option", "deprecated", "ignored", "unsupported", "unknown", "depends")

Version = tuple[int, int]
FIRST_RELEASE: Version = (7, 4)
LAST_RELEASE: Version = (10, 5)

# keyword (lower case) -> ((first, last, treatment, scope), ...), from servconf.c
# keywords[] (servconf.h SSHD_CONFIG_ENTRIES from 10.4) of openssh-portable at
# V_7_4_P1 .. V_10_5_P1. scope "all": allowed in Match blocks; "global": not.
UPSTREAM: dict[str, tuple[tuple[Version, Version, str, str], ...]] = {
    "acceptenv": (((7, 4), (10, 5), "option", "all"),),
    "addressfamily": (((7, 4), (10, 5), "option", "global"),),
    "afstokenpassing": (((7, 4), (10, 3), "unsupported", "global"), ((10, 4), (10, 5), "deprecated", "global"),),
    "allowagentforwarding": (((7, 4), (10, 5), "option", "all"),),
    "allowgroups": (((7, 4), (10, 5), "option", "all"),),
    "allowstreamlocalforwarding": (((7, 4), (10, 5), "option", "all"),),
    "allowtcpforwarding": (((7, 4), (10, 5), "option", "all"),),
    "allowusers": (((7, 4), (10, 5), "option", "all"),),
    "authenticationmethods": (((7, 4), (10, 5), "option", "all"),),
    "authorizedkeyscommand": (((7, 4), (10, 5), "option", "all"),),
    "authorizedkeyscommanduser": (((7, 4), (10, 5), "option", "all"),),
    "authorizedkeysfile": (((7, 4), (10, 5), "option", "all"),),
    "authorizedkeysfile2": (((7, 4), (10, 5), "deprecated", "all"),),
    "authorizedprincipalscommand": (((7, 4), (10, 5), "option", "all"),),
    "authorizedprincipalscommanduser": (((7, 4), (10, 5), "option", "all"),),
    "authorizedprincipalsfile": (((7, 4), (10, 5), "option", "all"),),
    "banner": (((7, 4), (10, 5), "option", "all"),),
    "casignaturealgorithms": (((7, 9), (10, 5), "option", "all"),),
    "challengeresponseauthentication": (((7, 4), (8, 6), "option", "global"), ((8, 7), (10, 5), "option", "all"),),
    "channeltimeout": (((9, 2), (10, 5), "option", "all"),),
    "checkmail": (((7, 4), (10, 5), "deprecated", "global"),),
    "chrootdirectory": (((7, 4), (10, 5), "option", "all"),),
    "ciphers": (((7, 4), (10, 5), "option", "global"),),
    "clientalivecountmax": (((7, 4), (10, 5), "option", "all"),),
    "clientaliveinterval": (((7, 4), (10, 5), "option", "all"),),
    "compression": (((7, 4), (10, 5), "option", "global"),),
    "denygroups": (((7, 4), (10, 5), "option", "all"),),
    "denyusers": (((7, 4), (10, 5), "option", "all"),),
    "disableforwarding": (((7, 4), (10, 5), "option", "all"),),
    "dsaauthentication": (((7, 4), (10, 5), "option", "global"),),
    "exposeauthinfo": (((7, 6), (10, 5), "option", "all"),),
    "fingerprinthash": (((7, 4), (10, 5), "option", "global"),),
    "forcecommand": (((7, 4), (10, 5), "option", "all"),),
    "gatewayports": (((7, 4), (10, 5), "option", "all"),),
    "gssapiauthentication": (((7, 4), (10, 5), "needs GSSAPI", "all"),),
    "gssapicleanupcredentials": (((7, 4), (10, 5), "needs GSSAPI", "global"),),
    "gssapidelegatecredentials": (((10, 3), (10, 5), "needs GSSAPI", "global"),),
    "gssapistrictacceptorcheck": (((7, 4), (10, 5), "needs GSSAPI", "global"),),
    "gssauthentication": (((10, 4), (10, 4), "needs GSSAPI", "all"),),
    "gsscleanupcreds": (((10, 4), (10, 4), "needs GSSAPI", "global"),),
    "gssdelegatecreds": (((10, 4), (10, 4), "needs GSSAPI", "global"),),
    "gssstrictacceptor": (((10, 4), (10, 4), "needs GSSAPI", "global"),),
    "hostbasedacceptedalgorithms": (((8, 5), (10, 5), "option", "all"),),
    "hostbasedacceptedkeytypes": (((7, 4), (10, 5), "option", "all"),),
    "hostbasedauthentication": (((7, 4), (10, 5), "option", "all"),),
    "hostbasedusesnamefrompacketonly": (((7, 4), (10, 5), "option", "all"),),
    "hostcertificate": (((7, 4), (10, 5), "option", "global"),),
    "hostdsakey": (((7, 4), (10, 5), "option", "global"),),
    "hostkey": (((7, 4), (10, 5), "option", "global"),),
    "hostkeyagent": (((7, 4), (10, 5), "option", "global"),),
    "hostkeyalgorithms": (((7, 4), (10, 5), "option", "global"),),
    "ignorerhosts": (((7, 4), (8, 2), "option", "global"), ((8, 3), (10, 5), "option", "all"),),
    "ignoreuserknownhosts": (((7, 4), (10, 5), "option", "global"),),
    "include": (((8, 2), (10, 5), "option", "all"),),
    "ipqos": (((7, 4), (10, 5), "option", "all"),),
    "kbdinteractiveauthentication": (((7, 4), (10, 5), "option", "all"),),
    "keepalive": (((7, 4), (10, 5), "option", "global"),),
    "kerberosauthentication": (((7, 4), (10, 5), "needs KRB5", "all"),),
    "kerberosgetafstoken": (((7, 4), (10, 5), "needs KRB5 USE_AFS", "global"),),
    "kerberosorlocalpasswd": (((7, 4), (10, 5), "needs KRB5", "global"),),
    "kerberostgtpassing": (((7, 4), (10, 3), "unsupported", "global"), ((10, 4), (10, 5), "deprecated", "global"),),
    "kerberosticketcleanup": (((7, 4), (10, 5), "needs KRB5", "global"),),
    "kexalgorithms": (((7, 4), (10, 5), "option", "global"),),
    "keyregenerationinterval": (((7, 4), (10, 5), "deprecated", "global"),),
    "listenaddress": (((7, 4), (10, 5), "option", "global"),),
    "logingracetime": (((7, 4), (10, 5), "option", "global"),),
    "loglevel": (((7, 4), (7, 5), "option", "global"), ((7, 6), (10, 5), "option", "all"),),
    "logverbose": (((8, 5), (10, 5), "option", "all"),),
    "macs": (((7, 4), (10, 5), "option", "global"),),
    "match": (((7, 4), (10, 5), "option", "all"),),
    "maxauthtries": (((7, 4), (10, 5), "option", "all"),),
    "maxsessions": (((7, 4), (10, 5), "option", "all"),),
    "maxstartups": (((7, 4), (10, 5), "option", "global"),),
    "modulifile": (((8, 6), (10, 5), "option", "global"),),
    "pamauthenticationviakbdint": (((7, 4), (10, 3), "deprecated", "global"),),
    "pamservicename": (((9, 8), (10, 3), "needs USE_PAM", "all"), ((10, 4), (10, 4), "needs USE_PAM", "global"), ((10, 5), (10, 5), "needs USE_PAM", "all"),),
    "passwordauthentication": (((7, 4), (10, 5), "option", "all"),),
    "permitemptypasswords": (((7, 4), (10, 5), "option", "all"),),
    "permitlisten": (((7, 8), (10, 5), "option", "all"),),
    "permitopen": (((7, 4), (10, 5), "option", "all"),),
    "permitrootlogin": (((7, 4), (10, 5), "option", "all"),),
    "permittty": (((7, 4), (10, 5), "option", "all"),),
    "permittunnel": (((7, 4), (10, 5), "option", "all"),),
    "permituserenvironment": (((7, 4), (10, 5), "option", "global"),),
    "permituserrc": (((7, 4), (10, 5), "option", "all"),),
    "persourcemaxstartups": (((8, 5), (10, 5), "option", "global"),),
    "persourcenetblocksize": (((8, 5), (10, 5), "option", "global"),),
    "persourcepenalties": (((9, 8), (10, 5), "option", "global"),),
    "persourcepenaltyexemptlist": (((9, 8), (10, 5), "option", "global"),),
    "pidfile": (((7, 4), (10, 5), "option", "global"),),
    "port": (((7, 4), (10, 5), "option", "global"),),
    "printlastlog": (((7, 4), (10, 5), "needs !DISABLE_LASTLOG", "global"),),
    "printmotd": (((7, 4), (10, 5), "option", "global"),),
    "protocol": (((7, 4), (10, 5), "ignored", "global"),),
    "pubkeyacceptedalgorithms": (((8, 5), (10, 5), "option", "all"),),
    "pubkeyacceptedkeytypes": (((7, 4), (10, 5), "option", "all"),),
    "pubkeyauthentication": (((7, 4), (10, 5), "option", "all"),),
    "pubkeyauthoptions": (((8, 2), (10, 5), "option", "all"),),
    "rdomain": (((7, 7), (10, 5), "option", "all"),),
    "refuseconnection": (((9, 9), (10, 5), "option", "all"),),
    "rekeylimit": (((7, 4), (10, 5), "option", "all"),),
    "requiredrsasize": (((9, 1), (10, 5), "option", "all"),),
    "reversemappingcheck": (((7, 4), (10, 5), "deprecated", "global"),),
    "revokedkeys": (((7, 4), (10, 5), "option", "all"),),
    "rhostsauthentication": (((7, 4), (10, 5), "deprecated", "global"),),
    "rhostsrsaauthentication": (((7, 4), (10, 5), "deprecated", "all"),),
    "rsaauthentication": (((7, 4), (10, 5), "deprecated", "all"),),
    "securitykeyprovider": (((8, 2), (10, 5), "option", "global"),),
    "serverkeybits": (((7, 4), (10, 5), "deprecated", "global"),),
    "setenv": (((7, 8), (10, 5), "option", "all"),),
    "skeyauthentication": (((7, 4), (7, 7), "option", "global"), ((7, 8), (8, 6), "deprecated", "global"), ((8, 7), (10, 5), "option", "all"),),
    "sshdauthpath": (((10, 0), (10, 5), "option", "global"),),
    "sshdsessionpath": (((9, 8), (10, 5), "option", "global"),),
    "streamlocalbindmask": (((7, 4), (10, 5), "option", "all"),),
    "streamlocalbindunlink": (((7, 4), (10, 5), "option", "all"),),
    "strictmodes": (((7, 4), (10, 5), "option", "global"),),
    "subsystem": (((7, 4), (9, 4), "option", "global"), ((9, 5), (10, 5), "option", "all"),),
    "syslogfacility": (((7, 4), (10, 5), "option", "global"),),
    "tcpkeepalive": (((7, 4), (10, 5), "option", "global"),),
    "trustedusercakeys": (((7, 4), (10, 5), "option", "all"),),
    "unusedconnectiontimeout": (((9, 2), (10, 5), "option", "all"),),
    "usedns": (((7, 4), (10, 5), "option", "global"),),
    "uselogin": (((7, 4), (10, 5), "deprecated", "global"),),
    "usepam": (((7, 4), (10, 5), "needs USE_PAM", "global"),),
    "useprivilegeseparation": (((7, 4), (7, 4), "option", "global"), ((7, 5), (10, 5), "deprecated", "global"),),
    "verifyreversemapping": (((7, 4), (10, 5), "deprecated", "global"),),
    "versionaddendum": (((7, 4), (10, 5), "option", "global"),),
    "x11displayoffset": (((7, 4), (10, 5), "option", "all"),),
    "x11forwarding": (((7, 4), (10, 5), "option", "all"),),
    "x11uselocalhost": (((7, 4), (10, 5), "option", "all"),),
    "xauthlocation": (((7, 4), (10, 5), "option", "global"),),
}

# Keywords the vendors' patches add (or change), with their treatment and scope.
# Debian (and Ubuntu, built from Debian's packaging): debian/patches/debian-banner.patch
# (DebianBanner) and debian/patches/gssapi.patch (GSSAPI key exchange: GSSAPIKeyExchange,
# GSSAPIStoreCredentialsOnRekey, GSSAPIKexAlgorithms; the old GSSAPIUseSessionCredCache /
# GSSUseSessionCCache spellings kept as sUnsupported). Verified with Debian 12's sshd
# (OpenSSH_9.2p1 Debian-2+deb12u10): sshd -T accepts each.
# Red Hat (RHEL, Fedora, CentOS, Rocky, Alma): the openssh package's patches
# openssh-6.6p1-kuserok.patch (KerberosUseKuserok, SSHCFG_ALL, sUnsupported without KRB5),
# openssh-6.6p1-GSSAPIEnablek5users.patch (GSSAPIEnablek5users), the GSSAPI key exchange
# patch (the same three keywords as Debian's) and KerberosUniqueCCache.
_GSSKEX = {"gssapikeyexchange": (OPTION, "global"),
           "gssapistorecredentialsonrekey": (OPTION, "global"),
           "gssapikexalgorithms": (OPTION, "global")}
VENDOR: dict[str, dict[str, tuple[str, str]]] = {
    "debian": {"debianbanner": (OPTION, "global"), **_GSSKEX,
               "gssapiusesessioncredcache": (UNSUPPORTED, "global"),
               "gssusesessionccache": (UNSUPPORTED, "global")},
    "redhat": {**_GSSKEX, "kerberosusekuserok": (OPTION, "all"),
               "gssapienablek5users": (OPTION, "all"),
               "kerberosuniqueccache": (OPTION, "global")},
}
VENDOR_NAMES = {"debian": "Debian/Ubuntu", "redhat": "Red Hat/Fedora"}

# The build features the vendors compile in (their packages' configure flags: both
# build --with-pam, --with-kerberos5/GSSAPI; neither builds AFS or disables lastlog).
VENDOR_FEATURES = {"debian": frozenset({"GSSAPI", "KRB5", "USE_PAM"}),
                   "redhat": frozenset({"GSSAPI", "KRB5", "USE_PAM"})}

# Banner comments (the text after "OpenSSH_X.Yp1 ") that name the vendor: Debian's
# package-versioning.patch adds "Debian-REVISION" (Ubuntu "Ubuntu-REVISION"); Red Hat
# adds nothing, so a Red Hat server cannot be told from its banner.
_BANNER_VENDOR = (("debian", re.compile(r"^(Debian|Ubuntu|Raspbian)-", re.I)),)
_BANNER = re.compile(r"OpenSSH_(\d+)\.(\d+)(p\d+)?(?:[ ,]\s*(\S+))?")


@dataclass(frozen=True)
class ServerBuild:
    """Which sshd runs: its release and vendor, when known.

    ``vendor``: "debian", "redhat", "upstream" (a plain build: no vendor patches) or
    "" (unknown). ``features``: what it is compiled with (None: unknown)."""

    version: Optional[Version] = None
    vendor: str = ""
    features: Optional[frozenset[str]] = None
    banner: str = ""

    def describe(self) -> str:
        if not self.version and not self.vendor:
            return "an sshd of unknown build"
        what = f"OpenSSH {self.version[0]}.{self.version[1]}" if self.version else "OpenSSH"
        if self.vendor in VENDOR_NAMES:
            what += f" ({VENDOR_NAMES[self.vendor]} build)"
        return what


UNKNOWN_BUILD = ServerBuild()


def parse_banner(text: str, vendor: str = "") -> ServerBuild:
    """The build from a server banner (``SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6``) or
    ``ssh -V``/``sshd -V`` output. ``vendor`` overrides what the banner tells (e.g.
    "redhat" when the platform is known from elsewhere). Unknown text: an unknown build."""
    m = _BANNER.search(text or "")
    if not m:
        return ServerBuild(vendor=vendor, features=VENDOR_FEATURES.get(vendor), banner=text or "")
    version = (int(m.group(1)), int(m.group(2)))
    comment = m.group(4) or ""
    if not vendor:
        for name, rx in _BANNER_VENDOR:
            if rx.match(comment):
                vendor = name
    return ServerBuild(version, vendor, VENDOR_FEATURES.get(vendor), text.strip())


@dataclass(frozen=True)
class KeywordStatus:
    """How a build treats one keyword: ``kind`` (option, deprecated, ignored,
    unsupported, unknown, depends), whether it is allowed in a Match block (None when it
    depends) and, for kind ``depends``, what it depends on."""

    kind: str
    in_match: Optional[bool] = True
    why: str = ""
    may_refuse: bool = False  # kind depends: some builds refuse to start on it

    @property
    def refused(self) -> bool:
        """sshd refuses to start on this keyword (an unknown keyword)."""
        return self.kind == UNKNOWN


def _upstream_at(keyword: str, version: Version, features: Optional[frozenset[str]]):
    """(treatment, scope) of upstream ``version``, or None when not in its table."""
    segs = UPSTREAM.get(keyword)
    if not segs:
        return None
    version = max(FIRST_RELEASE, min(version, LAST_RELEASE))
    for first, last, treatment, scope in segs:
        if first <= version <= last:
            return _resolve(treatment, features), scope
    return None


def _resolve(treatment: str, features: Optional[frozenset[str]]) -> str:
    if not treatment.startswith("needs "):
        return treatment
    if features is None:
        return DEPENDS
    for feature in treatment.split()[1:]:
        negated = feature.startswith("!")
        have = feature.lstrip("!") in features
        if have == negated:
            return UNSUPPORTED
    return OPTION


def keyword_status(keyword: str, build: ServerBuild = UNKNOWN_BUILD) -> KeywordStatus:
    """How ``build``'s sshd treats ``keyword`` (any case)."""
    kw = keyword.lower()
    vendors = [build.vendor] if build.vendor in VENDOR else (
        [] if build.vendor == "upstream" else list(VENDOR))
    known_vendor = build.vendor in VENDOR or build.vendor == "upstream"
    if build.version is not None:
        outcomes = [_upstream_at(kw, build.version, build.features)]
    else:
        outcomes = [_upstream_at(kw, seg[0], build.features) for seg in UPSTREAM.get(kw, ())]
        if kw in UPSTREAM and UPSTREAM[kw][0][0] > FIRST_RELEASE:
            outcomes.append(None)  # older releases do not know it
        if kw in UPSTREAM and UPSTREAM[kw][-1][1] < LAST_RELEASE:
            outcomes.append(None)  # newer releases dropped it
        outcomes = outcomes or [None]
    for v in vendors:
        if kw in VENDOR[v]:
            if known_vendor:
                outcomes = [VENDOR[v][kw]]
            else:
                outcomes.append(VENDOR[v][kw])
    if not known_vendor and kw not in UPSTREAM:
        outcomes.append(None)  # a build without those vendor patches
    kinds = {o[0] if o else UNKNOWN for o in outcomes}
    scopes = {o[1] for o in outcomes if o}
    in_match = None if len(scopes) != 1 else scopes == {"all"}
    if len(kinds) == 1 and DEPENDS not in kinds:
        return KeywordStatus(kinds.pop(), in_match if in_match is not None else True)
    return KeywordStatus(DEPENDS, in_match, _depends_why(kw, build), UNKNOWN in kinds)


def _depends_why(kw: str, build: ServerBuild) -> str:
    parts = []
    owners = [VENDOR_NAMES[v] for v in VENDOR if kw in VENDOR[v]]
    if owners and kw not in UPSTREAM:
        parts.append(f"only {' and '.join(owners)} builds know it (other builds refuse to "
                     "start: Bad configuration option)")
    segs = UPSTREAM.get(kw, ())
    if segs and any(s[2].startswith("needs ") for s in segs):
        feature = next(s[2] for s in segs if s[2].startswith("needs ")).split(None, 1)[1]
        parts.append(f"an option on builds with {feature}, \"Unsupported option\" (ignored) "
                     "on builds without")
    if segs and build.version is None:
        first = segs[0][0]
        kinds = sorted({s[2] for s in segs})
        last = segs[-1][1]
        if first > FIRST_RELEASE:
            parts.append(f"new in OpenSSH {first[0]}.{first[1]} (older sshd refuse to start)")
        if last < LAST_RELEASE:
            parts.append(f"removed after OpenSSH {last[0]}.{last[1]} (newer sshd refuse to start)")
        if len(kinds) > 1:
            parts.append("treated differently by different releases: "
                         + "; ".join(f"{a[0]}.{a[1]}-{b[0]}.{b[1]}: {t}" for a, b, t, _ in segs))
    return "depends on the sshd build: " + ("; ".join(parts) or "not the same in every build")


def canonical_keywords() -> frozenset[str]:
    """Every keyword some release or vendor build knows."""
    names = set(UPSTREAM)
    for table in VENDOR.values():
        names.update(table)
    return frozenset(names)
