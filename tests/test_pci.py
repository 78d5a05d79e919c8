"""hw.pci without a VM: addresses, the kernel's ROM-size rule, sysfs parsing.

Config space and capabilities are checked against lspci on the machine's own PCI
devices; cases no machine here has (no IOMMU, a shared group) use a crafted sysfs
tree under ROMLAB_SYSFS, and the tests say so.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.errors import RomlabError
from hw.pci import kernel_rom_size, list_devices, parse_bdf, parse_capabilities


# --------------------------------------------------------------------------- addresses
@pytest.mark.parametrize("text,full", [
    ("03:00.0", "0000:03:00.0"), ("0000:03:00.0", "0000:03:00.0"), ("0001:ff:1f.7", "0001:ff:1f.7"),
    ("3:0.1", "0000:03:00.1"), ("AB:1F.2", "0000:ab:1f.2"),
])
def test_parse_bdf(text, full):
    assert str(parse_bdf(text)) == full


@pytest.mark.parametrize("text", ["", "03:00", "03:00.8", "03:20.0", "g3:00.0", "00000:03:00.0", "03.00.0"])
def test_parse_bdf_rejects(text):
    with pytest.raises(RomlabError):
        parse_bdf(text)


# --------------------------------------------------------------------------- pci_get_rom_size rule
def test_kernel_rom_size_debian_roms():
    # efi-e1000.rom: legacy image of 0x93 blocks (byte 2 = 0x93, 0x12600 bytes) then an EFI image
    # of 0x155 blocks (0x2aa00) marked last; 0x12600 + 0x2aa00 = 249856, the file's length.
    efi = corpus(IPXE_QEMU / "efi-e1000.rom").read_bytes()
    assert efi[2] == 0x93
    assert kernel_rom_size(efi) == 249856 == len(efi)
    # the fill after the last image is not ROM
    assert kernel_rom_size(efi + b"\xff" * 12288) == 249856
    assert kernel_rom_size(efi + b"\x00" * 12288) == 249856
    pxe = corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()
    assert kernel_rom_size(pxe) == 75264 == 0x93 * 512
    # pxe-e1000.rom's only image is marked last: anything after it is ignored
    assert kernel_rom_size(pxe + efi) == 75264


def _image(blocks: int, last: bool) -> bytes:
    img = bytearray(max(blocks, 1) * 512)
    img[0:3] = b"\x55\xaa" + bytes([blocks])
    struct.pack_into("<H", img, 0x18, 0x1C)
    img[0x1C:0x20] = b"PCIR"
    struct.pack_into("<H", img, 0x1C + 0x10, blocks)
    img[0x1C + 0x15] = 0x80 if last else 0
    return bytes(img)


def test_kernel_rom_size_rules():
    assert kernel_rom_size(b"\xff" * 4096) == 0                   # no 55AA
    bad_pcir = bytearray(_image(2, True))
    bad_pcir[0x1C:0x20] = b"PCIX"
    assert kernel_rom_size(bytes(bad_pcir)) == 0                   # 55AA but no PCIR
    # two images, the first not last: both count
    assert kernel_rom_size(_image(2, False) + _image(3, True) + b"\xff" * 512) == 5 * 512
    # first not last and then garbage: the walk stops after the first
    assert kernel_rom_size(_image(2, False) + b"\xff" * 2048) == 1024
    # an image claiming more than the window holds is cut at the window
    assert kernel_rom_size(_image(2, True)[:700]) == 700
    # zero length stops the walk where it is
    assert kernel_rom_size(_image(0, False) + _image(1, True)) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_kernel_rom_size_bounded(data):
    n = kernel_rom_size(data)
    assert 0 <= n <= len(data)
    assert n == len(data) or n % 512 == 0


# --------------------------------------------------------------------------- capabilities vs lspci
def _lspci_caps(bdf: str) -> list[tuple[int, bool]]:
    out = subprocess.run(["lspci", "-vvv", "-s", bdf], capture_output=True, text=True).stdout
    caps = []
    for m in re.finditer(r"Capabilities: \[([0-9a-f]+)(?: v\d+)?\]", out):
        off = int(m.group(1), 16)
        caps.append((off, off >= 0x100))
    return caps


@pytest.mark.skipif(shutil.which("lspci") is None, reason="pciutils (lspci) is not installed")
@pytest.mark.root
def test_capabilities_match_lspci():
    devs = [d for d in list_devices() if len(d.config()) >= 256]
    if os.geteuid() != 0 or not devs:
        pytest.skip("needs root and a PCI device with readable config space")
    checked = 0
    for dev in devs:
        ours = [(c.offset, c.extended) for c in dev.capabilities()]
        assert ours == _lspci_caps(str(dev.bdf)), dev.bdf
        checked += len(ours)
    assert checked


def _lspci_sizes(bdf: str, *opts: str) -> list[int]:
    if shutil.which("lspci") is None:
        pytest.fail("lspci is missing: run scripts/setup.sh (it installs pciutils)")
    out = subprocess.run(["lspci", *opts, "-v", "-s", bdf], capture_output=True, text=True, timeout=60).stdout
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return [int(n) * units[u] for n, u in re.findall(r"\[size=(\d+)([KMG]?)\]", out)]


def test_bars_match_lspci_sizes_on_a_crafted_tree(tmp_path, monkeypatch):
    """lspci reads the same crafted sysfs tree (``-O sysfs.path``), so this runs on any machine."""
    bdf = "0000:05:00.0"
    d = tmp_path / "sys" / "bus" / "pci" / "devices" / bdf
    d.mkdir(parents=True)
    cfg = bytearray(64)
    struct.pack_into("<HHHH", cfg, 0, 0x8086, 0x10D3, 0x0006, 0x0010)
    cfg[0x0B] = 0x02
    struct.pack_into("<4I", cfg, 0x10, 0xFEBC0000, 0xFEB00000, 0xC001, 0xFEBF0000)
    (d / "config").write_bytes(bytes(cfg))
    # An 82574L's BARs: 128 KiB registers, 512 KiB flash, 32 bytes of I/O, 16 KiB MSI-X.
    res = [(0xFEBC0000, 0xFEBDFFFF, 0x40200), (0xFEB00000, 0xFEB7FFFF, 0x40200), (0xC000, 0xC01F, 0x40101),
           (0xFEBF0000, 0xFEBF3FFF, 0x40200)] + [(0, 0, 0)] * 9
    (d / "resource").write_text("".join(f"0x{a:016x} 0x{b:016x} 0x{c:016x}\n" for a, b, c in res))
    for name, value in (("vendor", 0x8086), ("device", 0x10D3), ("class", 0x020000),
                        ("subsystem_vendor", 0x8086), ("subsystem_device", 0)):
        (d / name).write_text(f"0x{value:04x}\n")
    (d / "irq").write_text("0\n")                 # lspci stops at a device without one
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path / "sys"))
    theirs = _lspci_sizes(bdf, "-A", "linux-sysfs", "-O", f"sysfs.path={tmp_path}/sys/bus/pci")
    assert theirs == [128 << 10, 512 << 10, 32, 16 << 10]
    [dev] = list_devices()
    assert [b.size for b in dev.bars()] == theirs


@pytest.mark.pci
def test_bars_match_lspci_sizes():
    """The machine's own devices; under CI a machine without any fails this instead of skipping."""
    devs = [d for d in list_devices() if d.bars()]
    if not devs:
        pytest.skip("no PCI device with BARs here")
    for dev in devs:
        assert _lspci_sizes(str(dev.bdf)) == [b.size for b in dev.bars()], dev.bdf


