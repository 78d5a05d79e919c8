"""The iPXE payload of every iPXE file Debian ships, and what romlab makes of a broken one.

Expected values come from iPXE's source at Debian's commit 36a4c85 (src/drivers/net/intel.c,
include/ipxe/features.h, src/util/zbin.c) and from hex dumps of the files, never from romlab.
"""
from __future__ import annotations

import json
import lzma
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab

IPXE = Path("/usr/lib/ipxe")
NICS = ("e1000", "e1000e", "eepro100", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
BOOT_FILES = ("undionly.kpxe", "ipxe.pxe", "ipxe.lkrn", "snponly.efi")

# src/drivers/net/intel.c at 36a4c85, its intel_nics[] table in order: PCI_ROM(vendor, device, name, ...).
INTEL_NICS = [
    (0x0438, "dh8900cc"), (0x043a, "dh8900cc-f"), (0x043c, "dh8900cc-b"), (0x0440, "dh8900cc-s"),
    (0x1000, "82542-f"), (0x1001, "82543gc-f"), (0x1004, "82543gc"), (0x1008, "82544ei"),
    (0x1009, "82544ei-f"), (0x100c, "82544gc"), (0x100d, "82544gc-l"), (0x100e, "82540em"),
    (0x100f, "82545em"), (0x1010, "82546eb"), (0x1011, "82545em-f"), (0x1012, "82546eb-f"),
    (0x1013, "82541ei"), (0x1014, "82541er"), (0x1015, "82540em-l"), (0x1016, "82540ep-m"),
    (0x1017, "82540ep"), (0x1018, "82541ei"), (0x1019, "82547ei"), (0x101a, "82547ei-m"),
    (0x101d, "82546eb"), (0x101e, "82540ep-m"), (0x1026, "82545gm"), (0x1027, "82545gm-1"),
    (0x1028, "82545gm-2"), (0x1049, "82566mm"), (0x104a, "82566dm"), (0x104b, "82566dc"),
    (0x104c, "82562v"), (0x104d, "82566mc"), (0x105e, "82571eb"), (0x105f, "82571eb-1"),
    (0x1060, "82571eb-2"), (0x1075, "82547gi"), (0x1076, "82541gi"), (0x1077, "82541gi-1"),
    (0x1078, "82541er"), (0x1079, "82546gb"), (0x107a, "82546gb-1"), (0x107b, "82546gb-2"),
    (0x107c, "82541pi"), (0x107d, "82572ei"), (0x107e, "82572ei-f"), (0x107f, "82572ei"),
    (0x108a, "82546gb-3"), (0x108b, "82573v"), (0x108c, "82573e"), (0x1096, "80003es2lan"),
    (0x1098, "80003es2lan-s"), (0x1099, "82546gb-4"), (0x109a, "82573l"), (0x10a4, "82571eb"),
    (0x10a5, "82571eb"), (0x10a7, "82575eb"), (0x10a9, "82575eb"), (0x10b5, "82546gb"),
    (0x10b9, "82572ei"), (0x10ba, "80003es2lan"), (0x10bb, "80003es2lan"), (0x10bc, "82571eb"),
    (0x10bd, "82566dm-2"), (0x10bf, "82567lf"), (0x10c0, "82562v-2"), (0x10c2, "82562g-2"),
    (0x10c3, "82562gt-2"), (0x10c4, "82562gt"), (0x10c5, "82562g"), (0x10c9, "82576"),
    (0x10cb, "82567v"), (0x10cc, "82567lm-2"), (0x10cd, "82567lf-2"), (0x10ce, "82567v-2"),
    (0x10d3, "82574l"), (0x10d5, "82571pt"), (0x10d6, "82575gb"), (0x10d9, "82571eb-d"),
    (0x10da, "82571eb-q"), (0x10de, "82567lm-3"), (0x10df, "82567lf-3"), (0x10e5, "82567lm-4"),
    (0x10e6, "82576"), (0x10e7, "82576-2"), (0x10e8, "82576-3"), (0x10ea, "82577lm"),
    (0x10eb, "82577lc"), (0x10ef, "82578dm"), (0x10f0, "82578dc"), (0x10f5, "82567lm"),
    (0x10f6, "82574l"), (0x1501, "82567v-3"), (0x1502, "82579lm"), (0x1503, "82579v"),
    (0x150a, "82576ns"), (0x150c, "82583v"), (0x150d, "82576-4"), (0x150e, "82580"),
    (0x150f, "82580-f"), (0x1510, "82580-b"), (0x1511, "82580-s"), (0x1516, "82580-2"),
    (0x1518, "82576ns"), (0x1521, "i350"), (0x1522, "i350-f"), (0x1523, "i350-b"),
    (0x1524, "i350-2"), (0x1525, "82567v-4"), (0x1526, "82576-5"), (0x1527, "82580-f2"),
    (0x1533, "i210"), (0x1539, "i211"), (0x153a, "i217lm"), (0x153b, "i217v"),
    (0x1559, "i218v"), (0x155a, "i218lm"), (0x156f, "i219lm"), (0x1570, "i219v"),
    (0x157b, "i210-2"), (0x15a0, "i218lm-2"), (0x15a1, "i218v-2"), (0x15a2, "i218lm-3"),
    (0x15a3, "i218v-3"), (0x15b7, "i219lm-2"), (0x15b8, "i219v-2"), (0x15b9, "i219lm-3"),
    (0x15d6, "i219v-5"), (0x15d7, "i219lm-4"), (0x15d8, "i219v-4"), (0x15e3, "i219lm-5"),
    (0x1f41, "i354"), (0x294c, "82566dc-2"), (0x2e6e, "cemedia"),
]
INTEL_IDS = [(f"8086:{d:04x}", n) for d, n in INTEL_NICS]

# The FEATURE() lines at 36a4c85 with their categories (features.h: 01 protocol, 02 image, 03 misc).
# The pcbios ROMs' dhcp_features bytes (xxd of the decoded .textdata) are
# eb 03 01 00 00 | 17 01 01 | 22 01 01 | 13 01 01 | 11 01 01 | 27 01 01 | 19 01 01 | 29 01 01 | 10 01 02 |
# 21 01 01 | 15 01 01 | 18 01 01 | 12 01 01: version 1.0.0, then DNS ELF HTTP iSCSI Menu MBOOT NFS PXEXT(2)
# PXE TFTP bzImage AoE.
CATEGORY = {"DNS": 1, "HTTP": 1, "iSCSI": 1, "NFS": 1, "TFTP": 1, "AoE": 1, "SRP": 1,
            "ELF": 2, "MBOOT": 2, "PXE": 2, "bzImage": 2, "EFI": 2, "Menu": 3, "PXEXT": 3}
PCBIOS_FEATURES = {"DNS", "ELF", "HTTP", "iSCSI", "Menu", "MBOOT", "NFS", "PXEXT", "PXE", "TFTP", "bzImage", "AoE"}

# QEMU's ne2k_pci is a Realtek 8029 (hw/net/ne2000-pci.c); Debian's ns8390.rom leaves its PCIR at 0000:0000.
NE2K = "10ec:8029"


def debian_version() -> str:
    return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ipxe-qemu"], capture_output=True,
                          text=True, check=True).stdout.strip()


