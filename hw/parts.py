"""The Intel NICs romlab knows: PCI IDs, names, what its driver needs, where flash and NVM are.

One table serves both users of a part: the user-space driver (``drivers.intel``) reads a
part's driver flags, and the in-system programmers (``nicintel_spi``, ``nicintel_eeprom``)
read its family's register and flash facts. A part's family is the generation it belongs
to; everything about the flash and NVM is the same across a family:

* ``base``: where EECD/EEC, EERD and FLA are (BAR0+0 for 8254x/8257x/82580,
  +0x10000 for 82599, +0x12000 for I210/I211);
* ``eerd``: the EERD layout, (done bit, address shift): 8254x uses DONE in
  bit 4 and the address from bit 8; 82571 and later DONE in bit 1 and the
  address from bit 2 (the data is in bits 31:16 on both);
* ``flash``: how the option-ROM flash is reached: ``fla`` (FLA bit-banging,
  flashrom's nicintel_spi), or None when romlab cannot reach it in-system;
* ``rom_start``: where the ROM lives on that flash (0 except I210: 0x2000,
  after the two 4 KiB NVM banks);
* ``nvm_write``: how NVM words are written: ``i210`` (EEWR into the shadow RAM,
  then FLUPD commits it to flash), ``spi-eeprom`` (82580: EEC bit-banging of the
  SPI EEPROM), or None (read-only in romlab);
* ``fwe``: whether EECD.FWE gates flash writes (not on I210/I211).

Device IDs and names come from pci.ids, flashrom's nicintel_spi/nicintel_eeprom tables,
Linux's e1000/e1000e/igb/igbvf/ixgbe ID lists and QEMU's emulated models (82540EM 0x100e,
82544GC 0x100c, 82545EM 0x100f, 82574L 0x10d3, 82576 0x10c9 with its virtual function 0x10ca);
the name in brackets is Linux's driver.
"""
from __future__ import annotations

from dataclasses import dataclass

INTEL = 0x8086

# Driver flags: what romlab's user-space driver does differently per part.
F_EERD_SHIFT_2 = 1 << 0  # EERD address at bit 2, done at bit 1 (8257x and later; the family's eerd says so too)
F_ITR = 1 << 1  # program the interrupt throttle register
F_IAME = 1 << 2  # CTRL_EXT: interrupt-acknowledge auto-mask is there to clear
F_AUTONEG = 1 << 3  # reset drops the link until the PHY renegotiates: restart it through MDIC
F_RFCTL = 1 << 4  # receive filter control survives a reset: clear EXTEN so legacy descriptors are used
F_DRIVEN = 1 << 5  # romlab's driver runs this part (it has been brought up on it)
F_ADVANCED = 1 << 6  # advanced descriptors (igb): the rings run drivers.descriptors.Advanced
F_QUEUE_ENABLE = 1 << 7  # per-queue RXDCTL/TXDCTL.ENABLE, polled; SRRCTL gives buffer size and descriptor type
F_VF = 1 << 8  # an SR-IOV virtual function: its own register map and a mailbox to its PF (drivers.intelvf)


@dataclass(frozen=True)
class Family:
    """A generation of Intel NICs: where its NVM and flash registers are and how they behave."""

    key: str
    name: str
    base: int
    eerd: tuple[int, int]          # (done bit, address shift)
    flash: str | None
    rom_start: int = 0
    nvm_write: str | None = None
    fwe: bool = True               # EECD.FWE gates flash writes (not on I210)
    nvm_words: int = 64            # words `romlab nvm` reads by default
    note: str = ""


@dataclass(frozen=True)
class Part:
    """One PCI ID: its name, its family and the driver flags (``F_*``)."""

    vendor: int
    device: int
    name: str
    family: Family
    flags: int = 0

    @property
    def driven(self) -> bool:
        return bool(self.flags & F_DRIVEN)


I8254X = Family("8254x", "Intel 8254x (PCI/PCI-X gigabit)", base=0, eerd=(4, 8), flash="fla")
I8257X = Family("8257x", "Intel 8257x/82583 (PCIe gigabit, e1000e)", base=0, eerd=(1, 2), flash="fla")
I82599 = Family("82599", "Intel 82599 (10 gigabit)", base=0x10000, eerd=(1, 2), flash="fla")
I210 = Family("i210", "Intel I210", base=0x12000, eerd=(1, 2), flash="fla", rom_start=0x2000, nvm_write="i210",
              fwe=False, note="the flash's first 8 KiB hold the NVM; the ROM starts at 0x2000")
