"""Turn a walked ROM into what people read: a text tree, or the versioned JSON document.

The JSON schema is documented in docs/inspect-json.md and follows docs/conventions.md: quantities
(offsets, lengths, counts) are integers, identifiers (PCI IDs, class codes, type codes, signatures)
the lowercase hex strings lspci and the specifications print.
"""
from __future__ import annotations

from typing import Any

from romlab.conventions import class_code, hexid, pci_word
from romtools import schemas as S
from romtools.pciids import PciIds
from romtools.walker import Image, Walk, ipxe_efirom_layout

INSPECT_SCHEMA = "romlab.inspect/4"
DRIVERS_SCHEMA = "romlab.inspect-drivers/1"
LINT_SCHEMA = "romlab.lint/2"


def _names(names: PciIds | None, vendor: int, device: int, class_code: int) -> dict[str, str | None]:
    """pci.ids' names for a PCIR's IDs, keyed ``vendor``, ``device``, ``class`` (text only: the JSON
    document puts them next to the IDs as ``vendor_name``, ``device_name``, ``class_name``)."""
    if names is None:
        return {"vendor": None, "device": None, "class": None}
    return {"vendor": names.vendor(vendor), "device": names.device(vendor, device),
            "class": names.class_name(class_code)}


def image_dict(img: Image, names: PciIds | None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "index": img.index,
        "offset": img.offset,
        "length": img.length,
        "available": img.available,
        "pci": img.pci,
        "kind": img.kind,
        "header_kind": img.header_kind,
        "init_size": img.init_size,
        "last": img.last,
    }
    h = img.header
    if img.header_kind == "legacy":
        d["legacy_header"] = {
            "init_size_blocks": h.init_size, "checksum_adjust": h.checksum_adjust,
            "ipxe_header_ptr": h.ipxe_header_ptr, "bofm_ptr": h.bofm_ptr,
            "undi_rom_id_ptr": h.undi_rom_id_ptr, "pcir_ptr": h.pcir_ptr, "pnp_ptr": h.pnp_ptr,
        }
    elif img.header_kind == "efi":
        d["efi_header"] = {
            "init_size_blocks": h.init_size, "efi_signature": hexid(h.efi_signature, 8),
            "efi_subsystem": hexid(h.subsystem, 4), "efi_subsystem_name": S.EFI_SUBSYSTEMS.get(h.subsystem),
            "machine": hexid(h.machine, 4), "machine_name": S.EFI_MACHINES.get(h.machine),
            "compression": hexid(h.compression, 4), "compression_name": S.EFI_COMPRESSION.get(h.compression),
            "efi_image_offset": h.efi_image_offset, "pcir_ptr": h.pcir_ptr,
            "layout": "ipxe-efirom" if ipxe_efirom_layout(img) else "generic",
        }
    else:
        d["header"] = {"pcir_ptr": h.pcir_ptr}
    if img.pcir is not None:
        p = img.pcir
        nm = _names(names, p.vendor_id, p.device_id, p.class_code)
        pd: dict[str, Any] = {
            "offset": img.pcir_offset, "revision": p.revision, "length": p.length,
            "vendor": pci_word(p.vendor_id), "vendor_name": nm["vendor"],
            "device": pci_word(p.device_id), "device_name": nm["device"],
            "class": class_code(p.class_code), "class_name": nm["class"],
            "image_length_blocks": p.image_length, "code_revision": p.code_revision,
            "code_type": hexid(p.code_type, 2), "code_type_name": S.code_type_name(p.code_type),
            "indicator": p.indicator,
        }
        if p.revision >= 3:
            pd.update(device_list_offset=p.device_list_offset, max_runtime_length_blocks=p.max_runtime_length,
                      config_utility_offset=p.config_utility_offset, dmtf_clp_offset=p.dmtf_clp_offset)
        else:
            pd.update(reserved0=p.reserved0, reserved1=p.reserved1)
        d["pcir"] = pd
        if img.device_list is not None:
            d["device_list"] = {"offset": img.device_list_offset, "devices": [pci_word(x) for x in img.device_list]}
    if img.pnp is not None:
        n = img.pnp
        d["pnp"] = {
            "offset": img.pnp_offset, "revision": n.revision, "length": n.length, "checksum": n.checksum,
            "device_id": hexid(n.device_id, 8), "manufacturer_ptr": n.manufacturer_ptr, "product_ptr": n.product_ptr,
            "manufacturer": img.pnp_strings.get("manufacturer"), "product": img.pnp_strings.get("product"),
            "device_type": hexid(n.base_type << 16 | n.sub_type << 8 | n.interface_type, 6), "device_indicator": n.device_indicator,
            "bcv": n.bcv, "bdv": n.bdv, "bev": n.bev, "next_header": n.next_header,
        }
    if img.undi is not None:
        u = img.undi
        d["undi"] = {
            "offset": img.undi_offset, "struct_length": u.struct_length, "checksum": u.checksum,
            "struct_revision": u.struct_revision, "version": [u.undi_major, u.undi_minor, u.undi_revision],
            "loader_offset": u.loader_offset, "stack_size": u.stack_size, "data_size": u.data_size,
            "code_size": u.code_size, "bus_type": u.bus_type,
        }
    if img.ipxe is not None:
        x = img.ipxe
        d["ipxe"] = {"offset": img.ipxe_offset, "length": x.length, "checksum": x.checksum,
                     "shrunk_length_blocks": x.shrunk_length, "build_id": hexid(x.build_id, 8)}
    if img.pe is not None:
        pe = img.pe
        d["pe"] = {"offset": pe["offset"], "machine": hexid(pe["machine"], 4),
                   "efi_subsystem": hexid(pe["subsystem"], 4), "entry_rva": pe["entry_rva"],
                   "sections": pe["sections"]}
    d["checksums"] = [c.as_dict() for c in img.checksums]
    d["entries"] = [e.as_dict() for e in img.entries]
    return d


