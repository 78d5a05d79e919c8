"""romlab scan finds ROMs placed at odd offsets in a random 16 MiB blob."""
from __future__ import annotations

import json
import random

from conftest import IPXE_QEMU, SEABIOS, corpus, run_romlab


def test_scan_finds_roms_at_odd_offsets(tmp_path):
    efi = corpus(IPXE_QEMU / "efi-e1000.rom").read_bytes()
    vga = corpus(SEABIOS / "vgabios-stdvga.bin").read_bytes()
    rng = random.Random(1234)
    blob = bytearray(rng.randbytes(16 << 20))
    efi_at, vga_at = 0x123457, 0xA0C0D3
    blob[efi_at:efi_at + len(efi)] = efi
    blob[vga_at:vga_at + len(vga)] = vga
    path = tmp_path / "dump.bin"
    path.write_bytes(bytes(blob))
    out = tmp_path / "out"
    r = run_romlab("scan", "--json", "--extract", out, path, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    by_off = {rom["offset"]: rom for rom in doc["roms"]}
    assert efi_at in by_off and vga_at in by_off
    assert by_off[efi_at]["images"] == 2 and by_off[efi_at]["length"] == len(efi)
    assert by_off[efi_at]["ids"][0] == {"id": "8086:100e", "code_type": "00"}
    assert by_off[efi_at]["ids"][1] == {"id": "8086:100e", "code_type": "03"}
    assert by_off[vga_at]["images"] == 1 and by_off[vga_at]["ids"][0] == {"id": "1234:1111", "code_type": "00"}  # PCIR 0x99dc: 34 12 11 11
    assert by_off[vga_at]["clean"] and by_off[efi_at]["clean"]
    for path_str in doc["extracted"]:
        off = int(path_str.rsplit("-", 1)[1].split(".")[0], 16)
        data = open(path_str, "rb").read()
        assert data == bytes(blob[off:off + len(data)])
    assert open(out / f"rom-{efi_at:08x}.bin", "rb").read() == efi


def test_scan_after_vendor_header(tmp_path):
    rom = corpus(IPXE_QEMU / "pxe-rtl8139.rom").read_bytes()
    p = tmp_path / "vendor.bin"
    p.write_bytes(b"NVGI" + b"\0" * 0x3FC + rom)
    r = run_romlab("scan", p)
    assert r.returncode == 0
    assert r.stdout.decode().startswith("0x00000400") and "10ec:8139" in r.stdout.decode()
    assert run_romlab("inspect", p).returncode == 2


def test_scan_of_a_file_with_no_rom(tmp_path):
    p = tmp_path / "zeros.bin"
    p.write_bytes(b"\0" * 100000)
    r = run_romlab("scan", p)
    assert r.returncode == 1 and b"no option ROM found" in r.stderr and r.stdout == b""
