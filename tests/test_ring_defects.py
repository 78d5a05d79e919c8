"""The descriptor-ring defects of issue 10, each against both rings (C and Python).

The device's side is tests/ring_double.py, written from the 8254x manual's descriptor layout.
"""
from __future__ import annotations

from array import array

import pytest
from ring_double import DEVICES, RDT, TDT, device_rx, make_ring, received, ring_format

from drivers.ring import CRing, PyRing
from hw.errors import RomlabError

IMPLS = pytest.mark.parametrize("cls", [CRing, PyRing], ids=["c", "python"])
# Each descriptor format meets the same expectations (tests/ring_double.py plays the device in both).
FORMATS = pytest.mark.parametrize("fmt", ["legacy", "advanced"])


def frame(seq: int, size: int) -> bytes:
    """Distinct, recognisable bytes for frame ``seq``."""
    return bytes((seq * 31 + i) & 0xFF for i in range(size))


def state(ring, bar, mem, tail):
    index = ring.r.next if isinstance(ring, CRing) else ring.next
    return index, bar.read32(tail), bytes(mem.desc.mem), bytes(mem.bufs.mem)


def refused(ring, bar, mem, pkts, lens) -> str:
    """tx_batch must refuse with one line and leave descriptors, buffers, index and tail as they were."""
    before = state(ring, bar, mem, TDT)
    with pytest.raises(RomlabError) as exc:
        ring.tx_batch(pkts, array("H", lens))
    assert state(ring, bar, mem, TDT) == before
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# -- defect 1 ------------------------------------------------------------------------------------
@IMPLS
@FORMATS
def test_defect1_tx_lengths_beyond_buffer_refused(cls, fmt):
    ring, bar, mem = make_ring(cls, rx=False, fmt=ring_format(fmt))
    pkts = frame(1, 100)
    msg = refused(ring, bar, mem, pkts, [60, 60])  # 120 bytes of lengths, 100 bytes of frames
    assert "120" in msg and "100" in msg
    # a batch that fits is still sent whole afterwards
    assert ring.tx_batch(pkts, array("H", [60, 40])) == 2 and bar.read32(TDT) == 2


# -- defect 4 ------------------------------------------------------------------------------------
@IMPLS
@FORMATS
def test_defect4_multi_descriptor_frame_dropped_through_eop(cls, fmt):
    ring, bar, mem = make_ring(cls, rx=True, fmt=ring_format(fmt))
    # a 3-descriptor frame (no EOP on the first two), then an ordinary frame
    device_rx(mem, 0, frame(0, 2048), eop=False, dev=DEVICES[fmt])
    device_rx(mem, 1, frame(1, 2048), eop=False, dev=DEVICES[fmt])
    device_rx(mem, 2, frame(2, 100), dev=DEVICES[fmt])
    device_rx(mem, 3, frame(3, 80), dev=DEVICES[fmt])
    out = bytearray(65536)
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(3, 80)]
    assert ring.dropped == 1
    assert bar.read32(RDT) == 3  # all four descriptors handed back


@IMPLS
@FORMATS
def test_defect4_multi_descriptor_drop_spans_batches(cls, fmt):
    ring, bar, mem = make_ring(cls, rx=True, fmt=ring_format(fmt))
    device_rx(mem, 0, frame(0, 2048), eop=False, dev=DEVICES[fmt])  # the frame's end is not written yet
    out = bytearray(65536)
    assert ring.rx_batch(out, 32)[0] == 0 and ring.dropped == 1
    device_rx(mem, 1, frame(1, 500), dev=DEVICES[fmt])  # the end of the dropped frame, no frame of its own
    device_rx(mem, 2, frame(2, 64), dev=DEVICES[fmt])
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(2, 64)] and ring.dropped == 1


@IMPLS
@FORMATS
def test_defect4_rx_length_beyond_buf_size_dropped(cls, fmt):
    ring, bar, mem = make_ring(cls, rx=True, count=4, fmt=ring_format(fmt))
    device_rx(mem, 0, frame(0, 2048), length=3000, dev=DEVICES[fmt])  # no 2048-byte buffer holds that
    device_rx(mem, 1, frame(1, 70), dev=DEVICES[fmt])
    out = bytearray(65536)
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(1, 70)]
    assert ring.dropped == 1


@IMPLS
@FORMATS
def test_defect4_frame_that_fits_a_later_batch_waits_for_it(cls, fmt):
    """Not a drop: a frame that does not fit what is left of the buffer comes in the next batch."""
    ring, bar, mem = make_ring(cls, rx=True, size=64, fmt=ring_format(fmt))
    device_rx(mem, 0, frame(0, 60), dev=DEVICES[fmt])
    device_rx(mem, 1, frame(1, 60), dev=DEVICES[fmt])
    out = bytearray(100)  # one 64-byte buffer's worth and then some, not two frames
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(0, 60)] and bar.read32(RDT) == 0
    n, lens = ring.rx_batch(out, 32)
    assert received(out, lens, n) == [frame(1, 60)] and ring.dropped == 0