def stop_dict(walk: Walk) -> dict[str, Any]:
    """Where and why a walk ended, the one spelling of a stop (inspect, scan)."""
    return {"reason": walk.stop.reason, "offset": walk.stop.offset, "message": walk.stop.message,
            "problem": walk.stop.problem}


def payload_dict(payload, error: str | None) -> dict[str, Any]:
    """An image's (or file's) iPXE payload; ``{"error": ...}`` when it could not be read."""
    return {"error": error} if error is not None else payload.as_dict()


def inspect_dict(walk: Walk, source: str, names: PciIds | None, findings, payloads=None) -> dict[str, Any]:
    """``payloads`` maps an image index to (Payload or None, error or None)."""
    images = []
    for i in walk.images:
        d = image_dict(i, names)
        payload, error = (payloads or {}).get(i.index, (None, None))
        if payload is not None or error is not None:
            d["ipxe_payload"] = payload_dict(payload, error)
        images.append(d)
    return {
        "schema": INSPECT_SCHEMA,
        "input": source,
        "size": walk.size,
        "images": images,
        "stop": stop_dict(walk),
        "trailing": None if walk.trailing_offset is None else {
            "offset": walk.trailing_offset, "length": walk.trailing_length, "fill": walk.trailing_fill},
        "findings": [f.as_dict() for f in findings],
    }


# --- text -------------------------------------------------------------------------------------

def _hex(v: int, width: int = 4) -> str:
    return f"0x{v:0{width}x}"


def _name(s: str | None) -> str:
    return f" ({s})" if s else ""


def render_text(walk: Walk, source: str, names: PciIds | None, findings, payloads=None) -> str:
    out: list[str] = [f"{source}: {walk.size} bytes, {len(walk.images)} image(s)"]
    for img in walk.images:
        out.extend(_render_image(img, names))
        payload, error = (payloads or {}).get(img.index, (None, None))
        if payload is not None or error is not None:
            out.extend("  " + line for line in render_payload(payload, error))
    tail = "ok" if not walk.stop.problem else "PROBLEM"
    out.append(f"walk: {tail}: {walk.stop.message}")
    if walk.trailing_offset is not None:
        fill = f" of 0x{walk.trailing_fill:02X}" if walk.trailing_fill is not None else ""
        out.append(f"after the last image: {walk.trailing_length} bytes{fill} at {_hex(walk.trailing_offset, 5)}")
    for f in findings:
        out.append(f"{f.severity}: [{f.rule}] at {_hex(f.offset, 5)}: {f.message}")
    return "\n".join(out)


