"""Runs inside the `romlab vm` guest of tests/test_vm.py: one boot, many checks.

Each check records what it saw (exit codes, messages, bytes written to files, device
state before and after) in ``OUT/results.json``; the host-side test asserts on it.
Nothing here decides pass or fail, so a crash in one check cannot hide another.

Usage: python vm_guest_e2e.py OUT CONFIG_JSON
CONFIG: {"nics": {role: mac}, "tx_payload_hex": ...}
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import traceback

OUT = sys.argv[1]
CONFIG = json.loads(sys.argv[2])
PY = sys.executable
RESULTS: dict = {}
STUCK: set = set()  # devices an earlier check left in a state later checks cannot use

# 8254x registers (Intel 8254x Software Developer's Manual, section 13)
CTRL, STATUS, EERD, ICR, ICS, IMS, IMC = 0x0000, 0x0008, 0x0014, 0x00C0, 0x00C8, 0x00D0, 0x00D8
TCTL, TIPG = 0x0400, 0x0410
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
RAL0, RAH0 = 0x5400, 0x5404
EERD_START, EERD_DONE = 1 << 0, 1 << 4
ICR_LSC = 1 << 2
TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS = 0x01, 0x02, 0x08
TXD_STAT_DD = 0x01


def progress(msg: str) -> None:
    """A line in OUT/progress.log, readable on the host while the guest runs."""
    with open(os.path.join(OUT, "progress.log"), "a") as f:
        f.write(f"{time.monotonic():9.1f} {msg}\n")


def _stacks() -> str:
    """Kernel stacks of every python process and the end of dmesg: what a hang was waiting on."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            if "romlab" in cmd:
                out.append(f"== {pid} {cmd}\n" + open(f"/proc/{pid}/stack").read())
        except OSError:
            pass
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()[-40:]
    return "\n".join(out) + "\n-- dmesg\n" + "\n".join(dmesg)


