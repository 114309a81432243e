"""Typed facts (mkdoctor/facts.py): every fact the setup flow reads is one a check really
publishes, with the declared type; and the flow reads no fact by a bare string key.

The publishing checks run for real: MK101-MK103 on this computer (MK102 asks a
what-is-my-IP service served on loopback here), MK304 against a real sshd that refuses
the key, MK401/MK402 against a real sshd with the stand-in kernel (tests/standin_kernel.py;
Mathematica cannot be installed here).
"""

from __future__ import annotations

import ast
import http.server
import threading
from pathlib import Path

import pytest

from mkdoctor import facts
from mkdoctor.context import Context
from mkdoctor.engine import run_checks
from mkdoctor.options import Options, Target
from mkdoctor.registry import get

ROOT = Path(__file__).resolve().parent.parent


def flow_sources() -> list[Path]:
    return sorted((ROOT / "wizard").rglob("*.py"))


def string_reads(path: Path) -> list[tuple[int, str]]:
    """(line, key) of every ``X.facts.get("key")`` / ``X.facts["key"]`` in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "facts" and node.args
                and isinstance(node.args[0], ast.Constant)):
            out.append((node.lineno, node.args[0].value))
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "facts" and isinstance(node.slice, ast.Constant)):
            out.append((node.lineno, node.slice.value))
    return out


def test_the_flow_reads_facts_only_through_the_typed_registry():
    """The setup flow (flow, state, steps, main) never reads ``result.facts`` or
    ``ctx.fact`` itself: a key read by string is a guess nobody checks."""
    bad = []
    flow = [p for p in flow_sources()
            if p.name in ("flow.py", "state.py", "main.py") or p.parent.name == "steps"]
    for path in flow:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "facts":
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("fact", "first_fact"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []


def test_every_key_the_wizard_reads_by_string_is_a_declared_fact():
    """The wizard's other modules (the sshd advice) may still read a key by string: each
    such key is declared, so the runtime test below proves it is published."""
    declared = {f.key for f in facts.ALL + facts.CLUSTER}
    for path in flow_sources():
        for line, key in string_reads(path):
            assert key in declared, f"{path.relative_to(ROOT)}:{line}: {key!r} is no declared fact"


def test_the_flow_uses_declared_facts():
    """Every ``facts.NAME`` the flow uses is declared (and the registry lists it)."""
    used = set()
    for path in flow_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "facts" and node.attr.isupper()):
                used.add(node.attr)
    assert used, "the flow reads no typed fact?"
    for name in used:
        assert getattr(facts, name) in facts.ALL + facts.CLUSTER, name


def test_fact_of_treats_empty_as_absent():
    from mkdoctor.model import passed

    r = passed("x", installs=[], kernel="", processor_count=4)
    assert facts.KERNEL_INSTALLS.of(r, ["d"]) == ["d"]
    assert facts.KERNEL_PATH.of(r) is None
    assert facts.PROCESSOR_COUNT.of(r) == 4
    assert facts.PROCESSOR_COUNT.of(None, 1) == 1
    assert facts.PROCESSOR_COUNT.get({"MK402": r}) == 4


class _IP(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"203.0.113.7\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):  # quiet
        pass


def published(results: dict, fact: facts.Fact) -> None:
    r = results[fact.check]
    assert fact.key in r.facts, f"{fact.check} does not publish {fact.key!r}: {r.summary} {sorted(r.facts)}"
    value = r.facts[fact.key]
    assert isinstance(value, fact.type), f"{fact.check}.{fact.key} = {value!r}, not {fact.type.__name__}"


@pytest.mark.integration
def test_every_declared_fact_is_published_by_its_check(sandbox_factory, tmp_path):
    from tests.test_wizard import install_standin

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _IP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    results: dict = {}
    try:
        opts = Options(ip_services=[f"http://127.0.0.1:{server.server_address[1]}/"],
                       timeout=5, deadline=60)
        ctx = Context(opts, None)
        results.update((c.id, r) for c, r in run_checks(ctx, [get(i) for i in ("MK101", "MK102", "MK103")]))
        ctx.close()
    finally:
        server.shutdown()

    box = sandbox_factory()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    opts = Options(ssh_config=box.client_config, offline=True, timeout=10, deadline=60, mode="tunnel")
    ctx = Context(opts, Target(box.alias))
    try:
        # no --kernel: MK401 searches the standard places (the stand-in is in one of them)
        results.update((c.id, r) for c, r in run_checks(ctx, [get("MK401"), get("MK402")]))
    finally:
        ctx.close()
    if facts.KERNEL_PATH.of(results["MK401"]) is None:  # not in a place MK401 searches
        opts.kernel = str(kernel)
        ctx = Context(opts, Target(box.alias))
        try:
            results.update((c.id, r) for c, r in run_checks(ctx, [get("MK401"), get("MK402")]))
        finally:
            ctx.close()

    ctx = Context(Options(ssh_config=box.client_config, offline=True, timeout=10, deadline=60,
                          sshd_config=str(box.sshd_config_path)), Target(box.alias))
    try:
        results.update((c.id, r) for c, r in run_checks(ctx, [get("MK310")]))
    finally:
        ctx.close()

    refusing = sandbox_factory(authorize_client_key=False)
    ctx = Context(Options(ssh_config=refusing.client_config, offline=True, timeout=10, deadline=60),
                  Target(refusing.alias))
    try:
        results.update((c.id, r) for c, r in run_checks(ctx, [get("MK304")]))
    finally:
        ctx.close()
    assert facts.LOGIN_FAILURE.of(results["MK304"]) == "permission-denied"

    # MK402's failure reason: a licence that refuses every kernel process
    (box.home / ".standin-fault").write_text("processes:0\n")
    ctx = Context(Options(ssh_config=box.client_config, offline=True, timeout=10, deadline=60,
                          kernel=str(kernel)), Target(box.alias))
    try:
        refused = dict((c.id, r) for c, r in run_checks(ctx, [get("MK401"), get("MK402")]))
    finally:
        ctx.close()
        (box.home / ".standin-fault").unlink()
    assert facts.KERNEL_START_FAILURE.of(refused["MK402"]) == "licence-processes", refused["MK402"]

    for fact in facts.ALL:
        if fact is not facts.KERNEL_START_FAILURE:  # a failure's fact: asserted above
            published(results, fact)
