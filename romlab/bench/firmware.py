"""UNDI against native: HTTP download speed of one NIC through its ROM's two driver paths.

For each NIC two QEMU boots download the same payload several times over HTTP:

* **native**: the ROM's own iPXE with its native driver for the NIC (for a ROM that is not
  iPXE, Debian's ``ipxe.pxe`` is chainloaded first, which brings iPXE's native drivers);
* **UNDI**: Debian's ``undionly.kpxe`` chainloaded, which drives the NIC only through the
  UNDI API the ROM left in base memory.

The client reports which driver it runs (iPXE's ``${netX/chip}``: the native driver's name,
or ``undionly``) when it asks for its next script, so the server knows each boot took the
path it was meant to take, and breaks the chainload loop on that fact. Each transfer is
timed by :class:`romlab.lab.http.LabHttp` from the payload request to the done request the
client's script makes only after ``imgfetch`` succeeded, and counts as complete only when
every byte went out and the client confirmed. The table, plot and HTML page are drawn by
:mod:`romlab.bench.render` from the document :func:`run_bench` returns.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field

from hw.errors import LabError
from romlab.conventions import document, pci_id, utc_now
from romlab.lab.boot import UNDIONLY, hang_stage, is_ipxe, rom_images, skip_reason
from romlab.lab.http import (
    LabHttp,
    ScriptRequest,
    first_script,
    human_size,
    payload_bytes,
)
from romlab.lab.qemu import Machine, Qemu, nic_device

DEBIAN_QEMU_ROMS = "/usr/lib/ipxe/qemu"
IPXE_PXE = "/usr/lib/ipxe/ipxe.pxe"
PATHS = ("native", "undi")
SCHEMA = "romlab.bench-firmware/3"


def default_rom(nic: str) -> str:
    """Debian's PXE ROM for a QEMU NIC model (ipxe-qemu's pxe-<model>.rom)."""
    model, _ = nic_device(nic)
    name = "virtio" if model.startswith("virtio-net") else model
    path = os.path.join(DEBIAN_QEMU_ROMS, f"pxe-{name}.rom")
    if not os.path.exists(path):
        raise LabError(f"no Debian ROM {path} for NIC {nic}; give one with --rom PATH "
                       "(or install ipxe-qemu)")
    return path


def mbit(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e6


@dataclass
class Run:
    index: int
    seconds: float | None
    bytes_sent: int
    size: int
    socket_seconds: float | None  # until the last byte was handed to the socket
    complete: bool
    error: str | None = None

    @property
    def mbit_s(self) -> float | None:
        return mbit(self.size, self.seconds) if self.complete and self.seconds else None

    def as_dict(self) -> dict:
        return {"run": self.index, "duration_s": self.seconds, "bytes_sent": self.bytes_sent, "size_bytes": self.size,
                "socket_s": self.socket_seconds, "complete": self.complete,
                "mbit_s": self.mbit_s, "error": self.error}


@dataclass
class PathResult:
    path: str
    chip: str | None = None
    driver_reports: list[str] = field(default_factory=list)  # ${netX/chip} at each script request
    runs: list[Run] = field(default_factory=list)
    boot_seconds: float | None = None
    error: str | None = None
    dhcp: list[str] = field(default_factory=list)
    console_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs) and all(r.complete for r in self.runs)

    def speeds(self) -> list[float]:
        return [r.mbit_s for r in self.runs if r.mbit_s]

    def stats(self) -> dict | None:
        """Median, min and max Mbit/s of the complete runs; ``runs`` says how many there were, so a
        reader can tell a spread of 0% from a single run (which has no spread)."""
        s = self.speeds()
        if not s:
            return None
        med = statistics.median(s)
        return {"runs": len(s), "median_mbit_s": med, "min_mbit_s": min(s), "max_mbit_s": max(s),
                "spread_pct": (max(s) - min(s)) / med * 100}

    def as_dict(self) -> dict:
        return {"path": self.path, "chip": self.chip, "driver_reports": self.driver_reports, "ok": self.ok, "error": self.error,
                "boot_s": self.boot_seconds, "runs": [r.as_dict() for r in self.runs],
                "stats": self.stats(), "dhcp_log": self.dhcp, "console_tail": self.console_tail}


@dataclass
class NicResult:
    nic: str
    rom: str
    rom_ipxe: bool
    id: str | None = None  # vendor:device as QEMU's query-pci saw the NIC, "8086:100e"
    paths: dict[str, PathResult] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        n, u = self.paths.get("native"), self.paths.get("undi")
        if not (n and u and n.stats() and u.stats()):
            return None
        return n.stats()["median_mbit_s"] / u.stats()["median_mbit_s"]

    def as_dict(self) -> dict:
        return {"nic": self.nic, "rom": self.rom, "rom_is_ipxe": self.rom_ipxe, "id": self.id,
                "native": self.paths.get("native").as_dict() if "native" in self.paths else None,
                "undi": self.paths.get("undi").as_dict() if "undi" in self.paths else None,
                "ratio_native_over_undi": self.ratio}


def bench_script(base: str, path: str, tag: str, runs: int, size: int, then: list[str] | None = None) -> str:
    """The script a client runs once it is on the right driver: N timed downloads, then ``then``
    (default: end the script)."""
    lines = ["#!ipxe",
             f"echo romlab bench: {path} path, driver ${{netX/chip}}, {runs} x {human_size(size)}"]
    for k in range(1, runs + 1):
        ident = f"{tag}-{k}"
        lines += [f"set romlab_run {ident}",
                  f"imgfetch --name romlab_p {base}/payload/{ident} || goto romlab_fail",
                  f"imgfetch --name romlab_d {base}/done/{ident} || goto romlab_fail",
                  "imgfree romlab_p", "imgfree romlab_d",
                  f"echo romlab bench: run {k} of {runs} received"]
    lines += [f"imgfetch {base}/status/finished?tag={tag} ||", "echo romlab bench: finished",
              *(then or ["exit 0"]),
              ":romlab_fail",
              f"imgfetch {base}/fail/${{romlab_run}}?errno=${{errno}} ||",
              "echo romlab bench: failed", "exit 1", ""]
    return "\n".join(lines)


class PhasePlan:
    """Per-boot planner: which script a client gets, decided by the driver it reports."""

    def __init__(self, path: str, tag: str, runs: int, size: int, undionly_url: str | None = None):
        self.path, self.tag, self.runs, self.size = path, tag, runs, size
        self.undionly_url = undionly_url  # None: from this HTTP server
        self.lock = threading.Lock()
        self.chips: list[str] = []
        self.chip: str | None = None
        self.error: str | None = None

    def __call__(self, req: ScriptRequest) -> str | None:
        if req.name == "boot.ipxe":
            return first_script(req.base)
        with self.lock:
            chip = req.chip
            self.chips.append(chip)
            if self.path == "undi" and chip != "undionly":
                if len(self.chips) > 1:
                    self.error = (f"the UNDI chain did not take: after undionly.kpxe the client still runs "
                                  f"driver {chip}")
                    return "#!ipxe\necho romlab bench: chainload loop\nexit 1\n"
                return ("#!ipxe\necho romlab bench: chaining undionly.kpxe to drive the NIC through the ROM's UNDI\n"
                        f"chain {self.undionly_url or req.base + '/file/undionly.kpxe'}\n")
            if self.path == "native" and chip == "undionly":
                self.error = "the native run came up on undionly, not on a native driver"
                return "#!ipxe\nexit 1\n"
            if self.chip is not None:
                self.error = f"the client asked for the bench twice (driver {chip}); it must have rebooted"
                return "#!ipxe\nexit 1\n"
            self.chip = chip
            return bench_script(req.base, self.path, self.tag, self.runs, self.size)


def phase_timeout(size: int, runs: int) -> float:
    """Hang guard: two minutes of boot, then every run at 1 Mbit/s or better."""
    return 120.0 + runs * size * 8 / 1e6


def run_phase(*, nic: str, rom: str, images, path: str, size: int, runs: int, payload: bytes,
              dhcp: str, firmware: str = "seabios", accel: str = "tcg", timeout: float | None = None,
              progress=None) -> tuple[PathResult, tuple[int, int] | None]:
    """One boot of ``nic`` taking ``path`` (native or undi); returns its result and the device IDs."""
    from romlab.lab.bootnet import DnsmasqNet, SlirpNet

    say = progress or (lambda msg: None)
    res = PathResult(path)
    ipxe_rom = is_ipxe(images)
    tag = re.sub(r"[^A-Za-z0-9]+", "_", f"{nic}_{path}")
    plan = PhasePlan(path, tag, runs, size)
    timeout = timeout or phase_timeout(size, runs)
    ids = None
    with contextlib.ExitStack() as stack:
        work = tempfile.mkdtemp(prefix="romlab-bench-")
        stack.callback(shutil.rmtree, work, True)
        net = stack.enter_context(DnsmasqNet() if dhcp == "dnsmasq" else SlirpNet())
        tftp = os.path.join(work, "tftp")
        os.mkdir(tftp)
        for f in (UNDIONLY, IPXE_PXE):
            if not os.path.exists(f):
                raise LabError(f"{f} is missing; install Debian's ipxe package (scripts/setup.sh does)")
            shutil.copyfile(f, os.path.join(tftp, os.path.basename(f)))
        http = LabHttp(net.http_socket(), payload=payload, planner=plan,
                       files={"undionly.kpxe": UNDIONLY, "ipxe.pxe": IPXE_PXE})
        stack.enter_context(http)
        url = f"http://{net.guest_host}:{http.address[1]}/boot.ipxe"
        if net.kind == "dnsmasq":
            # With a real TFTP server, undionly.kpxe comes the way a PXE ROM would fetch it.
            plan.undionly_url = f"tftp://{net.guest_host}/undionly.kpxe"
        nbp = "undionly.kpxe" if path == "undi" else "ipxe.pxe"
        net.configure(ipxe_url=url, nbp=None if ipxe_rom else nbp, tftp_dir=tftp, ipxe_rom=ipxe_rom)
        qemu = Qemu(Machine(nic=nic, rom=rom, firmware=firmware, netdev=net.netdev(), accel=accel,
                            memory=512 if firmware == "ovmf" else 256), workdir=os.path.join(work, "qemu"))
        os.mkdir(qemu.workdir)
        stack.callback(qemu.stop)
        qemu.start()
        http.on_hit = lambda hit: qemu.console.notify()
        ids = qemu.query_nic_ids()
        if ids is None:
            with contextlib.suppress(Exception):
                qemu.proc.wait(timeout=2)
            if not qemu.alive():
                raise LabError(f"QEMU did not start: {qemu.qemu_error() or 'it exited at once'}")
        t0 = time.monotonic()
        seen_runs = 0

        def over(c) -> bool:
            return bool(http.requested("/status/finished") or http.failures or plan.error or c.find("no_boot"))

        while True:
            qemu.console.wait(over, 1.0)
            done = [t for t in http.transfers.values() if t.done_at is not None]
            while seen_runs < len(done):
                seen_runs += 1
                tr = sorted(done, key=lambda t: t.start)[seen_runs - 1]
                say(f"run {seen_runs}/{runs}: {human_size(tr.sent)} in {tr.seconds:.2f} s = "
                    f"{mbit(tr.size, tr.seconds):.1f} Mbit/s (driver {plan.chip})")
            if over(qemu.console) or not qemu.alive() or time.monotonic() - t0 > timeout:
                break
        res.boot_seconds = round(time.monotonic() - t0, 3)
        c = qemu.console
        qemu.stop()
        res.chip = plan.chip
        res.driver_reports = list(plan.chips)
        res.dhcp = net.dhcp_log()
        res.console_tail = c.tail(10)
        for k in range(1, runs + 1):
            tr = http.transfers.get(f"{tag}-{k}")
            if tr is None:
                res.runs.append(Run(k, None, 0, size, None, False, "never requested"))
                continue
            res.runs.append(Run(k, tr.seconds, tr.sent, tr.size,
                                None if tr.sent_all_at is None else tr.sent_all_at - tr.start, tr.complete,
                                tr.error or (None if tr.done_at else "the client never confirmed it")))
        if http.requested("/status/finished") and all(r.complete for r in res.runs):
            return res, ids
        if plan.error:
            res.error = plan.error
        elif http.failures:
            f = http.failures[0]
            res.error = f"download {f['ident']} failed in the guest (iPXE error {f.get('errno', '?')})"
        elif c.find("no_boot") and not (c.find("rom_banner") or c.find("ipxe_start")):
            res.error = skip_reason(images, ids, firmware) or f"the firmware never ran the ROM: {c.find('no_boot')[0].line}"
        elif c.find("no_boot"):
            res.error = f"the boot gave up: {c.find('no_boot')[0].line.strip()}"
        elif not qemu.alive() and time.monotonic() - t0 <= timeout:
            res.error = f"QEMU stopped: {qemu.qemu_error() or 'the guest reset'}"
        else:
            last = c.tail(1)
            res.error = (f"no result after {timeout:.0f} s, {hang_stage(c)}"
                         + (f"; last console line: {last[0].strip()!r}" if last else ""))
        return res, ids


def run_bench(*, nics: list[str], rom: str = "auto", size: int, runs: int, dhcp: str = "auto",
              firmware: str = "seabios", accel: str = "tcg", timeout: float | None = None,
              progress=None) -> dict:
    say = progress or (lambda msg: None)
    if rom != "auto" and len(nics) > 1:
        raise LabError("--rom PATH fits one NIC model; give one --nic, or --rom auto for Debian's ROMs")
    payload = payload_bytes(size)
    results: list[NicResult] = []
    started = utc_now()
    for nic in nics:
        path_rom = default_rom(nic) if rom == "auto" else rom
        if not os.path.isfile(path_rom):
            raise LabError(f"{path_rom}: no such ROM file")
        images = rom_images(path_rom)
        ipxe_rom = is_ipxe(images)
        net = dhcp if dhcp != "auto" else ("slirp" if ipxe_rom else "dnsmasq")
        if net == "slirp" and not ipxe_rom:
            raise LabError(f"{path_rom} is not iPXE: QEMU's slirp DHCP cannot break its chainload loop; "
                           "use --dhcp dnsmasq (as root)")
        nr = NicResult(nic, path_rom, ipxe_rom)
        for path in PATHS:
            say(f"[{nic} {path}] booting {os.path.basename(path_rom)} ({net} DHCP)")
            pr, ids = run_phase(nic=nic, rom=path_rom, images=images, path=path, size=size, runs=runs,
                                payload=payload, dhcp=net, firmware=firmware, accel=accel, timeout=timeout,
                                progress=lambda m, p=path: say(f"[{nic} {p}] {m}"))
            if ids:
                nr.id = pci_id(*ids)
            nr.paths[path] = pr
            if pr.error:
                say(f"[{nic} {path}] failed: {pr.error}")
        results.append(nr)
    # No single input: each NIC model QEMU emulates is one, spelled as nvm --qemu's are (docs/conventions.md).
    return document(SCHEMA, inputs=[f"qemu:{n}" for n in nics], started=started, size_bytes=size, runs=runs,
                    firmware=firmware, accel=accel, nics=[r.as_dict() for r in results])
