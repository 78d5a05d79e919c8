"""The descriptor-ring defects of issue 10, each against both rings (C and Python).

The device's side is tests/ring_double.py, written from the 8254x manual's descriptor layout.
"""
from __future__ import annotations

from array import array

import pytest

from drivers.ring import CRing, PyRing
from ring_double import RDT, TDT, device_rx, make_ring, received
from romtools.errors import RomError

IMPLS = pytest.mark.parametrize("cls", [CRing, PyRing], ids=["c", "python"])


def frame(seq: int, size: int) -> bytes:
    """Distinct, recognisable bytes for frame ``seq``."""
    return bytes((seq * 31 + i) & 0xFF for i in range(size))


def state(ring, bar, mem, tail):
    index = ring.r.next if isinstance(ring, CRing) else ring.next
    return index, bar.read32(tail), bytes(mem.desc.mem), bytes(mem.bufs.mem)


def refused(ring, bar, mem, pkts, lens) -> str:
    """tx_batch must refuse with one line and leave descriptors, buffers, index and tail as they were."""
    before = state(ring, bar, mem, TDT)
    with pytest.raises(RomError) as exc:
        ring.tx_batch(pkts, array("H", lens))
    assert state(ring, bar, mem, TDT) == before
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# -- defect 1 ------------------------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="defect 1: transmit copies past the caller's buffer (C) or raises halfway with the ring advanced (Python)")
@IMPLS
def test_defect1_tx_lengths_beyond_buffer_refused(cls):
    ring, bar, mem = make_ring(cls, rx=False)
    pkts = frame(1, 100)
    msg = refused(ring, bar, mem, pkts, [60, 60])  # 120 bytes of lengths, 100 bytes of frames
    assert "120" in msg and "100" in msg
    # a batch that fits is still sent whole afterwards
    assert ring.tx_batch(pkts, array("H", [60, 40])) == 2 and bar.read32(TDT) == 2


# -- defect 4 ------------------------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="defect 4: the last descriptor of a dropped multi-descriptor frame is delivered as a frame")
@IMPLS
def test_defect4_multi_descriptor_frame_dropped_through_eop(cls):
    ring, bar, mem = make_ring(cls, rx=True)
    # a 3-descriptor frame (no EOP on the first two), then an ordinary frame
    device_rx(mem, 0, frame(0, 2048), eop=False)
    device_rx(mem, 1, frame(1, 2048), eop=False)
    device_rx(mem, 2, frame(2, 100))
    device_rx(mem, 3, frame(3, 80))
    out = bytearray(65536)
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(3, 80)]
    assert ring.dropped == 1
    assert bar.read32(RDT) == 3  # all four descriptors handed back


@pytest.mark.xfail(strict=True, reason="defect 4: the last descriptor of a dropped multi-descriptor frame is delivered as a frame")
@IMPLS
def test_defect4_multi_descriptor_drop_spans_batches(cls):
    ring, bar, mem = make_ring(cls, rx=True)
    device_rx(mem, 0, frame(0, 2048), eop=False)  # the device has not yet written the frame's end
    out = bytearray(65536)
    assert ring.rx_batch(out, 32)[0] == 0 and ring.dropped == 1
    device_rx(mem, 1, frame(1, 500))  # the end of the dropped frame: not a frame of its own
    device_rx(mem, 2, frame(2, 64))
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(2, 64)] and ring.dropped == 1


@pytest.mark.xfail(strict=True, reason="defect 4: a descriptor's length is never checked against the buffer size")
@IMPLS
def test_defect4_rx_length_beyond_buf_size_dropped(cls):
    ring, bar, mem = make_ring(cls, rx=True, count=4)
    device_rx(mem, 0, frame(0, 2048), length=3000)  # a length no 2048-byte buffer can hold
    device_rx(mem, 1, frame(1, 70))
    out = bytearray(65536)
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(1, 70)]
    assert ring.dropped == 1


@pytest.mark.xfail(strict=True, reason="defect 4: a frame larger than the out buffer stalls the ring")
@IMPLS
def test_defect4_frame_larger_than_out_buffer_is_dropped_not_stalled(cls):
    ring, bar, mem = make_ring(cls, rx=True)
    device_rx(mem, 0, frame(0, 200))
    device_rx(mem, 1, frame(1, 60))
    out = bytearray(100)  # the 200-byte frame can never fit
    got = []
    for _ in range(3):
        n, lens = ring.rx_batch(out, 32)
        got += received(out, lens, n)
    assert got == [frame(1, 60)]
    assert ring.dropped == 1


@IMPLS
def test_defect4_frame_that_fits_a_later_batch_waits_for_it(cls):
    """Not a drop: a frame that does not fit what is left of the buffer comes in the next batch."""
    ring, bar, mem = make_ring(cls, rx=True)
    device_rx(mem, 0, frame(0, 60))
    device_rx(mem, 1, frame(1, 60))
    out = bytearray(100)
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(0, 60)] and bar.read32(RDT) == 0
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(1, 60)]


@pytest.mark.xfail(strict=True, reason="defect 4: transmit silently cuts frames over the buffer size")
@IMPLS
def test_defect4_tx_frame_over_buf_size_refused(cls):
    ring, bar, mem = make_ring(cls, rx=False)
    pkts = frame(1, 3000)
    msg = refused(ring, bar, mem, pkts, [3000])
    assert "3000" in msg and "2048" in msg
    refused(ring, bar, mem, pkts, [0])  # an empty frame is no frame either
