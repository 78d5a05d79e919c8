"""`romlab nvm` and `romlab flash --pci` inside `romlab vm`, on QEMU's e1000 and e1000e, in one guest boot.

The guest kernel owns the devices as on a real machine: real sysfs, resource0
mapped by romlab, the e1000/e1000e drivers bound, vfio-pci behind a vIOMMU. This
file is also the program the guest runs (`python tests/test_nvm_vm.py guest
SHARE`): it does every check and writes what it saw to SHARE/nvm-results.json;
the assertions are made on the host, against QEMU's EEPROM templates
(hw/net/e1000.c, hw/net/e1000e.c, hw/net/e1000x_common.c) and the MACs given.
"""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

MACS = {"e1000": "52:54:00:65:43:21", "e1000e": "52:54:00:65:43:22"}
IDS = {"e1000": ("0x8086", "0x100e"), "e1000e": ("0x8086", "0x10d3")}


def _romlab(*args, prefix=()):
    r = subprocess.run([*prefix, sys.executable, "-m", "romlab", *args], capture_output=True, text=True,
                       timeout=300)
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def _driver(bdf: str) -> str | None:
    link = f"/sys/bus/pci/devices/{bdf}/driver"
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def _eecd(bdf: str) -> int:
    with open(f"/sys/bus/pci/devices/{bdf}/resource0", "r+b") as fh:
        m = mmap.mmap(fh.fileno(), 4096)
        try:
            return int.from_bytes(m[0x10:0x14], "little")
        finally:
            m.close()


