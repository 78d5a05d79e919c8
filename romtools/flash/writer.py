"""Writing a flash image with as little erasing as possible, and proving it.

The image is compared with the chip sector by sector (a sector being the
smallest erasable unit). A sector that already holds the target is left alone;
one whose target only clears bits is programmed without an erase; the rest are
erased, with the largest erase command whose block is wholly made of sectors
that need one. Each block is read back after it is written and retried a
bounded number of times; the caller's journal hears about every finished block,
so an interrupted write can resume without erasing those again.

Reads go through ``stable_read``: every piece is read at least twice and only
an answer seen twice (or a per-byte majority of three or more reads) is
trusted, because a flaky clip returns plausible but wrong bytes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from romtools.errors import RomError
from romtools.flash.spinor import SpiNor


class FlashError(RomError):
    """The chip does not hold what it should; ``state`` says how bad that is."""

    def __init__(self, message: str, state: str = "unchanged"):
        super().__init__(message, exit_code=1 if state == "unchanged" else 3)
        self.state = state


@dataclass
class Step:
    start: int
    size: int
    erase_op: int | None
    pieces: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def program_bytes(self) -> int:
        return sum(len(d) for _, d in self.pieces)


@dataclass
class Plan:
    steps: list[Step]
    unchanged_sectors: int
    sector: int

    @property
    def erase_bytes(self) -> int:
        return sum(s.size for s in self.steps if s.erase_op is not None)

    @property
    def program_bytes(self) -> int:
        return sum(s.program_bytes for s in self.steps)

    @property
    def changes(self) -> bool:
        return bool(self.steps)


def _majority(reads: list[bytes]) -> bytes | None:
    """Per-byte majority of several reads, or None if any byte has none."""
    n = len(reads)
    out = bytearray(reads[0])
    for i in range(len(out)):
        col = [r[i] for r in reads]
        if col.count(col[0]) * 2 > n:
            out[i] = col[0]
            continue
        value, count = Counter(col).most_common(1)[0]
        if count * 2 <= n:
            return None
        out[i] = value
    return bytes(out)


def stable_read(nor: SpiNor, addr: int, length: int, piece: int = 4096, max_reads: int = 7,
                progress=None, first: bytes | None = None) -> bytes:
    """Read ``length`` bytes whose every piece was read identically at least twice."""
    big = 65536
    out = bytearray()
    pos = addr
    while pos < addr + length:
        n = min(big, addr + length - pos)
        a = first[pos - addr:pos - addr + n] if first is not None else nor.read(pos, n)
        b = nor.read(pos, n)
        if a == b:
            out += a
        else:
            for sub in range(0, n, piece):
                m = min(piece, n - sub)
                reads = [a[sub:sub + m], b[sub:sub + m]]
                while True:
                    if len(reads) == 2 and reads[0] == reads[1]:
                        out += reads[0]
                        break
                    if len(reads) > 2:
                        seen = Counter(reads).most_common(1)[0]
                        if seen[1] >= 2:
                            out += seen[0]
                            break
                        if len(reads) % 2 == 1:
                            vote = _majority(reads)
                            if vote is not None:
                                out += vote
                                break
                    if len(reads) >= max_reads:
                        raise FlashError("reads of 0x%06x-0x%06x disagree after %d tries; the connection "
                                         "to the chip is unreliable (check the clip and wires)"
                                         % (pos + sub, pos + sub + m - 1, len(reads)))
                    reads.append(nor.read(pos + sub, m))
        pos += n
        if progress:
            progress(pos - addr)
    return bytes(out)


def plan(nor: SpiNor, current: bytes, target: bytes, only: set[int] | None = None) -> Plan:
    """Steps that turn ``current`` into ``target`` (both the size of the chip)."""
    chip = nor.chip
    if len(current) != chip.size or len(target) != chip.size:
        raise RomError("image is %d bytes, the chip %d" % (len(target), chip.size))
    sector = chip.sector_size
    nsec = chip.size // sector
    need = []          # per sector: None same, "prog", "erase"
    for i in range(nsec):
        a, b = current[i * sector:(i + 1) * sector], target[i * sector:(i + 1) * sector]
        if only is not None and i * sector not in only:
            need.append(None)
        elif a == b:
            need.append(None)
        else:
            ai, bi = int.from_bytes(a, "big"), int.from_bytes(b, "big")
            need.append("prog" if ai & bi == bi else "erase")
    unchanged = need.count(None)
    erasers = chip.block_erasers       # (size, op) smallest first
    steps: list[Step] = []
    i = 0
    while i < nsec:
        kind = need[i]
        if kind is None:
            i += 1
            continue
        start = i * sector
        if kind == "prog":
            steps.append(Step(start, sector, None, _pieces(nor, start, current, target, erased=False)))
            i += 1
            continue
        size, op = erasers[0] if erasers else (chip.size, chip.chip_erase_op)
        for bsize, bop in reversed(erasers):
            per = bsize // sector
            if start % bsize == 0 and i + per <= nsec and all(k == "erase" for k in need[i:i + per]):
                size, op = bsize, bop
                break
        steps.append(Step(start, size, op, _pieces(nor, start, None, target, erased=True, size=size)))
        i += size // sector
    return Plan(steps, unchanged, sector)


def _pieces(nor, start, current, target, erased, size=None):
    size = size or nor.chip.sector_size
    out = []
    for addr, data in nor.pages(start, target[start:start + size]):
        if erased:
            if data.count(0xFF) == len(data):
                continue
        elif current[addr:addr + len(data)] == data:
            continue
        out.append((addr, data))
    return out


def run_step(nor: SpiNor, step: Step) -> None:
    if step.erase_op is not None:
        nor.erase(step.erase_op, step.start, step.size)
    for addr, data in step.pieces:
        nor.program(addr, data)


def write(nor: SpiNor, current: bytes, target: bytes, on_step=None, retries: int = 3,
          progress=None, only: set[int] | None = None) -> dict:
    """Write ``target`` over ``current``; returns counters. Raises FlashError."""
    pl = plan(nor, current, target, only)
    done_bytes = 0
    total = sum(s.size for s in pl.steps)
    stats = {"steps": len(pl.steps), "erased": pl.erase_bytes, "programmed": pl.program_bytes,
             "retries": 0, "unchanged_sectors": pl.unchanged_sectors}
    changed = False
    for step in pl.steps:
        for attempt in range(retries + 1):
            changed = True
            run_step(nor, step)
            want = target[step.start:step.start + step.size]
            got = nor.read(step.start, step.size)
            if got != want:
                got = nor.read(step.start, step.size)
            if got == want:
                break
            if attempt == retries:
                raise FlashError("block 0x%06x-0x%06x still differs after %d attempts"
                                 % (step.start, step.start + step.size - 1, retries + 1),
                                 state="partial")
            stats["retries"] += 1
            # Re-plan just this block from what the chip now holds.
            now = stable_read(nor, step.start, step.size)
            sub = plan_block(nor, step, now, target)
            step = sub
        done_bytes += step.size
        if on_step:
            on_step(step)
        if progress:
            progress(done_bytes, total)
    stats["changed"] = changed
    return stats


def plan_block(nor: SpiNor, step: Step, now: bytes, target: bytes) -> Step:
    """A step that repairs one block given its present contents."""
    want = target[step.start:step.start + step.size]
    wi, ni = int.from_bytes(want, "big"), int.from_bytes(now, "big")
    if ni & wi == wi:
        pieces = []
        for addr, data in nor.pages(step.start, want):
            off = addr - step.start
            if now[off:off + len(data)] != data:
                pieces.append((addr, data))
        return Step(step.start, step.size, None, pieces)
    op = step.erase_op
    if op is None:
        op = next(o for s, o in nor.chip.block_erasers if s == step.size) if nor.chip.block_erasers \
            else nor.chip.chip_erase_op
    full = Step(step.start, step.size, op, [])
    full.pieces = [(a, d) for a, d in nor.pages(step.start, want) if d.count(0xFF) != len(d)]
    return full


def verify(nor: SpiNor, target: bytes, progress=None) -> list[tuple[int, int]]:
    """Ranges (start, end) of sectors where the chip differs from ``target``."""
    sector = nor.chip.sector_size
    bad = []
    got = nor.read(0, len(target))
    for start in range(0, len(target), sector):
        if got[start:start + sector] != target[start:start + sector]:
            again = stable_read(nor, start, sector)
            if again != target[start:start + sector]:
                bad.append((start, start + sector))
        if progress:
            progress(start + sector)
    return bad
