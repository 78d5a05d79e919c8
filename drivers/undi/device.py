"""The NIC behind the emulated PC: what the machine needs from a device, whatever backs it.

The machine asks a backend for its PCI configuration space, its BARs (kind and size, so the
machine can place them as a BIOS would), accesses to those BARs, and its interrupt line; it gives
the backend a bus-master view of the emulated RAM, the only memory the device's DMA may reach.
A register model (``ModelDevice``) backs the host tests; a VFIO device backs runs on a real NIC.

A memory BAR reaches the ROM's code one of two ways, and the backend says which it can offer
through ``bar_memory``: mapped straight into the emulated address space (the fast path: the host
address of a VFIO BAR's mmap, no Python per access), or through ``bar_read``/``bar_write``
callbacks (None: a register model, whose registers have side effects; an I/O BAR always). The
machine maps directly only on the fast path; with a trace on (``UndiMachine.set_trace``) it takes
the callbacks for every BAR, so every access is counted and timed, whatever ``bar_memory`` offers.
"""
from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from typing import Callable

from drivers.intel_model import BAR0_SIZE, IntelModel

PCI_COMMAND, PCI_BAR0, PCI_ROM_BAR = 0x04, 0x10, 0x30
COMMAND_IO, COMMAND_MEMORY, COMMAND_BUS_MASTER = 0x1, 0x2, 0x4


@dataclass(frozen=True)
class Bar:
    index: int
    io: bool
    size: int


class Device:
    """The interface; a backend overrides every method."""

    bdf: int  # bus << 8 | device << 3 | function, as the PCI BIOS and AX at ROM init carry it
    bars: tuple[Bar, ...]

    def config_read(self, offset: int, size: int) -> int:
        raise NotImplementedError

    def config_write(self, offset: int, size: int, value: int) -> None:
        raise NotImplementedError

    def bar_read(self, index: int, offset: int, size: int) -> int:
        raise NotImplementedError

    def bar_write(self, index: int, offset: int, size: int, value: int) -> None:
        raise NotImplementedError

    def attach_dma(self, memory_at: Callable[[int, int], memoryview]) -> None:
        """``memory_at(address, size)`` is the device's view of the emulated RAM; it raises on an
        address outside it."""
        raise NotImplementedError

    @property
    def irq(self) -> bool:
        raise NotImplementedError

    def bar_memory(self, index: int) -> int | None:
        """The host address of memory BAR ``index`` mapped for direct access (the machine then maps
        it into the emulated address space and no access reaches Python), or None: through
        ``bar_read``/``bar_write``. A register model has no such memory."""
        return None

    def map_ram(self, mem, regions: tuple[tuple[int, int], ...]) -> None:
        """The emulated RAM (``mem``, the machine's one buffer) and the ranges of it that are RAM,
        for a backend whose device reaches memory by itself (VFIO: the IOMMU maps them at
        address = emulated physical address). A model reads through ``attach_dma``'s view."""


