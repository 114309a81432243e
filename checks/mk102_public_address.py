"""MK102 public-address: the address the internet sees for this laptop.

A what-is-my-IP service answers with the source address of our request. Compared with
the laptop's own addresses (MK103), it tells whether the laptop is behind NAT, and so
whether a remote kernel could ever connect back to it (direct mode) or needs the reverse
tunnel.

The lookup never hangs and never fails the run: ``--offline``, no route to the internet
(decided at once from the routing table, without sending anything), or no service
answering within ``--timeout`` all give ``skip``. The services are tried one after
another, the next one starting when the previous one failed or has not answered within
its share of the timeout; the whole lookup takes at most one ``--timeout``. Nothing
else is sent.

The default services answer with the bare IPv4 address as plain text: api.ipify.org
("IPv4" endpoint, https://www.ipify.org), checkip.amazonaws.com and ipv4.icanhazip.com.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import urlsplit

from mkdoctor import netinfo
from mkdoctor.model import Check, Result, passed, skipped

DEFAULT_SERVICES = (
    "https://api.ipify.org",
    "https://checkip.amazonaws.com",
    "https://ipv4.icanhazip.com",
)
MAX_ANSWER = 4096  # bytes read from a service; an address is far shorter


class BadAnswer(Exception):
    """A service answered, but not with an IP address."""


def parse_answer(body: str) -> str:
    """The IP address in a service's answer: the bare address (whitespace stripped) or
    JSON ``{"ip": "..."}``. Raises :class:`BadAnswer` otherwise."""
    text = body.strip()
    candidate = text
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        candidate = data.get("ip") if isinstance(data, dict) else None
        if not isinstance(candidate, str):
            raise BadAnswer(f"JSON without an \"ip\" string: {shorten(text)}")
    ip = netinfo.parse_ip(candidate) if "%" not in candidate else None
    if ip is None:
        raise BadAnswer(f"not an IP address: {shorten(text) or '(empty answer)'}")
    return str(ip)


def shorten(text: str, limit: int = 60) -> str:
    """A service's answer, safe to print: one line, printable, at most ``limit`` characters."""
    flat = "".join(c if c.isprintable() else " " for c in text.strip())
    flat = " ".join(flat.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def fetch(url: str, timeout: float) -> str:
    """Ask one service; the address it answered. Raises on any failure."""
    import requests

    from mkdoctor import __version__

    with requests.get(
        url,
        timeout=(timeout, timeout),
        stream=True,
        headers={"User-Agent": f"mkdoctor/{__version__}", "Accept": "text/plain, application/json"},
    ) as resp:
        if resp.status_code != 200:
            raise BadAnswer(f"HTTP {resp.status_code} {resp.reason or ''}".strip())
        body = resp.raw.read(MAX_ANSWER, decode_content=True) or b""
    return parse_answer(body.decode("utf-8", "replace"))


def describe_error(exc: BaseException) -> str:
    """One line for a failed service."""
    try:
        import requests
    except ImportError:  # pragma: no cover - requests is a dependency
        requests = None  # type: ignore[assignment]
    if isinstance(exc, BadAnswer):
        return str(exc)
    if requests is not None:
        if isinstance(exc, requests.exceptions.Timeout):
            return "no answer in time"
        if isinstance(exc, requests.exceptions.SSLError):
            return "TLS error (a proxy or captive portal intercepting HTTPS?)"
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            for key, label in (("Name or service not known", "the name does not resolve"),
                               ("nodename nor servname", "the name does not resolve"),
                               ("Temporary failure in name resolution", "the name does not resolve"),
                               ("Connection refused", "connection refused"),
                               ("Network is unreachable", "network unreachable"),
                               ("No route to host", "no route to host")):
                if key in text:
                    return label
            return "cannot connect"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Lookup:
    address: Optional[str] = None
    service: Optional[str] = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (url, why)


def lookup(
    urls: list[str],
    timeout: float,
    fetcher: Callable[[str, float], str] = fetch,
    describe: Callable[[BaseException], str] = describe_error,
) -> Lookup:
    """Ask the services, first valid answer wins, all within ``timeout`` seconds.

    Service i starts when every earlier one has failed, or ``timeout / len(urls)``
    seconds after the previous one started, whichever comes first. Requests still
    running at the end are abandoned (daemon threads, bounded by their own timeout).
    """
    end = time.monotonic() + timeout
    share = timeout / max(1, len(urls))
    answers: "queue.Queue[tuple[str, Optional[str], Optional[BaseException]]]" = queue.Queue()
    out = Lookup()
    started: list[str] = []
    finished: set[str] = set()
    next_start = time.monotonic()

    def worker(url: str, budget: float) -> None:
        try:
            answers.put((url, fetcher(url, budget), None))
        except BaseException as exc:  # noqa: BLE001 - every failure is reported
            answers.put((url, None, exc))

    while True:
        now = time.monotonic()
        if now >= end:
            break
        if len(started) < len(urls) and now >= next_start:
            url = urls[len(started)]
            started.append(url)
            threading.Thread(target=worker, args=(url, end - now), daemon=True,
                             name=f"mk102-{len(started)}").start()
            next_start = now + share
        if len(finished) == len(started) and len(started) == len(urls):
            break
        wait = end - now
        if len(started) < len(urls):
            wait = min(wait, max(0.0, next_start - now))
        try:
            url, address, exc = answers.get(timeout=max(0.001, wait))
        except queue.Empty:
            continue
        finished.add(url)
        if address is not None:
            out.address, out.service = address, url
            return out
        out.failures.append((url, describe(exc) if exc else "no answer"))
        next_start = time.monotonic()  # a failure starts the next service at once
    for url in started:
        if url not in finished:
            out.failures.append((url, f"no answer within {timeout:g} s"))
    for url in urls[len(started):]:
        out.failures.append((url, "not tried (out of time)"))
    out.failures.sort(key=lambda f: urls.index(f[0]))  # the report lists them in order
    return out


def unanswered(found: Lookup, timeout: float) -> tuple[str, str]:
    """The summary and fix when no service answered (pure): when no service name
    resolved, that is the cause (no DNS: offline, or a captive network), not a timeout."""
    if found.failures and all(why == "the name does not resolve" for _, why in found.failures):
        return ("skipped: the what-is-my-IP services' names do not resolve (no DNS: offline?)",
                "check the internet connection and DNS (a captive portal or VPN may block it), "
                "or give --offline to skip this lookup")
    return (f"skipped: no what-is-my-IP service answered within {timeout:g} s",
            "check the internet connection (a firewall or proxy may block HTTPS), give another "
            "service with --ip-service URL, or --offline to skip this lookup")


def run(ctx) -> Result:
    if ctx.options.offline:
        return skipped("skipped: --offline given; the public address was not looked up",
                       "run without --offline for a full NAT verdict (MK103)", by_request=True)
    urls = list(dict.fromkeys(ctx.options.ip_services)) or list(DEFAULT_SERVICES)
    hosts = [urlsplit(u).hostname or "" for u in urls]
    if not netinfo.has_route(hosts):
        return skipped(
            "skipped: no network (no route to the internet); the public address was not looked up",
            "connect to a network, or give --offline to skip this lookup",
        )
    timeout = ctx.step_timeout()
    found = lookup(urls, timeout)
    details = [f"{url}: {why}" for url, why in found.failures]
    if found.address is None:
        summary, fix = unanswered(found, timeout)
        return skipped(summary, fix, details)
    kind = netinfo.classify(found.address)
    if kind not in ("public", "documentation"):
        details.append(f"{found.address} is {netinfo.KIND_TEXT.get(kind, kind)}: the service "
                       "is inside the same private network, or behind the same NAT")
    host = urlsplit(found.service or "").hostname or found.service
    return passed(
        f"public address {found.address} (from {host})",
        details,
        public_address=found.address,
        service=found.service,
        family=4 if ":" not in found.address else 6,
    )


CHECK = Check(
    id="MK102",
    name="public-address",
    group="network",
    title="the public IPv4 address from a what-is-my-IP service; offline gives skip, never a hang",
    run=run,
    needs=(),
    after=(),
    fix_hints=(
        ("", "check internet access, or --offline"),
    ),
)
