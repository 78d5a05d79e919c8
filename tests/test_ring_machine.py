"""Defect 5: the C ring and the Python ring driven by one hypothesis state machine.

Every step is applied to a C ring and a Python ring on memories of their own, with the device's side
played by tests/ring_double.py (the 8254x manual's layout). After every step the two must agree with
each other (descriptors, buffers, indices, tail registers, counts, and the sequence of descriptor
reads each made through its format hook) and with a model of what the ring must do, written here
from the rules, not from either ring:

- transmit: a batch whose lengths are not all within 1..buf_size, or add up to more than the bytes
  given, is refused whole, touching nothing; otherwise min(batch, free slots) frames go out, one
  descriptor each, one slot always kept empty.
- receive: descriptors are consumed in order while their done bit is set; a frame without
  end-of-packet is dropped through the descriptor that ends it (one drop); a frame with errors, with
  a length over buf_size, or longer than the whole out buffer is dropped (one drop each); a frame
  that fits the out buffer but not what is left of it ends the batch and waits for the next one.
"""
from __future__ import annotations

from array import array

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from ring_double import (
    DESC,
    DEVICES,
    RDT,
    TDT,
    buffer_of,
    device_rx,
    device_tx,
    make_ring,
    received,
)

from hw.errors import RomlabError, UsageError

_RMB_LOGS: list = []  # the logs the Python ring's read barrier is recorded in (python_barrier_logged)


def payload(seq: int, n: int) -> bytes:
    return bytes((seq * 37 + i * 11) & 0xFF for i in range(n))


class Twin:
    """One implementation's ring, memory, BAR and log of descriptor reads."""

    def __init__(self, cls, rx: bool, count: int, size: int, fmt_name: str):
        from test_ring_defects import Logged, c_logged_ops

        import drivers.ring as ring_mod
        from drivers.descriptors import FORMATS

        fmt = FORMATS[fmt_name]
        self.log: list = []
        self.python = cls is ring_mod.PyRing
        if self.python:
            self.ring, self.bar, self.mem = make_ring(cls, rx, count, size,
                                                      fmt=Logged(fmt, self.log, fmt.desc_size))
            if rx:
                _RMB_LOGS.append(self.log)
        else:
            self.ring, self.bar, self.mem = make_ring(cls, rx, count, size, fmt=fmt)
            self._keep = c_logged_ops(self.ring, self.log)

    def reads(self):
        """The log without the Python ring's barrier calls (C's barriers are not function calls)."""
        return [e for e in self.log if e[0] != "dma_rmb"]

    def snapshot(self):
        r = self.ring
        return (r.next, getattr(r, "clean", None), r.dropped, r.packets, bool(r.discarding),
                self.bar.read32(RDT), self.bar.read32(TDT), bytes(self.mem.desc.mem), bytes(self.mem.bufs.mem))