I211 = Family("i211", "Intel I211", base=0x12000, eerd=(1, 2), flash=None, fwe=False,
              note="the I211 has no external flash (its NVM is one-time-programmable iNVM), so no option "
                   "ROM to write; a BIOS can carry the boot code instead")
I82580 = Family("82580", "Intel 82580", base=0, eerd=(1, 2), flash=None, nvm_write="spi-eeprom",
                note="romlab reaches the 82580's NVM EEPROM (romlab nvm), not its option-ROM flash: clip a "
                     "ch341a or serprog programmer on the flash chip")

I82576 = Family("82576", "Intel 82576 (igb, SR-IOV)", base=0, eerd=(1, 2), flash=None,
                note="flashrom's nicintel_spi does not list the 82576, so romlab claims no in-system flash "
                     "access for it; clip a ch341a or serprog programmer on the flash chip")
# A virtual function has no NVM and no flash of its own (they are its PF's); its own family keeps the
# PF's facts from being claimed for it. Not in FAMILIES: nothing is reached through a VF's flash.
I82576_VF = Family("82576vf", "Intel 82576 virtual function", base=0, eerd=(1, 2), flash=None,
                   note="a virtual function has no NVM or flash of its own; they belong to its PF")

FAMILIES: tuple[Family, ...] = (I8254X, I8257X, I82599, I210, I211, I82580, I82576)

# 82574L: ITR, IAME, autonegotiation restart and RFCTL, as iPXE's intel.c and Linux's e1000e set it up.
_82574 = F_ITR | F_IAME | F_AUTONEG | F_RFCTL
# 82576: advanced descriptors and per-queue enables, as Linux igb sets it up (iPXE's intel.c runs it
# with legacy descriptors); its MAC reset drops the link until the PHY renegotiates (QEMU's igb too).
_82576 = F_ADVANCED | F_QUEUE_ENABLE | F_AUTONEG

