"""What romlab says when it refuses: one grammatical line that names the thing and the way out.

Devices come from a crafted sysfs tree (``ROMLAB_SYSFS``), so the messages about a virtio
NIC, an unknown NIC or a missing device are checked on any host; the PE files are Debian's
ipxe.efi (an EFI application) and the iPXE driver inside efi-e1000.rom's EFI image.
"""
from __future__ import annotations

import os
import struct

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab

PXE = IPXE_QEMU / "pxe-e1000.rom"
EFI = IPXE_QEMU / "efi-e1000.rom"   # image 1 at 0x12600, its PE driver at 0x12638 (iPXE efirom layout)
LIST_HINT = "`romlab list` shows the devices present"


def _device(tmp_path, vendor: int, device: int, rom_size: int = 0):
    """A sysfs tree with one device at 0000:03:00.0, shaped like the kernel's."""
    sysroot = tmp_path / "sys"
    d = sysroot / "devices" / "pci0000:00" / "0000:03:00.0"
    d.mkdir(parents=True)
    devs = sysroot / "bus" / "pci" / "devices"
    devs.mkdir(parents=True)
    (devs / "0000:03:00.0").symlink_to(d)
    (d / "vendor").write_text(f"0x{vendor:04x}\n")
    (d / "device").write_text(f"0x{device:04x}\n")
    (d / "class").write_text("0x020000\n")
    empty = "0x0000000000000000 0x0000000000000000 0x0000000000000000"
    lines = ["0x00000000fe200000 0x00000000fe21ffff 0x0000000000040200"] + [empty] * 5
    lines.append(f"0x00000000fe240000 0x{0xfe240000 + rom_size - 1:016x} 0x0000000000046200" if rom_size else empty)
    (d / "resource").write_text("\n".join(lines) + "\n")
    cfg = bytearray(256)
    struct.pack_into("<HH", cfg, 0, vendor, device)
    (d / "config").write_bytes(bytes(cfg))
    return {**os.environ, "ROMLAB_SYSFS": str(sysroot), "ROMLAB_STATE_DIR": str(tmp_path / "state"),
            "ROMLAB_BACKUP_DIR": str(tmp_path / "backups")}


def _err(r) -> str:
    assert r.returncode == 2, r.stderr
    text = r.stderr.decode()
    assert text.count("\n") == 1 and "Traceback" not in text
    return text.strip()


def test_nvm_on_virtio_net_points_to_list(tmp_path):
    env = _device(tmp_path, 0x1AF4, 0x1041)
    assert _err(run_romlab("nvm", "--pci", "03:00.0", "show", env=env)) == (
        "romlab nvm: error: 0000:03:00.0 (1af4:1041) is not an Intel NIC with an NVM romlab knows "
        f"(Intel 8254x, 8257x/82583, 82599, I210, I211, 82580, 82576); {LIST_HINT}")


@pytest.mark.parametrize("verb", [["nvm", "--pci", "03:00.0", "show"], ["flash", "--pci", "03:00.0", "--dry-run"]],
                         ids=lambda v: v[0])
@pytest.mark.parametrize("physfn", [False, True], ids=["no-physfn", "physfn"])
def test_nvm_and_flash_on_an_82576_vf_point_to_its_pf(tmp_path, verb, physfn):
    """8086:10ca is the 82576's virtual function: its NVM and flash are its PF's, named from the VF's
    physfn link (the kernel's sysfs has one in every VF's directory) when it is there."""
    env = _device(tmp_path, 0x8086, 0x10CA)
    if physfn:
        pf = tmp_path / "sys" / "devices" / "pci0000:00" / "0000:01:00.0"
        pf.mkdir()
        (tmp_path / "sys" / "devices" / "pci0000:00" / "0000:03:00.0" / "physfn").symlink_to("../0000:01:00.0")
    args = verb + ([corpus(PXE)] if verb[0] == "flash" else [])
    head = (f"romlab {verb[0]}: error: 0000:03:00.0 (8086:10ca) is an SR-IOV virtual function: a virtual function "
            "has no NVM or flash of its own; they belong to its PF")
    assert _err(run_romlab(*args, env=env)) == head + (
        " 0000:01:00.0; give romlab that" if physfn
        else "; give romlab its PF (`romlab nic vfs --pci PF` lists a PF's VFs)")


def test_flash_on_virtio_net_says_it_has_no_flash_chip(tmp_path):
    env = _device(tmp_path, 0x1AF4, 0x1041)
    assert _err(run_romlab("flash", "--pci", "03:00.0", "--dry-run", corpus(PXE), env=env)) == (
        "romlab flash: error: 0000:03:00.0 (1af4:1041) is a virtio device, emulated by a hypervisor rather than "
        "a card with a flash chip; its option ROM is the file the hypervisor loads (QEMU: -device ...,romfile=FILE)")


def test_flash_on_an_unknown_nic(tmp_path):
    env = _device(tmp_path, 0x1234, 0x5678)
    assert _err(run_romlab("flash", "--pci", "03:00.0", "--dry-run", corpus(PXE), env=env)) == (
        "romlab flash: error: 0000:03:00.0 (1234:5678) is not a NIC whose flash romlab can reach in-system "
        "(Intel 8254x, 8257x/82583, 82599, I210); clip a ch341a or serprog programmer on its flash chip instead "
        "(board powered off)")


