"""In-system and USB flashing inside `romlab vm`: every check in one guest boot.

One q35 guest (Debian's kernel, real sysfs, vIOMMU) with QEMU's e1000 (82540EM)
and e1000e (82574L):

* `romlab nvm` on both NICs: bound drivers refused with a one-line message,
  `--unbind` (the driver is bound again after), not root, VFIO, edits refused
  with the ethtool advice; `romlab flash --pci` on the e1000, which has no FLA:
  a clean failure that leaves EECD.FWE at 01b.
* The CH341A emulator as a USB device (dummy_hcd + GadgetFS): Debian's flashrom
  (`-p ch341a_spi`) probes, reads, writes and verifies it; romlab's pyusb client
  reads it and writes an option ROM into it.
* docs/flashing.md's `--programmer ch341a` examples (chosen by tests/test_docs_examples.py),
  as typed, on a second emulated chip: a 128 KiB W25X10 holding an older ROM.

This file is also the guest program (`python tests/test_flash_vm.py guest
SHARE`); it writes what it saw to SHARE and the assertions are made on the host,
against QEMU's EEPROM templates (hw/net/e1000.c, hw/net/e1000e.c,
hw/net/e1000x_common.c), the MACs given and the images written.
"""
from __future__ import annotations

import json
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MACS = {"e1000": "52:54:00:65:43:21", "e1000e": "52:54:00:65:43:22"}
IDS = {"e1000": ("0x8086", "0x100e"), "e1000e": ("0x8086", "0x10d3")}
CHIP = "W25X05"
SIZE = 65536
DOCS_CHIP, DOCS_SIZE = "W25X10", 128 * 1024
ORIGINAL = random.Random(11).randbytes(SIZE)
NEW = random.Random(12).randbytes(SIZE)


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


def guest_nvm(share: str) -> None:
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



def _run(cmd, timeout=600, env=None):
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return {"cmd": cmd, "rc": r.returncode, "stdout": r.stdout[-6000:], "stderr": r.stderr[-3000:],
            "seconds": round(time.monotonic() - t0, 2)}


def _usb_device():
    for d in Path("/sys/bus/usb/devices").iterdir():
        try:
            if (d / "idVendor").read_text().strip() == "1a86" and (d / "idProduct").read_text().strip() == "5512":
                return d
        except OSError:
            continue
    return None


