"""One DMA region for a NIC's rings and packet buffers, carved up in place.

A single pinned region means a single IOMMU mapping (two 2 MiB huge pages hold
both rings of a 256/512-descriptor NIC), and every carve keeps the IOVA next to
the CPU view of the same bytes, so ring code never translates addresses itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from hw.errors import HardwareError


@dataclass
class Region:
    """A slice of the pool: ``mem`` and ``view`` are the CPU's view, ``iova`` the device's."""

    mem: memoryview
    iova: int
    size: int

    @property
    def view(self) -> memoryview:
        return self.mem


class Mempool:
    def __init__(self, vfio, size: int, hugepages: bool = True):
        self._vfio = vfio
        self.dma = vfio.dma_alloc(size, align=4096, hugepages=hugepages)
        self._base = memoryview(self.dma.mem)
        self._views: list[memoryview] = [self._base]
        self.used = 0

    @property
    def hugepages(self) -> bool:
        return bool(getattr(self.dma, "huge", False))

    def carve(self, size: int, align: int = 128) -> Region:
        start = (self.used + align - 1) // align * align
        if start + size > self.dma.size:
            raise HardwareError(f"the DMA pool of {self.dma.size} bytes has {self.dma.size - self.used} left "
                                f"and cannot hold {size} more bytes (aligned to {align})")
        view = self._base[start:start + size]
        self._views.append(view)
        self.used = start + size
        return Region(view, self.dma.iova + start, size)

    def free(self) -> None:
        for v in reversed(self._views):
            v.release()
        self._views.clear()
        self._vfio.dma_free(self.dma)
