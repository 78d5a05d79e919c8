#!/usr/bin/env bash
# Installs what romlab needs on Debian 12: the system packages it drives or reads
# (QEMU, the ROM packages, flashrom, pci.ids, the guest kernel) and a virtual
# environment with romlab installed editable plus its test extras.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  python3 python3-venv python3-dev gcc make gcc-aarch64-linux-gnu
  qemu-system-x86 qemu-utils ipxe-qemu ipxe seabios qemu-system-data ovmf
  flashrom pci.ids pciutils binutils libcap2-bin kmod busybox-static
  linux-image-amd64
  dnsmasq-base iproute2
  man-db bash-completion
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: not root and no sudo; install these Debian packages first: ${DEBS[*]}" >&2
  fi
fi

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
LOG=${ROMLAB_SETUP_LOG:-$PWD/.setup.log}
: > "$LOG"
# One line per step on screen; apt's and pip's own progress goes to the log, whose last lines are shown on failure.
step() {
  local what=$1; shift
  echo "setup: $what"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup: failed: $what (last lines of $LOG below)" >&2
    tail -n 25 "$LOG" >&2
    exit 1
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  step "apt-get update" $SUDO apt-get update
  step "installing Debian packages: ${missing[*]}" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  step "creating .venv" "$PY" -m venv .venv
fi
stamp=.venv/.romlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ -n "$(find romtools drivers \( -name '*.c' -o -name '*.h' -o -name '_*_build.py' -o -name cheader.py \) -newer "$stamp" 2>/dev/null)" ]; then
  step "upgrading pip in .venv" .venv/bin/pip install --upgrade pip
  # compat mode puts the checkout on sys.path with a .pth line: no import hook to load in every
  # process, which a fresh `romlab inspect` would pay for.
  step "installing romlab and its test tools into .venv" .venv/bin/pip install -e '.[test]' --config-settings editable_mode=compat
  touch "$stamp"
fi
# The man page and bash/zsh completion are made from the parser (so they say what this checkout's
# romlab does), then installed with the `romlab` command under PREFIX, where `man romlab`,
# bash-completion and zsh look: /usr/local for root, ~/.local for a user (no sudo needed), or
# $ROMLAB_PREFIX (with sudo if it is not writable).
step "making the man page and shell completion" .venv/bin/python -m romlab.cli._manual .venv/share
if [ -n "${ROMLAB_PREFIX:-}" ]; then PREFIX=$ROMLAB_PREFIX
elif [ -w /usr/local ]; then PREFIX=/usr/local
else PREFIX=$HOME/.local; fi
AS=""
if [ -e "$PREFIX" ] && [ ! -w "$PREFIX" ]; then AS=$SUDO; fi
place() {  # SRC DEST: copy when different
  cmp -s "$1" "$2" 2>/dev/null || $AS install -D -m 0644 "$1" "$2"
}
installed() {
  place .venv/share/man/man1/romlab.1 "$PREFIX/share/man/man1/romlab.1"
  place .venv/share/bash-completion/completions/romlab "$PREFIX/share/bash-completion/completions/romlab"
  place .venv/share/zsh/site-functions/_romlab "$PREFIX/share/zsh/site-functions/_romlab"
  # `romlab` on PATH: a link to this checkout's entry point, never over a romlab installed otherwise.
  local bin=$PREFIX/bin/romlab
  if [ ! -e "$bin" ] || { [ -L "$bin" ] && [[ "$(readlink "$bin")" == */.venv/bin/romlab ]]; }; then
    $AS mkdir -p "$PREFIX/bin" && $AS ln -sfn "$PWD/.venv/bin/romlab" "$bin"
  fi
}
step "installing romlab, its man page and completion under $PREFIX" installed
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "setup: add $PREFIX/bin to PATH for the romlab command and man romlab" ;;
esac
echo "setup: ready (.venv; romlab, man romlab)"