def inspect(path, *extra):
    r = run_romlab("inspect", "--json", *extra, path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def drivers_of(payload) -> dict[str, list[tuple[str, str]]]:
    return {d["name"]: [(i["id"], i["name"]) for i in d["ids"]] for d in payload["drivers"]}


def all_ids(payload) -> set[str]:
    return {i["id"] for d in payload["drivers"] for i in d["ids"]}


# --- every file Debian ships ------------------------------------------------------------------

@pytest.mark.parametrize("nic", NICS)
def test_nic_roms(nic):
    version = debian_version()
    pxe = inspect(corpus(IPXE_QEMU / f"pxe-{nic}.rom"))
    efi = inspect(corpus(IPXE_QEMU / f"efi-{nic}.rom"))
    assert pxe["schema"] == "romlab.inspect/4"
    images = [pxe["images"][0], efi["images"][0], efi["images"][1]]
    for img in images:
        p = img["ipxe_payload"]
        assert p["version"] == version and p["version_option"] == "1.0.0"
        pcir = img["pcir"]
        wanted = f"{pcir['vendor']}:{pcir['device']}"
        if nic == "ne2k_pci":
            assert NE2K in all_ids(p)
        else:
            assert wanted in all_ids(p), (nic, img["index"])
        assert len(p["drivers"]) == 1  # Debian builds each NIC ROM with its one driver
    legacy, efi_legacy, efi_image = (img["ipxe_payload"] for img in images)
    assert legacy["arch"] == "i386" and efi_image["arch"] == "x86-64"
    assert legacy["build"].endswith(".rom") and efi_image["build"].endswith(".efidrv")
    assert legacy["build"][:-4] == efi_image["build"][:-7]
    assert legacy == efi_legacy  # efi-*.rom's legacy image is the same iPXE build
    assert [b["name"] for b in legacy["blocks"]] == [".text16.early", ".text16.late", ".data16", ".textdata"]
    assert {f["name"] for f in legacy["features"]} == PCBIOS_FEATURES
    # the option tags as the xxd above shows them, spelled as identifiers (two hex digits)
    assert {f["name"]: f["option"] for f in legacy["features"]} == {
        "DNS": "17", "ELF": "22", "HTTP": "13", "iSCSI": "11", "Menu": "27", "MBOOT": "19", "NFS": "29",
        "PXEXT": "10", "PXE": "21", "TFTP": "15", "bzImage": "18", "AoE": "12"}
    assert {f["name"] for f in efi_image["features"]} == {"DNS", "HTTP", "iSCSI", "NFS", "TFTP", "AoE", "EFI", "Menu"}
    for p in (legacy, efi_image):
        cats = [CATEGORY[f["name"]] for f in p["features"]]
        assert cats == sorted(cats)  # the features table is sorted by category, as iPXE prints it
        assert {f["name"]: f["version"] for f in p["features"]}.get("PXEXT", 2) == 2
        assert p["scripts"] == [] and p["notes"] == []


def test_ne2k_pcir_is_zero_and_lint_says_so():
    r = run_romlab("lint", "--json", corpus(IPXE_QEMU / "pxe-ne2k_pci.rom"))
    rules = {f["rule"] for f in json.loads(r.stdout)["findings"]}
    assert "pcir-ids-zero" in rules and "ipxe-no-driver" not in rules


@pytest.mark.parametrize("name", BOOT_FILES)
def test_boot_files(name):
    doc = inspect(corpus(IPXE / name))
    assert doc["images"] == [] and doc["stop"] is None
    p = doc["ipxe_payload"]
    assert p["version"] == debian_version()
    assert p["build"] == name  # Debian installs iPXE's bin/<name> under its own name
    ids = all_ids(p)
    if name in ("ipxe.pxe", "ipxe.lkrn"):
        assert drivers_of(p)["dh8900cc"] == INTEL_IDS
        assert {"1af4:1000", "10ec:8139", "15ad:07b0"} <= ids  # virtio-net, rtl8139, vmxnet3 among all drivers
        undi = [d for d in p["drivers"] if d["ids"][0]["id"] == "ffff:ffff"]
        assert undi and undi[0]["class"] == "02ffff" and undi[0]["class_mask"] == "ff0000"  # undipci, any NIC
        assert "SRP" in {f["name"] for f in p["features"]}
    else:
        assert ids == set()  # undionly drives the NIC through the firmware's UNDI; snponly through SNP
    if name.endswith(".efi"):
        assert p["arch"] == "x86-64" and p["blocks"] == []
    else:
        assert p["arch"] == "i386" and len(p["blocks"]) == 4


@pytest.mark.parametrize("rom", ["pxe-e1000.rom", "pxe-e1000e.rom", "efi-e1000.rom", "efi-e1000e.rom"])
def test_intel_driver_ids_are_intel_c(rom):
    doc = inspect(corpus(IPXE_QEMU / rom))
    for img in doc["images"]:
        assert drivers_of(img["ipxe_payload"]) == {"dh8900cc": INTEL_IDS}


def test_drivers_lists_every_id():
    r = run_romlab("inspect", "--drivers", "--json", corpus(IPXE_QEMU / "efi-e1000.rom"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.inspect-drivers/1"
    for image in (0, 1):
        assert [(x["id"], x["name"]) for x in doc["ids"] if x["image"] == image] == INTEL_IDS
    row = next(x for x in doc["ids"] if x["id"] == "8086:10c9")
    assert row["vendor_name"] == "Intel Corporation" and "82576" in row["device_name"]
    text = run_romlab("inspect", "--drivers", corpus(IPXE_QEMU / "pxe-e1000.rom")).stdout.decode()
    assert text.count("\n") == len(INTEL_IDS) + 1 and "8086:1533  i210" in text


def test_text_shows_the_payload():
    out = run_romlab("inspect", corpus(IPXE_QEMU / "pxe-e1000.rom")).stdout.decode()
    for text in ("version 1.0.0+git-20190125.36a4c85-5.1", "build 82540em.rom", "packed .textdata at 0x012c0",
                 "features: DNS HTTP iSCSI NFS TFTP AoE ELF MBOOT PXE bzImage Menu PXEXT",
                 "1, claiming 135 vendor:device IDs", "embedded scripts: none"):
        assert text in out


def test_efi_compressed_image(tmp_path):
    """The EFI driver of efi-e1000.rom, rebuilt as an EFI-compressed ROM: same tables."""
    drv, rom = tmp_path / "e1000.efi", tmp_path / "c.rom"
    assert run_romlab("extract", corpus(IPXE_QEMU / "efi-e1000.rom"), "--image", "1", "--efi-driver",
                      "-o", drv).returncode == 0
    r = run_romlab("efi-rom", drv, "--vendor", "8086", "--device", "100e", "--compress", "-o", rom)
    assert r.returncode == 0, r.stderr
    assert struct.unpack_from("<H", rom.read_bytes(), 0x0C)[0] == 1  # CompressionType 1
    p = inspect(rom)["images"][0]["ipxe_payload"]
    assert p["build"] == "82540em.efidrv" and drivers_of(p) == {"dh8900cc": INTEL_IDS}


# --- patch and lint ----------------------------------------------------------------------------

def test_patch_to_a_claimed_id_does_not_warn(tmp_path):
    out = tmp_path / "82576.rom"
    r = run_romlab("patch", corpus(IPXE_QEMU / "pxe-e1000.rom"), "--device", "0x10c9", "--fix-checksums", "-o", out)
    assert r.returncode == 0, r.stderr
    assert b"no PCI driver" not in r.stderr and b"iPXE" not in r.stderr
    # Each change once: the list had no room to grow (0x4dd is its terminator, code follows), so
    # 10c9 took 100e's place, as the list's line says (no note repeating it); the checksum byte
    # 0x14 drops by 2 * (0xc9 - 0x0e) = 0x176, to 0x9e.
    assert r.stdout.decode().splitlines() == [
        "image 0 PCIR device: 100e -> 10c9", "image 0 device list: 100e -> 10c9",
        "image 0 legacy image checksum byte at 0x6: 14 -> 9e", f"wrote {out}"]
    assert b"replaced" not in r.stderr
    lint = json.loads(run_romlab("lint", "--json", out).stdout)
    assert not [f for f in lint["findings"] if f["rule"].startswith("ipxe-")]
    assert lint["exit"] == 0


def test_patch_to_an_unclaimed_id_warns_and_lint_errs(tmp_path):
    out = tmp_path / "1234.rom"
    r = run_romlab("patch", corpus(IPXE_QEMU / "pxe-e1000.rom"), "--device", "1234", "--fix-checksums", "-o", out)
    assert r.returncode == 0, r.stderr
    assert b"no PCI driver in its iPXE payload (82540em.rom) claims 8086:1234" in r.stderr
    lint = run_romlab("lint", "--json", out)
    assert lint.returncode == 1
    hits = {(f["rule"], f["offset"], f["severity"]) for f in json.loads(lint.stdout)["findings"]}
    assert ("ipxe-no-driver", 0x1C + 6, "error") in hits  # the PCIR's device ID field
    assert ("ipxe-device-list-unclaimed", 0x1C + 0x4BF, "warning") in hits  # its device list, now 1234


# --- broken payloads ---------------------------------------------------------------------------

def crc32_le(data: bytes) -> int:
    """zbin.c's crc32_le(0xffffffff, ...): reflected CRC32 without the final inversion."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc


def bcj_forward(data: bytes) -> bytes:
    """zbin.c's bcj_filter, transcribed: rel32 operands of E8/E9 become absolute."""
    b = bytearray(data)
    limit = len(b) - 5
    off = 0
    while off <= limit:
        if b[off] in (0xE8, 0xE9):
            t = struct.unpack_from("<i", b, off + 1)[0]
            if -off <= t < limit - off:
                t += off
            elif limit - off <= t < limit:
                t -= limit
            struct.pack_into("<i", b, off + 1, t)
            off += 5
        else:
            off += 1
    return bytes(b)


def pack(data: bytes, filtered: bool = True, preset: int = 6 | lzma.PRESET_EXTREME) -> bytes:
    """A zbin block: length, raw LZMA1 (lc=2, lp=0, pb=0; zbin's preset by default), CRC32."""
    stream = lzma.compress(bcj_forward(data) if filtered else data, format=lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "preset": preset}])
    return struct.pack("<I", len(stream) + 4) + stream + struct.pack("<I", crc32_le(stream))


TEXTDATA = 0x12C0  # pxe-e1000.rom: the 4th packed block (xxd: 6c 11 01 00 00 ... at 0x12c0)


def test_block_layout_by_hand():
    rom = corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()
    length = struct.unpack_from("<I", rom, TEXTDATA)[0]
    assert length == 0x1116C
    stream = rom[TEXTDATA + 4:TEXTDATA + length]
    assert crc32_le(stream) == struct.unpack_from("<I", rom, TEXTDATA + length)[0]
    raw = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "dict_size": 1 << 22}]).decompress(stream)
    assert len(raw) == 130504 and b"1.0.0+git-20190125.36a4c85-5.1\0" in raw
    from romtools.ipxe import unbcj

    assert bcj_forward(unbcj(raw)) == raw  # romlab's inverse undoes zbin's filter exactly


