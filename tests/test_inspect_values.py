"""efi-e1000.rom field by field, values read by hand from its hex dump (xxd)."""
from __future__ import annotations

import json

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab


@pytest.fixture(scope="module")
def doc():
    r = run_romlab("inspect", "--json", corpus(IPXE_QEMU / "efi-e1000.rom"))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_schema_and_size(doc):
    assert next(iter(doc)) == "schema" and doc["schema"] == "romlab.inspect/4"
    assert doc["input"] == str(IPXE_QEMU / "efi-e1000.rom")
    assert doc["size"] == 249856
    assert len(doc["images"]) == 2
    assert doc["stop"]["reason"] == "last-image" and doc["trailing"] is None


def test_legacy_image(doc):
    img = doc["images"][0]
    assert img["offset"] == 0 and img["length"] == 75264 and img["kind"] == "x86 PC-AT"
    p = img["pcir"]
    # 0x1c: 50 43 49 52 86 80 0e 10 bf 04 1c 00 03 00 00 02 93 00 01 00 00 00 07 00
    assert p["offset"] == 0x1C and p["revision"] == 3 and p["length"] == 0x1C
    assert (p["vendor"], p["device"], p["class"]) == ("8086", "100e", "020000")
    assert p["image_length_blocks"] == 0x93 and p["indicator"] == 0x00 and p["code_type"] == "00"
    assert p["device_list_offset"] == 0x4BF and p["max_runtime_length_blocks"] == 7
    assert "reserved0" not in p
    assert img["device_list"] == {"offset": 0x1C + 0x4BF, "devices": ["100e"]}  # 0x4db: 0e 10 00 00
    assert p["vendor_name"] == "Intel Corporation"
    assert p["class_name"] == "Ethernet controller"
    entries = {e["name"]: e for e in img["entries"]}
    assert entries["init"]["target"] == 0x00A8 and entries["init"]["via"] == "jmp near"  # e9 a2 00
    assert entries["bev"]["target"] == 0x0385
    assert entries["undi-loader"]["target"] == 0x04A4


def test_pnp_undi_ipxe(doc):
    img = doc["images"][0]
    pnp = img["pnp"]
    assert pnp["offset"] == 0x40 and pnp["manufacturer"] == "http://ipxe.org" and pnp["product"] == "iPXE"
    assert pnp["bev"] == 0x0385 and pnp["bcv"] == 0 and pnp["device_indicator"] == 0xF4
    assert pnp["device_type"] == "020000" and pnp["device_id"] == "00000000"
    undi = img["undi"]
    # 0x84: 55 4e 44 49 16 49 00 00 01 02 a4 04 10 2f 10 2f 12 08 50 43 49 52
    assert undi["offset"] == 0x84 and undi["version"] == [2, 1, 0]
    assert (undi["loader_offset"], undi["stack_size"], undi["code_size"]) == (0x04A4, 0x2F10, 0x0812)
    assert undi["bus_type"] == "PCIR"
    assert img["ipxe"]["offset"] == 0x9C and img["ipxe"]["build_id"] == "732c62a4"
    assert img["ipxe"]["shrunk_length_blocks"] == 7
    checks = {c["name"]: c["valid"] for c in img["checksums"]}
    assert checks == {"legacy image": True, "$PnP header": True, "UNDI ROM ID": True, "iPXE header": True}


def test_efi_image(doc):
    img = doc["images"][1]
    assert img["offset"] == 0x12600 and img["kind"] == "EFI" and img["last"] is True
    e = img["efi_header"]
    # 0x12600: 55 aa 55 01 f1 0e 00 00 0b 00 64 86 00 00 ... 38 00 1c 00
    assert e["efi_signature"] == "00000ef1" and e["machine"] == "8664" and e["machine_name"] == "X64"
    assert e["efi_subsystem"] == "000b" and e["compression"] == "0000" and e["efi_image_offset"] == 0x38
    assert e["init_size_blocks"] == 0x155 and e["layout"] == "ipxe-efirom"
    p = img["pcir"]
    assert p["revision"] == 0 and p["length"] == 0x18 and p["indicator"] == 0x80 and p["code_type"] == "03"
    assert "device_list_offset" not in p and "max_runtime_length_blocks" not in p
    assert img["checksums"] == [{"name": "iPXE .efirom image", "offset": 0x12600, "length": 174592, "sum": 0,
                                 "complete": True, "valid": True, "byte_offset": 0x12634}]


def test_text_tree_names_everything():
    r = run_romlab("inspect", corpus(IPXE_QEMU / "efi-e1000.rom"))
    out = r.stdout.decode()
    for text in ("82540EM Gigabit Ethernet Controller", "UNDI 2.1.0", "0x732c62a4", "X64",
                 "EFI boot service driver", "last image", "jmp near"):
        assert text in out
