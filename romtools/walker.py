"""Walk a PCI expansion ROM image by image, decode every structure, and explain the stop.

The walk follows each image's PCIR ImageLength (the way PciBusDxe, Linux and
iPXE's tools do), never a 512-byte signature scan. It always ends with a
``Stop`` that says why: the last-image flag, or a problem (truncation with the
expected and actual sizes, a zero ImageLength, a bad PCIR pointer, a missing
last-image flag). A ROM without a PCIR (QEMU's linuxboot, kvmvapic, SeaBIOS's
ISA VGA BIOS) is a non-PCI option ROM, decoded as far as its header allows.

Structural trouble found on the way is reported as ``Finding``s; the rule set
that judges a readable ROM lives in ``romtools.lint``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from construct import ConstructError

from hw.errors import FormatError, NotAnOptionRom
from romtools import schemas as S
from romtools.rules import RULES

_u16 = struct.Struct("<H").unpack_from

HEADER_SIZE = 0x1C
MAX_STRING = 80


@dataclass
class Finding:
    """One observation about a ROM: a rule ID, how bad it is, where, and one sentence."""

    rule: str
    severity: str  # "error", "warning" or "info"
    offset: int  # absolute byte offset in the input
    message: str
    image: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "offset": self.offset,
                "image": self.image, "message": self.message}


@dataclass
class Checksum:
    """A byte sum that must be 0 mod 256 over ``length`` bytes from ``offset``."""

    name: str
    offset: int
    length: int
    value: int  # the sum mod 256; 0 means valid
    complete: bool = True  # False when the covered span runs past the end of the input
    byte_offset: int | None = None  # the structure's own checksum byte, where it has one

    @property
    def ok(self) -> bool:
        return self.complete and self.value == 0

    @property
    def status(self) -> str:
        if not self.complete:
            return "unchecked (truncated)"
        return "valid" if self.value == 0 else f"INVALID (sum 0x{self.value:02x})"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "offset": self.offset, "length": self.length, "sum": self.value,
                "complete": self.complete, "valid": self.ok, "byte_offset": self.byte_offset}


@dataclass
class Entry:
    """An entry point: where its pointer or jump is stored and where the code starts."""

    name: str  # init, bcv, bdv, bev, undi-loader, pe-entry
    pointer_offset: int  # absolute offset of the jump or pointer
    target: int | None  # absolute offset of the code (None for an RVA into a compressed PE)
    via: str  # "jmp near", "jmp short", "call near", "code", "pointer", "rva"
    raw: int | None = None  # the stored value (rel16/rel8/pointer/RVA)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pointer_offset": self.pointer_offset, "target": self.target,
                "via": self.via, "raw": self.raw}


@dataclass
class Image:
    index: int
    offset: int
    pci: bool  # False for a non-PCI option ROM (no PCIR)
    length: int  # declared length in bytes (PCIR ImageLength, or byte 2 for non-PCI ROMs)
    available: int  # bytes of it present in the input
    header_kind: str  # "legacy", "efi" or "generic"
    header: Any
    pcir_offset: int | None = None
    pcir: Any = None
    device_list: list[int] | None = None
    device_list_offset: int | None = None
    pnp_offset: int | None = None
    pnp: Any = None
    pnp_strings: dict[str, str | None] = field(default_factory=dict)
    undi_offset: int | None = None
    undi: Any = None
    ipxe_offset: int | None = None
    ipxe: Any = None
    pe: dict[str, Any] | None = None
    checksums: list[Checksum] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    # (name, start, end) of every structure found in the image, absolute offsets, end exclusive.
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    # Names of the structures the walker found unsound (out of the image, overlapping, unterminated):
    # ``patch`` refuses to edit them.
    unsound: set[str] = field(default_factory=set)

    @property
    def code_type(self) -> int | None:
        return self.pcir.code_type if self.pcir is not None else None

    @property
    def last(self) -> bool:
        return bool(self.pcir is not None and self.pcir.indicator & S.LAST_IMAGE)

    @property
    def init_size(self) -> int:
        """Initialization size in bytes, from the image header."""
        return self.header.init_size * S.BLOCK

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def kind(self) -> str:
        if not self.pci:
            return "non-PCI option ROM"
        return S.code_type_name(self.pcir.code_type)


@dataclass
class Stop:
    reason: str  # last-image, non-pci, truncated, no-last-image, zero-length, bad-pcir, no-signature
    offset: int
    message: str
    problem: bool


@dataclass
class Walk:
    size: int
    images: list[Image]
    stop: Stop
    findings: list[Finding]
    trailing_offset: int | None = None  # first byte after the last image, if any bytes follow
    trailing_length: int = 0
    trailing_fill: int | None = None  # the fill byte when every trailing byte is the same

    @property
    def end(self) -> int:
        """One past the last byte that belongs to a walked image."""
        return max((min(i.end, self.size) for i in self.images), default=0)

    @property
    def clean(self) -> bool:
        return not self.stop.problem


def _sum(data, start: int, length: int) -> tuple[int, bool]:
    end = start + length
    complete = end <= len(data)
    return sum(bytes(data[start:min(end, len(data))])) & 0xFF, complete


def _cstring(data, start: int, limit: int) -> str | None:
    if not 0 <= start < limit:
        return None
    chunk = bytes(data[start:min(limit, start + MAX_STRING)])
    end = chunk.find(b"\0")
    if end < 0:
        return None
    return chunk[:end].decode("ascii", "replace")


def _parse(schema, data, start: int, limit: int):
    """Parse ``schema`` at ``start`` if it fits before ``limit``; None when it does not match."""
    size = schema.sizeof()
    if start < 0 or start + size > min(limit, len(data)):
        return None
    try:
        return schema.parse(bytes(data[start:start + size]))
    except ConstructError:
        return None


def _init_entry(data, img_off: int) -> Entry:
    op = data[img_off + 3]
    if op in (0xE9, 0xE8):
        rel = _u16(data, img_off + 4)[0]
        target = (6 + rel) & 0xFFFF
        via = "jmp near" if op == 0xE9 else "call near"
    elif op == 0xEB:
        rel = data[img_off + 4]
        target = (5 + (rel - 256 if rel & 0x80 else rel)) & 0xFFFF
        via = "jmp short"
    else:
        rel, target, via = None, 3, "code"
    return Entry("init", img_off + 3, img_off + target, via, rel)


def _executable_message(data) -> str:
    """Why a file that starts with 'MZ' is refused, and what to do: an EFI driver is wrapped by efi-rom.

    A PE/COFF file is what people most often mistake for an option ROM (ipxe.efi, a vendor's
    .efi driver); its subsystem says whether an option ROM can carry it at all."""
    wrap = "`romlab efi-rom FILE --vendor VVVV --device DDDD -o out.rom`"
    dos = _parse(S.DosHeaderStart, data, 0, len(data))
    pe_sig = dos.e_lfanew if dos is not None else None
    subsystem = None
    if pe_sig is not None and _parse(S.PeHeaderStart, data, pe_sig, len(data)) is not None \
            and pe_sig + S.PE_SUBSYSTEM_OFFSET + 2 <= len(data):
        subsystem = _u16(data, pe_sig + S.PE_SUBSYSTEM_OFFSET)[0]
    if subsystem in (0x0B, 0x0C):
        return (f"not an option ROM but an EFI driver (PE/COFF, subsystem 0x{subsystem:02x}); to put it in an "
                f"option ROM, wrap it: {wrap}")
    if subsystem is not None:
        kind = ("an EFI application" if subsystem == 0x0A
                else f"a PE/COFF executable with subsystem 0x{subsystem:02x}")
        return (f"not an option ROM but {kind}; an option ROM carries only an EFI driver (subsystem 0x0b or "
                f"0x0c): build the program as a driver (iPXE: `make bin-x86_64-efi/ipxe.efidrv`) and wrap it: {wrap}")
    return ("not an option ROM: it starts with 4d 5a ('MZ'), as DOS and PE/COFF executables do, but holds no "
            f"PE header; an EFI driver is put in an option ROM with: {wrap}")


class _Walker:
    def __init__(self, data, trailing: bool = True):
        self.trailing = trailing
        self.data = data
        self.n = len(data)
        self.findings: list[Finding] = []
        self.images: list[Image] = []

    def note(self, rule, offset, message, image=None):
        """A finding of ``rule``, at the severity the rule table gives it."""
        self.findings.append(Finding(rule, RULES[rule].severity, offset, message, image))

    # -- the walk ------------------------------------------------------------------------

    def run(self) -> Walk:
        data, n = self.data, self.n
        if n == 0:
            raise NotAnOptionRom("the input is empty, not an option ROM")
        if bytes(data[:2]) == b"MZ":
            raise NotAnOptionRom(_executable_message(data))
        if bytes(data[:2]) != S.ROM_SIGNATURE:
            raise NotAnOptionRom(
                f"not an option ROM: no 55 AA signature at offset 0 (found {bytes(data[:2]).hex(' ') or 'nothing'}); "
                "use `romlab scan` to look for ROMs inside a larger image")
        if n < HEADER_SIZE:
            raise NotAnOptionRom(f"not an option ROM: only {n} bytes, too short for a {HEADER_SIZE}-byte ROM header")
        off = 0
        while True:
            index = len(self.images)
            if off + HEADER_SIZE > n:
                return self.finish(Stop("truncated", off, f"image {index} at 0x{off:x} would start with a "
                                        f"{HEADER_SIZE}-byte header but only {n - off} bytes remain", True))
            sig = bytes(data[off:off + 2])
            if sig != S.ROM_SIGNATURE:
                return self.finish(Stop("no-signature", off, f"image {index} should start at 0x{off:x} (after "
                                        f"image {index - 1}, which is not marked last) but has no 55 AA signature "
                                        f"there (found {sig.hex(' ')})", True))
            pcir_ptr = _u16(data, off + 0x18)[0]
            pcir_abs = off + pcir_ptr
            has_pcir = pcir_ptr != 0 and pcir_abs + 0x18 <= n and bytes(data[pcir_abs:pcir_abs + 4]) == b"PCIR"
            if not has_pcir:
                if index == 0:
                    return self.non_pci(pcir_ptr)
                why = self.pcir_problem(off, pcir_ptr)
                self.note("pcir-pointer", off + 0x18, f"image {index}: {why}", index)
                return self.finish(Stop("bad-pcir", off + 0x18, f"image {index} at 0x{off:x}: {why}", True))
            if pcir_ptr % 4:
                self.note("pcir-misaligned", off + 0x18,
                          f"image {index}: PCIR pointer 0x{pcir_ptr:04x} is not DWORD-aligned; "
                          "UEFI PciBusDxe rejects such an image", index)
            revision = data[pcir_abs + S.PCIR_REVISION_OFFSET]
            schema = S.pcir_schema(revision)
            pcir = _parse(schema, data, pcir_abs, n)
            if pcir is None:
                return self.finish(Stop("truncated", pcir_abs, f"image {index}: the PCIR at 0x{pcir_abs:x} needs "
                                        f"{schema.sizeof()} bytes but only {n - pcir_abs} remain", True))
            length = pcir.image_length * S.BLOCK
            image = self.decode_image(index, off, pcir_abs, pcir, length)
            self.images.append(image)
            if length == 0:
                self.note("image-length-zero", pcir_abs + 0x10,
                          f"image {index}: PCIR ImageLength is 0, so no walker can find the next image", index)
                return self.finish(Stop("zero-length", pcir_abs + 0x10, f"image {index} at 0x{off:x} has "
                                        "ImageLength 0; the walk cannot go on", True))
            if off + length > n:
                self.note("truncated", n, f"image {index} at 0x{off:x} is truncated: its PCIR says "
                          f"{length} bytes, {n - off} are present ({off + length - n} missing)", index)
                return self.finish(Stop("truncated", n, f"image {index} at 0x{off:x} is truncated: PCIR "
                                        f"ImageLength says {length} bytes (to 0x{off + length:x}), the input ends "
                                        f"after {n - off} (at 0x{n:x})", True))
            off += length
            if image.last:
                return self.finish(Stop("last-image", off, f"image {index} carries the last-image flag", False))
            if off >= n:
                self.note("last-flag-missing", pcir_abs + S.PCIR_INDICATOR_OFFSET,
                          f"no image is marked last: image {index}'s Indicator is 0x{pcir.indicator:02x} "
                          "and the input ends after it", index)
                return self.finish(Stop("no-last-image", off, f"the input ends after image {index} at 0x{off:x} "
                                        "but no image carries the last-image flag", True))

    def pcir_problem(self, off: int, ptr: int) -> str:
        abs_ = off + ptr
        if ptr == 0:
            return "PCIR pointer (word 0x18) is 0"
        if abs_ + 4 > self.n:
            return f"PCIR pointer 0x{ptr:04x} points past the end of the input (0x{abs_:x} >= 0x{self.n:x})"
        if ptr % 4:
            return f"PCIR pointer 0x{ptr:04x} is misaligned and finds no 'PCIR' signature"
        return f"PCIR pointer 0x{ptr:04x} finds {bytes(self.data[abs_:abs_ + 4])!r}, not 'PCIR'"

    def non_pci(self, pcir_ptr: int) -> Walk:
        data, n = self.data, self.n
        header = S.LegacyRomHeader.parse(bytes(data[:HEADER_SIZE]))
        length = header.init_size * S.BLOCK
        image = Image(0, 0, False, length, min(length, n), "legacy", header)
        if pcir_ptr == 0:
            self.note("non-pci-rom", 0x18, "word 0x18 is 0: a non-PCI (ISA-style) option ROM with no "
                      "PCI data structure", 0)
        else:
            odd = " (odd," if pcir_ptr % 2 else " ("
            where = "past the end" if pcir_ptr + 4 > n else "at bytes that are not 'PCIR'"
            self.note("non-pci-pcir-word", 0x18, f"word 0x18 holds 0x{pcir_ptr:04x}{odd} {where}), not a "
                      "PCI data structure pointer: decoded as a non-PCI option ROM", 0)
        self.decode_legacy(image, limit=min(max(length, HEADER_SIZE), n))
        self.images.append(image)
        if length == 0:
            self.note("init-size-zero", 2, "header byte 2 (size) is 0", 0)
            return self.finish(Stop("non-pci", HEADER_SIZE, "non-PCI option ROM with size 0", False))
        if length > n:
            self.note("truncated", n, f"the ROM header says {length} bytes, {n} are present", 0)
            return self.finish(Stop("truncated", n, f"non-PCI option ROM is truncated: header byte 2 says "
                                    f"{length} bytes, the input has {n}", True))
        return self.finish(Stop("non-pci", length, "non-PCI option ROM: a single image sized by header byte 2",
                                False))

    def finish(self, stop: Stop) -> Walk:
        walk = Walk(self.n, self.images, stop, self.findings)
        if self.trailing and stop.reason in ("last-image", "non-pci") and stop.offset < self.n:
            start = stop.offset
            rest = bytes(self.data[start:])
            walk.trailing_offset, walk.trailing_length = start, len(rest)
            fill = rest[0]
            if rest.count(fill) == len(rest):
                walk.trailing_fill = fill
            if fill in (0x00, 0xFF) and walk.trailing_fill is not None:
                self.note("trailing-fill", start, f"{len(rest)} bytes of 0x{fill:02X} fill follow the "
                          "last image")
            elif rest[:2] == S.ROM_SIGNATURE and len(rest) >= HEADER_SIZE and self._pcir_at(start):
                last = self.images[-1]
                self.note("last-flag-early",
                          (last.pcir_offset + S.PCIR_INDICATOR_OFFSET) if last.pcir_offset is not None else 0,
                          f"image {last.index} carries the last-image flag but another image follows at "
                          f"0x{start:x}", last.index)
            else:
                self.note("trailing-bytes", start, f"{len(rest)} bytes that belong to no image follow "
                          "the last image")
        return walk

    def _pcir_at(self, off: int) -> bool:
        ptr = _u16(self.data, off + 0x18)[0]
        return ptr != 0 and bytes(self.data[off + ptr:off + ptr + 4]) == b"PCIR"

    # -- images ----------------------------------------------------------------------------

    def decode_image(self, index, off, pcir_abs, pcir, length) -> Image:
        data, n = self.data, self.n
        limit = min(off + length, n) if length else n
        code_type = pcir.code_type
        if code_type == 3 and HEADER_SIZE <= limit - off:
            header, kind = S.EfiRomHeader.parse(bytes(data[off:off + HEADER_SIZE])), "efi"
        elif code_type == 0:
            header, kind = S.LegacyRomHeader.parse(bytes(data[off:off + HEADER_SIZE])), "legacy"
        else:
            header, kind = S.GenericRomHeader.parse(bytes(data[off:off + HEADER_SIZE])), "generic"
        image = Image(index, off, True, length, max(0, min(length, n - off)), kind, header,
                      pcir_offset=pcir_abs, pcir=pcir)
        if pcir.revision >= 3 and pcir.device_list_offset:
            self.decode_device_list(image, limit)
        if kind == "legacy":
            self.decode_legacy(image, limit)
        elif kind == "efi":
            self.decode_efi(image, limit)
        self.check_spans(image)
        return image

    def check_spans(self, image: Image) -> None:
        """Every structure inside its image and apart from the others, or a finding that says not.

        A pointer into the next image, past the end, or onto another structure is what turns an
        edit of one field into damage elsewhere, so each is an error here and ``patch`` refuses to
        edit a structure named in ``image.unsound``.
        """
        off, end = image.offset, image.offset + image.length
        spans = [("ROM header", off, off + (HEADER_SIZE if image.header_kind == "legacy" else 0x1A))]
        if image.pcir is not None:
            spans.append(("PCIR", image.pcir_offset, image.pcir_offset + S.pcir_schema(image.pcir.revision).sizeof()))
        if image.device_list_offset is not None and "device list" not in image.unsound:
            start = image.device_list_offset
            spans.append(("device list", start, start + 2 * (len(image.device_list or []) + 1)))
        if image.pnp is not None:
            spans.append(("$PnP header", image.pnp_offset, image.pnp_offset + max(image.pnp.length * 16, 0x20)))
            for which in ("manufacturer", "product"):
                ptr = getattr(image.pnp, f"{which}_ptr")
                text = image.pnp_strings.get(which)
                name = f"$PnP {which} string"
                if ptr and text is None:
                    image.unsound.add(name)
                    self.note("pnp-string-bounds", image.pnp_offset + (0x0E if which == "manufacturer" else 0x10),
                              f"image {image.index}: the {name} pointer 0x{ptr:04x} points outside the image or "
                              f"to a string with no NUL before the image ends", image.index)
                elif ptr:
                    spans.append((name, off + ptr, off + ptr + len(text) + 1))
        if image.undi is not None:
            spans.append(("UNDI ROM ID", image.undi_offset, image.undi_offset + max(image.undi.struct_length, 0x10)))
        if image.ipxe is not None:
            spans.append(("iPXE header", image.ipxe_offset, image.ipxe_offset + max(image.ipxe.length, 8)))
        image.spans = spans
        if image.length == 0:
            return
        for name, a, b in spans:
            if a < off or b > end:
                image.unsound.add(name)
                self.note("structure-bounds", a, f"image {image.index}: the {name} at 0x{a:x}-0x{b - 1:x} "
                          f"reaches outside its image (0x{off:x}-0x{end - 1:x})", image.index)
        for i, (n1, a1, b1) in enumerate(spans):
            for n2, a2, b2 in spans[i + 1:]:
                if a1 < b2 and a2 < b1:
                    image.unsound.update((n1, n2))
                    self.note("structure-overlap", max(a1, a2), f"image {image.index}: the {n1} "
                              f"(0x{a1:x}-0x{b1 - 1:x}) and the {n2} (0x{a2:x}-0x{b2 - 1:x}) overlap", image.index)

    def decode_device_list(self, image: Image, limit: int) -> None:
        start = image.pcir_offset + image.pcir.device_list_offset
        image.device_list_offset = start
        ids: list[int] = []
        pos = start
        while pos + 2 <= limit:
            value = _u16(self.data, pos)[0]
            if value == 0:
                image.device_list = ids
                return
            ids.append(value)
            pos += 2
        image.device_list = ids
        image.unsound.add("device list")
        if start >= limit:
            self.note("device-list-bounds", image.pcir_offset + 0x08,
                      f"image {image.index}: the device list offset 0x{image.pcir.device_list_offset:04x} points "
                      f"outside the image (0x{start:x})", image.index)
        else:
            self.note("device-list-unterminated", start, f"image {image.index}: the PCI 3.0 device list "
                      f"at 0x{start:x} has no 0 terminator before the image ends", image.index)

    def decode_legacy(self, image: Image, limit: int) -> None:
        data, off, h = self.data, image.offset, image.header
        value, complete = _sum(data, off, h.init_size * S.BLOCK)
        image.checksums.append(Checksum("legacy image", off, h.init_size * S.BLOCK, value, complete))
        image.entries.append(_init_entry(data, off))
        pnp_abs = off + h.pnp_ptr
        if h.pnp_ptr:
            pnp = _parse(S.PnpHeader, data, pnp_abs, limit)
            if pnp is None:
                # A non-PCI ROM's header words are often code or a deliberately spoiled "$PoO".
                self.note("pnp-signature" if image.pci else "non-pci-pnp-signature", off + 0x1A, f"image {image.index}: word 0x1A points to "
                          f"0x{h.pnp_ptr:04x} but no $PnP header is there", image.index)
            else:
                image.pnp_offset, image.pnp = pnp_abs, pnp
                value, complete = _sum(data, pnp_abs, pnp.length * 16)
                image.checksums.append(Checksum("$PnP header", pnp_abs, pnp.length * 16, value, complete,
                                                pnp_abs + 9))
                image.pnp_strings = {
                    "manufacturer": _cstring(data, off + pnp.manufacturer_ptr, limit) if pnp.manufacturer_ptr else None,
                    "product": _cstring(data, off + pnp.product_ptr, limit) if pnp.product_ptr else None,
                }
                for name in ("bcv", "bdv", "bev"):
                    ptr = getattr(pnp, name)
                    if ptr:
                        image.entries.append(Entry(name, pnp_abs + {"bcv": 0x16, "bdv": 0x18, "bev": 0x1A}[name],
                                                   off + ptr, "pointer", ptr))
        if h.undi_rom_id_ptr:
            undi_abs = off + h.undi_rom_id_ptr
            undi = _parse(S.UndiRomId, data, undi_abs, limit)
            if undi is not None:
                image.undi_offset, image.undi = undi_abs, undi
                value, complete = _sum(data, undi_abs, undi.struct_length)
                image.checksums.append(Checksum("UNDI ROM ID", undi_abs, undi.struct_length, value, complete,
                                                undi_abs + 5))
                if undi.loader_offset:
                    image.entries.append(Entry("undi-loader", undi_abs + 0x0A, off + undi.loader_offset, "pointer",
                                               undi.loader_offset))
        if h.ipxe_header_ptr:
            ipxe_abs = off + h.ipxe_header_ptr
            ipxe = _parse(S.IpxeHeader, data, ipxe_abs, limit)
            if ipxe is not None:
                image.ipxe_offset, image.ipxe = ipxe_abs, ipxe
                value, complete = _sum(data, ipxe_abs, ipxe.length)
                image.checksums.append(Checksum("iPXE header", ipxe_abs, ipxe.length, value, complete,
                                                ipxe_abs + 5))

    def decode_efi(self, image: Image, limit: int) -> None:
        data, off, h = self.data, image.offset, image.header
        if ipxe_efirom_layout(image):
            value, complete = _sum(data, off, image.length)
            image.checksums.append(Checksum("iPXE .efirom image", off, image.length, value, complete, off + 0x34))
        if h.compression != 0 or h.efi_signature != S.EFI_SIGNATURE:
            return
        pe_abs = off + h.efi_image_offset
        dos = _parse(S.DosHeaderStart, data, pe_abs, limit)
        if dos is None:
            return
        pe_sig = pe_abs + dos.e_lfanew
        pe = _parse(S.PeHeaderStart, data, pe_sig, limit)
        if pe is None or pe_sig + S.PE_SUBSYSTEM_OFFSET + 2 > limit:
            return
        subsystem = _u16(data, pe_sig + S.PE_SUBSYSTEM_OFFSET)[0]
        image.pe = {"offset": pe_abs, "machine": pe.machine, "subsystem": subsystem,
                    "entry_rva": pe.entry_point_rva, "sections": pe.number_of_sections}
        image.entries.append(Entry("pe-entry", pe_sig + 0x28, None, "rva", pe.entry_point_rva))


def ipxe_efirom_layout(image: Image) -> bool:
    """iPXE's efirom layout: PCIR rev 0 right after the header, PE at 0x38, checksum byte at 0x34."""
    return (image.header_kind == "efi" and image.pcir is not None and image.pcir.revision < 3
            and image.pcir_offset - image.offset == 0x1C and image.header.efi_image_offset == 0x38)


