"""The emulated PC's parts on their own: PMM's allocator, the legacy ports (PIT channel 2 in real
time, port 61h, CMOS, configuration mechanism 1, the allowlist), and a model device's BAR sizing."""
from __future__ import annotations

import time

import pytest

from drivers.intel_model import IntelModel
from drivers.undi.device import ModelDevice
from drivers.undi.pmm import ANONYMOUS, FLAG_ALIGNED, FLAG_CONVENTIONAL, FLAG_EXTENDED, Pmm
from drivers.undi.ports import Denied, Ports


def test_pmm_allocate_find_deallocate():
    p = Pmm((0x30000, 0x80000), (0x1C00000, 0x2000000))
    a = p.allocate(0x1300, 0x1234, FLAG_EXTENDED)
    b = p.allocate(0xC000, 0x5678, FLAG_EXTENDED)
    assert a == 0x1C00000 and b == 0x1C13000  # first fit, 0x1300 paragraphs = 0x13000 bytes
    assert p.find(0x5678) == b and p.find(0x9999) == 0 and p.find(ANONYMOUS) == 0
    assert p.allocate(0x40000000, 1, FLAG_EXTENDED) == 0  # larger than the pool
    assert p.allocate(0, 0, FLAG_EXTENDED) == (0x2000000 - 0x1CD3000) // 16  # largest free block
    assert p.deallocate(a) == 0 and p.deallocate(a) != 0
    assert p.allocate(0x100, ANONYMOUS, FLAG_EXTENDED) == 0x1C00000  # the freed room is used again
    low = p.allocate(0x100, ANONYMOUS, FLAG_CONVENTIONAL | FLAG_ALIGNED)
    assert low == 0x30000 and low % 0x1000 == 0
    assert p.allocate(0x100, ANONYMOUS, FLAG_CONVENTIONAL | FLAG_ALIGNED) == 0x31000


def ports(config=None):
    space = config if config is not None else {}
    return Ports(lambda bdf, reg, size: space.get((bdf, reg, size), 0xFFFFFFFF >> (32 - 8 * size)),
                 lambda bdf, reg, size, v: space.__setitem__((bdf, reg, size), v), bytes(128))


def test_pit_channel_2_delay_ends_in_real_time():
    p = ports()
    p.write(0x61, 1, 0x01)  # gate channel 2 on, speaker off
    p.write(0x43, 1, 0b10_11_000_0)  # channel 2, lo/hi, mode 0, binary
    count = 11932  # 10 ms at 1.193182 MHz
    t0 = time.perf_counter()
    p.write(0x42, 1, count & 0xFF)
    p.write(0x42, 1, count >> 8)
    assert not p.read(0x61, 1) & 0x20
    while not p.read(0x61, 1) & 0x20:
        assert time.perf_counter() - t0 < 5, "OUT2 never rose"
    assert time.perf_counter() - t0 >= 0.0099


def test_port_61_refresh_bit_toggles():
    p = ports()
    seen, t0 = set(), time.perf_counter()
    while len(seen) < 2:
        seen.add(p.read(0x61, 1) & 0x10)
        assert time.perf_counter() - t0 < 5


def test_config_mechanism_1_and_cmos_and_post():
    p = ports({(0x18, 0x00, 2): 0x8086, (0x18, 0x02, 2): 0x100E})
    p.write(0xCF8, 4, 0x80001800)  # bus 0, device 3, function 0, register 0
    assert p.read(0xCFC, 2) == 0x8086 and p.read(0xCFE, 2) == 0x100E
    p.write(0xCF8, 4, 0x00001800)  # enable bit clear: no cycle
    assert p.read(0xCFC, 2) == 0xFFFF
    p.write(0x70, 1, 0x0B)
    p.write(0x71, 1, 0x02)
    assert p.read(0x71, 1) == 0x02
    p.write(0x80, 1, 0x42)
    assert p.post_codes == [0x42]


@pytest.mark.parametrize("port, size", [(0x3F8, 1), (0x60, 1), (0x92, 1), (0xCF9, 1), (0x1F0, 2)])
def test_ports_outside_the_allowlist_are_denied(port, size):
    """Serial, keyboard, fast A20, reset control (0xCF9), IDE: none is a NIC ROM's business."""
    p = ports()
    with pytest.raises(Denied, match=f"I/O port {port:#x}"):
        p.read(port, size)
    with pytest.raises(Denied, match=f"I/O port {port:#x}"):
        p.write(port, size, 0)


def test_model_device_bars_answer_sizing():
    dev = ModelDevice(IntelModel())
    dev.config_write(0x10, 4, 0xFFFFFFFF)
    dev.config_write(0x14, 4, 0xFFFFFFFF)
    assert dev.config_read(0x10, 4) == 0xFFFE0000  # 128 KiB memory BAR
    assert dev.config_read(0x14, 4) == 0xFFFFFFC1  # 64-byte I/O BAR
    assert dev.config_read(0x00, 4) == 0x100E8086 and dev.config_read(0x0B, 1) == 0x02
