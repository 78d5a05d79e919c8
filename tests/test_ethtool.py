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