def _render_image(img: Image, names: PciIds | None) -> list[str]:
    o = img.offset
    lines = [f"image {img.index} at {_hex(o, 5)}: {img.kind}, {img.length} bytes"
             + ("" if img.available == img.length else f" ({img.available} present)")
             + (", last image" if img.last else "")]
    add = lambda s, depth=1: lines.append("  " * depth + s)  # noqa: E731
    h = img.header
    if img.header_kind == "legacy":
        add(f"ROM header: size {h.init_size} x 512 = {h.init_size * 512} bytes, checksum-adjust byte 6 = "
            f"{_hex(h.checksum_adjust, 2)}")
        add(f"pointers: PCIR {_hex(h.pcir_ptr)}, $PnP {_hex(h.pnp_ptr)}, UNDI {_hex(h.undi_rom_id_ptr)}, "
            f"iPXE {_hex(h.ipxe_header_ptr)}", 2)
    elif img.header_kind == "efi":
        add(f"EFI header: init size {h.init_size} x 512 = {h.init_size * 512} bytes, signature "
            f"{_hex(h.efi_signature, 5)}" + ("" if h.efi_signature == S.EFI_SIGNATURE else " (WRONG)"))
        add(f"subsystem {_hex(h.subsystem)} ({S.EFI_SUBSYSTEMS.get(h.subsystem, 'unknown')}), machine "
            f"{_hex(h.machine)} ({S.EFI_MACHINES.get(h.machine, 'unknown')}), "
            f"{S.EFI_COMPRESSION.get(h.compression, f'compression {h.compression} (unknown)')}", 2)
        add(f"PE image at {_hex(h.efi_image_offset)} (file {_hex(o + h.efi_image_offset, 5)})"
            + (", iPXE efirom layout" if ipxe_efirom_layout(img) else ""), 2)
        if img.pe:
            pe = img.pe
            add(f"PE: machine {_hex(pe['machine'])}, subsystem {pe['subsystem']}, {pe['sections']} sections, "
                f"entry RVA {_hex(pe['entry_rva'], 5)}", 2)
    if img.pcir is not None:
        p = img.pcir
        nm = _names(names, p.vendor_id, p.device_id, p.class_code)
        add(f"PCIR at {_hex(img.pcir_offset, 5)}: revision {p.revision}, length {_hex(p.length, 2)}")
        add(f"vendor {_hex(p.vendor_id)}{_name(nm['vendor'])}", 2)
        add(f"device {_hex(p.device_id)}{_name(nm['device'])}", 2)
        add(f"class {p.class_code:06x}{_name(nm['class'])}", 2)
        add(f"image length {p.image_length} x 512 = {p.image_length * 512} bytes, code revision "
            f"{_hex(p.code_revision)}", 2)
        add(f"code type {_hex(p.code_type, 2)} ({S.code_type_name(p.code_type)}), indicator "
            f"{_hex(p.indicator, 2)}" + (" (last image)" if p.indicator & S.LAST_IMAGE else ""), 2)
        if p.revision >= 3:
            add(f"max runtime length {p.max_runtime_length} x 512, config utility {_hex(p.config_utility_offset)}, "
                f"DMTF CLP {_hex(p.dmtf_clp_offset)}", 2)
            if img.device_list is not None:
                ids = ", ".join(_hex(d) for d in img.device_list) or "empty"
                add(f"device list at {_hex(img.device_list_offset, 5)}: {ids}", 2)
    if img.pnp is not None:
        n = img.pnp
        add(f"$PnP at {_hex(img.pnp_offset, 5)}: revision {n.revision}, length {n.length * 16}")
        add(f"manufacturer {img.pnp_strings.get('manufacturer')!r}, product {img.pnp_strings.get('product')!r}", 2)
        add(f"device type {n.base_type:02x}-{n.sub_type:02x}-{n.interface_type:02x}, indicator "
            f"{_hex(n.device_indicator, 2)}, BCV {_hex(n.bcv)}, BDV {_hex(n.bdv)}, BEV {_hex(n.bev)}", 2)
    if img.undi is not None:
        u = img.undi
        add(f"UNDI ROM ID at {_hex(img.undi_offset, 5)}: UNDI {u.undi_major}.{u.undi_minor}.{u.undi_revision}, "
            f"bus type {u.bus_type}")
        add(f"loader {_hex(u.loader_offset)}, stack {_hex(u.stack_size)}, data {_hex(u.data_size)}, code "
            f"{_hex(u.code_size)}", 2)
    if img.ipxe is not None:
        x = img.ipxe
        add(f"iPXE header at {_hex(img.ipxe_offset, 5)}: build ID {_hex(x.build_id, 8)}, shrunk length "
            f"{x.shrunk_length} x 512 = {x.shrunk_length * 512} bytes")
    for c in img.checksums:
        where = f", byte at {_hex(c.byte_offset, 5)}" if c.byte_offset is not None else ""
        add(f"checksum {c.name}: {c.status} ({c.length} bytes from {_hex(c.offset, 5)}{where})")
    for e in img.entries:
        if e.target is None:
            add(f"entry {e.name}: RVA {_hex(e.raw or 0, 5)}")
        else:
            how = f"{e.via} at {_hex(e.pointer_offset, 5)}"
            add(f"entry {e.name}: {_hex(e.target, 5)} ({how})")
    return lines


