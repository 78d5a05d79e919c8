"""Transmit throughput of NICs three ways in one run: romlab's C batch path, the same ring logic in
pure Python, and the Linux kernel's own driver (pktgen) on the same device.

What makes the comparison fair:

* the same work per call: romlab hands the ring ``batch`` frames and writes the tail once; pktgen
  is set to ``burst`` = that batch, so it hands the kernel driver ``burst`` frames with
  ``xmit_more`` set on all but the last, and e1000, e1000e and igb then also write their tail once
  per burst (their xmit paths defer the doorbell while ``netdev_xmit_more()``). igbvf does not:
  its ``igbvf_tx_queue_adv`` writes the tail for every frame and never reads ``xmit_more``, so on
  a VF the kernel pays one doorbell per frame whatever the burst, and that row is not like for
  like (``KERNEL_DEFERS_TAIL``; the table, plot and JSON say so);
* the same counter: every figure is what the NIC itself counted as transmitted, its GPTC register
  (VFGPTC on a VF): romlab reads it through its driver (``stats()["tx_good"]``), the kernel's
  driver reports it as the ethtool statistic ``tx_packets`` (``hw.ethtool``), read before and after;
* the same clock and machine: all paths send the same frame sizes for the same wall-clock time in
  one run, each figure the median of ``runs`` runs with its spread. The runs are interleaved in
  rounds (kernel, C, Python; again), so a noisy 2-core host's drift shows as spread rather than as
  a ratio;
* the same window: romlab's run is timed around its own sending; the kernel's run is timed by
  pktgen itself (the usec of its result line, from its start on the device to its stop), so
  neither the poll that waits for pktgen to run nor the shell's exit after the stop is in it, and
  the NIC's count (the ethtool delta) is taken over exactly that run.

* the same address translation, where asked: romlab maps its buffers through the IOMMU once,
  while the kernel driver maps and unmaps every frame in its group's default DMA domain. Under a
  vIOMMU that caches translations Linux makes that domain strict ("DMA": an IOTLB flush per
  unmapped frame, each one emulated), which no host booted with iommu=pt pays. ``kernel_dma=
  "identity"`` takes the kernel's runs in an identity domain (``hw.vfio_bind.dma_domain``) and
  puts the group's type back after them; the document says which type each NIC's kernel runs had.

With ``vf=True`` an SR-IOV PF is measured, then one VF is made on it and measured the same way
(the kernel's reference there is the VF's driver, igbvf), and the VF is removed again.
:mod:`romlab.bench.render` draws the table and plot.
"""
from __future__ import annotations

import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hw.errors import LabError, RomlabError

PKTGEN = Path("/proc/net/pktgen")
SCHEMA = "romlab.bench-native/6"
PATHS = ("kernel", "c", "python")
# The ethtool statistic e1000, e1000e and igb fill from GPTC and igbvf from VFGPTC.
KERNEL_TX_COUNTER = "tx_packets"
MIN_RUNS = 3
# Whether the kernel driver's transmit writes its tail once per pktgen burst (it defers the write
# while netdev_xmit_more(), Linux 6.12), and so does the same doorbell work as romlab's batch.
# A driver not listed here has not been checked: None.
KERNEL_DEFERS_TAIL = {"e1000": True, "e1000e": True, "igb": True, "igbvf": False}
KERNEL_TAIL_NOTES = {
    "igbvf": "igbvf: one tail write per frame (no xmit_more), so C/kernel on this row is not like for like",
}


@dataclass
class Run:
    """One timed run: frames handed to the driver, frames the NIC counted, seconds."""

    queued: int
    hw_packets: int | None  # None: the driver has no tx_packets statistic (kernel_tx nic_counter=False)
    seconds: float

    @property
    def pps(self) -> float:
        return self.hw_packets / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"queued": self.queued, "hw_packets": self.hw_packets, "duration_s": self.seconds, "pps": self.pps}


