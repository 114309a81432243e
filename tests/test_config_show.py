"""`mkdoctor config show` and MK501 config-consistent on written files (no network)."""

from __future__ import annotations

import json
import os

import pytest

from mkdoctor.profile import load_profile
from tests.helpers import by_id, json_report, run_mkdoctor
from tests.test_writers import block_for, make_profile
from mkdoctor.wizard import writers


@pytest.fixture
def written(tmp_path, monkeypatch):
    """A profile and its files, as `mkdoctor setup` writes them."""
    conf = tmp_path / "conf"
    monkeypatch.setenv("MKDOCTOR_CONFIG_DIR", str(conf))
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host other\n  User x\n")
    p = make_profile(tmp_path, ssh_config=str(cfg))
    writers.apply(writers.plan(p, block_for(p), cfg, processors=2))
    return conf, cfg, p


def test_config_show_json(written):
    conf, cfg, p = written
    done = run_mkdoctor("config", "show", "--format", "json", config_dir=conf)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"profile", "files", "frontend"}
    assert data["frontend"] == {"launch_command": p.launch_command,
                                "mlopen_arguments": p.mlopen_arguments}
    assert data["profile"]["host"] == "mk-work" and data["profile"]["link_ports"] == [50001, 50002]
    assert data["files"][0].endswith("profiles/work.toml") and str(cfg) in data["files"]
    assert all(os.path.exists(f) for f in data["files"])


def test_config_show_text_and_errors(written, tmp_path):
    conf, _, p = written
    done = run_mkdoctor("config", "show", "--profile", "work", config_dir=conf)
    assert done.returncode == 0
    assert f"Launch command:\n{p.launch_command}\n" in done.stdout
    assert f"Arguments to MLOpen:\n{p.mlopen_arguments}\n" in done.stdout
    empty = tmp_path / "empty"
    done = run_mkdoctor("config", "show", config_dir=empty)
    assert done.returncode == 2 and "mkdoctor setup" in done.stderr
    done = run_mkdoctor("config", "show", "--profile", "nope", config_dir=conf)
    assert done.returncode == 2 and "no such profile" in done.stderr
    done = run_mkdoctor("config", "frobnicate", config_dir=conf)
    assert done.returncode == 2


def mk501(conf, *extra):
    report, done = json_report("--profile", "work", "--only", "MK501", *extra, config_dir=conf)
    return by_id(report)["MK501"], done


def test_mk501_passes_on_what_setup_wrote(written):
    conf, _, _ = written
    result, done = mk501(conf)
    assert result["status"] == "pass" and done.returncode == 0, result


def test_mk501_skips_without_profile(tmp_path):
    report, _ = json_report("--only", "MK501", config_dir=tmp_path)
    r = by_id(report)["MK501"]
    assert r["status"] == "skip" and "no profile" in r["summary"]


@pytest.mark.parametrize("edit, words", [
    # localhost in the LinkName of the front-end file
    (lambda t: t.replace("50001@127.0.0.1,50002@127.0.0.1 -LinkOptions",
                         "50001@localhost,50002@localhost -LinkOptions"), "'localhost'"),
    # a launch command that bypasses the managed alias
    (lambda t: t.replace(" mk-work ", " alice@ws.example.org "), "not the managed alias"),
    # ports changed in the launch command only
    (lambda t: t.replace("-R 50002:127.0.0.1:50002", "-R 50009:127.0.0.1:50009"), "forwards"),
])
def test_mk501_finds_traps_in_the_front_end_file(written, edit, words):
    conf, _, _ = written
    path = writers.frontend_paths("work")["text"]
    path.write_text(edit(path.read_text()))
    result, done = mk501(conf)
    assert result["status"] == "fail" and done.returncode == 1
    assert any(words in d for d in result["details"]), result["details"]


def test_mk501_managed_block_missing_or_overridden(written):
    conf, cfg, p = written
    text = cfg.read_text()
    # an earlier block for the same alias overrides the managed one (ssh: first value wins)
    cfg.write_text("Host mk-work\n  Port 2999\n" + text)
    result, _ = mk501(conf)
    assert result["status"] == "fail"
    assert any("ssh -G mk-work: port is '2999'" in d for d in result["details"]), result["details"]
    cfg.write_text("Host other\n  User x\n")
    result, _ = mk501(conf)
    assert any("managed Host mk-work block is missing" in d for d in result["details"])


def test_mk501_ports_flag_differs(written):
    conf, _, _ = written
    result, _ = mk501(conf, "--link-ports", "40001,40002")
    assert result["status"] == "fail" and "--link-ports 40001,40002" in result["summary"]


def test_mk501_wl_file_edited(written):
    conf, _, p = written
    path = writers.frontend_paths("work")["install"]
    path.write_text(path.read_text().replace("50001", "50003"))
    result, _ = mk501(conf)
    assert any("LoginScript/MLOpenArguments differ" in d for d in result["details"])
    assert load_profile("work").launch_command == p.launch_command


