"""nicintel_eeprom against the register-level double: 82580 EEC bit-banging, I210 EEWR + FLUPD.

The double (romtools.flash.sim.nic) follows the reference facts: EEC bits SK 0,
CS 1, SI 2, SO 3, REQ 6, GNT 7, PRES 8, SIZE 14:11 (7 = 16 KiB, 8 = 32 KiB),
FLUPD 23, FLUDONE 26; EERD/EEWR with START/CMDV bit 0, DONE bit 1, address from
bit 2, data in bits 31:16; the I210 block at BAR0+0x12000. The 82580's EEPROM is
a SPI EEPROM model (64-byte pages, 16-bit addresses, WREN/WRITE/RDSR). EERD's
layout itself is checked against QEMU's e1000/e1000e in test_nicintel_qemu.py.
"""
from __future__ import annotations

import random
import struct

import pytest

from hw.mmio import Window
from hw.parts import FAMILIES
from romtools.flash import chips
from romtools.flash.programmers.nicintel_eeprom import (
    Eeprom82580,
    I210Nvm,
    NvmAccess,
    NvmError,
    open_nvm,
)
from romtools.flash.sim.chip import SimChip
from romtools.flash.sim.nic import NicBarDouble, SpiEeprom

FAM = {f.key: f for f in FAMILIES}


def eeprom_82580(size=32768, seed=5):
    ee = SpiEeprom(size)
    ee.mem[:] = random.Random(seed).randbytes(size)
    return ee


def test_82580_reads_through_eerd_and_writes_by_bitbanging():
    ee = eeprom_82580()
    before = bytes(ee.mem)
    dbl = NicBarDouble(FAM["82580"], eeprom=ee)
    eec_before = dbl.eecd
    nvm = open_nvm(Window(dbl, 0), FAM["82580"], 0x150E)
    assert isinstance(nvm, Eeprom82580) and nvm.size == 32768       # EEC.SIZE = 8
    # EERD word n is EEPROM bytes 2n, 2n+1, little-endian.
    assert nvm.read_words(0, 3) == list(struct.unpack("<3H", before[0:6]))
    # Word 0x1F..0x20 straddles the 64-byte page at byte 0x40: two WRITE commands.
    nvm.write_words({0x03: 0x1234, 0x1F: 0xA55A, 0x20: 0x0FF0, 0x3FFF: 0xBEEF})
    expect = bytearray(before)
    expect[6:8] = b"\x34\x12"
    expect[0x3E:0x42] = b"\x5a\xa5\xf0\x0f"
    expect[0x7FFE:0x8000] = b"\xef\xbe"
    assert bytes(ee.mem) == bytes(expect)
    assert ee.writes == 4
    assert nvm.read_word(0x20) == 0x0FF0
    # The pins and REQ are as they were found; no pin moved without the grant.
    assert dbl.eecd == eec_before
    assert dbl.stats["ungranted_moves"] == 0


def test_82580_size_presence_and_grant():
    dbl = NicBarDouble(FAM["82580"], eeprom=eeprom_82580(16384))
    assert open_nvm(Window(dbl, 0), FAM["82580"], 0x150E).size == 16384     # EEC.SIZE = 7
    dbl = NicBarDouble(FAM["82580"], eeprom=eeprom_82580(16384))
    dbl.eecd &= ~0x100
    with pytest.raises(NvmError, match="no EEPROM"):
        open_nvm(Window(dbl, 0), FAM["82580"], 0x150E)
    # The unprogrammed part (0x1509) is taken as 16 KiB whatever EEC says.
    assert open_nvm(Window(dbl, 0), FAM["82580"], 0x1509).size == 16384
    ee = eeprom_82580()
    before = bytes(ee.mem)
    dbl = NicBarDouble(FAM["82580"], eeprom=ee, grant_after=None)
    nvm = open_nvm(Window(dbl, 0), FAM["82580"], 0x150E)
    nvm.timeout = 0.1
    with pytest.raises(NvmError, match="EEC.GNT"):
        nvm.write_words({0: 0})
    assert bytes(ee.mem) == before and not dbl.eecd & 0x40


def i210_rig(**kw):
    part = chips.by_name("W25X10")
    flash = bytearray(random.Random(9).randbytes(part.size))
    sim = SimChip(part, flash)
    dbl = NicBarDouble(FAM["i210"], chip=sim, **kw)
    return sim, dbl, Window(dbl, 0x12000)


def test_i210_eewr_reaches_flash_only_after_flupd():
    sim, dbl, regs = i210_rig()
    before = bytes(sim.mem)
    nvm = open_nvm(regs, FAM["i210"], 0x1533)
    assert isinstance(nvm, I210Nvm) and nvm.size_words == 2048
    # The shadow RAM was loaded from the flash's first bank.
    assert nvm.read_word(0x10) == struct.unpack_from("<H", before, 0x20)[0]
    nvm.write_words({0x00: 0x1111, 0x3F: 0x2222, 0x7FF: 0x3333})
    assert nvm.read_word(0x3F) == 0x2222
    assert bytes(sim.mem) == before                  # nothing on the flash yet
    nvm.commit()
    after = bytes(sim.mem)
    assert after[0:2] == b"\x11\x11" and after[0x7E:0x80] == b"\x22\x22" and after[0xFFE:0x1000] == b"\x33\x33"
    assert after[0x1000:] == before[0x1000:]        # the ROM area is never touched
    assert dbl.eecd & (1 << 26) and dbl.stats["flash_updates"] == 1
    nvm.commit()                                     # nothing new: no second flash update
    assert dbl.stats["flash_updates"] == 1


def test_i210_flash_update_that_never_finishes():
    sim, dbl, regs = i210_rig(flupd_works=False)
    nvm = open_nvm(regs, FAM["i210"], 0x1533)
    nvm.timeout = 0.1
    nvm.write_words({1: 0})
    with pytest.raises(NvmError, match="FLUDONE"):
        nvm.commit()


def test_eerd_layouts_differ_by_generation():
    words = list(range(0x100, 0x140))
    old = NicBarDouble(FAM["8254x"], nvm=words)       # DONE bit 4, address from bit 8
    new = NicBarDouble(FAM["8257x"], nvm=words)       # DONE bit 1, address from bit 2
    assert open_nvm(old, FAM["8254x"]).read_words(0x3D, 3) == [0x13D, 0x13E, 0x13F]
    assert open_nvm(new, FAM["8257x"]).read_words(0x3D, 3) == [0x13D, 0x13E, 0x13F]
    old.write32(0x14, (5 << 8) | 1)
    new.write32(0x14, (5 << 2) | 1)
    assert old.read32(0x14) == (0x105 << 16) | 0x10 | (5 << 8)
    assert new.read32(0x14) == (0x105 << 16) | 0x2 | (5 << 2)
    # The other layout's request is misread, so the read times out rather than lie.
    wrong = NvmAccess(old, FAM["8257x"], timeout=0.05)
    with pytest.raises(NvmError, match="EERD.DONE"):
        wrong.read_word(5)
    with pytest.raises(NvmError, match="ethtool -E"):
        open_nvm(new, FAM["8257x"]).write_words({0: 1})
