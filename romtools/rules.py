"""Every rule romlab checks an option ROM against: one table, read by the walker, lint and --rules.

A finding's severity is always the one listed here, so ``lint --strict`` and ``lint --rules``
can never disagree. Each rule says whose acceptance it models.
"""
from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    source: str
    summary: str


RULES = {r.id: r for r in [
    # Walk and structure (reported by the walker).
    Rule("truncated", "error", "Linux pci_get_rom_size", "an image extends past the end of the input"),
    Rule("image-length-zero", "error", "PciBusDxe, Linux", "PCIR ImageLength is 0"),
    Rule("last-flag-missing", "error", "PciBusDxe", "the input ends but no image carries the last-image flag"),
    Rule("last-flag-early", "error", "PCI firmware spec", "an image marked last is followed by another image"),
    Rule("pcir-pointer", "error", "PciBusDxe, Linux", "the PCIR pointer is 0, out of bounds or finds no 'PCIR'"),
    Rule("pcir-misaligned", "error", "PciBusDxe", "the PCIR pointer is not DWORD-aligned"),
    Rule("device-list-bounds", "error", "PCI 3.0", "the device list lies outside its image"),
    Rule("device-list-unterminated", "error", "PCI 3.0", "the device list has no 0 terminator inside its image"),
    Rule("structure-bounds", "error", "PCI firmware spec", "a structure (PCIR, $PnP, UNDI ROM ID, iPXE header, "
         "device list, string) reaches outside its image"),
    Rule("structure-overlap", "error", "PCI firmware spec", "two structures of an image overlap (an edit of one "
         "would change the other)"),
    Rule("pnp-string-bounds", "error", "PnP BIOS", "a $PnP string pointer leaves the image or its string has no NUL "
         "inside it"),
    Rule("non-pci-rom", "info", "PC option ROM", "no PCIR: an ISA-style option ROM"),
    Rule("non-pci-pcir-word", "warning", "PC option ROM", "a ROM with no PCIR has a non-zero word 0x18 (code, or a "
         "spoiled pointer)"),
    Rule("non-pci-pnp-signature", "info", "PnP BIOS", "a ROM with no PCIR has a word 0x1A that finds no $PnP header "
         "(often code)"),
    Rule("pcir-ids-zero", "error", "PCI firmware spec", "the PCIR's vendor or device ID is 0000, which no device has"),
    Rule("pnp-signature", "warning", "PnP BIOS", "word 0x1A points to something that is not a $PnP header"),
    Rule("trailing-fill", "info", "Linux pci_get_rom_size", "fill bytes follow the last image"),
    Rule("trailing-bytes", "warning", "Linux pci_get_rom_size", "bytes that belong to no image follow the last one"),
    Rule("init-size-zero", "warning", "PC option ROM", "header byte 2 (size) is 0"),
    # Per-image rules.
    Rule("pcir-length", "error", "iPXE ROM.pm, PCI 3.0", "PCIR Length does not match its revision"),
    Rule("pcir-revision", "warning", "PCI 3.0", "PCIR revision is not 0 to 3"),
    Rule("init-size-exceeds-image", "error", "PciBusDxe", "InitializationSize is larger than ImageLength"),
    Rule("runtime-exceeds-image", "warning", "PCI 3.0", "MaxRuntimeImageLength is larger than ImageLength"),
    Rule("code-type-unknown", "warning", "PCI 3.0", "CodeType is not one the PCI specification defines"),
    Rule("indicator-reserved", "warning", "PCI 3.0", "Indicator bits other than bit 7 are set"),
    Rule("device-list-missing-device", "warning", "PCI 3.0", "the PCIR device ID is not in its own device list"),
    Rule("efi-signature", "error", "PciBusDxe", "an EFI image lacks the 0x0EF1 signature"),
    Rule("efi-subsystem", "error", "PciBusDxe", "EFI subsystem is not a boot-service (0x0B) or runtime (0x0C) driver"),
    Rule("efi-compression", "error", "PciBusDxe", "EFI CompressionType is above 1"),
    Rule("efi-machine-unknown", "warning", "PE/COFF", "EFI machine type is not a known one"),
    Rule("efi-offset", "error", "PciBusDxe", "EfiImageHeaderOffset is not inside InitializationSize"),
    Rule("efi-pe-mismatch", "error", "UEFI LoadImage", "the PE driver's machine or subsystem differs from the ROM header"),
    Rule("checksum-legacy", "error", "PC BIOS", "a legacy image's bytes do not sum to 0"),
    Rule("checksum-pnp", "warning", "PnP BIOS", "the $PnP header does not sum to 0 (SeaBIOS and UEFI CSMs do not check it)"),
    Rule("checksum-undi", "error", "PXE 2.1", "the UNDI ROM ID does not sum to 0"),
    Rule("checksum-ipxe", "error", "iPXE", "the iPXE header does not sum to 0"),
    Rule("checksum-efirom", "error", "iPXE efirom", "an iPXE-layout EFI image does not sum to 0"),
    Rule("undi-loader-zero", "error", "iPXE undirom.c", "the UNDI ROM ID has no loader entry"),
    Rule("undi-pointer", "warning", "iPXE undirom.c", "word 0x16 is set but no UNDI ROM ID is there"),
    # The iPXE payload (romtools.ipxe).
    Rule("ipxe-payload", "error", "iPXE zbin, unlzma.S", "the iPXE payload is truncated, corrupt or expands beyond "
         "what romlab decodes"),
    Rule("ipxe-no-driver", "error", "iPXE pci_find_driver", "no PCI driver in the iPXE payload claims the PCIR's "
         "vendor:device, so iPXE would not drive the device the ROM is for"),
    Rule("ipxe-device-list-unclaimed", "warning", "iPXE pci_find_driver", "a PCI 3.0 device-list entry that no PCI "
         "driver in the iPXE payload claims"),
    # Cross-image rules.
    Rule("ids-mismatch", "warning", "consistency", "images disagree on vendor or device ID"),
    Rule("class-mismatch", "warning", "consistency", "images disagree on class code"),
]}
