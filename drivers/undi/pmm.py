"""The POST Memory Manager (PMM 1.01) a BIOS offers option ROMs during their init.

iPXE's init asks it for the extended memory it decompresses and relocates itself into; what PMM
hands out must be reserved in the E820 map too, or the ROM's later relocation lands on top of it.
Allocations come from two pools, conventional and extended, first fit; sizes are in paragraphs
(16 bytes) as the specification has them. Sizes from a ROM are checked against the pool before
anything is reserved.
"""
from __future__ import annotations

PMM_ALLOCATE, PMM_FIND, PMM_DEALLOCATE = 0, 1, 2
FLAG_CONVENTIONAL, FLAG_EXTENDED, FLAG_ALIGNED = 0x1, 0x2, 0x4
ANONYMOUS = 0xFFFFFFFF
FAIL = 0
CALLS_KEEP = 1024  # the calls log keeps the last ones: a ROM calling PMM in a loop must not fill memory


class Pmm:
    def __init__(self, low: tuple[int, int], high: tuple[int, int]):
        self.pools = {FLAG_CONVENTIONAL: low, FLAG_EXTENDED: high}
        self.blocks: list[tuple[int, int, int]] = []  # (address, size in bytes, handle)
        self.calls: list[tuple] = []  # the last CALLS_KEEP (at most twice that between trims)
        self.calls_seen = 0

    def _log(self, call: tuple) -> None:
        self.calls.append(call)
        self.calls_seen += 1
        if len(self.calls) > 2 * CALLS_KEEP:
            del self.calls[:-CALLS_KEEP]

    def _fits(self, pool: tuple[int, int], size: int, align: int) -> int:
        start, end = pool
        addr = (start + align - 1) & ~(align - 1)
        for a, s, _ in sorted(self.blocks):
            if a + s <= addr or a >= end:
                continue
            if addr + size <= a:
                break
            addr = (a + s + align - 1) & ~(align - 1)
        return addr if addr + size <= end else FAIL

    def allocate(self, paragraphs: int, handle: int, flags: int) -> int:
        """The address of a new block, 0 if none fits; ``paragraphs`` 0 asks for the largest free
        block's size (in paragraphs), as the specification says."""
        self._log(("allocate", paragraphs, handle, flags))
        size = paragraphs * 16
        align = 16
        if flags & FLAG_ALIGNED and size:
            align = 1 << max(4, (size - 1).bit_length())
        for kind in (FLAG_CONVENTIONAL, FLAG_EXTENDED):
            if not flags & kind:
                continue
            pool = self.pools[kind]
            if size == 0:
                return self._largest(pool) // 16
            if size > pool[1] - pool[0]:
                continue
            addr = self._fits(pool, size, align)
            if addr:
                self.blocks.append((addr, size, handle))
                return addr
        return FAIL

    def _largest(self, pool: tuple[int, int]) -> int:
        edges, best, at = sorted(b for b in self.blocks if pool[0] <= b[0] < pool[1]), 0, pool[0]
        for a, s, _ in edges:
            best, at = max(best, a - at), max(at, a + s)
        return max(best, pool[1] - at)

    def find(self, handle: int) -> int:
        self._log(("find", handle))
        if handle == ANONYMOUS:
            return FAIL
        return next((a for a, _, h in self.blocks if h == handle), FAIL)

    def deallocate(self, address: int) -> int:
        """0 when ``address`` was a block and is free again, non-zero otherwise."""
        self._log(("deallocate", address))
        for b in self.blocks:
            if b[0] == address:
                self.blocks.remove(b)
                return 0
        return 1
