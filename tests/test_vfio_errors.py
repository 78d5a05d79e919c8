"""hw.vfio's error paths without a VFIO device: every failure a HardwareError, nothing leaked.

No IOMMU exists on this machine outside the VM, so the device object is built by hand around
fds that are not VFIO's (``/dev/null``: every VFIO ioctl on it fails with ENOTTY, as a wrong or
stale fd would) and anonymous memory standing in for a mapped BAR. The ioctl numbers and the
kernel's answers on a real device are covered in the VM (tests/vm_guest_e2e.py).
"""
from __future__ import annotations

import errno
import mmap
import os
from types import SimpleNamespace

import pytest

from hw import _vfio_cdef as C
from hw import mmio, vfio
from hw.errors import HardwareError

BDF = "0000:03:00.0"
ENOTTY_TEXT = os.strerror(errno.ENOTTY)


@pytest.fixture
def dev():
    """A VfioDevice whose fds are all /dev/null, registered as an open one would be."""
    v = vfio.VfioDevice.__new__(vfio.VfioDevice)
    v.pci = SimpleNamespace(bdf=BDF)
    v.closed = False
    v.backend = "container"
    v.ioas_id = 0
    v.dma, v.irq_fds, v._maps = {}, {}, []
    v.iova = vfio.IovaAllocator([(0, (1 << 32) - 1)])
    for name in ("container_fd", "group_fd", "device_fd"):
        setattr(v, name, os.open("/dev/null", os.O_RDWR))
    v.iommufd = -1
    vfio._OPEN.setdefault(BDF, []).append(v)
    yield v
    for m in v._maps:
        m.mm.close()
    v._maps.clear()
    vfio._OPEN.pop(BDF, None)
    for name in ("container_fd", "group_fd", "device_fd"):
        if getattr(v, name) >= 0:
            os.close(getattr(v, name))


# --------------------------------------------------------------------------- review 3
@pytest.mark.parametrize("call,request_name", [
    (lambda v: vfio._ioctl(v.container_fd, C.VFIO_GET_API_VERSION), "VFIO_GET_API_VERSION"),
    (lambda v: vfio._ioctl_int(v.container_fd, C.VFIO_CHECK_EXTENSION, C.VFIO_TYPE1v2_IOMMU),
     "VFIO_CHECK_EXTENSION"),
    (lambda v: vfio._ioctl_int(v.container_fd, C.VFIO_SET_IOMMU, C.VFIO_TYPE1v2_IOMMU), "VFIO_SET_IOMMU"),
    (lambda v: v._type1_iova_ranges(), "VFIO_IOMMU_GET_INFO"),
    (lambda v: v.info(), "VFIO_DEVICE_GET_INFO"),
    (lambda v: v.irq_info(vfio.IRQ_INTX), "VFIO_DEVICE_GET_IRQ_INFO"),
    (lambda v: v.irq_unmask(), "VFIO_DEVICE_SET_IRQS"),
    (lambda v: v.irqs(), "VFIO_DEVICE_GET_INFO"),
])
def test_review3_a_failed_vfio_ioctl_is_a_hardware_error_naming_the_call(dev, call, request_name):
    with pytest.raises(HardwareError) as exc:
        call(dev)
    msg = str(exc.value)
    assert request_name in msg and ENOTTY_TEXT in msg and "\n" not in msg, msg


def test_review3_the_open_path_reports_a_refused_ioctl_in_one_line(dev, monkeypatch):
    """The container open, past its fds: a kernel that refuses GROUP_GET_STATUS."""
    monkeypatch.setattr(dev, "_open_path", lambda path: os.open("/dev/null", os.O_RDWR))
    monkeypatch.setattr(vfio, "_ioctl_int", lambda fd, req, arg: 1)
    real = vfio.fcntl.ioctl

    def ioctl(fd, req, *args):
        return C.VFIO_API_VERSION if req == C.VFIO_GET_API_VERSION else real(fd, req, *args)
    monkeypatch.setattr(vfio.fcntl, "ioctl", ioctl)
    for name in ("container_fd", "group_fd"):
        os.close(getattr(dev, name))
    with pytest.raises(HardwareError, match=f"VFIO_GROUP_GET_STATUS.*{ENOTTY_TEXT}"):
        dev._open_container(5)


# --------------------------------------------------------------------------- review 4
def test_review4_a_bar_mapping_still_in_use_keeps_the_device_from_being_let_go(dev):
    """A view of a BAR that outlives ``close`` keeps the device file open; unbinding would then
    wait for it uninterruptibly, so closing says so instead of carrying on."""
    bar = mmio.MappedBar(mmap.mmap(-1, mmap.PAGESIZE), mmap.PAGESIZE)
    dev._maps.append(bar)
    view = memoryview(bar.mm)
    with pytest.raises(HardwareError, match=f"{BDF}.*still mapped"):
        dev.close()
    assert dev.device_fd == -1                       # the rest was closed all the same
    with pytest.raises(HardwareError, match="still mapped"):
        vfio.close_all(BDF)                          # and it goes on refusing, not silently
    view.release()
    vfio.close_all(BDF)
    assert bar.mm.closed and vfio._OPEN.get(BDF) == []


# --------------------------------------------------------------------------- review 7
def test_review7_dma_alloc_closes_its_memory_when_no_iova_is_left(dev, monkeypatch):
    made = []
    real = mmap.mmap

    def spy(*a, **kw):
        m = real(*a, **kw)
        made.append(m)
        return m
    monkeypatch.setattr(vfio.mmap, "mmap", spy)
    dev.iova = vfio.IovaAllocator([(0x100000, 0x100000 + mmap.PAGESIZE - 1)])
    with pytest.raises(HardwareError, match="no free IOVA"):
        dev.dma_alloc(2 * mmap.PAGESIZE)
    assert made and all(m.closed for m in made)


def test_review7_irq_enable_closes_the_eventfds_it_made_when_one_fails(dev, monkeypatch):
    made = []
    real = os.eventfd

    def eventfd(*a):
        if len(made) == 2:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        made.append(real(*a))
        return made[-1]
    monkeypatch.setattr(vfio.os, "eventfd", eventfd)
    monkeypatch.setattr(dev, "irq_info", lambda index: vfio.IrqInfo(index, C.VFIO_IRQ_INFO_EVENTFD, 4))
    with pytest.raises(HardwareError, match=os.strerror(errno.EMFILE)):
        dev.irq_enable(vfio.IRQ_MSIX, 4)
    assert len(made) == 2
    for fd in made:
        with pytest.raises(OSError) as exc:
            os.fstat(fd)
        assert exc.value.errno == errno.EBADF


def test_review7_a_failed_iommu_unmap_keeps_the_iova_and_the_memory(dev):
    """Freeing an IOVA the IOMMU still maps would let the next buffer share it with the old one."""
    mem = mmap.mmap(-1, mmap.PAGESIZE)
    iova = dev.iova.alloc(mmap.PAGESIZE)
    buf = vfio.DmaBuffer(mem, iova, mmap.PAGESIZE)
    dev.dma[iova] = buf
    with pytest.raises(HardwareError, match=f"VFIO_IOMMU_UNMAP_DMA.*{ENOTTY_TEXT}"):
        dev.dma_free(buf)
    assert iova in dev.iova.used and dev.dma[iova] is buf and not mem.closed
    assert dev.iova.alloc(mmap.PAGESIZE) != iova
