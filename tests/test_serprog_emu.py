"""`romlab serprog-emu` against Debian's flashrom (an independent serprog host) and raw protocol bytes.

Also holds ``emulator()``, the helper the other flash tests use to run one.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest


@contextmanager
def emulator(image: Path, *extra: str):
    stats = image.with_name(image.name + ".stats.json")
    proc = subprocess.Popen([sys.executable, "-m", "romlab", "serprog-emu", "--image", str(image),
                             "--stats", str(stats), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"tcp:127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        pytest.fail(f"emulator did not start: {line!r} {proc.stderr.read()!r}")
    port = int(m.group(1))

    def read_stats(sessions: int | None = None) -> dict:
        # Stats are written when a host disconnects; wait until the expected session is in.
        deadline = time.monotonic() + 10
        while True:
            data = json.loads(stats.read_text())
            if sessions is None or len(data["sessions"]) >= sessions or time.monotonic() > deadline:
                return data
            time.sleep(0.02)

    try:
        yield SimpleNamespace(port=port, spec=f"serprog:tcp=127.0.0.1:{port}", stats=read_stats, proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def flashrom(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("flashrom") or "/usr/sbin/flashrom"
    if not Path(exe).exists():
        pytest.fail("flashrom is missing: run scripts/setup.sh (Debian package flashrom)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


def test_flashrom_probes_writes_reads_and_verifies_512k(tmp_path):
    chip = tmp_path / "chip.bin"
    old = random.Random(1).randbytes(524288)
    new = random.Random(2).randbytes(524288)
    chip.write_bytes(old)
    (tmp_path / "new.bin").write_bytes(new)
    (tmp_path / "other.bin").write_bytes(old)
    with emulator(chip) as emu:
        prog = f"serprog:ip=127.0.0.1:{emu.port}"
        w = flashrom("-p", prog, "-w", str(tmp_path / "new.bin"))
        assert w.returncode == 0, w.stdout + w.stderr
        assert 'Found Winbond flash chip "W25X40" (512 kB, SPI)' in w.stdout
        assert "Verifying flash... VERIFIED." in w.stdout
        assert chip.read_bytes() == new
        r = flashrom("-p", prog, "-r", str(tmp_path / "back.bin"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "back.bin").read_bytes() == new
        # Verification must be able to fail: the old contents are no longer on the chip.
        v = flashrom("-p", prog, "-v", str(tmp_path / "other.bin"))
        assert v.returncode != 0 and "FAILED at 0x00000000!" in v.stdout + v.stderr
        stats = emu.stats(sessions=3)
    # flashrom erased every 4 KiB sector once (the new image differs everywhere).
    assert stats["erase_counts"] == [1] * 128


def test_flashrom_reads_through_a_pty(tmp_path):
    chip = tmp_path / "chip.bin"
    data = random.Random(3).randbytes(131072)
    chip.write_bytes(data)
    proc = subprocess.Popen([sys.executable, "-m", "romlab", "serprog-emu", "--image", str(chip), "--pty"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"pty (/dev/pts/\d+)", line)
        assert m, line
        r = flashrom("-p", f"serprog:dev={m.group(1)}:115200", "-r", str(tmp_path / "back.bin"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'Found Winbond flash chip "W25X10" (128 kB, SPI)' in r.stdout
        assert (tmp_path / "back.bin").read_bytes() == data
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_protocol_bytes_by_hand(tmp_path):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xa5" * 65536)
    with emulator(chip, "--chip", "W25X05") as emu:
        s = socket.create_connection(("127.0.0.1", emu.port))
        s.settimeout(5)

        def ask(data: bytes, n: int) -> bytes:
            s.sendall(data)
            out = b""
            while len(out) < n:
                out += s.recv(n - len(out))
            return out

        assert ask(b"\x10", 2) == b"\x15\x06"                  # SYNCNOP: NAK ACK
        assert ask(b"\x01", 3) == b"\x06\x01\x00"              # interface version 1
        assert ask(b"\x05", 2) == b"\x06\x08"                  # SPI bus only
        cmap = ask(b"\x02", 33)
        assert cmap[0] == 0x06 and cmap[1 + 0x13 // 8] & (1 << (0x13 % 8))
        assert ask(b"\x12\x01", 1) == b"\x15"                  # parallel bus refused
        # O_SPIOP: slen=1 rlen=3, RDID -> ACK EF 30 10 (W25X05)
        assert ask(b"\x13\x01\x00\x00\x03\x00\x00\x9f", 4) == b"\x06\xef\x30\x10"
        # O_SPIOP: READ 4 bytes at 0x000100
        assert ask(b"\x13\x04\x00\x00\x04\x00\x00\x03\x00\x01\x00", 5) == b"\x06\xa5\xa5\xa5\xa5"
        assert ask(b"\x0b", 1) == b"\x15"                      # opbuf commands are not offered
        s.close()


def test_romlab_writes_through_a_serial_device(tmp_path, monkeypatch):
    """romlab's serprog host over a tty (pyserial), the path a USB serial programmer takes."""
    monkeypatch.setenv("ROMLAB_BACKUP_DIR", str(tmp_path / "backups"))
    import os
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * 131072)
    rom = Path("/usr/lib/ipxe/qemu/pxe-e1000.rom").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "romlab", "serprog-emu", "--image", str(chip), "--pty"],
                            stdout=subprocess.PIPE, text=True)
    try:
        m = re.search(r"pty (/dev/pts/\d+)", proc.stdout.readline())
        r = subprocess.run([sys.executable, "-m", "romlab", "flash", "/usr/lib/ipxe/qemu/pxe-e1000.rom",
                            "--programmer", f"serprog:dev={m.group(1)},baud=115200"],
                           capture_output=True, env=dict(os.environ), timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert chip.read_bytes() == rom + b"\xff" * (131072 - len(rom))
