"""A NIC's own UNDI driver against its reference driver, inside a QEMU guest: `romlab bench undi`
on an e1000, an e1000e and an rtl8139 in one guest (TCG).

Each NIC's ROM BAR holds Debian's iPXE ROM for it (pxe-<model>.rom), which the bench reads
through VFIO and runs in romlab's emulated PC, driving the NIC through VFIO; the reference is
romlab's native driver (C path) on the e1000 and e1000e, the kernel's 8139cp through pktgen on
the rtl8139. The guest has 3 GiB: unicorn's translator buffer does not fit in the default 1 GiB.
The guest writes each NIC's JSON and PNG into $ROMLAB_BENCH_OUT (default
$TMPDIR/romlab-undi-bench), a host directory shared with it, and the run fails if any NIC's
bench failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROMS = Path("/usr/lib/ipxe/qemu")
NICS = {"e1000": (0x8086, 0x100E), "e1000e": (0x8086, 0x10D3), "rtl8139": (0x10EC, 0x8139)}
ROMSIZE = 131072  # a power of two that holds each pxe-*.rom (75 KB)


def guest_script(out: Path) -> str:
    """What the guest runs: the bench on each NIC in turn, found by its PCI IDs; exit 1 if any failed."""
    return (
        "import subprocess, sys\n"
        "from hw.pci import list_devices\n"
        f"nics = {NICS!r}\n"
        "failed = []\n"
        "for name, ids in nics.items():\n"
        "    bdf = next((str(d.bdf) for d in list_devices() if (d.vendor_id, d.device_id) == ids), None)\n"
        "    if bdf is None:\n"
        "        print(f'bench_undi: no {name} in the guest', flush=True); failed.append(name); continue\n"
        "    print(f'== {name} at {bdf}', flush=True)\n"
        "    rc = subprocess.call([sys.executable, '-m', 'romlab', 'bench', 'undi', '--pci', bdf,\n"
        "                          '--size', '64,1514', '--seconds', '2', '--trace-frames', '30',\n"
        f"                          '-o', {str(out)!r} + f'/undi-{{name}}.json',\n"
        f"                          '--plot', {str(out)!r} + f'/undi-{{name}}.png', '--overwrite'])\n"
        "    if rc:\n"
        "        failed.append(name)\n"
        "print('bench_undi: failed on ' + ', '.join(failed) if failed else 'bench_undi: every NIC measured', "
        "flush=True)\n"
        "sys.exit(1 if failed else 0)\n")


def main() -> int:
    out = Path(os.environ.get("ROMLAB_BENCH_OUT", Path(tempfile.gettempdir()) / "romlab-undi-bench")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    missing = [str(ROMS / f"pxe-{n}.rom") for n in NICS if not (ROMS / f"pxe-{n}.rom").exists()]
    if missing:
        print(f"bench_undi: {', '.join(missing)} not installed (Debian package ipxe-qemu)", file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "romlab", "vm", "--memory", "3G", "--timeout", "2400", "--share", str(out)]
    for name in NICS:
        cmd += ["--nic", f"{name},romfile={ROMS / f'pxe-{name}.rom'},romsize={ROMSIZE}"]
    cmd += ["--", sys.executable, "-c", guest_script(out)]
    return subprocess.call(cmd, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
