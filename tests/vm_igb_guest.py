"""Runs inside `romlab vm` (tests/test_igb_vm.py) with two QEMU igb NICs (82576) on one link: romlab's
driver on PF A against the kernel's igb on B, both directions, through the C ring and the Python ring;
then A back on the kernel's igb with two VFs, romlab driving VF 0 (a MAC set on the PF) against B both
ways, then VF 1 (no MAC set: NACK, a random address, SET_MAC) briefly both ways. Writes one
JSON result file the host test asserts on. The helpers are tests/vm_nic_guest.py's.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_nic_guest as G

from drivers import frames
from hw import ethtool
from hw.pci import list_devices

result = G.result
romlab = G.romlab
PF_COUNT, VF_COUNT, PY_COUNT, VF1_COUNT, SIZE = 10_000, 2_000, 1_000, 200, 300
VF_MAC = "52:54:00:00:76:10"
RATE = 500  # frames/s romlab sends at: the kernel's igb on B, emulated, keeps up with it on a loaded host


SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23  # linux/if_packet.h
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def set_rx_ring(ifname: str, want: int = 4096) -> int:
    """Give the kernel driver's receive ring ``want`` descriptors (or its most), as `ethtool -G rx`
    does (the guest has no ethtool): QEMU's igb drops, without counting, what arrives while the ring
    is full, and a peer whose NAPI poll waits on a loaded host needs the room. Returns the size set."""
    most = ethtool.get_ring(ifname)["rx_max_pending"]
    return ethtool.set_ring(ifname, rx=min(want, most))["rx_pending"]


def peer_socket(bdf: str) -> tuple[socket.socket, str, int]:
    """vm_nic_guest's kernel socket on B, made to hold a whole run: a receive buffer past rmem_max
    (the guest runs as root), none of B's own outgoing frames (an AF_PACKET socket sees them too),
    and B's receive ring at its largest."""
    s, ifname = G.kernel_socket(bdf)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    return s, ifname, set_rx_ring(ifname)


def drain(s: socket.socket) -> None:
    s.setblocking(False)
    try:
        while True:
            s.recv(4096)
    except BlockingIOError:
        pass
    finally:
        s.settimeout(0.5)


def peer_stats(ifname: str) -> dict:
    base = f"/sys/class/net/{ifname}/statistics"
    return {n: int(open(f"{base}/{n}").read()) for n in ("rx_packets", "rx_dropped", "rx_missed_errors",
                                                         "rx_fifo_errors", "rx_over_errors")}


def romlab_to_kernel(s: socket.socket, ifname: str, bdf: str, count: int, seed: int, dst: str, rate: int,
                     impl: str = "c") -> dict:
    """romlab sends ``count`` seeded frames to ``dst``; the kernel's side takes every frame off its
    socket as it comes and checks them afterwards: those that arrived intact."""
    raw: list = []
    stop = threading.Event()
    drain(s)

    def reader():
        while not stop.is_set():
            try:
                raw.append(s.recv(4096))
            except TimeoutError:
                continue

    before = peer_stats(ifname)
    t = threading.Thread(target=reader)
    t.start()
    t0 = time.monotonic()
    r = romlab("nic", "send", "--pci", bdf, "--count", count, "--size", SIZE, "--batch", 8, "--rate", rate,
               "--seed", seed, "--dst", dst, "--impl", impl, "--json", timeout=count / rate + 120)
    send_s = time.monotonic() - t0
    deadline = time.monotonic() + 60
    seen: set = set()
    checked = 0
    while time.monotonic() < deadline:  # the last frames may still be on their way
        upto = len(raw)
        seen.update(q for q in (frames.check(f, seed) for f in raw[checked:upto]) if q is not None)
        checked = upto
        if len(seen) >= count:
            break
        time.sleep(0.5)
    stop.set()
    t.join()
    seen = {q for q in (frames.check(f, seed) for f in raw) if q is not None}
    after = peer_stats(ifname)
    doc = json.loads(r.stdout) if r.returncode == 0 else {}
    return {"send_rc": r.returncode, "send_err": r.stderr[-1500:], "sent": doc.get("sent"),
            "send_stats": doc.get("stats"), "send_elapsed_s": doc.get("elapsed_s"), "send_wall_s": send_s,
            "kernel_received_intact": len(seen), "kernel_sequences_ok": seen == set(range(count)),
            "peer_counters": {k: after[k] - before[k] for k in after}}


def pf_run(a: str, b: str) -> dict:
    s, ifname, ring = peer_socket(b)
    G.wait_link(ifname, 20)
    res: dict = {"romlab": a, "kernel": b, "peer_rx_ring": ring}
    res["bind_rc"] = romlab("vfio", "bind", a).returncode
    try:
        r = romlab("nic", "info", "--pci", a, "--json")
        res["info"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-1500:]}
        res["to_kernel"] = romlab_to_kernel(s, ifname, a, PF_COUNT, 41, "ff:ff:ff:ff:ff:ff", RATE)
        t0 = time.monotonic()
        # Polling keeps romlab's receiver runnable beside the sender on the guest's one CPU: QEMU's igb
        # drops, without counting, the frames it has queued for a ring that is full when the ring is
        # next refilled, and a receiver asleep while the sender runs on lets the ring fill.
        res["from_kernel"] = G.kernel_to_romlab(s, ifname, a, PF_COUNT, SIZE, "poll", "c", 42, timeout=240)
        res["from_kernel"]["wall_s"] = time.monotonic() - t0
        res["python"] = G.kernel_to_romlab(s, ifname, a, PY_COUNT, SIZE, "adaptive", "python", 43, timeout=120)
        res["python_to_kernel"] = romlab_to_kernel(s, ifname, a, PY_COUNT, 44, "ff:ff:ff:ff:ff:ff", RATE, "python")
    finally:
        s.close()
        res["unbind_rc"] = romlab("vfio", "unbind", a).returncode
    return res


