"""BAR0 of a NIC that QEMU emulates, reached from the host without a guest OS.

QEMU's device models (e1000 = 82540EM, e1000e = 82574L, ...) are real peers for
romlab's register code: their EERD, EECD and NVM contents were written from
Intel's manuals independently of romlab. To drive them from a test, or to
rehearse ``romlab nvm`` with no hardware, QEMU boots a tiny multiboot program
(a few dozen instructions, assembled here with GNU as) that turns its serial
port into a register relay: the host sends

  ``R addr32``        -> 4 bytes read from physical address addr (a 32-bit load)
  ``W addr32 val32``  -> ``k`` after a 32-bit store
  ``I port32``        -> 4 bytes from ``in`` on an I/O port
  ``O port32 val32``  -> ``k`` after ``out``

and the host side finds the NIC through PCI configuration cycles (ports
0xCF8/0xCFC), so each register access is one exchange on the serial line.
It boots in a fraction of a second under TCG; no kernel, no accelerator. QEMU is started
by the lab's launcher (it dies with romlab) and the NIC is given as a ``--nic`` spec, read by
the lab's one parser.
"""
from __future__ import annotations

import hashlib
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from hw.errors import LabError
from hw.mmio import Bar
from romlab.lab.process import launch, stop
from romlab.lab.qemu import NicSpec, cache_dir, find_qemu, machine_args

STUB_SOURCE = r"""
    .set COM1, 0x3f8
    .text
    .code32
    .align 4
    .long 0x1BADB002                /* multiboot magic, no flags */
    .long 0
    .long -0x1BADB002
    .globl _start
_start:
    cli
    mov $stack_top, %esp
    mov $COM1+1, %dx; xor %al, %al; out %al, %dx      /* no UART interrupts */
    mov $COM1+3, %dx; mov $0x80, %al; out %al, %dx    /* divisor latch */
    mov $COM1+0, %dx; mov $1, %al; out %al, %dx       /* 115200 baud */
    mov $COM1+1, %dx; xor %al, %al; out %al, %dx
    mov $COM1+3, %dx; mov $0x03, %al; out %al, %dx    /* 8N1 */
    mov $COM1+2, %dx; mov $0x07, %al; out %al, %dx    /* FIFOs on and cleared */
    mov $'S', %al
    call putc
next:
    call getc
    cmp $'R', %al; je op_read
    cmp $'W', %al; je op_write
    cmp $'I', %al; je op_in
    cmp $'O', %al; je op_out
    mov $'?', %al
    call putc
    jmp next
op_read:
    call get32
    mov (%eax), %eax
    call put32
    jmp next
op_write:
    call get32
    mov %eax, %ebx
    call get32
    mov %eax, (%ebx)
    mov $'k', %al
    call putc
    jmp next
op_in:
    call get32
    mov %ax, %dx
    in %dx, %eax
    call put32
    jmp next
op_out:
    call get32
    mov %eax, %ebx
    call get32
    mov %bx, %dx
    out %eax, %dx
    mov $'k', %al
    call putc
    jmp next
getc:                               /* -> %al */
    push %edx
    mov $COM1+5, %dx
1:  in %dx, %al
    test $1, %al
    jz 1b
    mov $COM1, %dx
    in %dx, %al
    pop %edx
    ret
putc:                               /* %al -> */
    push %edx
    push %eax
    mov $COM1+5, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret
get32:                              /* -> %eax, little-endian */
    push %ecx
    push %ebx
    xor %ebx, %ebx
    mov $4, %ecx
1:  call getc
    movzbl %al, %eax
    ror $8, %ebx
    or %eax, %ebx
    loop 1b
    ror $8, %ebx
    mov %ebx, %eax
    pop %ebx
    pop %ecx
    ret
put32:                              /* %eax -> */
    push %ecx
    mov $4, %ecx
1:  call putc
    ror $8, %eax
    loop 1b
    pop %ecx
    ret
    .bss
    .align 16
    .space 4096
stack_top:
"""

PCI_CLASS_NETWORK = 0x02


