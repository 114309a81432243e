"""The wizard's writers: the managed ssh block, backups, atomicity, idempotence, WL files."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mkdoctor.options import UsageError
from mkdoctor.profile import Profile, load_profile
from mkdoctor.openssh import client_config as sshconfig
from mkdoctor.wizard import writers, wl

BLOCK = sshconfig.HostBlock("mk-work", "ws.example.org", "alice", 2222, "/home/alice/.ssh/id ed25519")

USER_CONFIG = (b"# my config\r\n"
               b"Include ~/.ssh/config.d/*\r\n"
               b"Host build\r\n    HostName build.example.org\r\n    User bob\r\n"
               b"Host *\r\n    ServerAliveInterval 60\r\n"
               b"# no newline at the end, and a stray byte \xff")


def test_block_inserted_first_and_rest_kept_byte_for_byte():
    text = sshconfig.read_text(USER_CONFIG)
    out = sshconfig.to_bytes(sshconfig.upsert_block(text, BLOCK))
    assert out.endswith(USER_CONFIG)  # everything that was there, untouched, after the block
    head = out[: len(out) - len(USER_CONFIG)]
    assert head.startswith(b"# >>> mkdoctor mk-work >>>\r\n")
    assert head.endswith(b"# <<< mkdoctor mk-work <<<\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")  # CRLF kept for the new lines too
    assert b'IdentityFile "/home/alice/.ssh/id ed25519"' in head
    assert b"\r\nHost *\r\n# <<<" in head  # the block ends by re-opening "every host"


def test_replace_in_place_and_idempotent():
    text = "Host a\n  User x\n" + sshconfig.render_block(BLOCK) + "Host b\n  User y"
    changed = sshconfig.HostBlock("mk-work", "ws.example.org", "alice", 2223, BLOCK.identity)
    out = sshconfig.upsert_block(text, changed)
    assert out.startswith("Host a\n  User x\n# >>> mkdoctor mk-work >>>\n")
    assert out.endswith("# <<< mkdoctor mk-work <<<\nHost b\n  User y")
    assert "Port 2223" in out and "Port 2222" not in out
    assert sshconfig.upsert_block(out, changed) == out
    assert sshconfig.remove_block(out, "mk-work") == "Host a\n  User x\nHost b\n  User y"


def test_parse_block_round_trip_with_percent_and_spaces():
    block = sshconfig.HostBlock("mk-p", "h", "u", 22, "/keys/100% sure/id", extra={"ProxyJump": "j"})
    opts = sshconfig.parse_block(sshconfig.render_block(block), "mk-p")
    assert opts["identityfile"] == "/keys/100% sure/id"
    assert opts["port"] == "22" and opts["proxyjump"] == "j" and opts["identitiesonly"] == "yes"
    assert "IdentityFile \"/keys/100%% sure/id\"" in sshconfig.render_block(block)


@pytest.mark.parametrize("text", [
    "# >>> mkdoctor mk-work >>>\nHost mk-work\n",  # no end marker
    "# <<< mkdoctor mk-work <<<\n# >>> mkdoctor mk-work >>>\n",  # reversed
    sshconfig.render_block(BLOCK) * 2,  # two blocks
])
def test_damaged_block_is_refused(text):
    with pytest.raises(UsageError, match="damaged"):
        sshconfig.upsert_block(text, BLOCK)


def test_host_aliases_skip_patterns():
    text = "Host a b\nHost *.corp !x\nhost = c\nMatch all\nHost d # note\n"
    assert sshconfig.host_aliases(text) == ["a", "b", "c", "d"]


def test_bad_identity_path_refused():
    with pytest.raises(UsageError):
        sshconfig.config_path_value('/a\nb')


@pytest.mark.parametrize("path", ["/home/o'brien/.ssh/id", '/a"b/k', "/a\\b\\\\c",
                                  "/x y/'q' \"z\"", "/h#x/k", "/p%d/k", "/t\tab/k"])
def test_identity_paths_with_quotes_read_back_by_real_ssh(tmp_path, path):
    """Quotes and backslashes are shell-like quoting in OpenSSH 8.7+ config values: written
    unescaped, ``o'brien`` made the whole config unreadable ("invalid quotes")."""
    import subprocess

    cfg = tmp_path / "config"
    cfg.write_text(sshconfig.render_block(sshconfig.HostBlock("mk-q", "h", "u", 22, path)))
    done = subprocess.run(["ssh", "-G", "-F", str(cfg), "mk-q"], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    got = [line.split(" ", 1)[1] for line in done.stdout.splitlines()
           if line.startswith("identityfile ")]
    assert [g.replace("%%", "%") for g in got] == [path]
    assert sshconfig.parse_block(cfg.read_text(), "mk-q")["identityfile"] == path


def test_the_block_takes_effect_before_a_user_host_star(tmp_path):
    """ssh -G on the alias: the managed block's values win over the user's `Host *` and
    global options, and the user's global options still apply to their other hosts."""
    import subprocess

    cfg = tmp_path / "config"
    cfg.write_text("User globaluser\nPort 2200\nHost other\n  HostName other.example\n"
                   "Host *\n  User staruser\n")
    cfg.write_text(sshconfig.upsert_block(cfg.read_text(), BLOCK))

    def g(host):
        out = subprocess.run(["ssh", "-F", str(cfg), "-G", host], capture_output=True, text=True,
                             check=True).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    mine, other = g("mk-work"), g("other")
    assert (mine["user"], mine["port"], mine["hostname"]) == ("alice", "2222", "ws.example.org")
    assert (other["user"], other["port"]) == ("globaluser", "2200")


# --- writing files ------------------------------------------------------------------------


def make_profile(tmp_path: Path, **over) -> Profile:
    from mkdoctor.launch import LaunchSpec, launch_command, mlopen_arguments

    p = Profile(name="work", host="mk-work", hostname="ws.example.org", user="alice", port=2222,
                identity="/home/alice/.ssh/id_ed25519", kernel="/opt/Wolfram/WolframKernel",
                kernel_version="14.1", mode="tunnel", link_ports=[50001, 50002])
    for k, v in over.items():
        setattr(p, k, v)
    spec = LaunchSpec(p.host, p.kernel, p.mode, tuple(p.link_ports), p.kernel_version,
                      p.link_host or None, p.ssh_config or None)
    p.launch_command, p.mlopen_arguments = launch_command(spec), mlopen_arguments(spec)
    return p


@pytest.fixture
def cfgdir(tmp_path, monkeypatch):
    d = tmp_path / "cfg"
    monkeypatch.setenv("MKDOCTOR_CONFIG_DIR", str(d))
    return d


def block_for(p: Profile) -> sshconfig.HostBlock:
    return sshconfig.HostBlock(p.host, p.hostname, p.user, p.port, p.identity)


def test_plan_apply_backup_mode_symlink_idempotent(tmp_path, cfgdir):
    real = tmp_path / "dotfiles" / "ssh_config"
    real.parent.mkdir()
    real.write_bytes(USER_CONFIG)
    real.chmod(0o640)
    link = tmp_path / "config"
    link.symlink_to(real)
    p = make_profile(tmp_path)

    changes = writers.plan(p, block_for(p), link, processors=8)
    done = writers.apply(changes, stamp="20261121T120000")
    assert link.is_symlink() and link.resolve() == real  # written through, link kept
    assert real.read_bytes().endswith(USER_CONFIG)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # mode kept
    backup = real.with_name("ssh_config.mkdoctor-backup-20261121T120000")
    assert backup.read_bytes() == USER_CONFIG and stat.S_IMODE(backup.stat().st_mode) == 0o640
    assert [w.backup for w in done if w.change.old is None] == [None] * 5  # new files (text, install, parallel, notebook, profile): no backup
    assert stat.S_IMODE(writers.profile_file("work").stat().st_mode) == 0o600
    assert load_profile("work").files == p.files

    # a second identical run changes nothing: no write, no backup
    before = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()}
    again = writers.plan(make_profile(tmp_path), block_for(p), link, processors=8)
    assert not any(c.changed for c in again)
    assert writers.apply(again, stamp="20261121T130000") == []
    after = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()}
    assert before == after


