#!/usr/bin/env bash
# Run the whole test suite. Installs what the tests need when it is missing:
# openssh-server (a real sshd is started on loopback), iptables and iproute2 (network
# namespaces for NAT and firewall tests), sudo (the wizard's sshd hardening),
# tcsh and fish (remote login shells that are not POSIX), netcat-openbsd (ProxyCommand),
# environment-modules and Lmod's dependencies (kernels that `module load` puts on PATH),
# slurmctld, slurmd, slurm-client and munge (a real Slurm cluster in network namespaces:
# tests/harness/slurm.py; no service is started by the packages without systemd, and
# the tests run their own daemons with a private configuration),
# python3-venv, then
# a virtualenv in .venv with the package and its test extras, then pytest.
# The integration tests need root (network namespaces, a dedicated sshd user); in CI
# (CI set), a skipped integration test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# the setup wizard applies sshd hardening with sudo (tests: SSHSandbox(sudo=True))
command -v sudo >/dev/null 2>&1 || need+=(sudo)
# remote accounts whose login shell is not POSIX (tests/test_login_shells.py)
command -v tcsh >/dev/null 2>&1 || need+=(tcsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
# module systems (tests/test_modules.py): Debian's environment-modules, and what lmod needs
# to run (lmod itself conflicts with environment-modules as a package: its .deb is
# downloaded below and unpacked by the test into a sandbox's private mount namespace)
[ -f /usr/share/modules/init/sh ] || need+=(environment-modules)
for p in lua5.3 lua-posix lua-filesystem lua-json lua-term tcl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
# hosts reached through a ProxyCommand (tests/test_corpus_client.py: ProxyCommand nc %h %p)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
[ -x /usr/sbin/slurmctld ] || need+=(slurmctld)
[ -x /usr/sbin/slurmd ] || need+=(slurmd)
command -v srun >/dev/null 2>&1 || need+=(slurm-client)
[ -x /usr/sbin/munged ] || need+=(munge)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test.sh: installing ${need[*]} with apt" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
lmod_debs=/var/cache/mkdoctor-tests
if ! ls "$lmod_debs"/lmod_*.deb >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo mkdir -p "$lmod_debs"
  ( cd "$lmod_debs" && { $sudo apt-get download lmod >/dev/null 2>&1 ||
      { $sudo apt-get update -qq && $sudo apt-get download lmod >/dev/null; }; } )
fi
# sshd refuses to start without its privilege-separation directory.
if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
# Files run in parallel (pytest-xdist, tests/conftest.py says which may run beside the
# others); MKD_TEST_JOBS=1 runs them one after another.
jobs=${MKD_TEST_JOBS:-3}
par=(); [ "$jobs" -gt 1 ] && par=(-n "$jobs" --dist loadgroup)
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${par[@]}" "$@"