def broken(tmp_path, mutate) -> subprocess.CompletedProcess:
    data = bytearray(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())
    mutate(data)
    path = tmp_path / "broken.rom"
    path.write_bytes(bytes(data))
    start = time.monotonic()
    r = run_romlab("inspect", path, timeout=60)
    r.elapsed = time.monotonic() - start
    return r


def one_line(r, *words):
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_truncated_payload(tmp_path):
    r = broken(tmp_path, lambda b: b.__delitem__(slice(0x8000, None)))
    one_line(r, "0x12c0", "says it holds 69996 bytes", "truncated")


def test_corrupted_payload(tmp_path):
    r = broken(tmp_path, lambda b: b.__setitem__(0x5000, b[0x5000] ^ 0x55))
    one_line(r, "0x12c0", "CRC32")


def test_length_field_past_the_file(tmp_path):
    r = broken(tmp_path, lambda b: struct.pack_into("<I", b, TEXTDATA, 0x7FFFFFF0))
    one_line(r, "0x12c0", f"says it holds {0x7FFFFFF0} bytes")


def test_valid_crc_bad_lzma(tmp_path):
    def mutate(b):
        junk = b"\x00" + bytes(range(1, 200)) * 3
        b[TEXTDATA:TEXTDATA + 8 + len(junk)] = (struct.pack("<I", len(junk) + 4) + junk
                                                + struct.pack("<I", crc32_le(junk)))
    one_line(broken(tmp_path, mutate), "0x12c0", "LZMA")


