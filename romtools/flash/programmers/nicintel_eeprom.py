"""``nicintel_eeprom``: an Intel NIC's NVM words, read through EERD and written the family's way.

Reading is the same on every supported family: write the word address and
START to EERD, poll DONE (with a time-out), take the data from bits 31:16. The
field positions differ by generation (``Family.eerd``).

Writing differs:

* I210 (``i210``): the NVM is a 4 KiB shadow RAM in the controller, loaded from
  the first bank of the flash. EEWR (CMDV bit 0, DONE bit 1, address from bit
  2, data bits 31:16) writes a word of the shadow RAM; nothing reaches the
  flash until EEC.FLUPD (bit 23) is set, after which EEC.FLUDONE (bit 26)
  reports the flash updated. ``commit()`` does that, once, after all words.
* 82580 (``spi-eeprom``): the NVM is a SPI EEPROM on the EEC pins. Software
  requests them (EEC.REQ bit 6, grant in EEC.GNT bit 7), then bit-bangs the
  EEPROM: WREN, WRITE with a 16-bit byte address and up to one 64-byte page,
  RDSR until the write cycle ends. The pins and REQ are put back as they were.
* Other families: read only. Their NVM is written by the kernel driver
  (``ethtool -E``), which romlab points to.

Every wait has a time-out and ends in a one-line error naming the register.
"""
from __future__ import annotations

import time

from hw.errors import FlashError

EEC, EERD, EEWR = 0x10, 0x14, 0x18
EE_SK, EE_CS, EE_SI, EE_SO, EE_REQ, EE_GNT, EE_PRES = 0x1, 0x2, 0x4, 0x8, 0x40, 0x80, 0x100
EE_FLUPD, EE_FLUDONE = 1 << 23, 1 << 26
EE_PAGE = 64
UNPROGRAMMED_82580 = 0x1509


class NvmError(FlashError):
    pass


class NvmAccess:
    """NVM words of one NIC through its registers (``regs``: a Bar at the family's block)."""

    def __init__(self, regs, family, device: int = 0, where: str = "", timeout: float = 0.5):
        self.regs = regs
        self.family = family
        self.device = device
        self.where = where or family.name
        self.timeout = timeout
        self.written = False

    @property
    def writable(self) -> bool:
        return False

    @property
    def size_words(self) -> int:
        return self.family.nvm_words

    def _poll(self, reg: int, bit: int, what: str) -> int:
        regs = self.regs
        deadline = None
        while True:
            v = regs.read32(reg)
            if v & bit:
                return v
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.timeout
            elif now > deadline:
                raise NvmError(f"{self.where}: {what} did not complete within {self.timeout:g} s")

    def read_word(self, addr: int) -> int:
        done_bit, shift = self.family.eerd
        self.regs.write32(EERD, (addr << shift) | 1)
        v = self._poll(EERD, 1 << done_bit, f"the NVM read of word 0x{addr:x} (EERD.DONE)")
        return v >> 16

    def read_words(self, start: int, count: int) -> list[int]:
        return [self.read_word(a) for a in range(start, start + count)]

    def write_words(self, words: dict[int, int]) -> None:
        raise NvmError(f"{self.where}: romlab writes NVM words only on I210 and 82580 controllers; on this "
                       "one use the kernel driver (`ethtool -E IFACE magic 0xDDDDVVVV offset N value V`, which "
                       "also refreshes the checksum)")

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class I210Nvm(NvmAccess):
    """The I210's shadow RAM: EEWR word writes, committed to flash with FLUPD/FLUDONE."""

    @property
    def writable(self) -> bool:
        return True

    @property
    def size_words(self) -> int:
        return 2048

    def write_words(self, words: dict[int, int]) -> None:
        for addr, value in sorted(words.items()):
            if not 0 <= addr < 2048:
                raise NvmError(f"{self.where}: word 0x{addr:x} is outside the 4 KiB shadow RAM")
            self.regs.write32(EEWR, ((value & 0xFFFF) << 16) | (addr << 2) | 1)
            self._poll(EEWR, 2, f"the shadow-RAM write of word 0x{addr:x} (EEWR.DONE)")
            self.written = True

    def commit(self) -> None:
        if not self.written:
            return
        eec = self.regs.read32(EEC)
        self.regs.write32(EEC, eec | EE_FLUPD)
        self._poll(EEC, EE_FLUDONE, "the flash update (EEC.FLUPD, waiting for EEC.FLUDONE)")
        self.written = False


