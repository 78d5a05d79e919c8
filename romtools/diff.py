"""What differs between two option ROMs (or iPXE files), structure by structure.

Each input is described as named fields, per image: the header, the PCIR and its IDs, the device
list, $PnP, the UNDI ROM ID, the iPXE header, the PE driver, each checksum's status, and the iPXE
payload (version, build, features, each PCI driver's IDs, embedded scripts). Two inputs differ
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
    f: dict[str, Any] = {"kind": img.kind, "length": img.length}
    h = img.header
    if img.header_kind == "legacy":
        f.update({"header.init_size": h.init_size, "header.checksum_byte": h.checksum_adjust,
                  "header.ipxe_header_ptr": h.ipxe_header_ptr, "header.bofm_ptr": h.bofm_ptr,
                  "header.undi_rom_id_ptr": h.undi_rom_id_ptr, "header.pcir_ptr": h.pcir_ptr,
                  "header.pnp_ptr": h.pnp_ptr})
    elif img.header_kind == "efi":
        # Identifiers as docs/conventions.md spells them: lowercase hex, as wide as the field.
        f.update({"header.init_size": h.init_size, "header.efi_signature": f"{h.efi_signature:08x}",
                  "header.efi_subsystem": f"{h.subsystem:04x}", "header.machine": f"{h.machine:04x}",
                  "header.compression": f"{h.compression:04x}",
                  "header.efi_image_offset": h.efi_image_offset, "header.pcir_ptr": h.pcir_ptr})
    if img.pcir is not None:
        p = img.pcir
        f.update({"pcir.revision": p.revision, "pcir.length": p.length, "pcir.vendor": f"{p.vendor_id:04x}",
                  "pcir.device": f"{p.device_id:04x}", "pcir.class": f"{p.class_code:06x}",
                  "pcir.image_length": p.image_length, "pcir.code_revision": p.code_revision,
                  "pcir.code_type": f"{p.code_type:02x}", "pcir.indicator": p.indicator})
        if p.revision >= 3:
            f.update({"pcir.max_runtime_length": p.max_runtime_length,
                      "pcir.config_utility_offset": p.config_utility_offset,
                      "pcir.dmtf_clp_offset": p.dmtf_clp_offset})
    if img.device_list is not None:
        f["device_list"] = [f"{d:04x}" for d in img.device_list]
    if img.pnp is not None:
        n = img.pnp
        f.update({"pnp.checksum": n.checksum, "pnp.manufacturer": img.pnp_strings.get("manufacturer"), "pnp.product": img.pnp_strings.get("product"),
                  "pnp.device_type": f"{n.base_type:02x}{n.sub_type:02x}{n.interface_type:02x}",
                  "pnp.device_indicator": n.device_indicator, "pnp.bcv": n.bcv, "pnp.bdv": n.bdv, "pnp.bev": n.bev})
    if img.undi is not None:
        u = img.undi
        f.update({"undi.checksum": u.checksum, "undi.version": f"{u.undi_major}.{u.undi_minor}.{u.undi_revision}", "undi.loader": u.loader_offset,
                  "undi.stack_size": u.stack_size, "undi.data_size": u.data_size, "undi.code_size": u.code_size,
                  "undi.bus_type": u.bus_type})
    if img.ipxe is not None:
        f.update({"ipxe_header.checksum": img.ipxe.checksum, "ipxe_header.build_id": f"{img.ipxe.build_id:08x}", "ipxe_header.shrunk_length": img.ipxe.shrunk_length})
    if img.pe is not None:
        pe = img.pe
        f.update({"pe.machine": f"{pe['machine']:04x}", "pe.efi_subsystem": f"{pe['subsystem']:04x}",
                  "pe.entry_rva": pe["entry_rva"], "pe.sections": pe["sections"]})
    for c in img.checksums:
        f[f"checksum.{c.name}"] = c.status
    try:
        payload = ipxe.for_image(data, w, img, budget)
    except FormatError as exc:
        f["ipxe.error"] = str(exc)
    else:
        if payload is not None:
            f.update(_payload_fields(payload))
    return f


def _payload_fields(p: ipxe.Payload) -> dict[str, Any]:
    f: dict[str, Any] = {"ipxe.version": p.version, "ipxe.build": p.build,
                         "ipxe.features": [f"{x.name}/{x.version}" for x in p.features],
                         "ipxe.drivers": [d.name or f"driver{d.index}" for d in p.drivers],
                         "ipxe.scripts": [s.name for s in p.scripts]}
    seen: dict[str, int] = {}
    for d in p.drivers:
        name = d.name or f"driver{d.index}"
        seen[name] = seen.get(name, 0) + 1
        key = f"ipxe.driver {name}" + (f"#{seen[name]}" if seen[name] > 1 else "")
        f[f"{key}.ids"] = [f"{i.id} {i.name}".rstrip() for i in d.ids]
        if d.class_mask:
            f[f"{key}.class"] = f"{d.class_code & 0xFFFFFF:06x}/{d.class_mask:06x}"
    for s in p.scripts:
        f[f"ipxe.script {s.name}"] = s.text.decode("utf-8", "replace")
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
            return {"file": "iPXE file", "ipxe.error": str(exc)}
        return {"file": payload.container, **_payload_fields(payload)}
    fields: dict[str, Any] = {"images": len(w.images), "stop": w.stop.reason, "trailing": w.trailing_length}
    budget = ipxe.Budget()  # one for the whole input
    for img in w.images:
        fields.update({f"image {img.index}.{k}": v for k, v in _image_fields(data, w, img, budget).items()})
    return fields


def diff(a: bytes, b: bytes) -> list[Difference]:
    """The fields whose values differ, in A's order, then the fields only B has."""
    fa, fb = describe(a), describe(b)
    out = [Difference(k, v, fb.get(k)) for k, v in fa.items() if fb.get(k, _ABSENT) != v]
    out += [Difference(k, None, v) for k, v in fb.items() if k not in fa]
    return out


_ABSENT = object()
