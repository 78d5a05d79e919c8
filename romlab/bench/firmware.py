"""UNDI against native: HTTP download speed of one NIC through its ROM's two driver paths.

For each NIC two QEMU boots download a payload several times over HTTP:

* **native**: the ROM's own iPXE with its native driver for the NIC (for a ROM that is not
  iPXE, Debian's ``ipxe.pxe`` is chainloaded first, which brings iPXE's native drivers);
* **UNDI**: Debian's ``undionly.kpxe`` chainloaded, which drives the NIC only through the
  UNDI API the ROM left in base memory.

Each boot sizes its runs before it takes them: sizing transfers, growing from a few MiB, go on
until one lasts long enough to extrapolate from, and the runs then carry enough bytes to last
``min_run_s`` (2 s by default) with a margin, so that a run measures the path and not the HTTP
request's start-up, TCP's slow start or one stall. The sizing transfers
are kept in the document apart from the runs; every run is kept, none is retried or dropped.

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
SCHEMA = "romlab.bench-firmware/4"

MIB = 1 << 20
# Runs are sized to last MARGIN times the minimum at the speed the sizing transfer showed, so
# that a run somewhat faster than that one still lasts the minimum.
MARGIN = 2.0
# A sizing transfer this long (or the minimum, if shorter) is long enough to extrapolate from.
SIZING_S = 1.0
SIZING_START = 4 * MIB
# The guest keeps a whole download in its memory (imgfetch): the largest run and the guest's RAM.
MAX_RUN_BYTES = 1024 * MIB
GUEST_MIB = 256 + MAX_RUN_BYTES // MIB + 256
# A boot with no HTTP request for this long is hung, however long its runs are meant to be.
QUIET_LIMIT_S = 300.0

# ROMs Debian does not ship, made for the bench from one it does: QEMU NIC model -> (source ROM,
# PCI device ID). QEMU's igb is the 82576 (8086:10c9), which iPXE's intel driver lists as the
# e1000e ROM's 82574L; SeaBIOS runs a ROM only when its PCIR IDs are the device's, so the e1000e ROM
# is retargeted to 10c9 (as `romlab patch --device 10c9 --fix-checksums` does).
RETARGETED = {"igb": ("pxe-e1000e.rom", 0x10C9)}


def default_rom(nic: str, workdir: str | None = None) -> str:
    """Debian's PXE ROM for a QEMU NIC model (ipxe-qemu's pxe-<model>.rom), or for a model Debian has
    no ROM for but :data:`RETARGETED` names, that ROM retargeted into ``workdir``."""
    model, _ = nic_device(nic)
    if model in RETARGETED and workdir is not None:
        src, device = RETARGETED[model]
        return retarget_rom(os.path.join(DEBIAN_QEMU_ROMS, src), device,
                            os.path.join(workdir, f"pxe-{model}-from-{src}"))
    name = "virtio" if model.startswith("virtio-net") else model
    path = os.path.join(DEBIAN_QEMU_ROMS, f"pxe-{name}.rom")
    if not os.path.exists(path):
        raise LabError(f"no Debian ROM {path} for NIC {nic}; give one with --rom PATH "
                       "(or install ipxe-qemu)")
    return path


def retarget_rom(src: str, device: int, out: str) -> str:
    """``src`` with every image's PCIR device ID (and device list) set to ``device`` and its
    checksums fixed, written to ``out``: the bench's own copy, made fresh for each run."""
    from romtools.checksums import fix_rom_checksums
    from romtools.patch import RomPatcher
    from romtools.walker import read_input

    if not os.path.exists(src):
        raise LabError(f"no Debian ROM {src} to retarget; install ipxe-qemu (scripts/setup.sh does)")
    patcher = RomPatcher(read_input(src))
    for i in patcher.select(None):
        patcher.set_device(i, device)
    buf = bytearray(patcher.result())
    fix_rom_checksums(buf)
    with open(out, "wb") as f:
        f.write(buf)
    return out


