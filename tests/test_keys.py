"""mkdoctor.openssh.keys and MK202 key-pair, with real keys made by the real ssh-keygen.

Every key is generated once per session (ssh-keygen of every type, with and without a
passphrase) and copied into each test's own directory, which is also the run's $HOME so
the real ~/.ssh is never read. An ssh-agent started by the test holds the encrypted key
for the "loaded in the agent" case.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest
from hypothesis import given, strategies as st

from mkdoctor.openssh import keys
from mkdoctor.checks import mk202_key_pair
from mkdoctor.context import Context
from mkdoctor.model import Status
from mkdoctor.options import Options
from tests.helpers import by_id, json_report

PASSPHRASE = "correct horse battery"


def keygen(path: Path, kind: str, bits: Optional[int] = None, passphrase: str = "",
           fmt: Optional[str] = None) -> Path:
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", f"test-{path.name}", "-f", str(path)]
    if bits:
        argv[4:4] = ["-b", str(bits)]
    if fmt:  # "PEM": the old "BEGIN RSA PRIVATE KEY" format, encrypted with Proc-Type/DEK-Info
        argv[4:4] = ["-m", fmt]
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return path


@pytest.fixture(scope="session")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One key of each kind, made once per session."""
    d = tmp_path_factory.mktemp("keys")
    made = {
        "ed25519": keygen(d / "id_ed25519", "ed25519"),
        "ecdsa": keygen(d / "id_ecdsa", "ecdsa"),
        "rsa1024": keygen(d / "id_rsa1024", "rsa", 1024),
        "rsa2048": keygen(d / "id_rsa2048", "rsa", 2048),
        "rsa4096": keygen(d / "id_rsa4096", "rsa", 4096),
        "ed25519-enc": keygen(d / "id_enc", "ed25519", passphrase=PASSPHRASE),
        "ecdsa-enc": keygen(d / "id_ecdsa_enc", "ecdsa", passphrase=PASSPHRASE),
        "rsa2048-enc": keygen(d / "id_rsa2048_enc", "rsa", 2048, passphrase=PASSPHRASE),
        "rsa-pem-enc": keygen(d / "id_rsa_pem_enc", "rsa", passphrase=PASSPHRASE, fmt="PEM"),
        "other": keygen(d / "id_other", "ed25519"),
    }
    # OpenSSH 9.2 still generates DSA keys (compile-time support was removed in 9.8/10.0).
    # With a newer ssh-keygen, build one with the cryptography library instead.
    try:
        made["dsa"] = keygen(d / "id_dsa", "dsa")
    except subprocess.CalledProcessError:
        made["dsa"] = _dsa_with_cryptography(d / "id_dsa")
    return made


def _dsa_with_cryptography(path: Path) -> Path:
    crypto = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.dsa",
                                 reason="this ssh-keygen cannot make DSA keys and cryptography is missing")
    from cryptography.hazmat.primitives import serialization

    key = crypto.generate_private_key(key_size=1024)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    Path(str(path) + ".pub").write_bytes(pub + b" test-dsa\n")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private $HOME with an empty ~/.ssh."""
    (tmp_path / ".ssh").mkdir(mode=0o700)
    return tmp_path


def install(keystore: dict[str, Path], name: str, home: Path, as_name: Optional[str] = None) -> Path:
    """Copy a stored key pair into ``home/.ssh`` (mode 0600) and return the private key."""
    src = keystore[name]
    dst = home / ".ssh" / (as_name or src.name)
    shutil.copy(src, dst)
    dst.chmod(0o600)
    shutil.copy(str(src) + ".pub", str(dst) + ".pub")
    return dst


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A throwaway ssh-agent on a private socket; yields the env for it; killed after."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            proc.poll()
            if proc.returncode is not None:
                pytest.fail("ssh-agent did not start")
            time.sleep(0.02)
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)


def ssh_add(key: Path, env: dict[str, str], tmp_path: Path) -> None:
    """Load a passphrase-protected key into the agent (passphrase through SSH_ASKPASS)."""
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o700)
    full = dict(os.environ, **env, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    subprocess.run(["ssh-add", str(key)], env=full, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)


def mk202(home: Path, *args: str, env: Optional[dict[str, str]] = None) -> tuple[dict, str]:
    """Run ``mkdoctor --only MK201,MK202`` as a user would; return MK202's entry and all output."""
    cfg = home / "ssh_config"
    if not cfg.exists():
        cfg.write_text("")
    full_env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    full_env.update(env or {})
    report, done = json_report("--only", "MK201,MK202", "--ssh-config", str(cfg), *args, env=full_env)
    return by_id(report)["MK202"], done.stdout + done.stderr