class ConfigSpace:
    """A type-0 configuration header whose BARs answer sizing as hardware does: a BAR keeps only the
    bits its size allows, so writing all-ones and reading back gives the size."""

    def __init__(self, vendor: int, device: int, class_code: int, bars: tuple[Bar, ...], revision: int = 0,
                 subsystem: tuple[int, int] = (0, 0), irq_line: int = 11):
        self.raw = bytearray(256)
        self.bars = {b.index: b for b in bars}
        struct.pack_into("<HH", self.raw, 0, vendor, device)
        struct.pack_into("<I", self.raw, 8, revision | class_code << 8)
        struct.pack_into("<HH", self.raw, 0x2C, *subsystem)
        self.raw[0x3C], self.raw[0x3D] = irq_line, 1  # INTA#
        for b in bars:
            struct.pack_into("<I", self.raw, PCI_BAR0 + 4 * b.index, 1 if b.io else 0)

    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > 256:
            return (1 << (8 * size)) - 1
        return int.from_bytes(self.raw[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < 0 or offset + size > 256 or offset < 0x04 or 0x08 <= offset < 0x0C:
            return  # IDs and class are read-only
        self.raw[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        for b in self.bars.values():
            at = PCI_BAR0 + 4 * b.index
            if at <= offset < at + 4 or offset < at < offset + size:
                addr = struct.unpack_from("<I", self.raw, at)[0] & ~(b.size - 1) & 0xFFFFFFFF
                struct.pack_into("<I", self.raw, at, addr | (1 if b.io else 0))
        if PCI_ROM_BAR <= offset < PCI_ROM_BAR + 4:
            struct.pack_into("<I", self.raw, PCI_ROM_BAR, 0)  # no ROM BAR: the machine holds the image

    def bar_address(self, index: int) -> int:
        raw = struct.unpack_from("<I", self.raw, PCI_BAR0 + 4 * index)[0]
        return raw & ~0x3 if self.bars[index].io else raw & ~0xF

    @property
    def command(self) -> int:
        return struct.unpack_from("<H", self.raw, PCI_COMMAND)[0]


#: PCI identity of the parts the model stands for (QEMU's e1000 and e1000e).
MODEL_IDS = {0x100E: (0x8086, 0x100E, 0x020000, 0x03), 0x10D3: (0x8086, 0x10D3, 0x020000, 0x00)}


class ModelDevice(Device):
    """drivers.intel_model behind PCI: BAR0 its registers, BAR1 (82540EM) or BAR2 (82574L) the
    IOADDR/IODATA window onto them, as QEMU lays the two parts out."""

    def __init__(self, model: IntelModel, bdf: int = 0x0018):
        self.model, self.bdf = model, bdf
        io_index = 2 if model.pcie else 1
        self.bars = (Bar(0, False, BAR0_SIZE), Bar(io_index, True, 0x20 if model.pcie else 0x40))
        vendor, device, cls, rev = MODEL_IDS.get(model.device_id, (0x8086, model.device_id, 0x020000, 0))
        self.config = ConfigSpace(vendor, device, cls, self.bars, rev, (0x1AF4, 0x1100))
        self._ioaddr = 0
        self.access_count = 0
        self.accesses: collections.Counter = collections.Counter()  # (BAR, offset, "r"/"w") -> count

    def config_read(self, offset: int, size: int) -> int:
        return self.config.read(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        self.config.write(offset, size, value)

    def _reg_read(self, offset: int, size: int) -> int:
        value = self.model.on_read(offset & ~3) >> (8 * (offset & 3))
        return value & ((1 << (8 * size)) - 1)

    def _reg_write(self, offset: int, size: int, value: int) -> None:
        if size != 4:
            shift, mask = 8 * (offset & 3), (1 << (8 * size)) - 1
            value = (self.model.reg(offset & ~3) & ~(mask << shift)) | ((value & mask) << shift)
        self.model.on_write(offset & ~3, value)

    def bar_read(self, index: int, offset: int, size: int) -> int:
        self.access_count += 1
        self.accesses[(index, offset, "r")] += 1
        if index == 0:
            return self._reg_read(offset, size)
        if offset < 4:  # IOADDR
            return self._ioaddr >> (8 * offset) & ((1 << (8 * size)) - 1)
        return self._reg_read(self._ioaddr + (offset - 4), size)  # IODATA

    def bar_write(self, index: int, offset: int, size: int, value: int) -> None:
        self.access_count += 1
        self.accesses[(index, offset, "w")] += 1
        if index == 0:
            self._reg_write(offset, size, value)
        elif offset < 4:
            self._ioaddr = value & (BAR0_SIZE - 4)
        else:
            self._reg_write(self._ioaddr + (offset - 4), size, value)

    def attach_dma(self, memory_at) -> None:
        self.model.memory_at = memory_at

    @property
    def irq(self) -> bool:
        return self.model.irq
