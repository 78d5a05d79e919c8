"""The legacy I/O ports a NIC's ROM may touch, and nothing else.

Real ROMs time their delays with PIT channel 2 and port 61h, read the CMOS clock, mask the PIC,
write POST codes and reach PCI configuration through CF8h/CFCh; they also touch their own
device's I/O BAR. Everything else is refused: the run stops with one line naming the port and
the address of the instruction. PIT channel 2 counts in real time (1.193182 MHz), so port 61h's
OUT2 bit (bit 5) rises when a programmed delay has passed, and the refresh bit (4) toggles every
15 us: iPXE's calibration loops end because the bits move, and delays last as long as asked.
"""
from __future__ import annotations

import time
from typing import Callable

PIT_HZ = 1193182
REFRESH_NS = 15085
PIT_PORTS = range(0x40, 0x44)
PIC_PORTS = (0x20, 0x21, 0xA0, 0xA1)
CMOS_PORTS = (0x70, 0x71)
POST_PORT, PORT_B = 0x80, 0x61
POST_KEEP = 4096  # POST codes kept: a ROM writing port 80h in a loop must not fill the host's memory
CONFIG_ADDRESS, CONFIG_DATA = 0xCF8, 0xCFC


class Denied(Exception):
    """An access to a port outside the allowlist; the machine turns it into a RomRunError."""


class _Counter:
    def __init__(self):
        self.mode, self.access, self.reload, self.start = 0, 3, 0x10000, time.perf_counter_ns()
        self.low_next, self.read_low_next, self.latched, self.partial = True, True, None, 0

    def ticks(self) -> int:
        return (time.perf_counter_ns() - self.start) * PIT_HZ // 1_000_000_000

    def value(self) -> int:
        return (self.reload - self.ticks() % self.reload) & 0xFFFF

    def out(self) -> bool:
        if self.mode == 0:
            return self.ticks() >= self.reload
        if self.mode in (2, 3):
            return self.ticks() % self.reload < self.reload // 2
        return True


