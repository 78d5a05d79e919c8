"""The chip model's semantics, checked against datasheet behaviour written out by hand."""
from __future__ import annotations

import struct

import pytest

from romtools.flash import chips, sfdp
from romtools.flash.sim.chip import Faults, SimChip


def sim(name="W25X10", fill=0xFF, **kw):
    chip = chips.by_name(name)
    return SimChip(chip, bytearray([fill]) * chip.size, timing="none", **kw)


def test_ids_answer_as_the_datasheets_say():
    s = sim("W25X40")
    assert s.transfer(b"\x9f", 3) == bytes([0xEF, 0x30, 0x13])
    assert s.transfer(b"\x90\x00\x00\x00", 2) == bytes([0xEF, 0x12])
    assert s.transfer(b"\x90\x00\x00\x01", 2) == bytes([0x12, 0xEF])
    assert s.transfer(b"\xab\x00\x00\x00", 1) == bytes([0x12])
    m = sim("MX25L4005")
    assert m.transfer(b"\x9f", 3) == bytes([0xC2, 0x20, 0x13])


def test_program_needs_wel_and_only_clears_bits():
    s = sim()
    s.transfer(b"\x02\x00\x00\x10" + b"\x00", 0)          # no WREN: ignored
    assert s.mem[0x10] == 0xFF
    s.transfer(b"\x06")
    assert s.transfer(b"\x05", 1)[0] & 0x02                # WEL set
    s.transfer(b"\x02\x00\x00\x10" + bytes([0xF0]), 0)
    assert s.mem[0x10] == 0xF0
    assert s.transfer(b"\x05", 1)[0] & 0x02 == 0           # WEL consumed
    s.transfer(b"\x06")
    s.transfer(b"\x02\x00\x00\x10" + bytes([0x0F]), 0)     # 0xF0 & 0x0F
    assert s.mem[0x10] == 0x00
    s.transfer(b"\x06")
    s.transfer(b"\x02\x00\x00\x10" + bytes([0xFF]), 0)     # cannot set bits
    assert s.mem[0x10] == 0x00


def test_page_program_wraps_inside_the_page():
    s = sim()
    s.transfer(b"\x06")
    s.transfer(b"\x02\x00\x01\xfe" + b"\x11\x22\x33\x44", 0)
    assert s.mem[0x1FE:0x200] == b"\x11\x22"
    assert s.mem[0x100:0x102] == b"\x33\x44"               # wrapped to page start
    assert s.mem[0x200] == 0xFF


def test_erase_sets_ff_by_block_and_counts():
    s = sim(fill=0x00)
    s.transfer(b"\x06")
    s.transfer(b"\x20\x01\x23\x45", 0)                     # address 0x012345: sector 0x12000-0x12FFF
    assert s.mem[0x12000:0x13000] == b"\xff" * 4096
    assert s.mem[0x11FFF] == 0 and s.mem[0x13000] == 0
    s.transfer(b"\x06")
    s.transfer(b"\xd8\x01\x00\x00", 0)                     # 64 KiB block 0x10000-0x1FFFF
    assert s.mem[0x10000:0x20000] == b"\xff" * 65536
    assert s.mem[0xFFFF] == 0
    assert s.erase_counts[0x12] == 2 and s.erase_counts[0x11] == 1 and s.erase_counts[0] == 0
    s.transfer(b"\x06")
    s.transfer(b"\x52\x00\x00\x00", 0)                     # W25X has no 32 KiB erase
    assert s.mem[0] == 0


def test_busy_part_ignores_all_but_rdsr():
    t = [0.0]
    chip = chips.by_name("W25X10")
    s = SimChip(chip, bytearray(b"\x00") * chip.size, timing="datasheet", clock=lambda: t[0])
    s.transfer(b"\x06")
    s.transfer(b"\x20\x00\x00\x00", 0)
    assert s.transfer(b"\x05", 1)[0] & 0x03 == 0x03        # WIP and WEL while erasing
    assert s.transfer(b"\x03\x00\x00\x00", 2) == b"\xff\xff"  # no answer while busy
    s.transfer(b"\x06")
    s.transfer(b"\x02\x00\x00\x00\x00", 0)                 # ignored while busy
    t[0] = 0.046                                           # tSE typ 45 ms
    assert s.transfer(b"\x05", 1)[0] & 0x03 == 0
    assert s.mem[0] == 0xFF and s.stats["ignored_busy"] == 3


