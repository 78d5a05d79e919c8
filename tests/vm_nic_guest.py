"""Runs inside `romlab vm` (tests/test_nic_vm.py): romlab's e1000-family driver against the
kernel's driver on the other end of a QEMU hub, both directions, both parts, receiving through the
C ring and through the Python ring; Ctrl-C mid-batch; the native bench. Writes one JSON result
file the host test asserts on.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from drivers import frames  # noqa: E402
from hw.pci import list_devices  # noqa: E402

ROMLAB = [sys.executable, "-m", "romlab"]
OUT = sys.argv[1]
SEED = 99
result: dict = {"steps": []}


def romlab(*args, timeout=120):
    r = subprocess.run(ROMLAB + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    result["steps"].append({"argv": [str(a) for a in args], "rc": r.returncode, "out": r.stdout[-3000:],
                            "err": r.stderr[-2000:]})
    return r


def iface_of(bdf: str) -> str:
    return os.listdir(f"/sys/bus/pci/devices/{bdf}/net")[0]


def kernel_socket(bdf: str) -> tuple[socket.socket, str]:
    """Bring the kernel driver's interface up; after a rebind its netdev appears (and may be
    renamed) a moment later, so look again until it takes."""
    deadline = time.monotonic() + 20
    while True:
        try:
            ifname = iface_of(bdf)
            # No IPv6 on the kernel's side: its neighbour discovery and MLD frames would land in
            # romlab's receive count beside the test frames.
            with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
                f.write("1")
            subprocess.run(["ip", "link", "set", ifname, "up", "promisc", "on"], check=True, capture_output=True)
            break
        except (OSError, subprocess.CalledProcessError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(frames.ETHERTYPE))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ifname, frames.ETHERTYPE))
    s.settimeout(0.5)
    return s, ifname


def wait_link(ifname: str, timeout=10.0) -> None:
    """Poll the kernel side's carrier until it is up; fail the run if it never comes up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if open(f"/sys/class/net/{ifname}/carrier").read().strip() == "1":
            return
        time.sleep(0.1)
    raise AssertionError(f"{ifname}: no carrier within {timeout:g} s (the kernel side's link never came up)")


def pair_run(romlab_bdf: str, kernel_bdf: str, count: int, size: int, mode: str = "adaptive") -> dict:
    """romlab sends to the kernel, then the kernel sends to romlab; payloads checked both ways."""
    s, ifname = kernel_socket(kernel_bdf)
    wait_link(ifname)
    res: dict = {"romlab": romlab_bdf, "kernel": kernel_bdf, "count": count, "size": size}
    assert romlab("vfio", "bind", romlab_bdf).returncode == 0
    try:
        # romlab -> kernel, at a moderate rate, the kernel side reading as it arrives
        import threading

        seen: set = set()

        def reader():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(seen) < count:
                try:
                    f = s.recv(4096)
                except socket.timeout:
                    continue
                seq = frames.check(f, SEED)
                if seq is not None:
                    seen.add(seq)

        t = threading.Thread(target=reader)
        t.start()
        r = romlab("nic", "send", "--pci", romlab_bdf, "--count", count, "--size", size, "--batch", 8,
                   "--rate", 500, "--seed", SEED, "--json")
        res["send_rc"] = r.returncode
        t.join()
        res["kernel_received_intact"] = len(seen)
        res["kernel_sequences_ok"] = seen == set(range(count))
        # kernel -> romlab, through the C ring, then through the Python ring (its receive path
        # meets a real device only here)
        res.update(kernel_to_romlab(s, ifname, romlab_bdf, count, size, mode, "c", SEED + 1))
        res["python"] = kernel_to_romlab(s, ifname, romlab_bdf, count, size, "adaptive", "python", SEED + 2)
    finally:
        s.close()
        r = romlab("vfio", "unbind", romlab_bdf)
        res["unbind_rc"] = r.returncode
    return res


