"""What an edit changed, field by field: the old and new value of every header field, list and
checksum byte that differs between an image before and after.

Every edit verb (patch, extract, split, combine) computes its output first and then asks this
module what differs, so the user sees the same "image 0 PCIR device: 100e -> 10d3" lines whatever
verb made them, and a verb can tell a no-op (no change at all) from a real edit before it writes.
The comparison reads both images through the walker, so it names fields, not bytes; values keep
the JSON conventions (IDs and class codes as lowercase hex strings, lengths as integers, the
last-image flag as a boolean). ``image_fields`` is the one table of those fields, names and
spellings: ``romtools.diff`` compares two inputs with it too, and ``show`` is how both print a value.
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
        return f"image {self.image} {self.field}{where}: {show(self.old)} -> {show(self.new)}"


def show(v: Any) -> str:
    """How a field's value reads in a line of text, for edits and ``diff`` alike."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "set" if v else "clear"
    if isinstance(v, list):
        return " ".join(v) if v else "(empty)"
    if isinstance(v, str) and v.startswith("'"):
        return v
    return str(v)


# Fields as the user knows them, with how their values are spelled: IDs, class codes, pointers
# and bytes as lowercase hex strings, lengths and sizes as integers, the last-image flag as a
# boolean, ROM strings quoted.
def _h2(v):
    return f"{v:02x}"


def _h4(v):
    return f"{v:04x}"


def _h8(v):
    return f"{v:08x}"


def _quoted(v):
    return repr(v) if v is not None else None


_PCIR_FIELDS = (
    ("vendor_id", "PCIR vendor", _h4),
    ("device_id", "PCIR device", _h4),
    ("device_list_offset", "PCIR device list offset", _h4),
    ("length", "PCIR length", int),
    ("revision", "PCIR revision", int),
    ("class_code", "PCIR class", lambda v: f"{v:06x}"),
    ("image_length", "PCIR image length (blocks)", int),
    ("code_revision", "PCIR code revision", _h4),
    ("code_type", "PCIR code type", _h2),
    ("max_runtime_length", "PCIR max runtime length (blocks)", int),
    ("config_utility_offset", "PCIR config utility offset", _h4),
    ("dmtf_clp_offset", "PCIR DMTF CLP offset", _h4),
)
_LEGACY_FIELDS = (
    ("init_size", "size byte (blocks)", int),
    ("ipxe_header_ptr", "iPXE header offset", _h4),
    ("bofm_ptr", "BOFM offset", _h4),
    ("undi_rom_id_ptr", "UNDI ROM ID offset", _h4),
    ("pnp_ptr", "$PnP offset", _h4),
)
_EFI_FIELDS = (
    ("init_size", "initialization size (blocks)", int),
    ("efi_signature", "EFI signature", _h8),
    ("subsystem", "EFI subsystem", _h4),
    ("machine", "EFI machine", _h4),
    ("compression", "EFI compression", _h4),
    ("efi_image_offset", "EFI image offset", _h4),
)
_PNP_FIELDS = (
    ("device_indicator", "$PnP device indicator", _h2),
    ("bcv", "$PnP BCV", _h4),
    ("bdv", "$PnP BDV", _h4),
    ("bev", "$PnP BEV", _h4),
)
_UNDI_FIELDS = (
    ("loader_offset", "UNDI loader offset", _h4),
    ("stack_size", "UNDI stack size", int),
    ("data_size", "UNDI data size", int),
    ("code_size", "UNDI code size", int),
    ("bus_type", "UNDI bus type", str),
)
#: Fields whose change an edit reports another way (``_checksum_bytes``, with the byte's offset),
#: or that say what a checksum adds up to rather than what the ROM holds.
_CHECKSUM_FIELDS = ("checksum byte", "checksum")


def image_fields(img: Image) -> dict[str, Any]:
    """Every header field of a walked image, by the name edits and ``diff`` both use, spelled as
    they show it; a structure the image lacks contributes no field."""
    f: dict[str, Any] = {}
    h = img.header
    table = _LEGACY_FIELDS if img.header_kind == "legacy" else _EFI_FIELDS if img.header_kind == "efi" else ()
    for key, name, spell in table:
        f[name] = spell(getattr(h, key))
    if img.header_kind == "legacy":
        f["legacy image checksum byte"] = _h2(h.checksum_adjust)
    if img.pcir is not None:
        for key, name, spell in _PCIR_FIELDS:
            v = img.pcir.get(key)
            if v is not None:
                f[name] = spell(v)
        f["PCIR last-image flag"] = img.last
        f["PCIR indicator (other bits)"] = _h2(img.pcir.indicator & 0x7F)
        f["PCIR offset"] = _h4(img.pcir_offset - img.offset)
    if img.device_list is not None:
        f["device list"] = [_h4(d) for d in img.device_list]
    if img.pnp is not None:
        n = img.pnp
        f["$PnP checksum byte"] = _h2(n.checksum)
        for which in ("manufacturer", "product"):
            f[f"$PnP {which}"] = _quoted(img.pnp_strings.get(which))
        f["$PnP device type"] = f"{n.base_type:02x}{n.sub_type:02x}{n.interface_type:02x}"
        for key, name, spell in _PNP_FIELDS:
            f[name] = spell(getattr(n, key))
    if img.undi is not None:
        u = img.undi
        f["UNDI checksum byte"] = _h2(u.checksum)
        f["UNDI version"] = f"{u.undi_major}.{u.undi_minor}.{u.undi_revision}"
        for key, name, spell in _UNDI_FIELDS:
            f[name] = spell(getattr(u, key))
    if img.ipxe is not None:
        f.update({"iPXE header checksum byte": _h2(img.ipxe.checksum), "iPXE build ID": _h8(img.ipxe.build_id),
                  "iPXE shrunk length": img.ipxe.shrunk_length})
    if img.pe is not None:
        pe = img.pe
        f.update({"PE machine": _h4(pe["machine"]), "PE subsystem": _h4(pe["subsystem"]),
                  "PE entry point": _h8(pe["entry_rva"]), "PE sections": pe["sections"]})
    for c in img.checksums:
        f[f"{c.name} checksum"] = c.status
    return f


def image_changes(old_data: bytes, old: Image, new_data: bytes, new: Image, label: int) -> list[Change]:
    """The fields that differ between image ``old`` of ``old_data`` and image ``new`` of ``new_data``,
    reported as image ``label``."""
    a, b = image_fields(old), image_fields(new)
    header = {name for _, name, _ in _LEGACY_FIELDS + _EFI_FIELDS}
    out = [Change(label, name, a.get(name), b.get(name)) for name in {**a, **b}
           if a.get(name) != b.get(name) and not name.endswith(_CHECKSUM_FIELDS)
           and (old.header_kind == new.header_kind or name not in header)]
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