def test_block_protect_and_wrsr():
    chip = chips.by_name("W25X40")
    s = SimChip(chip, bytearray(b"\x00") * chip.size, timing="none", status=0x04)   # BP0
    s.transfer(b"\x06")
    s.transfer(b"\x20\x07\x00\x00", 0)                     # top 64 KiB is protected
    assert s.mem[0x70000] == 0
    s.transfer(b"\x06")
    s.transfer(b"\x20\x06\x00\x00", 0)
    assert s.mem[0x60000] == 0xFF
    s.transfer(b"\x01\x00", 0)                              # WRSR without WREN: ignored
    assert s.transfer(b"\x05", 1)[0] == 0x04
    s.transfer(b"\x06")
    s.transfer(b"\x01\x00", 0)
    assert s.transfer(b"\x05", 1)[0] == 0x00


def test_sst_needs_ewsr_or_wren_and_powers_up_protected():
    s = sim("SST25VF040B", fill=0x00)
    assert s.transfer(b"\x05", 1)[0] == 0x1C
    s.transfer(b"\x06")
    s.transfer(b"\x20\x00\x00\x00", 0)
    assert s.mem[0] == 0                                     # protected at power-on
    s.transfer(b"\x50")
    s.transfer(b"\x01\x00", 0)
    assert s.transfer(b"\x05", 1)[0] == 0x00
    # AAI word program: AD addr d0 d1, AD d0 d1, WRDI.
    s.transfer(b"\x06")
    s.transfer(b"\x20\x00\x00\x00", 0)
    s.transfer(b"\x06")
    s.transfer(b"\xad\x00\x00\x10\x01\x02", 0)
    s.transfer(b"\xad\x03\x04", 0)
    s.transfer(b"\x04")
    assert s.mem[0x10:0x15] == b"\x01\x02\x03\x04\xff"


def test_sfdp_parser_on_handmade_table():
    # JESD216 area for a 1 MiB part: header, one BFPT header pointing at 0x10, 9 dwords.
    area = bytearray(b"SFDP") + bytes([0x00, 0x01, 0x00, 0xFF])
    area += bytes([0x00, 0x00, 0x01, 0x09, 0x10, 0x00, 0x00, 0xFF])
    dw = [0] * 9
    dw[0] = 0xFFF120E5      # bits 1:0 = 01, 4K opcode 0x20, bit 2 set, bits 18:17 = 00
    dw[1] = 0x007FFFFF      # 8 Mbit - 1
    dw[7] = 0x520F200C      # type 1: 2^12 op 0x20, type 2: 2^15 op 0x52
    dw[8] = 0x0000D810      # type 3: 2^16 op 0xD8
    area += struct.pack("<9I", *dw)
    info = sfdp.parse(bytes(area))
    assert info.size == 1048576
    assert info.erase_types == {0x20: 4096, 0x52: 32768, 0xD8: 65536}
    assert info.page_size == 64 and info.addr_bytes == "3"
    with pytest.raises(Exception):
        sfdp.parse(b"\xff" * 64)


def test_sfdp_built_for_the_model_parses_back():
    s = sim("W25Q80")
    raw = s.transfer(b"\x5a\x00\x00\x00", 1 + 128)[1:]
    assert raw[:4] == b"SFDP"
    info = sfdp.parse(raw)
    assert info.size == 1048576
    assert info.erase_types == {0x20: 4096, 0x52: 32768, 0xD8: 65536}
    assert info.page_size == 256


def test_faults_are_reproducible_from_the_seed():
    def run(seed):
        s = sim(fill=0x5A, faults=Faults(flip=0.01, drop=0.01, seed=seed))
        return [s.transfer(b"\x03\x00\x00\x00", 4096) for _ in range(3)]
    a, b, c = run(7), run(7), run(8)
    assert a == b and a != c
    assert any(r != b"\x5a" * 4096 for r in a)


def test_lying_program_reports_success_but_does_nothing():
    s = sim(faults=Faults(lie=1.0))
    s.transfer(b"\x06")
    s.transfer(b"\x02\x00\x00\x00\x00", 0)
    assert s.transfer(b"\x05", 1)[0] & 0x03 == 0
    assert s.mem[0] == 0xFF and s.faults.counts["lie"] == 1
