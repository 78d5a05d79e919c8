"""IntelVf (the 82576's virtual function) against a register-recording double of a VF and its PF's side
of the mailbox (tests/intel_double.py FakeVf): the reset and the mailbox exchange as iPXE's intelvf.c
and Linux's igbvf do them, the MAC the PF assigns, the shared rings in the advanced format, the VF's
wrapping counters, and open_nic's choice of class. The real device runs this in tests/test_igb_vm.py."""
from __future__ import annotations

import intel_double as D
import pytest

from hw.errors import RomlabError

MAC = bytes.fromhex("525400007610")


def open_vf(monkeypatch, fake, impl="c"):
    from drivers import open_nic

    D.install(monkeypatch, fake)
    return open_nic("0000:01:10.0", impl=impl)


def first(log, pred, start=0):
    return next(i for i in range(start, len(log)) if pred(log[i]))


def writes(log, off):
    return [e[2] for e in log if e[:2] == ("w", off)]


def test_open_resets_the_vf_then_asks_the_pf_and_takes_the_mac_it_assigned(monkeypatch):
    from drivers.intelvf import IntelVf

    fake = D.FakeVf(pf_mac=MAC)
    nic = open_vf(monkeypatch, fake)
    log = fake.log
    assert isinstance(nic, IntelVf) and nic.mac == MAC
    bme_off = first(log, lambda e: D.bus_master(e) is False)
    rst = first(log, lambda e: e[:2] == ("w", D.CTRL) and e[2] & D.CTRL_RST)
    rst_done = first(log, lambda e: e[:2] == ("r", D.CTRL) and not e[2] & D.CTRL_RST, rst)
    claim = first(log, lambda e: e[:3] == ("w", fake.VMMB, fake.MB_VFU), rst_done)
    assert bme_off < rst < rst_done < claim
    # the message: RESET alone, posted with REQ after it was written into the mailbox memory
    assert fake.messages == [[0x01] + [0] * 15]
    msg_written = first(log, lambda e: e[:3] == ("w", fake.VMBMEM, 0x01), claim)
    posted = first(log, lambda e: e[0] == "w" and e[1] == fake.VMMB and e[2] & fake.MB_REQ, msg_written)
    # the reply is read only after the PF acknowledged and posted it, and is acknowledged in turn
    reply_read = first(log, lambda e: e[:2] == ("r", fake.VMBMEM), posted)
    assert any(e[:2] == ("r", fake.VMMB) and e[2] & fake.MB_PFSTS for e in log[posted:reply_read])
    assert any(e[0] == "w" and e[1] == fake.VMMB and e[2] & fake.MB_ACK for e in log[posted:])
    # the rings: SRRCTL with 2 KiB buffers, advanced one-buffer descriptors and drop-when-full; the
    # queues enabled (and seen enabled) before a tail moves off 0; bus mastering after the reset
    assert writes(log, D.SRRCTL0) == [2 | 1 << 25 | 1 << 31]
    for ctl, tail in ((D.RXDCTL0, D.RDT), (D.TXDCTL0, D.TDT)):
        seen_on = first(log, lambda e: e[:2] == ("r", ctl) and e[2] & D.XDCTL_ENABLE)
        assert all(i > seen_on for i, e in enumerate(log) if e[:2] == ("w", tail) and e[2])
    assert first(log, lambda e: D.bus_master(e) is True) > rst_done
    assert nic.fmt.name == "advanced" and nic.link_up
    nic.close()
    assert log[-1] == ("vfio_close",) and not fake.dma


