"""nicintel_spi against the register-level double of BAR0 (romtools.flash.sim.nic).

No Intel NIC with a SPI flash exists on this machine and QEMU's Intel models have
no FLA register, so the FLA/EECD side runs against the double, which puts the
chip model that Debian's flashrom validated through `romlab serprog-emu`
(tests/test_serprog_emu.py) behind pins that follow the reference facts: FLA
bits SCK 0, CS# 1, SI 2, SO 3, REQ 4, GNT 5, LOCKED 6, ABORT 7, CLR_ERR 8; EECD.FWE
bits 5:4 with 01b = writes disabled and 10b = enabled; register blocks at
BAR0+0 (8254x/8257x), +0x10000 (82599), +0x12000 (I210).
"""
from __future__ import annotations

import os
import random
import signal
import threading

import pytest

from hw import signals
from hw.mmio import Window
from hw.parts import FAMILIES, family_of
from romtools.flash import chips, writer
from romtools.flash.programmers.nicintel_spi import NicFlashError, NicIntelSpi
from romtools.flash.sim.chip import SimChip
from romtools.flash.sim.nic import NicBarDouble
from romtools.flash.spinor import SpiNor

FAM = {f.key: f for f in FAMILIES}


def rand(n, seed):
    return random.Random(seed).randbytes(n)


def rig(family="8257x", chip="W25X10", contents=None, base=None, **kw):
    part = chips.by_name(chip)
    sim = SimChip(part, bytearray(contents if contents is not None else rand(part.size, 1)))
    dbl = NicBarDouble(FAM[family], chip=sim, **kw)
    fam = FAM[family]
    regs = Window(dbl, fam.base if base is None else base)
    return sim, dbl, regs


def test_family_table_places_register_blocks_as_flashrom_does():
    # Device IDs from flashrom's nicintel_spi table, bases from its init code.
    assert family_of(0x8086, 0x10D3).key == "8257x" and family_of(0x8086, 0x10D3).base == 0
    assert family_of(0x8086, 0x1076).key == "8254x" and family_of(0x8086, 0x1076).base == 0
    assert family_of(0x8086, 0x10FB).key == "82599" and family_of(0x8086, 0x10FB).base == 0x10000
    assert family_of(0x8086, 0x1533).key == "i210" and family_of(0x8086, 0x1533).base == 0x12000
    assert family_of(0x8086, 0x1533).rom_start == 0x2000
    assert family_of(0x14E4, 0x1657) is None and family_of(0x8086, 0x1234) is None


def test_identify_read_and_minimal_write_through_fla():
    old = rand(131072, 1)
    sim, dbl, regs = rig(contents=old)
    prog = NicIntelSpi(regs, FAM["8257x"])
    nor = SpiNor(prog)
    chip = nor.identify()
    assert (chip.name, chip.jedec_hex, chip.size) == ("W25X10", "ef3011", 131072)
    assert writer.stable_read(nor, 0, 131072) == old
    # While the programmer is open the flash accepts writes: EECD.FWE = 10b.
    assert dbl.eecd & 0x30 == 0x20
    new = bytearray(old)
    new[0x1000:0x2000] = rand(4096, 2)            # needs an erase
    new[0x5000:0x5010] = b"\x00" * 16             # only clears bits: program, no erase
    stats = writer.write(nor, old, bytes(new))
    assert writer.verify(nor, bytes(new)) == []
    assert bytes(sim.mem) == bytes(new)
    assert stats["erased"] == 4096
    assert sim.erase_counts[1] == 1 and sum(sim.erase_counts) == 1
    prog.close()
    # Closed: writes disabled again (01b), the other EECD bits untouched, the bus released.
    assert dbl.eecd & 0x30 == 0x10
    assert dbl.fla & 0x30 == 0 and dbl.fla & 0x2
    assert dbl.stats["illegal_fwe"] == 0 and dbl.stats["ungranted_moves"] == 0
    assert dbl.stats["blocked_writes"] == 0


@pytest.mark.parametrize("family", ["8254x", "82599", "i210"])
def test_each_family_at_its_register_base(family):
    sim, dbl, regs = rig(family=family, chip="W25X05", contents=rand(65536, 3))
    with NicIntelSpi(regs, FAM[family]) as prog:
        nor = SpiNor(prog)
        assert nor.identify().name == "W25X05"
        assert nor.read(0x8000, 256) == bytes(sim.mem[0x8000:0x8100])


def test_wrong_register_base_is_caught():
    # The 82599's block looked for at BAR0+0: EECD reads 0 there, FWE never sets.
    sim, dbl, regs = rig(family="82599", chip="W25X05", base=0)
    with pytest.raises(NicFlashError, match="EECD.FWE"):
        NicIntelSpi(regs, FAM["82599"])
    # The I210's block looked for at BAR0+0: FLA reads 0, GNT never comes.
    sim, dbl, regs = rig(family="i210", chip="W25X05", base=0)
    prog = NicIntelSpi(regs, FAM["i210"], grant_timeout=0.1)
    with pytest.raises(NicFlashError, match="did not grant the flash bus"):
        SpiNor(prog).identify()
    prog.close()


def test_grant_time_out_and_late_grant():
    sim, dbl, regs = rig(grant_after=None)
    prog = NicIntelSpi(regs, FAM["8257x"], grant_timeout=0.2)
    with pytest.raises(NicFlashError, match=r"FLA\.GNT.*0\.2 s.*unbind the driver"):
        prog.transfer(b"\x9f", 3)
    assert not dbl.fla & 0x10              # the request was withdrawn
    prog.close()
    assert dbl.eecd & 0x30 == 0x10
    # A grant that comes after some polling is waited for.
    sim, dbl, regs = rig(grant_after=40)
    with NicIntelSpi(regs, FAM["8257x"]) as prog:
        assert prog.transfer(b"\x9f", 3) == bytes.fromhex("ef3011")


