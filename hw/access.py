"""The two roads to a PCI device, chosen per call (``via``): the kernel's sysfs files, or VFIO.

``read_rom`` reads a device's expansion ROM: the sysfs ``rom`` attribute, or the VFIO ROM
region with the device on vfio-pci for the read. ``open_bar`` maps a BAR for register
access: sysfs ``resource<N>``, optionally with the driver detached while the BAR is open, or
the BAR's VFIO region of a device bound to vfio-pci. Whatever moves the device between
drivers goes through ``hw.vfio_bind``, so every verb gets the same record and Ctrl-C hold.
"""
from __future__ import annotations

import contextlib

from hw import vfio, vfio_bind
from hw.errors import HardwareError, UsageError
from hw.mmio import BarBusy, Window
from hw.pci import PciDevice, kernel_rom_size, no_rom_bar, no_valid_rom

VIAS = ("sysfs", "vfio")


def _check_via(via: str) -> None:
    if via not in VIAS:
        raise UsageError(f"unknown access method {via!r}; use sysfs or vfio")


def read_rom(bdf: str, via: str = "sysfs", raw: bool = False) -> bytes:
    """A device's ROM, for ``dump``/``inspect``/``lint --pci``; HardwareError on every failure.

    ``via="sysfs"`` reads the kernel's ``rom`` attribute (trimmed by the kernel to its
    images); ``via="vfio"`` reads the VFIO ROM region (index 6), binding the device to
    vfio-pci for the read if needed and giving it back to its driver after. Without
    ``raw`` the bytes are trimmed like the kernel's ``pci_get_rom_size``; ``raw`` returns
    the whole ROM BAR, fill included, and needs VFIO.
    """
    dev = PciDevice.open(bdf)
    _check_via(via)
    if not dev.rom_bar_size:
        raise no_rom_bar(dev.bdf)
    if via == "sysfs":
        if raw:
            raise UsageError("--raw needs --via vfio: the kernel's sysfs rom file stops after the last image")
        data = dev.read_rom_sysfs()
    else:
        with vfio_bind.bound(dev):
            with vfio.VfioDevice(dev) as v:
                data = v.read_rom()
    if raw:
        return data
    size = kernel_rom_size(data)
    if not size:
        raise no_valid_rom(dev.bdf)
    return data[:size]


def open_bar(dev: PciDevice, index: int = 0, via: str = "sysfs", unbind: bool = False) -> Window:
    """BAR ``index`` of ``dev`` mapped for register access; closing it undoes everything.

    Refuses a device that does not decode memory. ``via="sysfs"`` maps ``resource<index>``;
    the kernel refuses that while a driver holds the BAR, so ``unbind`` takes the driver
    away (``vfio_bind.detached``) until the BAR is closed. ``via="vfio"`` needs the device
    on vfio-pci already and ignores ``unbind``.
    """
    _check_via(via)
    if not dev.memory_enabled:
        raise HardwareError(f"{dev.bdf} has memory decoding turned off (the command register's memory "
                            f"bit is 0); run `echo 1 > {dev.path}/enable` first")
    if via == "vfio":
        return vfio.open_bar(dev, index)
    undo = contextlib.ExitStack()
    try:
        if unbind:
            undo.enter_context(vfio_bind.detached(dev))
        try:
            bar = dev.map_resource(index)
        except BarBusy:
            holder = f"the {dev.driver} driver" if dev.driver else "a driver"
            raise BarBusy(
                f"{dev.bdf}: {holder} holds BAR {index}, so the kernel will not map it for romlab; add --unbind "
                "(the driver is unbound for the run and bound again after; the link goes down meanwhile), or "
                "use --via vfio") from None
    except BaseException:
        undo.close()
        raise
    return Window(bar, 0, on_close=undo.close)