def test_tails_a_previous_user_left_are_zeroed_while_disabled_and_on_close(monkeypatch):
    """A VF reset clears only the queue enables (QEMU's igb_vf_reset), so the tails of the last user
    survive it: open writes head and tail 0 while each queue is disabled, before enabling it (iPXE's
    intel_create_ring, Linux igbvf_configure_rx/tx), and close leaves them 0 for the next user."""
    fake = D.FakeVf(pf_mac=MAC)
    stale = {D.RDH: 17, D.RDT: 200, D.TDH: 5, D.TDT: 300}
    for reg, value in stale.items():
        fake.set(reg, value)
    fake.reset()
    assert all(fake.reg(reg) == value for reg, value in stale.items()), "the double's VF reset lost the tails"
    nic = open_vf(monkeypatch, fake)
    log = fake.log
    for ctl, head, tail in ((D.RXDCTL0, D.RDH, D.RDT), (D.TXDCTL0, D.TDH, D.TDT)):
        on = first(log, lambda e, ctl=ctl: e[:2] == ("w", ctl) and e[2] & D.XDCTL_ENABLE)
        for reg in (head, tail):
            zeroed = first(log, lambda e, reg=reg: e[:3] == ("w", reg, 0))
            assert zeroed < on, f"{reg:#x} was not zeroed before the queue was enabled"
    assert fake.reg(D.TDT) == 0 and fake.reg(D.RDT) == 255
    start = len(log)
    nic.close()
    assert all(fake.reg(reg) == 0 for reg in stale), {hex(r): fake.reg(r) for r in stale}
    disabled = first(log, lambda e: e[:2] == ("r", D.TXDCTL0) and not e[2] & D.XDCTL_ENABLE, start)
    assert all(i > disabled for i, e in enumerate(log) if i >= start and e[:2] in (("w", D.RDT), ("w", D.TDT)))


def test_a_pf_that_assigns_no_mac_is_asked_for_a_random_local_one(monkeypatch):
    fake = D.FakeVf(pf_mac=None)
    nic = open_vf(monkeypatch, fake)
    kinds = [m[0] for m in fake.messages]
    assert kinds == [0x01, 0x02]
    mac = nic.mac
    assert mac == fake.pf_mac and mac[0] & 0x02 and not mac[0] & 0x01  # locally administered unicast
    assert fake.messages[1][1] == int.from_bytes(mac[:4], "little") and fake.messages[1][2] == int.from_bytes(
        mac[4:], "little")
    nic.close()


def test_a_pf_that_refuses_the_mac_fails_the_open_and_leaves_nothing_open(monkeypatch):
    fake = D.FakeVf(pf_mac=None, accept_mac=False)
    with pytest.raises(RomlabError) as exc:
        open_vf(monkeypatch, fake)
    msg = str(exc.value)
    assert "refused the MAC address" in msg and "ip link set PF vf N mac" in msg and "\n" not in msg
    assert fake.log[-1] == ("vfio_close",) and not fake.dma


def test_a_pf_still_in_reset_is_named(monkeypatch):
    import drivers.intelvf

    monkeypatch.setattr(drivers.intelvf, "PF_READY_TIMEOUT", 0.05)
    fake = D.FakeVf(pf_ready=False)
    with pytest.raises(RomlabError) as exc:
        open_vf(monkeypatch, fake)
    assert "RSTI" in str(exc.value) and "ip link set PF up" in str(exc.value)
    assert fake.messages == [] and fake.log[-1] == ("vfio_close",) and not fake.dma


@pytest.mark.parametrize("pf_mac,msg", [(MAC, 0x01), (None, 0x02)], ids=["during-reset", "during-set-mac"])
def test_a_pf_that_resets_during_a_message_is_one_line_and_leaves_nothing_open(monkeypatch, pf_mac, msg):
    """The PF acknowledges the message (PFACK) and then resets (VMMB.RSTI, bit 6) instead of replying:
    iPXE's intelvf_mbox_msg and Linux's igbvf give up on the message at RSTI; so does IntelVf, at
    once (not after the mailbox timeout), in one line, with everything it had opened closed."""
    import time

    import drivers.intelvf

    monkeypatch.setattr(drivers.intelvf, "MBOX_TIMEOUT", 60.0)
    fake = D.FakeVf(pf_mac=pf_mac, reset_on_msg=msg)
    t0 = time.monotonic()
    with pytest.raises(RomlabError) as exc:
        open_vf(monkeypatch, fake)
    text = str(exc.value)
    assert "the PF reset while the VF was talking to it (VMMB.RSTI)" in text and "\n" not in text
    assert time.monotonic() - t0 < 30.0, "the reset was noticed only when the mailbox timed out"
    assert [m[0] & 0xFFFF for m in fake.messages][-1] == msg
    assert any(e[:2] == ("r", fake.VMMB) and e[2] & fake.MB_PFACK for e in fake.log)
    assert fake.log[-1] == ("vfio_close",) and not fake.dma


def test_a_silent_pf_times_out(monkeypatch):
    import drivers.intelvf

    monkeypatch.setattr(drivers.intelvf, "MBOX_TIMEOUT", 0.05)
    fake = D.FakeVf(pf_silent=True)
    with pytest.raises(RomlabError) as exc:
        open_vf(monkeypatch, fake)
    assert "did not answer message 0x1" in str(exc.value) and "\n" not in str(exc.value)
    assert fake.log[-1] == ("vfio_close",) and not fake.dma


