"""A register-level double of an Intel NIC's BAR0: FLA, EECD/EEC, EERD and EEWR.

No NIC with a SPI flash can be plugged into this machine, and QEMU's emulated
Intel NICs have no FLA register, so the in-system programmers are exercised
against this double. It implements the registers from the facts flashrom and
the Intel datasheets give (see docs/flashing.md) and puts the same chip model
behind them that Debian's flashrom validated through ``romlab serprog-emu``
(``sim.chip.SimChip``), so what the double's flash does is what that model does.

What it models, per register block (at the family's base: 0, 0x10000, 0x12000):

* FLA (+0x1C): SCK bit 0, CS# bit 1 (0 selects), SI bit 2, SO bit 3 (read only),
  REQ bit 4 / GNT bit 5 (arbitration: pins only move while granted), LOCKED
  bit 6 (I210 secure mode), ABORT bit 7 cleared by writing CLR_ERR bit 8.
  The pins drive ``SpiBitSlave``, an SPI mode-0 slave: it samples SI on rising
  edges and moves SO on falling edges, so a master that samples at the wrong
  moment reads the neighbouring bit.
* EECD (+0x10) on flash-write-gated families: FWE bits 5:4 must be 10b for the
  flash to accept program, erase or status writes (01b disables; 00b/11b are
  illegal and counted). Power-on value 01b.
* EEC (+0x10) on the 82580: SK/CS/SI/SO bits 0-3, REQ 6, GNT 7, PRES 8, SIZE
  14:11; bit-banged onto a SPI EEPROM model (``SpiEeprom``). On the I210: FLUPD
  bit 23 commits the shadow RAM to the flash, FLUDONE bit 26 reports it.
* EERD (+0x14): a word read from the NVM, in the family's layout (8254x: DONE
  bit 4, address from bit 8; later parts: DONE bit 1, address from bit 2).
* EEWR (+0x18, I210): CMDV bit 0 writes a word of the 4 KiB shadow RAM, DONE bit 1.

Counters in ``stats`` let tests check what a programmer did (illegal FWE
values, pin moves without a grant, writes the FWE gate blocked).
"""
from __future__ import annotations

import time

from romtools.flash.bar import Bar
from romtools.flash.sim.chip import SimChip

# FLA bits
FL_SCK, FL_CS, FL_SI, FL_SO, FL_REQ, FL_GNT, FL_LOCKED, FL_ABORT, FL_CLR_ERR = (1 << b for b in range(9))
# EECD/EEC bits
EE_SK, EE_CS, EE_SI, EE_SO = 0x1, 0x2, 0x4, 0x8
FWE_MASK, FWE_DISABLED, FWE_ENABLED = 0x30, 0x10, 0x20
EE_REQ, EE_GNT, EE_PRES = 0x40, 0x80, 0x100
EE_FLUPD, EE_FLUDONE = 1 << 23, 1 << 26

EECD, EERD, EEWR, FLA = 0x10, 0x14, 0x18, 0x1C

# Commands whose answer the master clocks out after the command bytes, with the
# number of command bytes (opcode, address, dummy) before the answer starts.
NOR_READS = {0x03: 4, 0x0B: 5, 0x05: 1, 0x9F: 1, 0x90: 4, 0xAB: 4, 0x5A: 4}


