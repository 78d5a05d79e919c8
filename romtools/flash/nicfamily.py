"""Which NICs romlab can reach in-system, and how each family lays out its registers and flash.

An Intel gigabit or 10-gigabit controller exposes its NVM and the SPI flash
holding the option ROM through a handful of registers in BAR0. Where those
registers sit and how their bits read differs by generation; the table below
records, per family, what the in-system programmers need:

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
  SPI EEPROM), or None (read-only in romlab).

Device IDs come from flashrom's nicintel_spi/nicintel_eeprom tables, Linux's
e1000/e1000e/igb/ixgbe ID lists and QEMU's emulated models (82540EM 0x100e,
82544GC 0x100c, 82545EM 0x100f, 82574L 0x10d3).
"""
from __future__ import annotations

from dataclasses import dataclass

from romtools.errors import RomError

INTEL = 0x8086


@dataclass(frozen=True)
class Family:
    key: str
    name: str
    ids: frozenset
    base: int
    eerd: tuple[int, int]          # (done bit, address shift)
    flash: str | None
    rom_start: int = 0
    nvm_write: str | None = None
    fwe: bool = True               # EECD.FWE gates flash writes (not on I210)
    nvm_words: int = 64            # words `romlab nvm` reads by default
    note: str = ""


FAMILIES: tuple[Family, ...] = (
    Family("8254x", "Intel 8254x (PCI/PCI-X gigabit)",
           frozenset({0x1008, 0x1009, 0x100C, 0x100D, 0x100E, 0x100F, 0x1010, 0x1011, 0x1012, 0x1013,
                      0x1015, 0x1016, 0x1017, 0x1018, 0x1019, 0x101A, 0x101D, 0x101E, 0x1026, 0x1027,
                      0x1028, 0x1075, 0x1076, 0x1077, 0x1078, 0x1079, 0x107A, 0x107B, 0x107C, 0x108A,
                      0x1099, 0x10B5}),
           base=0, eerd=(4, 8), flash="fla"),
    Family("8257x", "Intel 8257x/82583 (PCIe gigabit, e1000e)",
           frozenset({0x105E, 0x105F, 0x1060, 0x107D, 0x107E, 0x107F, 0x108B, 0x108C, 0x109A, 0x10A4,
                      0x10A5, 0x10B9, 0x10BC, 0x10D3, 0x10D5, 0x10D9, 0x10DA, 0x10F6, 0x150C}),
           base=0, eerd=(1, 2), flash="fla"),
    Family("82599", "Intel 82599 (10 gigabit)",
           frozenset({0x10D8, 0x10F7, 0x10F8, 0x10F9, 0x10FB, 0x10FC, 0x1517, 0x151C, 0x1529, 0x152A,
                      0x1557}),
           base=0x10000, eerd=(1, 2), flash="fla"),
    Family("i210", "Intel I210",
           frozenset({0x1531, 0x1533, 0x1536, 0x1537, 0x1538}),
           base=0x12000, eerd=(1, 2), flash="fla", rom_start=0x2000, nvm_write="i210", fwe=False,
           note="the flash's first 8 KiB hold the NVM; the ROM starts at 0x2000"),
    Family("i211", "Intel I211",
           frozenset({0x1532, 0x1539}),
           base=0x12000, eerd=(1, 2), flash=None, fwe=False,
           note="the I211 has no external flash (its NVM is one-time-programmable iNVM), so no option "
                "ROM to write; a BIOS can carry the boot code instead"),
    Family("82580", "Intel 82580",
           frozenset({0x1509, 0x150E, 0x150F, 0x1510, 0x1511, 0x1516}),
           base=0, eerd=(1, 2), flash=None, nvm_write="spi-eeprom",
           note="romlab reaches the 82580's NVM EEPROM (romlab nvm), not its option-ROM flash: clip a "
                "ch341a or serprog programmer on the flash chip"),
)

# NICs people try to flash in-system that romlab cannot drive, with what to use instead.
OTHER_VENDORS = {
    0x14E4: "Broadcom: romlab does not drive Broadcom NVRAM in-system. Use Broadcom's own NVRAM tools, "
            "or clip a ch341a or serprog programmer on the flash chip (board powered off)",
    0x10EC: "Realtek: romlab does not drive Realtek boot-ROM flash in-system (flashrom's nicrealtek covers "
            "only the RTL8139 and, untested, RTL8169). Clip a ch341a or serprog programmer on the SPI "
            "flash chip (board powered off)",
    0x15B3: "Mellanox/NVIDIA: the option ROM is part of the adapter firmware image; use mstflint or "
            "mlxfwmanager, not a raw flash write",
    0x1077: "QLogic: the option ROM is part of the adapter's flash image; use the vendor's flash tool",
    0x19A2: "Emulex: the option ROM is part of the adapter firmware; use the vendor's flash tool",
    0x1924: "Solarflare: the boot ROM is managed by the adapter firmware (sfboot/sfupdate); use those",
}


def family_of(vendor: int, device: int) -> Family | None:
    if vendor != INTEL:
        return None
    for fam in FAMILIES:
        if device in fam.ids:
            return fam
    return None


def require_family(vendor: int, device: int, what: str) -> Family:
    fam = family_of(vendor, device)
    if fam is not None:
        return fam
    advice = OTHER_VENDORS.get(vendor)
    ids = "%04x:%04x" % (vendor, device)
    if advice:
        raise RomError(f"{what} {ids}: {advice}")
    raise RomError(f"{what} {ids} is not a NIC romlab can reach in-system (Intel 8254x, 8257x, 82599, "
                   "I210, 82580); clip a ch341a or serprog programmer on its flash chip instead")
