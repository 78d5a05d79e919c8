"""What an edit changed, field by field: the old and new value of every header field, list and
checksum byte that differs between an image before and after.

Every edit verb (patch, extract, split, combine) computes its output first and then asks this
module what differs, so the user sees the same "image 0 PCIR device: 100e -> 10d3" lines whatever
verb made them, and a verb can tell a no-op (no change at all) from a real edit before it writes.
The comparison reads both images through the walker, so it names fields, not bytes; values keep
the JSON conventions (IDs and class codes as lowercase hex strings, lengths as integers, the
last-image flag as a boolean).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from romtools.walker import Image, walk


@dataclass
class Change:
    image: int
    field: str
    old: Any
    new: Any
    offset: int | None = None  # image-relative byte, for checksum bytes

    def as_dict(self) -> dict[str, Any]:
        d = {"image": self.image, "field": self.field, "old": self.old, "new": self.new}
        if self.offset is not None:
            d["offset"] = self.offset
        return d

    def text(self) -> str:
        where = f" at 0x{self.offset:x}" if self.offset is not None else ""
        return f"image {self.image} {self.field}{where}: {_show(self.old)} -> {_show(self.new)}"


def _show(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "set" if v else "clear"
    if isinstance(v, list):
        return " ".join(v) if v else "(empty)"
    if isinstance(v, str) and v.startswith("'"):
        return v
    return str(v)


# PCIR fields as the user knows them, with how their values are spelled.
def _h4(v):
    return f"{v:04x}"


_PCIR_FIELDS = (
    ("vendor_id", "PCIR vendor", _h4),
    ("device_id", "PCIR device", _h4),
    ("device_list_offset", "PCIR device list offset", _h4),
    ("length", "PCIR length", int),
    ("revision", "PCIR revision", int),
    ("class_code", "PCIR class", lambda v: f"{v:06x}"),
    ("image_length", "PCIR image length (blocks)", int),
    ("code_revision", "PCIR code revision", _h4),
    ("code_type", "PCIR code type", lambda v: f"{v:02x}"),
    ("max_runtime_length", "PCIR max runtime length (blocks)", int),
    ("config_utility_offset", "PCIR config utility offset", _h4),
    ("dmtf_clp_offset", "PCIR DMTF CLP offset", _h4),
)


def image_changes(old_data: bytes, old: Image, new_data: bytes, new: Image, label: int) -> list[Change]:
    """The fields that differ between image ``old`` of ``old_data`` and image ``new`` of ``new_data``,
    reported as image ``label``."""
    out: list[Change] = []

    def add(name, a, b, offset=None):
        if a != b:
            out.append(Change(label, name, a, b, offset))

    if old.header_kind == new.header_kind == "legacy":
        add("size byte (blocks)", old.header.init_size, new.header.init_size)
    elif old.header_kind == new.header_kind == "efi":
        add("initialization size (blocks)", old.header.init_size, new.header.init_size)
    if old.pcir is not None and new.pcir is not None:
        for key, name, spell in _PCIR_FIELDS:
            a, b = old.pcir.get(key), new.pcir.get(key)
            if a is not None and b is not None:
                add(name, spell(a), spell(b))
        add("PCIR last-image flag", old.last, new.last)
        other = (old.pcir.indicator & 0x7F, new.pcir.indicator & 0x7F)
        add("PCIR indicator (other bits)", f"{other[0]:02x}", f"{other[1]:02x}")
        if old.pcir_offset - old.offset != new.pcir_offset - new.offset:
            add("PCIR offset", f"{old.pcir_offset - old.offset:04x}", f"{new.pcir_offset - new.offset:04x}")
    if old.device_list is not None or new.device_list is not None:
        add("device list", [f"{d:04x}" for d in old.device_list or []],
            [f"{d:04x}" for d in new.device_list or []])
    for which in ("manufacturer", "product"):
        a, b = old.pnp_strings.get(which), new.pnp_strings.get(which)
        if a != b:
            add(f"$PnP {which}", repr(a) if a is not None else None, repr(b) if b is not None else None)
    out += _checksum_bytes(old_data, old, new_data, new, label)
    return out


def _checksum_bytes(old_data, old: Image, new_data, new: Image, label: int) -> list[Change]:
    """Checksum bytes that changed: each structure's own byte, and the legacy image's (header byte 6
    or the image's last byte, whichever an edit adjusted)."""
    out = []
    seen = set()
    olds = {c.name: c for c in old.checksums}
    for c in new.checksums:
        places = []
        if c.byte_offset is not None and c.name in olds and olds[c.name].byte_offset is not None:
            places.append((olds[c.name].byte_offset - old.offset, c.byte_offset - new.offset))
        elif c.name == "legacy image" and c.name in olds:
            places += [(6, 6)]
            last_old, last_new = old.init_size - 1, new.init_size - 1
            if last_old == last_new:
                places.append((last_old, last_new))
            elif new.offset + last_new < len(new_data) and new_data[new.offset + last_new] \
                    and not _inside_field(new, new.offset + last_new):
                # The image grew: its last byte is in the appended (zero) block, so the checksum is all
                # that can have made it non-zero.
                out.append(Change(label, "legacy image checksum byte", None,
                                  f"{new_data[new.offset + last_new]:02x}", last_new))
        for a, b in places:
            if b in seen or old.offset + a >= len(old_data) or new.offset + b >= len(new_data):
                continue
            before, after = old_data[old.offset + a], new_data[new.offset + b]
            if before != after and a == b and not _inside_field(new, new.offset + b):
                seen.add(b)
                out.append(Change(label, f"{c.name} checksum byte", f"{before:02x}", f"{after:02x}", b))
    return out


def _inside_field(img: Image, at: int) -> bool:
    """A byte that belongs to a structure other than a checksum's own (a moved device list sitting
    in the image's last byte is reported as the list, not as a checksum)."""
    return any(a <= at < b for name, a, b in img.spans
               if name in ("PCIR", "device list") or name.startswith("$PnP ") and name.endswith("string"))


def rom_changes(old_data: bytes, new_data: bytes) -> list[Change]:
    """Field changes between two ROMs whose images correspond one to one, in order."""
    old_imgs, new_imgs = walk(old_data).images, walk(new_data).images
    out: list[Change] = []
    for i, (a, b) in enumerate(zip(old_imgs, new_imgs)):
        out += image_changes(old_data, a, new_data, b, i)
    return out


def image_pairs_changes(pairs: list[tuple[bytes, bytes]], start: int = 0) -> list[Change]:
    """Field changes of images cut out of their ROM: each pair is (image as it was, image as
    written); ``start`` is the first pair's image number in the output."""
    out: list[Change] = []
    for n, (before, after) in enumerate(pairs):
        a = walk(before, trailing=False).images[0]
        b = walk(after, trailing=False).images[0]
        out += image_changes(before, a, after, b, start + n)
    return out
