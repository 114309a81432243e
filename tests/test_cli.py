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

from mkdoctor.registry import check_ids
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
        "from mkdoctor import cli\n"
        "for a in (['--help'], ['--version']):\n"
        "    try: cli.main(a)\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('requests', 'questionary', 'psutil', 'netifaces', 'sshpubkeys',"
        " 'mkdoctor.registry', 'mkdoctor.engine') if m in sys.modules]\n"
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
    # '--' as an option's value: Python 3.11's argparse hands back [] (an internal error)
    # or drops the value (the flag silently ignored)
    *[([f"{flag}=--"], f"argument {flag}: expected one argument")
      for flag in ("--host", "--timeout", "--deadline", "--kernel-timeout", "--jobs",
                   "--ip-service", "--format", "--profile", "--only", "--skip", "--output",
                   "--link-ports", "--ssh-config", "--identity", "--kernel", "--link-host",
                   "--sshd-config", "--hosts-file", "--mode")],
    (["setup", "--yes", "--host=--"], "argument --host: expected one argument"),
    (["config", "show", "--profile=--"], "argument --profile: expected one argument"),
    # an empty value is an error, never the same as no flag
    (["--only", ""], "--only: no check ID given"),
    (["--skip", ""], "--skip: no check ID given"),
    (["--link-host", ""], "--link-host '': not an IP address"),
    (["--identity", ""], "--identity: empty path"),
    (["--output", ""], "--output: empty path"),
    (["--profile", ""], "--profile: empty name or path"),
    (["--sshd-config", ""], "--sshd-config: empty value"),
    (["--ssh-config", ""], "--ssh-config: empty path"),
    (["--link-ports", ""], "--link-ports '': give two ports"),
    (["--hosts-file", ""], "--hosts-file: empty path"),
    (["--identity", "/nonexistent/id_ed25519"], "--identity /nonexistent/id_ed25519: no such file"),
    (["--identity", "/"], "--identity /: is a directory"),
    (["--ssh-config", "/"], "--ssh-config /: is a directory"),
    (["--kernel", "/opt/W`id`/MathKernel"], "--kernel '/opt/W`id`/MathKernel': contains a backquote"),
    (["--ssh-config", "/dev/null`id`"], "contains a backquote"),
    (["--profile", "~nosuchuser-mkd/p.toml"], "--profile ~nosuchuser-mkd/p.toml:"),
])
def test_usage_errors_are_one_line_and_exit_2(args, words):
    done = run_mkdoctor(*args)
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mkdoctor: error:") and words in lines[0]
    assert "Traceback" not in done.stderr


def test_ssh_config_dev_null_is_accepted():
    """``-F /dev/null`` is how ssh is told to ignore the user's config."""
    done = run_mkdoctor("--ssh-config", "/dev/null", "--only", LOCAL, "--offline")
    assert done.returncode == 0, done.stderr


def test_ssh_config_with_a_backquote_is_refused_even_when_it_exists(tmp_path):
    cfg = tmp_path / "ssh`config"
    cfg.write_text("")
    done = run_mkdoctor("--ssh-config", str(cfg), "--only", LOCAL, "--offline")
    assert done.returncode == 2 and "backquote" in done.stderr, done.stderr


@pytest.mark.parametrize("key, value, words", [
    ("link_host", '"not ip"', "link_host 'not ip': not an IP address"),
    ("kernel", '"/opt/W/Math\\nKernel"', "kernel: empty path, or a path with control characters"),
    ("kernel", '"/opt/W`id`/MathKernel"', "kernel '/opt/W`id`/MathKernel': contains a backquote"),
    ("ssh_config", '"/tmp/a`id`"', "ssh_config '/tmp/a`id`': contains a backquote"),
    ("port", "0", "'port' must be a number from 1 to 65535"),
    ("host", '"x"\nhost = "-oProxyCommand=id"', None),  # TOML refuses the duplicate key
])
def test_profile_values_are_validated_like_the_flags(tmp_path, key, value, words):
    prof = tmp_path / "p.toml"
    prof.write_text(f'host = "mk-p"\n{key} = {value}\n' if key != "host" else f"host = {value}\n")
    done = run_mkdoctor("--profile", str(prof), "--only", LOCAL, "--offline")
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(prof) in lines[0], done.stderr
    if words:
        assert words in lines[0], lines[0]


