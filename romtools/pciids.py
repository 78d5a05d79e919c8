"""Vendor, device and class names from the system's pci.ids, looked up without parsing it all.

The file is 1.3 MB; reading it whole and searching for the handful of IDs one ROM
names costs a few milliseconds, where building a full table would cost the
100 ms a fresh ``romlab inspect`` cannot spare.
"""
from __future__ import annotations

import os
import re

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


class PciIds:
    def __init__(self, path: str | None = None):
        self.path = path or os.environ.get("ROMLAB_PCI_IDS") or next(
            (p for p in PCI_IDS_PATHS if os.path.exists(p)), None)
        self._text: bytes | None = None

    @property
    def text(self) -> bytes:
        if self._text is None:
            try:
                with open(self.path, "rb") as f:  # type: ignore[arg-type]
                    self._text = f.read()
            except (OSError, TypeError):
                self._text = b""
        return self._text

    # A top-level line: anything but a tab (sub-entries), a comment or an empty line.
    _TOP = re.compile(rb"\n[^\t#\n]")

    def _block(self, head: bytes) -> tuple[int, int] | None:
        """Span of the block whose top-level line starts with ``head`` (up to the next top-level line)."""
        text = self.text
        pos = text.find(b"\n" + head)
        if pos < 0:
            return None
        start = pos + 1
        nxt = self._TOP.search(text, start)
        return (start, nxt.start() + 1) if nxt else (start, len(text))

    @staticmethod
    def _rest(line: bytes, skip: int) -> str:
        return line[skip:].strip().decode("utf-8", "replace")

    def vendor(self, vendor_id: int) -> str | None:
        span = self._block(b"%04x  " % vendor_id)
        if not span:
            return None
        line = self.text[span[0]:self.text.find(b"\n", span[0])]
        return self._rest(line, 6)

    def device(self, vendor_id: int, device_id: int) -> str | None:
        span = self._block(b"%04x  " % vendor_id)
        if not span:
            return None
        pos = self.text.find(b"\n\t%04x  " % device_id, span[0], span[1])
        if pos < 0:
            return None
        line = self.text[pos + 1:self.text.find(b"\n", pos + 1)]
        return self._rest(line, 7)

    def class_name(self, class_code: int) -> str | None:
        """The most specific name pci.ids has for a 24-bit class code (base, subclass, prog-if)."""
        base, sub, prog = (class_code >> 16) & 0xFF, (class_code >> 8) & 0xFF, class_code & 0xFF
        span = self._block(b"C %02x  " % base)
        if not span:
            return None
        text = self.text
        name = self._rest(text[span[0]:text.find(b"\n", span[0])], 6)
        pos = text.find(b"\n\t%02x  " % sub, span[0], span[1])
        if pos < 0:
            return name
        eol = text.find(b"\n", pos + 1)
        name = self._rest(text[pos + 1:eol], 5)
        # Programming interfaces are the doubly indented lines right under the subclass line.
        line_start = eol + 1
        while text.startswith(b"\t\t", line_start):
            line_end = text.find(b"\n", line_start)
            if text.startswith(b"\t\t%02x  " % prog, line_start):
                return f"{name} ({self._rest(text[line_start:line_end], 6)})"
            line_start = line_end + 1
        return name


_default: PciIds | None = None


def default() -> PciIds:
    global _default
    if _default is None:
        _default = PciIds()
    return _default