def private_body(key: Path) -> list[str]:
    """The base64 lines of a private key file (to prove they never appear in output)."""
    return [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]


def run_in_process(home: Path, monkeypatch: pytest.MonkeyPatch, identity: Optional[Path] = None,
                   ssh_config: Optional[Path] = None):
    """MK202's real ``run`` in this process (to read the facts, which reports omit)."""
    monkeypatch.setenv("HOME", str(home))
    opts = Options(identity=identity, ssh_config=ssh_config or (home / "ssh_config"))
    opts.ssh_config.touch()
    ctx = Context(opts)
    try:
        return mk202_key_pair.run(ctx)
    finally:
        ctx.close()


# --- status per key kind -------------------------------------------------------------------


@pytest.mark.parametrize("name,status,words", [
    ("ed25519", "pass", "ed25519 256 bits"),
    ("ecdsa", "pass", "ecdsa 256 bits"),
    ("rsa4096", "pass", "rsa 4096 bits"),
    ("rsa2048", "warn", "2048 bits"),
    ("rsa1024", "fail", "1024 bits is too small"),
    ("dsa", "fail", "DSA keys are refused"),
])
def test_key_types(keystore, home, name, status, words):
    key = install(keystore, name, home)
    check, out = mk202(home, "--identity", str(key))
    assert check["status"] == status, check
    assert words in check["summary"]
    if status != "pass":
        assert check["fix"]
    if status == "fail" or name == "rsa2048":
        assert "ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519" in check["fix"]
    for line in private_body(key):
        assert line not in out


def test_facts_of_a_good_key(keystore, home, monkeypatch):
    key = install(keystore, "ed25519", home)
    result = run_in_process(home, monkeypatch, identity=key)
    assert result.status == Status.PASS, result
    pub = (Path(str(key) + ".pub")).read_text().split()
    assert result.facts["identity"] == str(key)
    assert result.facts["public_key"].split()[:2] == pub[:2]
    assert result.facts["type"] == "ed25519" and result.facts["bits"] == 256
    assert result.facts["encrypted"] is False
    fp = subprocess.run(["ssh-keygen", "-l", "-f", str(key) + ".pub"], capture_output=True, text=True).stdout.split()[1]
    assert result.facts["fingerprint"] == fp


# --- the faults --------------------------------------------------------------------------


def test_mode_0644_fails(keystore, home):
    key = install(keystore, "ed25519", home)
    key.chmod(0o644)
    check, _ = mk202(home, "--identity", str(key))
    assert check["status"] == "fail"
    assert "0644" in check["summary"] and "UNPROTECTED PRIVATE KEY FILE" in check["summary"]
    assert f"chmod 600 {key}" in check["fix"]


def test_mode_0640_fails_and_0400_passes(keystore, home):
    key = install(keystore, "ed25519", home)
    key.chmod(0o640)
    assert mk202(home, "--identity", str(key))[0]["status"] == "fail"
    key.chmod(0o400)
    assert mk202(home, "--identity", str(key))[0]["status"] == "pass"


@pytest.mark.integration
def test_key_owned_by_another_user_fails(keystore, home):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    key = install(keystore, "ed25519", home)
    os.chown(key, 65534, -1)
    check, _ = mk202(home, "--identity", str(key))
    assert check["status"] == "fail"
    assert "owned by uid 65534" in check["summary"]
    assert "chown" in check["fix"]


def test_mismatched_pub_fails(keystore, home):
    key = install(keystore, "ed25519", home)
    shutil.copy(str(keystore["other"]) + ".pub", str(key) + ".pub")
    check, _ = mk202(home, "--identity", str(key))
    assert check["status"] == "fail"
    assert "does not belong to" in check["summary"]
    assert f"ssh-keygen -y -f {key} > {key}.pub" in check["fix"]


def test_missing_pub_warns(keystore, home):
    key = install(keystore, "ed25519", home)
    Path(str(key) + ".pub").unlink()
    check, _ = mk202(home, "--identity", str(key))
    assert check["status"] == "warn"
    assert "missing" in check["summary"]


