"""Native driver throughput inside a QEMU guest: `romlab bench native` on emulated e1000, e1000e and igb.

Boots one guest (TCG) with an e1000, an e1000e and an igb (QEMU 10's 82576, SR-IOV), and in it
measures on each NIC the kernel's driver (pktgen, burst = romlab's batch, its NIC's IOMMU group in an
identity domain for those runs: the guest's vIOMMU otherwise makes the kernel flush the IOTLB for
every frame), romlab's C batch path and its pure-Python path, every figure counted by the NIC and the
median of 3 interleaved rounds; with
--vf the bench also makes one VF on the igb PF and measures it against igbvf, which writes its tail
for every frame whatever pktgen's burst, so the table marks that row's C/kernel as not like for like.
It prints the table with the ratios.
The guest writes the JSON and the PNG into $ROMLAB_BENCH_OUT (default $TMPDIR/romlab-native-bench),
a host directory shared with it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# (QEMU model, the PCI device ID the guest finds it by), in the table's order.
NICS = [("e1000", 0x100E), ("e1000e", 0x10D3), ("igb", 0x10C9)]


def main() -> int:
    out = Path(os.environ.get("ROMLAB_BENCH_OUT", Path(tempfile.gettempdir()) / "romlab-native-bench")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ids = [d for _, d in NICS]
    guest = ("import subprocess, sys; from hw.pci import list_devices; "
             f"found = {{d.device_id: str(d.bdf) for d in list_devices() if d.vendor_id == 0x8086}}; "
             f"pcis = [a for d in {ids!r} for a in ('--pci', found[d])]; "
             "sys.exit(subprocess.call([sys.executable, '-m', 'romlab', 'bench', 'native', *pcis, '--vf', "
             "'--size', '64,1514', '--batch', '1,32,256', '--seconds', '2', '--runs', '3', '--kernel-dma', 'identity', "
             f"'-o', {str(out / 'native.json')!r}, '--plot', {str(out / 'native.png')!r}, '--overwrite']))")
    cmd = [sys.executable, "-m", "romlab", "vm", *[a for m, _ in NICS for a in ("--nic", m)], "--timeout", "5400",
           "--share", str(out), "--", sys.executable, "-c", guest]
    # Matplotlib's font cache in the shared directory: built once (minutes under TCG), kept for the next run.
    return subprocess.call(cmd, cwd=REPO, env={**os.environ, "MPLCONFIGDIR": str(out / ".matplotlib")})


if __name__ == "__main__":
    sys.exit(main())
