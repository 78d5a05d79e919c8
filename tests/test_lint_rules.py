"""Each lint rule fires at its exact byte offset on a crafted variant of a Debian ROM,
and not on the untouched ROM. Offsets come from the hex dumps of pxe-e1000.rom and
efi-e1000.rom (image 1 at 0x12600, its PCIR at 0x1261c)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, QEMU_SHARE, SEABIOS, corpus, run_romlab

PXE = IPXE_QEMU / "pxe-e1000.rom"
EFI = IPXE_QEMU / "efi-e1000.rom"


def w16(b: bytearray, off: int, v: int) -> None:
    struct.pack_into("<H", b, off, v)


def _misaligned_pcir(b):
    b[0x1E:0x3A] = bytes(b[0x1C:0x38])
    w16(b, 0x18, 0x1E)


def _efi_offset(b):
    w16(b, 0x12602, 0x7F)  # InitializationSize 65024 bytes
    w16(b, 0x12616, 0xFFFF)


VGA = SEABIOS / "vgabios-stdvga.bin"
LINUXBOOT = Path("/usr/share/qemu/linuxboot.bin")  # PCIR at 0x99dc, revision 0


def _vga_rev3_list_out_of_bounds(b):
    b[0x99DC + 0x0C] = 3
    w16(b, 0x99DC + 0x0A, 0x1C)
    w16(b, 0x99DC + 0x08, 0xFF00)


def _vga_rev3_list_on_pcir(b):
    _vga_rev3_list_out_of_bounds(b)
    w16(b, 0x99DC + 0x08, 2)  # the list would start at 0x99de, inside the PCIR (0x99dc-0x99f7)


def _pnp_product_unterminated(b):
    b[0x8000:0x8064] = b"A" * 100  # no NUL within the 80 characters a $PnP string may have
    w16(b, 0x40 + 0x10, 0x8000)


def _pe_machine(b):
    pe = 0x12638
    lfanew = struct.unpack_from("<I", b, pe + 0x3C)[0]
    w16(b, pe + lfanew + 4, 0x014C)
    return pe


CASES = [
    # (rule, base ROM, mutation, expected offset, expected severity)
    ("checksum-legacy", PXE, lambda b: b.__setitem__(0x1000, b[0x1000] ^ 0xFF), 0x0, "error"),
    ("checksum-pnp", PXE, lambda b: b.__setitem__(0x49, b[0x49] ^ 1), 0x49, "warning"),
    ("checksum-undi", PXE, lambda b: b.__setitem__(0x89, b[0x89] ^ 1), 0x89, "error"),
    ("checksum-ipxe", PXE, lambda b: b.__setitem__(0xA1, b[0xA1] ^ 1), 0xA1, "error"),
    ("checksum-efirom", EFI, lambda b: b.__setitem__(0x12634, b[0x12634] ^ 1), 0x12634, "error"),
    ("image-length-zero", PXE, lambda b: w16(b, 0x2C, 0), 0x2C, "error"),
    ("pcir-misaligned", PXE, _misaligned_pcir, 0x18, "error"),
    ("pcir-length", PXE, lambda b: w16(b, 0x26, 0x18), 0x26, "error"),
    ("pcir-revision", PXE, lambda b: b.__setitem__(0x28, 5), 0x28, "warning"),
    # 0x1c + 0xfff0 = 0x1000c: no aligned zero word from there to the image end at 75264.
    ("device-list-unterminated", PXE, lambda b: w16(b, 0x24, 0xFFF0), 0x1000C, "error"),
    ("device-list-bounds", VGA, _vga_rev3_list_out_of_bounds, 0x99E4, "error"),
    ("pcir-ids-zero", PXE, lambda b: w16(b, 0x1C + 6, 0), 0x1C + 6, "error"),
    # linuxboot.bin: a non-PCI ROM whose word 0x18 is 0 and whose word 0x1a finds its $PnP at 0x1c.
    ("non-pci-pcir-word", LINUXBOOT, lambda b: w16(b, 0x18, 0x8DCB), 0x18, "warning"),
    ("non-pci-pnp-signature", LINUXBOOT, lambda b: b.__setitem__(0x1C, ord("X")), 0x1A, "info"),
    ("structure-overlap", VGA, _vga_rev3_list_on_pcir, 0x99DE, "error"),
    ("structure-bounds", VGA, lambda b: w16(b, 0x99DC + 0x10, 2), 0x99DC, "error"),
    ("pnp-string-bounds", PXE, _pnp_product_unterminated, 0x50, "error"),
    ("device-list-missing-device", PXE, lambda b: w16(b, 0x22, 0x10D3), 0x1C + 0x4BF, "warning"),
    ("last-flag-missing", EFI, lambda b: b.__setitem__(0x12631, 0), 0x12631, "error"),
    ("last-flag-early", EFI, lambda b: b.__setitem__(0x31, 0x80), 0x31, "error"),
    ("indicator-reserved", PXE, lambda b: b.__setitem__(0x31, 0x81), 0x31, "warning"),
    ("code-type-unknown", PXE, lambda b: b.__setitem__(0x30, 0x07), 0x30, "warning"),
    ("runtime-exceeds-image", PXE, lambda b: w16(b, 0x32, 0xFF), 0x32, "warning"),
    ("init-size-exceeds-image", EFI, lambda b: w16(b, 0x12602, 0x156), 0x12602, "error"),
    ("init-size-zero", PXE, lambda b: b.__setitem__(2, 0), 0x2, "warning"),
    ("efi-signature", EFI, lambda b: w16(b, 0x12604, 0x0EF2), 0x12604, "error"),
    ("efi-subsystem", EFI, lambda b: w16(b, 0x12608, 0x0A), 0x12608, "error"),
    ("efi-compression", EFI, lambda b: w16(b, 0x1260C, 2), 0x1260C, "error"),
    ("efi-machine-unknown", EFI, lambda b: w16(b, 0x1260A, 0x1234), 0x1260A, "warning"),
    ("efi-offset", EFI, _efi_offset, 0x12616, "error"),
    ("efi-pe-mismatch", EFI, _pe_machine, 0x12638, "error"),
    ("pcir-pointer", EFI, lambda b: w16(b, 0x12618, 0xFFF0), 0x12618, "error"),
    ("undi-loader-zero", PXE, lambda b: w16(b, 0x8E, 0), 0x8E, "error"),
    ("undi-pointer", PXE, lambda b: w16(b, 0x16, 0x0100), 0x16, "warning"),
    ("pnp-signature", PXE, lambda b: b.__setitem__(0x40, ord("X")), 0x1A, "warning"),
    ("ids-mismatch", EFI, lambda b: w16(b, 0x12622, 0x10D3), 0x12620, "warning"),
    ("class-mismatch", EFI, lambda b: b.__setitem__(0x1262B, 0x03), 0x12629, "warning"),
    ("trailing-bytes", PXE, lambda b: b.extend(b"\x12\x34" * 300), 75264, "warning"),
    ("trailing-fill", PXE, lambda b: b.extend(b"\xff" * 4096), 75264, "info"),
    ("truncated", EFI, lambda b: b.__delitem__(slice(0x20000, None)), 0x20000, "error"),
    # The iPXE payload: its packed .textdata is at 0x12c0 (length 0x1116c); intel.c claims no 8086:1234.
    ("ipxe-payload", PXE, lambda b: b.__setitem__(0x5000, b[0x5000] ^ 0x55), 0x12C0, "error"),
    ("ipxe-no-driver", PXE, lambda b: w16(b, 0x1C + 6, 0x1234), 0x1C + 6, "error"),
    ("ipxe-device-list-unclaimed", PXE, lambda b: w16(b, 0x1C + 0x4BF, 0x1234), 0x1C + 0x4BF, "warning"),
]


def _lint(path):
    r = run_romlab("lint", "--json", path)
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.lint/2" and doc["input"] == str(path) and doc["exit"] == r.returncode
    return r.returncode, doc["findings"]


@pytest.mark.parametrize("rule,base,mutate,offset,severity", CASES, ids=[c[0] for c in CASES])
def test_rule_fires_at_offset(tmp_path, rule, base, mutate, offset, severity):
    data = bytearray(corpus(base).read_bytes())
    _, clean = _lint(base)
    assert not [f for f in clean if f["rule"] == rule], "rule fires on the untouched ROM"
    mutate(data)
    path = tmp_path / "crafted.rom"
    path.write_bytes(bytes(data))
    status, findings = _lint(path)
    hits = [f for f in findings if f["rule"] == rule]
    assert hits, f"{rule} did not fire: {findings}"
    assert offset in [f["offset"] for f in hits]
    assert {f["severity"] for f in hits} == {severity}
    assert status == (1 if any(f["severity"] == "error" for f in findings) else 0)


def test_every_rule_is_exercised():
    r = run_romlab("lint", "--rules")
    listed = {line.split()[0] for line in r.stdout.decode().splitlines()}
    tested = {c[0] for c in CASES} | {"non-pci-rom"}  # non-pci-rom: tests/test_corpus.py
    assert listed == tested


def test_strict_fails_on_warnings(tmp_path):
    data = bytearray(corpus(PXE).read_bytes())
    data[0x31] = 0x81
    data[6] = (data[6] - 1) & 0xFF  # keep the legacy image summing to 0
    p = tmp_path / "w.rom"
    p.write_bytes(bytes(data))
    assert run_romlab("lint", p).returncode == 0
    assert run_romlab("lint", "--strict", p).returncode == 1


def test_seabios_vga_lints_clean():
    assert run_romlab("lint", "--strict", corpus(SEABIOS / "vgabios-stdvga.bin")).returncode == 0


def _listed_severities() -> dict[str, str]:
    """`lint --rules`, as a user reads it: rule ID and severity are its first two columns."""
    r = run_romlab("lint", "--rules")
    assert r.returncode == 0
    return {line.split()[0]: line.split()[1] for line in r.stdout.decode().splitlines()}


def test_crafted_cases_expect_the_listed_severity():
    """The severities CASES expects (worked out from the specifications) are the ones --rules lists."""
    listed = _listed_severities()
    assert {rule: severity for rule, _, _, _, severity in CASES} == {r: listed[r] for r in listed if r != "non-pci-rom"}


def _debian_option_roms() -> list[Path]:
    """Every option ROM Debian's QEMU, iPXE and SeaBIOS packages ship: files that start with 55 AA.

    QEMU's /usr/share/qemu also holds firmware that is not an option ROM (qboot.rom starts
    55 89, slof.bin and the sparc PROMs do not start with 55 AA); those are left out by their
    bytes, not by romlab's verdict."""
    roms = sorted(IPXE_QEMU.glob("*.rom"))
    roms += sorted(p for p in [*QEMU_SHARE.glob("*.rom"), *QEMU_SHARE.glob("*.bin")] if p.read_bytes()[:2] == b"\x55\xaa")
    roms += sorted(p for p in SEABIOS.glob("vgabios*.bin"))
    return roms


