#!/usr/bin/env bash
# Installs what romlab needs on Debian 12: the system packages it drives or reads
# (QEMU, the ROM packages, flashrom, pci.ids, the guest kernel) and a virtual
# environment with romlab installed editable plus its test extras.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  python3 python3-venv python3-dev gcc make
  qemu-system-x86 qemu-utils ipxe-qemu ipxe seabios qemu-system-data ovmf
  flashrom pci.ids pciutils binutils libcap2-bin kmod busybox-static
  linux-image-amd64
  dnsmasq-base iproute2
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
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.romlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ -n "$(find romtools drivers \( -name '*.c' -o -name '*.h' -o -name '_*_build.py' -o -name cheader.py \) -newer "$stamp" 2>/dev/null)" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
echo "setup: ready (.venv)"
