"""The pieces of `romlab undi`'s VFIO backend that a host without an IOMMU can check: a ROM that is not
for the device is refused before the device is touched, and the emulated RAM's fixed-IOVA DMA
mapping refuses what the IOMMU would not take and takes its IOVAs out of the allocator. The backend
on a real (QEMU) device is covered by tests/test_undi_vm.py."""
from __future__ import annotations

import mmap
import os
from types import SimpleNamespace

import pytest
from conftest import IPXE_QEMU, run_romlab
from test_messages import _device

from hw import vfio
from hw.errors import HardwareError

PAGE = mmap.PAGESIZE


def test_a_rom_for_another_device_is_refused_before_the_device_is_touched(tmp_path):
    env = _device(tmp_path, 0x8086, 0x10D3)  # an 82574L; pxe-e1000.rom's PCIR says 8086:100e
    r = run_romlab("undi", "info", "--pci", "03:00.0", "--rom", str(IPXE_QEMU / "pxe-e1000.rom"), env=env)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err == ("romlab undi: error: the ROM is for 8086:100e, the device is 8086:10d3; use --force-ids "
                   "to run it anyway\n")
    assert not (tmp_path / "state").exists()  # no driver record: nothing was unbound


def test_bad_arguments_are_one_line(tmp_path):
    r = run_romlab("undi", "send", "--pci", "03:00.0", "--size", "59")
    assert r.returncode == 2 and b"frame size 59 is outside 60..1514" in r.stderr
    r = run_romlab("undi", "info", "--pci", "03:00.0", "--rom", str(tmp_path / "none.rom"))
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"none.rom" in r.stderr


def test_reserve_takes_exactly_the_range_out_of_the_free_space():
    a = vfio.IovaAllocator([(0, 0x3FFFFFF)], page=PAGE, floor=0x100000)  # free: [1 MiB, 64 MiB)
    a.reserve(0, 0x2000000)  # the emulated PC's 32 MiB, reaching below the floor
    assert a.free == [[0x2000000, 0x4000000]]
    a = vfio.IovaAllocator([(0, 0x3FFFFFF)], page=PAGE, floor=0x100000)
    a.reserve(0x200000, 0x100000)  # a hole in the middle
    assert a.free == [[0x100000, 0x200000], [0x300000, 0x4000000]]
    assert a.alloc(0x100000) == 0x100000 and a.alloc(0x100000) == 0x300000


@pytest.fixture
def dev():
    """A VfioDevice around /dev/null fds (every VFIO ioctl fails with ENOTTY) and a 64 MiB IOMMU."""
    v = vfio.VfioDevice.__new__(vfio.VfioDevice)
    v.pci = SimpleNamespace(bdf="0000:03:00.0")
    v.closed, v.backend, v.ioas_id, v.iommufd = False, "container", 0, -1
    v.dma, v.irq_fds, v._maps = {}, {}, []
    v.iova_ranges = [(0, 0x3FFFFFF)]
    v.iova = vfio.IovaAllocator(v.iova_ranges)
    for name in ("container_fd", "group_fd", "device_fd"):
        setattr(v, name, os.open("/dev/null", os.O_RDWR))
    yield v
    for name in ("container_fd", "group_fd", "device_fd"):
        os.close(getattr(v, name))


def test_dma_map_at_refuses_what_the_iommu_would_not_take(dev):
    mem = mmap.mmap(-1, 16 * PAGE)
    with pytest.raises(HardwareError, match="not whole pages"):
        dev.dma_map_at(mem, 0, PAGE + 1, 0)
    with pytest.raises(HardwareError, match="not whole pages"):
        dev.dma_map_at(mem, 8 * PAGE, 16 * PAGE, 0)  # past the end of the buffer
    with pytest.raises(HardwareError, match="does not accept IOVA 0x4000000"):
        dev.dma_map_at(mem, 0, PAGE, 0x4000000)
    free = [list(r) for r in dev.iova.free]
    with pytest.raises(HardwareError, match="mapping DMA memory at IOVA 0x0 failed"):
        dev.dma_map_at(mem, 0, 4 * PAGE, 0)  # the ioctl itself fails on /dev/null
    assert dev.dma == {} and dev.iova.free == free and not mem.closed  # nothing half-done


def test_dma_map_at_records_lent_memory_and_never_closes_it(dev, monkeypatch):
    calls = []
    monkeypatch.setattr(dev, "_map_dma", lambda buf: calls.append((buf.iova, buf.size)))
    mem = mmap.mmap(-1, 16 * PAGE)
    base = vfio.DmaBuffer(mem, 0, 16 * PAGE).vaddr
    buf = dev.dma_map_at(mem, 4 * PAGE, 4 * PAGE, 0x200000)
    assert calls == [(0x200000, 4 * PAGE)] and buf.vaddr == base + 4 * PAGE and not buf.owned
    with pytest.raises(HardwareError, match="overlaps a DMA mapping"):
        dev.dma_map_at(mem, 0, 2 * PAGE, 0x200000 + 3 * PAGE)
    dev._forget_dma(buf)
    assert dev.dma == {} and not mem.closed
