"""SPI NOR layer and writer driven against the chip model, one chip of each kind."""
from __future__ import annotations

import random

import pytest

from hw.errors import RomlabError
from romtools.flash import chips, writer
from romtools.flash.chips import Chip
from romtools.flash.programmers.base import Programmer
from romtools.flash.sim.chip import Faults, SimChip
from romtools.flash.spinor import SpiNor


class Direct(Programmer):
    """The chip model wired straight to the SPI layer (no transport in between)."""

    def __init__(self, sim):
        self.sim = sim

    def transfer(self, mosi, nread=0):
        return self.sim.transfer(mosi, nread)


def rand(n, seed):
    return random.Random(seed).randbytes(n)


def setup(chip_name, contents, **kw):
    chip = chips.by_name(chip_name) if isinstance(chip_name, str) else chip_name
    sim = SimChip(chip, bytearray(contents), timing=kw.pop("timing", "fast"), **kw)
    nor = SpiNor(Direct(sim))
    return sim, nor


@pytest.mark.parametrize("name,jedec,size", [
    ("W25X10", "ef3011", 131072),
    ("W25X40", "ef3013", 524288),
    ("W25Q80", "ef4014", 1048576),
    ("MX25L4005", "c22013", 524288),
    ("AT25DF041A", "1f4401", 524288),
    ("SST25VF040B", "bf258d", 524288),
    ("S25FL004A", "010212", 524288),
])
def test_identify_and_write_every_kind(name, jedec, size):
    chip = chips.by_name(name)
    old, new = rand(size, 1), rand(size, 2)
    new = new[:size // 2] + old[size // 2:]         # upper half unchanged
    sim, nor = setup(chip, old)
    found = nor.identify()
    assert found.name == name and found.jedec_hex == jedec and found.size == size
    current = writer.stable_read(nor, 0, size)
    assert current == old
    protected = nor.unprotect()
    assert protected == chip.power_on_sr & chip.bp_mask
    writer.write(nor, current, new)
    assert writer.verify(nor, new) == []
    assert bytes(sim.mem) == new
    nor.reprotect(protected)
    assert sim.sr & chip.bp_mask == chip.power_on_sr & chip.bp_mask
    # The unchanged upper half was never erased.
    half = len(sim.erase_counts) // 2
    assert sum(sim.erase_counts[half:]) == 0
    assert all(c == 1 for c in sim.erase_counts[:half])


def test_only_differing_sectors_are_erased_and_bit_clearing_needs_no_erase():
    size = 131072
    old = bytearray(rand(size, 3))
    new = bytearray(old)
    new[0x5123] ^= 0xFF                      # sets and clears bits: sector 5 needs an erase
    new[0x9000] = old[0x9000] & 0x0F          # only clears bits: sector 9 programmed in place
    sim, nor = setup("W25X10", old)
    nor.identify()
    pl = writer.plan(nor, bytes(old), bytes(new))
    assert [(s.start, s.size, s.erase_op) for s in pl.steps] == [(0x5000, 4096, 0x20), (0x9000, 4096, None)]
    assert pl.steps[1].pieces == [(0x9000, bytes(new[0x9000:0x9100]))]
    writer.write(nor, bytes(old), bytes(new))
    assert bytes(sim.mem) == bytes(new)
    assert [i for i, c in enumerate(sim.erase_counts) if c] == [5]


def test_whole_64k_blocks_use_the_block_erase():
    size = 131072
    sim, nor = setup("W25X10", rand(size, 4))
    nor.identify()
    target = b"\xa5" * 65536 + bytes(sim.mem[65536:65536 + 4096]) + b"\xa5" * (65536 - 4096)
    pl = writer.plan(nor, bytes(sim.mem), target)
    ops = [(s.start, s.size, s.erase_op) for s in pl.steps]
    assert ops[0] == (0, 65536, 0xD8)
    assert (0x10000, 4096, 0x20) not in ops and ops[1] == (0x11000, 4096, 0x20)


def test_unknown_part_is_described_by_sfdp():
    part = Chip(name="X", vendor="Y", jedec=(0x9D, 0x60, 0x14), size=1048576,
                erasers={0x20: 4096, 0xD8: 65536, 0xC7: 1048576}, sfdp=True)
    sim, nor = setup(part, b"\xff" * part.size)
    found = nor.identify()
    assert found.size == 1048576 and found.name == "SFDP-9d6014"
    assert found.block_erasers == [(4096, 0x20), (65536, 0xD8)]
    assert found.page_size == 256


def test_unknown_part_without_sfdp_is_refused():
    part = Chip(name="X", vendor="Y", jedec=(0x9D, 0x60, 0x14), size=65536, erasers={0x20: 4096})
    sim, nor = setup(part, b"\xff" * part.size)
    with pytest.raises(RomlabError, match="without SFDP"):
        nor.identify()


def test_no_chip_is_refused():
    class Floating(Programmer):
        def transfer(self, mosi, nread=0):
            return b"\xff" * nread
    with pytest.raises(RomlabError, match="no chip answers"):
        SpiNor(Floating()).identify()


def test_stuck_busy_times_out():
    class Stuck(Programmer):
        def transfer(self, mosi, nread=0):
            return b"\x03" * nread
    nor = SpiNor(Stuck(), chips.by_name("W25X10"))
    with pytest.raises(RomlabError, match="stayed busy"):
        nor.wait_ready(0.05)


def test_stable_read_needs_agreeing_reads_under_faults():
    size = 65536
    data = rand(size, 5)
    sim, nor = setup("W25X05", data, faults=Faults(flip=1e-4, drop=1e-4, seed=11))
    nor.identify()
    for _ in range(3):
        assert writer.stable_read(nor, 0, size) == data
    assert sim.faults.counts["flip"] + sim.faults.counts["drop"] > 0
    sim2, nor2 = setup("W25X05", data, faults=Faults(flip=0.02, seed=11))
    nor2.chip = chips.by_name("W25X05")
    with pytest.raises(RomlabError, match="unreliable"):
        writer.stable_read(nor2, 0, size)