class SpiBitSlave:
    """Pin-level front end for a chip model that takes whole transactions.

    Bytes shifted in while CS# is low form the command. A command in the
    chip's ``reads`` table is answered while it is still selected (reads have
    no side effects, so the model is asked as soon as the command is
    complete, and again for more bytes as the master keeps clocking); any
    other command is handed to the model when CS# rises, which is when a real
    part starts a program, erase or status write. ``gate(cmd)`` may veto a
    command at that point (the NIC's FWE gate).
    """

    def __init__(self, chip, reads: dict[int, int] | None = None, gate=None):
        self.chip = chip
        self.reads = reads if reads is not None else getattr(chip, "read_commands", NOR_READS)
        self.gate = gate
        self.selected = False
        self.sck = 0
        self.mosi = 0
        self.cmd = bytearray()
        self.inbits = 0
        self.nbits = 0          # rising edges since CS# fell
        self.out_pos = 0        # bit position SO presents (moves on falling edges)
        self.answer = bytearray()
        self._cached_pos = -1
        self._cached = None

    def pins(self, cs_n: int, sck: int, mosi: int) -> None:
        if self.selected:
            if cs_n:
                self._deselect()
            elif sck:
                if not self.sck:
                    self._rise(mosi)
            elif self.sck:
                self.out_pos = self.nbits
        elif not cs_n:
            self._select()
        self.sck, self.mosi = sck, mosi

    def _select(self) -> None:
        self.selected = True
        self.cmd = bytearray()
        self.inbits = self.nbits = self.out_pos = 0
        self.answer = bytearray()
        self._cached_pos = -1
        self._cached = None

    def _rise(self, mosi: int) -> None:
        self.inbits = (self.inbits << 1) | (1 if mosi else 0)
        self.nbits += 1
        if not self.nbits & 7:
            self.cmd.append(self.inbits & 0xFF)
            self.inbits = 0
            self._cached_pos = -1

    def _deselect(self) -> None:
        self.selected = False
        if not self.cmd:
            return
        if self.cmd[0] in self.reads:
            return                               # a read: nothing happens at CS# rise
        if self.gate is not None and not self.gate(bytes(self.cmd)):
            return
        self.chip.transfer(bytes(self.cmd), 0)

    def exchange(self, mosi: int) -> int:
        """One whole byte clocked while selected (for byte-level masters such as a CH341A)."""
        value = self._answer_byte(self.nbits >> 3)
        self.cmd.append(mosi & 0xFF)
        self.nbits += 8
        self.out_pos = self.nbits
        self._cached_pos = -1
        return 0xFF if value is None else value

    def so(self) -> int:
        """The level of SO now."""
        if not self.selected:
            return 1
        pos = self.out_pos
        byte_pos = pos >> 3
        if byte_pos != self._cached_pos:
            self._cached_pos = byte_pos
            self._cached = self._answer_byte(byte_pos)
        value = self._cached
        if value is None:
            return 1
        return (value >> (7 - (pos & 7))) & 1

    def _answer_byte(self, byte_pos: int) -> int | None:
        if not self.cmd:
            return None
        need = self.reads.get(self.cmd[0])
        if need is None or byte_pos < need or len(self.cmd) < need:
            return None
        index = byte_pos - need
        if self.cmd[0] == 0x05:
            # The status register is live: each byte shows its value at that moment.
            return self.chip.transfer(bytes([0x05]), 1)[0]
        while len(self.answer) <= index:
            self._fetch(need)
        return self.answer[index]

    def _fetch(self, need: int) -> None:
        cmd = bytes(self.cmd[:need])
        have = len(self.answer)
        if cmd[0] in (0x03, 0x0B) and have:
            # Continue a sequential read from where the last fetch ended.
            addr_len = getattr(self.chip, "address_bytes", 3)
            addr = int.from_bytes(cmd[1:1 + addr_len], "big") + have
            cmd = bytes([cmd[0]]) + (addr % (1 << (8 * addr_len))).to_bytes(addr_len, "big") + cmd[1 + addr_len:]
            self.answer += self.chip.transfer(cmd, 256)
        else:
            self.answer = bytearray(self.chip.transfer(cmd, have + 256))


class SpiEeprom:
    """A SPI serial EEPROM (AT25128/256, M95128/256 class), the 82580's NVM part.

    Byte-writable, no erase: WRITE (0x02) with a 16-bit address programs up to
    a 64-byte page (wrapping inside it) after WREN; the part is then busy for
    its write cycle. RDSR shows WIP (bit 0) and WEL (bit 1).
    """

    read_commands = {0x03: 3, 0x05: 1}
    address_bytes = 2

    def __init__(self, size: int, page: int = 64, write_time: float = 50e-6):
        self.mem = bytearray(b"\xff" * size)
        self.size = size
        self.page = page
        self.write_time = write_time
        self.sr = 0
        self.busy_until = 0.0
        self.writes = 0

    def _busy(self) -> bool:
        if self.sr & 1 and time.monotonic() >= self.busy_until:
            self.sr &= ~0x03
        return bool(self.sr & 1)

    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        if not mosi:
            return b"\xff" * nread
        op = mosi[0]
        if self._busy():
            return bytes([self.sr]) * nread if op == 0x05 else b"\xff" * nread
        if op == 0x05:
            return bytes([self.sr]) * nread
        if op == 0x06:
            self.sr |= 0x02
        elif op == 0x04:
            self.sr &= ~0x02
        elif op == 0x03 and len(mosi) >= 3:
            addr = int.from_bytes(mosi[1:3], "big") % self.size
            return bytes(self.mem[(addr + i) % self.size] for i in range(nread))
        elif op == 0x02 and len(mosi) >= 4 and self.sr & 0x02:
            addr = int.from_bytes(mosi[1:3], "big") % self.size
            base = addr - addr % self.page
            for i, b in enumerate(mosi[3:3 + self.page]):
                self.mem[base + (addr - base + i) % self.page] = b
            self.writes += 1
            self.sr |= 0x01
            self.busy_until = time.monotonic() + self.write_time
        return b"\xff" * nread