def guest(share: str) -> None:
    out: dict = {"e1000": {}, "e1000e": {}}

    def step(role, name, fn, *args, **kw):
        try:
            out[role][name] = fn(*args, **kw)
        except Exception as exc:           # keep going: every observation counts
            out[role][name] = {"exception": repr(exc)}

    devs = Path("/sys/bus/pci/devices")
    bdf = {}
    for role, (vendor, device) in IDS.items():
        for d in sorted(devs.iterdir()):
            if (d / "vendor").read_text().strip() == vendor and (d / "device").read_text().strip() == device:
                bdf[role] = d.name
    out["bdf"] = bdf
    out["drivers_at_start"] = {r: _driver(b) for r, b in bdf.items()}
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    for role in IDS:
        b = bdf[role]
        step(role, "bound", _romlab, "nvm", "--pci", b, "show")
        step(role, "show", _romlab, "nvm", "--pci", b, "--unbind", "show", "--json")
        step(role, "driver_after_show", _driver, b)
        step(role, "text", _romlab, "nvm", "--pci", b, "--unbind", "show")
        step(role, "nonroot", _romlab, "nvm", "--pci", b, "--unbind", "show", prefix=nobody)
    e = bdf["e1000e"]
    step("e1000e", "dry_run", _romlab, "nvm", "--pci", e, "--unbind", "set", "0x30=0", "--dry-run", "--json")
    step("e1000e", "write", _romlab, "nvm", "--pci", e, "--unbind", "set", "0x30=0")
    # Through VFIO: the device bound to vfio-pci, BAR0 mapped from the VFIO region.
    step("e1000e", "bind", _romlab, "vfio", "bind", e)
    step("e1000e", "vfio", _romlab, "nvm", "--pci", e, "--via", "vfio", "show", "--json")
    step("e1000e", "unbind", _romlab, "vfio", "unbind", e)
    # QEMU's 82540EM has no FLA: nicintel_spi must fail cleanly and leave EECD.FWE at 01b.
    a = bdf["e1000"]
    Path(f"/sys/bus/pci/devices/{a}/driver/unbind").write_text(a)
    step("e1000", "eecd_before", _eecd, a)
    step("e1000", "flash", _romlab, "flash", "--pci", a, "/usr/lib/ipxe/qemu/pxe-e1000.rom")
    step("e1000", "eecd_after", _eecd, a)
    Path("/sys/bus/pci/drivers/e1000/bind").write_text(a)
    out["drivers_at_end"] = {r: _driver(b) for r, b in bdf.items()}
    Path(share, "nvm-results.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__" and sys.argv[1:2] == ["guest"]:
    guest(sys.argv[2])
    sys.exit(0)


from conftest import REPO, run_romlab  # noqa: E402  (not needed by the guest side)

pytestmark = [pytest.mark.vm, pytest.mark.qemu, pytest.mark.root]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    share = tmp_path_factory.mktemp("nvmshare")
    r = run_romlab("vm", "--timeout", "1200", "--share", str(share),
                   "--nic", f"e1000,mac={MACS['e1000']}", "--nic", f"e1000e,mac={MACS['e1000e']}",
                   "--", sys.executable, str(REPO / "tests" / "test_nvm_vm.py"), "guest", str(share),
                   timeout=1500)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out[-4000:]
    return json.loads((share / "nvm-results.json").read_text())


def _mac_words(mac: str) -> list[int]:
    b = bytes.fromhex(mac.replace(":", ""))
    return [b[0] | b[1] << 8, b[2] | b[3] << 8, b[4] | b[5] << 8]


def test_drivers_given_back(results):
    assert results["drivers_at_start"] == {"e1000": "e1000", "e1000e": "e1000e"}
    assert results["drivers_at_end"] == results["drivers_at_start"]


@pytest.mark.parametrize("role,device_id,icw1", [("e1000", 0x100E, 0x6403), ("e1000e", 0x10D3, 0x026B)])
def test_nvm_show_in_the_guest(results, role, device_id, icw1):
    res = results[role]
    # While the driver holds BAR 0 the kernel will not map it: one line saying what to do.
    err = res["bound"]["stderr"]
    assert res["bound"]["rc"] == 2 and err.count("\n") == 1 and f"the {role} driver holds BAR 0" in err, err
    assert "--unbind" in err and "--via vfio" in err
    assert res["show"]["rc"] == 0, res["show"]["stderr"]
    assert res["driver_after_show"] == role
    nvm = json.loads(res["show"]["stdout"])
    assert nvm["mac"] == MACS[role] and nvm["words"][0:3] == _mac_words(MACS[role])
    assert nvm["checksum"]["valid"] and sum(nvm["words"]) & 0xFFFF == 0xBABA
    assert nvm["device_id"] == device_id and nvm["init_control_1"] == icw1
    assert nvm["boot_version"]["text"] == "1.2.28"
    assert f"mac: {MACS[role]}" in res["text"]["stdout"] and "valid (0xbaba)" in res["text"]["stdout"]
    err = res["nonroot"]["stderr"]
    assert res["nonroot"]["rc"] == 2 and err.count("\n") == 1 and "needs root" in err, err


def test_e1000e_edits_dry_run_refused_write_and_vfio(results):
    res = results["e1000e"]
    dry = json.loads(res["dry_run"]["stdout"])
    old = dry["words"][0x3F]
    assert dry["changes"] == [{"word": 0x30, "old": 0x0100, "new": 0},
                              {"word": 0x3F, "old": old, "new": (old + 0x0100) & 0xFFFF}]
    assert res["write"]["rc"] == 2 and "ethtool -E" in res["write"]["stderr"]
    assert res["bind"]["rc"] == 0, res["bind"]["stderr"]
    assert res["vfio"]["rc"] == 0, res["vfio"]["stderr"]
    assert json.loads(res["vfio"]["stdout"])["words"] == json.loads(res["show"]["stdout"])["words"]
    assert res["unbind"]["rc"] == 0, res["unbind"]["stderr"]


def test_flash_on_a_nic_without_fla(results):
    res = results["e1000"]
    err = res["flash"]["stderr"]
    assert res["flash"]["rc"] == 2 and "FLA.GNT" in err and err.count("\n") <= 2, err
    assert res["eecd_before"] & 0x30 == 0x00          # QEMU starts with FWE = 00b
    assert res["eecd_after"] & 0x30 == 0x10           # romlab left "flash writes disabled"
