"""Transmit throughput of one NIC three ways in one run: romlab's C batch path, the same ring
logic in pure Python, and the Linux kernel's own driver (pktgen) on the same device.

All three send the same frame sizes for the same wall-clock budget, so the ratios
are taken on one machine in one run, which is what makes them trustworthy on a
noisy 2-core host. The kernel figure uses pktgen because a user-space sender
would measure the sender, not the driver. :mod:`romlab.bench.render` draws the table and plot.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from hw.errors import LabError

PKTGEN = Path("/proc/net/pktgen")
SCHEMA = "romlab.bench-native/3"


@dataclass
class Figure:
    path: str  # "c", "python" or "kernel"
    size: int
    batch: int  # 0 for the kernel
    packets: int
    seconds: float
    hw_packets: int | None = None  # the NIC's own transmit counter (GPTC), for romlab's paths

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.pps * self.size * 8 / 1e6

    def as_dict(self) -> dict:
        """The JSON's figure: every quantity with its unit in its key."""
        return {"path": self.path, "frame_bytes": self.size, "batch": self.batch, "packets": self.packets,
                "duration_s": self.seconds, "hw_packets": self.hw_packets, "pps": self.pps,
                "mbit_s": self.mbps}


def romlab_tx(bdf: str, impl: str, size: int, batch: int, seconds: float) -> Figure:
    """Send frames for ``seconds`` through romlab's driver; count what the NIC took."""
    from drivers import frames
    from drivers.intel import IntelNic

    with IntelNic(bdf, impl=impl) as nic:
        data, lens = frames.batch(nic.mac, frames.BROADCAST, 1, 0, batch, size)
        sent = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while True:
            sent += nic.tx_batch(data, lens)
            if time.perf_counter() >= end:
                break
        nic.tx_flush()
        dt = time.perf_counter() - t0
        hw = nic.stats()["tx_good"]  # clear-on-read, and zeroed by the reset at open
    return Figure(impl, size, batch, sent, dt, hw)


def _pg(path: Path, cmd: str) -> None:
    with open(path, "w") as f:
        f.write(cmd + "\n")


def _pg_running(thread: Path, ifname: str) -> bool:
    """The pktgen thread's file lists the devices it is sending on after "Running:"."""
    for line in thread.read_text().splitlines():
        words = line.split()
        if words and words[0] == "Running:":
            return ifname in words[1:]
    return False


def _pg_result(thread: Path) -> str:
    return next((ln.strip() for ln in thread.read_text().splitlines() if ln.strip().startswith("Result:")),
                "no result")


def kernel_tx(ifname: str, size: int, seconds: float) -> Figure:
    """pktgen on the kernel driver's interface, for about ``seconds``."""
    if not PKTGEN.exists():
        if os.system("modprobe pktgen >/dev/null 2>&1") != 0 or not PKTGEN.exists():
            raise LabError("the kernel's pktgen module is not available (modprobe pktgen failed)")
    os.system(f"ip link set {ifname} up")
    thread = PKTGEN / "kpktgend_0"
    _pg(thread, "rem_device_all")
    _pg(thread, f"add_device {ifname}")
    dev = PKTGEN / ifname
    for cmd in ("count 0", f"pkt_size {size + 4}", "delay 0", "clone_skb 0", "dst_mac ff:ff:ff:ff:ff:ff",
                "dst 10.99.0.2"):
        _pg(dev, cmd)
    import subprocess

    # The write of "start" returns only when pktgen stops, so a shell makes it; the clock
    # starts when the thread reports the device running (a fresh shell can take seconds under
    # emulation, and a "stop" sent before the "start" would leave pktgen running for ever).
    proc = subprocess.Popen(["sh", "-c", f"echo start > {PKTGEN / 'pgctrl'}"])
    try:
        deadline = time.monotonic() + 60
        while not _pg_running(thread, ifname):
            if proc.poll() is not None:
                raise LabError(f"pktgen did not start on {ifname}: {_pg_result(thread)}")
            if time.monotonic() > deadline:
                raise LabError(f"pktgen did not start on {ifname} within 60 s")
            time.sleep(0.01)
        t0 = time.perf_counter()
        time.sleep(seconds)
    finally:
        _pg(PKTGEN / "pgctrl", "stop")
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise LabError(f"pktgen on {ifname} did not stop when told to") from None
    dt = time.perf_counter() - t0
    sent = 0
    for line in dev.read_text().splitlines():
        line = line.strip()
        if line.startswith("pkts-sofar:"):
            sent = int(line.split()[1])
    _pg(thread, "rem_device_all")
    return Figure("kernel", size, 0, sent, dt)


def run(bdf: str, sizes: list[int], batches: list[int], seconds: float = 3.0) -> list[Figure]:
    """The whole bench on one device: kernel first (its driver bound), then romlab through VFIO,
    then the device goes back to its kernel driver."""
    from hw import vfio_bind
    from hw.pci import PciDevice

    dev = PciDevice.open(bdf)
    if dev.driver in (None, "vfio-pci"):
        raise LabError(f"{dev.bdf} must start bound to its kernel driver (it is bound to {dev.driver or 'nothing'}), "
                       "so the kernel's figure can be taken on the same device")
    netdirs = list((Path("/sys/bus/pci/devices") / str(dev.bdf) / "net").glob("*"))
    if not netdirs:
        raise LabError(f"{dev.bdf} has no network interface under its kernel driver")
    ifname = netdirs[0].name
    figures = [kernel_tx(ifname, size, seconds) for size in sizes]
    vfio_bind.bind(dev)
    try:
        for size in sizes:
            for batch in batches:
                figures.append(romlab_tx(bdf, "c", size, batch, seconds))
                figures.append(romlab_tx(bdf, "python", size, batch, seconds))
    finally:
        vfio_bind.unbind(PciDevice.open(bdf))
    return figures