def test_stream_that_expands_without_bound(tmp_path):
    bomb = pack(bytes(64 << 20), filtered=False, preset=0)  # 64 MiB of zeros in a few kB
    assert len(bomb) < 20000

    def mutate(b):
        b[TEXTDATA:TEXTDATA + len(bomb)] = bomb
    r = broken(tmp_path, mutate)
    one_line(r, "0x12c0", "expands beyond")
    from romtools import ipxe
    from romtools.walker import walk

    data = (tmp_path / "broken.rom").read_bytes()
    start = time.monotonic()
    with pytest.raises(Exception, match="expands beyond"):
        ipxe.for_rom(data, walk(data))
    assert time.monotonic() - start < 1.0


def test_lint_reports_a_broken_payload(tmp_path):
    data = bytearray(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())
    data[0x5000] ^= 0x55
    path = tmp_path / "b.rom"
    path.write_bytes(bytes(data))
    r = run_romlab("lint", "--json", path)
    assert r.returncode == 1
    assert ("ipxe-payload", TEXTDATA) in {(f["rule"], f["offset"]) for f in json.loads(r.stdout)["findings"]}


def test_truncated_boot_file_and_efi_image(tmp_path):
    kpxe = tmp_path / "undionly.kpxe"
    kpxe.write_bytes(corpus(IPXE / "undionly.kpxe").read_bytes()[:0x9000])
    one_line(run_romlab("inspect", kpxe, timeout=60), "truncated")
    rom = tmp_path / "efi.rom"
    rom.write_bytes(corpus(IPXE_QEMU / "efi-e1000.rom").read_bytes()[:0x20000])
    r = run_romlab("inspect", rom, timeout=60)
    one_line(r, "image 1", "PE section")


