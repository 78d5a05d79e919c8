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
