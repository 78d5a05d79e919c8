"""What scripts/setup.sh leaves on the host: QEMU 10 from bookworm-backports, the guest kernel in
romlab's cache, and the host's own installed kernels exactly as they were before it ran."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest


def _installed_kernels() -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version} ${Status}\\n", "linux-image*"],
                       capture_output=True, text=True)
    return r.stdout


def test_host_kernels_are_the_same_before_and_after_setup():
    """.ci/run lists the installed linux-image packages before `make test` runs set-up."""
    before = os.environ.get("ROMLAB_HOST_KERNELS_BEFORE")
    if not before:
        if os.environ.get("CI"):
            pytest.fail("ROMLAB_HOST_KERNELS_BEFORE is not set: run the suite through .ci/run")
        pytest.skip("run through .ci/run, which lists the host's kernels before set-up")
    assert Path(before).read_text() == _installed_kernels()


def test_qemu_is_10_from_backports_and_emulates_the_82576():
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)\.\d+ \(Debian [^)]*~bpo12", out)
    assert m and int(m.group(1)) >= 10, out
    devices = subprocess.run(["qemu-system-x86_64", "-device", "help"], capture_output=True, text=True).stdout
    assert 'name "igb", bus PCI, desc "Intel 82576 Gigabit Ethernet Controller"' in devices


def test_guest_kernel_is_unpacked_with_its_modules_not_installed():
    from romlab.lab.vm import find_kernel, kernel_cache

    kernel = Path(find_kernel())
    release = kernel.name.removeprefix("vmlinuz-")
    root = kernel.parent.parent
    assert root.parent == kernel_cache() and root.name == f"linux-image-{release}"
    assert (root / "lib" / "modules" / release / "modules.dep").is_file()
    # the 82576's PF and VF drivers and vfio-pci come with it
    for mod in ("drivers/net/ethernet/intel/igb/igb.ko", "drivers/net/ethernet/intel/igbvf/igbvf.ko",
                "drivers/vfio/pci/vfio-pci.ko"):
        assert list((root / "lib" / "modules" / release / "kernel").glob(mod + "*")), mod
    # dpkg does not know it: nothing of it is installed on the host
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", f"linux-image-{release}"],
                            capture_output=True, text=True).stdout
    assert "installed" not in status.split()
    assert not Path(f"/lib/modules/{release}").exists()
