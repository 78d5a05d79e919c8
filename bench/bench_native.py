"""Native driver throughput inside a QEMU guest: `romlab bench native` on an emulated e1000.

Boots one guest (TCG) with an e1000, and in it measures the kernel's driver (pktgen), romlab's
C batch path and its pure-Python path on that same NIC, printing the table with the ratios. The
guest writes the JSON and the PNG into $ROMLAB_BENCH_OUT (default $TMPDIR/romlab-native-bench),
a host directory shared with it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    out = Path(os.environ.get("ROMLAB_BENCH_OUT", Path(tempfile.gettempdir()) / "romlab-native-bench")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    guest = ("import subprocess, sys; from hw.pci import list_devices; "
             "bdf = next(str(d.bdf) for d in list_devices() if (d.vendor_id, d.device_id) == (0x8086, 0x100e)); "
             "sys.exit(subprocess.call([sys.executable, '-m', 'romlab', 'bench', 'native', '--pci', bdf, "
             "'--size', '64,1514', '--batch', '1,32,256', '--seconds', '3', "
             f"'-o', {str(out / 'native.json')!r}, '--plot', {str(out / 'native.png')!r}, '--overwrite']))")
    cmd = [sys.executable, "-m", "romlab", "vm", "--nic", "e1000", "--timeout", "1200", "--share", str(out), "--",
           sys.executable, "-c", guest]
    return subprocess.call(cmd, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
