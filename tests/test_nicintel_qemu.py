"""EERD against QEMU's own e1000 (82540EM) and e1000e (82574L), and the double against them.

QEMU's device models are an independent implementation of these registers, so
they check two things: romlab's EERD reader (both layouts), and that the
register double used for everything QEMU lacks (FLA, EEC, EEWR) answers EERD
exactly as QEMU does, raw register values included.

Expected words come from QEMU's source, not from romlab: hw/net/e1000.c
(e1000_eeprom_template), hw/net/e1000e.c (e1000e_eeprom_template) and
hw/net/e1000x_common.c (e1000x_core_prepare_eeprom: words 0-2 = MAC bytes
little-endian, words 0x0B and 0x0D = the device ID, word 0x3F = 0xBABA minus
the sum of the others).
"""
from __future__ import annotations

import pytest

from hw.mmio import Window
from hw.parts import family_of
from romlab.lab.regrelay import QemuNic
from romtools.flash.programmers.nicintel_eeprom import open_nvm
from romtools.flash.sim.nic import NicBarDouble

pytestmark = pytest.mark.qemu

MAC = "52:54:00:ab:cd:ef"
MAC_WORDS = [0x5452, 0xAB00, 0xEFCD]


@pytest.mark.parametrize("model,ids,family,layout,words", [
    ("e1000", "8086:100e", "8254x", (4, 8),
     {0x0A: 0x6403, 0x0B: 0x100E, 0x0C: 0x8086, 0x0D: 0x100E, 0x0F: 0x3040, 0x30: 0x0100, 0x31: 0x4000,
      0x32: 0x121C, 0x33: 0xFFFF}),
    ("e1000e", "8086:10d3", "8257x", (1, 2),
     {0x03: 0x0420, 0x0A: 0x026B, 0x0B: 0x10D3, 0x0C: 0x8086, 0x0D: 0x10D3, 0x0F: 0x8058, 0x30: 0x0100,
      0x31: 0xC000, 0x32: 0x121C, 0x33: 0xC007}),
])
def test_eerd_on_qemu_and_on_the_double(model, ids, family, layout, words):
    with QemuNic(f"{model},mac={MAC}") as nic:
        assert nic.ids == ids
        fam = family_of(nic.vendor, nic.device)
        assert fam.key == family and fam.eerd == layout
        got = open_nvm(Window(nic, fam.base), fam, nic.device).read_words(0, 64)
        assert got[0:3] == MAC_WORDS
        for addr, value in words.items():
            assert got[addr] == value, hex(addr)
        assert sum(got) & 0xFFFF == 0xBABA
        # Raw EERD values, START included and not, on QEMU and on the double holding the same words.
        dbl = NicBarDouble(fam, nvm=got)
        done, shift = layout
        for addr in (0, 1, 0x0B, 0x3F):
            for start in (1, 0):
                request = (addr << shift) | start
                nic.write32(0x14, request)
                dbl.write32(0x14, request)
                assert dbl.read32(0x14) == nic.read32(0x14), (addr, start)
        nic.write32(0x14, (0x3F << shift) | 1)
        assert nic.read32(0x14) == (got[0x3F] << 16) | (1 << done) | (0x3F << shift)