def build_stub() -> Path:
    """Assemble and link the relay (once; cached by the source's hash)."""
    digest = hashlib.sha256(STUB_SOURCE.encode()).hexdigest()[:12]
    out = cache_dir() / f"regrelay-{digest}.elf"
    if out.exists():
        return out
    for tool in ("as", "ld"):
        if not shutil.which(tool):
            raise LabError(f"`{tool}` (Debian package binutils) is needed to build the QEMU register relay")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, obj, elf = (Path(tmp) / n for n in ("stub.S", "stub.o", "stub.elf"))
        src.write_text(STUB_SOURCE)
        for cmd in (["as", "--32", "-o", str(obj), str(src)],
                    ["ld", "-m", "elf_i386", "-N", "-e", "_start", "-Ttext=0x100000", "--no-warn-rwx-segments",
                     "-o", str(elf), str(obj)]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise LabError(f"building the QEMU register relay failed: {r.stderr.strip().splitlines()[-1:]}")
        tmp_out = out.with_name(out.name + f".{os.getpid()}")
        shutil.copyfile(elf, tmp_out)
        os.replace(tmp_out, out)
    return out


class QemuNic(Bar):
    """One NIC in a QEMU ``pc`` machine, its BAR0 driven over the relay.

    ``device`` is a ``--nic`` spec such as ``e1000,mac=52:54:00:12:34:56``. The NIC's
    option ROM is left out (``romfile=``) unless the spec names one, since nothing here
    runs it; the NIC has no network back end, since nothing here sends a frame.
    """

    def __init__(self, device: str, timeout: float = 20.0):
        qemu = find_qemu()
        nic = NicSpec.parse(device, qemu)
        if nic.capture or nic.link:
            raise LabError(f"--qemu {device!r}: the register relay's NIC has no network, so no capture= or link=")
        nic.props.setdefault("romfile", "")
        stub = build_stub()
        self.timeout = timeout
        self.errlog = tempfile.TemporaryFile()
        self.proc = launch(
            [*machine_args(qemu, accel="tcg", machine="pc", memory=32), "-display", "none", "-no-user-config",
             "-monitor", "none", "-kernel", str(stub), "-device", nic.device(netdev=None)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog, bufsize=0)
        try:
            hello = self._recv(1, "start")
            if hello != b"S":
                raise LabError(f"the QEMU register relay sent {hello!r} instead of its greeting")
            self._find_nic(device)
        except BaseException:
            self.close()
            raise

    # --- the serial exchange ---------------------------------------------------
    def _recv(self, n: int, what: str) -> bytes:
        out = b""
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while len(out) < n:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            chunk = os.read(fd, n - len(out)) if ready else b""
            if not chunk:
                self.errlog.seek(0)
                err = self.errlog.read().decode(errors="replace").strip().splitlines()
                why = "no answer" if ready == [] else "QEMU exited"
                raise LabError(f"QEMU register relay: {why} during {what}"
                               + (f" ({err[-1]})" if err else ""))
            out += chunk
        return out

    def _send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            self._recv(1, "a send")          # raises with QEMU's last words

    def read32(self, offset: int) -> int:
        self._send(b"R" + struct.pack("<I", self.bar0 + offset))
        return struct.unpack("<I", self._recv(4, f"a read at BAR0+0x{offset:x}"))[0]

    def write32(self, offset: int, value: int) -> None:
        self._send(b"W" + struct.pack("<II", self.bar0 + offset, value & 0xFFFFFFFF))
        if self._recv(1, f"a write at BAR0+0x{offset:x}") != b"k":
            raise LabError("QEMU register relay lost step on a write")

    def inl(self, port: int) -> int:
        self._send(b"I" + struct.pack("<I", port))
        return struct.unpack("<I", self._recv(4, f"in from port 0x{port:x}"))[0]

    def outl(self, port: int, value: int) -> None:
        self._send(b"O" + struct.pack("<II", port, value & 0xFFFFFFFF))
        if self._recv(1, f"out to port 0x{port:x}") != b"k":
            raise LabError("QEMU register relay lost step on an out")

    def config_read(self, dev: int, offset: int) -> int:
        self.outl(0xCF8, 0x80000000 | (dev << 11) | (offset & 0xFC))
        return self.inl(0xCFC)

    def config_write(self, dev: int, offset: int, value: int) -> None:
        self.outl(0xCF8, 0x80000000 | (dev << 11) | (offset & 0xFC))
        self.outl(0xCFC, value)

    def _find_nic(self, device: str) -> None:
        for dev in range(32):
            ids = self.config_read(dev, 0)
            if ids == 0xFFFFFFFF:
                continue
            if self.config_read(dev, 8) >> 24 == PCI_CLASS_NETWORK:
                self.slot = dev
                self.vendor, self.device = ids & 0xFFFF, ids >> 16
                bar = self.config_read(dev, 0x10)
                if bar & 1:
                    raise LabError(f"QEMU's {device} ({ids & 0xFFFF:04x}:{ids >> 16:04x}) has an I/O BAR 0; the "
                                   "register relay needs a memory BAR 0, as QEMU's Intel NIC models have (e1000, "
                                   "e1000-82545em, e1000e)")
                self.bar0 = bar & ~0xF
                cmd = self.config_read(dev, 4)
                if not cmd & 0x2:
                    self.config_write(dev, 4, (cmd & 0xFFFF) | 0x2)
                return
        raise LabError(f"QEMU shows no network controller for -device {device}")

    @property
    def ids(self) -> str:
        return "%04x:%04x" % (self.vendor, self.device)

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is None:
            return
        self.proc = None
        try:
            stop(proc)
        finally:
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.errlog.close()