def run_size(sizing: list[tuple[int, float]], min_run_s: float, floor: int) -> int:
    """The payload for the runs, from the sizing transfers (bytes, seconds): what lasts ``min_run_s``
    times :data:`MARGIN` at the fastest pace among them, in whole MiB, at least ``floor`` and at most
    :data:`MAX_RUN_BYTES`. The fastest, because a stall (a lost segment waiting out a retransmission
    timer, the boot's first connection) only ever makes a transfer slower: sized from a stalled one,
    the runs would come out short."""
    pace = max(size / seconds for size, seconds in sizing)
    want = pace * min_run_s * MARGIN
    return max(floor, min(MAX_RUN_BYTES, -(-int(want) // MIB) * MIB))


def next_sizing(size: int, seconds: float, min_run_s: float, count: int = 2) -> int | None:
    """The next sizing transfer after the ``count``-th, of ``size`` bytes in ``seconds``; None when
    that one was long enough (:data:`SIZING_S`, or ``min_run_s`` if shorter) or already the largest
    run there can be. A first transfer long enough is taken again at its size: it may carry the
    boot's one-off costs, and a second gives a pace without them."""
    if size >= MAX_RUN_BYTES:
        return None
    if seconds >= min(SIZING_S, min_run_s):
        return size if count == 1 else None
    grow = max(2.0, SIZING_S * MARGIN / max(seconds, 1e-3))
    return min(MAX_RUN_BYTES, -(-int(size * grow) // MIB) * MIB)


def payload_of(size: int, block: bytes) -> bytes:
    """``size`` bytes of ``block`` repeated: the seeded payload for a run larger than one block."""
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def mbit(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e6


def host_load() -> float | None:
    """The host's 1-minute load average: other guests on the host's CPUs slow a TCG guest down."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` and all its threads so far (/proc/PID/stat), or
    None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    index: int
    seconds: float | None
    bytes_sent: int
    size: int
    socket_seconds: float | None  # until the last byte was handed to the socket
    complete: bool
    error: str | None = None
    qemu_cpu_seconds: float | None = None  # CPU time QEMU used over the run

    @property
    def mbit_s(self) -> float | None:
        return mbit(self.size, self.seconds) if self.complete and self.seconds else None

    @property
    def mbit_per_cpu_s(self) -> float | None:
        """Megabits per second of CPU time QEMU used in the run: what the path moves for the host CPU
        it was given, which other jobs on the host do not change the way they change the wall-clock
        figure."""
        return mbit(self.size, self.qemu_cpu_seconds) if self.complete and self.qemu_cpu_seconds else None

    def as_dict(self) -> dict:
        return {"run": self.index, "duration_s": self.seconds, "bytes_sent": self.bytes_sent, "size_bytes": self.size,
                "socket_s": self.socket_seconds, "complete": self.complete,
                "mbit_s": self.mbit_s, "qemu_cpu_s": self.qemu_cpu_seconds, "mbit_per_cpu_s": self.mbit_per_cpu_s,
                "error": self.error}


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
    sizing: list[dict] = field(default_factory=list)  # the sizing transfers: size_bytes, duration_s, mbit_s
    run_size: int | None = None  # the payload of each run, chosen from the fastest sizing pace
    warmup: dict | None = None  # the transfer of the runs' size before them: size_bytes, duration_s, mbit_s
    host_load: list[float] = field(default_factory=list)  # the host's 1-minute load average at start and end

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

    def cpu_stats(self) -> dict | None:
        """The same over Mbit per QEMU CPU second, when every complete run has its CPU time."""
        s = [r.mbit_per_cpu_s for r in self.runs if r.mbit_s]
        if not s or None in s:
            return None
        med = statistics.median(s)
        return {"runs": len(s), "median_mbit_per_cpu_s": med, "min_mbit_per_cpu_s": min(s),
                "max_mbit_per_cpu_s": max(s), "spread_pct": (max(s) - min(s)) / med * 100}

    def as_dict(self) -> dict:
        return {"path": self.path, "chip": self.chip, "driver_reports": self.driver_reports, "ok": self.ok, "error": self.error,
                "boot_s": self.boot_seconds, "host_load": self.host_load, "sizing": self.sizing,
                "run_size_bytes": self.run_size, "warmup": self.warmup,
                "runs": [r.as_dict() for r in self.runs],
                "stats": self.stats(), "cpu_stats": self.cpu_stats(), "dhcp_log": self.dhcp,
                "console_tail": self.console_tail}


@dataclass
class NicResult:
    nic: str
    rom: str
    rom_ipxe: bool
    id: str | None = None  # vendor:device as QEMU's query-pci saw the NIC, "8086:100e"
    paths: dict[str, PathResult] = field(default_factory=dict)
    retargeted: str | None = None  # the bench ran ``rom`` with its PCIR IDs changed to these

    @property
    def ratio(self) -> float | None:
        n, u = self.paths.get("native"), self.paths.get("undi")
        if not (n and u and n.stats() and u.stats()):
            return None
        return n.stats()["median_mbit_s"] / u.stats()["median_mbit_s"]

    def as_dict(self) -> dict:
        return {"nic": self.nic, "rom": self.rom, "rom_is_ipxe": self.rom_ipxe,
                "rom_retargeted": None if self.retargeted is None else {"id": self.retargeted}, "id": self.id,
                "native": self.paths.get("native").as_dict() if "native" in self.paths else None,
                "undi": self.paths.get("undi").as_dict() if "undi" in self.paths else None,
                "ratio_native_over_undi": self.ratio}


def bench_script(base: str, path: str, tag: str, runs: int, size: int, then: list[str] | None = None,
                 mark_start: bool = False) -> str:
    """The script a client runs once it is on the right driver: N timed downloads, then ``then``
    (default: end the script). With ``mark_start`` each download is preceded by a request for
    ``/status/start/ID``, so the server can take a reading just before the run begins."""
    lines = ["#!ipxe",
             f"echo romlab bench: {path} path, driver ${{netX/chip}}, {runs} x {human_size(size)}"]
    for k in range(1, runs + 1):
        ident = f"{tag}-{k}"
        lines.append(f"set romlab_run {ident}")
        if mark_start:
            lines += [f"imgfetch --name romlab_s {base}/status/start/{ident} || goto romlab_fail", "imgfree romlab_s"]
        lines += [f"imgfetch --name romlab_p {base}/payload/{ident} || goto romlab_fail",
                  f"imgfetch --name romlab_d {base}/done/{ident} || goto romlab_fail",
                  "imgfree romlab_p", "imgfree romlab_d",
                  f"echo romlab bench: run {k} of {runs} received"]
    lines += [f"imgfetch {base}/status/finished?tag={tag} ||", "echo romlab bench: finished",
              *(then or ["exit 0"]),
              ":romlab_fail",
              f"imgfetch {base}/fail/${{romlab_run}}?errno=${{errno}} ||",
              "echo romlab bench: failed", "exit 1", ""]
    return "\n".join(lines)


def sizing_script(base: str, ident: str, size: int, stage: str = "sized", what: str = "sizing transfer") -> str:
    """One sizing (or warm-up) transfer, then back to the server for the next step (another sizing
    transfer, the warm-up or the runs). The chip rides along so the server still sees which driver
    asks."""
    return "\n".join([
        "#!ipxe", f"echo romlab bench: {what} of {human_size(size)}",
        f"imgfetch --name romlab_p {base}/payload/{ident} || goto romlab_fail",
        f"imgfetch --name romlab_d {base}/done/{ident} || goto romlab_fail",
        "imgfree romlab_p", "imgfree romlab_d",
        f"chain {base}/next?stage={stage}&chip=${{netX/chip}} || goto romlab_fail", "exit 0",
        ":romlab_fail", f"imgfetch {base}/fail/{ident}?errno=${{errno}} ||",
        "echo romlab bench: failed", "exit 1", ""])


class PhasePlan:
    """Per-boot planner: which script a client gets, decided by the driver it reports."""

    def __init__(self, path: str, tag: str, runs: int, size: int, undionly_url: str | None = None,
                 min_run_s: float = 0.0, http: LabHttp | None = None, block: bytes | None = None,
                 say=None):
        self.path, self.tag, self.runs, self.size = path, tag, runs, size
        self.undionly_url = undionly_url  # None: from this HTTP server
        self.lock = threading.Lock()
        self.chips: list[str] = []
        self.chip: str | None = None
        self.error: str | None = None
        # Sizing (min_run_s > 0): the server whose transfers are read and whose payload is set, and
        # the seeded block payloads are made of.
        self.min_run_s, self.http, self.block = min_run_s, http, block
        self.say = say or (lambda msg: None)
        self.sizing: list[dict] = []
        self.warmup: dict | None = None
        self.run_size: int | None = None if min_run_s > 0 else size

    def _serve(self, size: int) -> None:
        self.http.payload = payload_of(size, self.block)

    def _sized(self, req: ScriptRequest) -> str:
        """After a sizing transfer: the next one, or the runs at the size it gives."""
        ident = f"{self.tag}-size{len(self.sizing) + 1}"
        tr = self.http.transfers.get(ident)
        if tr is None or not tr.complete or not tr.seconds:
            self.error = f"sizing transfer {ident} did not complete"
            return "#!ipxe\nexit 1\n"
        self.sizing.append({"size_bytes": tr.size, "duration_s": tr.seconds, "mbit_s": mbit(tr.size, tr.seconds)})
        self.say(f"sizing transfer {len(self.sizing)}: {human_size(tr.size)} in {tr.seconds:.2f} s = "
                 f"{mbit(tr.size, tr.seconds):.1f} Mbit/s")
        nxt = next_sizing(tr.size, tr.seconds, self.min_run_s, len(self.sizing))
        if nxt is not None:
            self._serve(nxt)
            return sizing_script(req.base, f"{self.tag}-size{len(self.sizing) + 1}", nxt)
        self.run_size = run_size([(x["size_bytes"], x["duration_s"]) for x in self.sizing], self.min_run_s,
                                 self.size)
        self._serve(self.run_size)
        # One transfer of the runs' size before them: the first download that large puts iPXE's buffer
        # in guest memory no download has used yet, and cost e1000 and e1000e's first native run up to
        # 0.8 CPU seconds more than the next two. After it, every run starts from the same state.
        return sizing_script(req.base, f"{self.tag}-warm", self.run_size, stage="warmed", what="warm-up transfer")

    def _warmed(self, req: ScriptRequest) -> str:
        tr = self.http.transfers.get(f"{self.tag}-warm")
        if tr is None or not tr.complete or not tr.seconds:
            self.error = "the warm-up transfer did not complete"
            return "#!ipxe\nexit 1\n"
        self.warmup = {"size_bytes": tr.size, "duration_s": tr.seconds, "mbit_s": mbit(tr.size, tr.seconds)}
        self.say(f"warm-up transfer: {human_size(tr.size)} in {tr.seconds:.2f} s = {mbit(tr.size, tr.seconds):.1f} Mbit/s")
        return bench_script(req.base, self.path, self.tag, self.runs, self.run_size, mark_start=True)

    def __call__(self, req: ScriptRequest) -> str | None:
        if req.name == "boot.ipxe":
            return first_script(req.base)
        with self.lock:
            if req.query.get("stage") in ("sized", "warmed"):
                if self.chip is None or req.chip != self.chip:
                    self.error = f"a sizing step came from driver {req.chip!r}, not the bench's {self.chip!r}"
                    return "#!ipxe\nexit 1\n"
                return self._sized(req) if req.query["stage"] == "sized" else self._warmed(req)
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
            if self.min_run_s > 0:
                start = min(self.size, SIZING_START)
                self._serve(start)
                return sizing_script(req.base, f"{self.tag}-size1", start)
            return bench_script(req.base, self.path, self.tag, self.runs, self.size, mark_start=True)


def phase_timeout(size: int, runs: int, min_run_s: float = 0.0) -> float:
    """Hang guard: two minutes of boot, then every run at 1 Mbit/s or better; with runs sized to
    ``min_run_s``, a sizing allowance and every run at up to 50 times its planned length (the guest
    runs on a host other jobs share)."""
    if min_run_s > 0:
        return 120.0 + 8 * SIZING_S * 50 + runs * min_run_s * MARGIN * 50 + size * 8 / 1e6
    return 120.0 + runs * size * 8 / 1e6


def link_down(c) -> str | None:
    """The console line of an iPXE driver that took the NIC but never saw its link come up (iPXE's
    error 38086101, "link down" while waiting for link-up), or None."""
    for e in c.find("ipxe_error"):
        if e.facts.get("code") == "38086101":
            return e.line.strip()
    return None


def run_phase(*, nic: str, rom: str, images, path: str, size: int, runs: int, payload: bytes,
              dhcp: str, firmware: str = "seabios", accel: str = "tcg", timeout: float | None = None,
              progress=None, min_run_s: float = 0.0) -> tuple[PathResult, tuple[int, int] | None]:
    """One boot of ``nic`` taking ``path`` (native or undi); returns its result and the device IDs.

    With ``min_run_s`` > 0 the runs are sized in the boot (see the module's docstring) from
    ``payload``, which is then the seeded block the payloads are made of; ``size`` is the smallest
    run."""
    from romlab.lab.bootnet import DnsmasqNet, SlirpNet

    say = progress or (lambda msg: None)
    res = PathResult(path)
    ipxe_rom = is_ipxe(images)
    tag = re.sub(r"[^A-Za-z0-9]+", "_", f"{nic}_{path}")
    plan = PhasePlan(path, tag, runs, size, min_run_s=min_run_s, block=payload, say=say)
    timeout = timeout or phase_timeout(size, runs, min_run_s)
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
        plan.http = http
        stack.enter_context(http)
        url = f"http://{net.guest_host}:{http.address[1]}/boot.ipxe"
        if net.kind == "dnsmasq":
            # With a real TFTP server, undionly.kpxe comes the way a PXE ROM would fetch it.
            plan.undionly_url = f"tftp://{net.guest_host}/undionly.kpxe"
        nbp = "undionly.kpxe" if path == "undi" else "ipxe.pxe"
        net.configure(ipxe_url=url, nbp=None if ipxe_rom else nbp, tftp_dir=tftp, ipxe_rom=ipxe_rom)
        # Sized runs need the guest's memory to hold the largest one (imgfetch keeps it all).
        memory = GUEST_MIB if min_run_s > 0 else 512 if firmware == "ovmf" else 256
        qemu = Qemu(Machine(nic=nic, rom=rom, firmware=firmware, netdev=net.netdev(), accel=accel,
                            memory=memory), workdir=os.path.join(work, "qemu"))
        os.mkdir(qemu.workdir)
        stack.callback(qemu.stop)
        qemu.start()
        res.host_load.append(host_load())
        # QEMU's CPU time read when each run's start mark and its confirmation arrive: a run that took
        # long with little CPU was waiting (on the network, or for a host CPU), not emulating.
        cpu_at: dict[str, float | None] = {}
        last_hit = [time.monotonic()]

        def on_hit(hit) -> None:
            last_hit[0] = time.monotonic()
            if hit.path.startswith(("/status/start/", "/done/")) and qemu.proc is not None:
                cpu_at[hit.path] = process_cpu_seconds(qemu.proc.pid)
            qemu.console.notify()

        http.on_hit = on_hit
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
            done = [t for t in http.transfers.values() if t.done_at is not None
                    and not t.ident.endswith("-warm") and "-size" not in t.ident]
            while seen_runs < len(done):
                seen_runs += 1
                tr = sorted(done, key=lambda t: t.start)[seen_runs - 1]
                say(f"run {seen_runs}/{runs}: {human_size(tr.sent)} in {tr.seconds:.2f} s = "
                    f"{mbit(tr.size, tr.seconds):.1f} Mbit/s (driver {plan.chip})")
            if over(qemu.console) or not qemu.alive() or time.monotonic() - t0 > timeout:
                break
            if min_run_s > 0 and time.monotonic() - last_hit[0] > QUIET_LIMIT_S:
                break
        res.boot_seconds = round(time.monotonic() - t0, 3)
        res.host_load.append(host_load())
        c = qemu.console
        qemu.stop()
        res.chip = plan.chip
        res.driver_reports = list(plan.chips)
        res.dhcp = net.dhcp_log()
        res.console_tail = c.tail(10)
        res.sizing, res.run_size, res.warmup = list(plan.sizing), plan.run_size, plan.warmup
        for k in range(1, runs + 1):
            ident = f"{tag}-{k}"
            tr = http.transfers.get(ident)
            if tr is None:
                res.runs.append(Run(k, None, 0, plan.run_size or size, None, False, "never requested"))
                continue
            a, b = cpu_at.get(f"/status/start/{ident}"), cpu_at.get(f"/done/{ident}")
            res.runs.append(Run(k, tr.seconds, tr.sent, tr.size,
                                None if tr.sent_all_at is None else tr.sent_all_at - tr.start, tr.complete,
                                tr.error or (None if tr.done_at else "the client never confirmed it"),
                                None if a is None or b is None else round(b - a, 3)))
        if http.requested("/status/finished") and all(r.complete for r in res.runs):
            return res, ids
        if plan.error:
            res.error = plan.error
        elif http.failures:
            f = http.failures[0]
            res.error = f"download {f['ident']} failed in the guest (iPXE error {f.get('errno', '?')})"
        elif link_down(c) and c.find("netdev"):
            nd = c.find("netdev")[-1].facts
            res.error = (f"iPXE's {nd.get('chip', '?')} driver took the NIC but its link never came up: "
                         f"{link_down(c)}")
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
              progress=None, min_run_s: float = 2.0) -> dict:
    say = progress or (lambda msg: None)
    if rom != "auto" and len(nics) > 1:
        raise LabError("--rom PATH fits one NIC model; give one --nic, or --rom auto for Debian's ROMs")
    if min_run_s > 0 and size > MAX_RUN_BYTES:
        raise LabError(f"--size {human_size(size)} is more than the largest run the guest can hold "
                       f"({human_size(MAX_RUN_BYTES)})")
    # With sized runs, one seeded block that every payload repeats; without, the payload itself.
    payload = payload_bytes(min(size, 64 * MIB) if min_run_s > 0 else size)
    results: list[NicResult] = []
    started = utc_now()
    made = tempfile.mkdtemp(prefix="romlab-bench-roms-")  # ROMs the bench retargets for itself
    try:
        for nic in nics:
            results.append(_bench_nic(nic, rom, made, size=size, runs=runs, dhcp=dhcp, firmware=firmware,
                                      accel=accel, timeout=timeout, say=say, payload=payload,
                                      min_run_s=min_run_s))
    finally:
        shutil.rmtree(made, ignore_errors=True)
    # No single input: each NIC model QEMU emulates is one, spelled as nvm --qemu's are (docs/conventions.md).
    return document(SCHEMA, inputs=[f"qemu:{n}" for n in nics], started=started, size_bytes=size, runs=runs,
                    min_run_s=min_run_s, host_cpu_count=os.cpu_count(), firmware=firmware, accel=accel, nics=[r.as_dict() for r in results])


def _bench_nic(nic: str, rom: str, made: str, *, size, runs, dhcp, firmware, accel, timeout, say, payload,
               min_run_s) -> NicResult:
    path_rom = default_rom(nic, made) if rom == "auto" else rom
    model, _ = nic_device(nic)
    if not os.path.isfile(path_rom):
        raise LabError(f"{path_rom}: no such ROM file")
    images = rom_images(path_rom)
    ipxe_rom = is_ipxe(images)
    net = dhcp if dhcp != "auto" else ("slirp" if ipxe_rom else "dnsmasq")
    if net == "slirp" and not ipxe_rom:
        raise LabError(f"{path_rom} is not iPXE: QEMU's slirp DHCP cannot break its chainload loop; "
                       "use --dhcp dnsmasq (as root)")
    nr = NicResult(nic, path_rom, ipxe_rom)
    if rom == "auto" and model in RETARGETED:
        src, device = RETARGETED[model]
        # The copy is gone after the run; the document names what it was made from.
        nr.rom = os.path.join(DEBIAN_QEMU_ROMS, src)
        nr.retargeted = pci_id(0x8086, device)
    for path in PATHS:
        say(f"[{nic} {path}] booting {os.path.basename(path_rom)} ({net} DHCP)")
        pr, ids = run_phase(nic=nic, rom=path_rom, images=images, path=path, size=size, runs=runs,
                            payload=payload, dhcp=net, firmware=firmware, accel=accel, timeout=timeout,
                            progress=lambda m, p=path: say(f"[{nic} {p}] {m}"), min_run_s=min_run_s)
        if ids:
            nr.id = pci_id(*ids)
        nr.paths[path] = pr
        if pr.error:
            say(f"[{nic} {path}] failed: {pr.error}")
    return nr
