"""The CH341A emulator as a real USB device (dummy_hcd + GadgetFS) inside `romlab vm`, in one boot.

Debian's flashrom (`-p ch341a_spi`, libusb) is the independent host: it probes,
reads, writes and verifies a 64 KiB W25X05 held by the emulator; then romlab's
own pyusb client reads it back and writes an option ROM into it. This file is
also the guest program (`python tests/test_ch341a_vm.py guest SHARE`); the
assertions are made on the host against the images it wrote.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHIP = "W25X05"
SIZE = 65536


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


def guest(share: str) -> None:
    s = Path(share)
    out: dict = {}
    work = Path("/dev/shm/ch341a")
    work.mkdir(parents=True, exist_ok=True)
    image = work / "chip.bin"
    shutil.copyfile(s / "original.bin", image)
    # dummy_hcd at its default high speed: see romtools/flash/ch341a_gadget.py for why not full speed.
    out["modprobe"] = [_run(["modprobe", "dummy_hcd"]), _run(["modprobe", "gadgetfs"])]
    emu = subprocess.Popen([sys.executable, "-m", "romtools.flash.ch341a_gadget", "--image", str(image),
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


if __name__ == "__main__" and sys.argv[1:2] == ["guest"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    guest(sys.argv[2])
    sys.exit(0)


import random  # noqa: E402

from conftest import REPO, run_romlab  # noqa: E402
from test_flash_cli import synthetic_rom  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.qemu, pytest.mark.root]


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory):
    share = tmp_path_factory.mktemp("ch341ashare")
    os.chmod(share, 0o777)
    original = random.Random(11).randbytes(SIZE)
    new = random.Random(12).randbytes(SIZE)
    rom = synthetic_rom(16384, seed=13)
    (share / "original.bin").write_bytes(original)
    (share / "new.bin").write_bytes(new)
    (share / "small.rom").write_bytes(rom)
    # One NIC, unused: `romlab vm` with none exits 255 before running anything (seen with QEMU 7.2 here).
    r = run_romlab("vm", "--timeout", "1500", "--share", str(share), "--nic", "e1000", "--",
                   sys.executable, str(REPO / "tests" / "test_ch341a_vm.py"), "guest", str(share), timeout=1800)
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, log[-4000:]
    res = json.loads((share / "ch341a-results.json").read_text())
    return {"dir": share, "res": res, "original": original, "new": new, "rom": rom}


def _ok(step):
    assert step["rc"] == 0, (step["cmd"], step["stdout"][-1500:], step["stderr"][-1500:])
    return step


def test_emulator_is_a_usb_device_with_the_ch341a_identity(guest_run):
    res = guest_run["res"]
    assert all(m["rc"] == 0 for m in res["modprobe"]), res["modprobe"]
    assert res["usb_device"], (res["emulator_started"], res["emulator_stderr"])
    d = res["descriptors"]
    assert (d["idVendor"], d["idProduct"], d["bDeviceClass"], d["bcdDevice"], d["speed"]) == \
        ("1a86", "5512", "ff", "0304", "480")
    assert {"ep_02", "ep_82", "ep_81"} <= set(res["endpoints"]), res["endpoints"]


def test_flashrom_probes_reads_writes_and_verifies(guest_run):
    res, d = guest_run["res"], guest_run["dir"]
    assert 'Found Winbond flash chip "W25X05"' in _ok(res["probe"])["stdout"]
    _ok(res["read"])
    assert (d / "flashrom-read.bin").read_bytes() == guest_run["original"]
    _ok(res["write"])
    assert "VERIFIED" in _ok(res["verify"])["stdout"]


def test_romlab_client_reads_and_writes(guest_run):
    res, d = guest_run["res"], guest_run["dir"]
    _ok(res["romlab_read"])
    assert (d / "romlab-read.bin").read_bytes() == guest_run["new"]
    out = json.loads(_ok(res["romlab_write"])["stdout"])
    assert out["chip"] == "W25X05" and out["jedec"] == "ef3010" and out["verified"]
    assert Path(out["backup"]).read_bytes() == guest_run["new"]      # the backup is what flashrom wrote
    rom = guest_run["rom"]
    final = (d / "final.bin").read_bytes()
    assert final == rom + b"\xff" * (SIZE - len(rom))
    assert "flash matches the ROM" in _ok(res["romlab_verify"])["stdout"]
    assert res["emulator_rc"] == 0
    stats = json.loads((d / "emulator-stats.json").read_text())
    assert stats["errors"] == [] and stats["device"]["unknown"] == 0
