"""romlab's errors: one base class, one subclass per kind of thing that went wrong.

Every verb turns a ``RomlabError`` into a single line on stderr and exits with its
``exit_code``, so nothing below the CLI ever needs to print or exit by itself. The
subclasses say where the trouble is, so a caller can catch one kind (a missing device,
say) without swallowing another (a bad ROM file). They live in ``hw``, the lowest
layer, because every layer raises them.
"""
from __future__ import annotations

__all__ = ["RomlabError", "FormatError", "NotAnOptionRom", "HardwareError", "FlashError", "LabError",
           "UsageError", "RomRunError"]


class RomlabError(Exception):
    """Something romlab cannot do, said in one line; ``exit_code`` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class FormatError(RomlabError):
    """A ROM image or other input file that does not hold what it should."""


class NotAnOptionRom(FormatError):
    """The bytes hold no PCI expansion ROM or legacy option ROM at offset 0."""


class HardwareError(RomlabError):
    """A device, sysfs, VFIO or DMA refused or failed: absent, busy, not permitted, not answering."""


class FlashError(RomlabError):
    """A flash chip or NVM could not be read or written as planned."""


class LabError(RomlabError):
    """The lab around a firmware run failed: QEMU, a network namespace, dnsmasq."""


class UsageError(RomlabError):
    """Options or arguments that do not go together."""


class RomRunError(RomlabError):
    """Code from a ROM, run in romlab's emulated PC, did what the emulator does not allow: ran past
    its time, wrote outside the emulated RAM, touched a port or service it was not given, faulted.
    The message names the address, and the UNDI call when there was one."""
