"""Every structure of a PCI expansion ROM, declared once with construct.

Each declaration parses, builds and sizes its structure, so the walker, lint,
patcher and builder all read and write bytes through the same definition and
never pack offsets by hand. Layouts follow EDK2's Pci22.h/Pci30.h, iPXE's
romprefix.S/efirom and the PnP BIOS specification (see docs/rom-formats.md).
"""
from __future__ import annotations

from construct import (
    Bytes,
    Const,
    Int8ul,
    Int16ul,
    Int24ul,
    Int32ul,
    PaddedString,
    Struct,
)

ROM_SIGNATURE = b"\x55\xaa"
EFI_SIGNATURE = 0x0EF1
BLOCK = 512

# --- image headers -------------------------------------------------------------------------

#: Legacy x86 (code type 0) header, with the pointers iPXE and the PXE spec keep in the
#: "reserved" area: iPXE header (0x10), IBM BOFM (0x14), UNDI ROM ID (0x16), $PnP (0x1A).
LegacyRomHeader = Struct(
    "signature" / Const(ROM_SIGNATURE),
    "init_size" / Int8ul,  # in 512-byte blocks
    "init_entry" / Bytes(3),  # usually a jump: E9 rel16 or EB rel8
    "checksum_adjust" / Int8ul,  # 0x06: reserved; iPXE and rom-fixer use it as the checksum byte
    "reserved_07" / Bytes(9),
    "ipxe_header_ptr" / Int16ul,  # 0x10
    "reserved_12" / Int16ul,
    "bofm_ptr" / Int16ul,  # 0x14
    "undi_rom_id_ptr" / Int16ul,  # 0x16
    "pcir_ptr" / Int16ul,  # 0x18
    "pnp_ptr" / Int16ul,  # 0x1A
)

#: EFI (code type 3) image header, EFI_PCI_EXPANSION_ROM_HEADER.
EfiRomHeader = Struct(
    "signature" / Const(ROM_SIGNATURE),
    "init_size" / Int16ul,  # in 512-byte blocks; 16 bits, unlike the legacy header
    "efi_signature" / Int32ul,  # 0x00000EF1
    "subsystem" / Int16ul,
    "machine" / Int16ul,
    "compression" / Int16ul,
    "reserved" / Bytes(8),
    "efi_image_offset" / Int16ul,  # 0x16, from the image start
    "pcir_ptr" / Int16ul,  # 0x18
)

#: The part every expansion ROM image shares: signature and the PCIR pointer at 0x18.
GenericRomHeader = Struct(
    "signature" / Const(ROM_SIGNATURE),
    "init_size" / Int8ul,  # by convention the size in 512-byte blocks, whatever the code type
    "reserved" / Bytes(0x15),
    "pcir_ptr" / Int16ul,
)

# --- PCI data structure, by revision -------------------------------------------------------

#: PCI 2.x data structure (revision 0..2, Length 0x18). Offset 0x08 is reserved here;
#: only revision 3 gives it a meaning, so a revision-0 PCIR never shows a device list.
PcirRev0 = Struct(
    "signature" / Const(b"PCIR"),
    "vendor_id" / Int16ul,
    "device_id" / Int16ul,
    "reserved0" / Int16ul,
    "length" / Int16ul,
    "revision" / Int8ul,
    "class_code" / Int24ul,  # prog-if, subclass, base class: read as base<<16|sub<<8|if
    "image_length" / Int16ul,  # in 512-byte blocks
    "code_revision" / Int16ul,
    "code_type" / Int8ul,
    "indicator" / Int8ul,
    "reserved1" / Int16ul,
)

#: PCI 3.0 data structure (revision 3, Length 0x1C).
PcirRev3 = Struct(
    "signature" / Const(b"PCIR"),
    "vendor_id" / Int16ul,
    "device_id" / Int16ul,
    "device_list_offset" / Int16ul,  # from the PCIR start; 0 when there is no list
    "length" / Int16ul,
    "revision" / Int8ul,
    "class_code" / Int24ul,
    "image_length" / Int16ul,
    "code_revision" / Int16ul,
    "code_type" / Int8ul,
    "indicator" / Int8ul,
    "max_runtime_length" / Int16ul,  # in 512-byte blocks
    "config_utility_offset" / Int16ul,
    "dmtf_clp_offset" / Int16ul,
)

PCIR_REVISION_OFFSET = 0x0C
PCIR_INDICATOR_OFFSET = 0x15
PCIR_LENGTH_BY_REVISION = {0: 0x18, 1: 0x18, 2: 0x18, 3: 0x1C}
LAST_IMAGE = 0x80


def pcir_schema(revision: int) -> Struct:
    """The PCIR declaration that applies to ``revision`` (PCI 3.0 layout from revision 3 on)."""
    return PcirRev3 if revision >= 3 else PcirRev0


