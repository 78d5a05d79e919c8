"""Find option ROMs at any offset inside a larger image: a flash dump, a firmware volume, a file
with a vendor header in front.

Candidates are the 55 AA signatures; a PCI ROM must also have a 'PCIR' where its
word 0x18 points, and a non-PCI ROM (no PCIR) must start on a 512-byte boundary
and checksum to 0, since BIOSes only look for those on such boundaries. Every
candidate that passes is walked like a ROM file, and the walk's extent is
skipped, so the images of one multi-image ROM are reported once.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from hw.errors import RomlabError
from romtools.walker import Walk, walk

_u16 = struct.Struct("<H").unpack_from


@dataclass
class Found:
    offset: int
    walk: Walk

    @property
    def length(self) -> int:
        return self.walk.end


def _candidate(data, pos: int, n: int) -> bool:
    if pos + 0x1C > n:
        return False
    ptr = _u16(data, pos + 0x18)[0]
    if ptr:
        at = pos + ptr
        return at + 0x18 <= n and data[at:at + 4] == b"PCIR"
    size = data[pos + 2] * 512
    return pos % 512 == 0 and size > 0 and pos + size <= n and sum(data[pos:pos + size]) & 0xFF == 0


def scan(data: bytes) -> list[Found]:
    found: list[Found] = []
    view = memoryview(data)
    n = len(data)
    pos = data.find(b"\x55\xaa")
    while pos >= 0:
        if _candidate(data, pos, n):
            try:
                w = walk(view[pos:], trailing=False)
            except RomlabError:
                w = None
            if w is not None and w.images:
                found.append(Found(pos, w))
                pos = pos + max(w.end, 2)
                pos = data.find(b"\x55\xaa", pos)
                continue
        pos = data.find(b"\x55\xaa", pos + 1)
    return found