def guest_ch341a(share: str) -> None:
    s = Path(share)
    out: dict = {}
    work = Path("/dev/shm/ch341a")
    work.mkdir(parents=True, exist_ok=True)
    image = work / "chip.bin"
    shutil.copyfile(s / "original.bin", image)
    # dummy_hcd at its default high speed: see romtools/flash/ch341a_gadget.py for why not full speed.
    out["modprobe"] = [_run(["modprobe", "dummy_hcd"]), _run(["modprobe", "gadgetfs"])]
    emu = subprocess.Popen([sys.executable, "-m", "romtools.flash.sim.ch341a_gadget", "--image", str(image),
                            "--chip", CHIP, "--stats", str(s / "emulator-stats.json")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out["emulator_started"] = emu.stdout.readline().strip()
        dev = None
        deadline = time.monotonic() + 60
        while dev is None and time.monotonic() < deadline and emu.poll() is None:
            dev = _usb_device()
            time.sleep(0.2)
        out["usb_device"] = dev.name if dev else None
        if dev:
            out["descriptors"] = {n: (dev / n).read_text().strip() for n in ("idVendor", "idProduct", "bDeviceClass",
                                                                             "bcdDevice", "speed")}
            intf = dev / f"{dev.name}:1.0"
            out["endpoints"] = sorted(p.name for p in intf.glob("ep_*")) if intf.exists() else []
        fr = ["flashrom", "-p", "ch341a_spi"]
        out["probe"] = _run(fr)
        out["read"] = _run(fr + ["-c", CHIP, "-r", str(s / "flashrom-read.bin")])
        out["write"] = _run(fr + ["-c", CHIP, "-w", str(s / "new.bin")])
        out["verify"] = _run(fr + ["-c", CHIP, "-v", str(s / "new.bin")])
        rl = [sys.executable, "-m", "romlab", "flash", "--programmer", "ch341a", "--no-progress"]
        env = dict(os.environ, ROMLAB_BACKUP_DIR=str(s / "backups"))
        out["romlab_read"] = _run(rl + ["--read", str(s / "romlab-read.bin")], env=env)
        out["romlab_write"] = _run(rl + [str(s / "small.rom"), "--layout", "rom-at-0", "--json"], env=env)
        out["romlab_verify"] = _run(rl + [str(s / "small.rom"), "--layout", "rom-at-0", "--verify-only"], env=env)
    finally:
        emu.send_signal(signal.SIGTERM)
        try:
            _, err = emu.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            emu.kill()
            _, err = emu.communicate()
        out["emulator_rc"] = emu.returncode
        out["emulator_stderr"] = err[-3000:]
        shutil.copyfile(image, s / "final.bin")
        (s / "ch341a-results.json").write_text(json.dumps(out, indent=1))


def guest_docs(share: str) -> None:
    """The documented CH341A examples, through tests/docs_guest.py, on a fresh emulator whose
    chip starts as SHARE/docs-chip-before.bin; what it holds after is SHARE/docs-chip-after.bin."""
    import docs_guest

    s = Path(share)
    image = Path("/dev/shm/ch341a/docs-chip.bin")
    image.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(s / "docs-chip-before.bin", image)
    for mod in ("dummy_hcd", "gadgetfs"):
        _run(["modprobe", mod])
    deadline = time.monotonic() + 60
    while _usb_device() is not None and time.monotonic() < deadline:   # the first emulator's, going
        time.sleep(0.2)
    emu = subprocess.Popen([sys.executable, "-m", "romtools.flash.sim.ch341a_gadget", "--image", str(image),
                            "--chip", DOCS_CHIP], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        emu.stdout.readline()
        deadline = time.monotonic() + 60
        while _usb_device() is None and time.monotonic() < deadline and emu.poll() is None:
            time.sleep(0.2)
        docs_guest.run_all(share, {}, progress=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        emu.send_signal(signal.SIGTERM)
        try:
            _, err = emu.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            emu.kill()
            _, err = emu.communicate()
        shutil.copyfile(image, s / "docs-chip-after.bin")
        (s / "docs-emulator.log").write_text(f"exit {emu.returncode}\n{err[-3000:]}")


if __name__ == "__main__" and sys.argv[1:2] == ["guest"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for part in (guest_nvm, guest_ch341a, guest_docs):
        try:
            part(sys.argv[2])
        except Exception as exc:          # the other part still runs; the host sees what is missing
            print(f"guest part {part.__name__} failed: {exc!r}", file=sys.stderr)
    sys.exit(0)


from conftest import IPXE_QEMU, REPO, run_romlab  # noqa: E402  (not needed by the guest side)
from test_docs_examples import check_guest_run, export_for_guest, guest_examples  # noqa: E402
from test_flash_cli import synthetic_rom  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.qemu, pytest.mark.root]
ROM = synthetic_rom(16384, seed=13)
# The documented examples' chip: an older ROM (Debian's for the 82540EM) at 0, then erased flash.
_OLD = (IPXE_QEMU / "pxe-e1000.rom").read_bytes()
DOCS_BEFORE = _OLD + b"\xff" * (DOCS_SIZE - len(_OLD))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    share = tmp_path_factory.mktemp("flashvm")
    os.chmod(share, 0o777)
    (share / "original.bin").write_bytes(ORIGINAL)
    (share / "new.bin").write_bytes(NEW)
    (share / "small.rom").write_bytes(ROM)
    export_for_guest("flash_vm", share)
    (share / "docs-chip-before.bin").write_bytes(DOCS_BEFORE)
    t0 = time.monotonic()
    # Two vCPUs: the CH341A gadget (a program in the guest behind dummy_hcd) and its client must run
    # side by side; on one TCG vCPU their USB transfers time out, flashrom's as well as romlab's.
    r = run_romlab("vm", "--cpus", "2", "--timeout", "1500", "--share", str(share),
                   "--nic", f"e1000,mac={MACS['e1000']}", "--nic", f"e1000e,mac={MACS['e1000e']}",
                   "--", sys.executable, str(REPO / "tests" / "test_flash_vm.py"), "guest", str(share),
                   timeout=1800)
    print(f"guest boot and checks: {time.monotonic() - t0:.0f} s")
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, log[-4000:]
    out = json.loads((share / "nvm-results.json").read_text())
    out["ch341a"] = json.loads((share / "ch341a-results.json").read_text())
    out["dir"] = share
    if (share / "docs-results.json").exists():
        docs = json.loads((share / "docs-results.json").read_text())
        each = ", ".join(f"{r['id']} {r.get('seconds')} s" for r in docs)
        print(f"of which the documented examples: {sum(r.get('seconds', 0) for r in docs):.0f} s ({each})")
    return out


def _mac_words(mac: str) -> list[int]:
    b = bytes.fromhex(mac.replace(":", ""))
    return [b[0] | b[1] << 8, b[2] | b[3] << 8, b[4] | b[5] << 8]


def test_drivers_given_back(results):
    assert results["drivers_at_start"] == {"e1000": "e1000", "e1000e": "e1000e"}
    assert results["drivers_at_end"] == results["drivers_at_start"]


@pytest.mark.parametrize("role,device_id,icw1", [("e1000", "100e", 0x6403), ("e1000e", "10d3", 0x026B)])
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
    assert nvm["nvm_device"] == device_id and nvm["init_control_1"] == icw1
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


def _ok(step):
    assert step["rc"] == 0, (step["cmd"], step["stdout"][-1500:], step["stderr"][-1500:])
    return step


def test_emulator_is_a_usb_device_with_the_ch341a_identity(results):
    res = results["ch341a"]
    assert all(m["rc"] == 0 for m in res["modprobe"]), res["modprobe"]
    assert res["usb_device"], (res["emulator_started"], res["emulator_stderr"])
    d = res["descriptors"]
    assert (d["idVendor"], d["idProduct"], d["bDeviceClass"], d["bcdDevice"], d["speed"]) == \
        ("1a86", "5512", "ff", "0304", "480")
    assert {"ep_02", "ep_82", "ep_81"} <= set(res["endpoints"]), res["endpoints"]


def test_flashrom_probes_reads_writes_and_verifies(results):
    res, d = results["ch341a"], results["dir"]
    assert 'Found Winbond flash chip "W25X05"' in _ok(res["probe"])["stdout"]
    _ok(res["read"])
    assert (d / "flashrom-read.bin").read_bytes() == ORIGINAL
    _ok(res["write"])
    assert "VERIFIED" in _ok(res["verify"])["stdout"]


def test_romlab_client_reads_and_writes(results):
    res, d = results["ch341a"], results["dir"]
    _ok(res["romlab_read"])
    assert (d / "romlab-read.bin").read_bytes() == NEW
    out = json.loads(_ok(res["romlab_write"])["stdout"])
    assert out["chip"] == "W25X05" and out["jedec"] == "ef3010" and out["verified"]
    assert Path(out["backup"]).read_bytes() == NEW      # the backup is what flashrom wrote
    rom = ROM
    final = (d / "final.bin").read_bytes()
    assert final == rom + b"\xff" * (SIZE - len(rom))
    assert "flash matches the ROM" in _ok(res["romlab_verify"])["stdout"]
    assert res["emulator_rc"] == 0
    stats = json.loads((d / "emulator-stats.json").read_text())
    assert stats["errors"] == [] and stats["device"]["unknown"] == 0


@pytest.mark.parametrize("ex_id", [e["id"] for e in guest_examples("flash_vm")])
def test_documented_programmer_example_ran_as_documented(results, ex_id):
    check_guest_run("flash_vm", results["dir"], ex_id)


def test_documented_programmer_examples_read_then_wrote_the_chip(results):
    """--read saved what the chip held; the write left ipxe.rom (Debian's 82574L ROM, as
    test_docs_examples.FIXTURES has it) at 0 and erased flash after it, --layout rom-at-0."""
    d = results["dir"]
    read = next(r for r in json.loads((d / "docs-results.json").read_text()) if "--read" in r.get("argv", ()))
    assert (Path(read["work"]) / "before.bin").read_bytes() == DOCS_BEFORE
    ipxe = (IPXE_QEMU / "pxe-e1000e.rom").read_bytes()
    assert (d / "docs-chip-after.bin").read_bytes() == ipxe + b"\xff" * (DOCS_SIZE - len(ipxe)), \
        (d / "docs-emulator.log").read_text()
