"""Write throughput through serprog: romlab against Debian's flashrom, same emulator, same image.

Both tools write the same 512 KiB option ROM over the same old contents, each
through its own fresh `romlab serprog-emu` (W25X40, "fast" timing). The
emulator times the write phase itself: from the first erase/program command to
the end of the last one's busy time, so flashrom's start-up and one-second
synchronisation (and romlab's backup read) are left out. The bench also checks
that romlab used no serprog command flashrom did not use, and that both chips
end up holding the image.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from romlab.bench.render import text_table  # noqa: E402

SIZE = 512 * 1024
PY = sys.executable


def option_rom(size: int, seed: int) -> bytes:
    """A valid single-image option ROM of ``size`` bytes with random contents."""
    rng = random.Random(seed)
    rom = bytearray(rng.getrandbits(8) for _ in range(size))
    rom[0:2] = b"\x55\xaa"
    rom[2] = 0                      # legacy size byte cannot express 512 KiB
    rom[0x18:0x1A] = (0x40).to_bytes(2, "little")
    pcir = bytearray(b"PCIR" + (0x8086).to_bytes(2, "little") + (0x10D3).to_bytes(2, "little"))
    pcir += b"\x00\x00" + (0x18).to_bytes(2, "little") + b"\x00" + b"\x00\x00\x02"
    pcir += (size // 512).to_bytes(2, "little") + b"\x00\x00" + b"\x00" + b"\x80" + b"\x00\x00"
    rom[0x40:0x40 + len(pcir)] = pcir
    rom[-1] = 0
    rom[-1] = (-sum(rom)) & 0xFF
    return bytes(rom)


def start_emulator(image: Path, stats: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([PY, "-m", "romlab", "serprog-emu", "--image", str(image), "--stats", str(stats)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    port = int(line.split("tcp:127.0.0.1:")[1].split()[0])
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def write_session(stats: Path) -> dict:
    data = json.loads(stats.read_text())
    sessions = [s for s in data["sessions"] if s["write_seconds"] is not None]
    assert len(sessions) == 1, data["sessions"]
    return sessions[0]


def main() -> int:
    if not shutil.which("flashrom"):
        print("flashrom is missing: run scripts/setup.sh", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench_flash."))
    old, new = option_rom(SIZE, 1), option_rom(SIZE, 2)
    (work / "new.rom").write_bytes(new)
    results = {}
    for tool in ("flashrom", "romlab"):
        chip = work / f"{tool}.chip"
        chip.write_bytes(old)
        stats = work / f"{tool}.stats"
        proc, port = start_emulator(chip, stats)
        try:
            t0 = time.monotonic()
            if tool == "flashrom":
                cmd = ["flashrom", "-p", f"serprog:ip=127.0.0.1:{port}", "-w", str(work / "new.rom")]
            else:
                cmd = [PY, "-m", "romlab", "flash", str(work / "new.rom"), "--programmer",
                       f"serprog:tcp=127.0.0.1:{port}", "--layout", "rom-at-0", "--no-progress"]
            env = dict(os.environ, ROMLAB_BACKUP_DIR=str(work / "backups"))
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            wall = time.monotonic() - t0
        finally:
            stop(proc)
        if r.returncode != 0:
            print(f"{tool} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}", file=sys.stderr)
            return 1
        if chip.read_bytes() != new:
            print(f"{tool} reported success but the chip does not hold the image", file=sys.stderr)
            return 1
        s = write_session(stats)
        results[tool] = {"wall": wall, "write": s["write_seconds"], "commands": set(s["commands"]),
                         "spi_ops": s["spi_ops"]}
    extra = results["romlab"]["commands"] - results["flashrom"]["commands"]
    print(text_table([("tool", "left"), ("write phase s", "right"), ("KiB/s", "right"), ("SPI ops", "right"),
                      ("whole run s", "right")],
                     [[tool, f"{r['write']:.3f}", f"{SIZE / 1024 / r['write']:.1f}", str(r["spi_ops"]),
                       f"{r['wall']:.2f}"] for tool, r in results.items()]))
    ratio = results["flashrom"]["write"] / results["romlab"]["write"]
    print(f"romlab/flashrom write throughput ratio: {ratio:.2f} (target >= 1.00)")
    print("serprog commands used by romlab: " + " ".join("%02x" % c for c in sorted(results["romlab"]["commands"]))
          + ("; none outside flashrom's set" if not extra else
             "; NOT used by flashrom: " + " ".join("%02x" % c for c in sorted(extra))))
    shutil.rmtree(work)
    return 0 if not extra and ratio >= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
