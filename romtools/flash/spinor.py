"""Talking to a SPI NOR part through any programmer.

Identification follows the order that copes with old and new parts alike:
JEDEC RDID (0x9F), then REMS (0x90), then RES (0xAB); an ID of all 0x00 or
all 0xFF means nothing answered. A part missing from ``chips.CHIPS`` is
described by its SFDP table. Every wait on the busy bit has a time-out, so a
dead or unplugged chip ends in an error instead of a hang.
"""
from __future__ import annotations

import time
from collections import Counter

from hw.errors import FlashError, RomlabError
from romtools.flash import chips as chipdb
from romtools.flash import sfdp as sfdpmod
from romtools.flash.chips import Chip

RDID, REMS, RES, SFDP = 0x9F, 0x90, 0xAB, 0x5A
WREN, WRDI, RDSR, WRSR, EWSR = 0x06, 0x04, 0x05, 0x01, 0x50
READ, PP, AAI = 0x03, 0x02, 0xAD
SR_WIP, SR_WEL, SR_SRP = 0x01, 0x02, 0x80

# Worst-case datasheet times, with margin, for the time-outs.
TIMEOUTS = {"pp": 0.05, "wrsr": 0.2, 4096: 1.0, 32768: 2.0, 65536: 4.0, "chip": 120.0}


class ChipError(FlashError):
    """The chip did something a working part would not (stuck busy, no ID)."""


def _blank(ident: bytes) -> bool:
    return all(b == 0xFF for b in ident) or all(b == 0x00 for b in ident)


