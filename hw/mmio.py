"""A device's registers behind one small interface: ``read32(offset)`` / ``write32(offset, value)``.

Everything that talks to a NIC's registers (the user-space driver, the in-system flash
programmers, ``romlab nvm``) only does whole 32-bit reads and writes at a byte offset, so
one interface serves every way of reaching them:

* ``MappedBar``: a BAR mapped into this process. Two backends make one: ``ResourceBar``
  maps sysfs ``resource<N>`` (the kernel's own mapping of the BAR, no driver needed), and
  ``hw.vfio.VfioDevice.map_bar`` maps the BAR's VFIO region (``map_region`` here);
* the register doubles and relays the tests and the lab provide, which subclass ``Bar``.

``Window`` shifts offsets to a register block (the flash registers of an 82599 sit at
BAR0+0x10000, those of an I210 at BAR0+0x12000).
"""
from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

from hw.errors import HardwareError


class Bar:
    """What every register window offers. Offsets are bytes, accesses whole 32-bit words."""

    def read32(self, offset: int) -> int:
        raise NotImplementedError

    def write32(self, offset: int, value: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Window(Bar):
    """A register block inside a bigger BAR: every offset is moved by ``base``.

    Closing the window closes the BAR, then calls ``on_close``: what must end with the BAR
    (the VFIO device that owns it, a driver to give back). That runs once, whatever raised.
    """

    def __init__(self, bar: Bar, base: int = 0, on_close=None):
        self.bar = bar
        self.base = base
        self.on_close = on_close

    def read32(self, offset: int) -> int:
        return self.bar.read32(self.base + offset)

    def write32(self, offset: int, value: int) -> None:
        self.bar.write32(self.base + offset, value)

    def close(self) -> None:
        then, self.on_close = self.on_close, None
        try:
            self.bar.close()
        finally:
            if then is not None:
                then()


class MappedBar(Bar):
    """A BAR mapped into this process (``mm``, ``size`` bytes), accessed in aligned 32-bit words.

    Accesses go through a ``memoryview`` cast to 32-bit words, so each read or write is one
    aligned load or store, as device registers require. ``close`` may be called again.
    """

    def __init__(self, mm: mmap.mmap, size: int):
        self.mm = mm
        self.size = size
        self._words: memoryview | None = memoryview(mm).cast("I")

    def read32(self, offset: int) -> int:
        return self._words[offset >> 2]

    def write32(self, offset: int, value: int) -> None:
        self._words[offset >> 2] = value & 0xFFFFFFFF

    def close(self) -> None:
        if self._words is None:
            return
        words, self._words = self._words, None
        words.release()
        self.mm.close()


class BarBusy(HardwareError):
    """The kernel refused to map the BAR because a driver holds it exclusively."""


class ResourceBar(MappedBar):
    """BAR ``N`` of a device mapped from sysfs ``/sys/bus/pci/devices/<BDF>/resource<N>``.

    The kernel maps the BAR uncached and needs no driver for it; it refuses while a driver
    has claimed the BAR exclusively (``BarBusy``).
    """

    def __init__(self, path: Path, size: int | None = None):
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_SYNC)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise HardwareError(f"permission denied opening {path}: mapping a NIC's registers needs root "
                                    "(run romlab as root or with sudo)") from None
            if exc.errno == errno.ENOENT:
                raise HardwareError(f"{path} does not exist: the device has no memory BAR {_index(path)}") from None
            raise HardwareError(f"cannot open {path}: {exc.strerror}") from None
        try:
            length = size or os.fstat(fd).st_size
            if length <= 0:
                raise HardwareError(f"{path} is empty: the kernel gives BAR {_index(path)} no size")
            try:
                mm = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    # pci_mmap_resource() says EINVAL when the region is claimed exclusively
                    # (e1000 and e1000e do that, and every driver under CONFIG_IO_STRICT_DEVMEM).
                    raise BarBusy(f"the kernel will not map {path} while a driver holds it") from None
                hint = " (on a locked-down kernel, boot with iomem=relaxed)" if exc.errno == errno.EPERM else ""
                raise HardwareError(f"cannot map {path}: {exc.strerror}{hint}") from None
        finally:
            os.close(fd)
        super().__init__(mm, length)


def _index(path: Path) -> str:
    return path.name.removeprefix("resource") or "0"


def map_region(fd: int, offset: int, size: int, writable: bool, what: str) -> MappedBar:
    """A region of a device fd (a VFIO BAR region) mapped shared; ``what`` names it in errors."""
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, prot, offset=offset)
    except OSError as exc:
        raise HardwareError(f"mmap of {what} failed: {exc.strerror}") from None
    return MappedBar(mm, size)