def kernel_to_romlab(s: socket.socket, ifname: str, romlab_bdf: str, count: int, size: int, mode: str,
                     impl: str, seed: int, dst: bytes = frames.BROADCAST, timeout: float = 30) -> dict:
    """Start romlab's receiver (ring implementation ``impl``), then send ``count`` frames to ``dst``
    from the kernel's side; what romlab received and verified (``timeout``: romlab's receive timeout)."""
    res: dict = {"recv_impl": impl}
    recv = subprocess.Popen(ROMLAB + ["nic", "recv", "--pci", romlab_bdf, "--count", str(count), "--seed",
                                      str(seed), "--timeout", str(timeout), "--mode", mode, "--impl", impl, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = recv.stderr.readline()  # "romlab nic: ... up, receiving" once the ring is live, link up
    res["recv_ready"] = ready.strip()
    src = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
    t0 = time.monotonic()
    for i in range(count):
        s.send(frames.frame(src, dst, seed, i, size))
        if i % 8 == 7:
            time.sleep(0.002)
    res["kernel_send_s"] = time.monotonic() - t0
    out, err = recv.communicate(timeout=timeout + 30)
    res["recv_rc"] = recv.returncode
    doc = json.loads(out) if out.strip().startswith("{") else {"error": err}
    res["romlab_received"] = doc.get("received")
    res["romlab_verified"] = doc.get("verified")
    res["romlab_sequences_ok"] = sorted(doc.get("sequences", [])) == list(range(count))
    res["recv_link_up"], res["recv_stats"] = doc.get("link_up"), doc.get("stats")
    res["recv_mode"], res["recv_interrupts"] = doc.get("mode"), doc.get("interrupts")
    if "error" in doc:
        res["recv_error"] = err[-1500:]
    return res


def sigint_run(bdf: str) -> dict:
    """Ctrl-C a long send mid-batch; the device must still work and go back to its driver."""
    res: dict = {}
    assert romlab("vfio", "bind", bdf).returncode == 0
    p = subprocess.Popen(ROMLAB + ["nic", "send", "--pci", bdf, "--count", "100000000", "--size", "1000",
                                   "--batch", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    res["ready"] = p.stderr.readline().strip()  # the ring is up and sending
    p.stderr.readline()  # a progress line: at least a second of batches has gone out
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    res["interrupted_rc"] = p.returncode
    res["interrupted_err"] = err.strip()
    r = romlab("nic", "send", "--pci", bdf, "--count", 100, "--size", 128, "--json")
    res["next_send_rc"] = r.returncode
    res["next_send_sent"] = json.loads(r.stdout)["sent"] if r.returncode == 0 else None
    res["unbind_rc"] = romlab("vfio", "unbind", bdf).returncode
    res["driver_after"] = os.path.basename(os.path.realpath(f"/sys/bus/pci/devices/{bdf}/driver"))
    return res


def bad_cases(bdf_kernel: str) -> dict:
    res = {}
    r = romlab("nic", "info", "--pci", bdf_kernel)
    res["bound_to_kernel"] = [r.returncode, r.stderr.strip()]
    host_bridge = "0000:00:00.0"
    r = romlab("nic", "info", "--pci", host_bridge)
    res["not_a_nic"] = [r.returncode, r.stderr.strip()]
    return res


def main() -> None:
    # Huge pages for the second pair and what follows: the mempool takes them when free.
    nics = {(d.vendor_id, d.device_id): str(d.bdf) for d in list_devices() if d.vendor_id == 0x8086
            and d.device_id in (0x100E, 0x10D3)}
    e1000, e1000e = nics[(0x8086, 0x100E)], nics[(0x8086, 0x10D3)]
    result["bdfs"] = {"e1000": e1000, "e1000e": e1000e}
    try:
        result["bad"] = bad_cases(e1000)
        result["pairs"] = [pair_run(e1000, e1000e, 200, 300, "irq")]
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write("8")
        info = romlab("vfio", "bind", e1000e)
        r = romlab("nic", "info", "--pci", e1000e, "--json")
        result["hugepage_info"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr}
        romlab("vfio", "unbind", e1000e)
        del info
        result["pairs"].append(pair_run(e1000e, e1000, 200, 300))
        result["sigint"] = sigint_run(e1000)
        if len(sys.argv) > 2 and sys.argv[2] == "bench":
            group_type = f"/sys/bus/pci/devices/{e1000}/iommu_group/type"
            result["group_type_before"] = open(group_type).read().strip()
            r = romlab("bench", "native", "--pci", e1000, "--size", "64,1514", "--batch", "1,32,256",
                       "--seconds", "1", "--runs", "3", "--kernel-dma", "identity", "--json", timeout=1200)
            result["bench"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-2000:]}
            result["group_type_after"] = open(group_type).read().strip()
            result["driver_after"] = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{e1000}/driver"))
    except Exception as exc:  # recorded for the host test to show
        import traceback

        result["exception"] = traceback.format_exc()
        del exc
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    result["dmesg_dmar"] = [line for line in dmesg.splitlines() if "DMAR" in line and "fault" in line.lower()]
    result["dmesg_warn"] = [line for line in dmesg.splitlines() if "WARNING" in line or "Call Trace" in line]
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
