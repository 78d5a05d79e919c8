"""The device's half of a legacy descriptor ring, for tests of drivers.ring without a NIC.

Device memory is anonymous memory and BAR0 a plain mapping. The layout the 'device' uses here is
taken from the 8254x/8257x software developer's manuals (legacy receive descriptor: buffer address
at byte 0, length at 8, status at 12, errors at 13; legacy transmit descriptor: address at 0,
length at 8, command at 11, status at 12; status bit 0 is DD, receive status bit 1 is EOP), not
from romlab's header, so a wrong offset in the header shows up as a disagreement.
"""
from __future__ import annotations

import mmap
import struct

DESC = 16
RXD_LENGTH, RXD_STATUS, RXD_ERRORS = 8, 12, 13
TXD_LENGTH, TXD_CMD, TXD_STATUS = 8, 11, 12
DD, RX_EOP = 0x01, 0x02
TX_CMD_EOP, TX_CMD_IFCS, TX_CMD_RS = 0x01, 0x02, 0x08
RDT, TDT = 0x2818, 0x3818
DESC_IOVA, BUF_IOVA = 0x100000, 0x200000


class Mem:
    """One DMA region as drivers.ring sees it: ``mem`` for C, ``view`` for Python, ``iova``."""

    def __init__(self, size: int, iova: int):
        self.mem = mmap.mmap(-1, max(size, 1))
        self.iova, self.size = iova, size

    @property
    def view(self) -> memoryview:
        return memoryview(self.mem)


class Bar:
    """BAR0 as plain memory: the ring writes its tail register here."""

    def __init__(self):
        self.mm = mmap.mmap(-1, 0x20000)
        self._u32 = memoryview(self.mm).cast("I")

    def read32(self, off: int) -> int:
        return self._u32[off >> 2]

    def write32(self, off: int, v: int) -> None:
        self._u32[off >> 2] = v


class RingMem:
    def __init__(self, count: int, size: int):
        self.count, self.buf_size = count, size
        self.desc = Mem(count * DESC, DESC_IOVA)
        self.bufs = Mem(count * size, BUF_IOVA)


def make_ring(cls, rx: bool, count: int = 16, size: int = 2048, **kw):
    """A ring of class ``cls`` on fresh memory; an rx ring starts as IntelNic starts it, with every
    descriptor but one handed to the device (RDT = count - 1)."""
    bar, mem = Bar(), RingMem(count, size)
    ring = cls(mem, bar, RDT if rx else TDT, rx=rx, **kw)
    if rx:
        bar.write32(RDT, count - 1)
    return ring, bar, mem


def buffer_of(mem: RingMem, i: int) -> int:
    """Byte offset into the buffers of the address descriptor ``i`` holds, checked to lie inside them."""
    addr = struct.unpack_from("<Q", mem.desc.mem, i * DESC)[0]
    off = addr - mem.bufs.iova
    assert 0 <= off and off + mem.buf_size <= mem.count * mem.buf_size, f"descriptor {i} points at {addr:#x}"
    return off


def device_rx(mem: RingMem, i: int, data: bytes, length: int | None = None, eop: bool = True,
              errors: int = 0) -> None:
    """Write a received frame (or a part of one) into descriptor ``i`` and its buffer, as the NIC
    does: buffer first, then length and errors, then the status byte with DD."""
    off = buffer_of(mem, i)
    assert len(data) <= mem.buf_size
    mem.bufs.mem[off:off + len(data)] = data
    at = i * DESC
    struct.pack_into("<H", mem.desc.mem, at + RXD_LENGTH, len(data) if length is None else length)
    mem.desc.mem[at + RXD_ERRORS] = errors
    mem.desc.mem[at + RXD_STATUS] = DD | (RX_EOP if eop else 0)


def device_tx(mem: RingMem, i: int) -> bytes:
    """Send the frame descriptor ``i`` describes and mark it done; return the bytes put on the wire."""
    at = i * DESC
    length = struct.unpack_from("<H", mem.desc.mem, at + TXD_LENGTH)[0]
    cmd = mem.desc.mem[at + TXD_CMD]
    assert cmd == TX_CMD_EOP | TX_CMD_IFCS | TX_CMD_RS, f"descriptor {i} command {cmd:#x}"
    assert length <= mem.buf_size
    off = buffer_of(mem, i)
    wire = bytes(mem.bufs.mem[off:off + length])
    mem.desc.mem[at + TXD_STATUS] = DD
    return wire


def received(out, lens, n: int) -> list[bytes]:
    frames, pos = [], 0
    for i in range(n):
        frames.append(bytes(out[pos:pos + lens[i]]))
        pos += lens[i]
    return frames
