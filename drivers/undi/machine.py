"""The emulated PC a ROM's code runs in: memory, interrupts, far calls into the ROM, the watchdog.

Unicorn runs the code. The fast path has no per-instruction or per-block hook: Python sees only
what a PC would hand a BIOS or a device (software interrupts, I/O ports, accesses to the NIC's
memory BAR) and what must stop the run (an access outside the memory map, a fetch from nowhere).
The time limit is unicorn's own ``emu_start`` timeout.

Memory, one buffer so a device's DMA can reach it at address = emulated physical address:

=====================  ===============================================================
0x00000-0x9FBFF        conventional RAM (IVT, BDA, the call stack, base memory)
0x9FC00-0x9FFFF        EBDA (1 KiB), reserved in E820
0xA0000-0xBFFFF        not mapped (no VGA: the console is INT 10h)
0xC0000-0xDFFFF        option ROM area, writable as a BIOS leaves it during init
0xE0000-0xFFFFF        BIOS: structures and service stubs, read-only to the ROM
0x100000-PMM_BASE      extended RAM
PMM_BASE-RAM_TOP       PMM's extended pool, reserved in E820 (iPXE relocates by E820)
=====================  ===============================================================

The BIOS stubs are three bytes each, ``int 0xF2; iret`` (``retf`` for the far-called PMM and PnP
entries): unicorn hands every ``int`` to Python and never reads the IVT, so the hook tells a stub's
trap (the service) from the ROM's own ``int N`` (dispatched through the IVT by hand, since ROMs
hook vectors). A service sets CF and ZF in the FLAGS image its ``iret`` will restore.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import struct
import time
from typing import Callable

from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_INVALID,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_16,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from hw.errors import RomRunError, UsageError

from .ports import Denied, Ports
from .trace import BIOS, EMU, PORTS, PYTHON_AFTER

RAM_TOP = 32 << 20
CONV_TOP = 0xA0000
EBDA_SEG = 0x9FC0
ROM_AREA = (0xC0000, 0xE0000)
BIOS_AREA = (0xE0000, 0x100000)
EXT_BASE = 0x100000
PMM_BASE = RAM_TOP - (4 << 20)
PMM_LOW = (0x30000, 0x80000)
SCRATCH_SEG = 0x2000  # 64 KiB the UNDI client builds its parameter blocks in
STACK_SEG, STACK_TOP = 0x1000, 0xFFF0
TRAP = 0xF2
SENTINEL = (0xF000, 0xFF00)  # the return address pushed for every call into the ROM
VECTOR_STUBS = 0xF1000
MEM_BAR_BASE = 0xFEB80000
IO_BAR_BASE = 0xC000
TCG_BUFFER = 64 << 20
FLAG_CF, FLAG_ZF, FLAG_TF, FLAG_IF = 1 << 0, 1 << 6, 1 << 8, 1 << 9
REGS16 = {"ax": X.UC_X86_REG_AX, "bx": X.UC_X86_REG_BX, "cx": X.UC_X86_REG_CX, "dx": X.UC_X86_REG_DX,
          "si": X.UC_X86_REG_SI, "di": X.UC_X86_REG_DI, "bp": X.UC_X86_REG_BP, "sp": X.UC_X86_REG_SP,
          "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES, "ss": X.UC_X86_REG_SS, "cs": X.UC_X86_REG_CS,
          "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS, "ip": X.UC_X86_REG_IP}
REGS32 = {"eax": X.UC_X86_REG_EAX, "ebx": X.UC_X86_REG_EBX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
          "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI, "ebp": X.UC_X86_REG_EBP, "esp": X.UC_X86_REG_ESP,
          "eip": X.UC_X86_REG_EIP, "eflags": X.UC_X86_REG_EFLAGS, "cr0": X.UC_X86_REG_CR0}
ACCESS = {UC_MEM_READ_UNMAPPED: "read of unmapped", UC_MEM_WRITE_UNMAPPED: "write to unmapped",
          UC_MEM_FETCH_UNMAPPED: "instruction fetch from unmapped", UC_MEM_WRITE_PROT: "write to read-only",
          UC_MEM_READ_PROT: "read of protected", UC_MEM_FETCH_PROT: "instruction fetch from non-executable"}
#: Regions the ROM (and the device's DMA) may write; the BIOS area is readable too.
WRITABLE = ((0, CONV_TOP), ROM_AREA, (EXT_BASE, RAM_TOP))
READABLE = WRITABLE + (BIOS_AREA,)


class Machine:
    """One emulated PC. ``services`` maps a stub's linear address to the Python that serves it."""

    def __init__(self):
        self.mem = mmap.mmap(-1, RAM_TOP)
        self.view = memoryview(self.mem)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_16)
        # Unicorn reserves 1 GiB for translated code by default, more than a 1 GiB guest (romlab vm)
        # can commit; a ROM's code needs a fraction of TCG_BUFFER (it must be set before mem_map).
        uc.ctl_set_tcg_buffer_size(TCG_BUFFER)
        uc.mem_map_ptr(0, CONV_TOP, UC_PROT_ALL, base)
        uc.mem_map_ptr(ROM_AREA[0], ROM_AREA[1] - ROM_AREA[0], UC_PROT_ALL, base + ROM_AREA[0])
        uc.mem_map_ptr(BIOS_AREA[0], BIOS_AREA[1] - BIOS_AREA[0], UC_PROT_READ | UC_PROT_EXEC, base + BIOS_AREA[0])
        uc.mem_map_ptr(EXT_BASE, RAM_TOP - EXT_BASE, UC_PROT_ALL, base + EXT_BASE)
        self.services: dict[int, Callable[[], None]] = {}
        self.fault: str | None = None
        self.context = ""  # what is running, for error messages ("ROM init", "UNDI_TRANSMIT")
        self.ports: Ports | None = None
        self.interrupts = 0
        self.meter = None  # a trace.Meter while calls are measured: the hooks report their boundaries
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        self.write(SENTINEL[0] * 16 + SENTINEL[1], b"\xf4", check=False)  # hlt, never reached

    # -- registers ------------------------------------------------------------------------------
    def reg(self, name: str) -> int:
        return self.uc.reg_read(REGS16.get(name) or REGS32[name])

    def set_reg(self, name: str, value: int) -> None:
        if name in REGS16:
            self.uc.reg_write(REGS16[name], value & 0xFFFF)
        else:
            self.uc.reg_write(REGS32[name], value & 0xFFFFFFFF)

    def set_regs(self, **values: int) -> None:
        for k, v in values.items():
            self.set_reg(k, v)

    def where(self) -> str:
        """CS:IP of the code running (CS:EIP in protected mode)."""
        cs, eip = self.reg("cs"), self.reg("eip")
        return f"{cs:04x}:{eip:08x}" if self.reg("cr0") & 1 else f"{cs:04x}:{eip & 0xFFFF:04x}"

    # -- memory ---------------------------------------------------------------------------------
    @staticmethod
    def inside(addr: int, size: int, regions=WRITABLE) -> bool:
        return size >= 0 and any(lo <= addr and addr + size <= hi for lo, hi in regions)

    def check(self, addr: int, size: int, what: str, write: bool = True) -> None:
        """Stop the run unless [addr, addr+size) is emulated RAM (or, for reads, the BIOS area)."""
        if not self.inside(addr, size, WRITABLE if write else READABLE):
            raise RomRunError(f"{self._prefix()}{what} at {addr:#x}..{addr + max(size, 1) - 1:#x} is outside "
                              f"the emulated RAM (at {self.where()})")

    def read(self, addr: int, size: int, what: str = "a buffer") -> bytes:
        self.check(addr, size, what, write=False)
        return bytes(self.view[addr:addr + size])

    def write(self, addr: int, data: bytes, what: str = "a buffer", check: bool = True) -> None:
        if check:
            self.check(addr, len(data), what)
        self.view[addr:addr + len(data)] = data

    def u16(self, addr: int) -> int:
        return struct.unpack_from("<H", self.view, addr)[0]

    def dma_view(self, addr: int, size: int) -> memoryview:
        """The device's bus-master window: emulated RAM only, at address = emulated physical."""
        if not self.inside(addr, size):
            raise RomRunError(f"{self._prefix()}the device was given DMA address {addr:#x} ({size} bytes), "
                              f"outside the emulated RAM")
        return self.view[addr:addr + size]

    # -- calls into ROM code --------------------------------------------------------------------
    def push16(self, value: int) -> None:
        sp = (self.reg("sp") - 2) & 0xFFFF
        self.write(self.reg("ss") * 16 + sp, struct.pack("<H", value), "the stack")
        self.set_reg("sp", sp)

    def far_call(self, seg: int, off: int, *, stack: tuple[int, ...] = (), timeout: float = 10.0,
                 context: str = "", **regs: int) -> float:
        """Far-call seg:off in real mode with ``regs`` set and ``stack`` words pushed (first pushed
        first) on a fresh stack; return when it returns to the sentinel. Returns the seconds it took.
        A run that has not returned after ``timeout`` seconds stops with a RomRunError."""
        if not (math.isfinite(timeout) and timeout > 0):  # NaN and inf would fail only inside unicorn's call
            raise UsageError(f"the watchdog must be a positive, finite number of seconds, not {timeout!r}")
        self.context = context
        self.set_regs(cr0=self.reg("cr0") & ~1, ss=STACK_SEG, sp=STACK_TOP, eflags=0x0002 | FLAG_IF)
        for w in stack:
            self.push16(w)
        self.push16(SENTINEL[0])
        self.push16(SENTINEL[1])
        defaults = dict(ds=0, es=0, fs=0, gs=0)
        defaults.update(regs)
        self.set_regs(**defaults)
        self.set_reg("cs", seg)
        self.fault = None
        t0 = time.perf_counter()
        deadline = t0 + timeout
        begin = seg * 16 + off
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            meter = self.meter
            if meter is not None:
                meter.enter(EMU)
            try:
                self.uc.emu_start(begin, SENTINEL[0] * 16 + SENTINEL[1], timeout=max(1, int(left * 1e6)))
            except UcError as e:
                raise RomRunError(self.fault or f"{self._prefix()}the emulated CPU stopped at {self.where()}: {e}") \
                    from None
            finally:
                if meter is not None:
                    meter.enter(PYTHON_AFTER)
            if self.fault:
                raise RomRunError(self.fault)
            cs, ip = self.reg("cs"), self.reg("ip")
            if (cs, ip) == SENTINEL and not self.reg("cr0") & 1:
                return time.perf_counter() - t0
            if not self._halted(cs, ip):
                break
            # hlt: a PC's timer interrupt (IRQ 0, every 55 ms) is what wakes it.
            if not self.reg("eflags") & FLAG_IF:
                raise RomRunError(f"{self._prefix()}hlt with interrupts disabled at {self.where()}: the CPU would "
                                  f"stop for ever")
            self.dispatch(0x08, cs, ip)
            begin = self.reg("cs") * 16 + self.reg("ip")
        raise RomRunError(f"{self._prefix()}did not return within the watchdog's {timeout:g} s "
                          f"(stopped at {self.where()})")

    def _halted(self, cs: int, ip: int) -> bool:
        """Unicorn ends emu_start after a hlt, with IP past it."""
        lin = cs * 16 + ip - 1
        return not self.reg("cr0") & 1 and self.inside(lin, 1, READABLE) and self.view[lin] == 0xF4

    def _prefix(self) -> str:
        return f"{self.context}: " if self.context else ""

    def stop(self, message: str) -> None:
        """Called from a hook: end the run with ``message`` (the first reason wins)."""
        if self.fault is None:
            self.fault = f"{self._prefix()}{message}"
        self.uc.emu_stop()

    # -- hooks ----------------------------------------------------------------------------------
    def _on_invalid(self, uc, access, address, size, value, _ud) -> bool:
        kind = ACCESS.get(access, f"access {access} to")
        self.stop(f"{kind} memory at {address:#x} ({size} bytes) by the code at {self.where()}")
        return False

    def _on_in(self, uc, port, size, _ud) -> int:
        meter = self.meter
        prev = meter.enter(PORTS) if meter is not None else None
        try:
            return self.ports.read(port, size)
        except Denied as e:
            self.stop(f"{e} at {self.where()}, outside the allowed ports")
        except Exception as e:  # a device backend's error must stop the run, not vanish in unicorn
            self.stop(f"{e} (port {port:#x} at {self.where()})")
        finally:
            if meter is not None:
                meter.enter(prev)
        return 0

    def _on_out(self, uc, port, size, value, _ud) -> None:
        meter = self.meter
        prev = meter.enter(PORTS) if meter is not None else None
        try:
            self.ports.write(port, size, value)
        except Denied as e:
            self.stop(f"{e} at {self.where()}, outside the allowed ports")
        except Exception as e:
            self.stop(f"{e} (port {port:#x} at {self.where()})")
        finally:
            if meter is not None:
                meter.enter(prev)

    def _on_interrupt(self, uc, intno, _ud) -> None:
        meter = self.meter
        if meter is None:
            self._interrupt(intno)
            return
        prev = meter.enter(BIOS)
        try:
            self._interrupt(intno)
        finally:
            meter.enter(prev)

    def _interrupt(self, intno: int) -> None:
        self.interrupts += 1
        try:
            if self.reg("cr0") & 1:
                self.stop(f"interrupt or exception {intno:#x} in protected mode at {self.where()}")
                return
            cs, ip = self.reg("cs"), self.reg("ip")
            lin = cs * 16 + ip
            if intno == TRAP and lin - 2 in self.services:
                self.services[lin - 2]()
                return
            before = bytes(self.view[lin - 2:lin]) if self.inside(lin - 2, 2, READABLE) else b""
            if before == bytes([0xCD, intno]) or (intno == 3 and before[-1:] == b"\xcc"):
                self.dispatch(intno, cs, ip)
            else:
                self.stop(f"CPU exception {intno} at {self.where()}")
        except RomRunError as e:
            self.stop(str(e).removeprefix(self._prefix()))
        except Exception as e:
            self.stop(f"INT {intno:#04x} at {self.where()} failed: {e}")

    def dispatch(self, intno: int, cs: int, ip: int) -> None:
        """What a real-mode CPU does for ``int N``: FLAGS, CS, IP onto the stack, IF and TF off,
        and on to the vector in the IVT (which the ROM may have hooked)."""
        flags = self.reg("eflags")
        for w in (flags & 0xFFFF, cs, ip):
            self.push16(w)
        self.set_reg("eflags", flags & ~(FLAG_IF | FLAG_TF))
        off, seg = struct.unpack_from("<HH", self.view, intno * 4)
        self.set_reg("cs", seg)
        self.set_reg("eip", off)

    def set_flags(self, cf: bool | None = None, zf: bool | None = None) -> None:
        """From a service behind ``int 0xF2; iret``: CF/ZF in the FLAGS image on the stack."""
        at = self.reg("ss") * 16 + ((self.reg("sp") + 4) & 0xFFFF)
        self.check(at, 2, "the stack")
        flags = self.u16(at)
        if cf is not None:
            flags = (flags | FLAG_CF) if cf else (flags & ~FLAG_CF)
        if zf is not None:
            flags = (flags | FLAG_ZF) if zf else (flags & ~FLAG_ZF)
        self.write(at, struct.pack("<H", flags))

    # -- the NIC's memory BAR -------------------------------------------------------------------
    def map_mmio(self, base: int, size: int, read: Callable[[int, int], int],
                 write: Callable[[int, int, int], None]) -> None:
        def rd(uc, offset, sz, _ud):
            try:
                return read(offset, sz)
            except Exception as e:
                self.stop(f"device read at {base + offset:#x} failed: {e} (at {self.where()})")
                return 0

        def wr(uc, offset, sz, value, _ud):
            try:
                write(offset, sz, value)
            except Exception as e:
                self.stop(f"device write at {base + offset:#x} failed: {str(e).removeprefix(self._prefix())} "
                          f"(at {self.where()})")

        self._mmio = getattr(self, "_mmio", []) + [(rd, wr)]  # unicorn keeps no reference of its own
        self.uc.mmio_map(base, size, rd, None, wr, None)

    def map_direct(self, base: int, size: int, host_address: int) -> None:
        """Map ``size`` bytes of host memory at ``host_address`` (a BAR mmap'ed through VFIO) at
        ``base``: the ROM's loads and stores reach the device with no Python in between. The
        mapping must go (``unmap_direct``) before that memory is unmapped from the process."""
        self.uc.mem_map_ptr(base, size, UC_PROT_READ | UC_PROT_WRITE, host_address)
        self.direct = getattr(self, "direct", []) + [(base, size)]

    def unmap_direct(self) -> None:
        for base, size in getattr(self, "direct", []):
            self.uc.mem_unmap(base, size)
        self.direct = []
