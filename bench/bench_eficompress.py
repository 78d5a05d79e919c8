"""EFI compression speed and size: romlab against EDK2's EfiCompress, same drivers, same run.

The drivers are the PE images inside the EFI halves of Debian's iPXE ROMs
(/usr/lib/ipxe/qemu/efi-*.rom).  EDK2's C encoder comes from PyPI uefi-firmware
(`uefi_firmware.efi_compressor.EfiCompress`); both are called from Python the same way,
alternately, and the median of several rounds is kept.  Target: romlab at most 1.5x
EDK2's time.
"""
from __future__ import annotations

import glob
import statistics
import struct
import sys
import time
from pathlib import Path

import pefile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from romlab.bench.render import text_table  # noqa: E402

ROUNDS = 7
TARGET = 1.5


def drivers() -> list[tuple[str, bytes]]:
    """(ROM name, PE driver) for each Debian iPXE EFI ROM: the EFI image follows the legacy
    one, its PE starts at EfiImageHeaderOffset and ends where its last section does."""
    found = []
    for path in sorted(glob.glob("/usr/lib/ipxe/qemu/efi-*.rom")):
        rom = open(path, "rb").read()
        pcir = struct.unpack_from("<H", rom, 0x18)[0]
        efi = rom[struct.unpack_from("<H", rom, pcir + 0x10)[0] * 512:]
        start = struct.unpack_from("<H", efi, 0x16)[0]
        init = struct.unpack_from("<H", efi, 0x02)[0] * 512
        pe = pefile.PE(data=efi[start:init], fast_load=True)
        end = max([s.PointerToRawData + s.SizeOfRawData for s in pe.sections]
                  + [pe.OPTIONAL_HEADER.SizeOfHeaders])
        found.append((path.rsplit("/", 1)[1], efi[start:start + end]))
    return found


def main() -> int:
    try:
        from uefi_firmware.efi_compressor import EfiCompress
    except ImportError:
        print("uefi-firmware is not installed: run `.venv/bin/pip install -e '.[test]'`", file=sys.stderr)
        return 1
    from romtools.eficompress import compress

    cases = drivers()
    if not cases:
        print("no /usr/lib/ipxe/qemu/efi-*.rom: install Debian's ipxe-qemu (scripts/setup.sh)", file=sys.stderr)
        return 1

    rows = []
    tot_ref = tot_ours = 0.0
    identical = 0
    for name, drv in cases:
        ref_t, our_t = [], []
        ref = ours = b""
        for _ in range(ROUNDS):
            t = time.perf_counter()
            ref = EfiCompress(drv, len(drv))
            ref_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = compress(drv)
            our_t.append(time.perf_counter() - t)
        r, o = statistics.median(ref_t), statistics.median(our_t)
        tot_ref += r
        tot_ours += o
        same = ours == ref
        identical += same
        rows.append([name, str(len(drv)), str(len(ref)), str(len(ours)), f"{len(ours) / len(ref):.4f}",
                     "yes" if same else "no", f"{r * 1e3:.2f}", f"{o * 1e3:.2f}", f"{o / r:.2f}x"])
    print(text_table([("driver", "left"), ("bytes", "right"), ("edk2", "right"), ("romlab", "right"),
                      ("size", "right"), ("same", "right"), ("edk2 ms", "right"), ("romlab ms", "right"),
                      ("time", "right")], rows))
    ratio = tot_ours / tot_ref
    print(f"byte-identical to EDK2: {identical}/{len(cases)}; total time {tot_ours * 1e3:.1f} ms vs "
          f"{tot_ref * 1e3:.1f} ms = {ratio:.2f}x  target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
