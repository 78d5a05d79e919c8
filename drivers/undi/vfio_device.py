"""A real NIC behind the emulated PC, reached through VFIO, and one UNDI run on it from start to end.

``VfioNic`` is the ``device.Device`` a ROM's UNDI code drives when it runs against hardware: PCI
configuration cycles go to the VFIO config region (vfio-pci virtualizes the BARs, so the machine
may place them where its BIOS wants them); memory BARs are the VFIO BAR mmaps themselves, mapped
into the emulated address space by unicorn (no Python between the ROM's loads and stores and the
device) unless ``direct`` is off, when every access goes through ``bar_read``/``bar_write`` and is
counted; I/O BARs go through the VFIO region with pread/pwrite of the access's size. The machine's
RAM is mapped for the device's DMA by the IOMMU at IOVA = emulated physical address, RAM ranges
only (not the VGA hole, not the BIOS area), so the descriptors and buffers the UNDI code writes are
the ones the NIC reads, and its DMA reaches nothing else.

``undi_on_device`` is the whole life of a run: the ROM checked against the device before anything
is touched, the device on vfio-pci for the run (and back on its kernel driver after, as
``hw.vfio_bind.bound`` records it), the ROM taken from the device's own ROM BAR unless one is
given, init, loader and undinet's probe; and, however it ends, bus mastering off, the device
reset and every mapping gone before the driver gets it back.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass, field

from hw import vfio, vfio_bind
from hw.errors import HardwareError, RomRunError
from hw.pci import PciDevice, kernel_rom_size, no_valid_rom

from .client import UndiClient
from .device import PCI_BAR0, Bar, Device
from .loader import UndiMachine, check_ids, legacy_undi_image

CONFIG_REGION = vfio.C.VFIO_PCI_CONFIG_REGION_INDEX
PCI_STATUS, STATUS_INTERRUPT = 0x06, 0x08
#: The NIC's own missed-packet counter (frames dropped for want of a receive buffer), by vendor and
#: device: (BAR, offset, mask, cleared by reading). Intel 8254x/8257x: MPC, 0x4010 of the register
#: BAR, clear on read; RTL8139: the 24-bit RxMissed at 0x4C, which reading leaves as it is (and
#: which QEMU's reset leaves too).
MISSED_COUNTERS = {0x8086: (0, 0x4010, 0xFFFFFFFF, True), (0x10EC, 0x8139): (0, 0x4C, 0xFFFFFF, False)}


class VfioNic(Device):
    """A VFIO device (``hw.vfio.VfioDevice``, opened by the caller) as the machine's NIC."""

    def __init__(self, v: vfio.VfioDevice, direct: bool = True):
        self.v, self.direct = v, direct
        b = v.pci.bdf
        self.bdf = b.bus << 8 | b.device << 3 | b.function
        self.fd = v.device_fd
        config = v.region_info(CONFIG_REGION)
        self._config = (config.offset, config.size)
        header = v.read_config(0, 0x40)
        self.ids = struct.unpack_from("<HH", header, 0)
        bars, self.regions = [], {}
        index = 0
        while index < 6:
            raw = struct.unpack_from("<I", header, PCI_BAR0 + 4 * index)[0]
            region = v.region_info(index)
            if region.size:
                bars.append(Bar(index, bool(raw & 1), region.size))
                self.regions[index] = region
            index += 2 if not raw & 1 and (raw >> 1) & 3 == 2 else 1  # a 64-bit BAR takes two slots
        self.bars = tuple(bars)
        self.accesses = 0  # BAR accesses that went through Python (none on the direct path)
        self._mapped: dict = {}  # BAR index -> its one mapping, kept until the VFIO device closes

    # -- configuration space ------------------------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        base, length = self._config
        if offset < 0 or offset + size > length:
            return (1 << (8 * size)) - 1
        data = os.pread(self.fd, size, base + offset)
        return int.from_bytes(data, "little") if len(data) == size else (1 << (8 * size)) - 1

    def config_write(self, offset: int, size: int, value: int) -> None:
        base, length = self._config
        if 0 <= offset and offset + size <= length:
            os.pwrite(self.fd, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), base + offset)

    # -- BARs -----------------------------------------------------------------------------------
    def _region(self, index: int, offset: int, size: int):
        region = self.regions.get(index)
        if region is None or offset < 0 or offset + size > region.size or offset % size:
            return None
        return region

    def bar_read(self, index: int, offset: int, size: int) -> int:
        self.accesses += 1
        region = self._region(index, offset, size)
        if region is None:  # beyond a BAR smaller than the page the machine maps, or unaligned
            return (1 << (8 * size)) - 1
        try:
            data = os.pread(self.fd, size, region.offset + offset)
        except OSError as exc:
            raise HardwareError(f"reading {size} bytes at {offset:#x} of BAR {index} failed: {exc.strerror}") \
                from None
        return int.from_bytes(data, "little")

    def bar_write(self, index: int, offset: int, size: int, value: int) -> None:
        self.accesses += 1
        region = self._region(index, offset, size)
        if region is None:
            return
        try:
            os.pwrite(self.fd, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), region.offset + offset)
        except OSError as exc:
            raise HardwareError(f"writing {size} bytes at {offset:#x} of BAR {index} failed: {exc.strerror}") \
                from None

    def bar_memory(self, index: int) -> int | None:
        region = self.regions.get(index)
        bar = next((b for b in self.bars if b.index == index), None)
        if not self.direct or region is None or bar is None or bar.io or not region.mmappable:
            return None
        if bar.size < mmap.PAGESIZE:
            # A mapping is whole pages: the ROM would reach past the BAR's end into the rest of the
            # page. A BAR smaller than a page (RTL8139's 256 bytes) goes through the callbacks,
            # which check every access against its size.
            return None
        mapped = self._mapped.get(index)
        if mapped is None:  # once per BAR: turning a trace off and on again must not add a mapping each time
            try:
                mapped = self._mapped[index] = self.v.map_bar(index)
            except HardwareError:
                return None  # vfio-pci refused the mmap (an MSI-X table BAR on older kernels): callbacks
        return int(vfio.ffi.cast("uintptr_t", vfio.ffi.from_buffer(mapped.mm)))

    @property
    def irq(self) -> bool:
        """INTx as the device reports it in its Status register (bit 3, PCI 2.3)."""
        return bool(self.config_read(PCI_STATUS, 2) & STATUS_INTERRUPT)

    # -- memory ---------------------------------------------------------------------------------
    def attach_dma(self, memory_at) -> None:
        """The device reads RAM by itself, through the IOMMU (``map_ram``)."""

    def map_ram(self, mem, regions) -> None:
        for lo, hi in regions:
            self.v.dma_map_at(mem, lo, hi - lo, lo)

    # -- the device itself ------------------------------------------------------------------------
    def rom(self) -> bytes:
        """The ROM from the device's ROM BAR (VFIO region 6), trimmed as the kernel trims it."""
        data = self.v.read_rom()
        size = kernel_rom_size(data)
        if not size:
            raise no_valid_rom(self.v.pci.bdf)
        return data[:size]

    def missed_packets(self) -> int | None:
        """Frames the NIC missed since the last call (the first call starts the count), for parts
        whose counter is known; None otherwise."""
        where = MISSED_COUNTERS.get(self.ids) or MISSED_COUNTERS.get(self.ids[0])
        if where is None:
            return None
        index, offset, mask, cleared = where
        now = self.bar_read(index, offset, 4) & mask
        since = now if cleared else (now - getattr(self, "_missed_mark", now)) & mask
        self._missed_mark = now
        return since

    def reset(self) -> str | None:
        """Stop the device: bus mastering off (no DMA into memory about to go), then a VFIO reset.
        Returns why there was no reset, if there was none (the kernel driver resets it on probe)."""
        try:
            self.v.set_bus_master(False)
        except HardwareError:
            pass  # the reset below, or the driver's probe, stops it all the same
        try:
            self.v.reset()
        except HardwareError as exc:
            return str(exc)
        return None


