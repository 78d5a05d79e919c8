"""IntelNic's bring-up, counters and close against a register-recording double (tests/intel_double.py).

The order checked is the one the 8254x/8257x manuals and iPXE's intel_reset/intel_close follow:
no bus mastering until the MAC reset has finished; on close, receive and transmit off, (on PCI
Express parts) master requests disabled and their end polled for, a MAC reset polled to its end,
and only then bus mastering off and the DMA memory freed. The real devices run this code in
tests/test_nic_vm.py.
"""
from __future__ import annotations

import intel_double as D
import pytest

from hw.errors import RomlabError

PARTS = pytest.mark.parametrize("device_id,pcie", [(0x10D3, True), (0x100E, False)], ids=["82574L", "82540EM"])
# The same bring-up and close order holds for the 82576 (igb), whose queues add steps of their own.
PARTS_AND_IGB = pytest.mark.parametrize("device_id,pcie", [(0x10D3, True), (0x100E, False), (0x10C9, True)],
                                        ids=["82574L", "82540EM", "82576"])


def open_nic(monkeypatch, nic, impl="c"):
    from drivers.intel import IntelNic

    D.install(monkeypatch, nic)
    return IntelNic("0000:00:03.0", impl=impl)


def first(log, pred, start=0):
    return next(i for i in range(start, len(log)) if pred(log[i]))


def is_write(off, mask=None, value=None):
    return lambda e: e[0] == "w" and e[1] == off and (mask is None or bool(e[2] & mask) == value)


def is_read(off, mask, value):
    return lambda e: e[0] == "r" and e[1] == off and bool(e[2] & mask) == value


# -- defect 6 ------------------------------------------------------------------------------------
@PARTS_AND_IGB
def test_defect6_bus_master_enabled_after_reset(monkeypatch, device_id, pcie):
    fake = D.FakeNic(device_id, pcie)
    nic = open_nic(monkeypatch, fake)
    log = fake.log
    rst = first(log, is_write(D.CTRL, D.CTRL_RST, True))
    rst_done = first(log, is_read(D.CTRL, D.CTRL_RST, False), rst)
    bme = [i for i, e in enumerate(log) if D.bus_master(e) is True]
    assert bme and bme[0] > rst_done, "bus mastering was on before the MAC reset had finished"
    # ... and the rings are enabled only once the device may master
    assert first(log, is_write(D.RCTL, 1 << 1, True)) > bme[0]
    assert first(log, is_write(D.TCTL, 1 << 1, True)) > bme[0]
    nic.close()


