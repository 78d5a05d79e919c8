"""Inspect and scan speed: fresh-process `romlab inspect`, the whole corpus in one process, scan MB/s.

Targets on a 2-core machine: fresh-process inspect at most 0.25 s, scan at least 200 MB/s.
The reference for the fresh process is a bare `python -c pass` timed in the same run, so
the figure can be read against the interpreter's own start-up on a noisy machine.
"""
from __future__ import annotations

import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time

ROM = "/usr/lib/ipxe/qemu/efi-e1000.rom"
CORPUS = (sorted(glob.glob("/usr/lib/ipxe/qemu/*.rom")) + sorted(glob.glob("/usr/share/seabios/vgabios*.bin"))
          + [f"/usr/share/qemu/{n}.bin" for n in ("linuxboot", "linuxboot_dma", "multiboot", "multiboot_dma",
                                                 "pvh", "sgabios", "kvmvapic")])


def wall(cmd: list[str], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    py = sys.executable
    check = subprocess.run([py, "-m", "romlab", "inspect", ROM], capture_output=True)
    if check.returncode != 0:
        print(f"romlab inspect {ROM} failed: {check.stderr.decode().strip()}", file=sys.stderr)
        return 1
    bare = wall([py, "-c", "pass"])
    fresh = wall([py, "-m", "romlab", "inspect", ROM])
    fresh_json = wall([py, "-m", "romlab", "inspect", "--json", ROM])
    print(f"fresh-process inspect (median of 9): {fresh:.3f} s  (--json {fresh_json:.3f} s; bare python "
          f"{bare:.3f} s, ratio {fresh / bare:.1f}x)  target <= 0.25 s: {'met' if fresh <= 0.25 else 'MISSED'}")

    from romlab.report import inspect_dict
    from romtools.pciids import default
    from romtools.walker import walk

    names = default()
    t = time.perf_counter()
    total = 0
    for path in CORPUS:
        data = open(path, "rb").read()
        total += len(data)
        w = walk(data)
        json.dumps(inspect_dict(w, path, names, w.findings))
    dt = time.perf_counter() - t
    print(f"inspect --json over the corpus in one process: {len(CORPUS)} files, {total / 1e6:.1f} MB in "
          f"{dt:.3f} s ({dt / len(CORPUS) * 1000:.1f} ms per file)")

    from romtools.scan import scan

    blob = bytearray(random.Random(5).randbytes(64 << 20))
    efi = open(ROM, "rb").read()
    for at in (0x100001, 0x2345671, 0x3A00003):
        blob[at:at + len(efi)] = efi
    blob = bytes(blob)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        found = scan(blob)
        times.append(time.perf_counter() - t)
    dt = min(times)
    mbps = len(blob) / dt / 1e6
    # Reference in the same run: the raw signature search alone.
    t = time.perf_counter()
    pos, hits = blob.find(b"\x55\xaa"), 0
    while pos >= 0:
        hits += 1
        pos = blob.find(b"\x55\xaa", pos + 1)
    ref = time.perf_counter() - t
    print(f"scan of a 64 MiB dump: {len(found)} ROMs in {dt:.3f} s = {mbps:.0f} MB/s (bare 55AA search "
          f"{len(blob) / ref / 1e6:.0f} MB/s, {hits} candidates)  target >= 200 MB/s: "
          f"{'met' if mbps >= 200 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "0")
    sys.exit(main())