# --- the iPXE payload -------------------------------------------------------------------------

def render_payload(payload, error: str | None = None) -> list[str]:
    """An iPXE payload as indented lines: version, build, sections, features, drivers, scripts."""
    if error is not None:
        return [f"iPXE payload: PROBLEM: {error}"]
    p = payload
    out = [f"iPXE payload ({p.container}, {p.arch}): version {p.version or 'unknown'}, build {p.build or 'unknown'}"]
    for b in p.blocks:
        out.append(f"  packed {b.name} at {_hex(b.offset, 5)}: {b.packed} bytes -> {b.size}")
    if not p.blocks:
        out.append(f"  PE image mapped: {p.decoded_size} bytes")
    out.append("  features: " + (" ".join(f"{f.name}" for f in p.features) or "none"))
    count = len(p.all_ids())
    out.append(f"  PCI drivers: {len(p.drivers)}, claiming {count} vendor:device IDs"
               + (" (list them with --drivers)" if count else ""))
    for d in p.drivers:
        cls = "" if not d.class_mask else f", class {d.class_code & 0xFFFFFF:06x}/{d.class_mask:06x}"
        out.append(f"    driver {d.index} ({d.name}{cls}): {len(d.ids)} IDs, "
                   + ", ".join(f"{i.id} {i.name}" for i in d.ids[:4]) + (", ..." if len(d.ids) > 4 else ""))
    if not p.scripts:
        out.append("  embedded scripts: none")
    for sc in p.scripts:
        out.append(f"  embedded script {sc.name!r} ({len(sc.text)} bytes at {_hex(sc.address, 5)}):")
        out.extend("    | " + line for line in sc.text.decode("utf-8", "replace").splitlines())
    for n in p.notes:
        out.append(f"  note: {n}")
    return out


def drivers_rows(where: str | None, payload, names: PciIds | None) -> list[dict[str, Any]]:
    """One row per PCI ID the payload drives, with pci.ids names when asked for."""
    rows = []
    for d, i in payload.all_ids():
        rows.append({"image": where, "driver": d.index, "id": i.id, "name": i.name,
                     "vendor_name": names.vendor(i.vendor) if names and i.vendor != 0xFFFF else None,
                     "device_name": names.device(i.vendor, i.device) if names and i.device != 0xFFFF else None})
    return rows


def file_dict(source: str, size: int, payload) -> dict[str, Any]:
    """``inspect --json`` of an iPXE file that is not an option ROM (.pxe, .kpxe, .lkrn, .efi)."""
    return {"schema": INSPECT_SCHEMA, "input": source, "size": size, "images": [], "stop": None,
            "trailing": None, "findings": [], "ipxe_payload": payload.as_dict()}
