"""Build and assemble option ROMs: EFI images from PE drivers, stacked multi-image ROMs, padding.

Every header is produced by the construct declarations in ``romtools.schemas``;
nothing here packs an offset by hand. Two EFI layouts are offered because both
are in the field: EDK2 EfiRom's (PCIR revision 3, optional device list, 0xFF
padding before an uncompressed PE and after a compressed one) and iPXE efirom's
(PCIR revision 0 at 0x1C, one checksum byte at 0x34 that makes the whole image
sum to 0, the PE at 0x38, zero padding).
"""
from __future__ import annotations

from dataclasses import dataclass

from construct import ConstructError

from hw.errors import FormatError
from romtools import schemas as S
from romtools.checksums import fix_image_checksums
from romtools.walker import walk

MAX_EFI_IMAGE = 0xFFFF * S.BLOCK  # InitializationSize is 16 bits of 512-byte blocks
IPXE_PE_OFFSET = 0x38
IPXE_CHECKSUM_OFFSET = 0x34
CLASS_NETWORK = 0x020000


@dataclass
class PeInfo:
    machine: int
    subsystem: int


def pe_info(pe: bytes) -> PeInfo:
    """Machine and subsystem of a PE/COFF image, or a RomlabError saying why it is not an EFI driver."""
    try:
        dos = S.DosHeaderStart.parse(pe[:S.DosHeaderStart.sizeof()])
        nt = S.PeHeaderStart.parse(pe[dos.e_lfanew:dos.e_lfanew + S.PeHeaderStart.sizeof()])
    except ConstructError:
        raise FormatError("not a PE/COFF image (no MZ/PE signatures); give an EFI driver (.efi)") from None
    if nt.optional_magic not in (0x10B, 0x20B):
        raise FormatError(f"PE optional header magic 0x{nt.optional_magic:x} is neither PE32 nor PE32+")
    sub_at = dos.e_lfanew + S.PE_SUBSYSTEM_OFFSET
    if sub_at + 2 > len(pe):
        raise FormatError("PE image is truncated before its subsystem field")
    subsystem = int.from_bytes(pe[sub_at:sub_at + 2], "little")
    if subsystem not in (0x0B, 0x0C):
        name = S.EFI_SUBSYSTEMS.get(subsystem, "not an EFI subsystem")
        raise FormatError(f"PE subsystem is 0x{subsystem:x} ({name}); an option ROM carries a boot-service (0x0B) "
                       "or runtime (0x0C) EFI driver")
    return PeInfo(nt.machine, subsystem)


def _round_block(n: int) -> int:
    return (n + S.BLOCK - 1) // S.BLOCK * S.BLOCK


def efi_rom(pe: bytes, vendor: int, devices: list[int], *, compress: bool = False, class_code: int | None = None,
            layout: str = "edk2", code_revision: int = 0, last: bool = True) -> bytes:
    """One EFI option-ROM image carrying ``pe``."""
    if not devices:
        raise FormatError("give at least one --device")
    for d in [vendor, *devices]:
        if not 0 <= d <= 0xFFFF:
            raise FormatError(f"PCI ID 0x{d:x} does not fit in 16 bits")
    if 0 in devices and len(devices) > 1:
        raise FormatError("device ID 0 cannot be used: it ends the PCI 3.0 device list")
    info = pe_info(pe)
    payload = pe
    if compress:
        from romtools.eficompress import compress as efi_compress

        payload = efi_compress(pe)
    indicator = S.LAST_IMAGE if last else 0
    if layout == "ipxe":
        if len(devices) > 1:
            raise FormatError("the iPXE layout has a revision-0 PCIR and so no device list; use --layout edk2 "
                           "for several devices")
        size = _round_block(IPXE_PE_OFFSET + len(payload))
        klass = CLASS_NETWORK if class_code is None else class_code
        header = dict(init_size=size // S.BLOCK, efi_signature=S.EFI_SIGNATURE, subsystem=info.subsystem,
                      machine=info.machine, compression=int(compress), reserved=bytes(8),
                      efi_image_offset=IPXE_PE_OFFSET, pcir_ptr=0x1C)
        pcir = dict(vendor_id=vendor, device_id=devices[0], reserved0=0, length=S.PcirRev0.sizeof(), revision=0,
                    class_code=klass, image_length=size // S.BLOCK, code_revision=code_revision, code_type=3,
                    indicator=indicator, reserved1=0)
        out = bytearray(size)
        out[0:S.EfiRomHeader.sizeof()] = S.EfiRomHeader.build(header)
        out[0x1C:IPXE_CHECKSUM_OFFSET] = S.PcirRev0.build(pcir)
        out[IPXE_PE_OFFSET:IPXE_PE_OFFSET + len(payload)] = payload
        out[IPXE_CHECKSUM_OFFSET] = (-sum(out)) & 0xFF
    elif layout == "edk2":
        klass = 0 if class_code is None else class_code
        dev_list = b""
        if len(devices) > 1:
            dev_list = b"".join(S.DeviceListEntry.build(d) for d in devices) + S.DeviceListEntry.build(0)
        head = 0x1C + S.PcirRev3.sizeof() + len(dev_list)
        size = _round_block(head + len(payload))
        pad = size - head - len(payload)
        pe_at = head if compress else head + pad
        header = dict(init_size=size // S.BLOCK, efi_signature=S.EFI_SIGNATURE, subsystem=info.subsystem,
                      machine=info.machine, compression=int(compress), reserved=bytes(8),
                      efi_image_offset=pe_at, pcir_ptr=0x1C)
        pcir = dict(vendor_id=vendor, device_id=devices[0], device_list_offset=S.PcirRev3.sizeof() if dev_list else 0,
                    length=S.PcirRev3.sizeof(), revision=3, class_code=klass, image_length=size // S.BLOCK,
                    code_revision=code_revision, code_type=3, indicator=indicator, max_runtime_length=0,
                    config_utility_offset=0, dmtf_clp_offset=0)
        out = bytearray(b"\xff" * size)
        out[0:0x1C] = bytes(0x1C)  # the header is 0x1A bytes; zeros align the PCIR to 0x1C
        out[0:S.EfiRomHeader.sizeof()] = S.EfiRomHeader.build(header)
        out[0x1C:0x1C + S.PcirRev3.sizeof()] = S.PcirRev3.build(pcir)
        out[0x38:0x38 + len(dev_list)] = dev_list
        out[pe_at:pe_at + len(payload)] = payload
    else:
        raise FormatError(f"unknown layout {layout!r}: use edk2 or ipxe")
    if len(out) > MAX_EFI_IMAGE:
        raise FormatError(f"the EFI image would be {len(out)} bytes, more than an image can declare "
                       f"({MAX_EFI_IMAGE}); try --compress")
    return bytes(out)