@IMPLS
@FORMATS
def test_defect4_tx_frame_over_buf_size_refused(cls, fmt):
    ring, bar, mem = make_ring(cls, rx=False, fmt=ring_format(fmt))
    pkts = frame(1, 3000)
    msg = refused(ring, bar, mem, pkts, [3000])
    assert "3000" in msg and "2048" in msg
    refused(ring, bar, mem, pkts, [0])  # an empty frame is no frame either


@IMPLS
def test_tx_lengths_given_as_a_list_are_checked_the_same(cls):
    ring, bar, mem = make_ring(cls, rx=False)
    before = state(ring, bar, mem, TDT)
    for lens in ([60, -1], [60, 70000]):
        with pytest.raises(RomlabError, match=f"frame 1 of the batch is {lens[1]} bytes"):
            ring.tx_batch(frame(1, 200), lens)
    assert state(ring, bar, mem, TDT) == before
    assert ring.tx_batch(frame(1, 200), [60, 70]) == 2


# -- defect 5 ------------------------------------------------------------------------------------
class Logged:
    """A descriptor format that logs every call into a list and forwards to the real one."""

    def __init__(self, fmt, log, desc_size):
        self.fmt, self.log, self.desc_size = fmt, log, desc_size

    def __getattr__(self, name):
        real = getattr(self.fmt, name)
        if not callable(real):
            return real

        def call(desc, at, *args):
            result = real(desc, at, *args)
            self.log.append((name, at // self.desc_size, result))
            return result
        return call


def c_logged_ops(ring, log):
    """The C ring's format table replaced by callbacks that log, then call the real C functions;
    returns what must stay alive while the ring uses them."""
    ffi = ring.ffi
    real = ring.r.fmt
    base = int(ffi.cast("uintptr_t", ring.r.desc))
    keep = []

    def wrap(name):
        fn = getattr(real, name)

        def cb(desc, *args):
            result = fn(desc, *args)
            if name == "rx_result":
                shown = (result, args[0][0])  # the flags and the length it wrote back
            elif name in ("tx_done", "rx_done"):
                shown = bool(result)
            else:
                shown = result
            log.append((name, (int(ffi.cast("uintptr_t", desc)) - base) // real.desc_size, shown))
            return result
        keep.append(ffi.callback(ffi.typeof(fn), cb))
        return keep[-1]

    ops = ffi.new("struct ring_format *", {"desc_size": real.desc_size, **{
        name: wrap(name) for name in ("tx_describe", "rx_describe", "tx_done", "rx_done", "rx_result")}})
    keep.append(ops)
    ring.r.fmt = ops
    return keep


def check_read_order(log):
    """For every descriptor the ring consumed: done bit read (and found set) first, then the
    length and flags, then the descriptor handed back; nothing read past a clear done bit."""
    done = {}  # descriptor -> what its last done-bit read found
    for op, idx, result in log:
        if op == "rx_done":
            done[idx] = result
        elif op == "rx_result":
            assert done.get(idx), f"length of descriptor {idx} read before its done bit was seen set"
        elif op == "rx_describe":
            assert done.pop(idx, False), f"descriptor {idx} handed back without its done bit seen set"


@IMPLS
@FORMATS
def test_defect5_done_bit_read_before_length(cls, fmt, monkeypatch):
    import drivers.ring as ring_mod

    log: list = []
    real = ring_format(fmt)
    if cls is PyRing:
        ring, bar, mem = make_ring(cls, rx=True, fmt=Logged(real, log, real.desc_size))
        monkeypatch.setattr(ring_mod, "dma_rmb", lambda: log.append(("dma_rmb", None, None)))
    else:
        ring, bar, mem = make_ring(cls, rx=True, fmt=real)
        keep = c_logged_ops(ring, log)  # noqa: F841 (the callbacks must outlive the batch)
    log.clear()  # the descriptors described when the ring was made
    device_rx(mem, 0, frame(0, 64), dev=DEVICES[fmt])
    device_rx(mem, 1, frame(1, 65), dev=DEVICES[fmt])
    n, lens = ring.rx_batch(bytearray(4096), 32)
    assert n == 2
    ops = [(op, idx) for op, idx, _ in log]
    expect = []
    for i in (0, 1):
        expect += [("rx_done", i)] + ([("dma_rmb", None)] if cls is PyRing else []) + [("rx_result", i),
                                                                                      ("rx_describe", i)]
    expect += [("rx_done", 2)]  # the first descriptor the device has not written: nothing more is read
    assert ops == expect
    check_read_order(log)
