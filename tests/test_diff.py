"""romlab diff: differences worked out by hand from `cmp -l` of Debian's ROMs.

Fields are named and spelled as the edit verbs report them (romtools.changes).
cmp -l pxe-e1000.rom <(head -c 75264 efi-e1000.rom):  byte 0x6 0x14/0x94 (the checksum byte),
byte 0x31 0x80/0x00 (PCIR indicator: efi-e1000.rom's legacy image is not the last image).
cmp -l pxe-e1000.rom pxe-e1000e.rom, up to the packed .textdata at 0x12c0: 0x6 0x14/0x9c,
0x22 0x0e/0xd3 (PCIR device 100e/10d3), 0xa1 0xf2/0xb4 (iPXE header checksum), 0xa4-0xa7
(build ID 732c62a4/9113152a), 0x4db 0x0e/0xd3 (device list).
"""
from __future__ import annotations

import json
import lzma
import struct

from conftest import IPXE_QEMU, corpus, run_romlab

PXE = IPXE_QEMU / "pxe-e1000.rom"


def diff_json(a, b):
    r = run_romlab("diff", "--json", a, b)
    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.diff/3" and doc["inputs"] == [str(a), str(b)]
    return r.returncode, {d["field"]: (d["a"], d["b"]) for d in doc["differences"]}, doc


def test_pxe_against_efi_roms_legacy_image(tmp_path):
    legacy = tmp_path / "efi-e1000-image0.rom"
    legacy.write_bytes(corpus(IPXE_QEMU / "efi-e1000.rom").read_bytes()[:75264])
    status, fields, doc = diff_json(corpus(PXE), legacy)
    assert status == 1 and doc["equal"] is False
    assert fields == {
        "image 0 legacy image checksum byte": ("14", "94"),
        "image 0 PCIR last-image flag": (True, False),  # indicator 0x80 -> 0x00, its other bits 0
        "stop": ("last-image", "no-last-image"),  # the walk: no image of B carries the last-image flag
    }
    text = run_romlab("diff", corpus(PXE), legacy)
    assert text.returncode == 1
    lines = text.stdout.decode().splitlines()
    assert "image 0 PCIR last-image flag: set -> clear" in lines and lines[-1].endswith("3 difference(s)")


def test_a_rom_against_itself():
    for rom in (PXE, IPXE_QEMU / "efi-e1000.rom"):
        status, fields, doc = diff_json(corpus(rom), corpus(rom))
        assert status == 0 and fields == {} and doc["equal"] is True
    r = run_romlab("diff", corpus(PXE), corpus(PXE))
    assert r.returncode == 0 and r.stdout.decode().strip().endswith(": equal")


def test_e1000_against_e1000e():
    e1000e = corpus(IPXE_QEMU / "pxe-e1000e.rom")
    raw = e1000e.read_bytes()
    length = struct.unpack_from("<I", raw, 0x12C0)[0]
    textdata = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "dict_size": 1 << 22}]).decompress(
        raw[0x12C0 + 4:0x12C0 + length])
    assert b"\x00808610d3.rom\x00" in textdata  # the build name version.c keeps
    status, fields, _ = diff_json(corpus(PXE), e1000e)
    assert status == 1
    assert fields == {
        "image 0 legacy image checksum byte": ("14", "9c"),
        "image 0 PCIR device": ("100e", "10d3"),
        "image 0 device list": (["100e"], ["10d3"]),
        "image 0 iPXE header checksum byte": ("f2", "b4"),
        "image 0 iPXE build ID": ("732c62a4", "9113152a"),
        "image 0 iPXE build": ("82540em.rom", "808610d3.rom"),
    }