@pytest.mark.parametrize("verb", [
    ["inspect", "--pci", "05:00.0"],
    ["lint", "--pci", "05:00.0"],
    ["disasm", "--pci", "05:00.0"],
    ["nvm", "--pci", "05:00.0", "show"],
    ["dump", "--pci", "05:00.0", "-o", "{tmp}/x.rom"],
    ["flash", "--pci", "05:00.0", "--dry-run", str(PXE)],
], ids=lambda v: v[0])
def test_no_device_reads_the_same_in_every_verb(tmp_path, verb):
    env = _device(tmp_path, 0x8086, 0x100E)
    args = [a.replace("{tmp}", str(tmp_path)) for a in verb]
    assert _err(run_romlab(*args, env=env)) == f"romlab {verb[0]}: error: no PCI device 0000:05:00.0; {LIST_HINT}"


@pytest.mark.parametrize("verb", ["inspect", "lint"])
def test_no_rom_bar(tmp_path, verb):
    env = _device(tmp_path, 0x8086, 0x100E, rom_size=0)
    assert _err(run_romlab(verb, "--pci", "03:00.0", env=env)) == (
        f"romlab {verb}: error: 0000:03:00.0 has no expansion ROM (no ROM BAR); `romlab list --with-rom` shows "
        "the devices that have one")


def test_efi_application_is_named_and_the_wrap_is_shown():
    app = corpus("/usr/lib/ipxe/ipxe.efi")
    assert app.read_bytes()[:2] == b"MZ"
    assert _err(run_romlab("lint", app)) == (
        f"romlab lint: error: {app}: not an option ROM but an EFI application; an option ROM carries only an "
        "EFI driver (subsystem 0x0b or 0x0c): build the program as a driver (iPXE: `make "
        "bin-x86_64-efi/ipxe.efidrv`) and wrap it: `romlab efi-rom FILE --vendor VVVV --device DDDD -o out.rom`")


def test_efi_driver_is_named_and_the_wrap_is_shown(tmp_path):
    drv = tmp_path / "intel.efidrv"
    drv.write_bytes(corpus(EFI).read_bytes()[0x12638:])   # PE at 0x0, e_lfanew 0xc0, subsystem word 0x000b
    for verb in ("lint", "disasm"):
        assert _err(run_romlab(verb, drv)) == (
            f"romlab {verb}: error: {drv}: not an option ROM but an EFI driver (PE/COFF, subsystem 0x0b); to put "
            "it in an option ROM, wrap it: `romlab efi-rom FILE --vendor VVVV --device DDDD -o out.rom`")
    # inspect reads it as the iPXE file it is (its payload), rather than refusing it
    r = run_romlab("inspect", drv)
    assert r.returncode == 0 and b"an iPXE file, not an option ROM" in r.stdout, r.stderr
    # and the line it gives works
    out = tmp_path / "out.rom"
    r = run_romlab("efi-rom", drv, "--vendor", "8086", "--device", "100e", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:2] == b"\x55\xaa"


def test_mz_without_a_pe_header(tmp_path):
    p = tmp_path / "dos.exe"
    p.write_bytes(b"MZ" + bytes(0x100))
    assert _err(run_romlab("lint", p)) == (
        f"romlab lint: error: {p}: not an option ROM: it starts with 4d 5a ('MZ'), as DOS and PE/COFF executables "
        "do, but holds no PE header; an EFI driver is put in an option ROM with: `romlab efi-rom FILE --vendor VVVV "
        "--device DDDD -o out.rom`")


@pytest.mark.parametrize("args", [["nvm"], ["nvm", "--pci", "03:00.0"]], ids=["bare", "no-action"])
def test_nvm_without_action_asks_for_the_action_only(args):
    # as git's group commands do: the usage, then the actions to choose from, one per line
    r = run_romlab(*args)
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err and "WORD=VALUE is" not in err and "required" not in err
    assert err.startswith("usage: romlab nvm ") and "romlab nvm: give one of these actions:\n" in err
    assert [line.split()[0] for line in err.split("actions:\n", 1)[1].splitlines()[:-1]] == [
        "show", "fix-checksum", "set"]


def test_nvm_set_without_words_still_asks_for_them(tmp_path):
    env = _device(tmp_path, 0x8086, 0x100E)
    assert _err(run_romlab("nvm", "--pci", "03:00.0", "set", env=env)) == (
        "romlab nvm: error: set needs at least one WORD=VALUE, e.g. 0x30=0x0100")


def test_dump_into_a_missing_directory(tmp_path):
    env = _device(tmp_path, 0x8086, 0x100E, rom_size=0x40000)
    out = tmp_path / "nowhere" / "x.rom"
    assert _err(run_romlab("dump", "--pci", "03:00.0", "-o", out, env=env)) == (
        f"romlab dump: error: directory {out.parent} does not exist; create it or give -o a path in an existing one")
