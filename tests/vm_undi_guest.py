"""Runs inside `romlab vm` (tests/test_undi_vm.py): each NIC's own UNDI driver, read from its ROM BAR
through VFIO, driving the NIC, against the Linux kernel's driver on a second NIC of the same model on
the same link; then the ROMs that must be refused or stopped. Writes one JSON result file the host
test asserts on.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from drivers import frames  # noqa: E402
from test_undi_crafted import LOADER, crafted  # noqa: E402

ROMLAB = [sys.executable, "-m", "romlab"]
OUT = sys.argv[1]
MACS = json.loads(sys.argv[2])  # model -> [MAC of the NIC romlab's UNDI drives, MAC of the kernel's]
COUNT, SIZE = 100, 128
FLOOD_PPS = 200
WARMUP, WARMUP_PAUSE = 8, 1.5
result: dict = {"steps": [], "models": {}}


def romlab(*args, timeout=600):
    t0 = time.monotonic()
    r = subprocess.run(ROMLAB + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    result["steps"].append({"argv": [str(a) for a in args], "rc": r.returncode, "out": r.stdout[-2000:],
                            "err": r.stderr[-2000:], "seconds": time.monotonic() - t0})
    save()
    return r


def save() -> None:
    """The result so far: a run cut short by the VM's timeout still shows how far it came."""
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)


def by_mac() -> dict[str, tuple[str, str]]:
    """MAC -> (BDF, interface) of every NIC a kernel driver has."""
    out = {}
    for ifname in os.listdir("/sys/class/net"):
        dev = f"/sys/class/net/{ifname}/device"
        if os.path.exists(dev):
            mac = open(f"/sys/class/net/{ifname}/address").read().strip()
            out[mac] = (os.path.basename(os.path.realpath(dev)), ifname)
    return out


def driver_of(bdf: str) -> str | None:
    link = f"/sys/bus/pci/devices/{bdf}/driver"
    return os.path.basename(os.path.realpath(link)) if os.path.exists(link) else None


def kernel_socket(ifname: str) -> socket.socket:
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")  # no neighbour discovery frames beside the test frames
    subprocess.run(["ip", "link", "set", ifname, "up", "promisc", "on"], check=True, capture_output=True)
    deadline = time.monotonic() + 20
    while open(f"/sys/class/net/{ifname}/carrier").read().strip() != "1":
        if time.monotonic() > deadline:
            raise AssertionError(f"{ifname}: no carrier")
        time.sleep(0.1)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(frames.ETHERTYPE))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ifname, frames.ETHERTYPE))
    s.settimeout(0.5)
    return s


def rx_packets(ifname: str) -> int:
    return int(open(f"/sys/class/net/{ifname}/statistics/rx_packets").read())


def undi_to_kernel(bdf: str, s: socket.socket, ifname: str, seed: int) -> dict:
    seen: set = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set() and len(seen) < COUNT:
            try:
                f = s.recv(4096)
            except socket.timeout:
                continue
            seq = frames.check(f, seed)
            if seq is not None:
                seen.add(seq)

    before = rx_packets(ifname)
    t = threading.Thread(target=reader)
    t.start()
    r = romlab("undi", "send", "--pci", bdf, "--count", COUNT, "--size", SIZE, "--seed", seed, "--json")
    deadline = time.monotonic() + 10
    while len(seen) < COUNT and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join()
    doc = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()}
    return {"rc": r.returncode, "doc": doc, "kernel_rx_packets": rx_packets(ifname) - before,
            "kernel_intact": len(seen), "kernel_sequences_ok": seen == set(range(COUNT))}


