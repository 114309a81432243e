"""`mkdoctor setup` step 11, the sshd hardening (MK310/MK311), applied for real.

The server is an :class:`SSHSandbox` with ``sudo=True``: the sandbox user may use sudo,
and in the sandbox's mount namespace ``/etc/ssh`` is the sandbox's own directory (its
sshd runs with ``-f /etc/ssh/sshd_config``) and ``/run`` is private (``/run/sshd.pid``),
so the wizard's real paths, ``sshd -t`` and the reload all act on the sandbox sshd only.
On the host, that ``/etc/ssh`` is ``box.etc_ssh_dir``: the tests read the result there.

The insecure starting point is Debian's default for root (``PermitRootLogin
prohibit-password``, in a drop-in ``60-site.conf`` that sorts after the wizard's
``50-mkdoctor-hardening.conf``) and password logins on (``password=``), on a server
with a public-looking address (RFC 5737 documentation range: MK311 counts it as the
internet) so that both MK310 and MK311 warn.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.netns import link
from tests.helpers import by_id, json_report, run_mkdoctor
from tests.test_wizard import install_standin, snapshot
from mkdoctor.wizard import security

pytestmark = pytest.mark.integration

LAPTOP, SERVER = "203.0.113.1", "203.0.113.2"  # RFC 5737 TEST-NET-3
DROPIN_NAME = Path(security.DROPIN).name
SITE = "# the site's own settings\nPermitRootLogin prohibit-password\n"


@pytest.fixture
def exposed(netns_factory, sandbox_factory, tmp_path):
    """(laptop netns, sudo sandbox on a "public" address with the insecure settings,
    kernel, ssh config copy, env)."""
    laptop, server = netns_factory("mklap"), netns_factory("mksrv")
    link(laptop, server, f"{LAPTOP}/24", f"{SERVER}/24")
    box = sandbox_factory(netns=server.name, address=SERVER, sudo=True, password="pw 1234")
    box.add_dropin("60-site", SITE)
    box.reload()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    cfg.chmod(0o600)
    home = tmp_path / "home"
    home.mkdir()
    return laptop, box, kernel, cfg, {"HOME": str(home)}


def setup(cfg: Path, confdir: Path, env: dict, kernel: Path, *args: str, netns=None):
    return run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline",
                        "--host", "sandbox", "--name", "sec", "--mode", "tunnel",
                        "--kernel", str(kernel), *args,
                        netns=netns, config_dir=confdir, env=env, timeout=180)


def server_checks(cfg: Path, confdir: Path, env: dict, netns=None) -> dict:
    report, _ = json_report("--ssh-config", str(cfg), "--host", "mk-sec", "--only",
                            "MK310,MK311", "--offline", netns=netns, config_dir=confdir, env=env)
    return by_id(report)


def reloads(box) -> int:
    return box.log_text().count("Received SIGHUP")


def open_master(box, sock: Path) -> None:
    """A connection opened before the change (a ControlMaster in the background)."""
    subprocess.run(box.ssh_argv(options=["-M", "-N", "-f", "-o", "ControlPersist=no",
                                         "-S", str(sock)]),
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=True)


def through_master(box, sock: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(box.ssh_argv(*cmd, options=["-S", str(sock), "-o", "ControlMaster=no"]),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def test_advice_only_then_applied_unattended(exposed, tmp_path):
    laptop, box, kernel, cfg, env = exposed
    confdir = tmp_path / "conf"
    etc_before = snapshot(box.etc_ssh_dir)
    hups = reloads(box)

    # (3) without --apply-sshd-hardening: the advice is shown, the server is untouched
    done = setup(cfg, confdir, env, kernel, netns=laptop.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Recommended drop-in {security.DROPIN}" in done.stdout
    for line in ("PermitRootLogin no", "PasswordAuthentication no", "sudo sshd -t &&"):
        assert line in done.stdout
    assert "not applied (--apply-sshd-hardening applies it)" in done.stdout
    assert snapshot(box.etc_ssh_dir) == etc_before
    assert reloads(box) == hups
    before = server_checks(cfg, confdir, env, netns=laptop.name)
    assert (before["MK310"]["status"], before["MK311"]["status"]) == ("warn", "warn"), before

    # (1) --apply-sshd-hardening, with a connection opened before the change
    sock = tmp_path / "cm"
    open_master(box, sock)
    try:
        done = setup(cfg, confdir, env, kernel, "--apply-sshd-hardening", netns=laptop.name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"applied {security.DROPIN}" in done.stdout
        written = box.dropin_dir / DROPIN_NAME
        assert written.read_text() == security.Advice(
            ["PermitRootLogin no", "PasswordAuthentication no",
             "KbdInteractiveAuthentication no"]).content
        assert written.stat().st_uid == 0 and (written.stat().st_mode & 0o777) == 0o644
        assert sorted(p.name for p in box.dropin_dir.iterdir()) == [DROPIN_NAME, "60-site.conf"]
        assert reloads(box) == hups + 1  # validated, then reloaded once
        # the wizard re-checked after the change, and so does a separate run
        tail = done.stdout.split("after the change:", 1)[1]
        assert "pass  MK310" in tail and "pass  MK311" in tail, done.stdout
        after = server_checks(cfg, confdir, env, netns=laptop.name)
        assert (after["MK310"]["status"], after["MK311"]["status"]) == ("pass", "pass"), after
        # the running sshd: the old connection works, new key logins too, no passwords
        assert through_master(box, sock, "echo", "alive").stdout.strip() == "alive"
        assert box.ssh("true").returncode == 0
        probe = box.ssh("true", options=["-o", "PreferredAuthentications=password"])
        assert "Permission denied (publickey)" in probe.stderr, probe.stderr
    finally:
        subprocess.run(box.ssh_argv(options=["-S", str(sock), "-O", "exit"]),
                       capture_output=True, timeout=10)

    # a re-run: nothing left to advise, nothing applied again
    again = setup(cfg, confdir, env, kernel, "--apply-sshd-hardening", netns=laptop.name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout
    assert reloads(box) == hups + 1


@pytest.fixture
def local_box(sandbox_factory, tmp_path):
    """A sudo sandbox on loopback with PermitRootLogin at Debian's default (MK310 warns;
    MK311 passes there: loopback is no internet)."""
    box = sandbox_factory(sudo=True)
    box.add_dropin("60-site", SITE)
    box.reload()
    kernel = install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    cfg.chmod(0o600)
    home = tmp_path / "home"
    home.mkdir()
    return box, kernel, cfg, {"HOME": str(home)}


def test_invalid_configuration_is_never_reloaded(local_box, tmp_path):
    """(2) Real faults: a broken drop-in already there (sshd -t fails before the change),
    then a drop-in that sets the value first (ours would have no effect). Neither
    reloads sshd nor leaves our file; the error is reported; exit 1; logins still work."""
    box, kernel, cfg, env = local_box
    confdir = tmp_path / "conf"
    hups = reloads(box)
    broken = box.add_dropin("70-broken", "PermitRootLogin no\nNoSuchKeyword yes")

    done = setup(cfg, confdir, env, kernel, "--apply-sshd-hardening")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "already invalid" in done.stdout and "Bad configuration option: NoSuchKeyword" in done.stdout
    assert "sshd hardening was NOT applied" in done.stderr
    assert "Nothing was written" not in done.stderr  # the files of step 10 are written
    assert (confdir / "profiles" / "sec.toml").is_file()
    assert not (box.dropin_dir / DROPIN_NAME).exists()
    assert not [p for p in box.dropin_dir.iterdir() if p.name.startswith(".mkdoctor")]
    assert reloads(box) == hups and box.ssh("true").returncode == 0

    broken.unlink()
    box.add_dropin("0-cloud", "PermitRootLogin yes")  # sorts before ours: ours is moot
    box.reload()
    hups = reloads(box)
    done = setup(cfg, confdir, env, kernel, "--apply-sshd-hardening")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "would have no effect" in done.stdout
    assert "permitrootlogin is still yes" in done.stdout
    # why, and what to change
    assert (f"/etc/ssh/sshd_config.d/0-cloud.conf sorts before {DROPIN_NAME} and sets "
            "PermitRootLogin at line 1") in done.stdout + done.stderr, done.stdout
    assert sorted(p.name for p in box.dropin_dir.iterdir()) == ["0-cloud.conf", "60-site.conf"]
    assert reloads(box) == hups and box.ssh("true").returncode == 0


def test_rejected_dropin_restores_the_previous_file(local_box):
    """The script itself, run by sudo on the server: a drop-in that sshd -t rejects
    once in place is taken out again, an existing file of that name is put back byte
    for byte, and sshd is not reloaded."""
    box, _, cfg, _ = local_box
    previous = box.dropin_dir / DROPIN_NAME
    previous.write_text("# an older version, kept\nPermitRootLogin no\n")
    hups = reloads(box)
    ok, message = security.apply(security.Advice(["NoSuchOption yes"]), "sandbox", cfg,
                                 interactive=False)
    assert not ok
    assert "sshd -t rejects the configuration" in message
    assert f"{security.DROPIN}: line 2: Bad configuration option: NoSuchOption" in message
    assert previous.read_text() == "# an older version, kept\nPermitRootLogin no\n"
    assert sorted(p.name for p in box.dropin_dir.iterdir()) == [DROPIN_NAME, "60-site.conf"]
    assert reloads(box) == hups and box.ssh("true").returncode == 0


def test_unattended_sudo_with_a_password_is_not_attempted(sandbox_factory):
    """sudo -n: where sudo wants a password, the unattended apply fails at once, saying
    so, instead of hanging at a prompt nobody sees."""
    box = sandbox_factory(sudo_password=True, password="pw 1234")
    box.add_dropin("60-site", SITE)
    box.reload()
    hups = reloads(box)
    adv = security.Advice(["PermitRootLogin no"])
    ok, message = security.apply(adv, "sandbox", box.client_config, interactive=False)
    assert not ok and "sudo needs a password" in message, message
    assert not (box.dropin_dir / DROPIN_NAME).exists() and reloads(box) == hups


def test_advice_only_for_the_settings_at_fault():
    from mkdoctor.model import Result, Status

    def res(status, facts=None, details=()):
        return Result(Status(status), "s", list(details), "", dict(facts or {}))

    on = ["password login is on: PasswordAuthentication yes", "exposed"]
    assert security.advice({"MK310": res("warn", {"permitrootlogin": "prohibit-password"}),
                            "MK311": res("warn", details=on)}).lines == [
        "PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no"]
    assert security.advice({"MK310": res("pass", {"permitrootlogin": "no"}),
                            "MK311": res("pass", details=on)}) is None  # private network
    # warnings that are only about a broken configuration ask for no setting
    broken = {"MK310": res("warn", {"permitrootlogin": "no"}),
              "MK311": res("warn", details=["exposed"])}
    assert security.advice(broken) is None
    assert security.advice({"MK310": res("skip"), "MK311": res("skip")}) is None


def test_outcome_messages():
    assert security.outcome_message(4, "MKD-SSHD invalid\nline 2: Bad\n").startswith(
        "sshd -t rejects")
    assert "line 2: Bad" in security.outcome_message(4, "MKD-SSHD invalid\nline 2: Bad\n")
    assert security.outcome_message(255, "ssh: connect: refused").startswith("ssh failed")
    assert "sudo needs a password" in security.outcome_message(
        1, "sudo: a password is required\n")
    # an exit status the script did not produce (no marker) is not taken for its verdict
    assert security.outcome_message(4, "something else").startswith("not applied (exit status 4)")
    adv = security.Advice(["PermitRootLogin no", "PasswordAuthentication no"])
    assert adv.expected == "permitrootlogin no\npasswordauthentication no\n"


def test_no_login_means_not_applied_with_sshs_own_words(sandbox_factory, tmp_path):
    """The connection that must stay open during the change cannot be opened (our key is
    not accepted): nothing is attempted, and ssh's reason is in the message."""
    box = sandbox_factory(authorize_client_key=False)
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    ok, message = security.apply(security.Advice(["PermitRootLogin no"]), "sandbox", cfg,
                                 interactive=False)
    assert not ok
    assert message.startswith("not applied: could not open the connection"), message
    assert "Permission denied" in message
