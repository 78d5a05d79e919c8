"""Inspect and scan speed: cold start of `romlab inspect`, the whole corpus in one process, scan MB/s.

Each figure is read against a reference taken in the same run, so a busy 2-core machine moves both:

* cold start: `romlab inspect efi-e1000.rom` in a fresh process against a bare `python -c pass`,
  the two alternating for COLD_RUNS rounds (median, and the ratio of the medians). Target: at most
  80 ms median.
* the corpus: every ROM Debian ships, walked and turned into JSON in one process.
* scan of a 64 MiB dump against the bare 55AA signature search over it. Target: 200 MB/s or more.

Usage: python bench/bench_inspect.py [cold] [corpus] [scan]   (default: all three)
The romlab measured is this checkout's (its directory leads PYTHONPATH), not an installed one.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from romlab.bench.render import text_table  # noqa: E402

ROM = "/usr/lib/ipxe/qemu/efi-e1000.rom"
CORPUS = (sorted(glob.glob("/usr/lib/ipxe/qemu/*.rom")) + sorted(glob.glob("/usr/share/seabios/vgabios*.bin"))
          + [f"/usr/share/qemu/{n}.bin" for n in ("linuxboot", "linuxboot_dma", "multiboot", "multiboot_dma",
                                                 "pvh", "sgabios", "kvmvapic")])
COLD_RUNS = 31
COLD_TARGET_S = 0.080
SCAN_TARGET_MBPS = 200
PY = sys.executable
# Both the reference and romlab run with this environment, so they differ only in what they do.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=REPO)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode().strip()[-500:]}")
    return dt


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def cold() -> None:
    """Fresh processes, bare Python and romlab alternating round by round, so that load from other
    work on the machine falls on both alike. One untimed run first leaves the bytecode caches
    written, as they are after installation."""
    cmds = {"python -c pass": [PY, "-c", "pass"],
            "romlab inspect efi-e1000.rom": [PY, "-m", "romlab", "inspect", ROM],
            "romlab inspect --json efi-e1000.rom": [PY, "-m", "romlab", "inspect", "--json", ROM]}
    for cmd in cmds.values():
        timed(cmd)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(COLD_RUNS):
        for name, cmd in cmds.items():
            times[name].append(timed(cmd))
    med = {name: statistics.median(t) for name, t in times.items()}
    bare = med["python -c pass"]
    rows = [[name, ms(med[name]), ms(min(t)), ms(max(t)), f"{med[name] / bare:.2f}x", ms(med[name] - bare)]
            for name, t in times.items()]
    print(f"cold start: {COLD_RUNS} fresh processes each, alternating; reference python -c pass")
    print(text_table([("command", "left"), ("median ms", "right"), ("min ms", "right"), ("max ms", "right"),
                      ("vs python", "right"), ("over python ms", "right")], rows))
    ours = med["romlab inspect efi-e1000.rom"]
    print(f"romlab inspect median {ms(ours)} ms, python -c pass {ms(bare)} ms, ratio {ours / bare:.2f}x; "
          f"target <= {ms(COLD_TARGET_S)} ms: {'met' if ours <= COLD_TARGET_S else 'MISSED'}")


def corpus() -> None:
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


def scan_speed() -> None:
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
          f"{len(blob) / ref / 1e6:.0f} MB/s, {hits} candidates)  target >= {SCAN_TARGET_MBPS} MB/s: "
          f"{'met' if mbps >= SCAN_TARGET_MBPS else 'MISSED'}")


SECTIONS = {"cold": cold, "corpus": corpus, "scan": scan_speed}


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in SECTIONS]
    if unknown:
        print(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if not os.path.exists(ROM):
        print(f"{ROM} is missing: install Debian's ipxe-qemu (scripts/setup.sh does)", file=sys.stderr)
        return 1
    for name in argv or SECTIONS:
        SECTIONS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
