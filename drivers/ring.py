"""Descriptor rings for Intel-style NICs, in two implementations that must behave alike.

``CRing`` runs the batch loops in C (``drivers._ring``, built by setup.py) and crosses into
Python once per batch; ``PyRing`` is the same logic in plain Python, kept as the readable
reference and as the yardstick the C path is measured against (tests/test_ring_machine.py drives
both through one state machine). Both give every descriptor its own DMA buffer for life, so
recycling a buffer is describing its descriptor to the device again, and both reach descriptors
only through a format (drivers/descriptors.py), whose layout comes from drivers/c/ring.h.

A batch is a contiguous ``bytes``/``bytearray`` of packets plus their lengths: no Python object
per packet on either side.

What the rings promise, in both implementations:

- transmit: a batch whose lengths are not all within 1..buf_size, or add up to more than the
  bytes given, is refused whole with a RomlabError, the ring untouched; frames are never cut.
- receive: an out buffer smaller than buf_size is refused (a frame the ring holds might never fit
  it); a frame spanning several descriptors, in error, empty, or with a length over buf_size is
  dropped and counted in ``dropped``; a frame that does not fit what is left of the out buffer
  waits for the next batch.
- ordering: a descriptor's done bit is read first, then a read barrier, then its length and
  flags; a write barrier precedes every tail-register write (``dma_wmb``/``dma_rmb`` are the C
  barriers, see drivers/c/ring.c). ``require_dma_ordering`` refuses machines they were not
  written for.
"""
from __future__ import annotations

import platform
import sys
from array import array

from drivers._ring import ffi, lib
from drivers.descriptors import LEGACY, RING_RX_EOP, RING_RX_ERROR
from hw.errors import HardwareError, RomlabError, UsageError

DESC_SIZE = LEGACY.desc_size

# platform.machine() spellings of the architectures the C barriers are written for.
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def dma_wmb() -> None:
    """Descriptor and buffer writes before this reach the device before anything after it."""
    lib.ring_dma_wmb()


def dma_rmb() -> None:
    """A done bit read before this is read before any descriptor field read after it."""
    lib.ring_dma_rmb()


def require_dma_ordering() -> None:
    """Refuse to drive DMA on a machine the rings' barriers were not written (and built) for."""
    machine = platform.machine()
    built = ffi.string(lib.ring_barrier_arch()).decode()
    if not built or _MACHINES.get(machine.lower()) != built or sys.byteorder != "little":
        raise HardwareError(f"romlab's NIC rings have DMA barriers for little-endian x86_64 and aarch64 only "
                       f"(this build: {built or 'none'}); this machine is {machine or 'unknown'}, so no "
                       f"device is opened")


def tx_refusal(pkts_size: int, lens, buf_size: int) -> RomlabError:
    """The one-line error for a refused transmit batch, naming the first offending length."""
    for i, n in enumerate(lens):
        if not 1 <= n <= buf_size:
            return HardwareError(f"frame {i} of the batch is {n} bytes; frames must be 1..{buf_size} bytes "
                            f"(one descriptor buffer each): nothing was sent")
    return HardwareError(f"the batch's lengths add up to {sum(lens)} bytes but it holds {pkts_size}: nothing was sent")


def rx_out_refusal(out_size: int, buf_size: int) -> UsageError:
    return UsageError(f"a receive buffer of {out_size} bytes cannot hold a {buf_size}-byte frame the ring "
                      f"may hold; give at least {buf_size} bytes")


def _lens_array(lens, pkts_size: int, buf_size: int) -> array:
    """The lengths as the C ring takes them (uint16); one outside that range is refused as the
    Python ring refuses it."""
    if isinstance(lens, array) and lens.typecode == "H":
        return lens
    try:
        return array("H", lens)
    except OverflowError:
        raise tx_refusal(pkts_size, list(lens), buf_size) from None


