"""The BIOS a NIC's ROM sees: BDA/EBDA, IVT, $PnP and $PMM structures, and the services behind them.

What a PXE ROM calls, as SeaBIOS answers it: INT 10h teletype (the console is captured, not
shown), INT 11h/12h, INT 15h E820/E801/88h and the A20 calls, INT 16h (no key ever comes), INT
1Ah tick count, PCI BIOS (B1xxh, configuration cycles to the one device) and the PXE check 5650h
(not installed: the ROM's own hook answers once its UNDI is loaded), PMM allocate/find/deallocate,
and the PnP entry (every function unsupported). A vector nobody serves stops the run and says
which call the ROM wanted. Every buffer a ROM hands a service is checked against the emulated
RAM before it is written.
"""
from __future__ import annotations

import struct
import time

from hw.errors import RomRunError

from . import machine as M
from .pmm import PMM_ALLOCATE, PMM_DEALLOCATE, PMM_FIND, Pmm

PNP_AT, PMM_AT = 0xF0000, 0xF0040
PNP_ENTRY, PMM_ENTRY = 0xF0100, 0xF0104
SMAP = 0x534D4150
E820_RAM, E820_RESERVED = 1, 2
PCI_SUCCESS, PCI_FUNC_NOT_SUPPORTED, PCI_DEVICE_NOT_FOUND, PCI_BAD_REGISTER = 0x00, 0x81, 0x86, 0x87
PNP_FUNCTION_NOT_SUPPORTED = 0x82
IRQ_VECTORS = set(range(0x08, 0x10)) | set(range(0x70, 0x78))
CONSOLE_KEEP = 64 * 1024  # the console's tail kept: a ROM printing in a loop must not fill the host's memory


def _checksummed(raw: bytearray, at: int) -> bytes:
    raw[at] = (-sum(raw)) & 0xFF
    return bytes(raw)