def test_every_finding_has_the_severity_rules_lists():
    """`romlab lint` of every Debian option ROM, in one call, emits each rule at the severity --rules lists."""
    listed = _listed_severities()
    roms = _debian_option_roms()
    names = {p.name for p in roms}
    # The packages scripts/setup.sh installs: a missing one must fail here, not shrink the set.
    for must in ("pxe-e1000.rom", "efi-virtio.rom", "pxe-ne2k_pci.rom", "kvmvapic.bin", "linuxboot_dma.bin",
                 "multiboot_dma.bin", "vgabios-stdvga.bin", "vgabios.bin"):
        assert must in names, f"{must} is missing: run scripts/setup.sh"
    assert len([p for p in roms if p.parent == IPXE_QEMU]) == 16
    r = run_romlab("lint", "--json", *roms)
    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.batch/1" and len(doc["results"]) == len(roms)
    seen: dict[str, set[str]] = {}
    for rom, result in zip(roms, doc["results"]):
        assert "error" not in result, (rom.name, result)      # every one of them is an option ROM lint can read
        for f in result["findings"]:
            assert f["rule"] in listed, (rom.name, f)
            assert f["severity"] == listed[f["rule"]], (rom.name, f)
            seen.setdefault(f["rule"], set()).add(f["severity"])
    # The ROMs that once contradicted the table: kvmvapic.bin (word 0x18 = 0x8dcb, odd and past its 9216
    # bytes; word 0x1a = 0x26b4, past the end too) and pxe-ne2k_pci.rom (PCIR IDs 0000:0000).
    assert {"non-pci-pcir-word", "non-pci-pnp-signature", "pcir-ids-zero"} <= seen.keys()
    assert doc["exit"] == r.returncode == 1


def test_known_debian_findings():
    """Findings worked out from the hex dumps of two Debian ROMs, with the table's severities."""
    _, kvm = _lint(corpus(QEMU_SHARE / "kvmvapic.bin"))
    assert {(f["rule"], f["severity"], f["offset"]) for f in kvm} == {
        ("non-pci-pcir-word", "warning", 0x18), ("non-pci-pnp-signature", "info", 0x1A)}
    status, ne2k = _lint(corpus(IPXE_QEMU / "pxe-ne2k_pci.rom"))
    assert [(f["rule"], f["severity"], f["offset"]) for f in ne2k] == [("pcir-ids-zero", "error", 0x1C + 4)]
    assert status == 1
