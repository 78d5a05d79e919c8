"""What differs between two option ROMs (or iPXE files), structure by structure.

Each input is described as named fields, per image: the header fields that edits report
(``romtools.changes.image_fields``: the header, the PCIR and its IDs, the device list, $PnP, the
UNDI ROM ID, the iPXE header, the PE driver, each checksum's status), named and spelled as edits
name and spell them ("image 0 PCIR device"), and the iPXE payload (version, build, features,
each PCI driver's IDs, embedded scripts). Two inputs differ
exactly where a field's value differs or a field exists in one of them only. Fields are compared
as values, so a structure that moved without changing does not show, but the header pointer that
moved it does. Images are paired by their place in the walk; PCI drivers by their name (the name
of their first ID: iPXE keeps no driver names) and scripts by theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hw.errors import FormatError, NotAnOptionRom
from romtools import ipxe
from romtools.changes import image_fields
from romtools.walker import Image, walk


@dataclass
class Difference:
    field: str
    a: Any  # None: the field is not in A
    b: Any

    def as_dict(self) -> dict[str, Any]:
        d = {"field": self.field, "a": self.a, "b": self.b}
        if isinstance(self.a, list) and isinstance(self.b, list):
            d["only_a"] = only_in(self.a, self.b)
            d["only_b"] = only_in(self.b, self.a)
        return d


def only_in(a: list, b: list) -> list:
    """The entries of ``a`` that ``b`` lacks, counted as a multiset (a list holding an ID twice
    differs from one holding it once), in ``a``'s order."""
    left: dict[Any, int] = {}
    for x in b:
        left[x] = left.get(x, 0) + 1
    out = []
    for x in a:
        if left.get(x, 0):
            left[x] -= 1
        else:
            out.append(x)
    return out


def _image_fields(data: bytes, w, img: Image, budget: ipxe.Budget) -> dict[str, Any]:
    f: dict[str, Any] = {"kind": img.kind, "length": img.length, **image_fields(img)}
    try:
        payload = ipxe.for_image(data, w, img, budget)
    except FormatError as exc:
        f["iPXE error"] = str(exc)
    else:
        if payload is not None:
            f.update(_payload_fields(payload))
    return f


def _payload_fields(p: ipxe.Payload) -> dict[str, Any]:
    f: dict[str, Any] = {"iPXE version": p.version, "iPXE build": p.build,
                         "iPXE features": [f"{x.name}/{x.version}" for x in p.features],
                         "iPXE drivers": [d.name or f"driver{d.index}" for d in p.drivers],
                         "iPXE scripts": [s.name for s in p.scripts]}
    seen: dict[str, int] = {}
    for d in p.drivers:
        name = d.name or f"driver{d.index}"
        seen[name] = seen.get(name, 0) + 1
        key = f"iPXE driver {name}" + (f"#{seen[name]}" if seen[name] > 1 else "")
        f[f"{key} IDs"] = [f"{i.id} {i.name}".rstrip() for i in d.ids]
        if d.class_mask:
            f[f"{key} class"] = f"{d.class_code & 0xFFFFFF:06x}/{d.class_mask:06x}"
    for s in p.scripts:
        f[f"iPXE script {s.name}"] = s.text.decode("utf-8", "replace")
    return f


def describe(data: bytes) -> dict[str, Any]:
    """Every field of an input, by name; a FormatError (exit 2) when it is neither ROM nor iPXE file."""
    try:
        w = walk(data)
    except NotAnOptionRom as not_rom:
        try:
            payload = ipxe.as_file(data, not_rom)
        except FormatError as exc:
            if exc is not_rom:
                raise
            return {"file": "iPXE file", "iPXE error": str(exc)}
        return {"file": payload.container, **_payload_fields(payload)}
    fields: dict[str, Any] = {"images": len(w.images), "stop": w.stop.reason, "trailing": w.trailing_length}
    budget = ipxe.Budget()  # one for the whole input
    for img in w.images:
        fields.update({f"image {img.index} {k}": v for k, v in _image_fields(data, w, img, budget).items()})
    return fields


def diff(a: bytes, b: bytes) -> list[Difference]:
    """The fields whose values differ, in A's order, then the fields only B has."""
    fa, fb = describe(a), describe(b)
    out = [Difference(k, v, fb.get(k)) for k, v in fa.items() if fb.get(k, _ABSENT) != v]
    out += [Difference(k, None, v) for k, v in fb.items() if k not in fa]
    return out


_ABSENT = object()
