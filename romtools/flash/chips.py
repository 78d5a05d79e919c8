"""SPI NOR parts found on network cards, with the facts a writer needs.

A NIC's option-ROM flash is almost always one of a few small serial NOR parts
(Winbond W25X/W25Q, Macronix MX25L, Atmel AT25DF, SST25VF, Spansion S25FL, ST
M25P). Their IDs, sizes and erase opcodes come from the vendors' datasheets as
collected in flashrom's chip database; anything not listed here is described by
its own SFDP table instead (see ``romtools.flash.sfdp``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

KIB = 1024

# Chip-wide erase opcodes; their "block" is the whole part.
CHIP_ERASE_OPS = (0x60, 0xC7)


@dataclass(frozen=True)
class Chip:
    """One SPI NOR part.

    ``erasers`` maps an erase opcode to the block size it clears (the whole chip
    for 0x60/0xC7). ``write`` is ``"page"`` (0x02 with ``page_size`` pages),
    ``"aai"`` (SST auto-address-increment word program, 0xAD) or ``"byte"``.
    ``wrsr_enable`` is the opcode that must precede WRSR (0x06 WREN, or 0x50
    EWSR on SST parts). ``bp_mask`` holds the block-protect bits of status
    register 1 and ``protect`` how they map to protected space: ``"upper"``
    (BP value selects an upper fraction, all bits set protect everything) or
    ``"global"`` (any bit set protects the whole part, as Atmel's global protect).
    ``power_on_sr`` is the status register a fresh part comes up with.
    """

    name: str
    vendor: str
    jedec: tuple[int, int, int]
    size: int
    erasers: dict[int, int]
    page_size: int = 256
    write: str = "page"
    rems: tuple[int, int] | None = None
    res: int | None = None
    wrsr_enable: int = 0x06
    bp_mask: int = 0x1C
    protect: str = "upper"
    power_on_sr: int = 0x00
    sfdp: bool = False
    flashrom_name: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def jedec_hex(self) -> str:
        return "%02x%02x%02x" % self.jedec

    @property
    def block_erasers(self) -> list[tuple[int, int]]:
        """(size, opcode) for the sub-chip erase commands, smallest first."""
        pairs = {}
        for op, size in self.erasers.items():
            if op in CHIP_ERASE_OPS or size >= self.size:
                continue
            pairs.setdefault(size, op)
        return sorted(pairs.items())

    @property
    def chip_erase_op(self) -> int | None:
        for op in CHIP_ERASE_OPS:
            if op in self.erasers:
                return op
        return None

    @property
    def sector_size(self) -> int:
        """The smallest erasable unit."""
        blocks = self.block_erasers
        return blocks[0][0] if blocks else self.size


def _winbond_x(name, dev, size_kib, rems):
    size = size_kib * KIB
    return Chip(name=name, vendor="Winbond", jedec=(0xEF, 0x30, dev), size=size,
                erasers={0x20: 4 * KIB, 0xD8: 64 * KIB, 0xC7: size},
                rems=(0xEF, rems), res=rems, flashrom_name=name)


def _winbond_q(name, dev, size_kib, rems, flashrom_name):
    size = size_kib * KIB
    return Chip(name=name, vendor="Winbond", jedec=(0xEF, 0x40, dev), size=size,
                erasers={0x20: 4 * KIB, 0x52: 32 * KIB, 0xD8: 64 * KIB, 0x60: size, 0xC7: size},
                rems=(0xEF, rems), res=rems, sfdp=True, flashrom_name=flashrom_name)


CHIPS: tuple[Chip, ...] = (
    _winbond_x("W25X05", 0x10, 64, 0x05),
    _winbond_x("W25X10", 0x11, 128, 0x10),
    _winbond_x("W25X20", 0x12, 256, 0x11),
    _winbond_x("W25X40", 0x13, 512, 0x12),
    _winbond_x("W25X80", 0x14, 1024, 0x13),
    _winbond_q("W25Q80", 0x14, 1024, 0x13, "W25Q80.V"),
    _winbond_q("W25Q16", 0x15, 2048, 0x14, "W25Q16.V"),
    _winbond_q("W25Q32", 0x16, 4096, 0x15, "W25Q32.V"),
    Chip(name="MX25L4005", vendor="Macronix", jedec=(0xC2, 0x20, 0x13), size=512 * KIB,
         erasers={0x20: 4 * KIB, 0x52: 64 * KIB, 0xD8: 64 * KIB, 0x60: 512 * KIB, 0xC7: 512 * KIB},
         rems=(0xC2, 0x12), res=0x12, flashrom_name="MX25L4005(A/C)/MX25L4006E"),
    Chip(name="MX25L8005", vendor="Macronix", jedec=(0xC2, 0x20, 0x14), size=1024 * KIB,
         erasers={0x20: 4 * KIB, 0x52: 64 * KIB, 0xD8: 64 * KIB, 0x60: 1024 * KIB, 0xC7: 1024 * KIB},
         rems=(0xC2, 0x13), res=0x13, flashrom_name="MX25L8005/MX25L8006E/MX25L8008E/MX25V8005"),
    Chip(name="AT25DF041A", vendor="Atmel", jedec=(0x1F, 0x44, 0x01), size=512 * KIB,
         erasers={0x20: 4 * KIB, 0x52: 32 * KIB, 0xD8: 64 * KIB, 0x60: 512 * KIB, 0xC7: 512 * KIB},
         bp_mask=0x3C, protect="global", power_on_sr=0x1C, flashrom_name="AT25DF041A"),
    Chip(name="SST25VF040B", vendor="SST", jedec=(0xBF, 0x25, 0x8D), size=512 * KIB,
         erasers={0x20: 4 * KIB, 0x52: 32 * KIB, 0xD8: 64 * KIB, 0x60: 512 * KIB, 0xC7: 512 * KIB},
         page_size=1, write="aai", rems=(0xBF, 0x8D), res=0x8D, wrsr_enable=0x50,
         bp_mask=0x3C, power_on_sr=0x1C, flashrom_name="SST25VF040B"),
    Chip(name="S25FL004A", vendor="Spansion", jedec=(0x01, 0x02, 0x12), size=512 * KIB,
         erasers={0xD8: 64 * KIB, 0xC7: 512 * KIB}, flashrom_name="S25FL004A"),
    Chip(name="M25P40", vendor="ST", jedec=(0x20, 0x20, 0x13), size=512 * KIB,
         erasers={0xD8: 64 * KIB, 0xC7: 512 * KIB}, res=0x12, flashrom_name="M25P40"),
)

# The part romlab's emulator pretends to be when only a size is known: the
# Winbond W25X family covers the small sizes NIC boards use (the W25X40 is the
# usual 512 KiB part on 82574L boards), W25Q above 1 MiB.
_DEFAULT_FOR_SIZE = {
    64 * KIB: "W25X05",
    128 * KIB: "W25X10",
    256 * KIB: "W25X20",
    512 * KIB: "W25X40",
    1024 * KIB: "W25X80",
    2048 * KIB: "W25Q16",
    4096 * KIB: "W25Q32",
}


def by_name(name: str) -> Chip | None:
    key = name.strip().upper()
    for chip in CHIPS:
        if chip.name.upper() == key or chip.flashrom_name.upper() == key:
            return chip
    return None


def by_jedec(mfr: int, dev_hi: int, dev_lo: int) -> Chip | None:
    for chip in CHIPS:
        if chip.jedec == (mfr, dev_hi, dev_lo):
            return chip
    return None


def by_rems(mfr: int, dev: int) -> Chip | None:
    for chip in CHIPS:
        if chip.rems == (mfr, dev):
            return chip
    return None


def default_for_size(size: int) -> Chip | None:
    name = _DEFAULT_FOR_SIZE.get(size)
    return by_name(name) if name else None


def default_sizes() -> list[int]:
    return sorted(_DEFAULT_FOR_SIZE)
