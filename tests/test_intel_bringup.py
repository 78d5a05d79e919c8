"""IntelNic's bring-up, counters and close against a register-recording double (tests/intel_double.py).

The order checked is the one the 8254x/8257x manuals and iPXE's intel_reset/intel_close follow:
no bus mastering until the MAC reset has finished; on close, receive and transmit off, (on PCI
Express parts) master requests disabled and their end polled for, a MAC reset polled to its end,
and only then bus mastering off and the DMA memory freed. The real devices run this code in
tests/test_nic_vm.py.
"""
from __future__ import annotations

import pytest

import intel_double as D
from romtools.errors import RomError

PARTS = pytest.mark.parametrize("device_id,pcie", [(0x10D3, True), (0x100E, False)], ids=["82574L", "82540EM"])


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


# -- defect 4 (IntelNic's part) ------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="defect 4: stats() shows no ring drops and loses the clear-on-read counters")
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
