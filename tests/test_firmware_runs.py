"""ROMs romlab changed or built run in real firmware under QEMU (TCG): SeaBIOS for a retargeted
legacy image, OVMF for EFI images built by `romlab efi-rom`. iPXE's own console output is the proof."""
from __future__ import annotations

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab
from qemu_console import boot_until

pytestmark = pytest.mark.qemu

IPXE_BANNER = b"iPXE initialising devices"
IPXE_EFI_BANNER = b"Open Source Network Boot Firmware"


def test_retargeted_pxe_e1000_runs_on_e1000e(tmp_path):
    src = corpus(IPXE_QEMU / "pxe-e1000.rom")
    patched = tmp_path / "e1000e.rom"
    assert run_romlab("patch", src, "--device", "0x10d3", "--fix-checksums", "-o", patched).returncode == 0
    assert run_romlab("lint", patched).returncode == 0
    seen, out = boot_until("e1000e", str(patched), IPXE_BANNER, timeout=120)
    assert seen, out[-2000:].decode(errors="replace")
    # The same ROM unpatched is skipped by SeaBIOS on an e1000e (PCIR 8086:100e, device 8086:10d3).
    seen, out = boot_until("e1000e", str(src), b"No bootable device", timeout=120)
    assert seen and IPXE_BANNER not in out, out[-2000:].decode(errors="replace")


def test_e1000e_rom_retargeted_to_10c9_is_taken_by_ipxes_82576_driver_on_qemus_igb(tmp_path):
    """QEMU's igb is the 82576 (8086:10c9), which iPXE's intel driver lists. Debian's e1000e ROM
    carries that driver; retargeted to 10c9, SeaBIOS runs it on igb and the driver takes the part
    (its MAC read from the NIC), but the link never comes up (docs/firmware-bench.md, 'igb')."""
    src = corpus(IPXE_QEMU / "pxe-e1000e.rom")
    patched = tmp_path / "igb.rom"
    assert run_romlab("patch", src, "--device", "0x10c9", "--fix-checksums", "-o", patched).returncode == 0
    seen, out = boot_until("igb", str(patched), b"Down (http://ipxe.org/38086101)", timeout=180)
    assert seen, out[-2000:].decode(errors="replace")
    assert IPXE_BANNER in out and b"net0: 52:54:00:12:34:56 using 82576 on 0000:00:02.0" in out
    # Unpatched (PCIR 8086:10d3), SeaBIOS skips it on the 8086:10c9 device.
    seen, out = boot_until("igb", str(src), b"No bootable device", timeout=120)
    assert seen and IPXE_BANNER not in out, out[-2000:].decode(errors="replace")


@pytest.mark.parametrize("layout,compress", [("edk2", False), ("edk2", True), ("ipxe", False), ("ipxe", True)])
def test_efi_rom_image_loads_in_ovmf(tmp_path, layout, compress):
    drv = tmp_path / "e1000.efi"
    assert run_romlab("extract", corpus(IPXE_QEMU / "efi-e1000.rom"), "--image", "1", "--efi-driver",
                      "-o", drv).returncode == 0
    rom = tmp_path / "e1000.rom"
    args = ["efi-rom", drv, "--vendor", "8086", "--device", "100e", "--layout", layout, "-o", rom]
    r = run_romlab(*args, *(["--compress"] if compress else []))
    assert r.returncode == 0, r.stderr
    assert run_romlab("lint", rom).returncode == 0
    seen, out = boot_until("e1000", str(rom), IPXE_EFI_BANNER, firmware="ovmf", timeout=240)
    assert seen, out[-3000:].decode(errors="replace")
