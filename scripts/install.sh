#!/usr/bin/env bash
# Install mkdoctor from this checkout into its own virtualenv, link it into ~/.local/bin,
# and run it once (the checks of this computer; add --host USER@HOST for a remote kernel).
# Checks that find problems (mkdoctor's exit status 1, e.g. no SSH key yet on a fresh
# machine) do not make the installation fail: it says so and exits 0. A usage error (2)
# or any other failure is passed through.
# On Debian/Ubuntu it installs what is missing with apt (sudo when not root):
# python3-venv. Every dependency installs from a wheel (no compiler needed).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${MKDOCTOR_VENV:-$HOME/.local/share/mkdoctor/venv}"
python=${PYTHON:-python3}

need=()
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "mkdoctor: installing ${need[*]} with apt" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "mkdoctor: please install: ${need[*]}" >&2
    exit 1
  fi
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --only-binary :all: "$here"
mkdir -p "$HOME/.local/bin"
ln -sf "$venv/bin/mkdoctor" "$HOME/.local/bin/mkdoctor"
echo "mkdoctor: installed as $HOME/.local/bin/mkdoctor" >&2
status=0
"$venv/bin/mkdoctor" "$@" || status=$?
if [ "$status" -eq 1 ]; then
  echo "mkdoctor: installation succeeded; the checks found problems: the report above lists what to fix" >&2
  status=0
fi
case ":$PATH:" in
  *":$HOME/.local/bin:"*) ;;
  *) echo "mkdoctor: $HOME/.local/bin is not on your PATH: run  export PATH=\"\$HOME/.local/bin:\$PATH\"  (and add that line to ~/.profile to keep it)" >&2 ;;
esac
exit "$status"