def check_geometry(mem, bar, tail_reg: int, fmt) -> None:
    """Refuse a ring whose numbers would let either implementation touch memory it was not given:
    the C loops index descriptors, buffers and the tail register from these numbers alone, and
    divide by the count."""
    count, size = mem.count, mem.buf_size
    if not isinstance(count, int) or count < 2:
        raise UsageError(f"a ring needs at least 2 descriptors (one always stays empty), not {count}")
    if not isinstance(size, int) or not 1 <= size <= 0xFFFF:
        raise UsageError(f"a ring's buffers must be 1..65535 bytes (a descriptor length is 16 bits), not {size}")
    if len(mem.desc.mem) < count * fmt.desc_size:
        raise HardwareError(f"the descriptor memory is {len(mem.desc.mem)} bytes but {count} descriptors of "
                            f"{fmt.desc_size} bytes need {count * fmt.desc_size}")
    if len(mem.bufs.mem) < count * size:
        raise HardwareError(f"the buffer memory is {len(mem.bufs.mem)} bytes but {count} buffers of {size} "
                            f"need {count * size}")
    if not isinstance(tail_reg, int) or tail_reg < 0 or tail_reg % 4 or tail_reg + 4 > len(bar.mm):
        raise HardwareError(f"tail register {tail_reg:#x} is not a 4-byte-aligned register inside the "
                            f"{len(bar.mm):#x}-byte BAR")


class RingMemory:
    """The DMA memory of one ring, carved from a mempool: descriptors (of the format's size) and
    one buffer per descriptor."""

    def __init__(self, pool, count: int, buf_size: int, fmt=LEGACY):
        self.count, self.buf_size, self.desc_size = count, buf_size, fmt.desc_size
        self.desc = pool.carve(count * fmt.desc_size, align=128)
        self.bufs = pool.carve(count * buf_size, align=4096)

    @staticmethod
    def pool_size(count: int, buf_size: int, fmt=LEGACY) -> int:
        return count * fmt.desc_size + 128 + count * buf_size + 4096


class CRing:
    """A ring driven by the C batch loops."""

    def __init__(self, mem: RingMemory, bar, tail_reg: int, rx: bool, fmt=LEGACY):
        require_dma_ordering()
        check_geometry(mem, bar, tail_reg, fmt)
        self.ffi, self.lib, self.mem, self.rx, self.fmt = ffi, lib, mem, rx, fmt
        self.buf_size = mem.buf_size
        self._bar = ffi.from_buffer("uint8_t[]", bar.mm)
        self._desc = ffi.from_buffer("uint8_t[]", mem.desc.mem)
        self._buf = ffi.from_buffer("uint8_t[]", mem.bufs.mem)
        self.r = ffi.new("struct ring *", {
            "fmt": ffi.addressof(lib, fmt.c_ops), "bar": self._bar, "tail_reg": tail_reg, "desc": self._desc,
            "buf": self._buf, "buf_iova": mem.bufs.iova, "buf_size": mem.buf_size, "count": mem.count})
        (lib.ring_init_rx if rx else lib.ring_init_tx)(self.r)
        self._lens = array("H", bytes(2 * mem.count))

    next = property(lambda self: self.r.next)
    clean = property(lambda self: self.r.clean)
    packets = property(lambda self: self.r.packets)
    dropped = property(lambda self: self.r.dropped)
    discarding = property(lambda self: bool(self.r.discarding))

    def release(self) -> None:
        """Drop the C views of the DMA memory so it can be unmapped."""
        for buf in (self._bar, self._desc, self._buf):
            self.ffi.release(buf)

    def tx_batch(self, pkts: bytes, lens) -> int:
        lens = _lens_array(lens, len(pkts), self.buf_size)
        ffi = self.ffi
        sent = self.lib.ring_tx_batch(self.r, ffi.from_buffer("uint8_t[]", pkts), len(pkts),
                                      ffi.from_buffer("uint16_t[]", lens), len(lens))
        if sent == lib.RING_E_GEOMETRY:
            raise HardwareError(f"the ring's geometry ({self.r.count} descriptors of {self.r.buf_size}-byte "
                                f"buffers) is not one it can run: nothing was sent")
        if sent < 0:
            raise tx_refusal(len(pkts), lens, self.buf_size)
        return sent

    def tx_pending(self) -> int:
        return self.lib.ring_tx_pending(self.r)

    def rx_batch(self, out: bytearray, max_pkts: int) -> tuple[int, array]:
        if len(out) < self.buf_size:
            raise rx_out_refusal(len(out), self.buf_size)
        lens = self._lens
        ffi = self.ffi
        n = self.lib.ring_rx_batch(self.r, ffi.from_buffer("uint8_t[]", out, require_writable=True), len(out),
                                   ffi.from_buffer("uint16_t[]", lens), max(0, min(max_pkts, len(lens))))
        return n, lens


