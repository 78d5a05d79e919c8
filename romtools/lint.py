"""One rule set for option ROMs: what UEFI PciBusDxe, Linux and iPXE accept, plus consistency.

The sources disagree on details (PciBusDxe insists on DWORD-aligned PCIRs and a
valid EFI subsystem, Linux only on signatures and lengths, iPXE's undirom.c on a
UNDI ROM ID with a loader, and none of them on checksums), so every rule here
says whose acceptance it models. Each finding carries a rule ID, a severity,
the absolute byte offset it concerns and one sentence.
"""
from __future__ import annotations

from romtools import schemas as S
from romtools.rules import RULES, SEVERITIES, Rule  # noqa: F401  (the table lint --rules prints)
from romtools.walker import Finding, Image, Walk

CHECKSUM_RULES = {
    "legacy image": "checksum-legacy",
    "$PnP header": "checksum-pnp",
    "UNDI ROM ID": "checksum-undi",
    "iPXE header": "checksum-ipxe",
    "iPXE .efirom image": "checksum-efirom",
}


def _image_rules(img: Image) -> list[Finding]:
    out: list[Finding] = []

    def add(rule: str, offset: int, message: str) -> None:
        out.append(Finding(rule, RULES[rule].severity, offset, f"image {img.index}: {message}", img.index))

    for ck in img.checksums:
        if ck.complete and ck.value:
            where = f", checksum byte at 0x{ck.byte_offset:x}" if ck.byte_offset is not None else ""
            add(CHECKSUM_RULES[ck.name], ck.byte_offset if ck.byte_offset is not None else ck.offset,
                f"{ck.name} checksum is wrong: {ck.length} bytes from 0x{ck.offset:x} sum to 0x{ck.value:02x}, "
                f"not 0{where}")
    if not img.pci:
        return out
    p, po, off = img.pcir, img.pcir_offset, img.offset
    want = S.PCIR_LENGTH_BY_REVISION.get(p.revision)
    if want is None:
        add("pcir-revision", po + 0x0C, f"PCIR revision {p.revision} is not 0 to 3")
    elif p.length != want:
        add("pcir-length", po + 0x0A, f"PCIR Length is 0x{p.length:x}, revision {p.revision} needs 0x{want:x}")
    if p.vendor_id == 0 or p.device_id == 0:
        add("pcir-ids-zero", po + (4 if p.vendor_id == 0 else 6),
            f"PCIR names {p.vendor_id:04x}:{p.device_id:04x}; no device has ID 0000, so no BIOS or UEFI will run "
            "this image (set the IDs with romlab patch --vendor/--device)")
    if p.code_type not in S.SPEC_CODE_TYPES:
        add("code-type-unknown", po + 0x14, f"CodeType 0x{p.code_type:02x} ({S.code_type_name(p.code_type)}) "
            "is not defined by the PCI specification")
    if p.indicator & ~S.LAST_IMAGE & 0xFF:
        add("indicator-reserved", po + 0x15, f"Indicator 0x{p.indicator:02x} sets reserved bits")
    if img.length and img.init_size > img.length and img.header_kind in ("legacy", "efi"):
        add("init-size-exceeds-image", off + 2, f"InitializationSize {img.init_size} bytes is larger than "
            f"ImageLength {img.length} bytes")
    if img.header_kind == "legacy" and img.header.init_size == 0:
        add("init-size-zero", off + 2, "header byte 2 (size) is 0")
    if p.revision >= 3 and img.length and p.max_runtime_length * S.BLOCK > img.length:
        add("runtime-exceeds-image", po + 0x16, f"MaxRuntimeImageLength {p.max_runtime_length * S.BLOCK} bytes "
            f"is larger than ImageLength {img.length}")
    if img.device_list and p.device_id not in img.device_list:
        add("device-list-missing-device", img.device_list_offset, f"PCIR device ID 0x{p.device_id:04x} is not "
            f"in the image's own device list ({', '.join(f'0x{d:04x}' for d in img.device_list)})")
    if img.header_kind == "efi":
        h = img.header
        if h.efi_signature != S.EFI_SIGNATURE:
            add("efi-signature", off + 4, f"EFI signature is 0x{h.efi_signature:08x}, not 0x00000EF1")
        if h.subsystem not in (0x0B, 0x0C):
            add("efi-subsystem", off + 8, f"EFI subsystem 0x{h.subsystem:04x} "
                f"({S.EFI_SUBSYSTEMS.get(h.subsystem, 'unknown')}) is not loaded from option ROMs")
        if h.compression > 1:
            add("efi-compression", off + 0x0C, f"CompressionType {h.compression} is not 0 or 1")
        if h.machine not in S.EFI_MACHINES:
            add("efi-machine-unknown", off + 0x0A, f"EFI machine type 0x{h.machine:04x} is unknown")
        if h.efi_image_offset >= img.init_size:
            add("efi-offset", off + 0x16, f"EfiImageHeaderOffset 0x{h.efi_image_offset:x} is not below "
                f"InitializationSize {img.init_size}")
        if img.pe is not None:
            if img.pe["machine"] != h.machine or img.pe["subsystem"] != h.subsystem:
                add("efi-pe-mismatch", img.pe["offset"], f"the PE driver says machine 0x{img.pe['machine']:04x} "
                    f"subsystem 0x{img.pe['subsystem']:x}, the ROM header machine 0x{h.machine:04x} "
                    f"subsystem 0x{h.subsystem:x}")
    if img.header_kind == "legacy" and img.header.undi_rom_id_ptr and img.undi is None:
        ptr = img.header.undi_rom_id_ptr
        where = "past the image" if ptr >= img.length else "at bytes that are not an 'UNDI' structure"
        add("undi-pointer", off + 0x16, f"UNDI ROM ID pointer 0x{ptr:04x} points {where}; PXE stacks will not "
            "find the UNDI driver")
    if img.undi is not None and img.undi.loader_offset == 0:
        add("undi-loader-zero", img.undi_offset + 0x0A, "the UNDI ROM ID's loader offset is 0")
    return out