class Bios:
    def __init__(self, m: M.Machine, device):
        self.m, self.device = m, device
        self.console = bytearray()
        self.console_dropped = 0  # bytes printed before the kept tail
        self.calls: dict[str, int] = {}
        self.pmm = Pmm(M.PMM_LOW, (M.PMM_BASE, M.RAM_TOP))
        self.started = time.perf_counter()
        self.e820 = [
            (0, M.EBDA_SEG * 16, E820_RAM),
            (M.EBDA_SEG * 16, M.CONV_TOP - M.EBDA_SEG * 16, E820_RESERVED),
            (M.BIOS_AREA[0], M.BIOS_AREA[1] - M.BIOS_AREA[0], E820_RESERVED),
            (M.EXT_BASE, M.PMM_BASE - M.EXT_BASE, E820_RAM),
            (M.PMM_BASE, M.RAM_TOP - M.PMM_BASE, E820_RESERVED),
        ]
        self._install()

    # -- memory contents at power-on ------------------------------------------------------------
    def _install(self) -> None:
        m = self.m
        handlers = {0x08: self.int08, 0x10: self.int10, 0x11: self.int11, 0x12: self.int12, 0x15: self.int15, 0x16: self.int16,
                    0x1A: self.int1a}
        for n in range(256):
            stub = M.VECTOR_STUBS + 4 * n
            m.write(stub, bytes([0xCD, M.TRAP, 0xCF, 0x90]), check=False)  # int 0xF2; iret
            m.write(n * 4, struct.pack("<HH", stub & 0xFFFF, 0xF000), check=False)
            if n in handlers:
                m.services[stub] = handlers[n]
            elif n in IRQ_VECTORS:
                m.services[stub] = lambda: None  # an IRQ never raised here; a software int returns
            else:
                m.services[stub] = self._unserved(n)
        m.write(PNP_ENTRY, bytes([0xCD, M.TRAP, 0xCB]), check=False)  # int 0xF2; retf
        m.write(PMM_ENTRY, bytes([0xCD, M.TRAP, 0xCB]), check=False)
        m.services[PNP_ENTRY] = self.pnp_entry
        m.services[PMM_ENTRY] = self.pmm_entry
        # $PnP installation check structure (PnP BIOS 1.0A, 4.4): 0x21 bytes, checksum at 8.
        pnp = bytearray(struct.pack("<4sBBHBIHHHIIHI", b"$PnP", 0x10, 0x21, 0, 0, 0, PNP_ENTRY & 0xFFFF, 0xF000,
                                    0, 0xF0000, 0, 0xF000, 0xF0000))
        m.write(PNP_AT, _checksummed(pnp, 8), check=False)
        # $PMM structure (PMM 1.01): signature, revision 1, length 16, checksum, entry point.
        pmm = bytearray(struct.pack("<4sBBBHH5s", b"$PMM", 0x01, 16, 0, PMM_ENTRY & 0xFFFF, 0xF000, bytes(5)))
        m.write(PMM_AT, _checksummed(pmm, 6), check=False)
        m.write(0xFFFFE, b"\xfc", check=False)  # model byte: AT
        # BDA: equipment, base memory size (KiB below the EBDA), EBDA segment; EBDA size in KiB.
        m.write(0x400 + 0x0E, struct.pack("<H", M.EBDA_SEG), check=False)
        m.write(0x400 + 0x10, struct.pack("<H", 0x0021), check=False)
        m.write(0x400 + 0x13, struct.pack("<H", M.EBDA_SEG // 64), check=False)
        m.write(M.EBDA_SEG * 16, b"\x01", check=False)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _unserved(self, n: int):
        def serve():
            raise RomRunError(f"INT {n:02x}h (AX={self.m.reg('ax'):04x}) is not a service this emulated BIOS "
                              f"provides (called from {self._caller()})")
        return serve

    def _caller(self) -> str:
        """CS:IP after the caller's int, from the frame the dispatch pushed."""
        at = self.m.reg("ss") * 16 + self.m.reg("sp")
        ip, cs = struct.unpack_from("<HH", self.m.view, at) if self.m.inside(at, 4) else (0, 0)
        return f"{cs:04x}:{ip:04x}"

    def tick(self) -> int:
        """BIOS ticks (18.2065 Hz) since the machine was made, written to 40:6Ch as IRQ 0 would."""
        ticks = int((time.perf_counter() - self.started) * 1193182 / 65536)
        self.m.write(0x46C, struct.pack("<I", ticks & 0xFFFFFFFF), check=False)
        return ticks

    # -- services -------------------------------------------------------------------------------
    def int08(self) -> None:
        """IRQ 0, raised here only to wake a hlt: the tick count moves on, and INT 1Ch is called
        when the ROM has hooked it, as a BIOS's timer handler does."""
        self.tick()
        off, seg = struct.unpack_from("<HH", self.m.view, 0x1C * 4)
        if seg * 16 + off != M.VECTOR_STUBS + 4 * 0x1C:
            self.m.dispatch(0x1C, self.m.reg("cs"), self.m.reg("ip"))

    def int10(self) -> None:
        m = self.m
        ah = m.reg("ax") >> 8
        self._count(f"int10/{ah:02x}")
        if ah == 0x0E:
            self._print(bytes([m.reg("ax") & 0xFF]))
        elif ah == 0x13:
            # AL bit 1: the string is CX (character, attribute) pairs, 2*CX bytes; only the characters are text
            pairs = bool(m.reg("ax") & 2)
            count, at = m.reg("cx"), m.reg("es") * 16 + m.reg("bp")
            text = m.read(at, 2 * count if pairs else count, "the INT 10h/13h string")
            self._print(text[::2] if pairs else text)
        elif ah == 0x03:
            m.set_regs(cx=0x0607, dx=0)
        elif ah == 0x0F:
            m.set_regs(ax=0x5003, bx=m.reg("bx") & 0xFF)
        # set mode, cursor shape and position, scroll, write-at-cursor (09h/0Ah, which iPXE follows
        # with 0Eh for the same character): nothing to do for a captured console.

    def _print(self, text: bytes) -> None:
        """Append to the captured console, keeping its last CONSOLE_KEEP bytes and counting the rest."""
        self.console += text
        over = len(self.console) - CONSOLE_KEEP
        if over > 0:
            del self.console[:over]
            self.console_dropped += over

    def int11(self) -> None:
        self._count("int11")
        self.m.set_reg("ax", self.m.u16(0x410))

    def int12(self) -> None:
        self._count("int12")
        self.m.set_reg("ax", self.m.u16(0x413))

    def int16(self) -> None:
        m = self.m
        ah = m.reg("ax") >> 8
        self._count(f"int16/{ah:02x}")
        if ah in (0x01, 0x11):
            m.set_flags(zf=True)  # no keystroke waiting
        elif ah in (0x00, 0x10):
            raise RomRunError(f"the ROM waits for a keystroke (INT 16h AH={ah:02x}h from {self._caller()}), "
                              f"and no key ever comes here")
        elif ah in (0x02, 0x12):
            m.set_reg("ax", ah << 8)

    def int15(self) -> None:
        m = self.m
        ax, eax = m.reg("ax"), m.reg("eax")
        self._count(f"int15/{ax:04x}" if ax >> 8 in (0xE8, 0x24) else f"int15/{ax >> 8:02x}")
        if eax == 0xE820:
            self._e820()
        elif ax == 0xE801:
            ext = min(M.PMM_BASE, 16 << 20) - M.EXT_BASE
            high = max(0, M.PMM_BASE - (16 << 20))
            m.set_regs(ax=ext >> 10, cx=ext >> 10, bx=high >> 16, dx=high >> 16)
            m.set_flags(cf=False)
        elif ax >> 8 == 0x88:
            m.set_reg("ax", min((M.PMM_BASE - M.EXT_BASE) >> 10, 0xFFFF))
            m.set_flags(cf=False)
        elif ax in (0x2400, 0x2401):  # A20 off / on: always on in this machine, as on QEMU
            m.set_reg("ax", 0 if ax == 0x2401 else 0x8600)
            m.set_flags(cf=ax != 0x2401)
        elif ax == 0x2402:
            m.set_reg("ax", 0x0001)
            m.set_flags(cf=False)
        elif ax == 0x2403:
            m.set_regs(ax=0, bx=0x0000)
            m.set_flags(cf=False)
        else:
            m.set_reg("ax", 0x8600 | (ax & 0xFF))  # function not supported
            m.set_flags(cf=True)

    def _e820(self) -> None:
        m = self.m
        index, size = m.reg("ebx"), m.reg("ecx")
        if m.reg("edx") != SMAP or size < 20 or index >= len(self.e820):
            m.set_reg("ax", 0x8600)
            m.set_flags(cf=True)
            return
        base, length, kind = self.e820[index]
        entry = struct.pack("<QQI", base, length, kind)
        if size >= 24:
            entry += struct.pack("<I", 1)  # ACPI 3.0 extended attributes: enabled
        m.write(m.reg("es") * 16 + m.reg("di"), entry, "the E820 buffer (ES:DI)")
        m.set_regs(eax=SMAP, ecx=len(entry), ebx=0 if index + 1 == len(self.e820) else index + 1)
        m.set_flags(cf=False)

    def int1a(self) -> None:
        m = self.m
        ax = m.reg("ax")
        ah, al = ax >> 8, ax & 0xFF
        self._count(f"int1a/{ax:04x}" if ah == 0xB1 or ax == 0x5650 else f"int1a/{ah:02x}")
        if ax == 0x5650:
            m.set_flags(cf=True)  # no PXE stack installed (the ROM's own hook answers once it is)
        elif ah == 0x00:
            t = self.tick()
            m.set_regs(cx=(t >> 16) & 0xFFFF, dx=t & 0xFFFF, ax=0)
            m.set_flags(cf=False)
        elif ah == 0xB1:
            self._pci_bios(al)
        else:
            m.set_flags(cf=True)

    def _pci_bios(self, fn: int) -> None:
        m, dev = self.m, self.device
        status = PCI_SUCCESS
        if fn == 0x01:
            # CL = the last bus: the device's, so a ROM that scans buses 0..CL (iPXE) reaches it
            m.set_regs(edx=0x20494350, ax=0x0001, bx=0x0210, cx=m.reg("cx") & 0xFF00 | dev.bdf >> 8, edi=0)
        elif fn == 0x02:
            found = (m.reg("dx"), m.reg("cx")) == (dev.config_read(0, 2), dev.config_read(2, 2)) and m.reg("si") == 0
            status = PCI_SUCCESS if found else PCI_DEVICE_NOT_FOUND
            if found:
                m.set_reg("bx", dev.bdf)
        elif fn == 0x03:
            found = m.reg("ecx") & 0xFFFFFF == dev.config_read(0x09, 3) and m.reg("si") == 0
            status = PCI_SUCCESS if found else PCI_DEVICE_NOT_FOUND
            if found:
                m.set_reg("bx", dev.bdf)
        elif fn in (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D):
            size = {0x08: 1, 0x09: 2, 0x0A: 4, 0x0B: 1, 0x0C: 2, 0x0D: 4}[fn]
            bdf, reg = m.reg("bx"), m.reg("di")
            if reg % size or reg + size > 256:
                status = PCI_BAD_REGISTER
            elif fn <= 0x0A:
                value = self.config_read(bdf, reg, size)
                m.set_reg({1: "cx", 2: "cx", 4: "ecx"}[size],
                          (m.reg("cx") & 0xFF00 | value) if size == 1 else value)
            else:
                value = m.reg("ecx") & ((1 << (8 * size)) - 1)
                self.config_write(bdf, reg, size, value)
        else:
            status = PCI_FUNC_NOT_SUPPORTED
        m.set_reg("ax", status << 8 | (m.reg("ax") & 0xFF if fn != 0x01 else 0x01))
        m.set_flags(cf=status != PCI_SUCCESS)

    def config_read(self, bdf: int, reg: int, size: int) -> int:
        if bdf != self.device.bdf:
            return (1 << (8 * size)) - 1  # no device: all ones, as a bus master abort reads
        return self.device.config_read(reg, size)

    def config_write(self, bdf: int, reg: int, size: int, value: int) -> None:
        if bdf == self.device.bdf:
            self.device.config_write(reg, size, value)

    # -- far-called entries ---------------------------------------------------------------------
    def _stack_args(self, fmt: str) -> tuple:
        """The C-style arguments after the far return address on the caller's stack."""
        at = self.m.reg("ss") * 16 + self.m.reg("sp") + 4
        return struct.unpack(fmt, self.m.read(at, struct.calcsize(fmt), "the PMM/PnP arguments"))

    def pmm_entry(self) -> None:
        (fn,) = self._stack_args("<H")
        self._count(f"pmm/{fn}")
        if fn == PMM_ALLOCATE:
            _, paragraphs, handle, flags = self._stack_args("<HIIH")
            result = self.pmm.allocate(paragraphs, handle, flags)
        elif fn == PMM_FIND:
            _, handle = self._stack_args("<HI")
            result = self.pmm.find(handle)
        elif fn == PMM_DEALLOCATE:
            _, address = self._stack_args("<HI")
            result = self.pmm.deallocate(address)
        else:
            result = 0xFFFFFFFF  # PMM: an unknown function fails with all ones
        self.m.set_regs(ax=result & 0xFFFF, dx=result >> 16)

    def pnp_entry(self) -> None:
        (fn,) = self._stack_args("<H")
        self._count(f"pnp/{fn}")
        self.m.set_reg("ax", PNP_FUNCTION_NOT_SUPPORTED)
