"""Fix every checksum an option-ROM image carries, with an explicit policy for the legacy one.

The $PnP header, the UNDI ROM ID and the iPXE header have their own checksum
byte, and iPXE's .efirom layout keeps one at 0x34. The legacy image has none by
specification, so where the adjusting byte goes is the user's call: header byte
6 (iPXE, rom-fixer), the image's last byte (EfiRom), or nowhere. romlab warns
when the byte it would change does not look like padding.
"""
from __future__ import annotations

from hw.errors import FormatError
from romtools import schemas as S
from romtools.walker import ipxe_efirom_layout, walk

POLICIES = ("header", "last", "none")


def _adjust(buf: bytearray, start: int, length: int, byte_at: int) -> bool:
    total = sum(buf[start:start + length]) & 0xFF
    if total:
        buf[byte_at] = (buf[byte_at] - total) & 0xFF
        return True
    return False


def fix_image_checksums(buf: bytearray, policy: str = "header", base: int = 0) -> list[str]:
    """Fix the checksums of the image at ``base`` of ``buf`` in place; return warnings."""
    if policy not in POLICIES:
        raise FormatError(f"--checksum-byte must be one of {', '.join(POLICIES)}")
    w = walk(memoryview(buf)[base:], trailing=False)
    img = w.images[0]
    warnings: list[str] = []

    def own_byte(name: str, at: int) -> None:
        """Refuse a checksum byte of an unsound structure, or one that lies inside another structure."""
        if name in img.unsound:
            raise FormatError(f"image at 0x{base:x}: the {name} is not sound (see 'romlab lint'), so romlab will not "
                              "fix its checksum; repair its pointer first")
        for other, a, b in img.spans:
            if other != name and a <= at < b:
                raise FormatError(f"image at 0x{base:x}: the {name}'s checksum byte at 0x{base + at:x} lies inside the "
                                  f"{other}; fixing it would damage that structure (see 'romlab lint')")

    for ck in img.checksums:
        if ck.name in ("$PnP header", "UNDI ROM ID", "iPXE header") and ck.complete:
            own_byte(ck.name, ck.byte_offset)
    for ck in img.checksums:
        if ck.name in ("$PnP header", "UNDI ROM ID", "iPXE header") and ck.complete:
            _adjust(buf, base + ck.offset, ck.length, base + ck.byte_offset)
    if img.header_kind == "legacy":
        span = img.init_size
        if base + span > len(buf):
            raise FormatError(f"image {img.index}: its size byte says {span} bytes but only {len(buf) - base} "
                           "are present; cannot fix its checksum")
        total = sum(buf[base:base + span]) & 0xFF
        if total and policy == "none":
            warnings.append(f"image at 0x{base:x}: legacy checksum left invalid (sum 0x{total:02x}) as "
                            "--checksum-byte none asks")
        elif total:
            if policy == "last":
                if img.pci and span > img.length:
                    raise FormatError(f"image at 0x{base:x}: its size byte says {span} bytes, more than its PCIR "
                                      f"ImageLength ({img.length}); the last byte is not the image's (see 'romlab "
                                      "lint')")
                own_byte("legacy image's last byte", span - 1)
            at = base + (6 if policy == "header" else span - 1)
            old = buf[at]
            if policy == "header" and img.ipxe is None and old != 0:
                warnings.append(f"image at 0x{base:x}: header byte 6 holds 0x{old:02x} and this is not an iPXE "
                                "ROM, so it may not be padding; check the ROM still runs (or use --checksum-byte "
                                "last)")
            if policy == "last" and old not in (0x00, 0xFF):
                warnings.append(f"image at 0x{base:x}: the last byte (0x{at:x}) holds 0x{old:02x}, which does not "
                                "look like padding")
            _adjust(buf, base, span, at)
    elif img.header_kind == "efi" and ipxe_efirom_layout(img):
        _adjust(buf, base, min(img.length, len(buf) - base), base + 0x34)
    return warnings


def fix_rom_checksums(buf: bytearray, policy: str = "header", images: list[int] | None = None) -> list[str]:
    """Fix the checksums of every image (or the listed ones) of a walked ROM in ``buf``."""
    warnings: list[str] = []
    for img in walk(bytes(buf)).images:
        if images is None or img.index in images:
            if img.pci or img.header_kind == "legacy":
                warnings += fix_image_checksums(buf, policy, img.offset)
    return warnings


__all__ = ["POLICIES", "fix_image_checksums", "fix_rom_checksums", "S"]