def test_writes_blocked_when_the_nic_keeps_fwe_disabled():
    sim, dbl, regs = rig(fwe_writable=False)
    with pytest.raises(NicFlashError, match="EECD.FWE"):
        NicIntelSpi(regs, FAM["8257x"])
    # The double's gate is real: with FWE left at 01b an erase does not reach the chip.
    before = bytes(sim.mem)
    fam = FAM["8254x"]                      # no FWE handling in a raw session
    raw = NicIntelSpi.__new__(NicIntelSpi)
    raw.regs, raw.family, raw.where, raw.grant_timeout, raw.fwe_set = regs, fam, "raw", 0.5, False
    raw.on_close = []
    raw._hold_signals()
    raw.transfer(b"\x06")
    raw.transfer(b"\x20\x00\x00\x00")
    raw.close()
    assert bytes(sim.mem) == before and dbl.stats["blocked_writes"] == 1


def test_i210_secure_mode_and_access_errors():
    sim, dbl, regs = rig(family="i210", locked=True)
    with pytest.raises(NicFlashError, match="secure mode"):
        NicIntelSpi(regs, FAM["i210"])
    # An old access error is cleared with CLR_ERR, then the flash works; no FWE on the I210.
    sim, dbl, regs = rig(family="i210", abort=True)
    with NicIntelSpi(regs, FAM["i210"]) as prog:
        assert not dbl.abort
        assert prog.transfer(b"\x9f", 3) == bytes.fromhex("ef3011")
    assert dbl.stats["illegal_fwe"] == 0 and dbl.eecd & 0x30 == 0
    sim, dbl, regs = rig(family="i210", abort=True, sticky_abort=True)
    with pytest.raises(NicFlashError, match="does not clear"):
        NicIntelSpi(regs, FAM["i210"])


def test_double_moves_so_on_falling_edges():
    """A master that samples after the falling edge gets the next bit: the double is strict."""
    sim, dbl, regs = rig()
    regs.write32(0x1C, 0x10 | 0x2)
    regs.read32(0x1C)                       # grant
    base = 0x10                             # REQ, CS# low, SCK low
    regs.write32(0x1C, base)
    for bit in "10011111":                  # RDID
        si = 0x4 if bit == "1" else 0
        regs.write32(0x1C, base | si)
        regs.write32(0x1C, base | si | 0x1)
    regs.write32(0x1C, base)                # SCK low: the answer's first bit is on SO
    bits = ""
    for _ in range(24):
        regs.write32(0x1C, base | 0x1)
        regs.write32(0x1C, base)            # rise, fall, then sample: always one bit late
        bits += "1" if regs.read32(0x1C) & 0x8 else "0"
    regs.write32(0x1C, 0x2)
    assert int(bits, 2) == (0xEF3011 << 1) & 0xFFFFFF


def test_signals_wait_for_the_end_of_a_command():
    """Ctrl-C while the programmer is open is noted, and acted on before the next command starts."""
    sim, dbl, regs = rig()
    prog = NicIntelSpi(regs, FAM["8257x"])
    try:
        os.kill(os.getpid(), signal.SIGINT)         # held while the programmer is open
        assert signals.pending() == (signal.SIGINT,)
        with pytest.raises(KeyboardInterrupt):
            prog.transfer(b"\x9f", 3)               # acted on before the next command starts
        assert dbl.fla & 0x2 and not dbl.fla & 0x10 and not dbl.spi.selected
    finally:
        prog.close()
    assert dbl.eecd & 0x30 == 0x10


def test_review6_a_handler_that_returns_lets_the_session_go_on_held():
    """A program's own SIGTERM handler runs between commands, then the hold is back in place."""
    sim, dbl, regs = rig()
    seen = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with NicIntelSpi(regs, FAM["8257x"]) as prog:
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
            assert prog.transfer(b"\x9f", 3) == bytes.fromhex("ef3011")
            assert seen == [signal.SIGTERM]
            os.kill(os.getpid(), signal.SIGTERM)    # held again
            assert seen == [signal.SIGTERM] and signals.pending() == (signal.SIGTERM,)
        assert seen == [signal.SIGTERM, signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)        # the caller's handler is back, unheld
        assert seen == [signal.SIGTERM] * 3
    finally:
        signal.signal(signal.SIGTERM, old)


def test_review6_a_signal_after_the_last_command_is_delivered_at_close():
    sim, dbl, regs = rig()
    seen = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        prog = NicIntelSpi(regs, FAM["8257x"])
        prog.transfer(b"\x9f", 3)
        os.kill(os.getpid(), signal.SIGTERM)        # after the last check
        assert seen == []
        prog.close()
        assert seen == [signal.SIGTERM] and dbl.eecd & 0x30 == 0x10
    finally:
        signal.signal(signal.SIGTERM, old)


def test_review6_the_programmer_is_not_opened_off_the_main_thread():
    """Off the main thread no signal can be held; opening there is refused, not done unheld."""
    sim, dbl, regs = rig()
    got = []

    def worker():
        try:
            NicIntelSpi(regs, FAM["8257x"])
            got.append("opened")
        except RuntimeError as exc:
            got.append(str(exc))
    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert len(got) == 1 and "main thread" in got[0], got
    assert dbl.eecd & 0x30 != 0x20                 # writes never enabled