def test_parse_capabilities_by_hand():
    # status bit 4 set, list at 0x40: PM (01) -> 0x50 MSI (05) -> end; then at 0x100 AER v1 -> 0x140 DSN v1
    cfg = bytearray(4096)
    struct.pack_into("<H", cfg, 0x06, 0x10)
    cfg[0x34] = 0x40
    cfg[0x40:0x42] = b"\x01\x50"
    cfg[0x50:0x52] = b"\x05\x60"
    cfg[0x60:0x62] = b"\x10\x00"      # PCI Express, so extended caps are read
    struct.pack_into("<I", cfg, 0x100, 0x0001 | (1 << 16) | (0x140 << 20))
    struct.pack_into("<I", cfg, 0x140, 0x0003 | (1 << 16))
    caps = parse_capabilities(bytes(cfg))
    assert [(c.offset, c.name) for c in caps] == [
        (0x40, "Power Management"), (0x50, "MSI"), (0x60, "PCI Express"),
        (0x100, "Advanced Error Reporting"), (0x140, "Device Serial Number")]
    # a loop in the list ends the walk instead of hanging
    cfg[0x60:0x62] = b"\x10\x40"
    assert len(parse_capabilities(bytes(cfg))) == 5


# --------------------------------------------------------------------------- crafted sysfs trees
def _crafted(tmp_path, *, group: int | None, members=("0000:03:00.0",), rom_size=0x40000):
    """A sysfs tree shaped like the kernel's for one NIC (8086:100e on e1000)."""
    sysroot = tmp_path / "sys"
    devs = sysroot / "bus" / "pci" / "devices"
    drivers = sysroot / "bus" / "pci" / "drivers"
    (drivers / "e1000").mkdir(parents=True)
    (drivers / "ahci").mkdir(parents=True)
    devs.mkdir(parents=True)
    for i, bdf in enumerate(members):
        d = sysroot / "devices" / "pci0000:00" / bdf
        d.mkdir(parents=True)
        (devs / bdf).symlink_to(d)
        nic = i == 0
        (d / "vendor").write_text("0x8086\n")
        (d / "device").write_text("0x100e\n" if nic else "0x2922\n")
        (d / "class").write_text("0x020000\n" if nic else "0x010601\n")
        (d / "driver_override").write_text("(null)\n")
        (d / "driver").symlink_to(drivers / ("e1000" if nic else "ahci"))
        lines = ["0x00000000fe200000 0x00000000fe21ffff 0x0000000000040200"]
        lines += ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 5
        lines.append(f"0x00000000fe240000 0x{0xfe240000 + rom_size - 1:016x} 0x0000000000046200"
                     if rom_size and nic else "0x0000000000000000 0x0000000000000000 0x0000000000000000")
        (d / "resource").write_text("\n".join(lines) + "\n")
        cfg = bytearray(256)
        struct.pack_into("<HH", cfg, 0, 0x8086, 0x100E)
        (d / "config").write_bytes(bytes(cfg))
        if group is not None:
            g = sysroot / "kernel" / "iommu_groups" / str(group)
            (g / "devices").mkdir(parents=True, exist_ok=True)
            (g / "devices" / bdf).symlink_to(d)
            (d / "iommu_group").symlink_to(g)
    return sysroot