class RingMachine(RuleBasedStateMachine):
    FORMAT = "legacy"  # the descriptor format both rings run; the device side is ring_double's for it

    @initialize(count=st.sampled_from([2, 3, 5, 8]), size=st.sampled_from([16, 64, 2048]))
    def make(self, count, size):
        import drivers.ring as ring_mod

        self.count, self.size = count, size
        _RMB_LOGS.clear()
        f, self.dev = self.FORMAT, DEVICES[self.FORMAT]
        self.rx = [Twin(ring_mod.CRing, True, count, size, f), Twin(ring_mod.PyRing, True, count, size, f)]
        self.tx = [Twin(ring_mod.CRing, False, count, size, f), Twin(ring_mod.PyRing, False, count, size, f)]
        for t in self.rx + self.tx:  # the Python ring logged describing its descriptors at start
            t.log.clear()
        self.seq = 0
        # receive model
        self.rx_head = 0  # the device's next descriptor
        self.rx_queue: list = []  # descriptor writes the device has still to make
        self.rx_written: list = []  # written by the device, not yet consumed by the ring
        self.rx_next = 0
        self.rx_discarding = False
        self.rx_dropped = self.rx_packets = 0
        self.rx_tail = count - 1
        # transmit model
        self.tx_next = self.tx_head = 0
        self.tx_outstanding = 0  # described and not reclaimed
        self.tx_done = 0  # of those, completed by the device
        self.tx_queued: list = []  # frames described and not yet sent by the device
        self.tx_packets = 0
        self.tx_tail = 0

    # -- transmit ---------------------------------------------------------------------------------
    @rule(data=st.data())
    def tx_batch(self, data):
        size = self.size
        lens = data.draw(st.lists(st.integers(1, size), max_size=self.count + 2), label="lens")
        spoil = data.draw(st.sampled_from(["none", "none", "none", "zero", "over", "short", "long"]), label="spoil")
        if lens and spoil == "zero":
            lens[data.draw(st.integers(0, len(lens) - 1))] = 0
        elif lens and spoil == "over":
            lens[data.draw(st.integers(0, len(lens) - 1))] = data.draw(st.sampled_from([size + 1, 65535]))
        frames = [payload(self.seq + i, n) for i, n in enumerate(lens)]
        pkts = b"".join(frames)
        if spoil == "short" and pkts:
            pkts = pkts[:-1]
        elif spoil == "long":
            pkts += b"\xee" * 7  # bytes past the last frame are not sent
        bad = any(not 1 <= n <= size for n in lens) or sum(lens) > len(pkts)
        results = []
        for t in self.tx:
            try:
                results.append(t.ring.tx_batch(pkts, array("H", lens)))
            except RomlabError as exc:
                msg = str(exc)
                assert msg and "\n" not in msg
                results.append(("refused", msg))
        assert results[0] == results[1]
        if bad:
            assert isinstance(results[0], tuple), f"{lens} over {len(pkts)} bytes was not refused"
            return
        self.tx_outstanding -= self.tx_done
        self.tx_done = 0
        sent = min(len(lens), self.count - 1 - self.tx_outstanding)
        assert results[0] == sent
        self.tx_queued += frames[:sent]
        self.tx_outstanding += sent
        self.tx_next = (self.tx_next + sent) % self.count
        self.tx_packets += sent
        self.seq += len(lens)
        if sent:
            self.tx_tail = self.tx_next

    @rule(k=st.integers(1, 8))
    def device_sends(self, k):
        """The device sends what lies between its head and the tail, in order, marking each done."""
        for _ in range(k):
            if self.tx_head == self.tx_tail:
                break
            wires = [device_tx(t.mem, self.tx_head, self.dev) for t in self.tx]
            assert wires[0] == wires[1] == self.tx_queued.pop(0)
            for t in self.tx:
                assert buffer_of(t.mem, self.tx_head) == self.tx_head * self.size
            self.tx_head = (self.tx_head + 1) % self.count
            self.tx_done += 1

    @rule()
    def tx_pending(self):
        got = [t.ring.tx_pending() for t in self.tx]
        self.tx_outstanding -= self.tx_done
        self.tx_done = 0
        assert got == [self.tx_outstanding] * 2

    # -- receive ----------------------------------------------------------------------------------
    @rule(data=st.data())
    def device_queues_frame(self, data):
        size = self.size
        kind = data.draw(st.sampled_from(["good", "good", "good", "short", "error", "oversize", "multi"]))
        seq, self.seq = self.seq, self.seq + 1
        if kind == "good":
            n = data.draw(st.integers(1, size))
            self.rx_queue.append((payload(seq, n), n, True, 0))
        elif kind == "short":
            n = data.draw(st.integers(0, 3))
            self.rx_queue.append((payload(seq, n), n, True, 0))
        elif kind == "error":
            n = data.draw(st.integers(1, size))
            self.rx_queue.append((payload(seq, n), n, True, data.draw(st.sampled_from([0x01, 0x02, 0x80]))))
        elif kind == "oversize":
            self.rx_queue.append((payload(seq, size), data.draw(st.integers(size + 1, 65535)), True, 0))
        else:
            parts = data.draw(st.integers(2, 3))
            for p in range(parts - 1):
                self.rx_queue.append((payload(seq + p, size), size, False, 0))
            n = data.draw(st.integers(1, size))
            self.rx_queue.append((payload(seq, n), n, True, 0))

    @rule(k=st.integers(1, 8))
    def device_receives(self, k):
        """The device fills descriptors from its head while the head has not reached the tail."""
        for _ in range(k):
            if not self.rx_queue or self.rx_head == self.rx_tail:
                break
            d, length, eop, errors = self.rx_queue.pop(0)
            for t in self.rx:
                assert buffer_of(t.mem, self.rx_head) == self.rx_head * self.size
                device_rx(t.mem, self.rx_head, d, length, eop, errors, self.dev)
            self.rx_written.append((d, length, eop, errors))
            self.rx_head = (self.rx_head + 1) % self.count

    @rule(data=st.data(), max_pkts=st.integers(0, 10))
    def rx_batch(self, data, max_pkts):
        # an out buffer of a round size, or one within a byte of what the first k written frames take
        lengths = [w[1] for w in self.rx_written]
        k = data.draw(st.integers(0, len(lengths)), label="k")
        out_size = data.draw(st.one_of(
            st.sampled_from([0, 1, 16, 63, 64, 100, 2048, 4096, 65536]),
            st.integers(-1, 1).map(lambda d: max(0, sum(lengths[:k]) + d))), label="out_size")
        results = []
        for t in self.rx:
            out = bytearray(out_size)
            if out_size < self.size:  # a frame the ring holds might never fit: refused, nothing taken
                with pytest.raises(UsageError):
                    t.ring.rx_batch(out, max_pkts)
                continue
            n, lens = t.ring.rx_batch(out, max_pkts)
            results.append((n, received(out, lens, n)))
        if out_size < self.size:
            return
        assert results[0] == results[1]
        # the model
        got, used, consumed, frames = 0, 0, 0, []
        while got < max_pkts and consumed < len(self.rx_written):
            d, length, eop, errors = self.rx_written[consumed]
            if self.rx_discarding:
                self.rx_discarding = not eop
            elif not eop:
                self.rx_dropped += 1
                self.rx_discarding = True
            elif errors or length == 0 or length > self.size or length > out_size:
                self.rx_dropped += 1
            elif used + length > out_size:
                break
            else:
                frames.append(d[:length])
                used += length
                got += 1
            consumed += 1
        del self.rx_written[:consumed]
        if consumed:
            self.rx_next = (self.rx_next + consumed) % self.count
            self.rx_tail = (self.rx_next - 1) % self.count
        self.rx_packets += got
        assert results[0] == (got, frames)

    # -- after every step ---------------------------------------------------------------------------
    @invariant()
    def twins_agree_with_each_other_and_the_model(self):
        from test_ring_defects import check_read_order

        for pair in (self.rx, self.tx):
            c, py = pair
            assert c.snapshot() == py.snapshot()
            assert c.reads() == py.reads()
        c, py = self.rx
        assert (c.ring.next, c.ring.dropped, c.ring.packets, bool(c.ring.discarding), c.bar.read32(RDT)) == (
            self.rx_next, self.rx_dropped, self.rx_packets, self.rx_discarding, self.rx_tail)
        # a descriptor carries a done bit exactly when the device wrote it and the ring has not consumed it
        for i in range(self.count):
            written = (i - self.rx_next) % self.count < len(self.rx_written)
            assert bool(c.mem.desc.mem[i * DESC + self.dev.rx_done_byte] & 1) == written
        c, py = self.tx
        assert (c.ring.next, c.ring.packets, c.bar.read32(TDT)) == (self.tx_next, self.tx_packets, self.tx_tail)
        # the order of reads: done bit, then (Python: its barrier, then) length and flags
        for t in self.rx:
            check_read_order(t.log)
            if t.python:
                for i, e in enumerate(t.log):
                    if e[0] == "rx_result":
                        assert t.log[i - 1][0] == "dma_rmb" and t.log[i - 2][:2] == ("rx_done", e[1])
        for t in self.rx + self.tx:
            t.log.clear()


class AdvancedRingMachine(RingMachine):
    """The same rules and model with the advanced descriptors of the igb family: the expectations do not
    change with the format, only the device's layout does (and its write-back overwrites the address)."""

    FORMAT = "advanced"


for _machine in (RingMachine, AdvancedRingMachine):
    _machine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def python_barrier_logged(monkeypatch):
    """The Python ring's read barrier, logged into the Python twins' logs as it is called."""
    import drivers.ring as ring_mod

    real = getattr(ring_mod, "dma_rmb", lambda: None)

    def rmb():
        for log in _RMB_LOGS:
            log.append(("dma_rmb", None, None))
        real()
    monkeypatch.setattr(ring_mod, "dma_rmb", rmb, raising=False)
    yield
    _RMB_LOGS.clear()


def test_defect5_c_and_python_rings_agree(python_barrier_logged):
    RingMachine.TestCase().runTest()


def test_c_and_python_rings_agree_on_advanced_descriptors(python_barrier_logged):
    AdvancedRingMachine.TestCase().runTest()
