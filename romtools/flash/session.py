"""The safe sequence around a write, shared by ``romlab flash`` and ``romlab restore``.

identify -> refuse what cannot fit -> stable backup read -> save backup ->
plan -> (dry run stops here) -> unprotect -> journal -> write blocks with
verify and retry -> verify the whole chip -> re-protect -> close the journal.
"""
from __future__ import annotations

import hashlib
import sys
import time

from hw.errors import FlashError, RomlabError
from romtools.flash import backup as backupmod
from romtools.flash import writer
from romtools.flash.spinor import SpiNor


class Progress:
    """One stderr line, redrawn at most ten times a second, only on a terminal."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0

    def bar(self, label: str, total: int):
        def update(done: int, total_=None):
            if not self.enabled:
                return
            t = total_ or total
            now = time.monotonic()
            if done < t and now - self.last < 0.1:
                return
            self.last = now
            width = 30
            fill = int(width * done / t) if t else width
            sys.stderr.write(f"\r{label:<10} [{'#' * fill}{'.' * (width - fill)}] {done // 1024}/{t // 1024} KiB")
            if done >= t:
                sys.stderr.write("\n")
            sys.stderr.flush()
        return update


def open_chip(prog):
    """Identify the chip behind an open programmer; the programmer is closed if that fails."""
    try:
        nor = SpiNor(prog)
        nor.identify()
    except BaseException:
        prog.close()
        raise
    return prog, nor


# NICs people try to flash in-system that romlab cannot drive, with what to use instead.
OTHER_VENDORS = {
    0x14E4: "Broadcom: romlab does not drive Broadcom NVRAM in-system. Use Broadcom's own NVRAM tools, "
            "or clip a ch341a or serprog programmer on the flash chip (board powered off)",
    0x10EC: "Realtek: romlab does not drive Realtek boot-ROM flash in-system (flashrom's nicrealtek covers "
            "only the RTL8139 and, untested, RTL8169). Clip a ch341a or serprog programmer on the SPI "
            "flash chip (board powered off)",
    0x15B3: "Mellanox/NVIDIA: the option ROM is part of the adapter firmware image; use mstflint or "
            "mlxfwmanager, not a raw flash write",
    0x1077: "QLogic: the option ROM is part of the adapter's flash image; use the vendor's flash tool",
    0x19A2: "Emulex: the option ROM is part of the adapter firmware; use the vendor's flash tool",
    0x1924: "Solarflare: the boot ROM is managed by the adapter firmware (sfboot/sfupdate); use those",
}


# Vendors of virtual devices (virtio, QEMU's own): no flash chip to write; the ROM is a file the hypervisor loads.
VIRTUAL_VENDORS = {0x1AF4: "virtio", 0x1B36: "QEMU"}


def _families(flash_only: bool) -> str:
    """The Intel families of ``hw.parts`` by their short names, for messages that list them."""
    from hw.parts import FAMILIES

    return "Intel " + ", ".join(f.name.split(" (")[0].removeprefix("Intel ") for f in FAMILIES
                                if f.flash or not flash_only)


def require_part(vendor: int, device: int, who: str, *, purpose: str = "flash", dev=None):
    """The ``hw.parts.Part`` for these IDs, or a RomlabError saying what to use instead.

    ``who`` names the device ("0000:03:00.0", "QEMU's e1000"); ``purpose`` is what romlab
    would do with it: "flash" (its option-ROM flash) or "nvm" (its NVM words). ``dev``, the
    ``hw.pci.PciDevice`` when there is one, lets the refusal of a virtual function name its PF
    (sysfs's physfn link)."""
    from hw.parts import find_part
    from hw.pci import LIST_HINT

    from hw.parts import F_VF

    part = find_part(vendor, device)
    ids = "%04x:%04x" % (vendor, device)
    if part is not None and part.flags & F_VF:
        pf = dev.physfn if dev is not None else None
        if pf is not None:
            raise FlashError(f"{who} ({ids}) is an SR-IOV virtual function: {part.family.note} {pf}; "
                             "give romlab that")
        raise FlashError(f"{who} ({ids}) is an SR-IOV virtual function: {part.family.note}; "
                         "give romlab its PF (`romlab nic vfs --pci PF` lists a PF's VFs)")
    if part is not None:
        return part
    if purpose == "nvm":
        raise FlashError(f"{who} ({ids}) is not an Intel NIC with an NVM romlab knows ({_families(False)}); "
                         f"{LIST_HINT}")
    if vendor in VIRTUAL_VENDORS:
        raise FlashError(f"{who} ({ids}) is a {VIRTUAL_VENDORS[vendor]} device, emulated by a hypervisor rather "
                         "than a card with a flash chip; its option ROM is the file the hypervisor loads "
                         "(QEMU: -device ...,romfile=FILE)")
    advice = OTHER_VENDORS.get(vendor)
    if advice:
        raise FlashError(f"{who} ({ids}): {advice}")
    raise FlashError(f"{who} ({ids}) is not a NIC whose flash romlab can reach in-system ({_families(True)}); "
                     "clip a ch341a or serprog programmer on its flash chip instead (board powered off)")


def require_flash_part(dev):
    """The part of PCI device ``dev`` if romlab can reach its option-ROM flash in-system."""
    part = require_part(dev.vendor_id, dev.device_id, str(dev.bdf), dev=dev)
    if part.family.flash is None:
        raise FlashError(f"{dev.bdf} ({dev.ids}, {part.family.name}): {part.family.note}")
    return part


class PciSession:
    """An Intel NIC's own flash, in-system: the PCI device, its family, the open programmer.

    BAR 0 comes from ``hw.access.open_bar``, which also takes the driver away for the run
    with ``unbind`` (and gives it back when the programmer closes)."""

    def __init__(self, bdf: str, via: str = "sysfs", chip_name: str | None = None, warn=None,
                 unbind: bool = False):
        from hw import access
        from hw.mmio import Window
        from hw.pci import PciDevice
        from romtools.flash.programmers.nicintel_spi import NicIntelSpi

        self.device = dev = PciDevice.open(bdf)
        self.family = require_flash_part(dev).family
        self.bdf, self.ids = str(dev.bdf), dev.ids
        self.spec = f"pci:{self.bdf}"
        bar = access.open_bar(dev, 0, via, unbind=unbind and via == "sysfs")
        try:
            if via == "sysfs" and warn and dev.driver:
                warn(f"{self.bdf} is bound to the {dev.driver} driver, which may use the flash too; --unbind "
                     "detaches it for the run")
            self.prog = NicIntelSpi(Window(bar, self.family.base), self.family, where=f"{self.bdf} ({self.ids})")
        except BaseException:
            bar.close()
            raise
        self.prog.on_close.append(bar.close)
        try:
            self.nor = SpiNor(self.prog)
            self.nor.identify()
        except BaseException:
            self.prog.close()
            raise

    def layout(self, spec: str | None, current: bytes, force: bool = False):
        """Where the ROM goes on this NIC's flash: the family knows; a layout may only narrow it."""
        from romtools.flash import image
        fam = self.family
        size = len(current)
        if fam.rom_start:
            if spec in (None, "i210"):
                return image.Layout(fam.key, fam.rom_start, size)
            lay = image.choose_layout(spec, current, force=False) if spec != "rom-at-0" else \
                image.Layout("rom-at-0", 0, size)
            if lay.start < fam.rom_start:
                raise FlashError(f"the {fam.name}'s flash holds its NVM below 0x{fam.rom_start:x}; romlab never "
                               f"writes there (the '{lay.name}' region starts at 0x{lay.start:x})")
            return lay
        if spec is None:
            if image.nvm_checksum_at(current, 0) or image.nvm_checksum_at(current, 0x1000):
                raise FlashError(f"this {fam.name}'s flash holds an Intel NVM image (word checksum 0xBABA), so "
                               "its NVM lives in the flash; romlab will not guess where the ROM goes: pass "
                               "--layout FILE")
            return image.Layout("rom-at-0", 0, size)
        return image.choose_layout(spec, current, force=force)


def open_for_dry_run(bdf: str, via: str, unbind: bool, warn=None):
    """(PciSession, None), or (None, why) when reading the NIC's flash in-system would need its
    driver taken away. A dry run changes nothing, and unbinding the driver is a change (the link
    goes down, possibly the one the operator came in on), so a dry run never unbinds: it opens the
    BAR as it is and, when the driver holds it and --unbind was asked for, says the answer is
    unknown without unbinding."""
    from hw.mmio import BarBusy

    try:
        return PciSession(bdf, via=via, warn=warn, unbind=False), None
    except BarBusy as exc:
        if not unbind:
            raise
        return None, (f"unknown without unbinding: {exc.args[0].split(';')[0]}; a dry run never unbinds a "
                      "driver (run without --dry-run to read the chip with the driver unbound)")


def read_stable(nor: SpiNor, progress: Progress, label: str = "reading") -> bytes:
    size = nor.chip.size
    return writer.stable_read(nor, 0, size, progress=progress.bar(label, size))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def apply(nor: SpiNor, current: bytes, target: bytes, journal: backupmod.Journal, header: dict,
          progress: Progress, resume: bool = False) -> dict:
    """Write ``target`` over ``current`` with unprotect, journal and verification."""
    if resume:
        journal.reopen()
    else:
        journal.start(header, target)
    protected = nor.unprotect()
    try:
        stats = writer.write(nor, current, target, progress=progress.bar("writing", 1),
                             on_step=lambda step: journal.done(step.start, step.size))
        bad = writer.verify(nor, target, progress=progress.bar("verifying", len(target)))
        if bad:
            ranges = ", ".join("0x%06x-0x%06x" % (a, b - 1) for a, b in bad[:4])
            raise writer.WriteError(f"verification failed at {ranges}", state="partial")
    except writer.WriteError:
        journal.close()
        raise
    except RomlabError as exc:
        journal.close()
        raise writer.WriteError(str(exc), state="partial") from None
    nor.reprotect(protected)
    journal.finish()
    stats["protection_restored"] = bool(protected)
    return stats
