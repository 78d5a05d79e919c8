"""``file:PATH``: a flash image file standing in for a chip.

For dry runs, pipelines and preparing an image before it meets hardware. The
file is driven through the same chip model as the emulator (so erase and
program behave as on a part of that size) and changes reach the file as they
happen, through a shared memory map: an interrupted write leaves the file as
an interrupted write leaves a chip, and ``--resume`` works the same way.
"""
from __future__ import annotations

import mmap
import os

from hw.errors import FlashError
from romtools.flash import chips as chipdb
from romtools.flash.programmers.base import Programmer
from romtools.flash.sim.chip import SimChip


class FileProgrammer(Programmer):
    name = "file"

    def __init__(self, path: str, chip: str | None = None):
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise FlashError(f"cannot open flash image {path}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            part = chipdb.by_name(chip) if chip else chipdb.default_for_size(size)
            if part is None:
                sizes = ", ".join(f"{s // 1024} KiB" for s in chipdb.default_sizes())
                raise FlashError(f"{path} is {size} bytes; a flash image file must be the size of a chip "
                               f"({sizes})" if not chip else f"unknown chip {chip!r}")
            if part.size != size:
                raise FlashError(f"{path} is {size} bytes but {part.name} holds {part.size}")
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.sim = SimChip(part, self.map, timing="none")

    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        return self.sim.transfer(mosi, nread)

    def describe(self) -> str:
        return f"file {self.path}"

    def close(self) -> None:
        if getattr(self, "map", None) is not None:
            self.map.flush()
            self.map.close()
            self.map = None
