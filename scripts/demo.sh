#!/usr/bin/env bash
# The main job on real ROMs from Debian's packages: understand them, then change one.
set -euo pipefail
cd "$(dirname "$0")/.."
R=".venv/bin/romlab"
IPXE=/usr/lib/ipxe/qemu
out=$(mktemp -d /tmp/romlab-demo.XXXXXX)
trap 'rm -rf "$out"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "romlab inspect $IPXE/efi-e1000.rom  (every image, header, checksum, entry point)"
$R inspect "$IPXE/efi-e1000.rom"

step "romlab lint over every ROM Debian ships (exit 0 = no errors)"
for f in "$IPXE"/*.rom /usr/share/seabios/vgabios*.bin /usr/share/qemu/{linuxboot,multiboot,pvh,sgabios,kvmvapic}.bin; do
  if $R lint --json "$f" > "$out/lint.json"; then verdict=ok; else verdict="exit $?"; fi
  python3 - "$f" "$verdict" "$out/lint.json" <<'PY'
import json, sys
f, verdict, path = sys.argv[1:]
doc = json.load(open(path))
counts = {s: sum(x["severity"] == s for x in doc["findings"]) for s in ("error", "warning", "info")}
print(f"  {verdict:6} {f:48} {counts['error']} errors, {counts['warning']} warnings, {counts['info']} info")
PY
done

step "romlab disasm $IPXE/pxe-e1000.rom --entry init  (follows the init jump)"
$R disasm "$IPXE/pxe-e1000.rom" --entry init --count 12

step "romlab scan: ROMs hidden at odd offsets in an 8 MiB flash dump"
python3 - "$out/dump.bin" <<'PY'
import random, sys
blob = bytearray(random.Random(1).randbytes(8 << 20))
for at, path in ((0x10003, "/usr/lib/ipxe/qemu/efi-rtl8139.rom"), (0x5A0001, "/usr/share/seabios/vgabios-qxl.bin")):
    rom = open(path, "rb").read()
    blob[at:at + len(rom)] = rom
open(sys.argv[1], "wb").write(blob)
PY
$R scan "$out/dump.bin"

step "romlab patch: retarget pxe-e1000.rom to the 82574L (8086:10d3) and fix every checksum"
$R patch "$IPXE/pxe-e1000.rom" --device 0x10d3 --fix-checksums -o "$out/e1000e.rom"
$R lint "$out/e1000e.rom"

step "split efi-e1000.rom, pull out its EFI driver, rebuild it EFI-compressed in EDK2's layout, stack it again"
$R split "$IPXE/efi-e1000.rom" -o "$out/parts"
$R extract "$IPXE/efi-e1000.rom" --image 1 --efi-driver -o "$out/e1000.efi"
$R efi-rom "$out/e1000.efi" --vendor 8086 --device 100e --device 100f --compress -o "$out/e1000-efi.rom"
$R combine "$out/parts/image-0-legacy.rom" "$out/e1000-efi.rom" -o "$out/e1000-both.rom"
$R pad "$out/e1000-both.rom" --to flash -o "$out/e1000-flash.rom"
$R inspect "$out/e1000-flash.rom" | grep -E "^image|walk|after the last|compressed|device list"
echo
echo "demo done."
