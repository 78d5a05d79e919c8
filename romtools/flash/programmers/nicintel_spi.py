"""``nicintel_spi``: an Intel NIC's own SPI flash, bit-banged through its FLA register.

8254x, 8257x, 82599 and I210 controllers let software take the pins of their
flash interface: set FLA.REQ, wait for FLA.GNT (the NIC's own engine may be
using the bus, so the wait has a time-out), then drive SCK, CS# and SI and read
SO one bit at a time. Transfers are SPI mode 0, MSB first: SI changes while SCK
is low and the flash samples it on the rising edge; SO is read while SCK is low,
after the falling edge that moved it. The bus is requested for each command and
released after it, so the NIC's engine can run between commands.

Writes are gated twice on the older families: EECD.FWE (bits 5:4) must read 10b,
and it is put back to 01b ("writes disabled") when the programmer closes,
whatever happened, leaving EECD's other bits (which have side effects) as they
were. On the I210 there is no FWE; instead FLA.LOCKED reports the flash in
"secure mode", where raw access is refused, and FLA.ABORT a previous access
error, cleared with FLA.CLR_ERR (and refused if it does not clear).

SIGINT and SIGTERM are held (``hw.signals``) while the programmer is open and let
through between SPI commands, so a command is never cut in half on the wire: the
hold ends, the signal is handled as it would have been (KeyboardInterrupt, the
program's own handler), and if that handler returns the hold is taken again. A
signal after the last command is delivered when the programmer closes. Only the
main thread can hold signals, so the programmer opens only there.
"""
from __future__ import annotations

import contextlib
import time

from hw import signals
from hw.errors import FlashError
from romtools.flash.programmers.base import Programmer

EECD, FLA = 0x10, 0x1C
FL_SCK, FL_CS, FL_SI, FL_SO, FL_REQ, FL_GNT, FL_LOCKED, FL_ABORT, FL_CLR_ERR = (1 << b for b in range(9))
FWE_MASK, FWE_DISABLED, FWE_ENABLED = 0x30, 0x10, 0x20


class NicFlashError(FlashError):
    pass


class NicIntelSpi(Programmer):
    name = "nicintel_spi"
    max_read = 4096            # release the bus between 4 KiB reads so the NIC's engine can run
    max_write = 4 + 256

    def __init__(self, regs, family, where: str = "", grant_timeout: float = 1.0):
        """``regs`` is a Bar positioned at the family's register block."""
        self.regs = regs
        self.family = family
        self.where = where or family.name
        self.grant_timeout = grant_timeout
        self.fwe_set = False
        self.on_close = []          # e.g. unmapping the BAR, giving the device back to its driver
        self._hold_signals()
        try:
            self._check_fla()
            if family.fwe:
                self._enable_writes()
        except BaseException:
            self._hold.close()
            raise

    # --- signals ---------------------------------------------------------------
    def _hold_signals(self) -> None:
        self._hold = contextlib.ExitStack()
        self._hold.enter_context(signals.held())

    def _let_signals_through(self) -> None:
        """Between commands: a signal noted since the last one is delivered now, and the hold
        taken again if its handler returns."""
        if signals.pending():
            self._hold.close()
            self._hold_signals()

    # --- opening and closing ------------------------------------------------
    def _check_fla(self) -> None:
        fla = self.regs.read32(FLA)
        if fla == 0xFFFFFFFF:
            raise NicFlashError(f"{self.where}: FLA reads 0xffffffff; the device is not answering (powered "
                                "down, or BAR 0 is not mapped)")
        if fla & FL_LOCKED:
            raise NicFlashError(f"{self.where}: the flash is in secure mode (FLA.LOCKED), which blocks raw "
                                "flash access; update it through the NVM path Intel's tools use, or clip a "
                                "programmer on the flash chip")
        if fla & FL_ABORT:
            self.regs.write32(FLA, (fla | FL_CLR_ERR) & ~(FL_SCK | FL_SI))
            if self.regs.read32(FLA) & FL_ABORT:
                raise NicFlashError(f"{self.where}: a previous flash access error (FLA.ABORT) does not clear")

    def _enable_writes(self) -> None:
        eecd = self.regs.read32(EECD)
        self.regs.write32(EECD, (eecd & ~FWE_MASK) | FWE_ENABLED)
        self.fwe_set = True
        if self.regs.read32(EECD) & FWE_MASK != FWE_ENABLED:
            self.close()
            raise NicFlashError(f"{self.where}: the NIC did not accept flash writes enabled (EECD.FWE)")

    def close(self) -> None:
        try:
            if getattr(self, "regs", None) is None:
                return
            fla = self.regs.read32(FLA)
            if fla & FL_REQ:
                self.regs.write32(FLA, (fla | FL_CS) & ~(FL_REQ | FL_SCK | FL_SI))
            if self.fwe_set:
                eecd = self.regs.read32(EECD)
                self.regs.write32(EECD, (eecd & ~FWE_MASK) | FWE_DISABLED)
                self.fwe_set = False
        finally:
            self.regs = None
            callbacks, self.on_close = self.on_close, []
            try:
                for cb in callbacks:     # still held: giving the driver back is not cut short
                    cb()
            finally:
                self._hold.close()       # a signal noted since the last command goes off here

    def describe(self) -> str:
        return f"nicintel_spi {self.where}"

    # --- SPI -------------------------------------------------------------------
    def _request(self) -> int:
        regs = self.regs
        fla = regs.read32(FLA) & ~(FL_SCK | FL_SI | FL_CLR_ERR)
        fla |= FL_CS | FL_REQ
        regs.write32(FLA, fla)
        deadline = None
        while True:
            v = regs.read32(FLA)
            if v & FL_GNT:
                return (v & ~(FL_SO | FL_GNT | FL_LOCKED | FL_ABORT | FL_SCK | FL_SI)) | FL_CS | FL_REQ
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.grant_timeout
            elif now > deadline:
                regs.write32(FLA, fla & ~FL_REQ)
                raise NicFlashError(f"{self.where}: the NIC did not grant the flash bus (FLA.GNT) within "
                                    f"{self.grant_timeout:g} s; its own engine or the kernel driver is using "
                                    "the flash: unbind the driver and retry")

    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        if self.regs is None:
            raise NicFlashError(f"{self.where}: the programmer is closed")
        self._let_signals_through()
        regs = self.regs
        base = self._request() & ~FL_CS          # CS# low selects the flash
        # Bit-banging is a few million register accesses per megabyte: call the
        # underlying BAR directly rather than through a Window per access.
        offset = FLA
        while hasattr(regs, "bar") and hasattr(regs, "base"):
            offset += regs.base
            regs = regs.bar
        write = regs.write32
        read = regs.read32
        write(offset, base)
        hi = base | FL_SCK
        si1, hi1 = base | FL_SI, hi | FL_SI
        for byte in mosi:
            for shift in (7, 6, 5, 4, 3, 2, 1, 0):
                if (byte >> shift) & 1:
                    write(offset, si1)
                    write(offset, hi1)
                else:
                    write(offset, base)
                    write(offset, hi)
        out = bytearray(nread)
        for i in range(nread):
            value = 0
            for _ in range(8):
                write(offset, base)
                value = (value << 1) | ((read(offset) >> 3) & 1)
                write(offset, hi)
            out[i] = value
        write(offset, base)
        write(offset, base | FL_CS)
        write(offset, (base | FL_CS) & ~FL_REQ)
        return bytes(out)