def test_not_ipxe_at_all(tmp_path):
    p = tmp_path / "text.bin"
    p.write_bytes(b"hello, this is not a ROM\n" * 100)
    r = run_romlab("inspect", p)
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1


# --- embedded scripts ----------------------------------------------------------------------------

SCRIPT = b"#!ipxe\ndhcp\nchain http://192.0.2.1/boot.ipxe\n"


def test_embedded_script(tmp_path):
    """pxe-e1000.rom with embedded.c's struct image (image.h, i386: 12 words) added to .textdata."""
    from romtools.ipxe import unbcj

    rom = bytearray(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())
    length = struct.unpack_from("<I", rom, TEXTDATA)[0]
    raw = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "dict_size": 1 << 22}]).decompress(
        bytes(rom[TEXTDATA + 4:TEXTDATA + length]))
    text = bytearray(unbcj(raw))
    text += bytes(-len(text) % 4)
    name_at = len(text)
    text += b"demo.ipxe\0" + bytes(2)
    data_at = len(text)
    text += SCRIPT + bytes(-len(SCRIPT) % 4)
    image = struct.pack("<iI2IIIIIIIII", 0, 0x100, 0, 0, 0, name_at, 0, 0, data_at, len(SCRIPT), 0, 0)
    text += image
    block = pack(bytes(text))
    assert TEXTDATA + len(block) <= 75264
    rom[TEXTDATA:TEXTDATA + len(block)] = block
    path = tmp_path / "script.rom"
    path.write_bytes(bytes(rom))
    r = run_romlab("inspect", "--json", path)
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)["images"][0]["ipxe_payload"]
    assert p["scripts"] == [{"name": "demo.ipxe", "address": data_at, "length": len(SCRIPT),
                             "text": SCRIPT.decode()}]
    assert drivers_of(p) == {"dh8900cc": INTEL_IDS}
    out = run_romlab("inspect", path).stdout.decode()
    assert "embedded script 'demo.ipxe'" in out and "| chain http://192.0.2.1/boot.ipxe" in out


