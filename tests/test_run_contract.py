"""Issue 2 acceptance: a whole run against a real sshd keeps the public contract of
shared/CHECKS.md (report shape, catalogue order, JUnit, exit status, one SSH
authentication per run, -v, stdout carrying the report alone)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mkdoctor.registry import all_checks, check_ids
from tests.harness.sshd import SSHSandbox
from tests.helpers import by_id, json_report, run_mkdoctor

pytestmark = pytest.mark.integration

REMOTE = ["MK301", "MK302", "MK303", "MK304", "MK305", "MK306"]
STATUSES = {"pass", "warn", "fail", "skip", "error"}


def target(sb: SSHSandbox) -> list[str]:
    return ["--ssh-config", str(sb.client_config), "--host", sb.alias, "--offline"]


def test_json_report_shape_and_catalogue_order(sandbox: SSHSandbox) -> None:
    # Asked for out of order: reported in catalogue order all the same.
    data, done = json_report(*target(sandbox), "--only", "MK306,MK301,MK304,MK201,MK303")
    assert done.returncode == 0, data
    assert {"tool", "version", "schema_version", "target", "duration_s", "summary",
            "checks"} <= set(data)
    assert data["tool"] == "mkdoctor" and data["schema_version"] == 1
    assert data["target"]["destination"] == sandbox.alias
    ids = [c["id"] for c in data["checks"]]
    assert ids == [i for i in check_ids() if i in {"MK306", "MK301", "MK304", "MK201", "MK303"}]
    names = {c.id: c.name for c in all_checks()}
    for check in data["checks"]:
        assert {"id", "name", "status", "summary", "details", "fix", "docs", "duration_s"} <= set(check)
        assert check["status"] in STATUSES
        assert check["name"] == names[check["id"]]
        assert check["docs"] == f"docs/checks/{check['id']}.md"
        assert isinstance(check["details"], list) and isinstance(check["duration_s"], (int, float))
    summary = data["summary"]
    for status in ("pass", "warn", "fail", "skip"):
        assert summary[status] == sum(c["status"] == status for c in data["checks"])


def test_junit_one_testcase_per_check(sandbox: SSHSandbox) -> None:
    sandbox.known_hosts.write_text("")  # MK303 fails, MK304.. are skipped
    done = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE), "--format", "junit")
    assert done.returncode == 1, done.stderr
    root = ET.fromstring(done.stdout)
    cases = root.findall(".//testcase")
    groups = {c.id: c for c in all_checks()}
    assert [c.get("name") for c in cases] == [f"{i} {groups[i].name}" for i in REMOTE]
    assert all(c.get("classname") == groups[c.get("name").split()[0]].group for c in cases)
    by_name = {c.get("name").split()[0]: c for c in cases}
    assert by_name["MK303"].find("failure") is not None
    assert by_name["MK304"].find("skipped") is not None
    assert by_name["MK302"].find("failure") is None and by_name["MK302"].find("skipped") is None


def test_exit_status_0_when_nothing_fails_and_1_when_a_check_fails(sandbox: SSHSandbox) -> None:
    ok = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE))
    assert ok.returncode == 0, ok.stdout
    sandbox.authorized_keys_path.write_text("")
    bad = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE))
    assert bad.returncode == 1
    assert "Permission denied (publickey)" in bad.stdout


@pytest.mark.parametrize("args", [
    ["--host", "sandbox", "--link-ports", "31415"],
    ["--host", "sandbox", "--link-ports", "31415,31415"],
    ["--host", "sandbox", "--link-ports", "80,31416"],
    ["--host", "-oProxyCommand=x"],
    ["--host", "a b"],
    ["--host", ""],
    ["--host", "sandbox", "--ssh-config", "/nonexistent/ssh_config"],
    ["--profile", "__PROFILE__"],
])
def test_usage_errors_exit_2_before_any_connection(sandbox: SSHSandbox, tmp_path: Path,
                                                   args: list[str]) -> None:
    profile = tmp_path / "broken.toml"
    profile.write_text("host = [unclosed\n")
    args = [str(profile) if a == "__PROFILE__" else a for a in args]
    if "--ssh-config" not in args and args[0] == "--host":
        args = ["--ssh-config", str(sandbox.client_config), *args]
    done = run_mkdoctor(*args, "--only", ",".join(REMOTE), config_dir=tmp_path / "cfg")
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "mkdoctor: error" in done.stderr
    assert sandbox.log_text().count("Connection from") == 0  # nothing reached the server


def test_one_ssh_authentication_per_run(sandbox: SSHSandbox) -> None:
    remote = [i for i in check_ids() if i.startswith("MK3")]
    data, done = json_report(*target(sandbox), "--only", ",".join(remote))
    assert by_id(data)["MK304"]["status"] == "pass", data
    assert sandbox.accepted_count() == 1, sandbox.log_text()


def test_verbose_shows_the_commands(sandbox: SSHSandbox) -> None:
    done = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE), "-v")
    assert done.returncode == 0, done.stdout
    assert "$ ssh -F " in done.stdout and " -G -- sandbox" in done.stdout
    assert "$ ssh-keyscan -T " in done.stdout
    assert "ControlMaster=yes" in done.stdout


def test_json_stdout_carries_the_report_alone(sandbox: SSHSandbox) -> None:
    # Remote startup-file noise must not leak onto stdout either.
    (Path(sandbox.home) / ".bashrc").write_text("echo noise-from-bashrc\n")
    done = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE), "--format", "json", "-v")
    data = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert done.stdout.lstrip().startswith("{") and done.stdout.rstrip().endswith("}")
    assert by_id(data)["MK306"]["status"] == "fail"
    assert not any(line.startswith("noise-from-bashrc") for line in done.stdout.splitlines())


def test_control_characters_from_the_remote_never_reach_a_report_raw(sandbox: SSHSandbox) -> None:
    """A .bashrc that prints colour codes: MK306 quotes its output. The JUnit report is
    still XML, and the terminal gets ESC written out (\\x1b), never the byte itself."""
    (Path(sandbox.home) / ".bashrc").write_text("printf '\\033[1mhi\\033[0m'\n")
    done = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE), "--format", "junit")
    assert done.returncode == 1, done.stderr
    root = ET.fromstring(done.stdout)  # raw ESC is not allowed in XML 1.0
    (case,) = [c for c in root.iter("testcase") if c.get("name").startswith("MK306")]
    assert "\\x1b[1mhi\\x1b[0m" in case.find("failure").text
    assert "\x1b" not in done.stdout
    text = run_mkdoctor(*target(sandbox), "--only", ",".join(REMOTE))  # NO_COLOR=1: no ESC of ours
    assert "\\x1b[1mhi\\x1b[0m" in text.stdout, text.stdout
    assert "\x1b" not in text.stdout
