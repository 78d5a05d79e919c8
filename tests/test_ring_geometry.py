"""Review defects of drivers/ring.py and drivers/c/ring.c: geometry trusted, lengths read twice,
receive buffers smaller than a frame, empty frames. Each is checked against both rings (C and Python);
the device's side is tests/ring_double.py."""
from __future__ import annotations

import subprocess
import sys
from array import array

import pytest
from ring_double import (
    DESC,
    RDT,
    TDT,
    Bar,
    Mem,
    RingMem,
    device_rx,
    device_tx,
    make_ring,
    received,
)

from drivers.ring import CRing, PyRing
from hw.errors import RomlabError

IMPLS = pytest.mark.parametrize("cls", [CRing, PyRing], ids=["c", "python"])


def frame(seq: int, size: int) -> bytes:
    return bytes((seq * 31 + i) & 0xFF for i in range(size))


def one_line(exc) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# -- 1: geometry ---------------------------------------------------------------------------------
@IMPLS
@pytest.mark.parametrize("rx", [True, False], ids=["rx", "tx"])
@pytest.mark.parametrize("count", [0, 1])
def test_ring_with_fewer_than_two_descriptors_refused(cls, rx, count):
    bar, mem = Bar(), RingMem(count, 2048)
    with pytest.raises(RomlabError) as exc:
        cls(mem, bar, RDT if rx else TDT, rx=rx)
    assert "descriptor" in one_line(exc)


@IMPLS
@pytest.mark.parametrize("size", [0, 65536])
def test_buffer_size_outside_1_to_65535_refused(cls, size):
    bar, mem = Bar(), RingMem(4, 16)
    mem.buf_size = size
    with pytest.raises(RomlabError) as exc:
        cls(mem, bar, TDT, rx=False)
    assert str(size) in one_line(exc)


@IMPLS
def test_buffer_region_smaller_than_count_buffers_refused(cls):
    bar, mem = Bar(), RingMem(4, 2048)
    mem.bufs = Mem(3 * 2048, mem.bufs.iova)  # room for three buffers, four descriptors
    with pytest.raises(RomlabError) as exc:
        cls(mem, bar, TDT, rx=False)
    assert "8192" in one_line(exc)


@IMPLS
def test_descriptor_region_smaller_than_count_descriptors_refused(cls):
    bar, mem = Bar(), RingMem(4, 2048)
    mem.desc = Mem(4 * DESC - 1, mem.desc.iova)
    with pytest.raises(RomlabError) as exc:
        cls(mem, bar, RDT, rx=True)
    assert str(4 * DESC) in one_line(exc)


@IMPLS
@pytest.mark.parametrize("tail", [len(Bar().mm) - 2, len(Bar().mm), 0x3819])
def test_tail_register_outside_bar_or_unaligned_refused(cls, tail):
    bar, mem = Bar(), RingMem(4, 2048)
    with pytest.raises(RomlabError) as exc:
        cls(mem, bar, tail, rx=False)
    assert f"{tail:#x}" in one_line(exc)


def test_ring_memory_sized_by_the_format():
    """RingMemory carves count * the format's descriptor size, not a fixed 16 bytes."""
    from drivers.ring import RingMemory

    class Pool:
        def __init__(self):
            self.sizes = []

        def carve(self, size, align):
            self.sizes.append(size)
            return Mem(size, 0x1000)

    class Wide:
        desc_size = 32

    pool = Pool()
    mem = RingMemory(pool, 8, 2048, fmt=Wide())
    assert pool.sizes == [8 * 32, 8 * 2048] and mem.desc_size == 32
    assert RingMemory.pool_size(8, 2048, fmt=Wide()) >= 8 * 32 + 8 * 2048