def _cross_rules(walk: Walk) -> list[Finding]:
    out: list[Finding] = []
    pci = [i for i in walk.images if i.pci]
    if len(pci) < 2:
        return out
    first = pci[0]
    for img in pci[1:]:
        a, b = first.pcir, img.pcir
        if (a.vendor_id, a.device_id) != (b.vendor_id, b.device_id):
            out.append(Finding("ids-mismatch", RULES["ids-mismatch"].severity, img.pcir_offset + 4,
                               f"image {img.index} is for {b.vendor_id:04x}:{b.device_id:04x}, image 0 for "
                               f"{a.vendor_id:04x}:{a.device_id:04x}", img.index))
        if a.class_code != b.class_code and b.code_type != 0xFF:
            out.append(Finding("class-mismatch", RULES["class-mismatch"].severity, img.pcir_offset + 0x0D,
                               f"image {img.index} has class {b.class_code:06x}, image 0 {a.class_code:06x}",
                               img.index))
    return out


def ipxe_rules(data: bytes, walk: Walk) -> list[Finding]:
    """What iPXE's own pci_find_driver() makes of each image's PCIR and device list."""
    from hw.errors import FormatError
    from romtools import ipxe

    out: list[Finding] = []

    def add(rule: str, img: Image, offset: int, message: str) -> None:
        out.append(Finding(rule, RULES[rule].severity, offset, f"image {img.index}: {message}", img.index))

    budget = ipxe.Budget()  # one for the whole input
    for img in walk.images:
        try:
            payload = ipxe.for_image(data, walk, img, budget)
        except FormatError as exc:
            add("ipxe-payload", img, getattr(exc, "offset", None) or img.offset, str(exc))
            continue
        if payload is None or img.pcir is None:
            continue
        p, po = img.pcir, img.pcir_offset
        what = f"iPXE {payload.build or ''}".rstrip()
        if p.vendor_id and p.device_id and not payload.claims(p.vendor_id, p.device_id, p.class_code):
            # (an ID of 0000 is pcir-ids-zero's error already)
            add("ipxe-no-driver", img, po + 6,
                f"no PCI driver in the {what} payload claims the PCIR's {p.vendor_id:04x}:{p.device_id:04x} "
                f"({len(payload.drivers)} driver(s), {len(payload.all_ids())} IDs; see romlab inspect --drivers): "
                "iPXE would load and not drive the device")
        for k, dev in enumerate(img.device_list or []):
            if not payload.claims(p.vendor_id, dev, p.class_code):
                add("ipxe-device-list-unclaimed", img, img.device_list_offset + 2 * k,
                    f"device-list entry {p.vendor_id:04x}:{dev:04x} is claimed by no PCI driver in the {what} payload")
    return out


def lint(walk: Walk, data: bytes | None = None) -> list[Finding]:
    """Every finding for a walked ROM, walker's first, sorted by offset within each group.

    With the ROM's ``data``, the iPXE payload is decoded and judged too (``ipxe_rules``)."""
    findings = list(walk.findings)
    for img in walk.images:
        findings.extend(_image_rules(img))
    findings.extend(_cross_rules(walk))
    if data is not None:
        findings.extend(ipxe_rules(data, walk))
    seen = set()
    unique = []
    for f in findings:
        key = (f.rule, f.offset)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return sorted(unique, key=lambda f: (f.offset, f.rule))


def exit_status(findings: list[Finding], strict: bool = False) -> int:
    bad = {"error", "warning"} if strict else {"error"}
    return 1 if any(f.severity in bad for f in findings) else 0
