"""The safe sequence around a write, shared by ``romlab flash`` and ``romlab restore``.

identify -> refuse what cannot fit -> stable backup read -> save backup ->
plan -> (dry run stops here) -> unprotect -> journal -> write blocks with
verify and retry -> verify the whole chip -> re-protect -> close the journal.
"""
from __future__ import annotations

import hashlib
import sys
import time

from romtools.errors import RomError
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


class PciSession:
    """An Intel NIC's own flash, in-system: the sysfs target, its family, the open programmer."""

    def __init__(self, bdf: str, via: str = "sysfs", chip_name: str | None = None, warn=None,
                 unbind: bool = False):
        from romtools.flash import nicfamily
        from romtools.flash.bar import PciTarget, Window
        from romtools.flash.programmers.nicintel_spi import NicIntelSpi

        self.target = PciTarget.open(bdf)
        t = self.target
        self.family = nicfamily.require_family(t.vendor, t.device, f"{t.bdf} is")
        if self.family.flash is None:
            raise RomError(f"{t.bdf} ({t.ids}, {self.family.name}): {self.family.note}")
        self.spec = f"pci:{t.bdf}"
        self.unbound = t.unbind_driver() if unbind and via == "sysfs" else None
        try:
            bar = t.open_bar0(via)
            if t.driver and warn and via == "sysfs":
                warn(f"{t.bdf} is bound to the {t.driver} driver, which may use the flash too; --unbind "
                     "detaches it for the run")
            try:
                self.prog = NicIntelSpi(Window(bar, self.family.base), self.family, where=f"{t.bdf} ({t.ids})")
            except BaseException:
                bar.close()
                raise
        except BaseException:
            self.rebind()
            raise
        self.prog.on_close += [bar.close, self.rebind]
        try:
            self.nor = SpiNor(self.prog)
            self.nor.identify()
        except BaseException:
            self.prog.close()
            raise

    def rebind(self) -> None:
        if self.unbound:
            name, self.unbound = self.unbound, None
            self.target.bind_driver(name)

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
                raise RomError(f"the {fam.name}'s flash holds its NVM below 0x{fam.rom_start:x}; romlab never "
                               f"writes there (the '{lay.name}' region starts at 0x{lay.start:x})")
            return lay
        if spec is None:
            if image.nvm_checksum_at(current, 0) or image.nvm_checksum_at(current, 0x1000):
                raise RomError(f"this {fam.name}'s flash holds an Intel NVM image (word checksum 0xBABA), so "
                               "its NVM lives in the flash; romlab will not guess where the ROM goes: pass "
                               "--layout FILE")
            return image.Layout("rom-at-0", 0, size)
        return image.choose_layout(spec, current, force=force)


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
        journal.start(header)
    protected = nor.unprotect()
    try:
        stats = writer.write(nor, current, target, progress=progress.bar("writing", 1),
                             on_step=lambda step: journal.done(step.start, step.size))
        bad = writer.verify(nor, target, progress=progress.bar("verifying", len(target)))
        if bad:
            ranges = ", ".join("0x%06x-0x%06x" % (a, b - 1) for a, b in bad[:4])
            raise writer.FlashError(f"verification failed at {ranges}", state="partial")
    except writer.FlashError:
        journal.close()
        raise
    except RomError as exc:
        journal.close()
        raise writer.FlashError(str(exc), state="partial") from None
    nor.reprotect(protected)
    journal.finish()
    stats["protection_restored"] = bool(protected)
    return stats