def test_profile_host_is_validated_like_the_flag(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('host = "-oProxyCommand=id"\n')
    done = run_mkdoctor("--profile", str(prof), "--only", LOCAL, "--offline")
    assert done.returncode == 2
    assert f"{prof}: host '-oProxyCommand=id': must not start with '-'" in done.stderr


def test_a_valid_profile_still_loads(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('host = "mk-p"\nkernel = "/usr/local/Wolfram/Mathematica/14.1/Executables/'
                    'MathKernel"\nlink_host = "192.0.2.7"\nmode = "direct"\nport = 2222\n')
    data, done = json_report("--profile", str(prof), "--only", LOCAL, "--offline")
    assert done.returncode == 0, done.stderr
    assert data["target"]["destination"] == "mk-p"


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
    assert set(check) >= {"id", "name", "status", "summary", "details", "fix", "fix_hint", "docs", "duration_s"}
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
    done = run_mkdoctor("--only", LOCAL, env={"FORCE_COLOR": "", "NO_COLOR": ""})
    assert "\x1b[" not in done.stdout  # set but empty: not forced
    done = run_mkdoctor("--only", LOCAL, "--no-color", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert "\x1b[" not in done.stdout
    done = run_mkdoctor("--only", LOCAL, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in done.stdout


def _on_a_terminal(*args: str, **env: str) -> str:
    """The text report as printed on a real terminal (a pty), with ``env`` over an
    environment that has neither NO_COLOR nor FORCE_COLOR."""
    import pexpect

    full = mkdoctor_env()
    full.pop("NO_COLOR", None)
    full.pop("FORCE_COLOR", None)
    full.update(env)
    child = pexpect.spawn(sys.executable, ["-m", "mkdoctor", "--only", LOCAL, "--offline", *args],
                          env=full, cwd=str(ROOT), encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


def test_colour_on_a_terminal_unless_no_color():
    assert "\x1b[32m✓\x1b[0m MK201 ssh-client" in _on_a_terminal()
    assert "\x1b[32m" in _on_a_terminal(NO_COLOR="")  # set but empty: does not count
    plain = _on_a_terminal(NO_COLOR="1")
    assert "✓ MK201 ssh-client" in plain and "\x1b[" not in plain
    plain = _on_a_terminal("--no-color")
    assert "✓ MK201 ssh-client" in plain and "\x1b[" not in plain


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
    assert "does not exist" in done.stderr and done.stdout == ""


def test_output_under_a_regular_file_is_a_usage_error_before_the_run(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")
    done = run_mkdoctor("--only", LOCAL, "--output", str(plain / "r.json"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"mkdoctor: error: --output {plain}/r.json: the directory "
                                   f"{plain} is not a directory")


def test_output_in_a_read_only_directory_is_a_usage_error_before_the_run(tmp_path):
    """Root writes anywhere, except on a read-only mount: one, in a private mount namespace."""
    import os
    import shlex
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a read-only bind mount")
    ro = tmp_path / "ro"
    ro.mkdir()
    q = shlex.quote
    script = (f"mount --bind {q(str(ro))} {q(str(ro))} && mount -o remount,bind,ro {q(str(ro))} "
              f"&& exec {q(sys.executable)} -m mkdoctor --only {LOCAL} --offline --format json "
              f"--output {q(str(ro / 'r.json'))}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=mkdoctor_env(), cwd=str(ROOT), timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.strip() == (f"mkdoctor: error: --output {ro}/r.json: cannot write in the "
                                   f"directory {ro}")


def test_output_write_error_is_one_line_exit_2_after_the_summary(tmp_path):
    # /dev/full: opened fine, every write fails with ENOSPC
    done = run_mkdoctor("--only", LOCAL, "--offline", "--format", "json", "--output", "/dev/full")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("mkdoctor: error: --output /dev/full: cannot write the report: "
                                   "No space left on device")
    assert "✓ MK201 ssh-client" in done.stdout  # the run's summary is not lost


def test_output_to_a_fifo_writes_through_it(tmp_path):
    import os
    import stat
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done = run_mkdoctor("--only", LOCAL, "--offline", "--format", "json", "--output", str(fifo))
    reader.join(10)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a fifo, not replaced by a file
    assert json.loads(got[0])["checks"][0]["id"] == LOCAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]  # no temp file left


def test_output_to_a_character_device_writes_through_it(tmp_path):
    """``--output /dev/null`` as root used to rename a temp file over /dev/null; a private
    node of the same device stands in for it here."""
    import os
    import stat

    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    done = run_mkdoctor("--only", LOCAL, "--offline", "--format", "junit", "--output", str(null))
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_output_to_dev_stdout_goes_to_stdout():
    done = run_mkdoctor("--only", LOCAL, "--offline", "--format", "json", "--output", "/dev/stdout")
    assert done.returncode == 0, done.stderr
    report, _, rest = done.stdout.partition("\n}\n")
    assert json.loads(report + "\n}")["checks"][0]["id"] == LOCAL
    assert "✓ MK201 ssh-client" in rest


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
                           # --flag=VALUE; '--' often: Python 3.11's argparse mishandles it
                           st.tuples(st.sampled_from(_FLAGS), st.just("--") | _values)
                           .map(lambda fv: ["=".join(fv)]),
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

    from mkdoctor import cli

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


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "markdown"])
def test_no_report_carries_a_raw_control_character(fmt):
    """Remote output quoted in a result (colour codes, a NUL, an undecodable byte) is
    written visibly in every format; newline and tab stay as they are."""
    from mkdoctor.model import Check, Result, Status
    from mkdoctor.reports import Report, render

    check = Check(id="MK306", name="clean-shell", group="server", title="t", run=None)
    raw = "\x1b[1mhi\x1b[0m\x00\x07\r\x9b\udcff"
    result = Result(Status.FAIL, f"prints {raw}", [f"line\t{raw}"], fix=f"remove {raw}",
                    commands=[f"printf {raw}"])
    text = render(fmt, [Report("1", None, [(check, result)], 0.1, [f"note {raw}"])],
                  verbose=True)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", text), repr(text)
    assert "\\x1b[1mhi\\x1b[0m\\x00\\x07\\r\\x9b\\udcff" in text.replace("\\\\", "\\")
    text.encode("utf-8")  # no lone surrogate left to break the output stream
    if fmt == "junit":
        ET.fromstring(text)
    if fmt == "json":
        assert json.loads(text)["checks"][0]["details"] == [
            "line\t\\x1b[1mhi\\x1b[0m\\x00\\x07\\r\\x9b\\udcff"]


def test_an_interrupt_that_python_wrapped_is_still_an_interrupt(monkeypatch, capsys) -> None:
    """SIGTERM (or Ctrl-C) while a module is imported can land in a dataclass's field,
    and Python then raises "RuntimeError: Error calling __set_name__", with the interrupt
    as its cause (seen in CI: SIGTERM at the start of a run gave "internal error", exit 1).
    It is an interrupt: "mkdoctor: interrupted", exit 130; any other error stays one."""
    from mkdoctor import cli

    class Field:
        def __set_name__(self, owner, name):  # noqa: ANN001, ANN204
            raise KeyboardInterrupt

    def interrupted_import(argv):  # noqa: ANN001, ANN202
        class Chain:  # noqa: F841 - its creation is what raises
            rules = Field()

    monkeypatch.setattr(cli, "cmd_list", interrupted_import)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == "mkdoctor: interrupted\n"

    def broken(argv):  # noqa: ANN001, ANN202
        raise RuntimeError("something else")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == 1
    assert "internal error: RuntimeError: something else" in capsys.readouterr().err
