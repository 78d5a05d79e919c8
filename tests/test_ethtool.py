"""hw.ethtool against the kernel's own numbers on this machine's interfaces (no NIC of romlab's needed).

The ioctl path is checked where the kernel offers a second road to the same count: a driver that
reports per-queue ethtool statistics (virtio-net, ifb: ``tx_queue_N_packets``) also sums them into
the netdev's ``statistics/tx_packets`` in sysfs, so a read of the ioctl taken between two reads of
sysfs lies between them. GPTC itself (the e1000 family's ``tx_packets``) is read in the VM tier's
bench (tests/test_nic_vm.py), where romlab's and the kernel's counts meet.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hw import ethtool
from hw.errors import HardwareError

NET = Path("/sys/class/net")


def _queued(stats: dict) -> int | None:
    q = [v for k, v in stats.items() if re.fullmatch(r"tx_queue_\d+_packets", k)]
    return sum(q) if q else None


def test_per_queue_counts_sum_to_the_netdevs_count():
    checked = []
    for name in sorted(os.listdir(NET)):
        try:
            first = ethtool.stats(name)
        except HardwareError:
            continue
        if _queued(first) is None:
            continue
        before = int((NET / name / "statistics" / "tx_packets").read_text())
        mid = _queued(ethtool.stats(name))
        after = int((NET / name / "statistics" / "tx_packets").read_text())
        assert before <= mid <= after, (name, before, mid, after)
        checked.append(name)
    if not checked:
        pytest.skip("no interface here reports per-queue ethtool statistics")


def test_refusals_are_one_line():
    with pytest.raises(HardwareError, match="no network interface 'romlab-none0'"):
        ethtool.stats("romlab-none0")
    with pytest.raises(HardwareError, match="is not a network interface name"):
        ethtool.stats("a" * 16)
    with pytest.raises(HardwareError, match="lo's driver has no ethtool statistics"):
        ethtool.stats("lo")               # loopback has no ethtool statistics at all


class FakeKernel:
    """SIOCETHTOOL as Linux's net/ethtool/ioctl.c answers it, for one interface: GSSET_INFO gives the
    driver's count of that moment; GSTRINGS and GSTATS copy out the count of *their* moment, whatever
    length the caller wrote (ethtool_get_strings/ethtool_get_stats overwrite it), so a driver whose
    count grows between the calls (igb when SR-IOV is enabled) writes past a buffer sized from
    GSSET_INFO. Every buffer hw.ethtool makes is recorded, so a write past one fails the test
    instead of corrupting memory. GRINGPARAM/SRINGPARAM keep one struct ethtool_ringparam."""

    def __init__(self, monkeypatch, counts, ring=(4096, 0, 0, 4096, 256, 0, 0, 256)):
        import ctypes
        import fcntl

        self.counts = list(counts)  # the driver's count at each call, in order
        self.ring = list(ring)
        self.sizes: dict[int, int] = {}
        real_buffer = ethtool._buffer

        def buffer(data):
            buf = real_buffer(data)
            self.sizes[ctypes.addressof(buf)] = len(data)
            return buf
        monkeypatch.setattr(ethtool, "_buffer", buffer)
        monkeypatch.setattr(ethtool.fcntl, "ioctl", self.ioctl)
        assert ethtool.fcntl is fcntl

    def _out(self, addr: int, data: bytes) -> None:
        import ctypes

        assert len(data) <= self.sizes[addr], f"the kernel wrote {len(data)} bytes into a {self.sizes[addr]}-byte buffer"
        ctypes.memmove(addr, data, len(data))

    def ioctl(self, fd, request, ifr):
        import ctypes
        import struct

        assert request == ethtool.SIOCETHTOOL
        addr = struct.unpack_from("P", ifr, 16)[0]
        cmd = struct.unpack("<I", ctypes.string_at(addr, 4))[0]
        if cmd == ethtool.ETHTOOL_GSSET_INFO:
            self._out(addr, struct.pack("<IIQI", cmd, 0, 1 << ethtool.ETH_SS_STATS, self.counts.pop(0)))
        elif cmd == ethtool.ETHTOOL_GSTRINGS:
            # as Linux 6.12's ethtool_get_strings: a length that is not the driver's count gets 0 back
            # and nothing copied
            n, asked = self.counts.pop(0), struct.unpack("<I", ctypes.string_at(addr + 8, 4))[0]
            if asked != n:
                self._out(addr, struct.pack("<III", cmd, ethtool.ETH_SS_STATS, 0))
                return ifr
            names = b"".join(f"stat_{i}".encode().ljust(ethtool.ETH_GSTRING_LEN, b"\0") for i in range(n))
            self._out(addr, struct.pack("<III", cmd, ethtool.ETH_SS_STATS, n) + names)
        elif cmd == ethtool.ETHTOOL_GSTATS:
            n, asked = self.counts.pop(0), struct.unpack("<I", ctypes.string_at(addr + 4, 4))[0]
            if asked != n:
                self._out(addr, struct.pack("<II", cmd, 0))
                return ifr
            self._out(addr, struct.pack("<II", cmd, n) + b"".join(struct.pack("<Q", 1000 + i) for i in range(n)))
        elif cmd == ethtool.ETHTOOL_GRINGPARAM:
            self._out(addr, struct.pack("<9I", cmd, *self.ring))
        elif cmd == ethtool.ETHTOOL_SRINGPARAM:
            self.ring = list(struct.unpack("<9I", ctypes.string_at(addr, 36))[1:])
        else:
            raise AssertionError(f"unexpected ethtool command {cmd:#x}")
        return ifr


def test_statistics_are_asked_for_by_the_count_the_driver_gave(monkeypatch):
    FakeKernel(monkeypatch, [40, 40, 40])
    got = ethtool.stats("eth9")
    assert len(got) == 40 and got["stat_0"] == 1000 and got["stat_39"] == 1039


def test_a_count_that_changes_between_the_calls_or_is_too_large_is_one_line(monkeypatch):
    FakeKernel(monkeypatch, [40, 75, 75])  # SR-IOV enabled between GSSET_INFO and GSTRINGS
    with pytest.raises(HardwareError, match=r"changed its statistics while romlab read them \(40 counted, 0 names, 0 values"):
        ethtool.stats("eth9")
    FakeKernel(monkeypatch, [40, 40, 75])
    with pytest.raises(HardwareError, match=r"changed its statistics while romlab read them \(40 counted, 40 names, 0 values"):
        ethtool.stats("eth9")
    FakeKernel(monkeypatch, [ethtool.MAX_STATS + 1])  # refused before the names are asked for
    with pytest.raises(HardwareError) as exc:
        ethtool.stats("eth9")
    assert "more than the 4096 romlab reads" in str(exc.value)


def test_ring_sizes_are_read_and_set_within_the_drivers_maxima(monkeypatch):
    """struct ethtool_ringparam: cmd, rx/rx_mini/rx_jumbo/tx maxima, then the same four in use."""
    kernel = FakeKernel(monkeypatch, [], ring=(4096, 0, 0, 4096, 256, 0, 0, 256))
    assert ethtool.get_ring("eth9")["rx_max_pending"] == 4096
    after = ethtool.set_ring("eth9", rx=4096)
    assert kernel.ring == [4096, 0, 0, 4096, 4096, 0, 0, 256] and after["rx_pending"] == 4096
    with pytest.raises(HardwareError, match="takes tx rings of 1..4096 descriptors, not 8192"):
        ethtool.set_ring("eth9", tx=8192)
    assert kernel.ring[7] == 256


def test_ring_refusals_are_one_line():
    with pytest.raises(HardwareError, match="no network interface 'romlab-none0'"):
        ethtool.get_ring("romlab-none0")
    with pytest.raises(HardwareError, match="lo's driver cannot report its ring sizes"):
        ethtool.get_ring("lo")