# --- crafted inputs that cost time or memory (each took from 5 s to minutes, or gigabytes) ------

def textdata_rom(text: bytes) -> bytes:
    """pxe-e1000.rom with ``text`` packed (unfiltered) as its .textdata."""
    rom = bytearray(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())
    block = pack(text, filtered=False)
    assert TEXTDATA + len(block) <= len(rom)
    rom[TEXTDATA:TEXTDATA + len(block)] = block
    return bytes(rom)


def timed(fn, *args):
    start = time.monotonic()
    out = fn(*args)
    return out, time.monotonic() - start


def payloads(data: bytes):
    from romtools import ipxe
    from romtools.walker import walk

    return ipxe.for_rom(data, walk(data))


def lookalike_lengths(data: bytearray, first: int) -> None:
    """From ``first`` on, every 16-byte boundary holds a length that fits the rest and a 00 byte
    after it (a range coder's first byte): a candidate packed section that only a CRC32 refutes."""
    for off in range(first, len(data) - 16, 16):
        struct.pack_into("<I", data, off, len(data) - off - 8)
        data[off + 4] = 0


def test_lookalike_packed_sections_cost_little():
    """A 4 MiB ROM: pxe-e1000.rom, then 0.26 million look-alike blocks (took 107 s in inspect).
    iPXE's four sections come first and the search stops there."""
    size = (4 << 20) - 512
    data = bytearray(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()) + bytearray(size - 75264)
    struct.pack_into("<H", data, 0x1C + 0x10, size // 512)  # PCIR image length: the whole file
    lookalike_lengths(data, 0x13000)
    found, elapsed = timed(payloads, bytes(data))
    assert elapsed < 10
    assert [b.name for b in found[0].blocks] == [".text16.early", ".text16.late", ".data16", ".textdata"]
    assert found[0].version == "1.0.0+git-20190125.36a4c85-5.1"


def test_only_lookalike_packed_sections_are_refused():
    """Nothing but look-alikes: CRC32 checks over more than romlab's allowance end in one error."""
    from hw.errors import FormatError
    from romtools import ipxe

    data = bytearray(4 << 20)
    lookalike_lengths(data, 0)
    start = time.monotonic()
    with pytest.raises(FormatError, match="look-alike iPXE packed sections") as exc:
        ipxe.find_blocks(bytes(data), 0, len(data))
    assert time.monotonic() - start < 10 and exc.value.exit_code == 1


def test_stray_block_after_textdata_is_ignored(tmp_path):
    """A CRC-valid block after .textdata (it ends at 0x12c0 + 4 + 0x1116c = 0x12430): iPXE reads
    four sections and nothing after them, and so does romlab (it said "5 of its 4 sections")."""
    rom = bytearray(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())
    stray = pack(b"not a section" * 4, filtered=False)
    assert rom[0x12430:0x12430 + len(stray)] == b"\xff" * len(stray)  # the image's padding (xxd)
    rom[0x12430:0x12430 + len(stray)] = stray
    p = payloads(bytes(rom))[0]
    assert [b.offset for b in p.blocks][-1] == TEXTDATA and len(p.blocks) == 4
    path = tmp_path / "five.rom"
    path.write_bytes(bytes(rom))
    r = run_romlab("inspect", path)
    assert b"packed section" not in r.stderr and b"1.0.0+git-20190125.36a4c85-5.1" in r.stdout


def test_driver_lookalikes_cost_little():
    """A 1 MiB .textdata of 32-byte records shaped like struct pci_driver (count 1, every pointer 0):
    every record's bounds were searched for in the whole section (took 55 s)."""
    found, elapsed = timed(payloads, textdata_rom(struct.pack("<8I", 0, 1, 0, 0, 0, 0, 0, 0) * (1 << 15)))
    assert elapsed < 10
    assert found[0].drivers == []  # no code iterates them (nothing but zeros and ones)


def test_version_option_lookalikes_cost_little():
    """A section of "\\xeb\\x03" pairs: each was followed by a search of the whole section."""
    text = (b"\xeb\x03\x01\x00\x00" + bytes(11)) * (1 << 16) + b"\x001.0.0+x\0"
    found, elapsed = timed(payloads, textdata_rom(text))
    assert elapsed < 10
    assert found[0].version_option == (1, 0, 0) and found[0].version == "1.0.0+x"


def test_embedded_image_lookalikes_are_not_scripts():
    """64 KiB of struct image look-alikes, each naming the whole section as its data (inspect
    printed 358 MB): an image's data holds no image record and is followed by embedded.c's NUL."""
    n = 64 * 1024
    body = b"abc\0" + struct.pack("<12I", 0, 4, 0, 0, 0, 0, 0, 0, 0, n, 0, 0) * ((n - 4) // 48)
    found, elapsed = timed(payloads, textdata_rom(body + bytes(n - len(body))))
    assert elapsed < 10 and found[0].scripts == []


def test_embedded_images_are_capped_and_disjoint():
    """20 well-formed images over 2 scripts: 16 at most are shown, and no two share bytes."""
    from romtools.ipxe import MAX_SCRIPTS

    text = bytearray(b"\xc3" * 16)  # code, for the free method pointer
    name_at = len(text)
    text += b"s.ipxe\0\0"
    datas = []
    for k in range(2):
        datas.append(len(text))
        text += b"#!ipxe\necho %d\n\0\0" % k
    records = b"".join(struct.pack("<12I", 0, 1, 0, 0, 0, name_at, 0, 0, datas[k % 2], 14, 0, 0) for k in range(20))
    text += records + bytes(64)
    p = payloads(textdata_rom(bytes(text)))[0]
    assert [s.text for s in p.scripts] == [b"#!ipxe\necho 0\n", b"#!ipxe\necho 1\n"]
    many = bytearray(b"\xc3" * 16) + b"s.ipxe\0\0"
    datas = []
    for k in range(20):
        datas.append(len(many))
        many += b"#!ipxe\necho %02d\n\0" % k
    many += bytes(-len(many) % 4)
    many += b"".join(struct.pack("<12I", 0, 1, 0, 0, 0, 16, 0, 0, d, 15, 0, 0) for d in datas) + bytes(64)
    p = payloads(textdata_rom(bytes(many)))[0]
    assert len(p.scripts) == MAX_SCRIPTS == 16 and any("embedded images" in n for n in p.notes)


def multi_image_rom(count: int) -> bytes:
    """``count`` legacy images, each pxe-e1000.rom's prefix with a .textdata decoding to 4 MB."""
    src = corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()
    img = bytearray(src[:TEXTDATA]) + pack(b"\x00\x10\x00\x00" * ((4 << 20) // 4 - 20000), filtered=False, preset=0)
    img += bytes(-len(img) % 512)
    img[2] = 0
    struct.pack_into("<H", img, 0x1C + 0x10, len(img) // 512)
    out = bytearray()
    for i in range(count):
        im = bytearray(img)
        im[0x1C + 0x15] = 0x80 if i == count - 1 else 0
        out += im
    return bytes(out)


def test_decoding_is_bounded_per_file_not_per_image(tmp_path):
    """20 images that each decode to 4 MB (took 16 s): the second one finds the file's 4 MiB spent."""
    from hw.errors import FormatError

    data = multi_image_rom(20)
    start = time.monotonic()
    with pytest.raises(FormatError, match="image 1|expands beyond"):
        payloads(data)
    assert time.monotonic() - start < 10
    path = tmp_path / "multi.rom"
    path.write_bytes(data)
    for verb in ("inspect", "lint"):
        r = run_romlab(verb, path, timeout=60)
        assert r.returncode == 1 and b"expands beyond" in r.stdout + r.stderr, (verb, r.stderr)
    r = run_romlab("diff", path, path, timeout=60)
    assert r.returncode == 0 and r.stdout.count(b"\n") == 1  # the same error both sides: equal


def test_drivers_of_a_broken_payload(tmp_path):
    """inspect --drivers of a truncated ROM: the payload cannot be read (stderr), not "no payload"."""
    path = tmp_path / "t.rom"
    path.write_bytes(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()[:0x2000])
    r = run_romlab("inspect", "--drivers", path)
    assert r.stdout == b""
    one_line(r, "0x12c0", "truncated")


def test_verbs_that_read_only_option_roms_point_ipxe_files_to_inspect(tmp_path):
    """lint and disasm of iPXE's boot files: not "use romlab scan" (which finds no ROM in them) but
    inspect, which reads them; a file that is neither keeps the scan advice. (An EFI file keeps the
    walker's own message, which says what the PE is: test_messages.py.)"""
    for verb, name in (("lint", "undionly.kpxe"), ("disasm", "ipxe.pxe"), ("lint", "ipxe.lkrn")):
        r = run_romlab(verb, corpus(IPXE / name))
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and "romlab scan" not in err, err
        assert f"`romlab inspect {corpus(IPXE / name)}`" in err and "iPXE" in err, err
    r = run_romlab("lint", "-", input=corpus(IPXE / "undionly.kpxe").read_bytes()[:0x9000])
    assert r.returncode == 2 and "`romlab inspect -`" in r.stderr.decode()
    r = run_romlab("lint", "-", input=b"hello, not a ROM" * 64)
    assert r.returncode == 2 and "romlab scan" in r.stderr.decode()
