"""Bringing a ROM's UNDI up the way a PC does: the BIOS runs the ROM's init, a PXE client calls its
UNDI loader, and from then on the !PXE entry point takes API calls.

Init is called as SeaBIOS's __callrom calls it: a far call to offset 3 of the ROM's segment with
AX = the device's bus:dev.fn, BX = DX = 0xFFFF (no ISA PnP), ES:DI = the $PnP installation check
structure, interrupts enabled. The loader is called as iPXE's undiload.c calls it: base memory for
the UNDI code and data segments is taken from the top of conventional memory (the BDA's 40:13
lowered to match), an s_UNDI_LOADER block is filled in, and its far address is pushed (segment,
then offset) before the far call to UNDILoader. The ROM is checked first (a legacy x86 image with
an UNDI ROM ID, its checksum, its PCI IDs against the device's) so a ROM that cannot be meant for
the device never runs.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from construct import ConstructError

from hw.errors import FormatError, RomRunError, UsageError
from romtools import pxe, walker
from romtools import schemas as S

from . import machine as M
from .bios import PNP_AT, Bios
from .device import COMMAND_IO, COMMAND_MEMORY, PCI_BAR0, PCI_COMMAND, Device
from .ports import Ports
from .trace import DEVICE

ROM_SEG = 0xC800
LOADER_AT, PARAMS_AT = 0x0000, 0x0100  # offsets in the scratch segment


@dataclass
class Timings:
    init: float = 0.0
    loader: float = 0.0
    calls: dict[str, list[float]] = field(default_factory=dict)


def legacy_undi_image(rom: bytes):
    """The first legacy x86 image of ``rom`` that has an UNDI ROM ID, checked enough to be run."""
    walk = walker.walk(rom)
    for image in walk.images:
        if image.pci and image.code_type == 0 and image.header_kind == "legacy" and image.undi is not None:
            legacy = next(c for c in image.checksums if c.name == "legacy image")
            if not legacy.ok:
                raise FormatError(f"image {image.index} has a bad checksum ({legacy.value:#04x}); a BIOS would not "
                                  f"run it (fix it with romlab patch --fix-checksums)")
            if image.init_size == 0 or image.init_size > M.ROM_AREA[1] - ROM_SEG * 16:
                raise FormatError(f"image {image.index} declares an init size of {image.init_size} bytes, which "
                                  f"does not fit the option ROM area")
            if image.undi.loader_offset == 0 or image.undi.loader_offset >= image.init_size:
                raise FormatError(f"image {image.index}'s UNDI ROM ID gives loader offset "
                                  f"{image.undi.loader_offset:#x}, outside its {image.init_size}-byte image")
            return image
    raise FormatError("the ROM has no legacy x86 image with an UNDI ROM ID: it has no UNDI driver to run")


def check_ids(image, ids: tuple[int, int], force_ids: bool = False) -> None:
    """Refuse (UsageError) a ROM image whose PCIR vendor/device (or device list) does not name the
    device's ``ids``, unless ``force_ids``: a BIOS would not run it for that device either."""
    rom_ids = {(image.pcir.vendor_id, image.pcir.device_id)}
    rom_ids |= {(image.pcir.vendor_id, d) for d in image.device_list or ()}
    if ids not in rom_ids and not force_ids:
        listed = ", ".join(f"{v:04x}:{d:04x}" for v, d in sorted(rom_ids))
        raise UsageError(f"the ROM is for {listed}, the device is {ids[0]:04x}:{ids[1]:04x}; "
                         f"use --force-ids to run it anyway")