class PyRing:
    """The same ring in plain Python: the reference the C path must agree with."""

    def __init__(self, mem: RingMemory, bar, tail_reg: int, rx: bool, fmt=LEGACY):
        require_dma_ordering()
        check_geometry(mem, bar, tail_reg, fmt)
        self.mem, self.bar, self.tail_reg, self.rx, self.fmt = mem, bar, tail_reg, rx, fmt
        self.desc = mem.desc.view
        self.buf = mem.bufs.view
        self.count, self.size, self.iova = mem.count, mem.buf_size, mem.bufs.iova
        self.dsize = fmt.desc_size
        self.next = self.clean = 0
        self.packets = self.dropped = 0
        self.discarding = False
        self._lens = array("H", bytes(2 * mem.count))
        if rx:
            for i in range(self.count):
                fmt.rx_describe(self.desc, i * self.dsize, self.iova + i * self.size)
        else:
            self.desc[:self.count * self.dsize] = bytes(self.count * self.dsize)
        dma_wmb()

    def release(self) -> None:
        self.desc.release()
        self.buf.release()

    def _reclaim(self) -> None:
        while self.clean != self.next:
            if not self.fmt.tx_done(self.desc, self.clean * self.dsize):
                break
            dma_rmb()
            self.clean = (self.clean + 1) % self.count

    def tx_pending(self) -> int:
        self._reclaim()
        return (self.next - self.clean) % self.count

    def tx_batch(self, pkts: bytes, lens) -> int:
        if any(not 1 <= n <= self.size for n in lens) or sum(lens) > len(pkts):
            raise tx_refusal(len(pkts), lens, self.size)
        self._reclaim()
        sent, src = 0, 0
        for length in lens:
            after = (self.next + 1) % self.count
            if after == self.clean:
                break
            at = self.next * self.size
            self.buf[at:at + length] = pkts[src:src + length]
            self.fmt.tx_describe(self.desc, self.next * self.dsize, self.iova + at, length)
            src += length
            self.next = after
            sent += 1
        if sent:
            dma_wmb()
            self.bar.write32(self.tail_reg, self.next)
        self.packets += sent
        return sent

    def rx_batch(self, out: bytearray, max_pkts: int) -> tuple[int, array]:
        if len(out) < self.size:
            raise rx_out_refusal(len(out), self.size)
        fmt, desc = self.fmt, self.desc
        got, used, last = 0, 0, None
        lens = self._lens
        size, room = self.size, len(out)
        while got < min(max_pkts, len(lens)):
            at = self.next * self.dsize
            if not fmt.rx_done(desc, at):
                break
            dma_rmb()
            flags, length = fmt.rx_result(desc, at)
            if self.discarding:
                self.discarding = not flags & RING_RX_EOP
            elif not flags & RING_RX_EOP:
                self.dropped += 1
                self.discarding = True
            elif flags & RING_RX_ERROR or not 1 <= length <= size or length > room:
                self.dropped += 1
            elif used + length > room:
                break
            else:
                src = self.next * size
                out[used:used + length] = self.buf[src:src + length]
                used += length
                lens[got] = length
                got += 1
            fmt.rx_describe(desc, at, self.iova + self.next * size)
            last = self.next
            self.next = (self.next + 1) % self.count
        if last is not None:
            dma_wmb()
            self.bar.write32(self.tail_reg, last)
        self.packets += got
        return got, lens