def test_not_a_key_fails(home):
    key = home / ".ssh" / "id_ed25519"
    key.write_text("this is not a key\n")
    key.chmod(0o600)
    check, _ = mk202(home, "--identity", str(key))
    assert check["status"] == "fail"
    assert "ssh-keygen cannot read" in check["summary"]


# Every kind of key with a passphrase: (keystore name, MK202's status once it is in the agent,
# words of that summary). In the agent, a key is judged like the same key without one.
ENCRYPTED = [
    ("ed25519-enc", "pass", "ed25519 256 bits, passphrase in the agent"),
    ("ecdsa-enc", "pass", "ecdsa 256 bits, passphrase in the agent"),
    ("rsa2048-enc", "warn", "RSA key of 2048 bits"),  # the size still warns
    ("rsa-pem-enc", "pass", "rsa 3072 bits, passphrase in the agent"),  # -m PEM, default size
]
ENCRYPTED_NAMES = [name for name, _, _ in ENCRYPTED]


def test_the_encrypted_keys_are_encrypted(keystore):
    """The keystore's passphrase keys really need the passphrase (and the PEM one is PEM)."""
    for name in ENCRYPTED_NAMES:
        done = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(keystore[name])],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert done.returncode != 0 and "passphrase" in done.stderr, (name, done.stderr)
    pem = keystore["rsa-pem-enc"].read_text()
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----") and "Proc-Type: 4,ENCRYPTED" in pem


@pytest.mark.parametrize("name", ENCRYPTED_NAMES)
def test_encrypted_key_without_agent_fails(keystore, home, name):
    key = install(keystore, name, home)
    check, out = mk202(home, "--identity", str(key))
    assert check["status"] == "fail"
    assert "passphrase" in check["summary"] and "no ssh-agent" in check["summary"]
    assert f"ssh-add {key}" in check["fix"]
    for line in private_body(key):
        assert line not in out


@pytest.mark.parametrize("name", ENCRYPTED_NAMES)
def test_encrypted_key_not_in_agent_fails(keystore, home, agent, tmp_path, name):
    key = install(keystore, name, home)
    ssh_add(keystore["other"], agent, tmp_path)  # the agent holds a key, just not this one
    check, out = mk202(home, "--identity", str(key), env=agent)
    assert check["status"] == "fail", check
    assert "not loaded in the agent" in check["summary"]
    assert "front end cannot type a passphrase" in check["summary"]
    assert check["fix"] == f"ssh-add {key}"
    assert "passphrase: yes; in the agent: no" in check["details"]
    for line in private_body(key):
        assert line not in out


@pytest.mark.parametrize("name,status,words", ENCRYPTED)
def test_encrypted_key_in_agent_passes(keystore, home, agent, tmp_path, monkeypatch, name, status, words):
    key = install(keystore, name, home)
    ssh_add(key, agent, tmp_path)
    check, out = mk202(home, "--identity", str(key), env=agent)
    assert check["status"] == status, check
    assert words in check["summary"]
    assert "passphrase: yes; in the agent: yes" in check["details"]
    assert "passphrase" not in check["fix"] and "ssh-add" not in check["fix"]
    for line in private_body(key):
        assert line not in out
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["SSH_AUTH_SOCK"])
    result = run_in_process(home, monkeypatch, identity=key)
    assert result.facts["encrypted"] is True and result.facts["in_agent"] is True


def test_encrypted_key_with_mismatched_pub_fails_even_in_agent(keystore, home, agent, tmp_path):
    """The private key's own fingerprint (read through a .pub-less link) exposes the
    wrong .pub even though the key is encrypted."""
    key = install(keystore, "ed25519-enc", home)
    ssh_add(key, agent, tmp_path)
    shutil.copy(str(keystore["other"]) + ".pub", str(key) + ".pub")
    check, _ = mk202(home, "--identity", str(key), env=agent)
    assert check["status"] == "fail"
    assert "does not belong to" in check["summary"]


# --- which identity ------------------------------------------------------------------------


def test_no_key_at_all_fails_with_the_keygen_command(home):
    """ssh's defaults (empty config, empty ~/.ssh): make ~/.ssh/id_ed25519."""
    check, _ = mk202(home)
    assert check["status"] == "fail"
    assert "no SSH key" in check["summary"]
    assert 'ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519 -C "' in check["fix"]
    assert f"{home}/.ssh/id_ed25519" in " ".join(check["details"])