def combine(images: list[bytes], checksum_byte: str = "header") -> tuple[bytes, list[str]]:
    """Stack option-ROM images into one ROM: the last-image flag on the final image only,
    each legacy image's checksum fixed by ``checksum_byte``. Each input may itself hold
    several images (a legacy+EFI ROM): all its images are stacked in order."""
    parts: list[bytearray] = []
    for n, data in enumerate(images):
        w = walk(data)
        # A split-out image that is not marked last is fine: combine sets the flags anyway.
        if w.stop.problem and w.stop.reason != "no-last-image":
            raise FormatError(f"input {n + 1} is not a clean ROM: {w.stop.message}; fix it first (romlab lint)")
        for img in w.images:
            if not img.pci:
                raise FormatError(f"input {n + 1} is a non-PCI option ROM; only PCI images can be stacked")
            parts.append(bytearray(data[img.offset:img.end]))
    if not parts:
        raise FormatError("nothing to combine")
    warnings: list[str] = []
    for i, part in enumerate(parts):
        warnings += set_last_flag(part, i == len(parts) - 1, checksum_byte)
    return b"".join(bytes(p) for p in parts), warnings


def combine_sources(images: list[bytes]) -> list[bytes]:
    """The images ``combine`` stacks, as they were in their inputs (to show what it changed)."""
    return [data[img.offset:img.end] for data in images for img in walk(data).images]


def set_last_flag(image: bytearray, last: bool, checksum_byte: str = "header") -> list[str]:
    """Set or clear the last-image flag of the one PCI image in ``image`` and fix its checksums
    (the legacy one where ``checksum_byte`` says); return the checksum warnings."""
    img = walk(bytes(image), trailing=False).images[0]
    if img.pcir is None:
        raise FormatError("a non-PCI option ROM has no PCIR, so no last-image flag")
    at = img.pcir_offset + S.PCIR_INDICATOR_OFFSET
    image[at] = (image[at] & ~S.LAST_IMAGE) | (S.LAST_IMAGE if last else 0)
    return fix_image_checksums(image, checksum_byte)


PAD_PRESETS = {
    # VirtualBox ignores ROMs over 56 KiB; VMware wants the BIOS ROM slot sizes it lists.
    "virtualbox": 56 * 1024,
    "vmware": 64 * 1024,
}


def pad_target(data_len: int, to: str) -> int:
    to = to.strip().lower()
    if to in PAD_PRESETS:
        return PAD_PRESETS[to]
    if to == "flash":
        size = 64 * 1024
        while size < data_len:
            size *= 2
        return size
    mult = 1
    for suffix, m in (("k", 1024), ("kib", 1024), ("m", 1 << 20), ("mib", 1 << 20)):
        if to.endswith(suffix):
            to, mult = to[: -len(suffix)], m
            break
    try:
        return int(to, 0) * mult
    except ValueError:
        raise FormatError(f"--to {to!r} is not a size (e.g. 128K, 0x20000), 'flash', 'virtualbox' or 'vmware'") from None


def pad(data: bytes, to: str, limit: int | None = None) -> bytes:
    """``data`` padded with 0xFF to ``to``; a target over ``limit`` bytes is refused."""
    target = pad_target(len(data), to)
    if limit is not None and target > limit:
        raise FormatError(f"--to {to} asks for {target} bytes, more than the largest flash part romlab knows "
                       f"({limit >> 10} KiB); nothing written")
    if target < len(data):
        raise FormatError(f"the ROM is {len(data)} bytes and does not fit in {target} bytes; nothing written")
    if target % S.BLOCK:
        raise FormatError(f"{target} is not a multiple of 512 bytes")
    return data + b"\xff" * (target - len(data))
