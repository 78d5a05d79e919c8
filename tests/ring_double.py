"""The device's half of a descriptor ring, for tests of drivers.ring without a NIC, in both formats.

Device memory is anonymous memory and BAR0 a plain mapping. The layouts the 'device' uses here are
taken from the manuals, not from romlab's header, so a wrong offset in the header shows up as a
disagreement:

- legacy (8254x/8257x software developer's manuals): receive descriptor buffer address at byte 0,
  length at 8, status at 12, errors at 13; transmit descriptor address at 0, length at 8, command
  at 11, status at 12; status bit 0 is DD, receive status bit 1 is EOP.
- advanced (82576 datasheet, as iPXE's intel.h and Linux's e1000_82575.h state it): transmit data
  descriptor address at 0, then the dword cmd_type_len at 8 (length 15:0, DTYP 0011b in 23:20,
  DCMD EOP/IFCS/RS/DEXT in bits 24/25/27/29) and olinfo_status at 12 (PAYLEN from bit 14, DD
  written back in bit 0); receive read format packet address at 0, header address at 8; receive
  write-back status_error dword at 8 (DD bit 0, EOP bit 1, frame errors CE/SE/SEQ/CXE/RXE in bits
  24/25/26/28/31), length at 12, and bytes 0-7 overwritten with packet information (the buffer
  address is gone).

``device_rx`` and ``device_tx`` take the device's layout as ``dev`` (``LEGACY_DEV`` by default,
``ADVANCED_DEV``); ``DEVICES`` maps a format's name to its device side.
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


class LegacyDevice:
    name = "legacy"
    rx_done_byte = RXD_STATUS  # the byte whose bit 0 is the receive DD bit

    def write_rx(self, desc, at: int, length: int, eop: bool, errors: int) -> None:
        struct.pack_into("<H", desc, at + RXD_LENGTH, length)
        desc[at + RXD_ERRORS] = errors
        desc[at + RXD_STATUS] = DD | (RX_EOP if eop else 0)

    def read_tx(self, desc, at: int) -> int:
        length = struct.unpack_from("<H", desc, at + TXD_LENGTH)[0]
        cmd = desc[at + TXD_CMD]
        assert cmd == TX_CMD_EOP | TX_CMD_IFCS | TX_CMD_RS, f"descriptor at {at} command {cmd:#x}"
        return length

    def done_tx(self, desc, at: int) -> None:
        desc[at + TXD_STATUS] = DD


class AdvancedDevice:
    name = "advanced"
    rx_done_byte = 8  # status_error's low byte
    # The write-back's packet information, RSS hash and so on: over the buffer address the driver wrote.
    WB_JUNK = bytes.fromhex("a5c3e1f00ff01e3c")

    def write_rx(self, desc, at: int, length: int, eop: bool, errors: int) -> None:
        """``errors`` is the legacy errors byte; the advanced write-back carries it in bits 31:24."""
        desc[at:at + 8] = self.WB_JUNK
        struct.pack_into("<HH", desc, at + 12, length, 0)
        struct.pack_into("<I", desc, at + 8, DD | (RX_EOP if eop else 0) | errors << 24)

    def read_tx(self, desc, at: int) -> int:
        cmd_type_len, olinfo = struct.unpack_from("<II", desc, at + 8)
        length = cmd_type_len & 0xFFFF
        dtyp, dcmd = (cmd_type_len >> 20) & 0xF, cmd_type_len >> 24
        assert dtyp == 0x3, f"descriptor at {at} type {dtyp:#x}, not advanced data"
        assert dcmd == 0x01 | 0x02 | 0x08 | 0x20, f"descriptor at {at} command {dcmd:#x}"
        assert olinfo >> 14 == length and not olinfo & 0x3FFF, f"descriptor at {at} olinfo {olinfo:#x}"
        return length

    def done_tx(self, desc, at: int) -> None:
        struct.pack_into("<I", desc, at + 12, struct.unpack_from("<I", desc, at + 12)[0] | DD)


LEGACY_DEV, ADVANCED_DEV = LegacyDevice(), AdvancedDevice()
DEVICES = {d.name: d for d in (LEGACY_DEV, ADVANCED_DEV)}


def ring_format(name: str):
    """The driver's format of that name (drivers.descriptors), for ``make_ring(..., fmt=...)``."""
    from drivers.descriptors import FORMATS

    return FORMATS[name]


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
              errors: int = 0, dev=LEGACY_DEV) -> None:
    """Write a received frame (or a part of one) into descriptor ``i`` and its buffer, as the NIC
    does: buffer first (through the address the descriptor holds), then the write-back with DD."""
    off = buffer_of(mem, i)
    assert len(data) <= mem.buf_size
    mem.bufs.mem[off:off + len(data)] = data
    dev.write_rx(mem.desc.mem, i * DESC, len(data) if length is None else length, eop, errors)


def device_tx(mem: RingMem, i: int, dev=LEGACY_DEV) -> bytes:
    """Send the frame descriptor ``i`` describes and mark it done; return the bytes put on the wire."""
    at = i * DESC
    length = dev.read_tx(mem.desc.mem, at)
    assert length <= mem.buf_size
    off = buffer_of(mem, i)
    wire = bytes(mem.bufs.mem[off:off + length])
    dev.done_tx(mem.desc.mem, at)
    return wire


def received(out, lens, n: int) -> list[bytes]:
    frames, pos = [], 0
    for i in range(n):
        frames.append(bytes(out[pos:pos + lens[i]]))
        pos += lens[i]
    return frames