def test_no_key_at_the_configured_identityfile(home):
    """IdentityFile elsewhere: the new key must go where ssh will look for it."""
    (home / "ssh_config").write_text(f"IdentityFile {home}/keys/work\n")
    check, _ = mk202(home)
    assert check["status"] == "fail"
    assert f'ssh-keygen -t ed25519 -f {home}/keys/work -C "' in check["fix"]


def test_default_identity_files_come_from_ssh_G(keystore, home, monkeypatch):
    """No --identity: the first existing IdentityFile of ssh -G is the one checked."""
    key = install(keystore, "ecdsa", home, as_name="second")
    (home / "ssh_config").write_text(
        f"IdentityFile {home}/.ssh/first_missing\nIdentityFile {home}/.ssh/second\n")
    check, _ = mk202(home)
    assert check["status"] == "pass"
    assert str(key) in check["summary"]
    result = run_in_process(home, monkeypatch)
    assert result.facts["identity"] == str(key)


def test_identity_of_the_target_host(keystore, home):
    """With --host, the IdentityFile of that Host block (ssh -G HOST) is checked."""
    key = install(keystore, "rsa1024", home, as_name="work_key")
    (home / "ssh_config").write_text(f"Host work\n  IdentityFile {key}\n")
    check, _ = mk202(home, "--host", "work")
    assert check["status"] == "fail" and str(key) in " ".join(check["details"])


def test_tilde_in_identityfile_uses_home(keystore, home):
    install(keystore, "ed25519", home)
    (home / "ssh_config").write_text("IdentityFile ~/.ssh/id_ed25519\n")
    check, _ = mk202(home)
    assert check["status"] == "pass"
    assert f"{home}/.ssh/id_ed25519" in check["summary"]


# --- the library, for the wizard -------------------------------------------------------------


def test_inspect_and_acceptable(keystore, home):
    run = keys.local_runner()
    good = keys.inspect_identity(install(keystore, "ed25519", home), run, check_agent=False)
    assert keys.acceptable(good) and good.matches is True
    assert keys.assess(good) == []
    dsa = keys.inspect_identity(install(keystore, "dsa", home), run, check_agent=False)
    assert not keys.acceptable(dsa) and dsa.kind == "dsa"
    missing = keys.inspect_identity(home / ".ssh" / "nope", run)
    assert not missing.exists and not keys.acceptable(missing)


def test_parse_public_key_rejects_garbage():
    with pytest.raises(ValueError):
        keys.parse_public_key("ssh-ed25519 AAAAnotbase64!! x")
    with pytest.raises(ValueError):
        keys.parse_public_key("")


def test_parse_fingerprint_line():
    assert keys.parse_fingerprint_line("256 SHA256:abc/def+g= c (ED25519)\n") == (256, "SHA256:abc/def+g=")
    assert keys.parse_fingerprint_line("garbage") is None


@given(st.text(alphabet="abc/_.-~ ", max_size=30))
def test_expand_identity_path_without_tokens_is_expanduser(value):
    assert keys.expand_identity_path(value) == Path(os.path.expanduser(value))


def test_expand_identity_path_tokens(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.expand_identity_path("%d/.ssh/%u_%h", user="al", host="box") == tmp_path / ".ssh" / "al_box"
    assert keys.expand_identity_path("~/.ssh/k") == tmp_path / ".ssh" / "k"
    assert str(keys.expand_identity_path("/x/100%%")) == "/x/100%"


def test_keygen_command_quotes_hostile_paths():
    cmd = keys.keygen_command("/tmp/a b;rm -rf ~", comment="me@box")
    assert "'/tmp/a b;rm -rf ~'" in cmd
    assert keys.keygen_command(comment="me@box") == 'ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519 -C "me@box"'


def test_broken_ssh_config_is_a_skip_not_a_fail(home):
    """ssh -G cannot read the config: "could not check" is skip, with a one-line reason."""
    (home / "ssh_config").write_text("Host x\n  NoSuchOption yes\n")
    check, _ = mk202(home)
    assert check["status"] == "skip"
    assert "cannot tell which key ssh uses" in check["summary"]
    assert "\n" not in check["summary"]