#: One entry of the PCI 3.0 device list; the list ends with a 0 entry.
DeviceListEntry = Int16ul

# --- other headers -------------------------------------------------------------------------

#: PnP BIOS expansion header ($PnP), checksum over length*16 bytes.
PnpHeader = Struct(
    "signature" / Const(b"$PnP"),
    "revision" / Int8ul,
    "length" / Int8ul,  # in 16-byte units
    "next_header" / Int16ul,
    "reserved_08" / Int8ul,
    "checksum" / Int8ul,
    "device_id" / Int32ul,
    "manufacturer_ptr" / Int16ul,
    "product_ptr" / Int16ul,
    "base_type" / Int8ul,  # stored base, sub, interface (the reverse of the PCIR class order)
    "sub_type" / Int8ul,
    "interface_type" / Int8ul,
    "device_indicator" / Int8ul,
    "bcv" / Int16ul,
    "bdv" / Int16ul,
    "bev" / Int16ul,
    "reserved_1c" / Int16ul,
    "static_resource_vector" / Int16ul,
)

#: PXE UNDI ROM ID structure; BusType ("PCIR" or "ISAR") follows the sizes.
UndiRomId = Struct(
    "signature" / Const(b"UNDI"),
    "struct_length" / Int8ul,
    "checksum" / Int8ul,
    "struct_revision" / Int8ul,
    "undi_revision" / Int8ul,  # version bytes are stored revision, minor, major
    "undi_minor" / Int8ul,
    "undi_major" / Int8ul,
    "loader_offset" / Int16ul,
    "stack_size" / Int16ul,
    "data_size" / Int16ul,
    "code_size" / Int16ul,
    "bus_type" / PaddedString(4, "ascii"),
)

#: iPXE's own header, found through word 0x10 of the legacy header.
IpxeHeader = Struct(
    "signature" / Const(b"iPXE"),
    "length" / Int8ul,
    "checksum" / Int8ul,
    "shrunk_length" / Int8ul,  # in 512-byte blocks
    "reserved" / Int8ul,
    "build_id" / Int32ul,
)

# --- the start of a PE/COFF image, enough to name the driver without pefile -----------------

DosHeaderStart = Struct(
    "magic" / Const(b"MZ"),
    "unused" / Bytes(0x3A),
    "e_lfanew" / Int32ul,
)

PeHeaderStart = Struct(
    "signature" / Const(b"PE\0\0"),
    "machine" / Int16ul,
    "number_of_sections" / Int16ul,
    "time_date_stamp" / Int32ul,
    "symbol_table_ptr" / Int32ul,
    "number_of_symbols" / Int32ul,
    "optional_header_size" / Int16ul,
    "characteristics" / Int16ul,
    "optional_magic" / Int16ul,
    "linker_version" / Int16ul,
    "size_of_code" / Int32ul,
    "size_of_initialized_data" / Int32ul,
    "size_of_uninitialized_data" / Int32ul,
    "entry_point_rva" / Int32ul,
)
PE_SUBSYSTEM_OFFSET = 0x5C  # from the PE signature, the same for PE32 and PE32+

# --- names ---------------------------------------------------------------------------------

CODE_TYPES = {
    0x00: "x86 PC-AT",
    0x01: "Open Firmware",
    0x02: "HP PA-RISC",
    0x03: "EFI",
    # Seen in the wild, outside the PCI specification:
    0xE0: "vendor-specific (seen in NVIDIA ROMs)",
    0xFF: "vendor-specific (iPXE .mrom payload image)",
}
SPEC_CODE_TYPES = frozenset({0, 1, 2, 3})

EFI_SUBSYSTEMS = {
    0x0A: "EFI application",
    0x0B: "EFI boot service driver",
    0x0C: "EFI runtime driver",
}

EFI_MACHINES = {
    0x014C: "IA32",
    0x0200: "IA64",
    0x0EBC: "EBC",
    0x8664: "X64",
    0x01C2: "ARM",
    0xAA64: "AARCH64",
    0x5032: "RISCV32",
    0x5064: "RISCV64",
    0x5128: "RISCV128",
    0x6232: "LOONGARCH32",
    0x6264: "LOONGARCH64",
}

EFI_COMPRESSION = {0: "uncompressed", 1: "EFI compressed"}


def code_type_name(code_type: int) -> str:
    return CODE_TYPES.get(code_type, "unknown")


def split_class(class_code: int) -> tuple[int, int, int]:
    """(base class, subclass, programming interface) of a 24-bit class code."""
    return (class_code >> 16) & 0xFF, (class_code >> 8) & 0xFF, class_code & 0xFF
