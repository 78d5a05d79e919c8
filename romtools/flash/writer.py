"""Writing a flash image with as little erasing as possible, and proving it.

The image is compared with the chip sector by sector (a sector being the
smallest erasable unit). A sector that already holds the target is left alone;
one whose target only clears bits is programmed without an erase; the rest are
erased, with the largest erase command whose block is wholly made of sectors
that need one. Each block is read back after it is written and retried a
bounded number of times; the caller's journal hears about every finished block,
so an interrupted write can resume without erasing those again.

Reads go through ``stable_read``: every piece is read at least twice and only
an answer seen identically two times (three once the link has shown a fault)
is trusted, because a flaky clip returns plausible but wrong bytes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hw.errors import FlashError
from romtools.flash.spinor import SpiNor


class WriteError(FlashError):
    """A write that did not end as planned; ``state`` says how bad that is (exit 2 unchanged, 3 partial)."""

    def __init__(self, message: str, state: str = "unchanged"):
        super().__init__(message, exit_code=2 if state == "unchanged" else 3)
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


class ReadCheck:
    """How many identical reads a piece needs: two on a link that never
    disagreed, three once any disagreement was seen (a flaky link can repeat a
    wrong answer, e.g. two reads that each lost a byte at the same place)."""

    def __init__(self):
        self.flaky = False

    @property
    def need(self) -> int:
        return 3 if self.flaky else 2


def _agreed(nor: SpiNor, addr: int, length: int, reads: list[bytes], check: ReadCheck,
            max_reads: int) -> bytes:
    while True:
        best, count = Counter(reads).most_common(1)[0] if reads else (b"", 0)
        if count >= check.need:
            return best
        if len(reads) >= max_reads:
            raise WriteError("reads of 0x%06x-0x%06x disagree after %d tries; the connection to the "
                             "chip is unreliable (check the clip and wires)"
                             % (addr, addr + length - 1, len(reads)))
        reads.append(nor.read(addr, length))
        if len(set(reads)) > 1:
            check.flaky = True


def stable_read(nor: SpiNor, addr: int, length: int, piece: int = 1024, max_reads: int = 9,
                progress=None, check: ReadCheck | None = None) -> bytes:
    """Read ``length`` bytes of which every piece was read identically two times or more.

    The whole range is read twice in large transfers; where those agree on a
    clean link that is the answer. Otherwise each small piece is read again on
    its own until enough reads agree byte for byte; no per-byte voting, since a
    lost byte shifts everything after it and can make wrong reads agree.
    """
    check = check or getattr(nor, "read_check", None) or ReadCheck()
    nor.read_check = check
    big = 65536
    out = bytearray()
    pos = addr
    while pos < addr + length:
        n = min(big, addr + length - pos)
        a = b = None
        if not check.flaky:
            a = nor.read(pos, n)
            b = nor.read(pos, n)
        if a is not None and a == b:
            out += a
        else:
            check.flaky = True
            for sub in range(0, n, piece):
                m = min(piece, n - sub)
                out += _agreed(nor, pos + sub, m, [], check, max_reads)
        pos += n
        if progress:
            progress(pos - addr)
    return bytes(out)


def plan(nor: SpiNor, current: bytes, target: bytes, only: set[int] | None = None) -> Plan:
    """Steps that turn ``current`` into ``target`` (both the size of the chip)."""
    chip = nor.chip
    if len(current) != chip.size or len(target) != chip.size:
        raise WriteError("image is %d bytes, the chip %d" % (len(target), chip.size))
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


def _check_block(nor: SpiNor, start: int, size: int, target: bytes) -> bool:
    """True if the chip holds the target there: one read, or a second if the first differs."""
    want = target[start:start + size]
    if nor.read(start, size) == want:
        return True
    getattr(nor, "read_check", ReadCheck()).flaky = True
    return nor.read(start, size) == want


def write(nor: SpiNor, current: bytes, target: bytes, on_step=None, retries: int = 4,
          progress=None, only: set[int] | None = None) -> dict:
    """Write ``target`` over ``current``; returns counters. Raises WriteError.

    A block that does not read back right is repaired sector by sector, each
    sector at most ``retries`` more times, from a stable read of what it holds.
    """
    pl = plan(nor, current, target, only)
    done_bytes = 0
    total = sum(s.size for s in pl.steps)
    stats = {"steps": len(pl.steps), "erased": pl.erase_bytes, "programmed": pl.program_bytes,
             "retries": 0, "unchanged_sectors": pl.unchanged_sectors}
    sector = nor.chip.sector_size
    for step in pl.steps:
        run_step(nor, step)
        if not _check_block(nor, step.start, step.size, target):
            for sec in range(step.start, step.start + step.size, sector):
                attempt = 0
                while not _check_block(nor, sec, sector, target):
                    if attempt == retries:
                        raise WriteError("sector 0x%06x-0x%06x still differs after %d repairs"
                                         % (sec, sec + sector - 1, retries), state="partial")
                    attempt += 1
                    stats["retries"] += 1
                    now = stable_read(nor, sec, sector)
                    run_step(nor, plan_block(nor, Step(sec, sector, None), now, target))
        done_bytes += step.size
        if on_step:
            on_step(step)
        if progress:
            progress(done_bytes, total)
    stats["changed"] = bool(pl.steps)
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