@dataclass
class Figure:
    """One path at one frame size and batch (the kernel's: pktgen burst), over its runs."""

    path: str  # "kernel", "c" or "python"
    size: int
    batch: int
    runs: list[Run] = field(default_factory=list)

    @property
    def pps(self) -> float:
        """The median of the runs' packets/s (NIC-counted frames over each run's seconds)."""
        return statistics.median(r.pps for r in self.runs) if self.runs else 0.0

    @property
    def min_pps(self) -> float:
        return min((r.pps for r in self.runs), default=0.0)

    @property
    def max_pps(self) -> float:
        return max((r.pps for r in self.runs), default=0.0)

    @property
    def spread_pct(self) -> float | None:
        """(max - min) / median over the runs, in percent; None with fewer than two runs."""
        med = self.pps
        return (self.max_pps - self.min_pps) / med * 100 if len(self.runs) > 1 and med else None

    @property
    def mbps(self) -> float:
        return self.pps * self.size * 8 / 1e6

    def as_dict(self) -> dict:
        """The JSON's figure: every quantity with its unit in its key."""
        return {"path": self.path, "frame_bytes": self.size, "batch": self.batch, "runs": [r.as_dict() for r in self.runs],
                "median_pps": self.pps, "min_pps": self.min_pps, "max_pps": self.max_pps,
                "spread_pct": self.spread_pct, "median_mbit_s": self.mbps}


@dataclass
class NicResult:
    """One NIC's figures: ``label`` names it as the table does (its kernel driver; "igb PF",
    "igb VF" for the two sides of SR-IOV)."""

    label: str
    bdf: str
    ids: str
    kernel_driver: str
    interface: str
    figures: list[Figure] = field(default_factory=list)
    pf: str | None = None          # for a VF, the PF it was made on
    romlab_error: str | None = None  # why romlab's paths have no figures, if they have none
    iommu_domain: str | None = None  # the group's default DMA domain type as found (None: no IOMMU)
    kernel_dma: str | None = None    # the type the kernel's runs had

    @property
    def kernel_defers_tail(self) -> bool | None:
        """Whether the kernel's figure was taken at romlab's doorbell batching (None: not known)."""
        return KERNEL_DEFERS_TAIL.get(self.kernel_driver)

    @property
    def kernel_tail_note(self) -> str | None:
        """Why the kernel's figure is not at romlab's doorbell batching, where it is not."""
        return KERNEL_TAIL_NOTES.get(self.kernel_driver) if self.kernel_defers_tail is False else None

    def as_dict(self) -> dict:
        from romlab.conventions import device_input

        return {"nic": self.label, "input": device_input(self.bdf), "id": self.ids,
                "kernel_driver": self.kernel_driver, "interface": self.interface,
                "pf": device_input(self.pf) if self.pf else None, "romlab_error": self.romlab_error,
                "kernel_defers_tail": self.kernel_defers_tail, "kernel_tail_note": self.kernel_tail_note,
                "iommu_domain_found": self.iommu_domain, "kernel_iommu_domain": self.kernel_dma,
                "figures": [f.as_dict() for f in self.figures]}


# --------------------------------------------------------------------------- romlab's side
def romlab_tx(bdf: str, impl: str, size: int, batch: int, seconds: float) -> Run:
    """Send ``batch``-frame batches for ``seconds`` through romlab's driver; the NIC's count of them."""
    from drivers import frames, open_nic

    with open_nic(bdf, impl=impl) as nic:
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
        hw = nic.stats()["tx_good"]   # GPTC (VFGPTC on a VF) since the open; nothing else was sent since
    return Run(sent, hw, dt)


