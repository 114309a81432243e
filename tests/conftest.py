"""Shared pytest fixtures and policy for mkdoctor's tests.

Fixtures (see :mod:`tests.harness`):

* ``sandbox``            a started :class:`SSHSandbox` (real sshd on loopback), stopped after.
* ``sandbox_factory``    ``make(**SSHSandbox kwargs) -> SSHSandbox``: started; all stopped after.
* ``sandbox_dir``        a fresh per-test directory the sandbox user can traverse.
* ``netns_available``    skips (locally) / fails (CI) when network namespaces are unusable.
* ``netns_factory``      ``make(prefix="mkt") -> Netns``: created; all deleted after.
* ``nat_topology``       a :class:`NatTopology` (laptop / router with NAT / internet).
* ``no_leaked_processes`` fails the test if it leaves child processes behind.

Policy: the ``integration`` marker is registered here; when ``CI`` is set and non-empty,
a skipped integration test fails the session ("a skipped integration test in CI is a
failure").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``tests.harness`` / ``tests.helpers`` when run as ``pytest``
    sys.path.insert(0, str(ROOT))

from tests.harness.netns import NatTopology, Netns, nat_topology as _nat_topology  # noqa: E402
from tests.harness.netns import netns_unavailable_reason  # noqa: E402
from tests.harness.procs import descendants, is_alive  # noqa: E402
from tests.harness.sshd import SSHSandbox  # noqa: E402


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set and non-empty."""
    return bool(os.environ.get("CI"))


# Property tests explore new examples on every local run; in CI they draw the same examples
# every time (derandomize), so a submission's CI result does not depend on the draw. A
# failure found locally is then pinned with @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if in_ci():
    settings.load_profile("ci")


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` locally; in CI, fail instead (integration tests must run)."""
    if in_ci():
        pytest.fail(f"CI: integration prerequisite missing: {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- marker and CI policy

_SKIPPED_INTEGRATION: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs a real sshd, network namespaces or root; must not skip in CI",
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if (report.skipped and "integration" in report.keywords
            and not hasattr(report, "wasxfail")):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED_INTEGRATION.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _SKIPPED_INTEGRATION and session.exitstatus in (
            pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if in_ci() and _SKIPPED_INTEGRATION:
        terminalreporter.section("skipped integration tests (a failure in CI)", red=True)
        for line in _SKIPPED_INTEGRATION:
            terminalreporter.line(f"SKIPPED IN CI: {line}", red=True)


# ---------------------------------------------------------------- directories


@pytest.fixture(scope="session")
def sandbox_root() -> Iterator[Path]:
    """``/tmp/mkd-sbx-<random>`` (0755), removed at the end of the session.

    Not under pytest's ``tmp_path``: ``/tmp/pytest-of-root`` is 0700, so the sandbox
    user (another uid) could not reach its home directory there.
    """
    root = Path(tempfile.mkdtemp(prefix="mkd-sbx-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sandbox_dir(sandbox_root: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh traversable (0755) directory for this test, removed afterwards."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    path = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=sandbox_root))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- sshd


@pytest.fixture
def sandbox_factory(sandbox_dir: Path) -> Iterator[Callable[..., SSHSandbox]]:
    """``make(**kwargs)``: a started :class:`SSHSandbox` in its own directory.

    kwargs are the constructor's (``netns``, ``address``, ``user``, ``password``,
    ``extra_config``, ``authorize_client_key``, ``bind_mounts``, ``sudo``,
    ``sudo_password``, ``login_shell``). Every sandbox is stopped at teardown,
    whatever the test's outcome.
    """
    with ExitStack() as stack:
        count = 0

        def make(**kwargs: Any) -> SSHSandbox:
            nonlocal count
            count += 1
            box = SSHSandbox(sandbox_dir / f"sbx{count}", **kwargs)
            stack.callback(box.stop)
            return box.start()

        yield make


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SSHSandbox]) -> SSHSandbox:
    """A started default :class:`SSHSandbox` (loopback, key auth, client key authorized)."""
    return sandbox_factory()


# ---------------------------------------------------------------- network namespaces


@pytest.fixture
def netns_available() -> None:
    """Skip (locally) or fail (CI) unless root and ``ip netns``/iptables work."""
    reason = netns_unavailable_reason()
    if reason:
        skip_or_fail(reason)


@pytest.fixture
def netns_factory(netns_available: None) -> Iterator[Callable[..., Netns]]:
    """``make(prefix="mkt")``: a created :class:`Netns`; all deleted at teardown."""
    with ExitStack() as stack:

        def make(prefix: str = "mkt") -> Netns:
            return stack.enter_context(Netns(prefix))

        yield make


@pytest.fixture
def nat_topology(netns_available: None) -> Iterator[NatTopology]:
    """laptop / router (MASQUERADE) / internet namespaces, deleted at teardown."""
    with _nat_topology() as topo:
        yield topo


# ---------------------------------------------------------------- leak check


@pytest.fixture(scope="module")
def slurm() -> Iterator[tuple[Any, Any]]:
    """A real Slurm cluster (tests/harness/slurm.py) for a test file: a login node and
    two compute nodes in network namespaces, the stand-in kernel on the nodes; one per
    file that uses it (its tests share it and must leave no job)."""
    from tests.harness.slurm import SlurmCluster, Software, slurm_unavailable_reason

    reason = slurm_unavailable_reason() or netns_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    root = Path(tempfile.mkdtemp(prefix="mkd-slurm-", dir="/tmp"))
    root.chmod(0o755)
    sw = Software(root)
    try:
        with SlurmCluster(root / "cluster", nodes=2, node_mounts=sw.node_mounts) as c:
            yield c, sw
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """Fail the test if it leaves new descendant processes of pytest running.

    Request it FIRST in the test's arguments so its check runs after the other
    fixtures' teardown."""
    me = os.getpid()
    before = set(descendants(me))
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [p for p in descendants(me) if p not in before and is_alive(p)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test leaked processes: {leaked}"


# ---------------------------------------------------------------- parallel files
# scripts/test.sh runs the suite with pytest-xdist (--dist loadgroup). Files that bind the
# laptop's default link ports on this machine's loopback, scan every process for leftover
# kernels, or judge this computer's own listeners (MK203, MK205) run one after another in
# one worker ("serial"); the files below keep to their own network namespaces, sandboxes,
# ports or pure code and each run beside it in the other workers (test_install and
# test_packaging build the package from their own copy of the tree: helpers.source_copy).
PARALLEL_SAFE = {
    "test_corpus_client.py", "test_corpus_sshd.py", "test_sshd_config.py", "test_slurm_checks.py",
    "test_slurm_launch.py", "test_slurm_units.py", "test_fleet.py", "test_network_checks.py",
    "test_openssh_keywords.py", "test_openssh_algorithms.py",
    "test_exposure.py", "test_authkeys.py", "test_writers.py", "test_managed_alias.py",
    "test_netinfo.py", "test_options.py", "test_security_review.py", "test_ssh_units.py",
    "test_keys.py", "test_verify_nb.py", "test_install.py", "test_packaging.py",
    "test_slurm_modules.py",
}


def pytest_collection_modifyitems(config, items):  # noqa: ANN001 - pytest hook
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(name if name in PARALLEL_SAFE else "serial"))
