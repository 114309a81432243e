"""Step 11's drop-in must WIN (mkdoctor/openssh/hardening.py, wizard/security.py).

The drop-in's name sorts first in sshd's glob order, the change is verified with the
real ``sshd -T`` (globally and ``-C`` for the connections a stranger would make), and
when it still loses, the message says exactly why and what to change, and the previous
state is back. The server is a sudo :class:`SSHSandbox` (its ``/etc/ssh`` is its own);
the Ubuntu 24.04 cloud-image trap is the corpus file ``50-cloud-init.conf``
(``PasswordAuthentication yes``) with the corpus's main file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mkdoctor.openssh import hardening
from mkdoctor.openssh import sshd_config as sc
from mkdoctor.wizard import security
from tests.harness.sshd import SSHD, UNSHARE, _MOUNT_AND_RUN

CORPUS = Path("/work/shared/corpus/openssh/sshd")
TRAP_MAIN = CORPUS / "013-ubuntu2404-cloud-init-password-trap.conf"
TRAP_DROPIN = CORPUS / "013-ubuntu2404-cloud-init-password-trap.d" / "50-cloud-init.conf"
STRANGER = "100.42.17.9"
ROOT_SPEC = f"user=root,host={STRANGER},addr={STRANGER},laddr=127.0.0.1,lport=22"
HARDEN = ["PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no"]

# The sandbox's own lines that keep its sshd and its user working; the rest of its
# generated configuration is replaced by the corpus's main file.
KEEP = ("listenaddress", "hostkey", "pidfile", "strictmodes", "authorizedkeysfile", "allowusers",
        "setenv", "persourcepenalties", "loglevel", "maxstartups", "maxsessions", "usedns")


# --- pure ----------------------------------------------------------------------------------


def test_the_name_sorts_first_in_glob_order():
    names = ["00-first.conf", "01-x.conf", "10-cloud.conf", "50-cloud-init.conf",
             "50-redhat.conf", "99-last.conf", "a.conf", "Z.conf", "0a.conf", "000.conf"]
    for name in names:
        assert hardening.sorts_before(hardening.DROPIN_NAME, name), name
    # what can still sort earlier (the verification catches those)
    assert hardening.sorts_before("0-cloud.conf", hardening.DROPIN_NAME)
    assert hardening.DROPIN == f"{hardening.DROPIN_DIR}/{hardening.DROPIN_NAME}"
    assert not hardening.DROPIN_NAME.startswith((".", "-")) and hardening.DROPIN_NAME.endswith(".conf")


def test_every_fix_text_names_the_same_file():
    from mkdoctor.checks.mk312_tcp_forwarding import forwarding_verdict

    cfg = sc.evaluate("/etc/ssh/sshd_config", {"/etc/ssh/sshd_config": "DisableForwarding yes\n"},
                      sc.Connection("a", "1.2.3.4", "1.2.3.4", "5.6.7.8", 22))
    default = sc.evaluate("/etc/ssh/sshd_config", {"/etc/ssh/sshd_config": "\n"},
                          sc.Connection("a", "1.2.3.4", "1.2.3.4", "5.6.7.8", 22))
    fixes = [sc.root_login_verdict(default, "r").fix,
             sc.password_verdict(default, True, "x", "r").fix,
             forwarding_verdict(default, (1,)).fix or sc.setting_fix("PermitListen", "1", default, "r"),
             security.Advice(HARDEN).text]
    for fix in fixes:
        assert hardening.DROPIN in fix, fix
        assert not re.search(r"\d\d-mkdoctor", fix), fix
    assert "line 1" in forwarding_verdict(cfg, (1,)).fix  # a line that sets it: change it
    root = Path(__file__).resolve().parents[1]
    docs = [root / "docs" / "checks" / f"MK{n}.md" for n in (205, 310, 311, 312)] + [root / "docs" / "setup.md"]
    for doc in docs:
        text = doc.read_text()
        assert not re.search(r"50-mkdoctor", text), doc


@pytest.mark.parametrize("origin,main_text,block,needle", [
    ("/etc/ssh/sshd_config:3", "A\nB\nPasswordAuthentication yes\nInclude sshd_config.d/*.conf\n", "",
     "sets PasswordAuthentication at line 3, before its Include at line 4"),
    ("/etc/ssh/sshd_config:1", "PasswordAuthentication yes\n", "", "has no 'Include /etc/ssh/sshd_config.d/*.conf'"),
    ("/etc/ssh/sshd_config.d/0-a.conf:1", "Include /etc/ssh/sshd_config.d/*.conf\n", "",
     "0-a.conf sorts before 0-mkdoctor.conf"),
    ("/etc/ssh/sshd_config:9", "Include /etc/ssh/sshd_config.d/*.conf\n", "Match User root at /etc/ssh/sshd_config:8",
     "Match User root at /etc/ssh/sshd_config:8 sets PasswordAuthentication"),
])
def test_loss_reasons(origin, main_text, block, needle):
    inc = hardening.include_lines(main_text)
    reason = hardening.loss_reason("PasswordAuthentication", origin, "/etc/ssh/sshd_config", inc, block)
    assert needle in reason, reason
    assert hardening.loss_reason("X", hardening.DROPIN + ":2", "/etc/ssh/sshd_config", inc) is None


# --- integration: the real sshd -------------------------------------------------------------


def sshd_T(box, spec: str = "") -> dict[str, str]:
    etc = box.etc_dir
    argv = [SSHD, "-T", "-f", box.sshd_config_in_namespace] + (["-C", spec] if spec else [])
    done = subprocess.run([UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c",
                           box._mount_script() + _MOUNT_AND_RUN, "sh", str(etc / "passwd"),
                           str(etc / "group"), str(etc / "shadow"), *argv],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return sc.parse_sshd_t(done.stdout)


def client_config(box, tmp_path: Path) -> Path:
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    cfg.chmod(0o600)
    return cfg


@pytest.fixture
def trap(sandbox_factory, tmp_path):
    """The Ubuntu 24.04 cloud image: the corpus main file (Include first, then
    PasswordAuthentication no) and 50-cloud-init.conf (PasswordAuthentication yes)."""
    box = sandbox_factory(sudo=True)
    generated = box.sshd_config_path.read_text().splitlines()
    keep = [ln for ln in generated if ln.split(" ", 1)[0].lower() in KEEP]
    main = TRAP_MAIN.read_text()
    assert "Include /etc/ssh/sshd_config.d/*.conf" in main
    main = main.replace("UsePAM yes", "UsePAM no")  # the sandbox has no PAM stack of its own
    box.sshd_config_path.write_text(main + "\n# the sandbox's own\n" + "\n".join(keep) + "\n")
    (box.dropin_dir / "50-cloud-init.conf").write_bytes(TRAP_DROPIN.read_bytes())
    (box.dropin_dir / "50-cloud-init.conf").chmod(0o600)  # as cloud-init writes it
    box.check_config()
    box.reload()
    assert sshd_T(box)["passwordauthentication"] == "yes"  # the trap is armed
    return box, client_config(box, tmp_path)


@pytest.mark.integration
def test_hardening_wins_over_ubuntu_cloud_init(trap):
    box, cfg = trap
    adv = security.Advice(HARDEN, specs=[ROOT_SPEC])
    ok, message = security.apply(adv, "sandbox", cfg, interactive=False)
    assert ok, message
    assert sorted(p.name for p in box.dropin_dir.iterdir()) == [hardening.DROPIN_NAME, "50-cloud-init.conf"]
    for spec in ("", ROOT_SPEC, ROOT_SPEC.replace("user=root", "user=" + box.user)):
        real = sshd_T(box, spec)
        assert (real["passwordauthentication"], real["kbdinteractiveauthentication"]) == ("no", "no"), spec
        assert real["permitrootlogin"] == "no"
    probe = box.ssh("true", options=["-o", "PreferredAuthentications=password"])
    assert "Permission denied (publickey)" in probe.stderr, probe.stderr
    assert box.ssh("true").returncode == 0


@pytest.mark.integration
def test_the_old_name_lost_to_cloud_init_and_says_why(trap, monkeypatch):
    """The fault: a drop-in named 50-mkdoctor-hardening.conf sorts after
    50-cloud-init.conf; the change is undone, nothing reloaded, and the message names
    the file that wins."""
    box, cfg = trap
    hups = box.log_text().count("Received SIGHUP")
    monkeypatch.setattr(security, "DROPIN", "/etc/ssh/sshd_config.d/50-mkdoctor-hardening.conf")
    ok, message = security.apply(security.Advice(HARDEN, specs=[ROOT_SPEC]), "sandbox", cfg,
                                 interactive=False)
    assert not ok
    assert "would have no effect" in message and "passwordauthentication is still yes" in message
    assert ("/etc/ssh/sshd_config.d/50-cloud-init.conf sorts before 50-mkdoctor-hardening.conf "
            "and sets PasswordAuthentication at line 1") in message, message
    assert sorted(p.name for p in box.dropin_dir.iterdir()) == ["50-cloud-init.conf"]
    assert box.log_text().count("Received SIGHUP") == hups
    assert sshd_T(box)["passwordauthentication"] == "yes"


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["before-include", "no-include", "earlier-dropin", "match-block"])
def test_a_drop_in_that_still_loses_says_why_and_is_undone(sandbox_factory, tmp_path, fault):
    box = sandbox_factory(sudo=True, extra_config=(
        "Match User root Address *,!10.0.0.0/8\n  PermitRootLogin yes\n" if fault == "match-block" else ""))
    text = box.sshd_config_path.read_text()
    include = "Include /etc/ssh/sshd_config.d/*.conf\n"
    if fault == "before-include":
        text = "PasswordAuthentication yes\n" + text
    elif fault == "no-include":
        text = text.replace(include, "").replace("PasswordAuthentication no", "PasswordAuthentication yes")
    box.sshd_config_path.write_text(text)
    if fault == "earlier-dropin":
        box.add_dropin("0-early", "PasswordAuthentication yes")
    box.check_config()
    box.reload()
    hups = box.log_text().count("Received SIGHUP")
    before = sorted(p.name for p in box.dropin_dir.iterdir()) if box.dropin_dir.exists() else []
    ok, message = security.apply(security.Advice(HARDEN, specs=[ROOT_SPEC]), "sandbox",
                                 client_config(box, tmp_path), interactive=False)
    assert not ok and "would have no effect" in message, message
    want = {
        "before-include": "/etc/ssh/sshd_config sets PasswordAuthentication at line 1, before "
                          "its Include at line 2",
        "no-include": "/etc/ssh/sshd_config has no 'Include /etc/ssh/sshd_config.d/*.conf' line",
        "earlier-dropin": "/etc/ssh/sshd_config.d/0-early.conf sorts before 0-mkdoctor.conf",
        "match-block": "Match User root Address *,!10.0.0.0/8 at /etc/ssh/sshd_config:",
    }[fault]
    assert want in message, message
    after = sorted(p.name for p in box.dropin_dir.iterdir()) if box.dropin_dir.exists() else []
    assert after == before and box.log_text().count("Received SIGHUP") == hups
    if fault == "match-block":  # the stranger's root login is what sshd -T still gives yes
        assert sshd_T(box, ROOT_SPEC)["permitrootlogin"] == "yes"
        assert sshd_T(box)["permitrootlogin"] == "no"


@pytest.mark.integration
def test_lines_a_printed_fix_appended_are_kept(sandbox_factory, tmp_path):
    """A printed MK312 fix appended AllowTcpForwarding to the same file: the setup's
    change replaces only the keywords it sets."""
    box = sandbox_factory(sudo=True)
    ours = box.add_dropin(hardening.DROPIN_NAME[:-len(".conf")],
                          "AllowTcpForwarding remote\nPasswordAuthentication yes\n")
    box.reload()
    ok, message = security.apply(security.Advice(HARDEN, specs=[ROOT_SPEC]), "sandbox",
                                 client_config(box, tmp_path), interactive=False)
    assert ok, message
    text = ours.read_text()
    assert "AllowTcpForwarding remote" in text and "PasswordAuthentication yes" not in text
    assert text.startswith(security.Advice(HARDEN).content)
    assert sshd_T(box)["allowtcpforwarding"] == "remote"


@pytest.mark.integration
def test_at_the_prompt_the_reason_comes_back_through_a_file(sandbox_factory, tmp_path, capfd):
    """Interactive (ssh -t, plain sudo: output on the terminal, not captured): the lines
    that decide come back through a new file in /tmp, which is then removed."""
    box = sandbox_factory(sudo=True)
    box.add_dropin("0-early", "PermitRootLogin yes")
    box.reload()
    before = set(Path("/tmp").glob(".mkdoctor-why-*"))
    ok, message = security.apply(security.Advice(["PermitRootLogin no"], specs=[ROOT_SPEC]),
                                 "sandbox", client_config(box, tmp_path), interactive=True)
    assert not ok
    assert "0-early.conf sorts before 0-mkdoctor.conf and sets PermitRootLogin at line 1" in message, message
    assert set(Path("/tmp").glob(".mkdoctor-why-*")) == before
    assert "MKD-SSHD where" not in capfd.readouterr().out


def test_oracle_many_and_why_no_effect_parsers():
    from mkdoctor import sshd_remote

    out = "x\nM SPEC\nport 22\npermitrootlogin no\n\nM RC 0\nM SPEC\nBad Match\n\nM RC 255\n"
    got = sshd_remote.parse_oracle_many(out, "M")
    assert [rc for rc, _ in got] == [0, 255] and "permitrootlogin no" in got[0][1]
    where = ["/etc/ssh/sshd_config:1:Include /etc/ssh/sshd_config.d/*.conf",
             "/etc/ssh/sshd_config:30:Match User root Address *,!10.0.0.0/8",
             "/etc/ssh/sshd_config:31:  PermitRootLogin yes",
             f"{hardening.DROPIN}:2:PermitRootLogin no"]
    reasons = security.why_no_effect(security.Advice(["PermitRootLogin no"], specs=[ROOT_SPEC]),
                                     where, "/etc/ssh/sshd_config")
    assert reasons == ["Match User root Address *,!10.0.0.0/8 at /etc/ssh/sshd_config:30 sets "
                       "PermitRootLogin for this connection at /etc/ssh/sshd_config line 31 (a Match "
                       "block overrides every global setting, drop-ins included): change line 31 "
                       "of /etc/ssh/sshd_config"], reasons
    # the drop-in in front wins for every stranger: nothing to explain
    assert security.why_no_effect(security.Advice(["PermitRootLogin no"], specs=[ROOT_SPEC]),
                                  where[:1] + where[3:], "/etc/ssh/sshd_config") == []


@pytest.mark.integration
def test_setup_hardens_an_exposed_cloud_image(netns_factory, sandbox_factory, tmp_path):
    """End to end: `mkdoctor setup --apply-sshd-hardening` against the Ubuntu 24.04 trap
    on a server with a public address. MK311 warns first (a stranger gets passwords from
    50-cloud-init.conf), the change wins, and a stranger's sshd -T says no."""
    from tests.harness.netns import link
    from tests.test_wizard import install_standin
    from tests.test_wizard_security import server_checks, setup

    laptop, server = netns_factory("mkhl"), netns_factory("mkhs")
    link(laptop, server, "203.0.113.1/24", "203.0.113.2/24")
    box = sandbox_factory(netns=server.name, address="203.0.113.2", sudo=True)
    generated = box.sshd_config_path.read_text().splitlines()
    keep = [ln for ln in generated if ln.split(" ", 1)[0].lower() in KEEP]
    main = TRAP_MAIN.read_text().replace("UsePAM yes", "UsePAM no")
    box.sshd_config_path.write_text(main + "\n" + "\n".join(keep) + "\n")
    (box.dropin_dir / "50-cloud-init.conf").write_bytes(TRAP_DROPIN.read_bytes())
    box.check_config()
    box.reload()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = client_config(box, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env, confdir = {"HOME": str(home)}, tmp_path / "conf"
    done = setup(cfg, confdir, env, kernel, "--apply-sshd-hardening", netns=laptop.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"applied {hardening.DROPIN}" in done.stdout, done.stdout
    before = done.stdout.split("after the change:", 1)[0]
    assert "warn  MK311" in before and "50-cloud-init.conf" in before, before
    after = server_checks(cfg, confdir, env, netns=laptop.name)
    assert after["MK311"]["status"] == "pass", after["MK311"]
    real = sshd_T(box, f"user={box.user},host={STRANGER},addr={STRANGER},laddr=203.0.113.2,lport=22")
    assert real["passwordauthentication"] == "no"


@pytest.mark.parametrize("main,dropins,needle", [
    ("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
     {"50-cloud-init.conf": "PasswordAuthentication yes\n"}, ""),  # ours sorts first: wins
    ("PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n", {},
     "sets PasswordAuthentication at line 1, before its Include at line 2"),
    ("PasswordAuthentication yes\n", {}, "has no 'Include /etc/ssh/sshd_config.d/*.conf' line"),
    ("Include /etc/ssh/sshd_config.d/*.conf\n", {"0-a.conf": "PasswordAuthentication yes\n"},
     "0-a.conf sorts before 0-mkdoctor.conf"),
    ("Include /etc/ssh/sshd_config.d/*.conf\nMatch Address *,!10.0.0.0/8\n PasswordAuthentication yes\n",
     {}, "Match Address *,!10.0.0.0/8 at /etc/ssh/sshd_config:2 sets PasswordAuthentication"),
])
def test_the_evaluator_predicts_whether_the_drop_in_wins(main, dropins, needle):
    """Without sshd -T (advice only): the files with the drop-in added, evaluated."""
    from mkdoctor import sshd_remote
    from mkdoctor.openssh import exposure as ex

    path = "/etc/ssh/sshd_config"
    files = {path: main, **{f"{hardening.DROPIN_DIR}/{n}": t for n, t in dropins.items()}}
    snap = sc.Snapshot(files=files, globs={f"{hardening.DROPIN_DIR}/*.conf": sorted(
        f"{hardening.DROPIN_DIR}/{n}" for n in dropins)})
    blocks = ex.match_blocks([path], snap.read)
    conns = [c.conn for c in ex.stranger_connections("user", blocks, ex.Reach(("203.0.113.5",), (22,)),
                                                     "alice", ("alice",))]
    got = sshd_remote.predict_dropin(path, snap, conns, "passwordauthentication", blocks)
    assert (needle in got) if needle else got == "", got
