"""Descriptor rings for NICs with 16-byte legacy descriptors, in two implementations.

``CRing`` runs the batch loops in C (``drivers._ring``, built by setup.py) and
crosses into Python once per batch; ``PyRing`` is the same logic in plain
Python, kept as the readable reference and as the yardstick the C path is
measured against. Both give every descriptor its own DMA buffer for life, so
recycling a buffer is handing its descriptor back to the device.

A batch is a contiguous ``bytes``/``bytearray`` of packets plus their lengths:
no Python object per packet on either side.
"""
from __future__ import annotations

import struct
from array import array

DESC_SIZE = 16
TXD_EOP, TXD_IFCS, TXD_RS = 0x01, 0x02, 0x08
DD, RX_EOP = 0x01, 0x02

_txd = struct.Struct("<QHBBBBH")
_rxd = struct.Struct("<QHHBBH")


class RingMemory:
    """The DMA memory of one ring, carved from a mempool: descriptors and one buffer per descriptor."""

    def __init__(self, pool, count: int, buf_size: int):
        self.count, self.buf_size = count, buf_size
        self.desc = pool.carve(count * DESC_SIZE, align=128)
        self.bufs = pool.carve(count * buf_size, align=4096)

    @staticmethod
    def pool_size(count: int, buf_size: int) -> int:
        return count * DESC_SIZE + 128 + count * buf_size + 4096


class CRing:
    """A ring driven by the C batch loops."""

    def __init__(self, mem: RingMemory, bar, tail_reg: int, rx: bool):
        from drivers._ring import ffi, lib

        self.ffi, self.lib, self.mem, self.rx = ffi, lib, mem, rx
        self._bar = ffi.from_buffer("uint8_t[]", bar.mm)
        self._desc = ffi.from_buffer("uint8_t[]", mem.desc.mem)
        self._buf = ffi.from_buffer("uint8_t[]", mem.bufs.mem)
        self.r = ffi.new("struct ring *", {
            "bar": self._bar, "tail_reg": tail_reg, "desc": self._desc, "buf": self._buf,
            "buf_iova": mem.bufs.iova, "buf_size": mem.buf_size, "count": mem.count})
        (lib.ring_init_rx if rx else lib.ring_init_tx)(self.r)
        self._lens = array("H", bytes(2 * mem.count))

    @property
    def packets(self) -> int:
        return self.r.packets

    def release(self) -> None:
        """Drop the C views of the DMA memory so it can be unmapped."""
        for buf in (self._bar, self._desc, self._buf):
            self.ffi.release(buf)

    def tx_batch(self, pkts: bytes, lens: array) -> int:
        ffi = self.ffi
        return self.lib.ring_tx_batch(self.r, ffi.from_buffer("uint8_t[]", pkts), ffi.from_buffer("uint16_t[]", lens),
                                      len(lens))

    def tx_pending(self) -> int:
        return self.lib.ring_tx_pending(self.r)

    def rx_batch(self, out: bytearray, max_pkts: int) -> tuple[int, array]:
        lens = self._lens
        ffi = self.ffi
        n = self.lib.ring_rx_batch(self.r, ffi.from_buffer("uint8_t[]", out), len(out), ffi.from_buffer("uint16_t[]", lens),
                                   min(max_pkts, len(lens)))
        return n, lens


class PyRing:
    """The same ring in plain Python: the reference the C path must agree with."""

    def __init__(self, mem: RingMemory, bar, tail_reg: int, rx: bool):
        self.mem, self.bar, self.tail_reg, self.rx = mem, bar, tail_reg, rx
        self.desc = mem.desc.view
        self.buf = mem.bufs.view
        self.count, self.size, self.iova = mem.count, mem.buf_size, mem.bufs.iova
        self.next = self.clean = 0
        self.packets = 0
        self._lens = array("H", bytes(2 * mem.count))
        if rx:
            for i in range(self.count):
                _rxd.pack_into(self.desc, i * DESC_SIZE, self.iova + i * self.size, 0, 0, 0, 0, 0)
        else:
            self.desc[:self.count * DESC_SIZE] = bytes(self.count * DESC_SIZE)

    def release(self) -> None:
        self.desc.release()
        self.buf.release()

    def _reclaim(self) -> None:
        while self.clean != self.next:
            at = self.clean * DESC_SIZE + 12
            if not self.desc[at] & DD:
                break
            self.desc[at] = 0
            self.clean = (self.clean + 1) % self.count

    def tx_pending(self) -> int:
        self._reclaim()
        return (self.next - self.clean) % self.count

    def tx_batch(self, pkts: bytes, lens: array) -> int:
        self._reclaim()
        sent, src = 0, 0
        for length in lens:
            after = (self.next + 1) % self.count
            if after == self.clean:
                break
            n = min(length, self.size)
            at = self.next * self.size
            self.buf[at:at + n] = pkts[src:src + n]
            _txd.pack_into(self.desc, self.next * DESC_SIZE, self.iova + at, n, 0, TXD_EOP | TXD_IFCS | TXD_RS,
                           0, 0, 0)
            src += length
            self.next = after
            sent += 1
        if sent:
            self.bar.write32(self.tail_reg, self.next)
        self.packets += sent
        return sent

    def rx_batch(self, out: bytearray, max_pkts: int) -> tuple[int, array]:
        got, used, last = 0, 0, None
        lens = self._lens
        while got < min(max_pkts, len(lens)):
            at = self.next * DESC_SIZE
            _, length, _, status, errors, _ = _rxd.unpack_from(self.desc, at)
            if not status & DD:
                break
            if used + length > len(out):
                break
            if status & RX_EOP and not errors:
                src = self.next * self.size
                out[used:used + length] = self.buf[src:src + length]
                used += length
                lens[got] = length
                got += 1
            self.desc[at + 8:at + 14] = bytes(6)
            last = self.next
            self.next = (self.next + 1) % self.count
        if last is not None:
            self.bar.write32(self.tail_reg, last)
        self.packets += got
        return got, lens
