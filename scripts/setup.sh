#!/usr/bin/env bash
# Installs what romlab needs on Debian 12: the system packages it drives or reads
# (QEMU 10 and SeaBIOS from bookworm-backports, the ROM packages, flashrom, pci.ids), the
# guest kernel unpacked into romlab's own cache (no kernel package is installed on the
# host), and a virtual environment with romlab installed editable plus its test extras.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  python3 python3-venv python3-dev gcc make gcc-aarch64-linux-gnu
  ipxe-qemu ipxe ovmf
  flashrom pci.ids pciutils binutils libcap2-bin kmod busybox-static
  dnsmasq-base iproute2 openssh-client
  man-db bash-completion
)
# From bookworm-backports: QEMU 10 (its igb is the 82576, with SR-IOV) and the SeaBIOS it is
# built for. bookworm's ipxe-qemu stays: its ROMs are what romlab is tested on.
BACKPORTS=bookworm-backports
BPO_DEBS=(qemu-system-x86 qemu-system-data qemu-utils seabios)
BPO_QEMU_MAJOR=10
BPO_SOURCES=/etc/apt/sources.list.d/romlab-backports.sources
# The guest kernel of `romlab vm`: the package linux-image-amd64 depends on in backports (6.12),
# unpacked with its modules under romlab's cache. The host's kernels are left as they are.
KERNEL_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/romlab/kernel

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

updated=""
apt_update() {
  if [ -z "$updated" ]; then step "apt-get update" $SUDO apt-get update; updated=1; fi
}
if [ "${#missing[@]}" -gt 0 ]; then
  apt_update
  step "installing Debian packages: ${missing[*]}" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# bookworm-backports: the one apt source set-up adds (Debian's own mirror and key).
write_backports() {
  printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: $BACKPORTS" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | $SUDO tee "$BPO_SOURCES" >/dev/null
}
if ! grep -rqs "$BACKPORTS" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  step "enabling $BACKPORTS ($BPO_SOURCES)" write_backports
  updated=""
fi
qemu_major=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null | sed -E 's/^[0-9]+://; s/\..*//')
bpo_missing=()
for p in "${BPO_DEBS[@]}"; do
  dpkg-query -W -f='${Version}' "$p" 2>/dev/null | grep -q "bpo" || bpo_missing+=("$p")
done
if [ "${qemu_major:-0}" -lt "$BPO_QEMU_MAJOR" ] || [ "${#bpo_missing[@]}" -gt 0 ]; then
  apt_update
  step "installing from $BACKPORTS: ${BPO_DEBS[*]}" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -t "$BACKPORTS" "${BPO_DEBS[@]}"
fi

# The guest kernel: which linux-image-<version>-amd64 backports' linux-image-amd64 names, fetched with
# apt-get download and unpacked (dpkg -x) into KERNEL_CACHE/<package>, its modules indexed by depmod.
kernel_pkg() {
  apt-cache depends -t "$BACKPORTS" linux-image-amd64 2>/dev/null \
    | sed -n -E 's/^ *Depends: (linux-image-[0-9][^ ]*-amd64)$/\1/p' | head -n 1
}
unpack_kernel() {  # PACKAGE DEST
  local tmp; tmp=$(mktemp -d "$KERNEL_CACHE/.unpack.XXXXXX")
  (cd "$tmp" && apt-get download -q "$1") || { rm -rf "$tmp"; return 1; }
  dpkg -x "$tmp"/"$1"_*.deb "$tmp/root" || { rm -rf "$tmp"; return 1; }
  local kver=${1#linux-image-}
  [ -f "$tmp/root/boot/vmlinuz-$kver" ] && [ -d "$tmp/root/lib/modules/$kver" ] \
    || { echo "no vmlinuz-$kver or its modules in $1" >&2; rm -rf "$tmp"; return 1; }
  /sbin/depmod -b "$tmp/root" "$kver" || { rm -rf "$tmp"; return 1; }
  rm -rf "$2" && mv "$tmp/root" "$2" && rm -rf "$tmp"
}
mkdir -p "$KERNEL_CACHE"
if ! ls "$KERNEL_CACHE"/linux-image-*/boot/vmlinuz-* >/dev/null 2>&1; then
  apt_update
  kpkg=$(kernel_pkg)
  if [ -z "$kpkg" ]; then
    echo "setup: failed: $BACKPORTS names no linux-image-*-amd64 for linux-image-amd64 (apt-cache depends)" >&2
    exit 1
  fi
  step "unpacking the guest kernel $kpkg into $KERNEL_CACHE (not installed on the host)" \
    unpack_kernel "$kpkg" "$KERNEL_CACHE/$kpkg"
fi

# The lab fleet's SSH server (`romlab lab fleet`): Debian's sshd and sftp-server with the one
# library sshd needs that a host without openssh-server lacks (libwrap0), fetched with apt-get
# download and unpacked (dpkg -x) into romlab's cache. Nothing is installed, so no sshd service is
# enabled or started on the host; the guests run the binary from there.
SSH_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/romlab/openssh
unpack_sshd() {  # DEST
  local tmp; tmp=$(mktemp -d "${1%/*}/.unpack.XXXXXX")
  (cd "$tmp" && apt-get download -q openssh-server openssh-sftp-server libwrap0) || { rm -rf "$tmp"; return 1; }
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root" || { rm -rf "$tmp"; return 1; }; done
  [ -x "$tmp/root/usr/sbin/sshd" ] || { echo "no usr/sbin/sshd in openssh-server" >&2; rm -rf "$tmp"; return 1; }
  rm -rf "$1" && mv "$tmp/root" "$1" && rm -rf "$tmp"
}
mkdir -p "${SSH_CACHE%/*}"
if [ ! -x "$SSH_CACHE/usr/sbin/sshd" ]; then
  apt_update
  step "unpacking Debian's sshd into $SSH_CACHE for the lab fleet (not installed on the host)" unpack_sshd "$SSH_CACHE"
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
