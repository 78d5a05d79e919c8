"""A SPI NOR chip model with the semantics writers trip over.

It exists so the whole flashing path (identification, unprotect, erase, program,
verify, resume) can be rehearsed and tested with no hardware, and so Debian's
flashrom can check the model through ``romlab serprog-emu``. What it keeps of a
real part: erase sets bytes to 0xFF; program can only clear bits; WREN sets WEL
and every program/erase/WRSR consumes it; while an operation runs the part is
busy (WIP) for a real time span and ignores everything but RDSR; block-protect
bits make erase/program of protected space do nothing; JEDEC/REMS/RES IDs and an
SFDP table answer as the part would. It counts erases per sector so a test can
tell which blocks a writer touched.

Faults (all reproducible from a seed) model a poor clip or cable and a bad part:
``flip`` bit flips and ``drop`` lost bytes on the bus (rate per byte), and
``lie`` program/erase commands that are accepted but not carried out (rate per
byte of the command).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from romtools.flash import sfdp
from romtools.flash.chips import CHIP_ERASE_OPS, Chip

WIP = 0x01
WEL = 0x02

# Busy times in seconds. "fast" keeps the ratios of a datasheet but runs
# about a hundred times quicker so test suites stay short; "datasheet" uses
# typical values of small Winbond/Macronix parts.
TIMINGS = {
    "fast": {"pp": 10e-6, "byte": 1e-6, "wrsr": 50e-6, 4096: 300e-6, 32768: 800e-6,
             65536: 1.5e-3, "chip": 20e-3},
    "datasheet": {"pp": 0.7e-3, "byte": 10e-6, "wrsr": 10e-3, 4096: 45e-3, 32768: 120e-3,
                  65536: 150e-3, "chip": 1.5},
    "none": {"pp": 0.0, "byte": 0.0, "wrsr": 0.0, 4096: 0.0, 32768: 0.0, 65536: 0.0, "chip": 0.0},
}


class _Events:
    """Reproducible rare events: the gap to the next one is geometric."""

    def __init__(self, rate: float, rng: random.Random):
        self.rate = rate
        self.rng = rng
        self.left = self._gap()

    def _gap(self) -> int:
        if self.rate <= 0:
            return 1 << 62
        if self.rate >= 1:
            return 0
        u = self.rng.random()
        return int(math.log(1.0 - u) / math.log(1.0 - self.rate))

    def positions(self, n: int) -> list[int]:
        """Offsets (in a run of n bytes) where an event happens."""
        out = []
        pos = 0
        while self.left < n - pos:
            pos += self.left
            out.append(pos)
            pos += 1
            self.left = self._gap()
        self.left -= n - pos
        return out


@dataclass
class Faults:
    flip: float = 0.0
    drop: float = 0.0
    lie: float = 0.0
    seed: int = 1
    disconnect_after: int | None = None
    counts: dict = field(default_factory=lambda: {"flip": 0, "drop": 0, "lie": 0})

    def __post_init__(self):
        rng = random.Random(self.seed)
        self._rng = rng
        self._flip = _Events(self.flip, rng)
        self._drop = _Events(self.drop, rng)
        self._lie = _Events(self.lie, rng)

    @property
    def any_bus(self) -> bool:
        return self.flip > 0 or self.drop > 0

    def mangle(self, data: bytes) -> bytes:
        """Bytes as they arrive after crossing a flaky bus."""
        if not self.any_bus or not data:
            return data
        buf = bytearray(data)
        for pos in self._flip.positions(len(buf)):
            buf[pos] ^= 1 << self._rng.randrange(8)
            self.counts["flip"] += 1
        drops = self._drop.positions(len(buf))
        for pos in reversed(drops):
            del buf[pos]
            self.counts["drop"] += 1
        if drops:
            buf += b"\xff" * len(drops)
        return bytes(buf)

    def lies(self, nbytes: int) -> bool:
        if self.lie <= 0:
            return False
        hit = bool(self._lie.positions(nbytes))
        if hit:
            self.counts["lie"] += 1
        return hit


class SimChip:
    """A chip that takes half-duplex SPI transactions: ``transfer(mosi, nread)``."""

    def __init__(self, chip: Chip, store, timing: str = "fast", faults: Faults | None = None,
                 clock=time.monotonic, status: int | None = None):
        if len(store) != chip.size:
            raise ValueError("store is %d bytes, %s holds %d" % (len(store), chip.name, chip.size))
        self.chip = chip
        self.mem = store
        self.times = TIMINGS[timing]
        self.faults = faults or Faults()
        self.clock = clock
        self.sr = chip.power_on_sr if status is None else status
        self.busy_until = 0.0
        self.ewsr = False
        self.aai_addr: int | None = None
        self.sfdp = sfdp.build(chip.size, {op: s for op, s in chip.erasers.items()},
                               max(chip.page_size, 1)) if chip.sfdp else None
        self.sector = chip.sector_size
        self.erase_counts = [0] * (chip.size // self.sector)
        self.stats = {"transactions": 0, "erases": 0, "programs": 0, "bytes_programmed": 0,
                      "first_modify": None, "last_modify_end": None, "ignored_busy": 0,
                      "ignored_protected": 0, "ignored_no_wel": 0}

    # --- state -----------------------------------------------------------
    def _busy(self) -> bool:
        if self.sr & WIP and self.clock() >= self.busy_until:
            self.sr &= ~(WIP | WEL)
            if self.aai_addr is not None:
                self.sr |= WEL          # AAI keeps WEL until WRDI
        return bool(self.sr & WIP)

    def _start(self, seconds: float):
        now = self.clock()
        if self.stats["first_modify"] is None:
            self.stats["first_modify"] = now
        self.busy_until = now + seconds
        self.stats["last_modify_end"] = self.busy_until
        if seconds > 0:
            self.sr |= WIP
        else:
            self.sr &= ~WEL
            if self.aai_addr is not None:
                self.sr |= WEL

    def protected_range(self) -> tuple[int, int]:
        """[start, end) of the space the BP bits protect.

        "global" parts guard everything once any BP bit is set. "upper" parts
        follow the common Winbond/Macronix table: BP=1 guards the top 64 KiB,
        each step doubles it, and the highest value guards the whole part.
        """
        mask = self.chip.bp_mask
        shift = (mask & -mask).bit_length() - 1
        bp = (self.sr & mask) >> shift
        size = self.chip.size
        if bp == 0:
            return (size, size)
        if self.chip.protect == "global" or bp == mask >> shift:
            return (0, size)
        span = min(size, 65536 << (bp - 1))
        return (size - span, size)

    def _is_protected(self, start: int, end: int) -> bool:
        lo, hi = self.protected_range()
        return start < hi and end > lo

    def _consume_wel(self) -> bool:
        if not self.sr & WEL:
            self.stats["ignored_no_wel"] += 1
            return False
        return True

    # --- the bus -----------------------------------------------------------
    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        """One chip-select cycle: ``mosi`` clocked in, then ``nread`` bytes out."""
        self.stats["transactions"] += 1
        if not mosi:
            return b"\xff" * nread
        op = mosi[0]
        if self._busy():
            if op == 0x05:
                return self.faults.mangle(bytes([self.sr]) * nread)
            self.stats["ignored_busy"] += 1
            return b"\xff" * nread
        if self.aai_addr is not None and op not in (0xAD, 0x04, 0x05):
            return b"\xff" * nread
        handler = self._ops.get(op)
        if handler is None:
            return b"\xff" * nread
        out = handler(self, mosi, nread)
        return self.faults.mangle(out) if out else b""

    def _addr(self, mosi: bytes) -> int:
        if len(mosi) < 4:
            return -1
        return int.from_bytes(mosi[1:4], "big") % self.chip.size

    def _rdid(self, mosi, n):
        return (bytes(self.chip.jedec) + b"\x00" * n)[:n]

    def _rems(self, mosi, n):
        if self.chip.rems is None:
            return b"\xff" * n
        pair = bytes(self.chip.rems)
        if len(mosi) >= 4 and mosi[3] & 1:
            pair = pair[::-1]
        return (pair * (n // 2 + 1))[:n]

    def _res(self, mosi, n):
        if self.chip.res is None:
            return b"\xff" * n
        return bytes([self.chip.res]) * n

    def _rdsr(self, mosi, n):
        return bytes([self.sr]) * n

    def _wren(self, mosi, n):
        self.sr |= WEL
        return b"\xff" * n

    def _wrdi(self, mosi, n):
        self.sr &= ~WEL
        self.aai_addr = None
        return b"\xff" * n

    def _ewsr(self, mosi, n):
        self.ewsr = True
        return b"\xff" * n

    def _wrsr(self, mosi, n):
        enabled = (self.sr & WEL) or (self.ewsr and self.chip.wrsr_enable == 0x50)
        self.ewsr = False
        if not enabled or len(mosi) < 2:
            self.stats["ignored_no_wel"] += 1
            return b"\xff" * n
        if not self.faults.lies(len(mosi)):
            writable = self.chip.bp_mask | 0x80 | (0x20 if self.chip.bp_mask == 0x1C else 0)
            self.sr = (self.sr & ~writable) | (mosi[1] & writable)
        self.sr |= WEL
        self._start(self.times["wrsr"])
        return b"\xff" * n

    def _read(self, mosi, n):
        addr = self._addr(mosi)
        if addr < 0:
            return b"\xff" * n
        return self._readmem(addr, n)

    def _fast_read(self, mosi, n):
        if len(mosi) < 5:
            return b"\xff" * n
        return self._readmem(self._addr(mosi), n)

    def _readmem(self, addr: int, n: int) -> bytes:
        size = self.chip.size
        if addr + n <= size:
            return bytes(self.mem[addr:addr + n])
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), size - addr)
            out += self.mem[addr:addr + take]
            addr = (addr + take) % size
        return bytes(out)

    def _program(self, addr: int, data: bytes):
        if self._is_protected(addr, addr + len(data)):
            self.stats["ignored_protected"] += 1
            self._start(0)
            return
        self.stats["programs"] += 1
        if not self.faults.lies(len(data) + 4):
            mem = self.mem
            old = mem[addr:addr + len(data)]
            n = len(data)
            mem[addr:addr + n] = (int.from_bytes(old, "big") & int.from_bytes(data, "big")).to_bytes(n, "big")
            self.stats["bytes_programmed"] += len(data)

    def _pp(self, mosi, n):
        if len(mosi) < 5 or not self._consume_wel():
            return b"\xff" * n
        addr = self._addr(mosi)
        data = self.faults.mangle(bytes(mosi[4:])) if self.faults.any_bus else bytes(mosi[4:])
        if self.chip.write != "page":
            # SST byte program: one byte, whatever was sent after it.
            self._program(addr, data[:1])
            self._start(self.times["byte"])
            return b"\xff" * n
        page = self.chip.page_size
        if len(data) > page:
            data = data[-page:]
        base = addr - addr % page
        off = addr % page
        # Data past the end of the page wraps to its start, as on real parts.
        first = data[:page - off]
        self._program(addr, first)
        rest = data[page - off:]
        if rest:
            self._program(base, rest)
        self._start(self.times["pp"])
        return b"\xff" * n

    def _aai(self, mosi, n):
        if self.chip.write != "aai":
            return b"\xff" * n
        if self.aai_addr is None:
            if len(mosi) < 6 or not self._consume_wel():
                return b"\xff" * n
            addr = self._addr(mosi) & ~1
            data = mosi[4:6]
        else:
            if len(mosi) < 3:
                return b"\xff" * n
            addr = self.aai_addr
            data = mosi[1:3]
        if self.faults.any_bus:
            data = self.faults.mangle(bytes(data))
        self._program(addr, bytes(data))
        self.aai_addr = (addr + 2) % self.chip.size
        self._start(self.times["byte"])
        return b"\xff" * n

    def _erase(self, mosi, n):
        op = mosi[0]
        size = self.chip.erasers.get(op)
        if size is None:
            return b"\xff" * n
        if op in CHIP_ERASE_OPS:
            start, size = 0, self.chip.size
            lo, hi = self.protected_range()
            blocked = lo < hi
            key = "chip"
        else:
            if len(mosi) < 4:
                return b"\xff" * n
            start = self._addr(mosi) // size * size
            blocked = self._is_protected(start, start + size)
            key = size
        if not self._consume_wel():
            return b"\xff" * n
        if blocked:
            self.stats["ignored_protected"] += 1
            self._start(0)
            return b"\xff" * n
        self.stats["erases"] += 1
        if not self.faults.lies(len(mosi)):
            self.mem[start:start + size] = b"\xff" * size
            for i in range(start // self.sector, (start + size) // self.sector):
                self.erase_counts[i] += 1
        self._start(self.times.get(key, self.times[65536]))
        return b"\xff" * n

    def _sfdp(self, mosi, n):
        if self.sfdp is None or len(mosi) < 4:
            return b"\xff" * n
        addr = int.from_bytes(mosi[1:4], "big")
        area = self.sfdp + b"\xff" * (addr + n)
        if len(mosi) >= 5:
            return area[addr:addr + n]
        # The dummy byte was not sent: the first byte clocked out is during the dummy cycle.
        return (b"\xff" + area[addr:addr + n])[:n]

    _ops = {
        0x9F: _rdid, 0x90: _rems, 0xAB: _res, 0x05: _rdsr, 0x06: _wren, 0x04: _wrdi,
        0x50: _ewsr, 0x01: _wrsr, 0x03: _read, 0x0B: _fast_read, 0x02: _pp, 0xAD: _aai,
        0x20: _erase, 0x52: _erase, 0xD8: _erase, 0x60: _erase, 0xC7: _erase, 0x5A: _sfdp,
    }

    def snapshot(self) -> dict:
        """Counters for tests and benches (JSON-ready)."""
        lo, hi = self.protected_range()
        return {"chip": self.chip.name, "size": self.chip.size, "sector": self.sector,
                "erase_counts": list(self.erase_counts), "status": self.sr,
                "faults": dict(self.faults.counts), **self.stats}
