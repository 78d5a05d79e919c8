"""Endless, huge and odd inputs: every verb bounds what it reads and answers in one line.

The children run with an address-space limit, so a verb that reads without bound fails here
with a MemoryError instead of eating the machine.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

ROM = "/usr/lib/ipxe/qemu/efi-e1000.rom"


def _limited():
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def romlab_limited(*args, cwd=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "romlab", *map(str, args)], capture_output=True, timeout=timeout,
                          preexec_fn=_limited, cwd=cwd)


def _one_line(r) -> str:
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("args", [
    ["inspect", "/dev/zero"], ["lint", "/dev/zero"], ["disasm", "/dev/zero"],
    ["patch", "/dev/zero", "--vendor", "8086", "-o", "{tmp}/out.rom"], ["split", "/dev/zero", "-o", "{tmp}"],
    ["extract", "/dev/zero", "--image", "0", "-o", "{tmp}/out.rom"], ["combine", "/dev/zero", ROM, "-o", "{tmp}/o.rom"],
    ["efi-rom", "/dev/zero", "--vendor", "8086", "--device", "100e", "-o", "{tmp}/o.rom"],
    ["pad", "/dev/zero", "--to", "flash", "-o", "{tmp}/o.rom"],
], ids=lambda a: a[0])
def test_class1_endless_input_is_cut_at_16_MiB(tmp_path, args):
    r = romlab_limited(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    assert "larger than 16 MiB" in _one_line(r)
    assert list(tmp_path.iterdir()) == []


def test_class1_scan_stops_at_max_bytes(tmp_path):
    r = romlab_limited("scan", "/dev/zero", "--max-bytes", "3M")
    assert r.returncode == 2 and "larger than 3 MiB" in _one_line(r) and "--max-bytes" in r.stderr.decode()


def test_class1_scan_reads_a_character_device_up_to_its_bound():
    # /dev/full, like an MTD device, has no size to stat: what can be read is read, in chunks.
    r = romlab_limited("scan", "/dev/full", "--max-bytes", "1M")
    assert r.returncode == 2 and "larger than 1 MiB" in _one_line(r)


def test_class1_fifo_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "rom.fifo"
    os.mkfifo(fifo)
    for verb in ("inspect", "lint", "scan"):
        r = romlab_limited(verb, fifo, timeout=30)  # opening a FIFO with no writer would block
        assert r.returncode == 2 and "is a FIFO" in _one_line(r)


def test_class1_a_rom_of_exactly_16_MiB_is_still_read(tmp_path):
    big = tmp_path / "big.rom"
    with open(ROM, "rb") as f:
        rom = f.read()
    big.write_bytes(rom + b"\xff" * ((16 << 20) - len(rom)))
    r = romlab_limited("inspect", big)
    assert r.returncode == 0, r.stderr


def test_class6_escape_sequences_from_a_rom_never_reach_the_terminal(tmp_path):
    data = bytearray(open("/usr/lib/ipxe/qemu/pxe-e1000.rom", "rb").read())
    # pxe-e1000.rom's UNDI ROM ID (pointer at header word 0x1A... found by its signature) ends in
    # the 4-byte bus type "PCIR"; an ESC[2J there must be printed as text.
    undi = data.find(b"UNDI")
    at = data.find(b"PCIR", undi)
    assert 0 < undi < at < undi + 0x20
    data[at:at + 4] = b"\x1b[2J"
    rom = tmp_path / "esc.rom"
    rom.write_bytes(bytes(data))
    r = romlab_limited("inspect", rom)
    assert b"\x1b" not in r.stdout and b"\x1b" not in r.stderr
    assert b"bus type \\x1b[2J" in r.stdout