class UndiMachine:
    """A PC with one NIC (``device``) and its ROM at C800:0, ready to run init and the UNDI loader."""

    def __init__(self, rom: bytes, device: Device, *, force_ids: bool = False):
        image = legacy_undi_image(rom)
        check_ids(image, (device.config_read(0, 2), device.config_read(2, 2)), force_ids)
        self.image, self.device = image, device
        self.m = m = M.Machine()
        self.ports = Ports(self._config_read, self._config_write, self._cmos())
        m.ports = self.ports
        self.bios = Bios(m, device)
        self.timings = Timings()
        self._place_bars()
        device.attach_dma(m.dma_view)
        device.map_ram(m.mem, M.WRITABLE)
        m.write(ROM_SEG * 16, rom[image.offset:image.offset + image.init_size], check=False)
        self.pxe = self.pxenv = None
        self.entry: tuple[int, int] | None = None
        self.undi_cs = self.undi_ds = 0

    def _config_read(self, bdf: int, reg: int, size: int) -> int:
        return self.bios.config_read(bdf, reg, size)

    def _config_write(self, bdf: int, reg: int, size: int, value: int) -> None:
        self.bios.config_write(bdf, reg, size, value)

    @staticmethod
    def _cmos() -> bytes:
        cmos = bytearray(128)
        ext_kb = min((M.PMM_BASE - M.EXT_BASE) >> 10, 0xFFFF)
        cmos[0x0A], cmos[0x0B], cmos[0x0D] = 0x26, 0x02, 0x80
        struct.pack_into("<H", cmos, 0x15, 640)
        struct.pack_into("<H", cmos, 0x17, ext_kb)
        struct.pack_into("<H", cmos, 0x30, ext_kb)
        struct.pack_into("<H", cmos, 0x34, max(0, (M.PMM_BASE - (16 << 20)) >> 16))
        return bytes(cmos)

    def _place_bars(self) -> None:
        """Give each BAR an address, as SeaBIOS's pciinit would, and turn decoding on."""
        mem, io = M.MEM_BAR_BASE, M.IO_BAR_BASE
        self.bar_addresses: dict[int, int] = {}
        for bar in self.device.bars:
            if bar.io:
                io = (io + bar.size - 1) & ~(bar.size - 1)
                self.device.config_write(PCI_BAR0 + 4 * bar.index, 4, io)
                self.ports.map_io_bar(io, bar.size, lambda o, s, i=bar.index: self.device.bar_read(i, o, s),
                                      lambda o, s, v, i=bar.index: self.device.bar_write(i, o, s, v))
                self.bar_addresses[bar.index] = io
                io += bar.size
            else:
                size = max(bar.size, 0x1000)
                mem = (mem + size - 1) & ~(size - 1)
                self.device.config_write(PCI_BAR0 + 4 * bar.index, 4, mem)
                direct = self.device.bar_memory(bar.index)
                if direct is not None:
                    self.m.map_direct(mem, size, direct)
                else:
                    self.m.map_mmio(mem, size, lambda o, s, i=bar.index: self.device.bar_read(i, o, s),
                                    lambda o, s, v, i=bar.index: self.device.bar_write(i, o, s, v))
                self.bar_addresses[bar.index] = mem
                mem += size
        self.device.config_write(PCI_COMMAND, 2, COMMAND_IO | COMMAND_MEMORY)

    # -- the two steps a PC takes -----------------------------------------------------------------
    def run_init(self, timeout: float = 20.0) -> int:
        """The ROM's init entry, as SeaBIOS calls it; returns AX (the ROM's boot-device flags)."""
        self.timings.init = self.m.far_call(ROM_SEG, 3, timeout=timeout, context="ROM init", ax=self.device.bdf,
                                            bx=0xFFFF, dx=0xFFFF, es=0xF000, di=PNP_AT & 0xFFFF)
        return self.m.reg("ax")

    def run_loader(self, timeout: float = 20.0) -> None:
        """The UNDI loader, as iPXE's undiload calls it; afterwards ``pxe``, ``pxenv`` and ``entry``."""
        m = self.m
        rom = ROM_SEG * 16
        undi_ptr = m.u16(rom + 0x16)
        try:
            undi = S.UndiRomId.parse(m.read(rom + undi_ptr, S.UndiRomId.sizeof(), "the UNDI ROM ID"))
        except ConstructError:
            raise RomRunError(f"after init, C800:{undi_ptr:04x} (word 0x16 of the ROM) holds no UNDI ROM ID: "
                              f"the ROM's init overwrote it") from None
        fbms = m.u16(0x413)  # whatever the ROM's init left there: checked before it places anything
        if fbms > M.CONV_TOP // 1024:
            raise RomRunError(f"after init, the BIOS data area's base memory size (40:13h) is {fbms} KiB, more than "
                              f"the {M.CONV_TOP // 1024} KiB of conventional memory: the ROM's init overwrote it")
        seg = (fbms << 6) - ((undi.code_size + 15) >> 4)
        self.undi_cs = seg
        seg -= (undi.data_size + 15) >> 4
        self.undi_ds = seg
        if seg * 16 < M.PMM_LOW[1]:
            raise RomRunError(f"the UNDI ROM ID asks for {undi.code_size} + {undi.data_size} bytes of base memory, "
                              f"more than is free below {fbms} KiB")
        m.write(0x413, struct.pack("<H", seg >> 6))
        block = pxe.UndiLoader.build(dict(status=0, ax=self.device.bdf, bx=0xFFFF, dx=0xFFFF, di=PNP_AT & 0xFFFF,
                                          es=0xF000, undi_ds=self.undi_ds, undi_cs=self.undi_cs,
                                          pxe_ptr=dict(offset=0, segment=0), pxenv_ptr=dict(offset=0, segment=0)))
        at = M.SCRATCH_SEG * 16 + LOADER_AT
        m.write(at, block)
        self.timings.loader = m.far_call(ROM_SEG, undi.loader_offset, stack=(M.SCRATCH_SEG, LOADER_AT),
                                         timeout=timeout, context="UNDI loader")
        exit_code = m.reg("ax")
        out = pxe.UndiLoader.parse(m.read(at, pxe.UndiLoader.sizeof()))
        if exit_code != pxe.EXIT_SUCCESS or out.status != 0:
            raise RomRunError(f"UNDI loader: failed with exit {exit_code:#x}, status {out.status:#06x}")
        self.pxe = self._structure(pxe.Pxe, out.pxe_ptr, "!PXE", lambda p: p.struct_length)
        self.pxenv = self._structure(pxe.Pxenv, out.pxenv_ptr, "PXENV+", lambda p: p.length)
        ep = self.pxe.entry_point_sp
        self.entry = (ep.segment, ep.offset)
        if not M.Machine.inside(pxe.linear(ep), 1, M.WRITABLE):
            raise RomRunError(f"UNDI loader: !PXE gives entry point {ep.segment:04x}:{ep.offset:04x}, outside RAM")

    def _structure(self, schema, ptr, name: str, length_of):
        at = pxe.linear(ptr)
        raw = self.m.read(at, schema.sizeof(), f"the {name} structure the loader returned")
        try:
            parsed = schema.parse(raw)
        except Exception:
            raise RomRunError(f"UNDI loader: {ptr.segment:04x}:{ptr.offset:04x} holds no {name} structure") from None
        length = length_of(parsed)
        if length < schema.sizeof():
            # A short length would let the checksum cover less than the fields read: 0 sums to 0.
            raise RomRunError(f"UNDI loader: the {name} structure at {ptr.segment:04x}:{ptr.offset:04x} says it is "
                              f"{length} bytes long, less than the {schema.sizeof()} of its fields")
        if sum(self.m.read(at, length, name)) & 0xFF:
            raise RomRunError(f"UNDI loader: the {name} structure at {ptr.segment:04x}:{ptr.offset:04x} has a bad "
                              f"checksum")
        return parsed

    # -- API calls ----------------------------------------------------------------------------------
    def call(self, opcode: int, block: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
        """One call through !PXE's 16-bit entry, the way undinet_call makes it: segment, offset and
        opcode pushed, BX = opcode and ES:DI = the block too (the PXENV+ convention). Returns the
        exit code (AX) and the block as the ROM left it."""
        if self.entry is None:
            raise UsageError("the UNDI loader has not run: no !PXE entry point to call")
        m = self.m
        at = M.SCRATCH_SEG * 16 + PARAMS_AT
        m.write(at, block)
        name = pxe.call_name(opcode)
        elapsed = m.far_call(*self.entry, stack=(M.SCRATCH_SEG, PARAMS_AT, opcode), timeout=timeout, context=name,
                             bx=opcode, es=M.SCRATCH_SEG, di=PARAMS_AT)
        self.timings.calls.setdefault(name, []).append(elapsed)
        return m.reg("ax"), m.read(at, len(block))

    # -- measuring (drivers.undi.trace) -------------------------------------------------------------
    trace = None  # a trace.Trace while one is on (set_trace)

    def set_meter(self, meter) -> None:
        """Time the calls that follow in disjoint buckets (a trace.Meter), or stop (None)."""
        self.m.meter = meter
        self._gate()

    def set_trace(self, trace) -> None:
        """Switch a trace on (a trace.Trace) or off (None) between calls. While it is on, memory BARs
        mapped straight in go through the callbacks (so every access is counted and timed), and the
        per-instruction hook is in; off, both are as they were."""
        if trace is not None and self.trace is None:
            for base, size in list(getattr(self.m, "direct", [])):
                index = next(i for i, a in self.bar_addresses.items() if a == base)
                self.m.uc.mem_unmap(base, size)
                self.m.map_mmio(base, size, lambda o, s, i=index: self.device.bar_read(i, o, s),
                                lambda o, s, v, i=index: self.device.bar_write(i, o, s, v))
                self._traced_bars = getattr(self, "_traced_bars", []) + [(base, size, index)]
            self.m.direct = []
            self.trace = trace
            trace.attach(self.m.uc, self.m.view)
        elif trace is None and self.trace is not None:
            self.trace.detach()
            self.trace = None
            for base, size, index in getattr(self, "_traced_bars", []):
                self.m.uc.mem_unmap(base, size)
                self.m.map_direct(base, size, self.device.bar_memory(index))
            self._traced_bars = []
        self._gate()

    def _gate(self) -> None:
        """While a meter or a trace is on, the BAR callbacks (which call ``self.device`` when they
        run) meet a ``MeasuredDevice`` in front of the device; with neither on, the device itself,
        so the fast path has nothing in between."""
        measuring = self.m.meter is not None or self.trace is not None
        gated = isinstance(self.device, MeasuredDevice)
        if measuring and not gated:
            self.device = MeasuredDevice(self.device, self)
        elif gated and not measuring:
            self.device = self.device.device


class MeasuredDevice:
    """A device with its BAR accesses measured: each one is a boundary of the meter's ``device``
    bucket and, under a trace, counted and timed per register. Everything else is the device's."""

    def __init__(self, device: Device, um: UndiMachine):
        self.device, self._um = device, um

    def __getattr__(self, name):
        return getattr(self.device, name)

    def bar_read(self, index: int, offset: int, size: int) -> int:
        meter, trace = self._um.m.meter, self._um.trace
        prev = meter.enter(DEVICE) if meter is not None else None
        try:
            if trace is not None:
                return trace.bar_read(self.device, index, offset, size)
            return self.device.bar_read(index, offset, size)
        finally:
            if meter is not None:
                meter.enter(prev)

    def bar_write(self, index: int, offset: int, size: int, value: int) -> None:
        meter, trace = self._um.m.meter, self._um.trace
        prev = meter.enter(DEVICE) if meter is not None else None
        try:
            if trace is not None:
                trace.bar_write(self.device, index, offset, size, value)
            else:
                self.device.bar_write(index, offset, size, value)
        finally:
            if meter is not None:
                meter.enter(prev)
