"""hw.mmio and hw.access.open_bar without a device: a regular file stands in for sysfs resource0.

The kernel's resource0 is mmap'ed the same way as a regular file, so the byte order and the
offsets of 32-bit accesses can be checked against the file's bytes, written independently
with struct. What only a real BAR shows (the kernel refusing a BAR a driver holds) is checked
in the VM (test_flash_vm.py).
"""
from __future__ import annotations

import struct

import pytest
from test_flash_pci import BDF, card

from hw import access
from hw.errors import HardwareError, UsageError
from hw.mmio import Bar, BarBusy, ResourceBar, Window
from hw.pci import PciDevice


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path / "sys"))


def test_resource_bar_reads_and_writes_little_endian_words(tmp_path):
    path = tmp_path / "resource0"
    path.write_bytes(struct.pack("<4I", 0x11223344, 0xA5A5A5A5, 0, 0xFFFFFFFF))
    bar = ResourceBar(path)
    assert bar.size == 16
    assert bar.read32(0) == 0x11223344 and bar.read32(4) == 0xA5A5A5A5 and bar.read32(12) == 0xFFFFFFFF
    bar.write32(8, 0x1_DEADBEEF)              # only the low 32 bits are a register's
    assert path.read_bytes()[8:12] == bytes.fromhex("efbeadde")
    bar.close()
    bar.close()                                # a second close is harmless


def test_resource_bar_errors_name_the_file(tmp_path):
    with pytest.raises(HardwareError, match=r"resource0 does not exist: the device has no memory BAR 0"):
        ResourceBar(tmp_path / "resource0")
    (tmp_path / "resource2").write_bytes(b"")
    with pytest.raises(HardwareError, match=r"resource2 is empty: the kernel gives BAR 2 no size"):
        ResourceBar(tmp_path / "resource2")


class Regs(Bar):
    def __init__(self, fail_close=False):
        self.seen, self.closed, self.fail_close = [], 0, fail_close

    def read32(self, offset):
        self.seen.append(("r", offset))
        return offset

    def write32(self, offset, value):
        self.seen.append(("w", offset, value))

    def close(self):
        self.closed += 1
        if self.fail_close:
            raise OSError("close failed")


def test_window_moves_offsets_and_runs_on_close_once_after_the_bar():
    regs = Regs()
    order = []
    win = Window(regs, 0x12000, on_close=lambda: order.append(regs.closed))
    assert win.read32(0x1C) == 0x1201C
    win.write32(0x10, 7)
    assert regs.seen == [("r", 0x1201C), ("w", 0x12010, 7)]
    win.close()
    win.close()
    assert order == [1]                        # once, after the BAR was closed
    # A BAR whose close fails still runs on_close (a driver to give back must not be skipped).
    failing = Regs(fail_close=True)
    done = []
    with pytest.raises(OSError):
        Window(failing, 0, on_close=lambda: done.append(True)).close()
    assert done == [True]


def test_open_bar_refuses_before_mapping(tmp_path, monkeypatch):
    card(tmp_path, 0x8086, 0x10D3, command=0x0000)
    dev = PciDevice.open(BDF)

    def never(self, index=0):
        raise AssertionError("mapped a BAR it should have refused")
    monkeypatch.setattr(PciDevice, "map_resource", never)
    with pytest.raises(HardwareError, match=r"memory decoding turned off .*`echo 1 > .*/enable` first"):
        access.open_bar(dev)
    with pytest.raises(UsageError, match="unknown access method 'mmio'; use sysfs or vfio"):
        access.open_bar(dev, via="mmio")


def test_open_bar_maps_resource0_and_says_what_to_do_when_a_driver_holds_it(tmp_path, monkeypatch):
    d = card(tmp_path, 0x8086, 0x10D3, driver="e1000e", bar_size=4096)
    (d / "resource0").write_bytes(struct.pack("<I", 0xCAFEF00D) + bytes(4092))
    bar = access.open_bar(PciDevice.open(BDF))
    assert bar.read32(0) == 0xCAFEF00D
    bar.close()

    def busy(self, index=0):
        raise BarBusy("held")
    monkeypatch.setattr(PciDevice, "map_resource", busy)
    with pytest.raises(HardwareError) as exc:
        access.open_bar(PciDevice.open(BDF))
    assert str(exc.value) == (f"{BDF}: the e1000e driver holds BAR 0, so the kernel will not map it for romlab; "
                              "add --unbind (the driver is unbound for the run and bound again after; the link "
                              "goes down meanwhile), or use --via vfio")