# --------------------------------------------------------------------------- the kernel's side
def _pg(path: Path, cmd: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(cmd + "\n")
    except OSError as exc:
        raise LabError(f"pktgen refused {cmd!r} on {path.name}: {exc.strerror or exc}") from None


def _pg_running(thread: Path, ifname: str) -> bool:
    """The pktgen thread's file lists the devices it is sending on after "Running:"."""
    for line in thread.read_text().splitlines():
        words = line.split()
        if words and words[0] == "Running:":
            return ifname in words[1:]
    return False


def _pg_result(path: Path) -> str:
    return next((ln.strip() for ln in path.read_text().splitlines() if ln.strip().startswith("Result:")),
                "no result")


def _wait(what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def _carrier(ifname: str) -> bool:
    """The interface's carrier, through hw.sysfs so that ``ROMLAB_SYSFS`` moves it with the rest
    of sysfs; an interface that is down refuses the read (EINVAL), which is no carrier too."""
    from hw import sysfs
    from hw.errors import HardwareError

    try:
        return sysfs.read_text(sysfs.root() / "class" / "net" / ifname / "carrier", "") == "1"
    except HardwareError:
        return False


def _link_up(ifname: str) -> None:
    r = subprocess.run(["ip", "link", "set", ifname, "up"], capture_output=True, text=True, timeout=30, check=False)
    if r.returncode:
        raise LabError(f"cannot bring {ifname} up: {r.stderr.strip()}")
    _wait(f"{ifname} has no carrier", lambda: _carrier(ifname), 30)


def _settled_counter(ifname: str) -> int:
    """The NIC's transmit count once frames still in the ring at pktgen's stop have gone out: two
    reads 50 ms apart that agree (at most 5 s)."""
    from hw import ethtool

    last = ethtool.stat(ifname, KERNEL_TX_COUNTER)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = ethtool.stat(ifname, KERNEL_TX_COUNTER)
        if now == last:
            return now
        last = now
    return last


def _load_pktgen() -> None:
    if PKTGEN.exists():
        return
    r = subprocess.run(["modprobe", "pktgen"], capture_output=True, text=True, timeout=60, check=False)
    if r.returncode or not PKTGEN.exists():
        raise LabError("the kernel's pktgen module is not available (modprobe pktgen failed)")


# pktgen's result once a run has stopped (net/core/pktgen.c, show_results): "OK: " elapsed
# "(c" busy "+d" idle ") usec, " frames sent " (" pkt_size "byte," frags "frags)", then on the next
# line its own pps, Mb/sec, bps and errors; the device's file shows it after "Result: ".
_RESULT = re.compile(r"Result: OK: (\d+)\(c\d+\+d\d+\) usec, (\d+) \((\d+)byte,\d+frags\)")


def parse_pktgen_result(text: str) -> tuple[int, int, int]:
    """``(usec, frames, pkt_size)`` from a pktgen device file's result after a run: the time
    pktgen itself measured from its start to its stop, the frames it handed the driver in it,
    and the frame size it sent (FCS included). Raises LabError where the file has no such line."""
    m = _RESULT.search(text)
    if not m:
        line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Result:")), "no result line")
        raise LabError(f"pktgen gave no run result ({line!r}); see dmesg")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _run_result(dev: Path) -> tuple[int, int, int]:
    """The stopped run's result. pktgen clears the device's running flag before it writes the
    result, so the writes of "start" and "stop" can return while the file still says "Starting":
    read it until the result is there (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        text = dev.read_text()
        if _RESULT.search(text) or time.monotonic() > deadline:
            return parse_pktgen_result(text)
        time.sleep(0.01)


def kernel_tx(ifname: str, size: int, burst: int, seconds: float, *, nic_counter: bool = True) -> Run:
    """pktgen on the kernel driver's interface for about ``seconds``, ``burst`` frames per call
    into the driver (``xmit_more`` on all but the last); the NIC's count of what it sent over the
    time pktgen itself measured from its start to its stop.

    ``nic_counter=False`` leaves the NIC's count out (``hw_packets`` None) for a driver whose
    ethtool statistics have no ``tx_packets`` (8139cp calls it ``tx_ok``): the UNDI bench's kernel
    reference takes pktgen's own count of frames the driver accepted."""
    _load_pktgen()
    thread = PKTGEN / "kpktgend_0"
    _pg(thread, "rem_device_all")
    _pg(thread, f"add_device {ifname}")
    dev = PKTGEN / ifname
    # pkt_size counts the 4-byte FCS the NIC appends; romlab's sizes do not.
    for cmd in ("count 0", f"pkt_size {size + 4}", "delay 0", "clone_skb 0", f"burst {burst}",
                "dst_mac ff:ff:ff:ff:ff:ff", "dst 10.99.0.2"):
        _pg(dev, cmd)
        if not _pg_result(dev).startswith("Result: OK"):
            raise LabError(f"pktgen refused {cmd!r} on {ifname}: {_pg_result(dev)}")
    before = _settled_counter(ifname) if nic_counter else 0
    # The write of "start" returns only when pktgen stops, so a shell makes it. The "stop" is sent
    # once the thread reports the device running (a fresh shell can take seconds under emulation,
    # and a "stop" sent before the "start" would leave pktgen running for ever). The run's time is
    # not taken here: pktgen's result line has its own, from its start of the device to its stop, so
    # neither the wait for "Running:" nor the shell's exit is in it.
    proc = subprocess.Popen(["sh", "-c", f"echo start > {PKTGEN / 'pgctrl'}"])
    try:
        deadline = time.monotonic() + 60
        while not _pg_running(thread, ifname):
            if proc.poll() is not None:
                raise LabError(f"pktgen did not start on {ifname}: {_pg_result(dev)}")
            if time.monotonic() > deadline:
                raise LabError(f"pktgen did not start on {ifname} within 60 s")
            time.sleep(0.01)
        time.sleep(seconds)
    finally:
        _pg(PKTGEN / "pgctrl", "stop")
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise LabError(f"pktgen on {ifname} did not stop when told to") from None
    usec, sent, pkt_size = _run_result(dev)
    if pkt_size != size + 4 or usec <= 0:
        raise LabError(f"pktgen's result on {ifname} is for {pkt_size}-byte frames over {usec} us, "
                       f"not the {size + 4}-byte run just made")
    hw = _settled_counter(ifname) - before if nic_counter else None
    _pg(thread, "rem_device_all")
    return Run(sent, hw, usec / 1e6)


# --------------------------------------------------------------------------- one NIC, and the whole bench
def _settle() -> None:
    """Let udev finish renaming interfaces (eth0 -> enp2s0) that a driver just made: a name read
    before that is gone a moment later. Without udevadm there is no renaming to wait for."""
    try:
        subprocess.run(["udevadm", "settle", "--timeout=30"], capture_output=True, timeout=60, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        pass


def _interface(dev) -> str:
    """The kernel driver's network interface of ``dev``, once udev has named it."""
    _settle()
    names = list(dev.net_interfaces())
    if not names:
        raise LabError(f"{dev.bdf} has no network interface under its kernel driver {dev.driver}")
    return names[0]


def _label(dev) -> str:
    from hw.pci import PciDevice

    if dev.physfn is not None:
        return f"{PciDevice.open(dev.physfn).driver or '?'} VF"
    return f"{dev.driver} PF" if dev.sriov_capable else str(dev.driver)


def bench_nic(dev, sizes: list[int], batches: list[int], seconds: float, runs: int, progress=None,
              kernel_dma: str | None = None) -> NicResult:
    """One NIC, in ``runs`` rounds: each round takes one kernel run (its driver bound) of every
    frame size and batch, then one C and one Python run of each through VFIO, and gives the NIC
    back to its kernel driver. Interleaved so, a host whose load drifts during the bench shows it
    in every path's spread, not as a ratio between paths measured minutes apart. A NIC romlab's
    driver does not take (its first romlab run fails) keeps its kernel figures and says why in
    ``romlab_error``. ``kernel_dma`` (a domain type, e.g. "identity"): the kernel's runs of each
    round are taken with the NIC's IOMMU group set to it, and the type it had put back after them."""
    import contextlib

    from hw import vfio_bind
    from hw.pci import PciDevice

    say = progress or (lambda m: None)
    if dev.driver in (None, "vfio-pci"):
        raise LabError(f"{dev.bdf} must start bound to its kernel driver (it is bound to {dev.driver or 'nothing'}), "
                       "so the kernel's figure can be taken on the same device")
    vfio_bind.refuse_pending(dev)    # a half-restored record would change the device between rounds
    bdf = str(dev.bdf)
    res = NicResult(_label(dev), bdf, dev.ids, dev.driver, _interface(dev), pf=str(dev.physfn) if dev.physfn else None,
                    iommu_domain=dev.iommu_domain)
    res.kernel_dma = kernel_dma if kernel_dma and res.iommu_domain else res.iommu_domain
    figs = {(p, size, batch): Figure(p, size, batch) for size in sizes for batch in batches for p in PATHS}
    for rnd in range(1, runs + 1):
        dev = PciDevice.open(bdf)
        _wait_interface(bdf)
        dma = (vfio_bind.dma_domain(dev, res.kernel_dma) if res.kernel_dma != res.iommu_domain
               else contextlib.nullcontext(dev.iommu_domain))
        with dma as used:
            res.kernel_dma = used            # as the group reads it while the kernel's runs are taken
            _wait_interface(bdf)
            res.interface = _interface(PciDevice.open(bdf))   # a rebind can bring it back under another name
            if res.pf:
                _link_up(_interface(PciDevice.open(res.pf)))  # a VF has a link only while its PF's is up
            _link_up(res.interface)
            for size in sizes:
                for batch in batches:
                    say(f"{res.label} {bdf} round {rnd}/{runs}: kernel ({res.kernel_driver}, pktgen burst {batch}, "
                        f"IOMMU domain {res.kernel_dma or 'none'}), {size}-byte frames")
                    figs["kernel", size, batch].runs.append(kernel_tx(res.interface, size, batch, seconds))
        dev = PciDevice.open(bdf)
        if res.romlab_error:
            continue
        vfio_bind.bind(dev)
        try:
            for size in sizes:
                for batch in batches:
                    for impl in ("c", "python"):
                        say(f"{res.label} {bdf} round {rnd}/{runs}: romlab {impl}, batch {batch}, {size}-byte frames")
                        try:
                            figs[impl, size, batch].runs.append(romlab_tx(bdf, impl, size, batch, seconds))
                        except RomlabError as exc:
                            if any(figs[p, s, b].runs for p in ("c", "python") for s in sizes for b in batches):
                                raise          # it worked before: a failure now is the bench's to report
                            res.romlab_error = str(exc)
                            break
                    if res.romlab_error:
                        break
                if res.romlab_error:
                    break
        finally:
            vfio_bind.unbind(PciDevice.open(bdf))
    res.figures = [f for f in figs.values() if f.runs]
    return res


def _wait_interface(bdf) -> None:
    """Until ``bdf`` has a kernel driver and that driver its network interface (after a VF is
    made, or the NIC is given back from vfio-pci)."""
    from hw.pci import PciDevice

    def ready():
        d = PciDevice.open(bdf)
        return d.driver not in (None, "vfio-pci") and bool(d.net_interfaces())
    _wait(f"{bdf} got no kernel driver and network interface", ready, 60)


def run(bdfs: list[str], sizes: list[int], batches: list[int], seconds: float = 2.0, runs: int = MIN_RUNS,
        vf: bool = False, progress=None, kernel_dma: str | None = None) -> list[NicResult]:
    """Every NIC in turn; with ``vf``, after an SR-IOV PF also one VF made on it, removed after."""
    from hw.pci import PciDevice

    devs = [PciDevice.open(b) for b in bdfs]
    out = []
    for dev in devs:
        out.append(bench_nic(dev, sizes, batches, seconds, runs, progress, kernel_dma))
        if not (vf and dev.sriov_capable):
            continue
        dev.set_sriov_numvfs(1)
        try:
            vf_bdf = dev.virtfns()[0]
            _wait_interface(vf_bdf)
            out.append(bench_nic(PciDevice.open(vf_bdf), sizes, batches, seconds, runs, progress, kernel_dma))
        finally:
            dev.set_sriov_numvfs(0)
    return out


def check_counts(results: list[NicResult]) -> list[str]:
    """Runs where what was handed to romlab's driver and what the NIC counted differ (after a
    flush they must agree): one line each, for the document's notes."""
    notes = []
    for r in results:
        for f in r.figures:
            if f.path == "kernel":
                continue
            for i, x in enumerate(f.runs):
                if x.queued != x.hw_packets:
                    notes.append(f"{r.label} {f.path} {f.size} B batch {f.batch} run {i + 1}: {x.queued} queued, "
                                 f"{x.hw_packets} counted by the NIC")
    return notes