C_ZERO_COUNT = """
from drivers._ring import ffi, lib
import mmap
bar, desc, buf = (mmap.mmap(-1, 0x20000) for _ in range(3))
r = ffi.new("struct ring *", {"fmt": ffi.addressof(lib, "ring_legacy"), "bar": ffi.from_buffer("uint8_t[]", bar),
    "tail_reg": 0x3818, "desc": ffi.from_buffer("uint8_t[]", desc), "buf": ffi.from_buffer("uint8_t[]", buf),
    "buf_iova": 0x200000, "buf_size": 2048, "count": 0})
lib.ring_init_tx(r)
pkts = bytes(64)
lens = ffi.new("uint16_t[]", [64])
print(lib.ring_tx_batch(r, pkts, 64, lens, 1), lib.ring_tx_pending(r))
lib.ring_init_rx(r)
out = bytearray(4096)
print(lib.ring_rx_batch(r, ffi.from_buffer("uint8_t[]", out), 4096, lens, 1))
"""


def test_c_ring_with_zero_descriptors_does_not_divide_by_zero():
    """The C entry points refuse a ring of no descriptors themselves, whatever Python checked."""
    p = subprocess.run([sys.executable, "-c", C_ZERO_COUNT], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-500:]}"
    tx, pending, rx = p.stdout.split()
    assert int(tx) < 0 and int(pending) == 0 and int(rx) == 0


# -- 2: a transmit length is read once ------------------------------------------------------------
@pytest.mark.parametrize("new_len,pkts_size", [(3000, 8192), (2000, 100)], ids=["over-buf-size", "past-batch"])
def test_c_tx_length_changed_after_its_check_is_not_used(new_len, pkts_size):
    """The C ring runs with the GIL released, so another thread may rewrite a length between the
    check of the batch and the copy. Here the rewrite happens at the one call between the two (the
    done-bit read of the reclaim): the value used must be one that was checked."""
    ring, _bar, mem = make_ring(CRing, rx=False, count=4)
    ffi = ring.ffi
    assert ring.tx_batch(frame(0, 60), array("H", [60])) == 1
    device_tx(mem, 0)  # descriptor 0 is done, so the next batch reclaims it first
    lens = array("H", [60])
    real = ring.r.fmt

    def tx_done(desc):
        lens[0] = new_len
        return real.tx_done(desc)

    cb = ffi.callback(ffi.typeof(real.tx_done), tx_done)
    ops = ffi.new("struct ring_format *", {"desc_size": real.desc_size, "tx_describe": real.tx_describe,
                                           "rx_describe": real.rx_describe, "tx_done": cb,
                                           "rx_done": real.rx_done, "rx_result": real.rx_result})
    ring.r.fmt = ops
    slot2 = bytes(mem.bufs.mem[2 * 2048:3 * 2048])
    try:
        sent = ring.tx_batch(bytearray(frame(1, pkts_size)), lens)
    except RomlabError:
        sent = 0
    ring.r.fmt = real
    length = int.from_bytes(mem.desc.mem[DESC + 8:DESC + 10], "little")
    if sent:
        assert length == 60
    assert length <= 2048 and bytes(mem.bufs.mem[2 * 2048:3 * 2048]) == slot2


# -- 3: receive ---------------------------------------------------------------------------------------
@IMPLS
def test_rx_out_buffer_smaller_than_a_ring_buffer_refused(cls):
    """A frame the ring can hold must fit the out buffer: a smaller one is refused up front and
    the pending frames stay for a batch with a big enough buffer."""
    ring, _bar, mem = make_ring(cls, rx=True)
    device_rx(mem, 0, frame(0, 200))
    device_rx(mem, 1, frame(1, 60))
    with pytest.raises(RomlabError) as exc:
        ring.rx_batch(bytearray(2047), 32)
    assert "2047" in one_line(exc) and "2048" in one_line(exc)
    n, _lens = ring.rx_batch(bytearray(2048), 32)
    assert n == 2 and ring.dropped == 0


@IMPLS
def test_rx_empty_frame_counted_as_dropped(cls):
    ring, bar, mem = make_ring(cls, rx=True)
    device_rx(mem, 0, b"", length=0)
    device_rx(mem, 1, frame(1, 60))
    out = bytearray(4096)
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(1, 60)]
    assert ring.dropped == 1 and bar.read32(RDT) == 1
