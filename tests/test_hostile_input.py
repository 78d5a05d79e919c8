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


def test_class3_split_never_writes_over_its_input(tmp_path):
    # The input is named like split's own output for image 0, in the output directory itself.
    src = tmp_path / "image-0-legacy.rom"
    src.write_bytes(open("/usr/lib/ipxe/qemu/efi-e1000.rom", "rb").read())
    before = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        r = romlab_limited("split", src, "-o", tmp_path, *extra)
        assert r.returncode == 2 and "is an input file" in _one_line(r)
        assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["image-0-legacy.rom"]


def test_class3_scan_extract_never_writes_over_its_input(tmp_path):
    src = tmp_path / "rom-00000000.bin"
    src.write_bytes(b"\xff" * 4096 + open("/usr/lib/ipxe/qemu/pxe-e1000.rom", "rb").read())
    before = src.read_bytes()
    # The ROM sits at 0x1000: name the input after that extraction.
    named = tmp_path / "rom-00001000.bin"
    src.rename(named)
    r = romlab_limited("scan", named, "--extract", tmp_path, "--overwrite")
    assert r.returncode == 2 and "is an input file" in _one_line(r)
    assert named.read_bytes() == before


@pytest.mark.parametrize("verb_args", [
    ["patch", ROM, "--vendor", "8087"], ["pad", ROM, "--to", "flash"], ["extract", ROM, "--image", "0"],
    ["combine", ROM],
], ids=lambda a: a[0])
def test_class3_existing_output_needs_overwrite(tmp_path, verb_args):
    out = tmp_path / "out.rom"
    out.write_bytes(b"keep me")
    r = romlab_limited(*verb_args, "-o", out)
    assert r.returncode == 2 and "--overwrite" in _one_line(r) and out.read_bytes() == b"keep me"
    r = romlab_limited(*verb_args, "-o", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"keep me"


def test_class7_outputs_follow_the_umask(tmp_path):
    def umask_022():
        _limited()
        os.umask(0o022)

    out = tmp_path / "p.rom"
    r = subprocess.run([sys.executable, "-m", "romlab", "pad", ROM, "--to", "flash", "-o", str(out)],
                       capture_output=True, preexec_fn=umask_022, timeout=60)
    assert r.returncode == 0 and (out.stat().st_mode & 0o777) == 0o644


def test_class7_pad_is_bounded_by_the_largest_flash_part(tmp_path):
    out = tmp_path / "p.rom"
    r = romlab_limited("pad", ROM, "--to", "256M", "-o", out)
    assert r.returncode == 2 and "largest flash part" in _one_line(r) and not out.exists()


def test_class7_scan_of_an_empty_file_speaks_on_stderr(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    r = romlab_limited("scan", empty)
    assert r.returncode == 1 and r.stdout == b"" and "no option ROM found" in _one_line(r)


def test_class7_usage_errors_are_one_line():
    r = romlab_limited("pad", ROM)
    assert r.returncode == 2 and "see 'romlab pad --help'" in _one_line(r)


def test_class3_bench_outputs_are_checked_before_the_bench_runs(tmp_path):
    existing = tmp_path / "figures.json"
    existing.write_text("keep")
    r = romlab_limited("bench", "firmware", "--nic", "e1000", "-o", existing, timeout=60)
    assert r.returncode == 2 and "--overwrite" in _one_line(r) and existing.read_text() == "keep"
