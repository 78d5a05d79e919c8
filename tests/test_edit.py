"""patch, split, extract, combine, efi-rom and pad on Debian's ROMs."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab

EFI_ROMS = sorted(str(p) for p in IPXE_QEMU.glob("efi-*.rom"))


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.mark.parametrize("rom", EFI_ROMS, ids=lambda p: Path(p).name)
def test_round_trip_byte_for_byte(tmp_path, rom):
    rom = corpus(rom)
    parts = tmp_path / "parts"
    r = run_romlab("split", rom, "-o", parts, "--json")
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)["files"]
    assert [f["image"] for f in files] == [0, 1]
    assert Path(files[1]["path"]).read_bytes() == rom.read_bytes()[files[1]["offset"]:]
    drv = tmp_path / "driver.efi"
    r = run_romlab("extract", rom, "--image", "1", "--efi-driver", "-o", drv, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)["driver"]
    assert info["machine"] == "8664" and info["efi_subsystem"] == "000b" and info["signed"] is False
    assert drv.read_bytes()[:2] == b"MZ"
    # vendor and device from the ROM's own PCIR (image 1 PCIR at +0x1c: vendor at +0x20, device at +0x22)
    img1 = rom.read_bytes()[files[1]["offset"]:]
    vendor, device = struct.unpack_from("<HH", img1, 0x20)
    rebuilt = tmp_path / "efi.rom"
    r = run_romlab("efi-rom", drv, "--vendor", f"{vendor:04x}", "--device", f"{device:04x}", "--layout", "ipxe",
                   "-o", rebuilt)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "combined.rom"
    pxe = corpus(str(rom).replace("efi-", "pxe-"))
    r = run_romlab("combine", pxe, rebuilt, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == rom.read_bytes()


def test_retarget_pxe_e1000_to_82574(tmp_path):
    src = corpus(IPXE_QEMU / "pxe-e1000.rom")
    before = sha(src)
    out = tmp_path / "e1000e.rom"
    r = run_romlab("patch", src, "--device", "0x10d3", "--fix-checksums", "-o", out)
    assert r.returncode == 0, r.stderr
    assert sha(src) == before
    data = out.read_bytes()
    assert data[0x22:0x24] == b"\xd3\x10"  # PCIR (0x1c) + 6
    assert sum(data[:75264]) % 256 == 0
    assert run_romlab("lint", out).returncode == 0
    # The list had no room to grow, so the new ID took the old one's place (list at 0x1c + 0x4bf).
    assert data[0x4DB:0x4DF] == b"\xd3\x10\x00\x00"


def _tiny_rev3_rom() -> bytes:
    """A 512-byte legacy image built by hand: PCIR rev 3 at 0x20, device list at 0x40, no padding anywhere."""
    b = bytearray(b"\xcc" * 512)
    b[0:3] = b"\x55\xaa\x01"
    b[3:6] = b"\xcb\x00\x00"  # retf
    b[6] = 0
    b[0x07:0x1A] = bytes(0x13)
    b[0x18:0x1A] = struct.pack("<H", 0x20)
    b[0x1A:0x1C] = b"\0\0"
    b[0x20:0x3C] = b"PCIR" + struct.pack("<HHHHB", 0x8086, 0x100E, 0x20, 0x1C, 3) + bytes([0, 0, 2]) + \
        struct.pack("<HHBBHHH", 1, 1, 0, 0x80, 1, 0, 0)
    b[0x40:0x44] = struct.pack("<HH", 0x100E, 0)
    b[6] = (-sum(b)) & 0xFF
    return bytes(b)


def test_device_list_grows_the_image(tmp_path):
    src = tmp_path / "tiny.rom"
    src.write_bytes(_tiny_rev3_rom())
    assert run_romlab("lint", src).returncode == 0
    out = tmp_path / "grown.rom"
    r = run_romlab("patch", src, "--add-device", "10d3", "--add-device", "1004", "--fix-checksums", "-o", out)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert len(data) == 1024 and data[2] == 2
    assert struct.unpack_from("<H", data, 0x20 + 0x10)[0] == 2  # ImageLength
    list_at = 0x20 + struct.unpack_from("<H", data, 0x28)[0]
    assert list_at >= 512
    assert struct.unpack_from("<4H", data, list_at) == (0x100E, 0x10D3, 0x1004, 0)
    assert run_romlab("lint", "--strict", out).returncode == 0
    r = run_romlab("patch", out, "--remove-device", "10d3", "--fix-checksums", "-o", tmp_path / "less.rom")
    assert r.returncode == 0
    d2 = (tmp_path / "less.rom").read_bytes()
    assert struct.unpack_from("<3H", d2, list_at) == (0x100E, 0x1004, 0)


def test_patch_strings_class_and_last(tmp_path):
    src = corpus(IPXE_QEMU / "efi-e1000.rom")
    out = tmp_path / "p.rom"
    r = run_romlab("patch", src, "--image", "0", "--pnp-product", "Lab", "--pnp-manufacturer", "romlab",
                   "--class", "020080", "--fix-checksums", "-o", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_romlab("inspect", "--json", out).stdout)
    img = doc["images"][0]
    assert img["pnp"]["product"] == "Lab" and img["pnp"]["manufacturer"] == "romlab"
    assert img["pcir"]["class"] == "020080" and all(c["valid"] for c in img["checksums"])
    r = run_romlab("patch", src, "--image", "1", "--not-last", "--fix-checksums", "-o", out, "--overwrite")
    assert r.returncode == 0
    assert out.read_bytes()[0x12631] == 0x00 and run_romlab("lint", out).returncode == 1
    r = run_romlab("patch", src, "--last", "--fix-checksums", "-o", out)
    assert r.returncode == 2 and b"needs --image" in r.stderr


def test_checksum_byte_policies(tmp_path):
    src = corpus(IPXE_QEMU / "pxe-rtl8139.rom")
    data = src.read_bytes()
    n = data[2] * 512
    for policy, changed_at in (("header", 6), ("last", n - 1)):
        out = tmp_path / f"{policy}.rom"
        r = run_romlab("patch", src, "--vendor", "10ec", "--device", "8138", "--fix-checksums", "--checksum-byte",
                       policy, "-o", out)
        assert r.returncode == 0, r.stderr
        new = out.read_bytes()
        assert sum(new[:n]) % 256 == 0
        diffs = {i for i in range(n) if new[i] != data[i]}
        assert changed_at in diffs
        assert diffs <= {changed_at, 0x22, 0x23} | set(range(0x1C + 0x4BF, 0x1C + 0x4BF + 4))
    out = tmp_path / "none.rom"
    r = run_romlab("patch", src, "--device", "8138", "--checksum-byte", "none", "--fix-checksums", "-o", out)
    assert r.returncode == 0 and b"left invalid" in r.stderr
    assert run_romlab("lint", out).returncode == 1


def test_in_place_keeps_a_backup(tmp_path):
    p = tmp_path / "rom.rom"
    orig = corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()
    p.write_bytes(orig)
    r = run_romlab("patch", p, "--in-place", "--vendor", "8087", "--fix-checksums")
    assert r.returncode == 0
    assert (tmp_path / "rom.rom.bak").read_bytes() == orig
    assert p.read_bytes()[0x20:0x22] == b"\x87\x80"


def test_pad(tmp_path):
    src = corpus(IPXE_QEMU / "pxe-e1000.rom")
    out = tmp_path / "padded.rom"
    assert run_romlab("pad", src, "--to", "flash", "-o", out).returncode == 0
    data = out.read_bytes()
    assert len(data) == 131072 and data[:75264] == src.read_bytes() and set(data[75264:]) == {0xFF}
    assert run_romlab("inspect", out).returncode == 0
    assert run_romlab("pad", src, "--to", "256K", "-o", out, "--overwrite").returncode == 0 and len(out.read_bytes()) == 262144


def test_edk2_layout_device_list_and_compression_flag(tmp_path):
    drv = tmp_path / "d.efi"
    assert run_romlab("extract", corpus(IPXE_QEMU / "efi-rtl8139.rom"), "--image", "1", "--efi-driver",
                      "-o", drv).returncode == 0
    out = tmp_path / "multi.rom"
    r = run_romlab("efi-rom", drv, "--vendor", "10ec", "--device", "8139", "--device", "8138", "-o", out)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    # EfiRom layout: PCIR rev 3 at 0x1c, list right after it at 0x38, 0xFF up to the PE.
    assert data[0x1C:0x20] == b"PCIR" and data[0x1C + 0x0C] == 3
    assert struct.unpack_from("<H", data, 0x1C + 8)[0] == 0x1C
    assert struct.unpack_from("<3H", data, 0x38) == (0x8139, 0x8138, 0)
    pe_at = struct.unpack_from("<H", data, 0x16)[0]
    assert data[pe_at:pe_at + 2] == b"MZ" and set(data[0x3E:pe_at]) <= {0xFF}
    assert data[pe_at:pe_at + len(drv.read_bytes())] == drv.read_bytes()
    assert run_romlab("lint", "--strict", out).returncode == 0


BAD = [
    ("patch non-ROM", ["patch", "/usr/lib/ipxe/undionly.kpxe", "--vendor", "8086", "-o", "{out}"], "not an option ROM"),
    ("extract out of range", ["extract", "{efi}", "--image", "5", "-o", "{out}"], "image 5 does not exist"),
    ("list cannot grow", ["patch", "{pxe}", "--add-device", "1234", "-o", "{out}"], "cannot grow"),
    ("PE not a driver", ["efi-rom", "/usr/lib/ipxe/ipxe.efi", "--vendor", "8086", "--device", "100e", "-o", "{out}"],
     "EFI application"),
    ("ROM given as driver", ["efi-rom", "{pxe}", "--vendor", "8086", "--device", "100e", "-o", "{out}"],
     "not a PE/COFF image"),
    ("size too small", ["pad", "{pxe}", "--to", "32K", "-o", "{out}"], "does not fit"),
    ("virtualbox limit", ["pad", "{pxe}", "--to", "virtualbox", "-o", "{out}"], "does not fit"),
    ("efi-driver of legacy", ["extract", "{pxe}", "--image", "0", "--efi-driver", "-o", "{out}"], "not an EFI image"),
    ("output is input", ["patch", "{pxe_copy}", "--vendor", "8087", "-o", "{pxe_copy}"], "is an input file"),
    ("split truncated", ["split", "{trunc}", "-o", "{outdir}"], "does not walk cleanly"),
    ("nothing to change", ["patch", "{pxe}", "-o", "{out}"], "nothing to change"),
]


@pytest.mark.parametrize("name,argv,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_and_nothing_changes(tmp_path, name, argv, words):
    pxe_copy = tmp_path / "copy.rom"
    pxe_copy.write_bytes(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())
    trunc = tmp_path / "trunc.rom"
    trunc.write_bytes(corpus(IPXE_QEMU / "efi-e1000.rom").read_bytes()[:100000])
    subst = {"out": str(tmp_path / "out.rom"), "outdir": str(tmp_path / "dir"), "efi": str(IPXE_QEMU / "efi-e1000.rom"),
             "pxe": str(IPXE_QEMU / "pxe-e1000.rom"), "pxe_copy": str(pxe_copy), "trunc": str(trunc)}
    args = [a.format(**subst) for a in argv]
    inputs = [a for a in args if Path(a).is_file()]
    before = {a: sha(a) for a in inputs}
    r = run_romlab(*args)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {a: sha(a) for a in inputs} == before
    assert not (tmp_path / "out.rom").exists() and not (tmp_path / "dir").exists()


def test_signed_driver_certificate_is_reported(tmp_path):
    drv = tmp_path / "d.efi"
    assert run_romlab("extract", corpus(IPXE_QEMU / "efi-e1000.rom"), "--image", "1", "--efi-driver",
                      "-o", drv).returncode == 0
    pe = bytearray(drv.read_bytes())
    lfanew = struct.unpack_from("<I", pe, 0x3C)[0]
    opt = lfanew + 24
    assert struct.unpack_from("<H", pe, opt)[0] == 0x20B  # PE32+
    sec_dir = opt + 112 + 4 * 8  # data directory 4 (security) in a PE32+ optional header
    cert_at = len(pe) + (-len(pe) % 8)
    cert = struct.pack("<IHH", 8 + 24, 0x0200, 0x0002) + bytes(24)
    pe += bytes(cert_at - len(pe)) + cert
    struct.pack_into("<II", pe, sec_dir, cert_at, len(cert))
    drv.write_bytes(bytes(pe))
    rom = tmp_path / "signed.rom"
    assert run_romlab("efi-rom", drv, "--vendor", "8086", "--device", "100e", "-o", rom).returncode == 0
    r = run_romlab("extract", rom, "--image", "0", "--efi-driver", "-o", tmp_path / "back.efi", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["driver"]
    assert d["signed"] is True and d["certificates"][0]["type"] == "0002" and d["certificates"][0]["length"] == 32
    assert (tmp_path / "back.efi").read_bytes() == bytes(pe)


def test_split_images_combine_back(tmp_path):
    src = corpus(IPXE_QEMU / "efi-virtio.rom")
    assert run_romlab("split", src, "-o", tmp_path).returncode == 0
    out = tmp_path / "again.rom"
    r = run_romlab("combine", tmp_path / "image-0-legacy.rom", tmp_path / "image-1-efi.rom", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == src.read_bytes()
