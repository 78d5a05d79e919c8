"""A NIC's register BAR behind one small interface: ``read32(offset)`` / ``write32(offset, value)``.

The in-system programmers (``nicintel_spi``, ``nicintel_eeprom``) and ``romlab nvm``
only ever do 32-bit register reads and writes at an offset. Keeping that behind
one interface lets the same code run on:

* ``ResourceBar``: a real device's BAR0, mmap'ed from sysfs ``resource0``;
* ``VfioBar``: BAR0 through VFIO (``hw.vfio``), for a device bound to vfio-pci;
* ``romtools.flash.sim.nic``: the register-level double used by the tests;
* ``romtools.flash.qemubar``: a NIC that QEMU emulates, reached without a guest OS.

``Window`` shifts offsets to a register block (the flash registers of an 82599
sit at BAR0+0x10000, those of an I210 at BAR0+0x12000). ``PciTarget`` reads the
little of sysfs romlab needs to pick a device (IDs, decode state, driver); it
honours ``ROMLAB_SYSFS`` like the rest of romlab so tests can point it at a
crafted tree.
"""
from __future__ import annotations

import errno
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from hw import sysfs
from hw.pci import parse_bdf
from romtools.errors import RomError

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
    """A register block inside a bigger BAR: every offset is moved by ``base``."""

    def __init__(self, bar: Bar, base: int):
        self.bar = bar
        self.base = base

    def read32(self, offset: int) -> int:
        return self.bar.read32(self.base + offset)

    def write32(self, offset: int, value: int) -> None:
        self.bar.write32(self.base + offset, value)

    def close(self) -> None:
        self.bar.close()


class BarBusy(RomError):
    """The kernel refused to map the BAR because a driver holds it exclusively."""


class ResourceBar(Bar):
    """BAR0 of a device mapped from ``/sys/bus/pci/devices/<BDF>/resource0``.

    The kernel maps the BAR uncached; accesses go through a ``memoryview`` cast
    to 32-bit words so each read or write is one aligned load or store, as
    device registers require.
    """

    def __init__(self, path: Path, size: int | None = None):
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_SYNC)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise RomError(f"permission denied opening {path}: mapping a NIC's registers needs root "
                               "(run romlab with sudo)") from None
            if exc.errno == errno.ENOENT:
                raise RomError(f"{path} does not exist: the device has no memory BAR 0") from None
            raise RomError(f"cannot open {path}: {exc.strerror}") from None
        try:
            length = size or os.fstat(fd).st_size
            if length <= 0:
                raise RomError(f"{path} is empty: the kernel gives BAR 0 no size")
            try:
                self.map = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    # pci_mmap_resource() says EINVAL when the region is claimed exclusively
                    # (e1000 and e1000e do that, and every driver under CONFIG_IO_STRICT_DEVMEM).
                    raise BarBusy(f"the kernel will not map {path} while a driver holds it") from None
                hint = " (on a locked-down kernel, boot with iomem=relaxed)" if exc.errno == errno.EPERM else ""
                raise RomError(f"cannot map {path}: {exc.strerror}{hint}") from None
        finally:
            os.close(fd)
        self.size = length
        self.words = memoryview(self.map).cast("I")

    def read32(self, offset: int) -> int:
        return self.words[offset >> 2]

    def write32(self, offset: int, value: int) -> None:
        self.words[offset >> 2] = value & 0xFFFFFFFF

    def close(self) -> None:
        if getattr(self, "words", None) is not None:
            self.words.release()
            self.words = None
            self.map.close()


class VfioBar(Bar):
    """BAR0 through VFIO, for a device already bound to vfio-pci."""

    def __init__(self, bdf: str):
        try:
            from hw import vfio
        except ImportError as exc:
            raise RomError(f"VFIO access is not available in this romlab ({exc}); use --via sysfs") from None
        self.dev = vfio.open_device(bdf)
        try:
            self.mmio = self.dev.map_bar(0)
        except BaseException:
            self.dev.close()
            raise

    def read32(self, offset: int) -> int:
        return self.mmio.read32(offset)

    def write32(self, offset: int, value: int) -> None:
        self.mmio.write32(offset, value)

    def close(self) -> None:
        if getattr(self, "dev", None) is not None:
            self.dev.close()
            self.dev = None


@dataclass
class PciTarget:
    """A PCI function as sysfs shows it: enough to choose and open a NIC's registers."""

    bdf: str
    path: Path
    vendor: int
    device: int
    subsystem: tuple[int, int]
    enabled: bool
    driver: str | None

    @classmethod
    def open(cls, bdf_text: str) -> "PciTarget":
        bdf = str(parse_bdf(bdf_text))
        path = sysfs.pci_devices_dir() / bdf
        if not path.exists():
            raise RomError(f"no PCI device {bdf} (see `lspci -D` for the addresses present)")

        def num(name: str, default: int | None = None) -> int:
            try:
                return int((path / name).read_text().strip(), 0)
            except FileNotFoundError:
                if default is None:
                    raise RomError(f"{path / name} is missing; is {bdf} really a PCI device?") from None
                return default
            except (OSError, ValueError) as exc:
                raise RomError(f"cannot read {path / name}: {exc}") from None

        driver = None
        try:
            driver = os.path.basename(os.readlink(path / "driver"))
        except OSError:
            pass
        # Memory decoding is bit 1 of the command register; sysfs "enable" only
        # counts pci_enable_device() calls, so it is the fallback.
        try:
            with open(path / "config", "rb") as fh:
                head = fh.read(6)
        except OSError:
            head = b""
        enabled = bool(head[4] & 0x2) if len(head) == 6 else num("enable", 1) != 0
        return cls(bdf=bdf, path=path, vendor=num("vendor"), device=num("device"),
                   subsystem=(num("subsystem_vendor", 0), num("subsystem_device", 0)),
                   enabled=enabled, driver=driver)

    @property
    def ids(self) -> str:
        return "%04x:%04x" % (self.vendor, self.device)

    def open_bar0(self, via: str = "sysfs") -> Bar:
        """BAR0 mapped for register access; refuses when memory decoding is off."""
        if not self.enabled:
            raise RomError(f"{self.bdf} has memory decoding turned off (the command register's memory "
                           f"bit is 0); run `echo 1 > {self.path}/enable` first")
        if via == "vfio":
            return VfioBar(self.bdf)
        if via != "sysfs":
            raise RomError(f"unknown access method {via!r}; use sysfs or vfio")
        try:
            return ResourceBar(self.path / "resource0")
        except BarBusy:
            holder = f"the {self.driver} driver" if self.driver else "a driver"
            raise RomError(f"{self.bdf}: {holder} holds BAR 0, so the kernel will not map it for romlab; "
                           "add --unbind (the driver is unbound for the run and bound again after; the link "
                           "goes down meanwhile), or use --via vfio") from None

    def unbind_driver(self) -> str | None:
        """Detach the kernel driver; returns its name for ``bind_driver`` (None if there was none)."""
        name = self.driver
        if name is None:
            return None
        sysfs.write_text(self.path / "driver" / "unbind", self.bdf)
        self.driver = None
        return name

    def bind_driver(self, name: str) -> None:
        sysfs.write_text(sysfs.pci_drivers_dir() / name / "bind", self.bdf)
        self.driver = name