@dataclass
class UndiRun:
    """What ``undi_on_device`` hands its caller."""

    nic: VfioNic
    machine: UndiMachine
    client: UndiClient
    rom_source: str  # "rom-bar" (the device's own) or "file"
    notes: list[str] = field(default_factory=list)


def check_rom(dev: PciDevice, rom: bytes, force_ids: bool) -> None:
    """Refuse a ROM that is not for ``dev`` before the device is touched."""
    check_ids(legacy_undi_image(rom), (dev.vendor_id, dev.device_id), force_ids)


@contextlib.contextmanager
def undi_on_device(bdf: str, rom: bytes | None = None, *, force_ids: bool = False, direct: bool = True,
                   watchdog: float = 20.0, rom_name: str = ""):
    """The ROM's UNDI up on the device at ``bdf`` (through undinet's probe), for a ``with`` block.

    ``rom`` None: the ROM in the device's ROM BAR. Any RomRunError from the ROM (watchdog, memory
    map, port allowlist, a CPU exception) ends the run as it is, one line naming the address and
    the UNDI call or step; the device is then stopped and reset, and vfio_bind gives it back to
    the driver it had. A clean end (the caller's UNDI calls done) goes the same way out.
    ``rom_name`` is what the run's ``rom_source`` calls a given ``rom`` ("file" if not given)."""
    dev = PciDevice.open(bdf)
    if rom is not None:
        check_rom(dev, rom, force_ids)
    notes: list[str] = []  # the run's ``notes``; the reset after the run is added once the caller's block is done
    with vfio_bind.bound(dev):  # outermost: the give-back to the kernel driver comes after every other step
        with vfio.VfioDevice(dev) as v:
            nic = VfioNic(v, direct=direct)
            um = None
            try:
                why = nic.reset()
                if why:
                    notes.append(f"no reset before the ROM ran: {why}")
                image, source = (rom, rom_name or "file") if rom is not None else (nic.rom(), "rom-bar")
                um = UndiMachine(image, nic, force_ids=force_ids)
                um.run_init(timeout=watchdog)
                um.run_loader(timeout=watchdog)
                client = UndiClient(um, irq_pending=None, timeout=watchdog)
                try:
                    client.probe()
                except RomRunError as exc:
                    raise RomRunError(f"{exc} (the ROM's UNDI could not bring the device up)") from None
                yield UndiRun(nic, um, client, source, notes)
            finally:
                # each step in its own try: one failing never skips the next
                try:
                    if um is not None:
                        um.m.unmap_direct()  # before the BAR mmaps go with the VFIO device
                finally:
                    why = nic.reset()
                    notes.append(f"no reset after the run: {why} (the kernel driver's probe resets it)" if why
                                 else "reset after the run (bus mastering off, VFIO device reset)")
