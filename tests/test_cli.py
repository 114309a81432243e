"""The command-line contract of shared/CHECKS.md: commands, usage errors, formats."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.registry import check_ids
from tests.helpers import ROOT, json_report, mkdoctor_env, run_mkdoctor

LOCAL = "MK201"  # a check that needs no network and passes on this machine


def test_version():
    done = run_mkdoctor("--version")
    assert done.returncode == 0 and done.stdout.startswith("mkdoctor ")


def test_help_lists_commands_and_flags():
    done = run_mkdoctor("--help")
    assert done.returncode == 0
    for word in ("setup", "config show", "explain", "--host", "--link-ports", "--deadline", "--format"):
        assert word in done.stdout


def test_help_and_version_import_nothing_heavy():
    code = (
        "import sys\n"
        "from checks import cli\n"
        "for a in (['--help'], ['--version']):\n"
        "    try: cli.main(a)\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('requests', 'questionary', 'psutil', 'netifaces', 'sshpubkeys',"
        " 'checks.registry', 'checks.engine') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=mkdoctor_env(), cwd=str(ROOT))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args, words", [
    (["--bogus"], "unrecognized arguments"),
    (["--link-ports", "1,2"], "--link-ports"),
    (["--link-ports", "4000,4000"], "must differ"),
    (["--host", ""], "--host"),
    (["--host", "a b"], "whitespace"),
    (["--host=-oProxyCommand=id"], "must not start with '-'"),
    (["--host", "-oProxyCommand=id"], "expected one argument"),
    (["--host", "h\x01"], "control"),
    (["--ssh-config", "/nonexistent/cfg"], "no such file"),
    (["--profile", "nosuchprofile"], "no such profile"),
    (["--only", "MK999"], "unknown check ID"),
    (["--timeout", "soon"], "--timeout"),
    (["--format", "yaml"], "invalid choice"),
    (["explain", "MK999"], "valid IDs"),
    (["--mode", "sideways"], "invalid choice"),
    (["--offline", "setup", "--yes"], "'setup' is a command: put it first"),
    (["--no-color", "config", "show"], "'config' is a command: put it first"),
    (["stray"], "unrecognized arguments: stray"),
    (["--profile", "x\ny"], "--profile x\\ny: no such profile"),
])
def test_usage_errors_are_one_line_and_exit_2(args, words):
    done = run_mkdoctor(*args)
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mkdoctor: error:") and words in lines[0]
    assert "Traceback" not in done.stderr


def test_malformed_profile_is_exit_2(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text("host = [unclosed\n")
    done = run_mkdoctor("--profile", str(bad))
    assert done.returncode == 2 and "malformed TOML" in done.stderr
    bad.write_text('host = "h"\nlink_ports = [1, 2]\n')
    done = run_mkdoctor("--profile", str(bad))
    assert done.returncode == 2 and "link_ports" in done.stderr
    bad.write_bytes(b"\xff\xfe\x00garbage")
    done = run_mkdoctor("--profile", str(bad))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_list_shows_every_check_in_catalogue_order():
    done = run_mkdoctor("list")
    assert done.returncode == 0
    ids = [line.split()[0] for line in done.stdout.splitlines()]
    assert ids == check_ids()
    assert ids == sorted(ids)


def test_explain_prints_the_docs_page_case_insensitively():
    done = run_mkdoctor("explain", "mk201")
    assert done.returncode == 0
    assert done.stdout.startswith("# MK201")


def test_every_check_has_a_docs_page():
    missing = [cid for cid in check_ids() if not (ROOT / "docs" / "checks" / f"{cid}.md").is_file()]
    assert missing == []


def test_json_report_shape_without_target():
    data, done = json_report("--only", LOCAL, "--offline")
    assert done.returncode == 0
    assert set(data) >= {"tool", "version", "schema_version", "target", "duration_s", "summary", "checks"}
    assert data["tool"] == "mkdoctor" and data["schema_version"] == 1
    assert set(data["summary"]) >= {"pass", "warn", "fail", "skip"}
    (check,) = data["checks"]
    assert set(check) >= {"id", "name", "status", "summary", "details", "fix", "docs", "duration_s"}
    assert check["id"] == LOCAL and check["status"] == "pass"
    assert done.stderr == ""


def test_failed_check_exit_1_in_every_format():
    # Port 1 on loopback: nothing listens, MK302 fails for real.
    for fmt in ("text", "json", "junit", "markdown"):
        done = run_mkdoctor("--host", "127.0.0.1:1", "--only", "MK302", "--format", fmt)
        assert done.returncode == 1, (fmt, done.stdout, done.stderr)


def test_junit_parses_with_one_testcase_per_check():
    done = run_mkdoctor("--host", "127.0.0.1:1", "--only", "MK201,MK302,MK304", "--format", "junit")
    root = ET.fromstring(done.stdout)
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["MK201 ssh-client", "MK302 ssh-port-reachable",
                                              "MK304 passwordless-login"]
    assert [c.get("classname") for c in cases] == ["client", "server", "server"]
    assert cases[1].find("failure") is not None
    assert cases[2].find("skipped") is not None
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "1"


def test_markdown_has_table_and_what_to_fix():
    done = run_mkdoctor("--host", "127.0.0.1:1", "--only", "MK302", "--format", "markdown")
    assert "| ❌ fail | `MK302` ssh-port-reachable |" in done.stdout
    assert "### What to fix" in done.stdout


def test_text_report_lines_and_what_to_fix():
    done = run_mkdoctor("--host", "127.0.0.1:1", "--only", "MK201,MK302,MK304")
    out = done.stdout
    assert "✓ MK201 ssh-client" in out
    assert "✗ MK302 ssh-port-reachable" in out
    assert "- MK304 passwordless-login" in out and "skipped: MK302 ssh-port-reachable failed" in out
    fix = out.split("What to fix", 1)[1]
    assert "MK302" in fix and "fix:" in fix
    assert "MK304" not in fix  # a dependency skip is listed once, under its cause
    assert "\x1b[" not in out


def test_colour_only_when_forced_and_never_with_no_color():
    done = run_mkdoctor("--only", LOCAL, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert "\x1b[32m" in done.stdout
    done = run_mkdoctor("--only", LOCAL, "--no-color", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert "\x1b[" not in done.stdout
    done = run_mkdoctor("--only", LOCAL, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in done.stdout


def test_output_file_gets_the_report_and_stdout_the_text(tmp_path):
    out = tmp_path / "report.json"
    done = run_mkdoctor("--only", LOCAL, "--format", "json", "--output", str(out))
    assert done.returncode == 0
    assert json.loads(out.read_text())["checks"][0]["id"] == LOCAL
    assert "✓ MK201 ssh-client" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_output_to_a_missing_directory_is_a_usage_error(tmp_path):
    done = run_mkdoctor("--only", LOCAL, "--output", str(tmp_path / "no" / "r.json"))
    assert done.returncode == 2


def test_verbose_shows_commands():
    done = run_mkdoctor("--only", LOCAL, "-v")
    assert re.search(r"^\s+\$ \S*ssh -V$", done.stdout, re.M), done.stdout


def test_no_target_says_how_to_add_one():
    done = run_mkdoctor("--only", LOCAL)
    assert "mkdoctor --host USER@HOST" in done.stdout and "mkdoctor setup" in done.stdout


def test_several_hosts_give_one_report_each():
    data, done = json_report("--host", "127.0.0.1:1", "--host", "127.0.0.1:2", "--only", "MK302",
                             "--jobs", "2")
    assert [r["target"]["destination"] for r in data["reports"]] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert done.returncode == 1


def test_hosts_file(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# lab\n127.0.0.1:1\n\n127.0.0.1:2  # second\n")
    data, _ = json_report("--hosts-file", str(hosts), "--only", "MK302")
    assert len(data["reports"]) == 2
    hosts.write_text("-oProxyCommand=x\n")
    assert run_mkdoctor("--hosts-file", str(hosts)).returncode == 2


_FLAGS = ["--profile", "--host", "--hosts-file", "--jobs", "--ssh-config", "--identity",
          "--kernel", "--mode", "--link-ports", "--link-host", "--sshd-config", "--ip-service",
          "--timeout", "--kernel-timeout", "--deadline", "--only", "--skip", "--format", "--output"]
_values = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "-", "--", "0", "-1", "1e9", "nan", "inf", "70000,1", "MK201", "json", "/", "/dev/null",
     "a b", "x\x00y", "\udcff", "line\nbreak"]))
_argv = st.lists(st.one_of(st.tuples(st.sampled_from(_FLAGS), _values).map(list),
                           st.sampled_from(["--strict", "-v", "--no-color"]).map(lambda b: [b])),
                 max_size=5).map(lambda xs: [a for x in xs for a in x])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([[], ["list"], ["explain"], ["config", "show"]]), _argv)
def test_any_flags_give_a_result_or_one_line_error_never_a_traceback(tmp_path_factory, command, argv):
    """Fuzzed command lines (in-process; only MK201 runs, offline): exit 0, 1 or 2, never an
    internal error, and a usage error is one line even when the input has a line break."""
    import contextlib
    import io
    import os

    from checks import cli

    home = tmp_path_factory.mktemp("fuzz")
    full = command + argv + ([] if command else ["--offline", "--only", "MK201"])
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in ("HOME", "MKDOCTOR_CONFIG_DIR")}
    os.environ.update(HOME=str(home), MKDOCTOR_CONFIG_DIR=str(home / "cfg"))
    cwd = os.getcwd()
    os.chdir(home)  # --output FILE lands here, not in the checkout
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli.main(full)
            except SystemExit as exc:  # --help/--version style exits
                rc = exc.code
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = err.getvalue()
    assert "internal error" not in text and "Traceback" not in text, (full, text)
    assert rc in (0, 1, 2), (full, rc, text)
    if rc == 2:
        assert text.strip().count("\n") == 0, (full, text)
