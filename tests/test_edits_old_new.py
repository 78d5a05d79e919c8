"""The edit verbs show old -> new, write nothing on a no-op or a dry run, and leave no ROM without a
last-image flag unless asked.

Expected values are read off hex dumps of Debian's ROMs (`xxd`):
  pxe-e1000.rom   00: 55aa 93e9 a200 14..      byte 6 (iPXE's checksum byte) = 0x14
                  1c: "PCIR" 8680 0e10 bf04    vendor 8086, device 100e, device list at PCIR+0x4bf = 0x4db
                  28: 0300 0002 ...            revision 3, class 02 00 00 (020000)
                  31: 80                       indicator: last image
                  4db: 0e10 0000               device list: 100e, then the 0 that ends it
                  40: "$PnP", product pointer (PnP+0x10) = 0x0070; 70: "iPXE\\0(PCI xx:xx..."
  efi-e1000.rom   00: 55aa 93e9 a200 94..      the same legacy image as image 0 (147 blocks), byte 6 = 0x94
                  31: 00                       indicator: not the last image (the EFI image follows)
Debian ships pxe-e1000.rom as that very legacy image on its own, flag set: so image 0 cut out of
efi-e1000.rom and made a ROM of its own must be pxe-e1000.rom byte for byte.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab

PXE = IPXE_QEMU / "pxe-e1000.rom"
EFI = IPXE_QEMU / "efi-e1000.rom"
PXE_LEN = 147 * 512


def romlab(*args, **kw):
    return run_romlab(*args, env=dict(os.environ), **kw)


def one_line_error(r):
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def stamp(p: Path):
    st = p.stat()
    return st.st_ino, st.st_mtime_ns, p.read_bytes()


def test_patch_shows_old_and_new_of_every_field_it_changes(tmp_path):
    src = corpus(PXE)
    out = tmp_path / "out.rom"
    r = romlab("patch", src, "--device", "10d3", "--class", "020000", "--pnp-product", "Lab", "--fix-checksums",
               "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc)[0] == "schema" and doc["schema"] == "romlab.patch/2"
    assert doc["input"] == str(src) and doc["output"] == str(out) and doc["written"] is True
    # The checksum byte, worked out by hand: the device ID's low byte goes 0x0e -> 0xd3 twice (PCIR and
    # list), "iPXE\0" becomes "Lab\0\0"; byte 6 takes up the difference so that the image sums to 0.
    delta = 2 * (0xD3 - 0x0E) + sum(b"Lab\0") - sum(b"iPXE")
    new6 = (0x14 - delta) & 0xFF
    assert doc["changes"] == [
        {"image": 0, "field": "PCIR device", "old": "100e", "new": "10d3"},
        {"image": 0, "field": "device list", "old": ["100e"], "new": ["10d3"]},
        {"image": 0, "field": "$PnP product", "old": "'iPXE'", "new": "'Lab'"},
        {"image": 0, "field": "legacy image checksum byte", "old": "14", "new": f"{new6:02x}", "offset": 6},
    ]   # the class was 020000 already: not a change
    data = out.read_bytes()
    assert data[6] == new6 and sum(data[:PXE_LEN]) % 256 == 0
    assert data[0x22:0x24] == b"\xd3\x10" and data[0x4DB:0x4DF] == b"\xd3\x10\x00\x00"
    # The same as text, one line per field.
    r = romlab("patch", src, "--device", "10d3", "--fix-checksums", "--dry-run")
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 0 and lines[0] == "image 0 PCIR device: 100e -> 10d3"
    assert lines[1] == "image 0 device list: 100e -> 10d3"
    assert lines[2] == f"image 0 legacy image checksum byte at 0x6: 14 -> {(0x14 - 2 * 0xC5) & 0xFF:02x}"


def test_patch_last_flag_shows_set_and_clear(tmp_path):
    r = romlab("patch", corpus(EFI), "--image", "0", "--last", "--fix-checksums", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[:2] == ["image 0 PCIR last-image flag: clear -> set",
                                                  "image 0 legacy image checksum byte at 0x6: 94 -> 14"]


def test_noop_in_place_writes_nothing_and_keeps_no_backup(tmp_path):
    rom = tmp_path / "rom.rom"
    rom.write_bytes(corpus(PXE).read_bytes())
    before = stamp(rom)
    for edit in (["--device", "100e"], ["--vendor", "8086", "--class", "020000"], ["--fix-checksums"],
                 ["--pnp-product", "iPXE", "--fix-checksums"]):
        r = romlab("patch", rom, "--in-place", *edit)
        assert r.returncode == 0, r.stderr
        assert "nothing to change" in r.stdout.decode() and "not rewritten" in r.stdout.decode()
        assert stamp(rom) == before, edit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rom.rom"]
    # A real change still keeps its backup.
    r = romlab("patch", rom, "--in-place", "--vendor", "8087", "--fix-checksums")
    assert r.returncode == 0 and (tmp_path / "rom.rom.bak").read_bytes() == before[2]


def test_noop_to_a_new_output_writes_nothing(tmp_path):
    out = tmp_path / "out.rom"
    r = romlab("patch", corpus(PXE), "--device", "100e", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changes"] == [] and doc["written"] is False and not out.exists()
    r = romlab("patch", corpus(PXE), "--device", "100e", "-o", out)
    assert r.returncode == 0 and f"{out} not written" in r.stdout.decode() and not out.exists()


def test_dry_run_writes_nothing(tmp_path):
    rom = tmp_path / "rom.rom"
    rom.write_bytes(corpus(EFI).read_bytes())
    before = stamp(rom)
    out = tmp_path / "out.rom"
    r = romlab("patch", rom, "--in-place", "--vendor", "8087", "--fix-checksums", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and doc["written"] is False and doc["backup"] is None
    assert {"image": 0, "field": "PCIR vendor", "old": "8086", "new": "8087"} in doc["changes"]
    assert {"image": 1, "field": "PCIR vendor", "old": "8086", "new": "8087"} in doc["changes"]
    assert romlab("patch", rom, "-o", out, "--device", "10d3", "--dry-run").returncode == 0
    assert romlab("extract", rom, "--image", "0", "-o", out, "--dry-run").returncode == 0
    assert romlab("split", rom, "-o", tmp_path / "parts", "--dry-run").returncode == 0
    assert romlab("combine", rom, rom, "-o", out, "--dry-run").returncode == 0
    assert stamp(rom) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rom.rom"]


def test_extract_of_a_first_image_sets_its_last_flag(tmp_path):
    out = tmp_path / "legacy.rom"
    r = romlab("extract", corpus(EFI), "--image", "0", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changes"] == [
        {"image": 0, "field": "PCIR last-image flag", "old": False, "new": True},
        {"image": 0, "field": "legacy image checksum byte", "old": "94", "new": "14", "offset": 6},
    ]
    assert out.read_bytes() == corpus(PXE).read_bytes()
    assert romlab("lint", out).returncode == 0
    # --keep-flags: the bytes as they are in the ROM, which lint then flags.
    kept = tmp_path / "kept.rom"
    r = romlab("extract", corpus(EFI), "--image", "0", "-o", kept, "--keep-flags")
    assert r.returncode == 0 and r.stdout.decode().startswith("wrote 75264 bytes")
    assert kept.read_bytes() == corpus(EFI).read_bytes()[:PXE_LEN]
    lint = romlab("lint", kept)
    assert lint.returncode == 1 and b"[last-flag-missing]" in lint.stdout
    # The last image needs nothing.
    r = romlab("extract", corpus(EFI), "--image", "1", "-o", tmp_path / "efi.rom", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["changes"] == []
    assert (tmp_path / "efi.rom").read_bytes() == corpus(EFI).read_bytes()[PXE_LEN:]


def test_split_sets_flags_and_combine_gives_the_rom_back(tmp_path):
    parts = tmp_path / "parts"
    r = romlab("split", corpus(EFI), "-o", parts)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[0] == "image 0 PCIR last-image flag: clear -> set"
    assert (parts / "image-0-legacy.rom").read_bytes() == corpus(PXE).read_bytes()
    out = tmp_path / "again.rom"
    r = romlab("combine", parts / "image-0-legacy.rom", parts / "image-1-efi.rom", "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[:2] == ["image 0 PCIR last-image flag: set -> clear",
                                                  "image 0 legacy image checksum byte at 0x6: 14 -> 94"]
    assert out.read_bytes() == corpus(EFI).read_bytes()
    kept = tmp_path / "kept"
    assert romlab("split", corpus(EFI), "-o", kept, "--keep-flags").returncode == 0
    assert (kept / "image-0-legacy.rom").read_bytes() == corpus(EFI).read_bytes()[:PXE_LEN]


def test_efi_rom_class_follows_the_rom_it_joins_and_combine_lints_clean(tmp_path):
    drv = tmp_path / "e1000.efi"
    assert romlab("extract", corpus(EFI), "--image", "1", "--efi-driver", "-o", drv).returncode == 0
    efi = tmp_path / "efi.rom"
    r = romlab("efi-rom", drv, "--vendor", "8086", "--device", "100e", "-o", efi)
    assert r.returncode == 0, r.stderr
    assert "class 020000 (the default, Ethernet" in r.stdout.decode()
    pcir = struct.unpack_from("<H", efi.read_bytes(), 0x18)[0]
    assert efi.read_bytes()[pcir + 0x0D:pcir + 0x10] == b"\x00\x00\x02"   # prog-if, subclass, base class
    both = tmp_path / "both.rom"
    assert romlab("combine", corpus(PXE), efi, "-o", both).returncode == 0
    lint = romlab("lint", both)
    assert lint.returncode == 0 and b"class-mismatch" not in lint.stdout, lint.stdout
    # A ROM of another class (028000, "other network controller"): --like takes its class and IDs.
    other = tmp_path / "other.rom"
    assert romlab("patch", corpus(PXE), "--class", "028000", "--fix-checksums", "-o", other).returncode == 0
    efi2 = tmp_path / "efi2.rom"
    r = romlab("efi-rom", drv, "--like", other, "-o", efi2, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["class"] == "028000" and doc["class_from"] == "like"
    d = efi2.read_bytes()
    assert d[0x1C + 4:0x1C + 8] == b"\x86\x80\x0e\x10" and d[0x1C + 0x0D:0x1C + 0x10] == b"\x00\x80\x02"
    both2 = tmp_path / "both2.rom"
    assert romlab("combine", other, efi2, "-o", both2).returncode == 0
    lint = romlab("lint", "--strict", both2)
    assert lint.returncode == 0 and b"class-mismatch" not in lint.stdout, lint.stdout


def test_add_device_on_a_debian_rom_offers_a_way_that_works(tmp_path):
    out = tmp_path / "out.rom"
    err = one_line_error(romlab("patch", corpus(PXE), "--add-device", "10d3", "--class", "020000",
                                "--pnp-product", "Lab", "--fix-checksums", "-o", out))
    assert "cannot grow" in err and "16-bit" in err and "--device 10d3" in err
    assert not out.exists()
    # The way out it names works, and lints clean.
    r = romlab("patch", corpus(PXE), "--device", "10d3", "--class", "020000", "--pnp-product", "Lab",
               "--fix-checksums", "-o", out)
    assert r.returncode == 0, r.stderr
    assert romlab("lint", "--strict", out).returncode == 0


def test_help_says_where_a_device_list_can_grow():
    r = romlab("patch", "--help")
    text = " ".join(r.stdout.decode().split())
    assert "64 KiB" in text and "iPXE" in text and "grows if it must" not in text


@pytest.fixture
def chip_with_pxe(tmp_path):
    """A 128 KiB flash image that already holds pxe-e1000.rom at 0, 0xFF after it."""
    chip = tmp_path / "chip.bin"
    chip.write_bytes(corpus(PXE).read_bytes() + b"\xff" * (131072 - PXE_LEN))
    return chip


def test_flash_of_what_the_chip_holds_saves_no_backup(chip_with_pxe, backups):
    before = stamp(chip_with_pxe)
    r = romlab("flash", PXE, "--programmer", f"file:{chip_with_pxe}", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changed"] is False and doc["backup"] is None
    r = romlab("flash", PXE, "--programmer", f"file:{chip_with_pxe}")
    assert r.returncode == 0 and "no change needed" in r.stdout.decode() and "no backup" in r.stdout.decode()
    assert not backups.exists() or list(backups.iterdir()) == []
    assert stamp(chip_with_pxe)[2] == before[2]
    # A real change saves one backup (the .bin and its .json record).
    r = romlab("flash", EFI.with_name("pxe-e1000e.rom"), "--programmer", f"file:{chip_with_pxe}")
    assert r.returncode == 0, r.stderr
    assert sorted(p.suffix for p in backups.iterdir()) == [".bin", ".json"]


def test_a_grown_image_shows_its_sizes_and_the_moved_list(tmp_path):
    from test_edit import _tiny_rev3_rom

    src = tmp_path / "tiny.rom"   # 512 bytes: PCIR rev 3 at 0x20, list (100e) at 0x40, no padding anywhere
    src.write_bytes(_tiny_rev3_rom())
    r = romlab("patch", src, "--add-device", "10d3", "--add-device", "1004", "--fix-checksums", "--checksum-byte",
               "last", "-o", tmp_path / "grown.rom", "--json")
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "grown.rom").read_bytes()
    # The list moves to the appended block at 0x200: offset 0x200 - 0x20 = 0x1e0 from the PCIR; the
    # checksum goes into the new last byte (0x3ff), which was appended as 0.
    assert json.loads(r.stdout)["changes"] == [
        {"image": 0, "field": "size byte (blocks)", "old": 1, "new": 2},
        {"image": 0, "field": "PCIR device list offset", "old": "0020", "new": "01e0"},
        {"image": 0, "field": "PCIR image length (blocks)", "old": 1, "new": 2},
        {"image": 0, "field": "device list", "old": ["100e"], "new": ["100e", "10d3", "1004"]},
        {"image": 0, "field": "legacy image checksum byte", "old": None, "new": f"{data[0x3FF]:02x}",
         "offset": 0x3FF},
    ]
    assert data[0x3FF] != 0 and sum(data) % 256 == 0