def _env(sysroot):
    return {**os.environ, "ROMLAB_SYSFS": str(sysroot), "ROMLAB_STATE_DIR": str(sysroot.parent / "state")}


def _snapshot(sysroot):
    return {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p) if p.is_symlink() else None)
            for p in sorted(sysroot.rglob("*"))}


@pytest.mark.root
def test_bind_without_iommu_crafted_sysfs(tmp_path):
    """No IOMMU: QEMU's q35 always has one in our guest, so a crafted tree stands in."""
    if os.geteuid() != 0:
        pytest.skip("the root check comes first; this case needs root to reach the IOMMU check")
    sysroot = _crafted(tmp_path, group=None)
    before = _snapshot(sysroot)
    r = run_romlab("vfio", "bind", "03:00.0", env=_env(sysroot))
    err = r.stderr.decode()
    assert r.returncode == 2 and len(err.strip().splitlines()) == 1
    assert "romlab vfio: error: 0000:03:00.0 has no IOMMU group" in err and "intel_iommu=on" in err
    assert _snapshot(sysroot) == before
    r = run_romlab("dump", "--pci", "03:00.0", "--via", "vfio", "-o", str(tmp_path / "x.rom"), env=_env(sysroot))
    assert r.returncode == 2 and "no IOMMU group" in r.stderr.decode()
    assert _snapshot(sysroot) == before and not (tmp_path / "x.rom").exists()


@pytest.mark.root
def test_bind_shared_group_crafted_sysfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to reach the group check")
    sysroot = _crafted(tmp_path, group=7, members=("0000:03:00.0", "0000:03:00.1"))
    before = _snapshot(sysroot)
    r = run_romlab("vfio", "bind", "0000:03:00.0", env=_env(sysroot))
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and "\n" not in err
    assert err == ("romlab vfio: error: IOMMU group 7 of 0000:03:00.0 also holds 0000:03:00.1 (ahci); VFIO takes "
                   "whole groups, so romlab will not rebind it (move the card to a slot of its own or check ACS)")
    assert _snapshot(sysroot) == before


def test_list_crafted_sysfs(tmp_path):
    import json

    sysroot = _crafted(tmp_path, group=7, members=("0000:03:00.0", "0000:03:00.1"))
    r = run_romlab("list", "--json", env=_env(sysroot))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.list/1"
    rows = doc["devices"]
    assert [x["bdf"] for x in rows] == ["0000:03:00.0", "0000:03:00.1"]
    nic = rows[0]
    # the crafted tree's vendor, device and class files: 0x8086, 0x100e, 0x020000; the AHCI one 0x2922, 0x010601
    assert (nic["id"], nic["class"]) == ("8086:100e", "020000")
    assert (rows[1]["id"], rows[1]["class"]) == ("8086:2922", "010601")
    assert nic["device_name"] == "82540EM Gigabit Ethernet Controller"
    assert nic["rom_bar_size"] == 256 * 1024 and nic["driver"] == "e1000" and nic["iommu_group"] == 7
    # the crafted tree has no rom attribute to read, so validity is unknown, not guessed
    assert nic["rom"] == "unreadable"
    assert rows[1]["rom_bar_size"] == 0 and rows[1]["rom"] == "none"


def test_missing_device(tmp_path):
    sysroot = _crafted(tmp_path, group=1)
    r = run_romlab("dump", "--pci", "05:00.0", "-o", str(tmp_path / "x.rom"), env=_env(sysroot))
    assert r.returncode == 2
    assert r.stderr.decode().strip() == (
        "romlab dump: error: no PCI device 0000:05:00.0; `romlab list` shows the devices present")


def test_no_rom_bar_crafted_sysfs(tmp_path):
    sysroot = _crafted(tmp_path, group=1, rom_size=0)
    for via in ("sysfs", "vfio"):
        r = run_romlab("dump", "--pci", "03:00.0", "--via", via, "-o", str(tmp_path / "x.rom"), env=_env(sysroot))
        assert r.returncode == 2
        assert r.stderr.decode().strip() == ("romlab dump: error: 0000:03:00.0 has no expansion ROM (no ROM BAR); "
                                             "`romlab list --with-rom` shows the devices that have one")
