"""Take an EFI option-ROM image apart: the PE/COFF driver it carries, checked with pefile.

The driver's true length is not stored in the ROM (iPXE pads with zeros, EfiRom
with 0xFF), so it is read from the PE itself: the furthest of its headers, its
sections' raw data and its certificate table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hw.errors import FormatError
from romtools import schemas as S
from romtools.walker import Image


@dataclass
class DriverReport:
    machine: int
    subsystem: int
    size: int
    compressed: bool
    signed: bool
    certificates: list[dict] = field(default_factory=list)

    def as_dict(self):
        return {"machine": self.machine, "machine_name": S.EFI_MACHINES.get(self.machine),
                "subsystem": self.subsystem, "size": self.size, "compressed": self.compressed,
                "signed": self.signed, "certificates": self.certificates}


def pe_length(pe: bytes) -> tuple[int, object]:
    """Bytes the PE image really occupies, and its pefile object."""
    import pefile

    try:
        p = pefile.PE(data=pe, fast_load=True)
    except pefile.PEFormatError as exc:
        raise FormatError(f"the EFI image does not hold a valid PE/COFF driver: {exc}") from None
    end = p.OPTIONAL_HEADER.SizeOfHeaders
    for s in p.sections:
        if s.SizeOfRawData:
            end = max(end, s.PointerToRawData + s.SizeOfRawData)
    sec = p.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
    if sec.Size:
        end = max(end, sec.VirtualAddress + sec.Size)  # a file offset, for this directory alone
    if end > len(pe):
        raise FormatError(f"the PE driver says it needs {end} bytes but the image holds {len(pe)}: truncated")
    return end, p


def _certificates(pe: bytes, p) -> list[dict]:
    import pefile

    sec = p.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
    certs, pos, end = [], sec.VirtualAddress, sec.VirtualAddress + sec.Size
    while sec.Size and pos + 8 <= end:
        length = int.from_bytes(pe[pos:pos + 4], "little")
        revision = int.from_bytes(pe[pos + 4:pos + 6], "little")
        ctype = int.from_bytes(pe[pos + 6:pos + 8], "little")
        if length < 8:
            break
        kind = {0x0002: "PKCS#7 (Authenticode)", 0x0EF1: "EFI GUID", 0x0EF0: "EFI PKCS1.5"}.get(ctype, "unknown")
        certs.append({"offset": pos, "length": length, "revision": revision, "type": ctype, "type_name": kind})
        pos += (length + 7) & ~7
    return certs


def efi_driver(data: bytes, img: Image) -> tuple[bytes, DriverReport]:
    """The PE driver of an EFI image (decompressed when compressed), checked against its ROM header."""
    if img.header_kind != "efi":
        raise FormatError(f"image {img.index} is {img.kind}, not an EFI image; --efi-driver needs an EFI image")
    h = img.header
    start = img.offset + h.efi_image_offset
    end = img.offset + img.available
    if not img.offset < start < end:
        raise FormatError(f"image {img.index}: EfiImageHeaderOffset 0x{h.efi_image_offset:x} is outside the image")
    body = bytes(data[start:end])
    compressed = h.compression == 1
    if compressed:
        from romtools.eficompress import decompress

        body = decompress(body)
    elif h.compression > 1:
        raise FormatError(f"image {img.index}: CompressionType {h.compression} is not one romlab knows")
    size, p = pe_length(body)
    pe = body[:size]
    machine, subsystem = p.FILE_HEADER.Machine, p.OPTIONAL_HEADER.Subsystem
    if machine != h.machine:
        raise FormatError(f"image {img.index}: the driver is for machine 0x{machine:04x} but the ROM header says "
                       f"0x{h.machine:04x}")
    if subsystem != h.subsystem:
        raise FormatError(f"image {img.index}: the driver's subsystem is 0x{subsystem:x} but the ROM header says "
                       f"0x{h.subsystem:x}")
    certs = _certificates(pe, p)
    return pe, DriverReport(machine, subsystem, size, compressed, bool(certs), certs)