def romlab(*args, prefix=(), timeout=240, fresh=False):
    """The CLI on ARGS: in this process through romlab.cli.main (the code `python -m romlab`
    runs), or in a fresh interpreter when a prefix (setpriv, capsh) or ``fresh`` asks for one.
    A fresh Python costs 15-25 s under TCG over 9p, so most checks stay in-process."""
    if not prefix and not fresh:
        import contextlib
        import io

        from romlab.cli import main

        progress("main " + " ".join(map(str, args)))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as exc:  # argparse usage errors
                rc = exc.code
        progress(f"  rc={rc} {err.getvalue().strip()[:200]}")
        return {"cmd": ["romlab", *map(str, args)], "rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}
    cmd = [*prefix, PY, "-m", "romlab", *map(str, args)]
    progress("run " + " ".join(cmd))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = _stacks()
        progress("TIMEOUT\n" + stacks)
        p.kill()
        out, err = p.communicate()
        return {"cmd": cmd, "rc": "timeout", "stdout": out, "stderr": err, "stacks": stacks}
    progress(f"  rc={p.returncode} {err.strip()[:200]}")
    return {"cmd": cmd, "rc": p.returncode, "stdout": out, "stderr": err}


def record(name):
    def deco(fn):
        progress(f"check {name}")
        try:
            RESULTS[name] = fn()
        except Exception:
            RESULTS[name] = {"exception": traceback.format_exc()}
            progress(RESULTS[name]["exception"])
        return fn
    return deco


def bdf_by_mac() -> dict:
    found = {}
    base = "/sys/bus/pci/devices"
    for d in sorted(os.listdir(base)):
        net = os.path.join(base, d, "net")
        if not os.path.isdir(net):
            continue
        for iface in os.listdir(net):
            with open(os.path.join(net, iface, "address")) as f:
                found[f.read().strip()] = d
    return found


def driver(bdf):
    try:
        return os.path.basename(os.readlink(f"/sys/bus/pci/devices/{bdf}/driver"))
    except FileNotFoundError:  # none, or between two drivers
        return None


def rom_state(bdf):
    from hw.pci import PciDevice

    dev = PciDevice.open(bdf)
    return {"driver": dev.driver, "rom_bar_enabled": dev.rom_bar_enabled(),
            "rom_attr_enabled": dev.rom_attr_enabled() if (dev.path / "rom").exists() else None}


import faulthandler  # noqa: E402

_fh = open(os.path.join(OUT, "stacks.log"), "w")
faulthandler.dump_traceback_later(600, repeat=True, file=_fh)
macs = bdf_by_mac()
BDF = {role: macs.get(mac) for role, mac in CONFIG["nics"].items()}
RESULTS["bdf"] = BDF
RESULTS["kernel_release"] = os.uname().release
RESULTS["drivers_at_start"] = {role: driver(b) for role, b in BDF.items() if b}


@record("list")
def _():
    return {"json": romlab("list", "--json", fresh=True), "text": romlab("list"),
            "nonroot": romlab("list", "--json", prefix=("setpriv", "--reuid=65534", "--regid=65534",
                                                        "--clear-groups"))}


@record("lspci")
def _():
    out = {}
    for role, bdf in BDF.items():
        r = subprocess.run(["lspci", "-vvv", "-s", bdf], capture_output=True, text=True)
        from hw.pci import PciDevice

        dev = PciDevice.open(bdf)
        out[role] = {"lspci": r.stdout, "caps": [c.to_json() for c in dev.capabilities()],
                     "bars": [b.to_json() for b in dev.bars()], "rom": dev.rom_bar_size}
    return out


@record("dumps")
def _():
    out = {}
    for role in ("e1000", "e1000e", "own"):
        bdf = BDF[role]
        before = rom_state(bdf)
        runs = {}
        for via in ("sysfs", "vfio"):
            runs[via] = romlab("dump", "--pci", bdf, "--via", via, "-o", f"{OUT}/{role}-{via}.rom",
                               fresh=(role == "e1000"))
            runs[via]["after"] = rom_state(bdf)
        runs["raw"] = romlab("dump", "--pci", bdf, "--raw", "-o", f"{OUT}/{role}-raw.rom")
        runs["raw"]["after"] = rom_state(bdf)
        if role == "e1000":
            runs["short_bdf"] = romlab("dump", "--pci", bdf[5:], "-o", f"{OUT}/{role}-short.rom")
        out[role] = {"before": before, "runs": runs}
    return out


@record("pci_readers")
def _():
    """inspect/lint --pci read the device through hw.access.read_rom (sysfs, then VFIO)."""
    e1000, own = BDF["e1000"], BDF["own"]
    return {"inspect_sysfs": romlab("inspect", "--pci", e1000, "--json"),
            "inspect_vfio": romlab("inspect", "--pci", e1000, "--via", "vfio", "--json"),
            "inspect_own": romlab("inspect", "--pci", own, "--json"),
            "lint": romlab("lint", "--pci", e1000),
            "vfio_info_text": romlab("vfio", "info", e1000),
            "vfio_info_json": romlab("vfio", "info", e1000, "--json"),
            "driver_after": driver(e1000)}


@record("bad")
def _():
    e1000, norom = BDF["e1000"], BDF["norom"]
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    ich9 = "0000:00:1f.2"
    out = {
        "missing_bdf": romlab("dump", "--pci", "0000:3f:1f.7", "-o", f"{OUT}/missing.rom"),
        "no_rom_sysfs": romlab("dump", "--pci", norom, "-o", f"{OUT}/norom.rom"),
        "no_rom_vfio": romlab("dump", "--pci", norom, "--via", "vfio", "-o", f"{OUT}/norom.rom"),
        "no_rom_driver_after": driver(norom),
        "not_root_dump": romlab("dump", "--pci", e1000, "-o", "/dev/shm/nonroot.rom", prefix=nobody),
        "not_root_bind": romlab("vfio", "bind", e1000, prefix=nobody),
        "not_root_driver_after": driver(e1000),
        "group_driver_before": driver(ich9),
        "group_bind": romlab("vfio", "bind", ich9),
        "group_driver_after": driver(ich9),
        "group_members": sorted(os.listdir(f"/sys/bus/pci/devices/{ich9}/iommu_group/devices")),
        "raw_sysfs": romlab("dump", "--pci", e1000, "--via", "sysfs", "--raw", "-o", f"{OUT}/rawsysfs.rom"),
    }
    out["memlock_bind"] = romlab("vfio", "bind", e1000)
    out["memlock_ok"] = romlab("vfio", "info", e1000, "--dma", "64K", "--json")
    r = subprocess.run(["capsh", "--drop=cap_ipc_lock", "--", "-c",
                        f"ulimit -l 0; exec {PY} -m romlab vfio info {e1000} --dma 64K"],
                       capture_output=True, text=True, timeout=300)
    out["memlock_low"] = {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
    out["memlock_driver_during"] = driver(e1000)
    out["memlock_unbind"] = romlab("vfio", "unbind", e1000)
    out["memlock_driver_after"] = driver(e1000)
    return out


@record("ctrl_c")
def _():
    """SIGINT while `dump --via vfio` holds the device on vfio-pci; the e1000 driver must come back."""
    e1000 = BDF["e1000"]
    runs = []
    for delay in (0.0, 0.05, 0.2, 0.5):
        p = subprocess.Popen([PY, "-m", "romlab", "dump", "--pci", e1000, "--via", "vfio", "--raw",
                              "-o", f"{OUT}/ctrlc.rom", "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen_vfio = False
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            if driver(e1000) == "vfio-pci":
                seen_vfio = True
                break
            time.sleep(0.005)
        if seen_vfio:
            time.sleep(delay)
            p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # A process stuck in the kernel's unbind cannot be killed: record why, and spare the
            # checks after this one a device that will never come back.
            runs.append({"delay": delay, "signalled": seen_vfio, "rc": "timeout", "stacks": _stacks()})
            progress("TIMEOUT\n" + runs[-1]["stacks"])
            STUCK.add(e1000)
            break
        runs.append({"delay": delay, "signalled": seen_vfio, "rc": p.returncode, "stderr": err,
                     "driver_after": driver(e1000), "override_after":
                         open(f"/sys/bus/pci/devices/{e1000}/driver_override").read().strip()})
    return runs


@record("held")
def _():
    """`vfio unbind` while another process holds the device open: refused, not a hung unbind."""
    e1000 = BDF["e1000"]
    if e1000 in STUCK:
        return {"exception": "not run: the e1000 is stuck since the ctrl_c check"}
    out = {"bind": romlab("vfio", "bind", e1000)}
    holder = subprocess.Popen(
        [PY, "-c", "import sys; from hw import vfio; from hw.pci import PciDevice; "
                   f"v = vfio.VfioDevice(PciDevice.open('{e1000}')); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out["holder_pid"] = holder.pid
    out["holder_said"] = holder.stdout.readline().strip()
    out["unbind_held"] = romlab("vfio", "unbind", e1000)
    out["driver_held"] = driver(e1000)
    holder.stdin.close()
    out["holder_rc"] = holder.wait(timeout=120)
    out["unbind_free"] = romlab("vfio", "unbind", e1000)
    out["driver_after"] = driver(e1000)
    return out


@record("vfio_e2e")
def _():
    from hw import vfio, vfio_bind
    from hw.pci import PciDevice

    if BDF["e1000"] in STUCK:
        return {"exception": "not run: the e1000 is stuck since the ctrl_c check"}
    res: dict = {}
    dev = PciDevice.open(BDF["e1000"])
    res["driver_before"] = dev.driver
    vfio_bind.bind(dev)
    res["driver_bound"] = dev.driver
    try:
        with vfio.VfioDevice(dev) as v:
            res["backend"] = v.backend
            res["info"] = v.info()
            res["regions"] = [r.to_json() for r in v.regions()]
            res["irqs"] = [i.to_json() for i in v.irqs()]
            res["iova_ranges"] = [[s, e] for s, e in v.iova.free]
            cfg = v.read_config(0, 4)
            res["config_ids"] = list(struct.unpack("<HH", cfg))
            bar = v.map_bar(0)

            # MAC from the EEPROM through EERD, one 16-bit word at a time
            words = []
            for addr in range(3):
                bar.write32(EERD, (addr << 8) | EERD_START)
                for _ in range(10000):
                    val = bar.read32(EERD)
                    if val & EERD_DONE:
                        break
                words.append((val >> 16) & 0xFFFF)
            mac = b"".join(struct.pack("<H", w) for w in words)
            res["eeprom_mac"] = ":".join(f"{b:02x}" for b in mac)

            # One frame from a DMA buffer through a legacy TX ring (128 bytes, the minimum TDLEN)
            v.set_bus_master(True)
            res["command_reg"] = struct.unpack("<H", v.read_config(4, 2))[0]
            buf = v.dma_alloc(8192)
            res["dma_iova"] = buf.iova
            frame = bytes.fromhex(CONFIG["tx_frame_hex"])
            buf.view[4096:4096 + len(frame)] = frame
            desc = struct.pack("<QHBBBBH", buf.iova + 4096, len(frame), 0,
                               TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS, 0, 0, 0)
            buf.view[0:16] = desc
            bar.write32(TCTL, 0)
            bar.write32(TDBAL, buf.iova & 0xFFFFFFFF)
            bar.write32(TDBAH, buf.iova >> 32)
            bar.write32(TDLEN, 128)
            bar.write32(TDH, 0)
            bar.write32(TDT, 0)
            bar.write32(TIPG, 10 | (8 << 10) | (6 << 20))
            bar.write32(TCTL, (1 << 1) | (1 << 3) | (0x0F << 4) | (0x40 << 12))
            bar.write32(TDT, 1)
            status = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = buf.view[12]
                if status & TXD_STAT_DD:
                    break
                time.sleep(0.001)
            res["tx_status"] = status
            res["tx_tdh"] = bar.read32(TDH)

            # An interrupt forced through ICS, delivered on the INTx eventfd
            bar.write32(IMC, 0xFFFFFFFF)
            bar.read32(ICR)
            v.irq_enable(vfio.C.VFIO_PCI_INTX_IRQ_INDEX)
            res["irq_before"] = v.irq_wait(timeout=0.2)
            bar.write32(IMS, ICR_LSC)
            bar.write32(ICS, ICR_LSC)
            res["irq_count"] = v.irq_wait(timeout=10)
            res["icr_after_irq"] = bar.read32(ICR)
            bar.write32(IMC, 0xFFFFFFFF)
            v.irq_unmask()
            v.irq_disable()

            # Reset: the registers set above go back to their power-on values
            res["before_reset"] = {n: bar.read32(r) for n, r in
                                   (("TDLEN", TDLEN), ("TDBAL", TDBAL), ("TCTL", TCTL), ("TDT", TDT))}
            bar.write32(IMS, ICR_LSC)
            res["reset_supported"] = res["info"]["reset"]
            v.reset()
            res["after_reset"] = {n: bar.read32(r) for n, r in
                                  (("TDLEN", TDLEN), ("TDBAL", TDBAL), ("TCTL", TCTL), ("TDT", TDT),
                                   ("IMS", IMS), ("RAL0", RAL0), ("RAH0", RAH0))}
            v.dma_free(buf)
            res["dma_left"] = len(v.dma)
    finally:
        vfio_bind.unbind(dev)
    res["driver_after"] = dev.driver
    return res


@record("docs")
def _():
    """The pages' examples placed in this guest (tests/test_docs_examples.py exported them): the
    page's 03:00.0 is the e1000 (the e1000e for flashing.md); the rtl8139 without a ROM shares
    the e1000's link and is the peer that sends to `nic recv`."""
    import docs_guest

    if STUCK:
        return {"exception": f"not run: {sorted(STUCK)} stuck since an earlier check"}
    return docs_guest.run_all(OUT, BDF, peer={"e1000": BDF["norom"]}, progress=progress)


RESULTS["drivers_at_end"] = {role: driver(b) for role, b in BDF.items() if b}
with open(os.path.join(OUT, "results.json"), "w") as f:
    json.dump(RESULTS, f, indent=1)
print("guest checks done")