class NicBarDouble(Bar):
    """BAR0 of an Intel NIC as the in-system programmers see it.

    ``family`` is a ``nicfamily.Family``. ``chip`` is the flash behind FLA (a
    ``SimChip``) or None; ``nvm`` the NVM words EERD returns on families whose
    NVM is a separate EEPROM (8254x/8257x/82599); ``eeprom`` the SPI EEPROM of
    an 82580. ``grant_after`` is how many FLA/EEC reads pass before a request
    is granted (None: never, as when the NIC's own engine holds the bus).
    ``fwe_writable=False`` is a NIC that ignores writes to EECD.FWE.
    """

    def __init__(self, family, chip: SimChip | None = None, nvm: list[int] | None = None,
                 eeprom: SpiEeprom | None = None, grant_after: int | None = 0, locked: bool = False,
                 abort: bool = False, sticky_abort: bool = False, flupd_works: bool = True,
                 eerd_works: bool = True, fwe_writable: bool = True):
        self.family = family
        self.fwe_writable = fwe_writable
        self.base = family.base
        self.chip = chip
        self.grant_after = grant_after
        self.locked = locked
        self.abort = abort
        self.sticky_abort = sticky_abort
        self.flupd_works = flupd_works
        self.eerd_works = eerd_works
        self.eecd = FWE_DISABLED if family.fwe else 0
        self.fla = FL_CS
        self.eerd = 0
        self.eewr = 0
        self.req_reads = 0
        self.eeprom = eeprom
        self.stats = {"illegal_fwe": 0, "ungranted_moves": 0, "blocked_writes": 0, "flash_updates": 0, "eewr_writes": 0, "eerd_reads": 0,
                      "fwe_enabled_at_end": None}
        self.spi = SpiBitSlave(chip, gate=self._fwe_gate) if chip is not None else None
        self.eespi = SpiBitSlave(eeprom) if eeprom is not None else None
        if family.nvm_write == "spi-eeprom" and eeprom is not None:
            size_code = {16384: 7, 32768: 8}.get(eeprom.size, 0)
            self.eecd = EE_PRES | (size_code << 11) | EE_CS
        if family.nvm_write == "i210":
            self.shadow = [0xFFFF] * 2048
            if chip is not None:
                raw = bytes(chip.mem[0:4096])
                self.shadow = [raw[2 * i] | raw[2 * i + 1] << 8 for i in range(2048)]
            self.eecd = EE_PRES
        self.nvm = list(nvm) if nvm is not None else None

    # --- the NVM words EERD reads --------------------------------------------
    def _nvm_word(self, addr: int) -> int | None:
        if self.family.nvm_write == "i210":
            return self.shadow[addr] if addr < len(self.shadow) else None
        if self.eeprom is not None:
            if 2 * addr + 1 >= self.eeprom.size:
                return None
            return self.eeprom.mem[2 * addr] | self.eeprom.mem[2 * addr + 1] << 8
        if self.nvm is not None and addr < len(self.nvm):
            return self.nvm[addr]
        return None

    def _fwe_gate(self, cmd: bytes) -> bool:
        if not self.family.fwe:
            return True
        if cmd[0] in (0x06, 0x04, 0x50):
            return True                          # WREN/WRDI/EWSR change no data
        if self.eecd & FWE_MASK != FWE_ENABLED:
            self.stats["blocked_writes"] += 1
            return False
        return True

    # --- Bar -----------------------------------------------------------------
    def read32(self, offset: int) -> int:
        reg = offset - self.base
        if reg == FLA and self.spi is not None:
            fla = self.fla
            if fla & FL_REQ and not fla & FL_GNT and self.grant_after is not None:
                self.req_reads += 1
                if self.req_reads > self.grant_after:
                    self.fla = fla = fla | FL_GNT
            value = fla
            if self.spi.so():
                value |= FL_SO
            if self.locked:
                value |= FL_LOCKED
            if self.abort:
                value |= FL_ABORT
            return value
        if reg == EECD:
            value = self.eecd
            if self.eespi is not None:
                if self.eecd & EE_REQ and self.grant_after is not None:
                    self.req_reads += 1
                    if self.req_reads > self.grant_after:
                        self.eecd |= EE_GNT
                value = self.eecd & ~EE_SO
                if self.eespi.so():
                    value |= EE_SO
            return value
        if reg == EERD:
            return self.eerd
        if reg == EEWR:
            return self.eewr
        return 0

    def write32(self, offset: int, value: int) -> None:
        reg = offset - self.base
        value &= 0xFFFFFFFF
        if reg == FLA and self.spi is not None:
            pins = value & 0x7                       # SCK, CS#, SI
            fla = self.fla
            if value & FL_REQ and fla & FL_GNT and not value & FL_CLR_ERR:
                # The hot path: the programmer owns the bus and moves pins.
                self.fla = FL_GNT | FL_REQ | pins
                if not self.locked:
                    self.spi.pins(pins & FL_CS, pins & FL_SCK, pins & FL_SI)
                return
            if value & FL_CLR_ERR and not self.sticky_abort:
                self.abort = False
            if not value & FL_REQ:
                self.fla = FL_CS
                self.req_reads = 0
                self.spi.pins(1, 0, 0)
                return
            if pins != fla & 0x7 and not fla & FL_GNT:
                self.stats["ungranted_moves"] += 1
                pins = fla & 0x7
            self.fla = (fla & FL_GNT) | FL_REQ | pins
            if fla & FL_GNT and not self.locked:
                self.spi.pins(pins & FL_CS, pins & FL_SCK, pins & FL_SI)
            return
        if reg == EECD:
            self._write_eecd(value)
            return
        if reg == EERD:
            self._write_eerd(value)
            return
        if reg == EEWR and self.family.nvm_write == "i210":
            self._write_eewr(value)

    def _write_eecd(self, value: int) -> None:
        fam = self.family
        if fam.nvm_write == "i210":
            if value & EE_FLUPD:
                self.eecd &= ~EE_FLUDONE
                if self.flupd_works:
                    self._commit_shadow()
                    self.eecd |= EE_FLUDONE
            return
        if self.eespi is not None:
            keep = self.eecd & (EE_PRES | (0xF << 11) | EE_GNT)
            if not value & EE_REQ:
                keep &= ~EE_GNT
                self.req_reads = 0
            pins = value & (EE_SK | EE_CS | EE_SI)
            granted = keep & EE_GNT
            if not granted and pins != self.eecd & (EE_SK | EE_CS | EE_SI):
                self.stats["ungranted_moves"] += 1
                pins = self.eecd & (EE_SK | EE_CS | EE_SI)
            self.eecd = keep | (value & EE_REQ) | pins
            if granted:
                self.eespi.pins(1 if pins & EE_CS else 0, 1 if pins & EE_SK else 0, 1 if pins & EE_SI else 0)
            return
        if fam.fwe:
            fwe = value & FWE_MASK
            if fwe in (0, FWE_MASK):
                self.stats["illegal_fwe"] += 1
            if not self.fwe_writable:
                value = (value & ~FWE_MASK) | (self.eecd & FWE_MASK)
                fwe = value & FWE_MASK
            self.eecd = value
            self.stats["fwe_enabled_at_end"] = fwe == FWE_ENABLED

    def _write_eerd(self, value: int) -> None:
        done_bit, shift = self.family.eerd
        if not value & 1:
            self.eerd = value
            return
        mask = 0xFF if shift == 8 else 0x3FFF
        addr = (value >> shift) & mask
        self.stats["eerd_reads"] += 1
        word = self._nvm_word(addr) if self.eerd_works else None
        if word is None:
            self.eerd = (value & ~1) & 0xFFFF & ~(1 << done_bit)
            return
        self.eerd = (word << 16) | (1 << done_bit) | (addr << shift)

    def _write_eewr(self, value: int) -> None:
        if not value & 1:
            self.eewr = value & ~2
            return
        addr = (value >> 2) & 0x3FFF
        if addr < len(self.shadow):
            self.shadow[addr] = value >> 16
            self.stats["eewr_writes"] += 1
        self.eewr = (value & ~1) | 2

    def _commit_shadow(self) -> None:
        """The I210's own engine writes the shadow RAM to the flash's first NVM bank."""
        if self.chip is None:
            return
        data = b"".join(w.to_bytes(2, "little") for w in self.shadow)
        self.chip.mem[0:4096] = data
        self.chip.erase_counts[0] += 1
        self.stats["flash_updates"] += 1