def kernel_to_undi(bdf: str, s: socket.socket, ifname: str, seed: int, interval: float, timeout: float) -> dict:
    """romlab undi recv started; once it is receiving, COUNT frames from the kernel's side,
    ``interval`` seconds apart."""
    p = subprocess.Popen(ROMLAB + ["undi", "recv", "--pci", bdf, "--count", str(COUNT), "--seed", str(seed),
                                   "--timeout", str(timeout), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = p.stderr.readline().strip()  # "romlab undi: ... receiving" once OPEN has returned
    src = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
    # Warm-up frames of another seed (received, not counted): the first frames make unicorn translate
    # the ROM's receive path, which under nested emulation holds the receiver up for about a second,
    # long enough for the stream's first frames to overflow the ROM's few receive descriptors.
    for i in range(WARMUP):
        s.send(frames.frame(src, frames.BROADCAST, seed + 1000, i, SIZE))
        time.sleep(interval)
    time.sleep(WARMUP_PAUSE)
    t0 = time.monotonic()
    for i in range(COUNT):
        s.send(frames.frame(src, frames.BROADCAST, seed, i, SIZE))
        time.sleep(interval)  # never a burst to catch up: a sender held up by the host goes on at the pace
    sent_in = time.monotonic() - t0
    out, err = p.communicate(timeout=timeout + 300)
    doc = json.loads(out) if out.strip().startswith("{") else {"error": err.strip()}
    result["steps"].append({"argv": p.args[len(ROMLAB):], "rc": p.returncode, "out": out[-2000:],
                            "err": err[-2000:], "seconds": time.monotonic() - t0})
    save()
    return {"ready": ready, "rc": p.returncode, "sent_in": sent_in, "interval": interval, "doc": doc,
            "sequences_ok": sorted(doc.get("sequences", [])) == list(range(COUNT))}


def model_run(model: str, undi_mac: str, kernel_mac: str, seed: int) -> dict:
    nics = by_mac()
    bdf, kernel_bdf = nics[undi_mac][0], nics[kernel_mac][0]
    ifname = nics[kernel_mac][1]
    res: dict = {"bdf": bdf, "driver_before": driver_of(bdf), "kernel": kernel_bdf}
    s = kernel_socket(ifname)
    try:
        res["send"] = undi_to_kernel(bdf, s, ifname, seed)
        res["driver_after_send"] = driver_of(bdf)
        # The receive rate: frames offered at FLOOD_PPS, above what the ROM's UNDI takes under nested
        # emulation, for long enough that its few receive descriptors fill and it works flat out.
        res["flood"] = kernel_to_undi(bdf, s, ifname, seed + 1, 1 / FLOOD_PPS, 6)
        rate = res["flood"]["doc"].get("pps") or 0
        res["measured_pps"] = rate
        res["paced_pps"] = rate / 2 if rate else 5.0
        res["paced"] = kernel_to_undi(bdf, s, ifname, seed + 2, 1 / res["paced_pps"],
                                      COUNT / res["paced_pps"] + 30)
    finally:
        s.close()
    res["driver_after"] = driver_of(bdf)
    return res


def bad_roms(bdf: str) -> dict:
    res: dict = {}
    tmp = tempfile.mkdtemp()

    def case(name, rom_path, *extra):
        r = romlab("undi", "info", "--pci", bdf, "--rom", rom_path, *extra)
        res[name] = {"rc": r.returncode, "err": r.stderr.strip(), "driver_after": driver_of(bdf),
                     "seconds": result["steps"][-1]["seconds"]}

    rtl = "/usr/lib/ipxe/qemu/pxe-rtl8139.rom"
    case("mismatch", rtl)
    case("force_ids", rtl, "--force-ids")
    roms = {"loops": bytes.fromhex("fa ebfe"),                            # cli; jmp $
            "writes_outside_ram": bytes.fromhex("b800a0 8ec0 26c606000055 cb"),  # mov byte es:[0] at A000:0
            "port_outside": bytes.fromhex("baf803 b041 ee cb")}            # out 3F8h, al
    for name, code in roms.items():
        path = os.path.join(tmp, name + ".rom")
        with open(path, "wb") as f:
            f.write(crafted({LOADER: code}, device_id=0x100E))
        case(name, path, "--watchdog", "2")
    return res


def main() -> None:
    try:
        first = MACS["e1000"][0]
        bdf = by_mac()[first][0]
        r = romlab("undi", "info", "--pci", bdf, "--json")
        result["info"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()}
        result["info_driver_after"] = driver_of(bdf)
        for n, (model, (undi_mac, kernel_mac)) in enumerate(MACS.items()):
            result["models"][model] = model_run(model, undi_mac, kernel_mac, 40 + 10 * n)
        result["bad"] = bad_roms(bdf)
    except Exception:  # recorded for the host test to show
        import traceback

        result["exception"] = traceback.format_exc()
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    result["dmesg_dmar"] = [line for line in dmesg.splitlines() if "DMAR" in line and "fault" in line.lower()]
    result["dmesg_warn"] = [line for line in dmesg.splitlines() if "WARNING" in line or "Call Trace" in line]
    result["done"] = True
    save()


if __name__ == "__main__":
    main()