def sysfs_write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def vf_run(a: str, b: str) -> dict:
    """A on the kernel's igb and up, two VFs, VF 0 given a MAC on the PF and taken by romlab."""
    res: dict = {}
    pf_sock, pf_if = G.kernel_socket(a)  # up (retried until the rebound netdev takes it), no IPv6
    pf_sock.close()
    res["pf_if"] = pf_if
    res["totalvfs"] = int(open(f"/sys/bus/pci/devices/{a}/sriov_totalvfs").read())
    sysfs_write(f"/sys/bus/pci/devices/{a}/sriov_drivers_autoprobe", "0")  # romlab takes VF 0, not igbvf
    t0 = time.monotonic()
    sysfs_write(f"/sys/bus/pci/devices/{a}/sriov_numvfs", "2")
    res["sriov_create_s"] = time.monotonic() - t0
    vfs = [os.path.basename(os.path.realpath(f"/sys/bus/pci/devices/{a}/virtfn{i}")) for i in range(2)]
    res["vfs"] = vfs
    vf = vfs[0]
    deadline = time.monotonic() + 20
    while True:  # the PF's netdev may be renamed under us just after it appears: name it afresh each try
        pf_if = G.iface_of(a)
        ip = subprocess.run(["ip", "link", "set", pf_if, "vf", "0", "mac", VF_MAC], capture_output=True, text=True)
        if ip.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    res["set_vf_mac_rc"], res["set_vf_mac_err"], res["pf_if"] = ip.returncode, ip.stderr.strip(), pf_if
    s, ifname, res["peer_rx_ring"] = peer_socket(b)
    G.wait_link(ifname, 20)
    b_mac = open(f"/sys/class/net/{ifname}/address").read().strip()
    try:
        res["bind_rc"] = romlab("vfio", "bind", vf).returncode
        try:
            r = romlab("nic", "info", "--pci", vf, "--json")
            res["info"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-1500:]}
            res["to_kernel"] = romlab_to_kernel(s, ifname, vf, VF_COUNT, 51, b_mac, RATE)
            t0 = time.monotonic()
            res["from_kernel"] = G.kernel_to_romlab(s, ifname, vf, VF_COUNT, SIZE, "irq", "c", 52,
                                                    dst=bytes.fromhex(VF_MAC.replace(":", "")), timeout=120)
            res["from_kernel"]["wall_s"] = time.monotonic() - t0
        finally:
            res["unbind_rc"] = romlab("vfio", "unbind", vf).returncode
        res["vf1"] = vf_without_mac_run(vfs[1], s, ifname, b_mac)
    finally:
        s.close()
    sysfs_write(f"/sys/bus/pci/devices/{a}/sriov_numvfs", "0")
    return res


def vf_without_mac_run(vf: str, s: socket.socket, ifname: str, b_mac: str) -> dict:
    """VF 1, given no MAC on the PF (Linux 6.12's igb leaves a VF's MAC zero): the PF answers RESET with
    NACK, romlab picks a random local address and asks for it with SET_MAC, on every open. A short
    exchange each way: to B's address, and back to broadcast (romlab's address is new each open;
    igb accepts broadcast for every VF, VMOLR.BAM)."""
    t0 = time.monotonic()
    res: dict = {"vf": vf, "bind_rc": romlab("vfio", "bind", vf).returncode}
    try:
        r = romlab("nic", "info", "--pci", vf, "--json")
        res["info"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-1500:]}
        res["to_kernel"] = romlab_to_kernel(s, ifname, vf, VF1_COUNT, 53, b_mac, RATE)
        res["from_kernel"] = G.kernel_to_romlab(s, ifname, vf, VF1_COUNT, SIZE, "adaptive", "c", 54, timeout=60)
    finally:
        res["unbind_rc"] = romlab("vfio", "unbind", vf).returncode
    res["wall_s"] = time.monotonic() - t0
    return res


def main() -> None:
    igbs = sorted(str(d.bdf) for d in list_devices() if (d.vendor_id, d.device_id) == (0x8086, 0x10C9))
    result["bdfs"] = igbs
    try:
        a, b = igbs
        result["groups"] = {x: os.path.basename(os.path.realpath(f"/sys/bus/pci/devices/{x}/iommu_group"))
                            for x in igbs}
        t0 = time.monotonic()
        result["pf"] = pf_run(a, b)
        result["pf"]["wall_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        result["vf"] = vf_run(a, b)
        result["vf"]["wall_s"] = time.monotonic() - t0
    except Exception:  # recorded for the host test to show
        import traceback

        result["exception"] = traceback.format_exc()
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    result["dmesg_dmar"] = [line for line in dmesg.splitlines() if "DMAR" in line and "fault" in line.lower()]
    result["dmesg_warn"] = [line for line in dmesg.splitlines() if "WARNING" in line or "Call Trace" in line]
    result["dmesg_igb"] = [line for line in dmesg.splitlines() if "igb" in line][-40:]
    with open(G.OUT, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
