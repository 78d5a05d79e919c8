"""What goes where on a NIC's flash: option-ROM checks, layouts, NVM detection.

On 8254x/8257x/82599 boards the flash holds only the option ROM, at offset 0.
On an I210 the first 8 KiB hold the NVM (two 4 KiB shadow-RAM banks) and the
expansion ROM starts at 0x2000; writing a ROM at 0 there wipes the NVM. So a
layout says which byte range receives the ROM (padded with 0xFF); everything
outside it is kept as read from the chip. An Intel NVM image is recognised by
its checksum: the 16-bit words 0x00-0x3F sum to 0xBABA.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from hw.errors import FlashError, FormatError

NVM_CHECKSUM = 0xBABA
I210_ROM_START = 0x2000


@dataclass
class RomInfo:
    length: int            # bytes covered by the image chain
    vendor: int
    device: int
    images: int

    @property
    def pci_ids(self) -> str:
        return "%04x:%04x" % (self.vendor, self.device)


def check_option_rom(data: bytes, what: str = "ROM") -> RomInfo:
    """The 0x55AA header and PCIR of each image; raises RomlabError if it is not an option ROM."""
    if len(data) < 0x1A or data[0:2] != b"\x55\xaa":
        raise FormatError(f"{what} is not a PCI option ROM (no 55 AA signature at offset 0)")
    pos = 0
    first = None
    count = 0
    while True:
        if data[pos:pos + 2] != b"\x55\xaa":
            raise FormatError(f"{what}: image {count} at 0x{pos:x} has no 55 AA signature")
        if pos + 0x1A > len(data):
            raise FormatError(f"{what}: image {count} at 0x{pos:x} is truncated")
        pcir = pos + struct.unpack_from("<H", data, pos + 0x18)[0]
        if data[pcir:pcir + 4] != b"PCIR" or pcir + 0x18 > len(data):
            raise FormatError(f"{what}: image {count} has no PCIR structure at 0x{pcir:x} (pointer at 0x18)")
        vendor, device = struct.unpack_from("<HH", data, pcir + 4)
        length = struct.unpack_from("<H", data, pcir + 0x10)[0] * 512
        indicator = data[pcir + 0x15]
        if first is None:
            first = (vendor, device)
        if length == 0:
            raise FormatError(f"{what}: image {count} declares a length of 0")
        count += 1
        pos += length
        if indicator & 0x80:
            break
        if pos >= len(data):
            raise FormatError(f"{what}: image {count - 1} is not marked last but nothing follows it")
    if pos > len(data):
        raise FormatError(f"{what} is {len(data)} bytes but its images declare {pos}")
    return RomInfo(length=pos, vendor=first[0], device=first[1], images=count)


@dataclass
class ImageIds:
    """The PCI IDs one image of an option ROM claims."""

    offset: int
    vendor: int
    device: int
    code_type: int
    device_list: tuple[int, ...]   # PCI 3.0 "device list" (PCIR revision 3+), extra device IDs

    def matches(self, vendor: int, device: int) -> bool:
        return self.vendor == vendor and (self.device == device or device in self.device_list)

    @property
    def text(self) -> str:
        extra = "" if not self.device_list else " (+ " + ", ".join("%04x" % d for d in self.device_list) + ")"
        return "%04x:%04x%s" % (self.vendor, self.device, extra)


def image_ids(data: bytes) -> list[ImageIds]:
    """PCI IDs of every image in a ROM that ``check_option_rom`` accepted."""
    out = []
    pos = 0
    while pos + 0x1A <= len(data) and data[pos:pos + 2] == b"\x55\xaa":
        pcir = pos + struct.unpack_from("<H", data, pos + 0x18)[0]
        if data[pcir:pcir + 4] != b"PCIR" or pcir + 0x18 > len(data):
            break
        vendor, device, dlist_ptr = struct.unpack_from("<HHH", data, pcir + 4)
        revision = data[pcir + 0x0C]
        devices = []
        if revision >= 3 and dlist_ptr:
            p = pcir + dlist_ptr
            while p + 2 <= len(data) and len(devices) < 256:
                d = struct.unpack_from("<H", data, p)[0]
                if d == 0:
                    break
                devices.append(d)
                p += 2
        out.append(ImageIds(pos, vendor, device, data[pcir + 0x14], tuple(devices)))
        length = struct.unpack_from("<H", data, pcir + 0x10)[0] * 512
        if data[pcir + 0x15] & 0x80 or not length:
            break
        pos += length
    return out


def check_target_ids(rom: bytes, vendor: int, device: int, what: str = "the ROM") -> list[ImageIds]:
    """Refuse a ROM any image of which is not for this card (firmware skips such an image)."""
    images = image_ids(rom)
    wrong = [im for im in images if not im.matches(vendor, device)]
    if wrong or not images:
        found = ", ".join(f"image {images.index(im)}: {im.text}" for im in (wrong or images))
        raise FlashError(f"{what} is for PCI {found} but the card is {vendor:04x}:{device:04x}; firmware does "
                       "not run a ROM whose PCIR IDs differ from the card's (rebuild it for this card, or "
                       "--force-ids)")
    return images


def nvm_checksum_at(data: bytes, offset: int = 0) -> bool:
    if offset + 0x80 > len(data):
        return False
    words = struct.unpack_from("<64H", data, offset)
    blank = all(w == 0xFFFF for w in words) or all(w == 0 for w in words)
    return not blank and sum(words) & 0xFFFF == NVM_CHECKSUM


@dataclass
class Layout:
    name: str
    start: int
    end: int               # exclusive

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_layout_file(text: str, chip_size: int, source: str) -> Layout:
    """flashrom-style lines ``start:end name`` (hex, end inclusive); the ROM goes in ``rom``."""
    regions = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            span, name = line.split(None, 1)
            a, b = span.split(":")
            start, end = int(a, 16), int(b, 16) + 1
        except ValueError:
            raise FlashError(f"{source}:{n}: expected 'start:end name' in hex, got {line!r}") from None
        if not 0 <= start < end <= chip_size:
            raise FlashError(f"{source}:{n}: region 0x{start:x}-0x{end - 1:x} is outside the "
                           f"0x{chip_size:x}-byte chip")
        regions.append(Layout(name.strip(), start, end))
    if not regions:
        raise FlashError(f"{source}: no regions")
    rom = [r for r in regions if r.name == "rom"]
    if len(rom) == 1:
        return rom[0]
    if len(regions) == 1:
        return regions[0]
    raise FlashError(f"{source}: name exactly one region 'rom' to receive the ROM")


def choose_layout(spec: str | None, current: bytes, force: bool = False) -> Layout:
    """The layout to use; without one, decide only when the chip's contents leave no doubt."""
    size = len(current)
    nvm = nvm_checksum_at(current, 0) or nvm_checksum_at(current, 0x1000)
    if spec == "rom-at-0" or spec is None:
        if nvm and not force:
            raise FlashError("the flash holds an Intel NVM image (word checksum 0xBABA); writing the ROM at 0 "
                           "would wipe it: use --layout i210 or a layout file")
        if spec is None and not nvm:
            if current[:2] == b"\x55\xaa" or current.count(0xFF) == size:
                return Layout("rom-at-0", 0, size)
            raise FlashError("the flash holds neither an option ROM nor blank space at offset 0 and no Intel "
                           "NVM; romlab will not guess where the ROM goes: pass --layout rom-at-0, i210 or FILE")
        return Layout("rom-at-0", 0, size)
    if spec == "i210":
        if size <= I210_ROM_START:
            raise FlashError("the chip is too small for the I210 layout")
        return Layout("i210", I210_ROM_START, size)
    from pathlib import Path

    from romtools.flash.backup import read_file

    try:
        text = read_file(Path(spec), "layout file").decode("utf-8")
    except UnicodeDecodeError:
        raise FlashError(f"layout file {spec} is not text (it is not UTF-8); give a flashrom-style layout file "
                       "with lines like 0x10000:0x1ffff rom") from None
    return parse_layout_file(text, size, spec)


def build_target(current: bytes, layout: Layout, rom: bytes) -> bytes:
    if len(rom) > layout.size:
        raise FlashError(f"the ROM is {len(rom)} bytes but the '{layout.name}' region holds {layout.size} "
                       f"(0x{layout.start:x}-0x{layout.end - 1:x})")
    out = bytearray(current)
    out[layout.start:layout.end] = rom + b"\xff" * (layout.size - len(rom))
    return bytes(out)
