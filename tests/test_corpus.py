"""Verdicts on the ROMs Debian ships: every file read where its package put it.

The files are the ones the installed packages list (`dpkg -L`), not a list written for one
Debian release: QEMU 8 dropped sgabios.bin, and the number of iPXE ROMs follows ipxe-qemu."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, QEMU_SHARE, SEABIOS, corpus, run_romlab

PACKAGES = ("ipxe-qemu", "ipxe", "seabios", "qemu-system-data")


def _packaged() -> set[str]:
    r = subprocess.run(["dpkg", "-L", *PACKAGES], capture_output=True, text=True)
    return {ln.strip() for ln in r.stdout.splitlines() if ln.startswith("/")}


PACKAGED = _packaged()


def installed(paths: list[str]) -> list[str]:
    """The candidates the installed packages ship."""
    return [p for p in paths if p in PACKAGED]


IPXE_ROMS = sorted(p for p in PACKAGED if p.startswith(f"{IPXE_QEMU}/") and p.endswith(".rom"))
PCI_VGA = installed([str(SEABIOS / f"vgabios-{n}.bin") for n in ("ati", "bochs-display", "cirrus", "qxl", "stdvga",
                                                                 "virtio", "vmware")])
NON_PCI = installed([str(SEABIOS / f) for f in ("vgabios.bin", "vgabios-isavga.bin", "vgabios-ramfb.bin")] + [
    str(QEMU_SHARE / f"{n}.bin") for n in ("linuxboot", "linuxboot_dma", "multiboot", "multiboot_dma", "pvh",
                                           "sgabios")])
NOT_ROMS = installed([str(QEMU_SHARE / f) for f in ("QEMU,VGA.bin", "QEMU,cgthree.bin", "QEMU,tcx.bin", "qboot.rom",
                                                    "bios-microvm.bin")] + [
    str(SEABIOS / f) for f in ("bios.bin", "bios-256k.bin", "bios-microvm.bin")] + [
    "/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/ipxe.lkrn"])


def test_corpus_packages_are_installed():
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *PACKAGES], capture_output=True,
                       text=True)
    status = dict(ln.split(" ", 1) for ln in r.stdout.splitlines())
    assert all(status.get(p, "").endswith("installed") for p in PACKAGES), \
        f"{status}: run scripts/setup.sh to install the Debian ROM packages"
    # Each list keeps most of its candidates on any release (a renamed file would empty it).
    assert len(PCI_VGA) >= 5 and len(NON_PCI) >= 5 and len(NOT_ROMS) >= 5


def test_ipxe_corpus_is_one_pxe_and_one_efi_rom_per_nic():
    names = [Path(p).name for p in IPXE_ROMS]
    pxe = {n[4:] for n in names if n.startswith("pxe-")}
    efi = {n[4:] for n in names if n.startswith("efi-")}
    assert pxe and pxe == efi and len(names) == 2 * len(pxe), names
    assert {"e1000.rom", "e1000e.rom", "rtl8139.rom", "virtio.rom"} <= pxe


def _inspect(path):
    r = run_romlab("inspect", "--json", corpus(path))
    return r, (json.loads(r.stdout) if r.stdout else None)


@pytest.mark.parametrize("path", IPXE_ROMS, ids=lambda p: Path(p).name)
def test_ipxe_roms_inspect_and_lint_clean(path):
    r, doc = _inspect(path)
    assert r.returncode == 0, r.stderr
    name = Path(path).name
    kinds = [i["kind"] for i in doc["images"]]
    assert kinds == (["x86 PC-AT", "EFI"] if name.startswith("efi-") else ["x86 PC-AT"])
    assert doc["images"][-1]["last"] is True
    lint = run_romlab("lint", path)
    if "ne2k_pci" in name:
        # iPXE's ne2k_pci images carry PCIR IDs 0000:0000 (xxd: bytes 0x20-0x23 of pxe-ne2k_pci.rom are 00).
        assert lint.returncode == 1 and lint.stdout.decode().count("[pcir-ids-zero]") == len(kinds)
    else:
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


@pytest.mark.parametrize("path", PCI_VGA, ids=lambda p: Path(p).name)
def test_seabios_pci_vga_roms(path):
    r, doc = _inspect(path)
    assert r.returncode == 0, r.stderr
    (img,) = doc["images"]
    assert img["pci"] is True and img["pcir"]["code_type"] == "00"
    assert img["pcir"]["class"].startswith("03")  # display controller
    assert run_romlab("lint", path).returncode == 0


@pytest.mark.parametrize("path", NON_PCI, ids=lambda p: Path(p).name)
def test_non_pci_option_roms(path):
    r, doc = _inspect(path)
    assert r.returncode == 0, r.stderr
    (img,) = doc["images"]
    assert img["pci"] is False and img["kind"] == "non-PCI option ROM"
    lint = run_romlab("lint", "--json", path)
    assert lint.returncode == 0
    rules = {(f["rule"], f["severity"]) for f in json.loads(lint.stdout)["findings"]}
    assert ("non-pci-rom", "info") in rules
    assert not any(sev == "error" for _, sev in rules)


def test_kvmvapic_bad_pointer_is_a_warning_not_a_crash():
    path = corpus(QEMU_SHARE / "kvmvapic.bin")
    data = path.read_bytes()
    assert len(data) == 9216 and data[0x18:0x1A] == bytes.fromhex("cb8d")  # word 0x8dcb, from the hex dump
    r, doc = _inspect(path)
    assert r.returncode == 0
    assert doc["images"][0]["pci"] is False
    warn = [f for f in doc["findings"] if f["severity"] == "warning" and f["offset"] == 0x18]
    assert warn and "0x8dcb" in warn[0]["message"]
    assert run_romlab("lint", path).returncode == 0


@pytest.mark.parametrize("path", NOT_ROMS, ids=lambda p: Path(p).name)
def test_not_option_roms_exit_2(path):
    ipxe_file = path.startswith("/usr/lib/ipxe/")  # inspect reads these as iPXE files (tests/test_ipxe.py)
    for verb in ("lint",) if ipxe_file else ("inspect", "lint"):
        r = run_romlab(verb, corpus(path))
        assert r.returncode == 2
        err = r.stderr.decode()
        assert "not an option ROM" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
