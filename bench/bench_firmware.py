"""UNDI against native drivers under QEMU (TCG): `romlab bench firmware` over Debian's ROMs.

The reference is in the same run: each NIC's native-driver figure is the yardstick its UNDI
figure is read against (the ratio), so a busy machine moves both. Writes the JSON, PNG and HTML
report next to each other in $ROMLAB_BENCH_OUT (default $TMPDIR/romlab-firmware-bench) and prints
the table.

Environment: ROMLAB_BENCH_NICS (default e1000,e1000e,rtl8139,virtio-net), ROMLAB_BENCH_SIZE
(default 16M), ROMLAB_BENCH_RUNS (default 3), ROMLAB_BENCH_DHCP (default auto).
Exit status: romlab's, and 1 also when UNDI is not slower than native on some NIC.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    out = Path(os.environ.get("ROMLAB_BENCH_OUT", Path(tempfile.gettempdir()) / "romlab-firmware-bench"))
    out.mkdir(parents=True, exist_ok=True)
    nics = os.environ.get("ROMLAB_BENCH_NICS", "e1000,e1000e,rtl8139,virtio-net")
    size = os.environ.get("ROMLAB_BENCH_SIZE", "16M")
    runs = os.environ.get("ROMLAB_BENCH_RUNS", "3")
    dhcp = os.environ.get("ROMLAB_BENCH_DHCP", "auto")
    cmd = [sys.executable, "-m", "romlab", "bench", "firmware", "--nic", nics, "--size", size, "--runs", runs,
           "--dhcp", dhcp, "-o", str(out / "firmware.json"), "--overwrite", "--plot", str(out / "firmware.png"),
           "--html", str(out / "firmware.html")]
    print("$ romlab " + " ".join(cmd[3:]), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        return rc
    doc = json.loads((out / "firmware.json").read_text())
    not_slower = [n["nic"] for n in doc["nics"] if not (n["ratio_native_over_undi"] or 0) > 1]
    for n in doc["nics"]:
        print(f"{n['nic']}: UNDI is {n['ratio_native_over_undi']:.1f}x slower than the native driver "
              f"({n['native']['chip']} {n['native']['stats']['median_mbit_s']:.1f} Mbit/s, "
              f"undionly {n['undi']['stats']['median_mbit_s']:.1f} Mbit/s)")
    print(f"report: {out / 'firmware.html'}, plot: {out / 'firmware.png'}")
    if not_slower:
        print(f"UNDI was not slower than native on: {', '.join(not_slower)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