@pytest.mark.parametrize("edit, words", [
    # the parallel kernels go to another port, kernel or key than the profile's
    (lambda t: t.replace(":2222/", ":2223/"), "port 2223, the profile 2222"),
    (lambda t: t.replace("/WolframKernel?", "/math?"), "kernel '/opt/Wolfram/math'"),
    (lambda t: t.replace('"SSHIdentity" -> "/home/alice/.ssh/id_ed25519"', '"SSHIdentity" -> "/k"'),
     "SSHIdentity '/k'"),
    # a kernel count that is not the one the file's header states
    (lambda t: t.replace("?2\"", "?64\""), "launches 64 parallel kernel(s), its header says 2"),
    # nothing left to launch
    (lambda t: t.replace("LaunchKernels", "Print"), "cannot read its parallel-kernels launch"),
])
def test_mk501_parallel_file_edited(written, edit, words):
    conf, _, _ = written
    path = writers.frontend_paths("work")["parallel"]
    before = path.read_text()
    path.write_text(edit(before))
    assert path.read_text() != before
    result, done = mk501(conf)
    assert result["status"] == "fail" and done.returncode == 1
    assert any(words in d and "parallel" in d for d in result["details"]), result["details"]


def test_mk501_parallel_file_names_the_alias_with_the_default_ssh_config(tmp_path, monkeypatch):
    """Without --ssh-config the URL names the alias alone; a URL that bypasses it (so its
    IdentityFile and ProxyJump do not apply) is reported."""
    from mkdoctor.checks import mk501_config_consistent as mk501_mod

    monkeypatch.setenv("MKDOCTOR_CONFIG_DIR", str(tmp_path / "conf"))
    p = make_profile(tmp_path)
    writers.apply(writers.plan(p, block_for(p), tmp_path / "ssh_config", processors=4))
    prof = load_profile("work")
    assert mk501_mod.inspect(prof) == []
    path = writers.frontend_paths("work")["parallel"]
    path.write_text(path.read_text().replace("ssh://mk-work/", "ssh://alice@ws.example.org:2222/"))
    problems = mk501_mod.inspect(prof)
    assert any("use host 'ws.example.org', the profile 'mk-work'" in d for d in problems), problems
    # a profile with a kernel version before 13.1 needs RemoteMachine, not a URL
    prof.kernel_version = "12.0"
    assert any("RemoteMachine (before 13.1)" in d for d in mk501_mod.inspect(prof))


@pytest.fixture
def cluster_written(tmp_path, monkeypatch):
    """A cluster profile (kernel on PATH after `module load`, 2 subkernel slots) and its
    files, as `mkdoctor setup --scheduler slurm --subkernels 2` writes them."""
    from mkdoctor import cluster

    conf = tmp_path / "conf"
    monkeypatch.setenv("MKDOCTOR_CONFIG_DIR", str(conf))
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host other\n  User x\n")
    p = make_profile(tmp_path, ssh_config=str(cfg), scheduler="slurm", partition="debug",
                     subkernels=2, module="mathematica/14.1",
                     module_init="/usr/share/modules/init/sh")
    p.launch_command, p.mlopen_arguments = cluster.launch_command(p), cluster.mlopen(p)
    writers.apply(writers.plan(p, block_for(p), cfg, processors=2))
    return conf, p


def test_cluster_parallel_file_is_the_jobs_own_and_mk501_passes(cluster_written):
    """A cluster profile's parallel-kernels file launches subkernels as steps of the
    cluster kernel's job (srun --jobid), the module loaded first; not on the login node."""
    from mkdoctor import cluster

    conf, p = cluster_written
    text = writers.frontend_paths("work")["parallel"].read_text()
    assert "--ntasks=3" in p.launch_command  # the kernel's task and 2 subkernel slots
    assert "srun --jobid=\" <> job <> \" --overlap" in text and "ssh://" not in text
    assert "mk-work" not in text  # the login node's alias is no subkernel host
    assert "2 subkernel slot(s)" in text and "module load mathematica/14.1" in text
    assert cluster.read_parallel_kernels(text) == (
        p.kernel, "mathematica/14.1", "/usr/share/modules/init/sh", "-wstp")
    guide = writers.frontend_paths("work")["text"].read_text()
    assert "Parallel subkernels on the job's nodes (2 slot(s)" in guide
    report, done = json_report("--profile", "work", "--only", "MK501", config_dir=conf)
    r = by_id(report)["MK501"]
    assert r["status"] == "pass" and done.returncode == 0, r


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("module load mathematica/14.1", "module load mathematica/13.0"),
     "module 'mathematica/13.0', the profile 'mathematica/14.1'"),
    (lambda t: t.replace("/opt/Wolfram/WolframKernel", "/opt/Wolfram/math"),
     "kernel '/opt/Wolfram/math'"),
    (lambda t: t.replace(" -wstp ", " -mathlink "), "link flag '-mathlink'"),
    (lambda t: t.replace("template = ", "templ = "), "no srun template"),
])
def test_mk501_cluster_parallel_file_edited(cluster_written, edit, words):
    conf, _ = cluster_written
    path = writers.frontend_paths("work")["parallel"]
    before = path.read_text()
    path.write_text(edit(before))
    assert path.read_text() != before
    report, done = json_report("--profile", "work", "--only", "MK501", config_dir=conf)
    r = by_id(report)["MK501"]
    assert r["status"] == "fail" and done.returncode == 1, r
    assert any(words in d for d in r["details"]), r["details"]


def test_cluster_parallel_file_without_slots_says_how_to_get_them(cluster_written):
    from mkdoctor import cluster

    text = cluster.parallel_kernels_file("/opt/W/WolframKernel", "14.1", profile="c")
    assert "asks for no subkernel slots" in text and "mkdoctor setup --profile c --subkernels N" in text
    with pytest.raises(ValueError, match="module"):
        cluster.parallel_kernels_file("/opt/W/WolframKernel", "14.1", "ssh", module="m/1",
                                      module_init="/usr/share/modules/init/sh")