class Eeprom82580(NvmAccess):
    """The 82580's SPI EEPROM, written by bit-banging the EEC pins."""

    def __init__(self, regs, family, device: int = 0, where: str = "", timeout: float = 0.5):
        super().__init__(regs, family, device, where, timeout)
        eec = regs.read32(EEC)
        self.saved = eec
        if device == UNPROGRAMMED_82580:
            self.size = 16384
        else:
            if not eec & EE_PRES:
                raise NvmError(f"{self.where}: the controller reports no EEPROM (EEC.PRES is 0)")
            code = (eec >> 11) & 0xF
            sizes = {7: 16384, 8: 32768}
            if code not in sizes:
                raise NvmError(f"{self.where}: EEC.SIZE is {code}; romlab knows 7 (16 KiB) and 8 (32 KiB)")
            self.size = sizes[code]

    @property
    def writable(self) -> bool:
        return True

    @property
    def size_words(self) -> int:
        return self.size // 2

    # --- pins ---------------------------------------------------------------------
    def _set(self, bits: int, on: bool) -> None:
        v = self.regs.read32(EEC)
        self.regs.write32(EEC, (v | bits) if on else (v & ~bits))

    def _byte(self, value: int, read: bool = False) -> int:
        regs = self.regs
        out = 0
        for shift in range(7, -1, -1):
            v = regs.read32(EEC) & ~(EE_SI | EE_SK)
            if (value >> shift) & 1:
                v |= EE_SI
            regs.write32(EEC, v)
            regs.write32(EEC, v | EE_SK)
            if read:
                out = (out << 1) | (1 if regs.read32(EEC) & EE_SO else 0)
            regs.write32(EEC, v)
        return out

    def _command(self, data: bytes, nread: int = 0) -> bytes:
        self._set(EE_CS, False)
        for b in data:
            self._byte(b)
        out = bytes(self._byte(0, read=True) for _ in range(nread))
        self._set(EE_CS, True)
        return out

    def _ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self._command(b"\x05", 1)[0] & 0x01:
            if time.monotonic() > deadline:
                raise NvmError(f"{self.where}: the EEPROM stayed busy (RDSR.WIP) for {self.timeout:g} s")

    def _request(self) -> None:
        self._set(EE_REQ, True)
        self._poll(EEC, EE_GNT, "the EEPROM pin request (EEC.REQ, waiting for EEC.GNT)")
        self._set(EE_SK, False)

    def _release(self) -> None:
        """Deselect the EEPROM, then put SK, SI, CS and REQ back as they were found."""
        keep = EE_SK | EE_SI | EE_CS | EE_REQ
        v = (self.regs.read32(EEC) | EE_CS) & ~(EE_SK | EE_SI)
        self.regs.write32(EEC, v)
        self.regs.write32(EEC, (v & ~keep) | (self.saved & keep))

    def write_words(self, words: dict[int, int]) -> None:
        data: dict[int, int] = {}
        for addr, value in words.items():
            if not 0 <= 2 * addr < self.size:
                raise NvmError(f"{self.where}: word 0x{addr:x} is outside the {self.size // 1024} KiB EEPROM")
            data[2 * addr] = value & 0xFF
            data[2 * addr + 1] = (value >> 8) & 0xFF
        try:
            self._request()
            self._ready()
            for start, chunk in _pages(data):
                self._command(b"\x06")
                self._command(bytes([0x02, start >> 8, start & 0xFF]) + chunk)
                self._ready()
                self.written = True
        finally:
            self._release()


def _pages(data: dict[int, int]):
    """Runs of consecutive byte addresses, split so none crosses a 64-byte page."""
    addrs = sorted(data)
    i = 0
    while i < len(addrs):
        start = addrs[i]
        chunk = bytearray([data[start]])
        i += 1
        while i < len(addrs) and addrs[i] == start + len(chunk) and (addrs[i] % EE_PAGE):
            chunk.append(data[addrs[i]])
            i += 1
        yield start, bytes(chunk)


def open_nvm(regs, family, device: int = 0, where: str = "") -> NvmAccess:
    if family.nvm_write == "i210":
        return I210Nvm(regs, family, device, where)
    if family.nvm_write == "spi-eeprom":
        return Eeprom82580(regs, family, device, where)
    return NvmAccess(regs, family, device, where)