def test_drivers_features_and_images_that_differ():
    status, fields, doc = diff_json(corpus(PXE), corpus(IPXE_QEMU / "efi-e1000.rom"))
    assert status == 1
    assert fields["images"] == (1, 2)
    assert fields["image 0 PCIR last-image flag"] == (True, False)
    assert fields["image 1 kind"] == (None, "EFI")
    assert fields["image 1 iPXE build"] == (None, "82540em.efidrv")
    status, fields, doc = diff_json(corpus(IPXE_QEMU / "pxe-e1000.rom"), corpus(IPXE_QEMU / "pxe-rtl8139.rom"))
    d = {x["field"]: x for x in doc["differences"]}
    assert d["image 0 iPXE drivers"]["only_a"] == ["dh8900cc"] and d["image 0 iPXE drivers"]["only_b"] == ["clone8169"]
    assert "image 0 iPXE driver dh8900cc IDs" in d and d["image 0 iPXE driver dh8900cc IDs"]["b"] is None
    status, fields, doc = diff_json(corpus("/usr/lib/ipxe/undionly.kpxe"), corpus("/usr/lib/ipxe/ipxe.pxe"))
    assert status == 1 and fields["iPXE build"] == ("undionly.kpxe", "ipxe.pxe")
    features = {x["field"]: x for x in doc["differences"]}["iPXE features"]
    assert features["only_a"] == [] and features["only_b"] == ["SRP/1"]


def test_unusable_input(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not a rom\n" * 50)
    for a, b in ((corpus(PXE), tmp_path / "missing.rom"), (text, corpus(PXE))):
        r = run_romlab("diff", a, b)
        assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and r.stdout == b""


def tiny_rom(device_list: list[int] | None) -> bytes:
    """A 512-byte legacy image built by hand (PCIR rev 3 at 0x20, 8086:100e), with a device list at
    0x40 (its entries, then the 0000 terminator) or none (a zero pointer)."""
    b = bytearray(b"\xcc" * 512)
    b[0:6] = b"\x55\xaa\x01\xcb\x00\x00"
    b[0x06:0x1A] = bytes(0x14)
    b[0x18:0x1C] = struct.pack("<HH", 0x20, 0)
    b[0x20:0x3C] = b"PCIR" + struct.pack("<HHHHB", 0x8086, 0x100E, 0x20 if device_list is not None else 0, 0x1C, 3) + \
        bytes([0, 0, 2]) + struct.pack("<HHBBHHH", 1, 1, 0, 0x80, 1, 0, 0)
    if device_list is not None:
        b[0x40:0x42 + 2 * len(device_list)] = struct.pack(f"<{len(device_list) + 1}H", *device_list, 0)
    b[6] = (-sum(b)) & 0xFF
    return bytes(b)


def test_lists_differ_by_count(tmp_path):
    """[100e, 100e] against [100e]: the same members, not the same list (it said "another order")."""
    a, b = tmp_path / "a.rom", tmp_path / "b.rom"
    a.write_bytes(tiny_rom([0x100E, 0x100E]))
    b.write_bytes(tiny_rom([0x100E]))
    r = run_romlab("diff", a, b)
    assert r.returncode == 1 and "image 0 device list: only in A: 100e\n" in r.stdout.decode()
    status, fields, doc = diff_json(a, b)
    d = {x["field"]: x for x in doc["differences"]}["image 0 device list"]
    assert (d["a"], d["b"], d["only_a"], d["only_b"]) == (["100e", "100e"], ["100e"], ["100e"], [])
    a.write_bytes(tiny_rom([0x100E, 0x100E, 0x10D3]))
    b.write_bytes(tiny_rom([0x10D3, 0x100E, 0x100E]))
    assert "image 0 device list: same entries, another order\n" in run_romlab("diff", a, b).stdout.decode()


def test_empty_list_against_no_list(tmp_path):
    """A device list with no entries against none at all: said as such, not as a reordering."""
    a, b = tmp_path / "a.rom", tmp_path / "b.rom"
    a.write_bytes(tiny_rom([]))
    b.write_bytes(tiny_rom(None))
    r = run_romlab("diff", a, b)
    assert r.returncode == 1 and "image 0 device list: (empty) -> none\n" in r.stdout.decode()


def test_standard_input(tmp_path):
    """- reads A (or B) from standard input, as the other read verbs do."""
    rom = corpus(PXE).read_bytes()
    r = run_romlab("diff", "--json", "-", corpus(PXE), input=rom)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["equal"] and doc["inputs"] == ["<stdin>", str(corpus(PXE))]
    r = run_romlab("diff", corpus(PXE), "-", input=rom[:0x2000])
    assert r.returncode == 1 and r.stdout.decode().splitlines()[-1].startswith(f"{corpus(PXE)} and <stdin>: "), r.stdout
    r = run_romlab("diff", "-", "-", input=rom)
    assert r.returncode == 2 and b"more than once" in r.stderr