@PARTS_AND_IGB
def test_defect6_close_stops_quiesces_resets_then_frees(monkeypatch, device_id, pcie):
    import drivers.intel

    fake = D.FakeNic(device_id, pcie)
    nic = open_nic(monkeypatch, fake)
    start = len(fake.log)
    sleeps = []
    real_sleep = drivers.intel.time.sleep
    monkeypatch.setattr(drivers.intel.time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
    nic.close()
    log = fake.log
    rx_off = first(log, is_write(D.RCTL, 1 << 1, False), start)
    tx_off = first(log, is_write(D.TCTL, 1 << 1, False), start)
    rst = first(log, is_write(D.CTRL, D.CTRL_RST, True), start)
    assert max(rx_off, tx_off) < rst
    if pcie:  # master requests disabled, and their end seen, before the reset
        gio = first(log, is_write(D.CTRL, D.CTRL_GIO_MASTER_DISABLE, True), start)
        quiet = first(log, is_read(D.STATUS, D.STATUS_GIO_MASTER_ENABLE, False), gio)
        assert max(rx_off, tx_off) < gio < quiet < rst
    else:  # the 82540EM has no master-disable handshake: none is attempted
        assert not any(is_write(D.CTRL, D.CTRL_GIO_MASTER_DISABLE, True)(e) for e in log[start:])
    rst_done = first(log, is_read(D.CTRL, D.CTRL_RST, False), rst)
    bme_off = first(log, lambda e: D.bus_master(e) is False, start)
    frees = [i for i, e in enumerate(log) if e[0] == "dma_free"]
    assert rst_done < bme_off < frees[0]
    assert log[-1] == ("vfio_close",)
    # no sleep beyond a datasheet minimum: short polls, and on the 8254x (no completion bit to poll)
    # the 10 ms quiesce before the reset and the 5 ms NVM auto-read after it; on the 82576 the 10 ms
    # Linux igb gives the NVM auto-read
    allowed = 0.002 if pcie and device_id != 0x10C9 else 0.010
    assert all(s <= allowed for s in sleeps), f"close slept a fixed {max(sleeps)} s instead of polling"


def test_defect6_close_twice_is_safe(monkeypatch):
    fake = D.FakeNic()
    nic = open_nic(monkeypatch, fake)
    nic.close()
    seen = len(fake.log)
    nic.close()
    assert len(fake.log) == seen  # the second close touches nothing
    with nic:  # nor does leaving a with-block after a close
        pass
    assert len(fake.log) == seen


def test_defect6_close_with_a_part_that_never_quiesces_still_resets_and_frees(monkeypatch):
    """The reset is what stops the DMA engines; a master-disable that never completes is waited
    for a bounded time (Linux: 80 ms) and the close goes on."""
    fake = D.FakeNic(gio_reads=None)
    nic = open_nic(monkeypatch, fake)
    start = len(fake.log)
    nic.close()
    log = fake.log[start:]
    assert any(is_write(D.CTRL, D.CTRL_RST, True)(e) for e in log)
    assert [e[0] for e in log if e[0] in ("dma_free", "vfio_close")][-1] == "vfio_close"
    assert sum(e[0] == "dma_free" for e in log) == 1


def test_defect6_close_when_the_reset_never_ends_frees_then_says_so(monkeypatch):
    fake = D.FakeNic()
    nic = open_nic(monkeypatch, fake)
    fake.rst_reads = None  # from now on a MAC reset never finishes
    with pytest.raises(RomlabError) as exc:
        nic.close()
    assert "reset" in str(exc.value) and "\n" not in str(exc.value)
    assert fake.log[-1] == ("vfio_close",) and not fake.dma
    nic.close()  # and closing again is still safe


@PARTS_AND_IGB
def test_open_turns_bus_mastering_off_and_units_off_before_the_reset(monkeypatch, device_id, pcie):
    fake = D.FakeNic(device_id, pcie)
    fake.config[D.PCI_COMMAND] |= D.COMMAND_BUS_MASTER  # a previous user left it mastering
    nic = open_nic(monkeypatch, fake)
    log = fake.log
    rst = first(log, is_write(D.CTRL, D.CTRL_RST, True))
    assert first(log, lambda e: D.bus_master(e) is False) < rst
    assert first(log, is_write(D.RCTL, 1 << 1, False)) < rst
    assert first(log, is_write(D.TCTL, 1 << 1, False)) < rst
    nic.close()


@PARTS
def test_reset_waits_for_the_nvm_auto_read(monkeypatch, device_id, pcie):
    """8257x: EECD.AUTO_RD polled set after every MAC reset, before the MAC is programmed (Linux
    e1000e_get_auto_rd_done). 8254x, which has no such bit: the outstanding PCI transactions get
    10 ms to end before the reset, the NVM auto-read 5 ms after it (Linux e1000_reset_hw)."""
    import drivers.intel

    sleeps = []
    real_sleep = drivers.intel.time.sleep
    monkeypatch.setattr(drivers.intel.time, "sleep", lambda s: (sleeps.append((len(fake.log), s)), real_sleep(s)))
    fake = D.FakeNic(device_id, pcie, auto_rd_reads=3)
    nic = open_nic(monkeypatch, fake)
    log = fake.log
    rst = first(log, is_write(D.CTRL, D.CTRL_RST, True))
    rst_done = first(log, is_read(D.CTRL, D.CTRL_RST, False), rst)
    programmed = first(log, is_write(D.RDBAL), rst_done)
    if pcie:
        auto_rd = first(log, is_read(D.EECD, D.EECD_AUTO_RD, True), rst_done)
        assert auto_rd < first(log, is_write(D.IMC), rst_done) < programmed
        assert all(s < 0.002 for _, s in sleeps)
    else:
        units_off = max(first(log, is_write(D.RCTL, 1 << 1, False)), first(log, is_write(D.TCTL, 1 << 1, False)))
        assert any(units_off < at <= rst and s >= 0.010 for at, s in sleeps)
        assert any(rst_done < at < programmed and s >= 0.005 for at, s in sleeps)
    nic.close()


@pytest.mark.parametrize("auto_rd_reads", [3, None], ids=["sets", "never-sets"])
def test_82576_polls_the_nvm_auto_read_and_goes_on_without_it(monkeypatch, auto_rd_reads):
    """82576: EECD.AUTO_RD (bit 9) polled after the MAC reset for up to 10 ms, as Linux's
    igb_get_auto_rd_done does; the open goes on as soon as it sets, and also when it never does
    (QEMU's igb never sets it), once the 10 ms are over; no fixed sleep in its place."""
    import time

    import drivers.intel

    sleeps = []
    real_sleep = drivers.intel.time.sleep
    monkeypatch.setattr(drivers.intel.time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
    fake = D.FakeNic(0x10C9, True, auto_rd_reads=auto_rd_reads)
    stamps = []
    real_on_read = fake.on_read
    fake.on_read = lambda off: (stamps.append(time.monotonic()) if off == D.EECD else None, real_on_read(off))[1]
    nic = open_nic(monkeypatch, fake)
    log = fake.log
    rst_done = first(log, is_read(D.CTRL, D.CTRL_RST, False), first(log, is_write(D.CTRL, D.CTRL_RST, True)))
    programmed = first(log, is_write(D.RDBAL), rst_done)
    eecd = [i for i, e in enumerate(log[:programmed]) if e[:2] == ("r", D.EECD) and i > rst_done]
    assert eecd, "EECD was not polled after the reset"
    if auto_rd_reads is not None:
        assert log[eecd[-1]][2] & D.EECD_AUTO_RD and len(eecd) == auto_rd_reads + 1
    else:
        assert not any(log[i][2] & D.EECD_AUTO_RD for i in eecd) and len(eecd) > 1
        assert stamps[len(eecd) - 1] - stamps[0] >= 0.010
    assert all(s < 0.002 for s in sleeps)
    nic.close()


def test_an_nvm_auto_read_that_never_ends_fails_the_open(monkeypatch):
    fake = D.FakeNic(auto_rd_reads=None)
    with pytest.raises(RomlabError) as exc:
        open_nic(monkeypatch, fake)
    assert "auto-read" in str(exc.value) and "\n" not in str(exc.value)
    assert fake.log[-1] == ("vfio_close",) and not fake.dma


@pytest.mark.parametrize("buf_size,bsize", [(2048, 0), (1024, 1 << 16), (256, 3 << 16), (4096, (1 << 25) | (3 << 16))])
def test_rctl_buffer_size_follows_buf_size(monkeypatch, buf_size, bsize):
    """RCTL.BSIZE (bits 17:16) and BSEX (bit 25), 8254x manual: 00/01/10/11 are 2048/1024/512/256
    bytes, and with BSEX 16384/8192/4096."""
    from drivers.intel import IntelNic

    monkeypatch.setattr(IntelNic, "BUF_SIZE", buf_size)
    fake = D.FakeNic()
    nic = open_nic(monkeypatch, fake)
    rctl = [e[2] for e in fake.log if is_write(D.RCTL, 1 << 1, True)(e)]
    assert rctl and rctl[-1] & ((3 << 16) | (1 << 25)) == bsize
    nic.close()


def test_a_buffer_size_rctl_cannot_say_is_refused_at_open(monkeypatch):
    from drivers.intel import IntelNic

    monkeypatch.setattr(IntelNic, "BUF_SIZE", 3000)
    fake = D.FakeNic()
    with pytest.raises(RomlabError) as exc:
        open_nic(monkeypatch, fake)
    assert "3000" in str(exc.value) and "\n" not in str(exc.value)
    assert not any(D.bus_master(e) for e in fake.log)


# -- defect 4 (IntelNic's part) ------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["c", "python"])
def test_defect4_stats_show_ring_drops_and_accumulate_counters(monkeypatch, impl):
    fake = D.FakeNic()
    with open_nic(monkeypatch, fake, impl) as nic:
        first_stats = nic.stats()
        assert (first_stats["rx_good"], first_stats["rx_dropped"]) == (0, 0)
        fake.receive(b"\x01" * 2048, eop=False)  # a frame over two descriptors: dropped through its end
        fake.receive(b"\x02" * 100)
        fake.receive(b"\x03" * 64)
        fake.count(D.GPRC, 2)
        fake.count(D.MPC, 1)
        n, lens = nic.rx_batch(bytearray(65536))
        assert (n, list(lens[:n])) == (1, [64])
        s = nic.stats()
        assert (s["rx_good"], s["rx_missed"], s["rx_dropped"], s["rx_ring"]) == (2, 1, 1, 1)
        fake.count(D.GPRC, 5)  # the hardware counter cleared when read: the totals must not
        fake.count(D.GPTC, 4)
        s = nic.stats()
        assert (s["rx_good"], s["tx_good"], s["rx_missed"], s["rx_dropped"]) == (7, 4, 1, 1)


# -- defect 7 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("machine", ["riscv64", "ppc64le", "the other one"])
def test_defect7_refuses_an_architecture_whose_dma_barriers_it_lacks(monkeypatch, machine):
    """The C ring is built with the DMA barriers of x86_64 or aarch64; a machine it has no barriers
    for, or one other than it was built for, is refused before the device is touched."""
    import platform

    from ring_double import make_ring

    from drivers.ring import CRing, PyRing

    if machine == "the other one":
        machine = "aarch64" if platform.machine() == "x86_64" else "x86_64"
    fake = D.FakeNic()
    monkeypatch.setattr(platform, "machine", lambda: machine)
    for impl in ("c", "python"):
        with pytest.raises(RomlabError) as exc:
            open_nic(monkeypatch, fake, impl)
        msg = str(exc.value)
        assert machine in msg and "\n" not in msg
    assert fake.log == []  # no device opened
    for cls in (CRing, PyRing):
        with pytest.raises(RomlabError):
            make_ring(cls, rx=True)


def test_a_reset_that_never_ends_at_open_is_the_error_shown_and_nothing_is_left_open(monkeypatch):
    fake = D.FakeNic(rst_reads=None)
    with pytest.raises(RomlabError) as exc:
        open_nic(monkeypatch, fake)
    assert "did not come out of reset" in str(exc.value) and "on close" not in str(exc.value)
    assert fake.log[-1] == ("vfio_close",) and not fake.dma
    assert not any(D.bus_master(e) for e in fake.log)  # never mastered the bus


# -- the 82576 (igb) ------------------------------------------------------------------------------
def test_82576_queues_programmed_disabled_then_enabled_before_their_tails(monkeypatch):
    """82576 datasheet, iPXE's intel_create_ring and Linux igb_configure_rx_ring/tx_ring: a queue is
    disabled (RXDCTL/TXDCTL.ENABLE cleared and seen clear) before its ring is programmed, its head AND
    tail are written 0 while it is disabled, SRRCTL gives 2 KiB buffers and the advanced one-buffer
    descriptor type (BSIZEPKT 2 in bits 6:0, DESCTYPE 001b in bits 27:25), and the receive tail gets
    its first non-zero value (count - 1 = 255) only once the queue reads enabled; the link reset bit
    the part comes out of reset with is cleared."""
    fake = D.FakeNic(0x10C9, True)
    fake.set(D.CTRL, fake.reg(D.CTRL) | 1 << 3)  # CTRL.LRST, as the part leaves its reset
    nic = open_nic(monkeypatch, fake)
    log = fake.log
    for ctl, base, head, tail in ((D.RXDCTL0, D.RDBAL, D.RDH, D.RDT), (D.TXDCTL0, D.TDBAL, D.TDH, D.TDT)):
        off = first(log, is_write(ctl, D.XDCTL_ENABLE, False))
        seen_off = first(log, is_read(ctl, D.XDCTL_ENABLE, False), off)
        programmed = first(log, is_write(base), seen_off)
        on = first(log, is_write(ctl, D.XDCTL_ENABLE, True), programmed)
        seen_on = first(log, is_read(ctl, D.XDCTL_ENABLE, True), on)
        assert any(is_read(ctl, D.XDCTL_ENABLE, False)(e) for e in log[on:seen_on]), "the enable was not polled"
        for reg in (head, tail):
            assert any(e[:3] == ("w", reg, 0) for e in log[seen_off:on]), f"{reg:#x} not zeroed while disabled"
        nonzero = [i for i, e in enumerate(log) if e[:2] == ("w", tail) and e[2]]
        assert all(i > seen_on for i in nonzero), "a tail was moved before its queue read enabled"
    assert first(log, lambda e: e[:2] == ("w", D.RDT) and e[2]) > first(log, is_read(D.RXDCTL0, D.XDCTL_ENABLE, True))
    assert [e[2] for e in log if e[:2] == ("w", D.RDT) and e[2]] == [255]
    srrctl = [e[2] for e in log if e[:2] == ("w", D.SRRCTL0)]
    assert srrctl == [2 | 1 << 25]
    slu = [e[2] for e in log if e[0] == "w" and e[1] == D.CTRL and e[2] & D.CTRL_SLU]
    assert slu and not slu[-1] & 1 << 3
    assert nic.fmt.name == "advanced"
    nic.close()


@pytest.mark.parametrize("impl", ["c", "python"])
def test_82576_frames_cross_both_ways_in_the_advanced_format(monkeypatch, impl):
    """The model walks the rings in the datasheet's advanced layout; more frames than the receive ring
    holds make every descriptor go round, so a refill that kept the written-back packet information
    instead of the buffer address would send frames to the wrong place."""
    from drivers import frames

    fake = D.FakeNic(0x10C9, True)
    with open_nic(monkeypatch, fake, impl) as nic:
        data, lens = frames.batch(nic.mac, frames.BROADCAST, 7, 0, 40, 200)
        assert nic.tx_batch(data, lens) == 40
        fake.on_write(D.TDT, fake.reg(D.TDT))  # the doorbell the C ring wrote straight into the mapping
        assert nic.tx_flush(1.0)
        assert [frames.check(f, 7) for f in fake.tx_frames] == list(range(40))
        got = []
        out = bytearray(65536)
        for start in range(0, 600, 100):
            for i in range(start, start + 100):
                fake.inject(frames.frame(b"\x02" * 6, nic.mac, 8, i, 60 + i % 200))
            while len(got) < start + 100:
                n, lens = nic.rx_batch(out)
                assert n, f"the ring stopped after {len(got)} frames"
                got += [frames.check(f, 8) for f in frames.split(out, lens, n)]
        assert got == list(range(600)) and nic.stats()["rx_dropped"] == 0


def test_82576_queue_that_never_enables_fails_the_open_and_leaves_nothing_open(monkeypatch):
    import drivers.intel

    monkeypatch.setattr(drivers.intel, "QUEUE_TIMEOUT", 0.05)
    fake = D.FakeNic(0x10C9, True, queue_reads=10**9)
    with pytest.raises(RomlabError) as exc:
        open_nic(monkeypatch, fake)
    msg = str(exc.value)
    assert "queue did not stop" in msg and "DCTL.ENABLE" in msg and "\n" not in msg
    assert fake.log[-1] == ("vfio_close",) and not fake.dma


def test_a_stall_longer_than_the_queue_timeout_right_after_a_read_still_opens(monkeypatch):
    """A loaded host can stop the process for longer than the timeout between a register read and
    the clock check after it; the queue started meanwhile. The poll must read once more after the
    deadline instead of failing on the read taken before the stall. The clock is the fake's: the
    stall moves it on by twice the timeout just after the first read of TXDCTL that still shows the
    queue disabled, and the device shows it enabled from the next read on (queue_reads=1)."""
    import time
    import types

    import drivers.intel

    fake = D.FakeNic(0x10C9, True, queue_reads=1)
    clock = {"offset": 0.0, "stalls": 0}
    monkeypatch.setattr(drivers.intel, "time", types.SimpleNamespace(
        monotonic=lambda: time.monotonic() + clock["offset"], sleep=time.sleep))
    real_on_read = fake.on_read
    enabling = {"on": False}

    def on_read(off):
        value = real_on_read(off)
        if off == D.TXDCTL0 and enabling["on"] and not value & D.XDCTL_ENABLE and not clock["stalls"]:
            clock["offset"] += 2 * drivers.intel.QUEUE_TIMEOUT
            clock["stalls"] += 1
        return value

    real_on_write = fake.on_write

    def on_write(off, value):
        if off == D.TXDCTL0:
            enabling["on"] = bool(value & D.XDCTL_ENABLE)
        real_on_write(off, value)

    fake.on_read, fake.on_write = on_read, on_write
    nic = open_nic(monkeypatch, fake)
    assert clock["stalls"] == 1, "the test never stalled the poll"
    assert fake.reg(D.TXDCTL0) & D.XDCTL_ENABLE and fake.reg(D.RDT) == 255
    nic.close()