class SpiNor:
    def __init__(self, prog, chip: Chip | None = None):
        self.prog = prog
        self.chip = chip
        self.ids: dict = {}
        self.sfdp_info = None

    # --- identification --------------------------------------------------
    def _stable(self, mosi: bytes, n: int, tries: int = 3) -> bytes:
        """An ID read three times; the majority answer, so one glitch cannot misidentify."""
        answers = Counter(self.prog.transfer(mosi, n) for _ in range(tries))
        value, count = answers.most_common(1)[0]
        if count * 2 <= tries:
            raise ChipError("the chip's ID reads differ each time (%s); the connection is unreliable"
                            % ", ".join(a.hex() for a in answers))
        return value

    def identify(self) -> Chip:
        # A chip left mid-erase (the host died, the cable was pulled) ignores every command but
        # RDSR until it is done, and would read as absent: let it finish first. An all-ones
        # status is what an empty bus reads, so it is left to the ID reads below to judge.
        sr = self.status()
        if sr != 0xFF and sr & SR_WIP:
            self.wait_ready(TIMEOUTS["chip"], first=sr)
        rdid = self._stable(bytes([RDID]), 3)
        self.ids["jedec"] = rdid.hex()
        chip = None
        if not _blank(rdid):
            chip = chipdb.by_jedec(*rdid)
        else:
            rems = self._stable(bytes([REMS, 0, 0, 0]), 2)
            self.ids["rems"] = rems.hex()
            if not _blank(rems):
                chip = chipdb.by_rems(*rems)
            else:
                res = self._stable(bytes([RES, 0, 0, 0]), 1)
                self.ids["res"] = res.hex()
                if not _blank(res):
                    chip = next((c for c in chipdb.CHIPS if c.res == res[0] and c.jedec[0] == 0x20), None)
                if chip is None:
                    raise ChipError("no chip answers: JEDEC ID %s, REMS %s, RES %s; check the clip or "
                                    "cable, the chip's power and that the board is off"
                                    % (rdid.hex(" "), rems.hex(" "), res.hex(" ")))
        if chip is None or chip.sfdp:
            info = self.read_sfdp()
            if chip is None:
                if info is None:
                    raise ChipError("unknown chip (JEDEC ID %s) without SFDP; romlab does not know "
                                    "its size or erase commands" % rdid.hex(" "))
                chip = self._chip_from_sfdp(rdid, info)
            elif info is not None and info.size != chip.size:
                raise ChipError("the chip's SFDP says %d bytes but %s has %d; refusing an ambiguous part"
                                % (info.size, chip.name, chip.size))
        self.chip = chip
        return chip

    def read_sfdp(self):
        # Read the dummy byte as data instead of sending it: some programmers
        # mishandle a MOSI dummy, and the chip does not care which way it comes.
        raw = self.prog.transfer(bytes([SFDP, 0, 0, 0]), 1 + 256)[1:]
        try:
            self.sfdp_info = sfdpmod.parse(raw)
        except RomlabError:
            self.sfdp_info = None
        return self.sfdp_info

    @staticmethod
    def _chip_from_sfdp(rdid: bytes, info) -> Chip:
        erasers = dict(info.erase_types)
        erasers[0xC7] = info.size
        return Chip(name="SFDP-%s" % rdid.hex(), vendor="JEDEC 0x%02x" % rdid[0], jedec=tuple(rdid),
                    size=info.size, erasers=erasers, page_size=max(1, info.page_size),
                    write="page" if info.page_size > 1 else "byte", sfdp=True)

    # --- status ----------------------------------------------------------
    def status(self) -> int:
        return self.prog.transfer(bytes([RDSR]), 1)[0]

    def wait_ready(self, timeout: float, first: int | None = None) -> int:
        """Poll WIP until clear; short waits are polled at once, long ones back off."""
        sr = first if first is not None else self.status()
        if not sr & SR_WIP:
            return sr
        deadline = time.monotonic() + timeout
        delay = 20e-6
        while True:
            sr = self.status()
            if not sr & SR_WIP:
                return sr
            if time.monotonic() > deadline:
                raise ChipError("the chip stayed busy for more than %.1f s; it may be dead or "
                                "write-protected by its WP# pin" % timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    # --- protection --------------------------------------------------------
    def protection(self) -> int:
        return self.status() & (self.chip.bp_mask | SR_SRP)

    def write_status(self, value: int) -> int:
        self.prog.transfer_many([(bytes([self.chip.wrsr_enable]), 0), (bytes([WRSR, value]), 0)])
        return self.wait_ready(TIMEOUTS["wrsr"])

    def unprotect(self) -> int:
        """Clear the block-protect bits; returns the bits found, for ``reprotect``."""
        found = self.protection()
        if not found & self.chip.bp_mask:
            return 0
        sr = self.write_status(self.status() & ~(self.chip.bp_mask | SR_SRP))
        if sr & self.chip.bp_mask:
            raise ChipError("the chip's block protection (status 0x%02x) could not be cleared; its "
                            "WP# pin is probably held low with SRP set" % sr)
        return found

    def reprotect(self, bits: int) -> None:
        if bits:
            self.write_status((self.status() & ~(self.chip.bp_mask | SR_SRP)) | bits)

    # --- data ----------------------------------------------------------------
    def read(self, addr: int, length: int, chunk: int = 65536) -> bytes:
        chunk = min(chunk, self.prog.max_read)
        ops = []
        pos = addr
        while pos < addr + length:
            n = min(chunk, addr + length - pos)
            ops.append((bytes([READ]) + pos.to_bytes(3, "big"), n))
            pos += n
        return b"".join(self.prog.transfer_many(ops))

    def erase(self, op: int, addr: int, size: int) -> None:
        mosi = bytes([op]) if op in chipdb.CHIP_ERASE_OPS else bytes([op]) + addr.to_bytes(3, "big")
        res = self.prog.transfer_many([(bytes([WREN]), 0), (mosi, 0), (bytes([RDSR]), 1)])
        key = "chip" if op in chipdb.CHIP_ERASE_OPS else size
        self.wait_ready(TIMEOUTS.get(key, TIMEOUTS["chip"]), first=res[2][0])

    def program(self, addr: int, data: bytes) -> None:
        """Program ``data`` (already split so it does not cross a page)."""
        if self.chip.write == "page":
            res = self.prog.transfer_many([(bytes([WREN]), 0),
                                           (bytes([PP]) + addr.to_bytes(3, "big") + data, 0),
                                           (bytes([RDSR]), 1)])
            self.wait_ready(TIMEOUTS["pp"], first=res[2][0])
        elif self.chip.write == "aai":
            self._program_aai(addr, data)
        else:
            for i, b in enumerate(data):
                res = self.prog.transfer_many([(bytes([WREN]), 0),
                                               (bytes([PP]) + (addr + i).to_bytes(3, "big") + bytes([b]), 0),
                                               (bytes([RDSR]), 1)])
                self.wait_ready(TIMEOUTS["pp"], first=res[2][0])

    def _program_aai(self, addr: int, data: bytes) -> None:
        """SST auto-address-increment: word by word, ended by WRDI."""
        if addr & 1:
            data = b"\xff" + data
            addr -= 1
        if len(data) & 1:
            data += b"\xff"
        first = True
        for i in range(0, len(data), 2):
            word = data[i:i + 2]
            mosi = (bytes([AAI]) + (addr + i).to_bytes(3, "big") + word) if first else bytes([AAI]) + word
            ops = ([(bytes([WREN]), 0)] if first else []) + [(mosi, 0), (bytes([RDSR]), 1)]
            res = self.prog.transfer_many(ops)
            self.wait_ready(TIMEOUTS["pp"], first=res[-1][0])
            first = False
        self.prog.transfer(bytes([WRDI]), 0)

    def pages(self, addr: int, data: bytes):
        """(address, bytes) pieces of ``data`` that each stay inside one page."""
        page = self.chip.page_size if self.chip.write == "page" else 256
        pos = 0
        while pos < len(data):
            a = addr + pos
            n = min(page - a % page, len(data) - pos)
            yield a, data[pos:pos + n]
            pos += n