@pytest.mark.parametrize("impl", ["c", "python"])
def test_frames_both_ways_and_counters_that_wrap(monkeypatch, impl):
    """VFGPRC/VFGPTC count up and wrap at 32 bits; reading them does not clear them. Started a few
    counts short of the wrap, the totals must still be the frames that moved."""
    from drivers import frames

    fake = D.FakeVf()
    fake.set(fake.VFGPRC, 0xFFFFFFFF - 3)
    fake.set(fake.VFGPTC, 0xFFFFFFFE)
    with open_vf(monkeypatch, fake, impl) as nic:
        data, lens = frames.batch(nic.mac, frames.BROADCAST, 3, 0, 10, 100)
        assert nic.tx_batch(data, lens) == 10
        fake.on_write(D.TDT, fake.reg(D.TDT))  # the doorbell the C ring wrote straight into the mapping
        assert nic.tx_flush(1.0)
        assert [f[6:12] for f in fake.tx_frames] == [MAC] * 10  # the source is the PF-assigned MAC
        for i in range(7):
            fake.inject(frames.frame(b"\x02" * 6, nic.mac, 4, i, 80))
            fake.count(D.GPRC, 1)  # the double counts only when told (VFGPRC here)
        out = bytearray(65536)
        n, lens = nic.rx_batch(out)
        assert [frames.check(f, 4) for f in frames.split(out, lens, n)] == list(range(7))
        s = nic.stats()
        assert (s["rx_good"], s["tx_good"], s["rx_dropped"], s["rx_missed"]) == (7, 10, 0, None)


def test_a_vf_has_no_eeprom(monkeypatch):
    fake = D.FakeVf()
    with open_vf(monkeypatch, fake) as nic:
        assert not nic.HAS_EEPROM
        with pytest.raises(RomlabError, match="no EEPROM"):
            nic.eeprom_word(0)


def test_open_nic_picks_the_class_by_pci_id_and_intelnic_points_a_vf_to_it(monkeypatch):
    from drivers import nic_class
    from drivers.intel import IntelNic
    from drivers.intelvf import IntelVf

    assert nic_class(0x8086, 0x10CA) is IntelVf
    assert nic_class(0x8086, 0x10C9) is IntelNic and nic_class(0x8086, 0x100E) is IntelNic
    fake = D.FakeVf()
    D.install(monkeypatch, fake)
    with pytest.raises(RomlabError) as exc:
        IntelNic("0000:01:10.0")
    assert "virtual function" in str(exc.value) and "open_nic" in str(exc.value)
    pf = D.FakeNic(0x10C9, True)
    D.install(monkeypatch, pf)
    with pytest.raises(RomlabError, match="not a virtual function"):
        IntelVf("0000:01:00.0")


@pytest.mark.parametrize("kind", ["pf", "vf"])
def test_wait_rx_arms_and_clears_each_functions_own_interrupt_registers(monkeypatch, kind):
    """One wait_rx for both: the PF unmasks ICR.RXT0 in IMS, masks it in IMC and clears the cause by
    reading ICR (8257x manuals); the VF unmasks its queue-0 cause in VTEIMS (0x1524), masks it in
    VTEIMC (0x1528) and clears it by writing 1 to VTEICR (0x1580; 82576 datasheet, Linux igbvf). The
    vector's eventfd is a pipe here with one event already in it."""
    import os

    from hw import vfio

    fake = D.FakeVf(pf_mac=MAC) if kind == "vf" else D.FakeNic(0x10C9, True)
    nic = open_vf(monkeypatch, fake)
    r, w = os.pipe()
    try:
        nic._irq_fd, nic._irq_index, nic.interrupts = r, vfio.IRQ_MSIX, 0
        os.write(w, (1).to_bytes(8, "little"))
        start = len(fake.log)
        assert nic.wait_rx(5.0) and nic.interrupts == 1
        got = [e[:2] + ((e[2],) if e[0] == "w" else ()) for e in fake.log[start:]]
        if kind == "vf":
            assert got == [("w", 0x1524, 1), ("w", 0x1528, 1), ("w", 0x1580, 1)]
        else:
            assert got == [("w", 0x00D0, 1 << 7), ("w", 0x00D8, 1 << 7), ("r", 0x00C0)]
        nic._irq_fd = None
    finally:
        os.close(r)
        os.close(w)
        nic.close()
