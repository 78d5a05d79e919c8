"""User-space access to a PCI device through VFIO: regions, DMA, interrupts, reset.

Two kernel interfaces lead to a device fd. The container/group one
(``/dev/vfio/vfio`` + ``/dev/vfio/<group>``) is the only one in Debian 12's 6.1
kernel and is used whenever it is there; the iommufd/cdev one (``/dev/iommu`` +
``/dev/vfio/devices/vfioN``, Linux 6.6 on) is used where the legacy container is
absent. Everything above the fd (regions, IRQs, reset) is the same for both.

DMA addresses come from romlab's own IOVA allocator over the ranges the IOMMU
reports, never from the buffer's virtual address, so a 39-bit IOMMU works too.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import resource
import select
import struct
from dataclasses import dataclass
from pathlib import Path

from hw import _vfio_cdef as C
from hw import mmio, signals, sysfs
from hw.errors import HardwareError
from hw.pci import PciDevice

ffi = C.ffi
PAGE = mmap.PAGESIZE

# Interrupt indexes of a vfio-pci device (VFIO_PCI_*_IRQ_INDEX), for irq_info/irq_enable/irq_wait.
IRQ_INTX = C.VFIO_PCI_INTX_IRQ_INDEX
IRQ_MSI = C.VFIO_PCI_MSI_IRQ_INDEX
IRQ_MSIX = C.VFIO_PCI_MSIX_IRQ_INDEX
IRQ_ERR = C.VFIO_PCI_ERR_IRQ_INDEX
IRQ_REQ = C.VFIO_PCI_REQ_IRQ_INDEX


# Request numbers by name, for error lines.
_REQUEST_NAMES = {getattr(C, n): n for n in dir(C)
                  if n.startswith(("VFIO_", "IOMMU_")) and isinstance(getattr(C, n), int)
                  and getattr(C, n) >> 8 == C.VFIO_TYPE}


class VfioCallError(HardwareError):
    """A VFIO or iommufd ioctl the kernel refused; ``errno`` says why, for callers that tell
    one refusal from another (an absent IRQ index, a pinning limit)."""

    def __init__(self, request: int, exc: OSError):
        self.errno = exc.errno
        self.strerror = exc.strerror or os.strerror(exc.errno or 0)
        self.call = _REQUEST_NAMES.get(request, f"ioctl {request:#x}")
        super().__init__(f"{self.call} failed: {self.strerror}")


def _ioctl(fd: int, request: int, cobj=None) -> int:
    """ioctl with a cffi struct as the argument buffer (filled in place by the kernel); a
    refusal is a VfioCallError naming the call."""
    try:
        if cobj is None:
            return fcntl.ioctl(fd, request, 0)
        return fcntl.ioctl(fd, request, ffi.buffer(cobj), True)
    except OSError as exc:
        raise VfioCallError(request, exc) from None


def _ioctl_int(fd: int, request: int, arg: int) -> int:
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        raise VfioCallError(request, exc) from None


# --------------------------------------------------------------------------- IOVA allocator
class IovaAllocator:
    """First-fit allocator over the IOVA ranges the IOMMU accepts.

    Ranges are inclusive ``(start, end)`` pairs as VFIO reports them; allocations are
    aligned to ``align`` (at least the IOMMU page) and freed blocks merge with their
    neighbours so long runs do not fragment the space.
    """

    def __init__(self, ranges: list[tuple[int, int]], page: int = PAGE, floor: int = 0x100000):
        self.page = page
        free = []
        for start, end in sorted(ranges):
            start = max(start, floor)
            start = (start + page - 1) & ~(page - 1)
            stop = (end + 1) & ~(page - 1)
            if stop > start:
                free.append([start, stop])  # half-open
        if not free:
            raise HardwareError("the IOMMU offers no usable IOVA range")
        self.free = free
        self.used: dict[int, int] = {}

    def alloc(self, size: int, align: int | None = None) -> int:
        align = max(align or self.page, self.page)
        size = (size + self.page - 1) & ~(self.page - 1)
        for i, (start, stop) in enumerate(self.free):
            base = (start + align - 1) & ~(align - 1)
            if base + size <= stop:
                pieces = []
                if base > start:
                    pieces.append([start, base])
                if base + size < stop:
                    pieces.append([base + size, stop])
                self.free[i:i + 1] = pieces
                self.used[base] = size
                return base
        raise HardwareError(f"no free IOVA space for {size} bytes")

    def reserve(self, iova: int, size: int) -> None:
        """Take [iova, iova+size) out of the free space, for a mapping whose IOVA the caller chose
        (it never comes back: such a mapping lives as long as the device is open)."""
        stop = iova + size
        out: list[list[int]] = []
        for start, end in self.free:
            if end <= iova or start >= stop:
                out.append([start, end])
                continue
            if start < iova:
                out.append([start, iova])
            if stop < end:
                out.append([stop, end])
        self.free = out

    def free_iova(self, iova: int) -> None:
        size = self.used.pop(iova)
        self.free.append([iova, iova + size])
        self.free.sort()
        merged: list[list[int]] = []
        for start, stop in self.free:
            if merged and merged[-1][1] == start:
                merged[-1][1] = stop
            else:
                merged.append([start, stop])
        self.free = merged


# --------------------------------------------------------------------------- data classes
@dataclass
class RegionInfo:
    index: int
    flags: int
    size: int
    offset: int

    @property
    def name(self) -> str:
        return C.REGION_NAMES.get(self.index, f"region{self.index}")

    @property
    def readable(self) -> bool:
        return bool(self.flags & C.VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & C.VFIO_REGION_INFO_FLAG_WRITE)

    @property
    def mmappable(self) -> bool:
        return bool(self.flags & C.VFIO_REGION_INFO_FLAG_MMAP)

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "size": self.size, "offset": self.offset,
                "read": self.readable, "write": self.writable, "mmap": self.mmappable}


@dataclass
class IrqInfo:
    index: int
    flags: int
    count: int

    @property
    def name(self) -> str:
        return C.IRQ_NAMES.get(self.index, f"irq{self.index}")

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "count": self.count,
                "eventfd": bool(self.flags & C.VFIO_IRQ_INFO_EVENTFD),
                "maskable": bool(self.flags & C.VFIO_IRQ_INFO_MASKABLE),
                "automasked": bool(self.flags & C.VFIO_IRQ_INFO_AUTOMASKED)}


HUGE_PAGE = 2 << 20
MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)  # Linux x86 value, for Pythons that do not name it


def free_hugepages() -> int:
    try:
        return int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    except (OSError, ValueError):
        return 0


class DmaBuffer:
    """Page-aligned anonymous memory mapped for device DMA at an IOVA of our choosing."""

    def __init__(self, mem: mmap.mmap, iova: int, size: int):
        self.mem = mem
        self.iova = iova
        self.size = size
        self.huge = False  # set by dma_alloc when huge pages back it
        self.vaddr = int(ffi.cast("uintptr_t", ffi.from_buffer(mem)))
        self.owned = True  # False for memory the caller lent (dma_map_at): not closed here

    @property
    def view(self) -> memoryview:
        return memoryview(self.mem)


# --------------------------------------------------------------------------- device
class VfioDevice:
    """An open VFIO device (and the container or iommufd behind it).

    Use as a context manager: leaving it unmaps all DMA, disables interrupts and
    closes every fd, whatever raised.
    """

    def __init__(self, dev: PciDevice):
        self.pci = dev
        self.closed = False
        self.container_fd = -1
        self.group_fd = -1
        self.iommufd = -1
        self.ioas_id = 0
        self.device_fd = -1
        self.backend = ""
        self.dma: dict[int, DmaBuffer] = {}
        self.irq_fds: dict[int, list[int]] = {}
        self._maps: list[mmio.MappedBar] = []
        self.iova: IovaAllocator | None = None
        self.iova_ranges: list[tuple[int, int]] = []
        # Registered before the first fd exists, so that however this object is lost (Ctrl-C
        # inside __init__ or __enter__), unbinding can still find and close its fds.
        _OPEN.setdefault(str(dev.bdf), []).append(self)
        try:
            with signals.held():
                self._open()
        except BaseException:  # a Ctrl-C held during the open lands here, as the mask lifts
            self.close()
            raise

    # -- opening
    def _open(self) -> None:
        dev = self.pci
        if dev.driver != "vfio-pci":
            raise HardwareError(f"{dev.bdf} is not bound to vfio-pci (driver: {dev.driver or 'none'}); "
                           f"run `romlab vfio bind {dev.bdf}` first")
        group = dev.iommu_group
        if group is None:
            raise HardwareError(f"{dev.bdf} has no IOMMU group: this kernel runs without an IOMMU")
        if os.path.exists("/dev/vfio/vfio"):
            self._open_container(group)
        else:
            self._open_cdev()

    def _open_path(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise HardwareError(f"permission denied opening {path}; VFIO needs root (run romlab as root or with sudo)") from None
            if exc.errno == errno.EBUSY:
                raise HardwareError(f"{path} is busy: another process (QEMU, another romlab) holds the "
                                    "device") from None
            if exc.errno == errno.ENOENT:
                raise HardwareError(f"{path} does not exist; is vfio-pci loaded and the device bound to it?") from None
            raise HardwareError(f"cannot open {path}: {exc.strerror}") from None

    def _open_container(self, group: int) -> None:
        self.backend = "container"
        self.container_fd = self._open_path("/dev/vfio/vfio")
        if _ioctl(self.container_fd, C.VFIO_GET_API_VERSION) != C.VFIO_API_VERSION:
            raise HardwareError("unknown VFIO API version")
        iommu_type = None
        for t in (C.VFIO_TYPE1v2_IOMMU, C.VFIO_TYPE1_IOMMU):
            if _ioctl_int(self.container_fd, C.VFIO_CHECK_EXTENSION, t):
                iommu_type = t
                break
        if iommu_type is None:
            raise HardwareError("this kernel's VFIO has no type1 IOMMU driver (vfio_iommu_type1 not loaded?)")
        self.group_fd = self._open_path(f"/dev/vfio/{group}")
        st = ffi.new("struct vfio_group_status *", {"argsz": ffi.sizeof("struct vfio_group_status")})
        _ioctl(self.group_fd, C.VFIO_GROUP_GET_STATUS, st)
        if not st.flags & C.VFIO_GROUP_FLAGS_VIABLE:
            others = [f"{m}" for m in self.pci.group_members() if m != self.pci.bdf]
            raise HardwareError(f"IOMMU group {group} is not viable: {', '.join(others) or 'other devices'} "
                           "must be bound to vfio-pci or unbound too")
        cfd = ffi.new("int32_t *", self.container_fd)
        _ioctl(self.group_fd, C.VFIO_GROUP_SET_CONTAINER, cfd)
        _ioctl_int(self.container_fd, C.VFIO_SET_IOMMU, iommu_type)
        name = str(self.pci.bdf).encode() + b"\0"
        try:
            self.device_fd = fcntl.ioctl(self.group_fd, C.VFIO_GROUP_GET_DEVICE_FD, bytearray(name), True)
        except OSError as exc:
            raise HardwareError(f"VFIO refused {self.pci.bdf}: {exc.strerror}") from None
        self.iova_ranges = self._type1_iova_ranges()
        self.iova = IovaAllocator(self.iova_ranges)

    def _open_cdev(self) -> None:
        self.backend = "iommufd"
        vdir = self.pci.path / "vfio-dev"
        try:
            node = next(iter(os.listdir(vdir)))
        except (FileNotFoundError, StopIteration):
            raise HardwareError("neither /dev/vfio/vfio nor a VFIO device node exists; load vfio-pci") from None
        self.device_fd = self._open_path(f"/dev/vfio/devices/{node}")
        self.iommufd = self._open_path("/dev/iommu")
        bind = ffi.new("struct vfio_device_bind_iommufd *",
                       {"argsz": ffi.sizeof("struct vfio_device_bind_iommufd"), "iommufd": self.iommufd})
        _ioctl(self.device_fd, C.VFIO_DEVICE_BIND_IOMMUFD, bind)
        alloc = ffi.new("struct iommu_ioas_alloc *", {"size": ffi.sizeof("struct iommu_ioas_alloc")})
        _ioctl(self.iommufd, C.IOMMU_IOAS_ALLOC, alloc)
        self.ioas_id = alloc.out_ioas_id
        att = ffi.new("struct vfio_device_attach_iommufd_pt *",
                      {"argsz": ffi.sizeof("struct vfio_device_attach_iommufd_pt"), "pt_id": self.ioas_id})
        _ioctl(self.device_fd, C.VFIO_DEVICE_ATTACH_IOMMUFD_PT, att)
        self.iova_ranges = _ranges_excluding_reserved(self.pci)
        self.iova = IovaAllocator(self.iova_ranges)

    def _type1_iova_ranges(self) -> list[tuple[int, int]]:
        size = ffi.sizeof("struct vfio_iommu_type1_info")
        info = ffi.new("struct vfio_iommu_type1_info *", {"argsz": size})
        _ioctl(self.container_fd, C.VFIO_IOMMU_GET_INFO, info)
        self.iova_pgsizes = info.iova_pgsizes
        if info.argsz > size:
            buf = ffi.new("char[]", info.argsz)
            hdr = ffi.cast("struct vfio_iommu_type1_info *", buf)
            hdr.argsz = info.argsz
            _ioctl(self.container_fd, C.VFIO_IOMMU_GET_INFO, buf)
            off = hdr.cap_offset if hdr.flags & C.VFIO_IOMMU_INFO_CAPS else 0
            seen = set()
            while off and off not in seen:
                seen.add(off)
                cap = ffi.cast("struct vfio_info_cap_header *", buf + off)
                if cap.id == C.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
                    rng = ffi.cast("struct vfio_iommu_type1_info_cap_iova_range *", buf + off)
                    return [(rng.iova_ranges[i].start, rng.iova_ranges[i].end) for i in range(rng.nr_iovas)]
                off = cap.next
        return _ranges_excluding_reserved(self.pci)

    # -- info
    def info(self) -> dict:
        di = ffi.new("struct vfio_device_info *", {"argsz": ffi.sizeof("struct vfio_device_info")})
        _ioctl(self.device_fd, C.VFIO_DEVICE_GET_INFO, di)
        return {"flags": di.flags, "num_regions": di.num_regions, "num_irqs": di.num_irqs,
                "reset": bool(di.flags & C.VFIO_DEVICE_FLAGS_RESET),
                "pci": bool(di.flags & C.VFIO_DEVICE_FLAGS_PCI)}

    def region_info(self, index: int) -> RegionInfo:
        ri = ffi.new("struct vfio_region_info *", {"argsz": ffi.sizeof("struct vfio_region_info"), "index": index})
        try:
            _ioctl(self.device_fd, C.VFIO_DEVICE_GET_REGION_INFO, ri)
        except VfioCallError as exc:
            raise HardwareError(f"{self.pci.bdf} has no VFIO region {index}: {exc.strerror}") from None
        return RegionInfo(index, ri.flags, ri.size, ri.offset)

    def regions(self) -> list[RegionInfo]:
        """Every region the device has; vfio-pci counts VGA (8) even where it refuses it."""
        out = []
        for i in range(self.info()["num_regions"]):
            try:
                out.append(self.region_info(i))
            except HardwareError:
                if i < C.VFIO_PCI_VGA_REGION_INDEX:
                    raise
        return out

    def irq_info(self, index: int) -> IrqInfo:
        ii = ffi.new("struct vfio_irq_info *", {"argsz": ffi.sizeof("struct vfio_irq_info"), "index": index})
        _ioctl(self.device_fd, C.VFIO_DEVICE_GET_IRQ_INFO, ii)
        return IrqInfo(index, ii.flags, ii.count)

    def irqs(self) -> list[IrqInfo]:
        """Every interrupt index the device has; vfio-pci counts ERR (3) even on conventional PCI,
        where asking about it gives EINVAL."""
        out = []
        for i in range(self.info()["num_irqs"]):
            try:
                out.append(self.irq_info(i))
            except VfioCallError as exc:
                if exc.errno != errno.EINVAL or i <= C.VFIO_PCI_MSIX_IRQ_INDEX:
                    raise HardwareError(f"VFIO_DEVICE_GET_IRQ_INFO({i}) on {self.pci.bdf} failed: "
                                        f"{exc.strerror}") from None
        return out

    # -- region access
    def read(self, index: int, offset: int, size: int) -> bytes:
        """pread from a region, in a loop: the ROM region answers in pieces."""
        reg = self.region_info(index)
        if offset + size > reg.size:
            raise HardwareError(f"{reg.name} is {reg.size} bytes; cannot read {size} at {offset:#x}")
        out = bytearray()
        while len(out) < size:
            try:
                chunk = os.pread(self.device_fd, min(size - len(out), 1 << 16), reg.offset + offset + len(out))
            except OSError as exc:
                raise HardwareError(f"reading {reg.name} of {self.pci.bdf} failed: {exc.strerror}") from None
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def write(self, index: int, offset: int, data: bytes) -> None:
        reg = self.region_info(index)
        if offset + len(data) > reg.size:
            raise HardwareError(f"{reg.name} is {reg.size} bytes; cannot write {len(data)} at {offset:#x}")
        done = 0
        while done < len(data):
            try:
                done += os.pwrite(self.device_fd, data[done:], reg.offset + offset + done)
            except OSError as exc:
                raise HardwareError(f"writing {reg.name} of {self.pci.bdf} failed: {exc.strerror}") from None

    def read_config(self, offset: int, size: int) -> bytes:
        return self.read(C.VFIO_PCI_CONFIG_REGION_INDEX, offset, size)

    def write_config(self, offset: int, data: bytes) -> None:
        self.write(C.VFIO_PCI_CONFIG_REGION_INDEX, offset, data)

    def set_bus_master(self, on: bool = True) -> None:
        """Let the device start DMA (command register bit 2); vfio-pci leaves that to its user."""
        cmd = struct.unpack("<H", self.read_config(0x04, 2))[0]
        cmd = (cmd | 0x4) if on else (cmd & ~0x4)
        self.write_config(0x04, struct.pack("<H", cmd))

    def read_rom(self) -> bytes:
        """The whole ROM region (index 6): the ROM BAR as vfio-pci presents it, fill included."""
        reg = self.region_info(C.VFIO_PCI_ROM_REGION_INDEX)
        if not reg.size:
            raise HardwareError(f"{self.pci.bdf} has no expansion ROM (VFIO ROM region is empty)")
        try:
            return self.read(C.VFIO_PCI_ROM_REGION_INDEX, 0, reg.size)
        except HardwareError as exc:
            if "Cannot allocate memory" in str(exc):
                raise HardwareError(f"{self.pci.bdf}'s ROM BAR holds no valid image (no 55AA/PCIR at its "
                                    "start)") from None
            raise

    def map_bar(self, index: int) -> mmio.MappedBar:
        """BAR ``index``'s region mapped into this process; unmapped by ``close`` at the latest."""
        reg = self.region_info(index)
        if not reg.mmappable:
            raise HardwareError(f"{reg.name} of {self.pci.bdf} cannot be mmap'ed (flags {reg.flags:#x})")
        m = mmio.map_region(self.device_fd, reg.offset, reg.size, reg.writable, f"{reg.name} of {self.pci.bdf}")
        self._maps.append(m)
        return m

    # -- DMA
    def dma_alloc(self, size: int, align: int | None = None, hugepages: bool = False) -> DmaBuffer:
        """Allocate zeroed memory, pin it and map it at a fresh IOVA (read and write).

        With ``hugepages`` the memory comes from 2 MiB huge pages when the kernel has free ones
        (fewer IOMMU entries, one physically contiguous run per page); otherwise 4 KiB pages."""
        assert self.iova is not None
        mem, huge = None, False
        if hugepages and free_hugepages() * HUGE_PAGE >= size:
            size = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
            try:
                mem = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB,
                                mmap.PROT_READ | mmap.PROT_WRITE)
                align, huge = max(align or 0, HUGE_PAGE), True
            except OSError:
                mem = None
        if mem is None:
            size = (size + PAGE - 1) & ~(PAGE - 1)
            try:
                mem = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as exc:
                raise HardwareError(f"cannot allocate {size // 1024} KiB for DMA: {exc.strerror}") from None
        try:
            iova = self.iova.alloc(size, align)
        except BaseException:
            mem.close()
            raise
        buf = DmaBuffer(mem, iova, size)
        buf.huge = huge
        try:
            self._map_dma(buf)
        except BaseException:
            self.iova.free_iova(iova)
            mem.close()
            raise
        self.dma[iova] = buf
        return buf

    def dma_map_at(self, mem: mmap.mmap, offset: int, size: int, iova: int) -> DmaBuffer:
        """Map ``size`` bytes of the caller's ``mem`` from ``offset`` at the IOVA the caller chose.

        For memory whose bus addresses are given, not chosen: an emulated PC's RAM, which its
        code hands the device at address = emulated physical address. The memory stays the
        caller's (never closed here); the mapping goes with ``dma_free`` or ``close``."""
        assert self.iova is not None
        if offset % PAGE or size % PAGE or iova % PAGE or size <= 0 or offset + size > len(mem):
            raise HardwareError(f"cannot map {size:#x} bytes at offset {offset:#x} for DMA: not whole pages of "
                                f"the buffer")
        if not any(lo <= iova and iova + size - 1 <= hi for lo, hi in self.iova_ranges):
            raise HardwareError(f"the IOMMU of {self.pci.bdf} does not accept IOVA {iova:#x}..{iova + size - 1:#x}")
        if any(b.iova < iova + size and iova < b.iova + b.size for b in self.dma.values()):
            raise HardwareError(f"IOVA {iova:#x}..{iova + size - 1:#x} overlaps a DMA mapping of {self.pci.bdf}")
        buf = DmaBuffer(mem, iova, size)
        buf.vaddr += offset
        buf.owned = False
        self._map_dma(buf)
        self.iova.reserve(iova, size)
        self.dma[iova] = buf
        return buf

    def _map_dma(self, buf: DmaBuffer) -> None:
        try:
            if self.backend == "container":
                m = ffi.new("struct vfio_iommu_type1_dma_map *", {
                    "argsz": ffi.sizeof("struct vfio_iommu_type1_dma_map"),
                    "flags": C.VFIO_DMA_MAP_FLAG_READ | C.VFIO_DMA_MAP_FLAG_WRITE,
                    "vaddr": buf.vaddr, "iova": buf.iova, "size": buf.size})
                _ioctl(self.container_fd, C.VFIO_IOMMU_MAP_DMA, m)
            else:
                m = ffi.new("struct iommu_ioas_map *", {
                    "size": ffi.sizeof("struct iommu_ioas_map"),
                    "flags": C.IOMMU_IOAS_MAP_FIXED_IOVA | C.IOMMU_IOAS_MAP_READABLE | C.IOMMU_IOAS_MAP_WRITEABLE,
                    "ioas_id": self.ioas_id, "user_va": buf.vaddr, "length": buf.size, "iova": buf.iova})
                _ioctl(self.iommufd, C.IOMMU_IOAS_MAP, m)
        except VfioCallError as exc:
            if exc.errno in (errno.ENOMEM, errno.EPERM, errno.EAGAIN) and not _has_cap_ipc_lock():
                soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
                lim = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
                raise HardwareError(
                    f"pinning {buf.size // 1024} KiB for DMA failed: the locked-memory limit is {lim} "
                    "and romlab lacks CAP_IPC_LOCK; raise it (ulimit -l, LimitMEMLOCK=) or run as full root"
                ) from None
            raise HardwareError(f"mapping DMA memory at IOVA {buf.iova:#x} failed: {exc.strerror}") from None

    def dma_free(self, buf: DmaBuffer) -> None:
        """Unmap ``buf`` from the IOMMU, then give back its IOVA and memory.

        If the IOMMU refuses the unmap, the device may still reach the memory at that IOVA:
        both stay reserved (a new buffer there would be shared with the old mapping) until
        the device's fds close, which drops every mapping, and the refusal is raised."""
        if buf.iova not in self.dma:
            return
        if self.backend == "container":
            u = ffi.new("struct vfio_iommu_type1_dma_unmap *", {
                "argsz": ffi.sizeof("struct vfio_iommu_type1_dma_unmap"), "iova": buf.iova, "size": buf.size})
            _ioctl(self.container_fd, C.VFIO_IOMMU_UNMAP_DMA, u)
        else:
            u = ffi.new("struct iommu_ioas_unmap *", {
                "size": ffi.sizeof("struct iommu_ioas_unmap"), "ioas_id": self.ioas_id,
                "iova": buf.iova, "length": buf.size})
            _ioctl(self.iommufd, C.IOMMU_IOAS_UNMAP, u)
        self._forget_dma(buf)

    def _forget_dma(self, buf: DmaBuffer) -> None:
        del self.dma[buf.iova]
        assert self.iova is not None
        if not buf.owned:
            return            # lent memory at a reserved IOVA: both stay the caller's
        self.iova.free_iova(buf.iova)
        try:
            buf.mem.close()
        except BufferError:
            pass          # a view of it is still alive; the memory goes with the last one

    # -- interrupts
    def irq_enable(self, index: int = IRQ_INTX, count: int = 1) -> list[int]:
        """Route ``count`` vectors of interrupt ``index`` to new eventfds and return them."""
        info = self.irq_info(index)
        if info.count < count:
            raise HardwareError(f"{self.pci.bdf} offers {info.count} {info.name} vectors, not {count}")
        self.irq_disable(index)
        fds: list[int] = []
        try:
            for _ in range(count):
                fds.append(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise HardwareError(f"cannot make eventfds for {info.name} of {self.pci.bdf}: {exc.strerror}") from None
        s = ffi.new("struct vfio_irq_set *", {
            "argsz": ffi.sizeof("struct vfio_irq_set") + 4 * count,
            "flags": C.VFIO_IRQ_SET_DATA_EVENTFD | C.VFIO_IRQ_SET_ACTION_TRIGGER,
            "index": index, "start": 0, "count": count, "data": fds})
        try:
            _ioctl(self.device_fd, C.VFIO_DEVICE_SET_IRQS, s)
        except VfioCallError as exc:
            for fd in fds:
                os.close(fd)
            raise HardwareError(f"enabling {info.name} of {self.pci.bdf} failed: {exc.strerror}") from None
        self.irq_fds[index] = fds
        return fds

    def irq_unmask(self, index: int = IRQ_INTX) -> None:
        """INTx is masked by vfio-pci when it fires; unmask it once the device is serviced."""
        s = ffi.new("struct vfio_irq_set *", {
            "argsz": ffi.sizeof("struct vfio_irq_set"),
            "flags": C.VFIO_IRQ_SET_DATA_NONE | C.VFIO_IRQ_SET_ACTION_UNMASK,
            "index": index, "start": 0, "count": 1})
        _ioctl(self.device_fd, C.VFIO_DEVICE_SET_IRQS, s)

    def irq_disable(self, index: int = IRQ_INTX) -> None:
        fds = self.irq_fds.pop(index, None)
        if fds is None:
            return
        s = ffi.new("struct vfio_irq_set *", {
            "argsz": ffi.sizeof("struct vfio_irq_set"),
            "flags": C.VFIO_IRQ_SET_DATA_NONE | C.VFIO_IRQ_SET_ACTION_TRIGGER,
            "index": index, "start": 0, "count": 0})
        try:
            _ioctl(self.device_fd, C.VFIO_DEVICE_SET_IRQS, s)
        finally:
            for fd in fds:
                os.close(fd)

    def irq_wait(self, index: int = IRQ_INTX, timeout: float = 5.0, vector: int = 0) -> int:
        """Block until the vector's eventfd fires; returns the count, 0 on timeout."""
        fd = self.irq_fds[index][vector]
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return 0
        return struct.unpack("<Q", os.read(fd, 8))[0]

    # -- reset
    def reset(self) -> None:
        if not self.info()["reset"]:
            raise HardwareError(f"{self.pci.bdf} offers no reset to VFIO (no FLR, PM or bus reset)")
        try:
            _ioctl(self.device_fd, C.VFIO_DEVICE_RESET)
        except VfioCallError as exc:
            raise HardwareError(f"resetting {self.pci.bdf} failed: {exc.strerror}") from None

    # -- teardown
    def close(self) -> None:
        """Disable interrupts, unmap DMA and BARs, close every fd.

        A BAR mapping that something in this process still holds a view of cannot be unmapped,
        and while it stays the kernel keeps the device open: unbinding it from vfio-pci would
        wait for it, uninterruptibly. So the rest is closed, the device stays on the list of open
        ones, and a HardwareError says so, here and at every later ``close`` until it is gone.
        """
        with signals.held():
            if not self.closed:
                self.closed = True
                self._close()
            self._unmap_bars()
            with_same = _OPEN.get(str(self.pci.bdf), [])
            if self in with_same:
                with_same.remove(self)

    def _close(self) -> None:
        for index in list(self.irq_fds):
            try:
                self.irq_disable(index)
            except HardwareError:
                pass              # closing the device fd below disables it all the same
        for buf in list(self.dma.values()):
            try:
                self.dma_free(buf)
            except HardwareError:
                pass              # closing the container below drops every mapping ...
            if buf.iova in self.dma:
                self._forget_dma(buf)   # ... so the IOVA and memory are free once it has
        self._unmap_bars(raise_on_left=False)
        for name in ("device_fd", "group_fd", "iommufd", "container_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def _unmap_bars(self, raise_on_left: bool = True) -> None:
        left = []
        for m in self._maps:
            with contextlib.suppress(BufferError, ValueError):
                m.close()
            if not m.mm.closed:
                try:
                    m.mm.close()
                except BufferError:
                    left.append(m)
        self._maps = left
        if left and raise_on_left:
            raise HardwareError(f"{len(left)} BAR mapping(s) of {self.pci.bdf} still mapped: something in this "
                                "process holds a view of it, and VFIO keeps the device open until that goes, "
                                "so it cannot be unbound yet")

    def __enter__(self) -> "VfioDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Every VfioDevice of this process that may hold fds, by BDF.
_OPEN: dict[str, list[VfioDevice]] = {}


def close_all(bdf) -> None:
    """Close this process's VFIO fds on ``bdf``.

    The kernel's unbind from vfio-pci waits for every device fd to close, and after one
    signal it waits uninterruptibly: a process that unbinds a device it still holds never
    returns. Unbinding calls this first.
    """
    for v in list(_OPEN.get(str(bdf), [])):
        v.close()


def holders(dev: PciDevice) -> list[str]:
    """Processes (``"PID (comm)"``) that hold ``dev``'s VFIO group or device node open."""
    nodes = set()
    group = dev.iommu_group
    if group is not None:
        nodes.add(f"/dev/vfio/{group}")
    vdir = dev.path / "vfio-dev"
    if vdir.is_dir():
        nodes.update(f"/dev/vfio/devices/{n}" for n in os.listdir(vdir))
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in nodes:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                found.append(f"{pid} ({comm})")
                break
    return found


def _has_cap_ipc_lock() -> bool:
    """Whether this process may pin memory beyond RLIMIT_MEMLOCK (CapEff bit 14)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 14 & 1)
    except OSError:
        pass
    return False


def _ranges_excluding_reserved(dev: PciDevice) -> list[tuple[int, int]]:
    """48-bit IOVA space minus the group's reserved regions (the MSI window and such)."""
    ranges = [(0, (1 << 48) - 1)]
    group = dev.iommu_group
    path = sysfs.root() / "kernel" / "iommu_groups" / str(group) / "reserved_regions"
    text = sysfs.read_text(Path(path), "")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        rs, re_ = int(parts[0], 16), int(parts[1], 16)
        out = []
        for s, e in ranges:
            if re_ < s or rs > e:
                out.append((s, e))
                continue
            if s < rs:
                out.append((s, rs - 1))
            if re_ < e:
                out.append((re_ + 1, e))
        ranges = out
    return ranges


def open_device(bdf) -> VfioDevice:
    dev = bdf if isinstance(bdf, PciDevice) else PciDevice.open(bdf)
    return VfioDevice(dev)



def open_bar(dev: PciDevice, index: int = 0) -> mmio.Window:
    """BAR ``index`` of a device bound to vfio-pci, through a VFIO device of its own.

    Closing the BAR closes that VFIO device too, so a caller that wants only the registers
    holds one object."""
    v = VfioDevice(dev)
    try:
        bar = v.map_bar(index)
    except BaseException:
        v.close()
        raise
    return mmio.Window(bar, 0, on_close=v.close)