_TABLE: tuple[tuple[Family, int, str, int], ...] = (
    (I8254X, 0x1008, "82544EI copper (e1000)", 0),
    (I8254X, 0x1009, "82544EI fiber (e1000)", 0),
    (I8254X, 0x100C, "82544GC copper (e1000)", 0),
    (I8254X, 0x100D, "82544GC LOM (e1000)", 0),
    (I8254X, 0x100E, "82540EM (e1000)", F_DRIVEN),
    (I8254X, 0x100F, "82545EM (e1000)", F_DRIVEN),
    (I8254X, 0x1010, "82546EB copper (e1000)", 0),
    (I8254X, 0x1011, "82545EM fiber (e1000)", 0),
    (I8254X, 0x1012, "82546EB fiber (e1000)", 0),
    (I8254X, 0x1013, "82541EI (e1000)", 0),
    (I8254X, 0x1015, "82540EM LOM (e1000)", 0),
    (I8254X, 0x1016, "82540EP mobile (e1000)", 0),
    (I8254X, 0x1017, "82540EP (e1000)", 0),
    (I8254X, 0x1018, "82541EI (e1000)", 0),
    (I8254X, 0x1019, "82547EI (e1000)", 0),
    (I8254X, 0x101A, "82547EI mobile (e1000)", 0),
    (I8254X, 0x101D, "82546EB (e1000)", 0),
    (I8254X, 0x101E, "82540EP mobile (e1000)", 0),
    (I8254X, 0x1026, "82545GM (e1000)", 0),
    (I8254X, 0x1027, "82545GM (e1000)", 0),
    (I8254X, 0x1028, "82545GM (e1000)", 0),
    (I8254X, 0x1075, "82547GI (e1000)", 0),
    (I8254X, 0x1076, "82541GI (e1000)", 0),
    (I8254X, 0x1077, "82541GI (e1000)", 0),
    (I8254X, 0x1078, "82541ER (e1000)", 0),
    (I8254X, 0x1079, "82546GB (e1000)", 0),
    (I8254X, 0x107A, "82546GB (e1000)", 0),
    (I8254X, 0x107B, "82546GB (e1000)", 0),
    (I8254X, 0x107C, "82541PI (e1000)", 0),
    (I8254X, 0x108A, "82546GB (e1000)", 0),
    (I8254X, 0x1099, "82546GB copper (e1000)", 0),
    (I8254X, 0x10B5, "82546GB copper (e1000)", 0),
    (I8257X, 0x105E, "82571EB copper (e1000e)", 0),
    (I8257X, 0x105F, "82571EB (e1000e)", 0),
    (I8257X, 0x1060, "82571EB (e1000e)", 0),
    (I8257X, 0x107D, "82572EI copper (e1000e)", 0),
    (I8257X, 0x107E, "82572EI fiber (e1000e)", 0),
    (I8257X, 0x107F, "82572EI (e1000e)", 0),
    (I8257X, 0x108B, "82573V (e1000e)", 0),
    (I8257X, 0x108C, "82573E (e1000e)", 0),
    (I8257X, 0x109A, "82573L (e1000e)", 0),
    (I8257X, 0x10A4, "82571EB (e1000e)", 0),
    (I8257X, 0x10A5, "82571EB fiber (e1000e)", 0),
    (I8257X, 0x10B9, "82572EI copper (e1000e)", 0),
    (I8257X, 0x10BC, "82571EB copper (e1000e)", 0),
    (I8257X, 0x10D3, "82574L (e1000e)", F_DRIVEN | _82574),
    (I8257X, 0x10D5, "82571PT quad port (e1000e)", 0),
    (I8257X, 0x10D9, "82571EB dual port mezzanine (e1000e)", 0),
    (I8257X, 0x10DA, "82571EB quad port mezzanine (e1000e)", 0),
    (I8257X, 0x10F6, "82574L (e1000e)", 0),
    (I8257X, 0x150C, "82583V (e1000e)", 0),
    (I82599, 0x10D8, "82599EB unprogrammed (ixgbe)", 0),
    (I82599, 0x10F7, "82599 KX4 backplane (ixgbe)", 0),
    (I82599, 0x10F8, "82599 backplane (ixgbe)", 0),
    (I82599, 0x10F9, "82599 CX4 (ixgbe)", 0),
    (I82599, 0x10FB, "82599ES SFI/SFP+ (ixgbe)", 0),
    (I82599, 0x10FC, "82599 XAUI (ixgbe)", 0),
    (I82599, 0x1517, "82599ES KR (ixgbe)", 0),
    (I82599, 0x151C, "82599 10GBASE-T (ixgbe)", 0),
    (I82599, 0x1529, "82599 with FCoE (ixgbe)", 0),
    (I82599, 0x152A, "82599 backplane with FCoE (ixgbe)", 0),
    (I82599, 0x1557, "82599EN SFP+ (ixgbe)", 0),
    (I210, 0x1531, "I210 unprogrammed (igb)", 0),
    (I210, 0x1533, "I210 copper (igb)", 0),
    (I210, 0x1536, "I210 fiber (igb)", 0),
    (I210, 0x1537, "I210 SerDes (igb)", 0),
    (I210, 0x1538, "I210 SGMII (igb)", 0),
    (I211, 0x1532, "I211 unprogrammed (igb)", 0),
    (I211, 0x1539, "I211 copper (igb)", 0),
    (I82580, 0x1509, "82580 unprogrammed (igb)", 0),
    (I82580, 0x150E, "82580 copper (igb)", 0),
    (I82580, 0x150F, "82580 fiber (igb)", 0),
    (I82580, 0x1510, "82580 SerDes (igb)", 0),
    (I82580, 0x1511, "82580 SGMII (igb)", 0),
    (I82580, 0x1516, "82580 copper dual port (igb)", 0),
    (I82576, 0x10C9, "82576 (igb)", F_DRIVEN | _82576),
    (I82576_VF, 0x10CA, "82576 virtual function (igbvf)", F_DRIVEN | F_VF | F_ADVANCED | F_QUEUE_ENABLE),
)


def _flags(family: Family, flags: int) -> int:
    # The EERD layout is a family fact; the driver's flag for it is derived, never written twice.
    return flags | (F_EERD_SHIFT_2 if family.eerd == (1, 2) else 0)


PARTS: dict[tuple[int, int], Part] = {
    (INTEL, dev): Part(INTEL, dev, name, fam, _flags(fam, flags)) for fam, dev, name, flags in _TABLE}

# The parts romlab's user-space driver runs, by (vendor, device).
DRIVER_PARTS: dict[tuple[int, int], Part] = {key: p for key, p in PARTS.items() if p.driven}


def find_part(vendor: int, device: int) -> Part | None:
    """The part with these IDs, or None if romlab does not know it."""
    return PARTS.get((vendor, device))


def family_of(vendor: int, device: int) -> Family | None:
    part = PARTS.get((vendor, device))
    return part.family if part else None