def test_new_ssh_config_is_0600_in_0700_dir(tmp_path, cfgdir):
    p = make_profile(tmp_path)
    target = tmp_path / "home" / ".ssh" / "config"
    writers.apply(writers.plan(p, block_for(p), target, processors=1))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_failed_write_rolls_everything_back(tmp_path, cfgdir):
    cfg = tmp_path / "config"
    cfg.write_bytes(USER_CONFIG)
    p = make_profile(tmp_path)
    changes = writers.plan(p, block_for(p), cfg, processors=1)
    # make the last write fail: the profile directory is a file
    writers.profile_file("work").parent.parent.mkdir(parents=True, exist_ok=True)
    writers.profile_file("work").parent.write_text("not a directory")
    with pytest.raises(OSError):
        writers.apply(changes, stamp="20261121T120000")
    assert cfg.read_bytes() == USER_CONFIG
    assert not list(tmp_path.glob("config.mkdoctor-backup-*"))
    assert not writers.frontend_paths("work")["text"].exists()


def test_journal_rollback_restores_and_removes(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("old\n")
    kh.chmod(0o600)
    new = tmp_path / "id_new"
    j = writers.Journal()
    j.before_change(kh)
    j.before_change(new)
    kh.write_text("old\nnew\n")
    new.write_text("key")
    j.rollback()
    assert kh.read_text() == "old\n" and stat.S_IMODE(kh.stat().st_mode) == 0o600
    assert not new.exists()


# --- front-end files -----------------------------------------------------------------------


def test_frontend_files_carry_the_profile_strings(tmp_path, cfgdir):
    p = make_profile(tmp_path, mode="direct", link_host="192.0.2.7")
    changes = writers.plan(p, block_for(p), tmp_path / "config", processors=4)
    by = {c.path.name: c.new.decode() for c in changes}
    text = by["work-kernel-configuration.txt"]
    assert f"Launch command:\n{p.launch_command}\n" in text
    assert f"Arguments to MLOpen:\n{p.mlopen_arguments}\n" in text
    install = by["work-install-kernel.wl"]
    assert wl.find_rule(install, "LoginScript") == p.launch_command
    assert wl.find_rule(install, "MLOpenArguments") == p.mlopen_arguments
    assert "SetOptions[$FrontEnd, EvaluatorNames" in install and "DeleteCases" in install
    par = by["work-parallel-kernels.wl"]
    # the ssh config is the default one: the URL names the tested alias alone
    assert par.endswith('\nLaunchKernels["ssh://mk-work/opt/Wolfram/WolframKernel?4"]\n')
    assert "Windows" not in text  # plain paths: the launch command reads the same in cmd


def test_parallel_file_with_its_own_ssh_config_names_host_user_port_and_key():
    """--ssh-config: a plain ssh does not see the alias, so the URL carries user, host and
    port, "SSHIdentity" the key, and a ProxyJump the URL cannot use is a warning."""
    text = wl.parallel_file(profile="w", alias="mk-w", user="al ice", hostname="ws.example.org",
                            port=2222, kernel="/opt/Wolfram Mathematica/14.1/WolframKernel",
                            kernel_version="14.1", processors=8, ssh_config="/home/a/cfg",
                            identity="/home/a/.ssh/id_ed25519_mk-w", proxy_jump="bastion")
    assert text.endswith(
        '\nLaunchKernels[KernelConfiguration["ssh://al%20ice@ws.example.org:2222/opt/Wolfram%20'
        'Mathematica/14.1/WolframKernel?8", "SSHIdentity" -> "/home/a/.ssh/id_ed25519_mk-w"]]\n')
    assert "(* Warning: mk-w reaches the host through ProxyJump bastion," in text
    assert "%20 is a space" in text
    alias = wl.parallel_file(profile="w", alias="mk-w", user="a", hostname="h", port=22,
                             kernel="/opt/k", kernel_version="", processors=2, proxy_jump="bastion")
    assert "Warning" not in alias and "IdentityFile, ProxyJump)" in alias
    assert alias.endswith('\nLaunchKernels["ssh://mk-w/opt/k?2"]\n')


def test_parallel_file_kernel_command_and_backquote():
    text = wl.parallel_file(profile="w", alias="mk-w", user="a", hostname="h", port=22,
                            kernel="wolfram", kernel_version="14.1", processors=3)
    # a URL path is absolute: a command looked up in PATH goes in as "KernelCommand"
    assert text.endswith('\nLaunchKernels[KernelConfiguration["ssh://mk-w", "KernelCommand" -> '
                         '"wolfram", "KernelCount" -> 3]]\n')
    assert wl.read_parallel(text) == wl.ParallelLaunch("url", "mk-w", "wolfram", 3)
    with pytest.raises(ValueError, match="backquote"):
        wl.parallel_file(profile="w", alias="mk-w", user="a", hostname="h", port=22,
                         kernel="/opt/`2`/math", kernel_version="9.0", processors=3)


def test_parallel_ssh_config_default_file_counts_as_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("")
    p = make_profile(tmp_path, ssh_config=str(tmp_path / ".ssh" / "config"))
    assert writers.parallel_ssh_config(p) is None
    p.ssh_config = str(tmp_path / "other")
    assert writers.parallel_ssh_config(p) == str(tmp_path / "other")
    p.ssh_config = ""
    assert writers.parallel_ssh_config(p) is None


def test_frontend_text_warns_a_windows_front_end_only_when_needed(tmp_path, cfgdir):
    p = make_profile(tmp_path, kernel="/opt/$odd/WolframKernel")
    assert " mk-work '" in p.launch_command  # the single-quoted fallback
    changes = writers.plan(p, block_for(p), tmp_path / "config", processors=1)
    text = next(c.new.decode() for c in changes if c.path.name == "work-kernel-configuration.txt")
    assert f"Launch command:\n{p.launch_command}\nWindows front end: " in text


def test_parallel_file_before_13_1_uses_remote_machine():
    text = wl.parallel_file(profile="old", alias="mk-old", user="u", hostname="h", port=22,
                            kernel="/opt/M 9/math", kernel_version="9.0", processors=2)
    assert 'Needs["SubKernels`RemoteKernels`"]' in text
    assert "RemoteMachine[\"mk-old\"" in text and "-mathlink" in text and ", 2]]" in text
    template = wl.parse_wl_string(wl.STRING_RE.findall(text.split("RemoteMachine[")[1])[1])
    assert template.startswith("ssh -x -f `1` ") and "'`2`'" in template
    assert wl.read_parallel(text) == wl.ParallelLaunch("remote-machine", "mk-old", "/opt/M 9/math", 2)


INSTALL_UPDATE = """\
  current = EvaluatorNames /. Options[$FrontEnd, EvaluatorNames];
  pos = Position[current, (Rule | RuleDelayed)[name, _], {1}, 1, Heads -> False];
  SetOptions[$FrontEnd, EvaluatorNames -> If[pos === {},
    Append[current, entry],
    With[{i = pos[[1, 1]]},
      Join[Take[current, i - 1], {entry},
        DeleteCases[Drop[current, i], (Rule | RuleDelayed)[name, _]]]]]];
  name
]
"""


def test_install_file_replaces_an_entry_where_it_stands():
    """The entry takes the first same-name entry's place (the dialog's order stays), later
    duplicates go, a new name is appended. No Wolfram kernel here to evaluate it: the WL
    text is checked as written."""
    text = wl.install_file("hpc", "ssh mk-hpc", "-LinkMode Listen", "hpc")
    assert text.endswith(INSTALL_UPDATE)
    assert "Append[others" not in text
    assert text.count("[") == text.count("]") and text.count("{") == text.count("}")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_wl_string_round_trips(text):
    lit = wl.wl_string(text)
    assert lit.isascii()
    assert wl.parse_wl_string(lit) == text
    # no unescaped quote ends the literal early
    assert wl.STRING_RE.fullmatch(lit)


# Wolfram's string escapes (reference.wolfram.com/language/tutorial/InputSyntax.html:
# \\ backslash, \" double quote, \t tab, \n newline, \r carriage return, \:nnnn "a
# character with hexadecimal code nnnn", \|nnnnnn one with code nnnnnn; hex digits 0-9,
# a-f, A-F, reference.wolfram.com/language/ref/HexadecimalCharacter.html). Each expected
# value is the WL source text, written out by hand (raw strings: one \ is one backslash).
@pytest.mark.parametrize("text, source", [
    ('say "hi"', r'"say \"hi\""'),
    ("C:\\Wolfram\\", r'"C:\\Wolfram\\"'),
    ("a\nb", r'"a\nb"'),
    ("a\tb", r'"a\tb"'),
    ("a\rb", r'"a\rb"'),
    ("\x01\x7f", r'"\:0001\:007f"'),
    ("é", r'"\:00e9"'),
    ("α→∞", r'"\:03b1\:2192\:221e"'),
    ("\U0001F600", r'"\|01f600"'),
    ("`linkname` (*x*) $H", r'"`linkname` (*x*) $H"'),
    ("", '""'),
])
def test_wl_string_fixed_vectors(text, source):
    assert wl.wl_string(text) == source
    assert wl.parse_wl_string(source) == text


def test_wl_string_escapes_quote_and_backslash():
    assert wl.wl_string('a"b\\c') == '"a\\"b\\\\c"'


MODULE_INIT = "/usr/share/modules/init/sh"


@pytest.mark.parametrize("version", ["14.1", "13.0"])
def test_parallel_file_loads_the_module_first(version):
    """A kernel on PATH only after `module load`: both forms start each subkernel the way
    the launch command starts the kernel (sh sources the init script and loads the
    module), and the file reads back with the module (MK501 compares it)."""
    text = wl.parallel_file(profile="m", alias="mk-m", user="a", hostname="h", port=22,
                            kernel="/opt/M/WolframKernel", kernel_version=version, processors=4,
                            module="mathematica/14.1", module_init=MODULE_INIT)
    got = wl.read_parallel(text)
    assert (got.kernel, got.module, got.module_init, got.count) == (
        "/opt/M/WolframKernel", "mathematica/14.1", MODULE_INIT, 4)
    assert "module load mathematica/14.1" in text
    if version == "14.1":  # not in the URL's path: a KernelCommand that loads it
        assert '"ssh://mk-m", "KernelCommand" -> "sh -c \'. /usr/share/modules/init/sh' in text
        assert "is not documented" in text and "wrapper script" in text
    else:
        template = wl.parse_wl_string(wl.STRING_RE.findall(text.split("RemoteMachine[")[1])[1])
        remote = shlex.split(shlex.split(template)[-1])
        assert remote[:2] == ["sh", "-c"] and remote[3:5] == ["/opt/M/WolframKernel", "-wstp"]
    plain = wl.parallel_file(profile="m", alias="mk-m", user="a", hostname="h", port=22,
                             kernel="/opt/M/WolframKernel", kernel_version=version, processors=4)
    assert wl.read_parallel(plain).module == "" and "module" not in plain