class Ports:
    def __init__(self, config_read: Callable[[int, int, int], int],
                 config_write: Callable[[int, int, int, int], None], cmos: bytes):
        self.config_read, self.config_write = config_read, config_write
        self.pit = [_Counter() for _ in range(3)]
        self.port_b = 0
        self.pic_mask = {0x21: 0xFF, 0xA1: 0xFF}
        self.cmos, self.cmos_index = bytearray(cmos), 0
        self.cf8 = 0
        self.post_codes: list[int] = []  # the last POST_KEEP (at most twice that between trims)
        self.post_codes_seen = 0
        self.io_bars: list[tuple[int, int, Callable, Callable]] = []  # base, size, read, write
        self.count = 0

    def map_io_bar(self, base: int, size: int, read: Callable[[int, int], int],
                   write: Callable[[int, int, int], None]) -> None:
        self.io_bars.append((base, size, read, write))

    def _bar(self, port: int, size: int):
        for base, span, read, write in self.io_bars:
            if base <= port and port + size <= base + span:
                return port - base, read, write
        return None

    # -- the machine's two entry points -------------------------------------------------------
    def read(self, port: int, size: int) -> int:
        self.count += 1
        if CONFIG_DATA <= port <= CONFIG_DATA + 3 or port == CONFIG_ADDRESS and size == 4:
            if port == CONFIG_ADDRESS:
                return self.cf8
            if not self.cf8 & 0x80000000:
                return (1 << (8 * size)) - 1
            return self.config_read((self.cf8 >> 8) & 0xFFFF, (self.cf8 & 0xFC) + (port & 3), size)
        if port in PIT_PORTS and size == 1:
            return self._pit_read(port)
        if port == PORT_B and size == 1:
            c = self.pit[2]
            refresh = (time.perf_counter_ns() // REFRESH_NS) & 1
            out2 = c.out() if self.port_b & 1 else False
            return (self.port_b & 0x0F) | refresh << 4 | out2 << 5
        if port in PIC_PORTS and size == 1:
            return self.pic_mask.get(port, 0)
        if port == 0x71 and size == 1:
            return self._cmos_value()
        if port in (0x70, POST_PORT) and size == 1:
            return 0xFF
        hit = self._bar(port, size)
        if hit:
            return hit[1](hit[0], size)
        raise Denied(f"read of I/O port {port:#x} ({size} byte{'s' if size > 1 else ''})")

    def write(self, port: int, size: int, value: int) -> None:
        self.count += 1
        if port == CONFIG_ADDRESS and size == 4:
            self.cf8 = value & 0x80FFFFFC
            return
        if CONFIG_DATA <= port <= CONFIG_DATA + 3:
            if self.cf8 & 0x80000000:
                self.config_write((self.cf8 >> 8) & 0xFFFF, (self.cf8 & 0xFC) + (port & 3), size, value)
            return
        if port in PIT_PORTS and size == 1:
            self._pit_write(port, value)
            return
        if port == PORT_B and size == 1:
            if value & 1 and not self.port_b & 1:
                self.pit[2].start = time.perf_counter_ns()  # gate rises: the count starts
            self.port_b = value & 0x0F
            return
        if port in PIC_PORTS and size == 1:
            if port in self.pic_mask:
                self.pic_mask[port] = value & 0xFF
            return
        if port == 0x70 and size == 1:
            self.cmos_index = value & 0x7F
            return
        if port == 0x71 and size == 1:
            self.cmos[self.cmos_index] = value & 0xFF
            return
        if port == POST_PORT and size == 1:
            self.post_codes.append(value & 0xFF)
            self.post_codes_seen += 1
            if len(self.post_codes) > 2 * POST_KEEP:  # a ROM writing port 80h in a loop must not fill memory
                del self.post_codes[:-POST_KEEP]
            return
        hit = self._bar(port, size)
        if hit:
            hit[2](hit[0], size, value)
            return
        raise Denied(f"write of {value:#x} to I/O port {port:#x} ({size} byte{'s' if size > 1 else ''})")

    # -- the 8254 ------------------------------------------------------------------------------
    def _pit_write(self, port: int, value: int) -> None:
        if port == 0x43:
            channel = value >> 6
            if channel == 3:
                return  # read-back command: not used by the ROMs seen; ignored
            c = self.pit[channel]
            access = (value >> 4) & 3
            if access == 0:
                c.latched = c.value()
                return
            c.access, c.mode, c.low_next, c.read_low_next = access, (value >> 1) & 7, True, True
            if c.mode > 5:
                c.mode -= 4
            return
        c = self.pit[port - 0x40]
        if c.access == 3 and c.low_next:
            c.partial, c.low_next = value, False
            return
        if c.access == 3:
            count, c.low_next = c.partial | value << 8, True
        elif c.access == 1:
            count = value
        else:
            count = value << 8
        c.reload = count or 0x10000
        c.start = time.perf_counter_ns()

    def _pit_read(self, port: int) -> int:
        if port == 0x43:
            return 0xFF
        c = self.pit[port - 0x40]
        value = c.latched if c.latched is not None else c.value()
        if c.access == 3:
            if c.read_low_next:
                c.read_low_next = False
                return value & 0xFF
            c.read_low_next, c.latched = True, None
            return value >> 8
        c.latched = None
        return value & 0xFF if c.access == 1 else value >> 8

    # -- the MC146818 ----------------------------------------------------------------------------
    def _cmos_value(self) -> int:
        i = self.cmos_index
        if i <= 9:
            t = time.gmtime()
            v = {0: t.tm_sec, 2: t.tm_min, 4: t.tm_hour, 6: t.tm_wday + 1, 7: t.tm_mday, 8: t.tm_mon,
                 9: t.tm_year % 100}.get(i, 0)
            return (v // 10) << 4 | v % 10
        return self.cmos[i]