def walk(data, trailing: bool = True) -> Walk:
    """Walk ``data`` (bytes or memoryview) as an expansion ROM starting at offset 0.

    Raises ``NotAnOptionRom`` when offset 0 holds no option ROM at all; every other
    problem is reported in the returned ``Walk``. ``trailing=False`` leaves the bytes
    after the last image unexamined (for ROMs found inside larger images).
    """
    return _Walker(data, trailing).run()


# The largest expansion ROM a PCI device can decode (a 16 MiB ROM BAR): no ROM verb reads more.
MAX_ROM = 16 << 20
_CHUNK = 1 << 20


def read_input(path, limit: int = MAX_ROM, what: str = "ROM file", bound: str | None = None) -> bytes:
    """Read a ROM file, at most ``limit`` bytes; every OS-level failure becomes a one-line ``RomlabError``.

    Endless inputs (``/dev/zero``, a pipe from a runaway program) and huge ones are cut at
    ``limit``, read in chunks so a character device (an MTD flash) works as well as a file; a FIFO
    is refused before it is opened, since opening one with no writer blocks for ever.
    """
    import os
    import stat

    p = os.fspath(path)
    try:
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            raise FormatError(f"{p} is a directory, not a {what}")
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            raise FormatError(f"{p} is a {'FIFO' if stat.S_ISFIFO(st.st_mode) else 'socket'}; give a regular file "
                           "or a device (save the stream to a file first)")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise FormatError(_too_big(p, limit, what, bound))
        with open(p, "rb") as f:
            return read_stream(f, p, limit, what, bound)
    except FileNotFoundError:
        raise FormatError(f"{p}: no such file") from None
    except PermissionError:
        raise FormatError(f"{p}: permission denied (check the file's mode, or run as a user who may read it)") from None
    except IsADirectoryError:
        raise FormatError(f"{p} is a directory, not a {what}") from None
    except OSError as exc:
        raise FormatError(f"{p}: cannot read: {exc.strerror or exc}") from None


def read_stream(f, name: str, limit: int = MAX_ROM, what: str = "ROM file", bound: str | None = None) -> bytes:
    """Read an open binary stream to its end, refusing it once it passes ``limit`` bytes.

    Reads in chunks and stops one byte past the bound, so an endless stream costs at most
    ``limit`` bytes of memory; ``name`` is how the error names the input."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = f.read(min(_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    if len(buf) > limit:
        raise FormatError(_too_big(name, limit, what, bound))
    return bytes(buf)


def _too_big(path: str, limit: int, what: str, bound: str | None) -> str:
    size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
    return (f"{path} is larger than {size}, " + (bound or "the largest ROM a PCI device can hold (a 16 MiB ROM BAR)")
            + f"; it is not a {what} romlab will read")
