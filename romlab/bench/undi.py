"""A NIC's own UNDI driver (from its option ROM, run in drivers.undi's emulated PC) against a
reference driver on the same device, in one run, with UNDI's time taken apart call by call.

The reference is romlab's native driver (C batch path, one frame per call like UNDI's TRANSMIT)
for the Intel parts it drives, and the kernel's driver through pktgen for a NIC romlab has no
driver of its own for (rtl8139: whichever kernel driver owns it, 8139cp for QEMU's rtl8139, a
revision 0x20 8139C+ that 8139too leaves to 8139cp; 8139too on older chips), taken while the kernel
still owns the device.

UNDI sends the way iPXE's undinet does: one UNDI_TRANSMIT per frame, and between two frames a
poll (ISR START when the device's interrupt line is up, then PROCESS and GET_NEXT until DONE).
Each frame size is measured twice:

- fast path: no per-instruction or per-access hook; a ``trace.Meter`` takes a timestamp at the
  boundaries the machine has anyway, so each call's time is split into disjoint, measured buckets
  (Python before ``emu_start``, inside it, device callbacks, BIOS services, legacy ports, Python
  after). The run's wall time is measured around the loop; what the calls' buckets leave of it
  (the loop's own work between calls: making the frame, asking for the interrupt line) is
  reported as unaccounted, not spread over the buckets.
- trace: a fixed number of frames with ``--trace`` on: every register access counted and timed,
  instructions and real/protected mode switches counted, per call.

The device is one argument (a ``drivers.undi.device.Device``), so the same code runs on the VFIO
backend (``run``) and on the e1000 register model (``run_model``, for tests and for working on
the bench without a NIC; not a CLI option, because its figures would read as a NIC's).
"""
from __future__ import annotations

import contextlib
import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hw.errors import LabError
from romlab.conventions import device_input, pci_id, utc_now

SCHEMA = "romlab.bench-undi/1"
SIZES = (64, 1514)
SEED = 0x554E4449  # "UNDI": the frames' payload seed, as `romlab nic` frames carry one
INTEL_IDS = {(0x8086, 0x100E), (0x8086, 0x10D3)}
RTL8139 = (0x10EC, 0x8139)
DEBIAN_ROMS = {(0x8086, 0x100E): "/usr/lib/ipxe/qemu/pxe-e1000.rom",
               (0x8086, 0x10D3): "/usr/lib/ipxe/qemu/pxe-e1000e.rom",
               (0x10EC, 0x8139): "/usr/lib/ipxe/qemu/pxe-rtl8139.rom"}


@dataclass
class Throughput:
    path: str  # "undi", "c" (romlab's native driver) or "kernel" (pktgen)
    size: int
    packets: int
    seconds: float
    counted: int | None = None  # the driver's own count of frames sent (UNDI's XmtGoodFrames, GPTC)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.pps * self.size * 8 / 1e6

    def as_dict(self) -> dict:
        return {"path": self.path, "frame_bytes": self.size, "packets": self.packets, "duration_s": self.seconds,
                "driver_counted_packets": self.counted, "pps": self.pps, "mbit_s": self.mbps}


# --- UNDI on one device ------------------------------------------------------------------------

def _calls(meter, frames: int) -> list[dict]:
    """The meter's records as the JSON's per-call rows (every figure from measured values)."""
    from drivers.undi.trace import BUCKETS

    rows = []
    for label, rec in meter.calls.items():
        total = sum(rec.call_ns)
        rows.append({
            "call": label, "calls": rec.calls, "calls_per_frame": rec.calls / frames if frames else 0.0,
            "time_ns_total": total,
            "mean_us_per_call": total / rec.calls / 1e3 if rec.calls else 0.0,
            "median_us_per_call": statistics.median(rec.call_ns) / 1e3 if rec.call_ns else 0.0,
            "buckets_ns_total": {b: rec.ns[b] for b in BUCKETS},
            "buckets_us_per_call": {b: rec.ns[b] / rec.calls / 1e3 if rec.calls else 0.0 for b in BUCKETS},
        })
    return rows


def _trace_calls(meter) -> list[dict]:
    rows = []
    for label, rec in meter.calls.items():
        n = rec.calls or 1
        rows.append({"call": label, "calls": rec.calls,
                     "mean_us_per_call": sum(rec.call_ns) / n / 1e3,
                     "median_us_per_call": statistics.median(rec.call_ns) / 1e3 if rec.call_ns else 0.0,
                     "instructions_per_call": rec.instructions / n,
                     "mode_switches_per_call": rec.mode_switches / n,
                     "device_reads_per_call": rec.device_reads / n,
                     "device_writes_per_call": rec.device_writes / n,
                     "device_us_per_call": rec.device_ns / n / 1e3,
                     "instructions": rec.instructions, "mode_switches": rec.mode_switches,
                     "device_reads": rec.device_reads, "device_writes": rec.device_writes,
                     "device_ns_total": rec.device_ns})
    return rows


def _send(client, frame_of: Callable[[int], bytes], *, frames: int | None = None,
          seconds: float | None = None) -> tuple[int, int, int, int]:
    """undinet's way: TRANSMIT, then a poll, per frame; until ``frames`` are sent or ``seconds``
    have passed. Returns (frames sent, wall ns, wall start ns, wall end ns), the wall measured
    around the loop."""
    sent = 0
    t0 = time.perf_counter_ns()
    end = t0 + int(seconds * 1e9) if seconds is not None else None
    while True:
        client.transmit(frame_of(sent))
        client.poll()
        sent += 1
        if frames is not None and sent >= frames:
            break
        if end is not None and time.perf_counter_ns() >= end:
            break
    t1 = time.perf_counter_ns()
    return sent, t1 - t0, t0, t1


def measure_size(um, client, size: int, seconds: float, trace_frames: int, *,
                 meter_log: bool = False) -> tuple[Throughput, dict]:
    """One frame size on an open UNDI: the fast-path run (throughput and buckets), then the traced
    run. Returns the throughput and the size's breakdown for the JSON."""
    from drivers import frames as F
    from drivers.undi.trace import Meter, Trace

    mac = client.mac or b"\x02\0\0\0\0\x01"
    cache: dict[int, bytes] = {}

    def frame_of(seq: int) -> bytes:
        f = cache.get(seq & 63)  # 64 distinct seeded frames, made once: the loop measures UNDI, not hashing
        if f is None:
            f = cache[seq & 63] = F.frame(mac, F.BROADCAST, SEED, seq & 63, size)
        return f

    for seq in range(64):
        frame_of(seq)
    before = client.get_statistics().xmt_good_frames
    meter = Meter(log=meter_log)
    um.set_meter(meter)
    try:
        sent, wall, t0, t1 = _send(client, frame_of, seconds=seconds)
    finally:
        um.set_meter(None)
    counted = client.get_statistics().xmt_good_frames - before
    accounted = sum(sum(r.ns.values()) for r in meter.calls.values())
    fast = {"frames": sent, "wall_ns": wall, "accounted_ns": accounted, "unaccounted_ns": wall - accounted,
            "calls": _calls(meter, sent)}
    if meter_log:
        fast["_meter"] = (meter, t0, t1)  # for tests; dropped before the JSON

    tmeter = Meter()
    trace = Trace(tmeter)
    um.set_meter(tmeter)
    um.set_trace(trace)
    try:
        tsent, twall, *_ = _send(client, frame_of, frames=trace_frames)
    finally:
        um.set_trace(None)
        um.set_meter(None)
    # Medians, not means: a call the scheduler stalls once moves a mean on a shared machine.
    fast_median = {c["call"]: c["median_us_per_call"] for c in fast["calls"]}
    traced = _trace_calls(tmeter)
    for row in traced:
        f = fast_median.get(row["call"])
        row["trace_overhead_factor"] = row["median_us_per_call"] / f if f else None
    registers = [{"bar": bar, "offset": off, "access": "read" if kind == "r" else "write",
                  "accesses": n, "ns_total": ns, "ns_per_access": ns / n}
                 for (bar, off, kind), (n, ns) in sorted(trace.registers.items())]
    breakdown = {"frame_bytes": size, "fast": fast,
                 "trace": {"frames": tsent, "wall_ns": twall, "calls": traced, "registers": registers,
                           "instructions": trace.instructions, "mode_switches": trace.mode_switches,
                           "paging_seen": trace.paging_seen},
                 "_trace": trace}
    return Throughput("undi", size, sent, wall / 1e9, counted), breakdown


EMPTY_AT = 0x8000  # a `retf` in the client's scratch segment, clear of its blocks and buffers
EMPTY_LABEL = "empty far call (retf)"


def empty_calls(um, count: int = 200) -> dict:
    """What the machine itself costs per call: far calls to a lone ``retf``, made as the UNDI
    calls are (same stack, same watchdog), metered the same way. Measured, so the UNDI calls' own
    figures can be read against it rather than have it subtracted from them."""
    from drivers.undi import machine as M
    from drivers.undi.trace import Meter

    um.m.write(M.SCRATCH_SEG * 16 + EMPTY_AT, b"\xcb")
    meter = Meter()
    um.set_meter(meter)
    try:
        for _ in range(count):
            meter.begin(EMPTY_LABEL)
            try:
                um.m.far_call(M.SCRATCH_SEG, EMPTY_AT, timeout=5.0, context=EMPTY_LABEL)
            finally:
                meter.end()
    finally:
        um.set_meter(None)
    row = _calls(meter, count)[0]
    row["calls_per_frame"] = None  # made by the bench, not by sending frames
    return row


def bench_session(um, client, sizes=SIZES, seconds: float = 2.0, trace_frames: int = 100, *,
                  progress: Callable[[str], None] | None = None,
                  meter_log: bool = False) -> tuple[list[Throughput], dict]:
    """The UNDI half of the bench on a ROM's UNDI already brought up (``um``, and ``client`` past
    undinet's probe) on any drivers.undi Device: open it, take the machine's own cost per call,
    measure each frame size, close it. The device is whatever ``um`` runs against."""
    say = progress or (lambda _m: None)
    say("UNDI: OPEN")
    client.open()
    say("UNDI: empty far calls, for the machine's own cost per call")
    empty = empty_calls(um)
    figures, sizes_out = [], []
    for size in sizes:
        say(f"UNDI: {size}-byte frames, {seconds:g} s, then {trace_frames} traced")
        fig, br = measure_size(um, client, size, seconds, trace_frames, meter_log=meter_log)
        figures.append(fig)
        sizes_out.append(br)
    client.close()
    calls = um.timings.calls
    bring_up = {"init_s": um.timings.init, "loader_s": um.timings.loader,
                "start_undi_s": sum(calls.get("START_UNDI", [])), "open_s": sum(calls.get("UNDI_OPEN", []))}
    info = client.info
    direct = [i for i, a in sorted(um.bar_addresses.items()) if any(a == b for b, _ in getattr(um.m, "direct", []))]
    undi = {"mac": ":".join(f"{b:02x}" for b in client.mac), "bring_up": bring_up,
            "base_io": info.base_io if info else None, "bars_mapped_directly": direct,
            "irq_line_polled": client.irq_pending is not None, "empty_call": empty, "sizes": sizes_out}
    return figures, undi


# --- the reference driver ---------------------------------------------------------------------

def reference_kind(ids: tuple[int, int]) -> str:
    if ids in INTEL_IDS:
        return "c"
    if ids == RTL8139:
        return "kernel"
    raise LabError(f"{pci_id(*ids)} has no reference driver here: romlab's native driver takes 8086:100e and "
                   f"8086:10d3, the kernel's own driver (8139cp or 8139too) through pktgen takes 10ec:8139")


REFERENCE_NAMES = {"c": "romlab native driver, C path, batch 1", "kernel": "kernel driver through pktgen"}


def vfio_session(bdf: str, rom: bytes | None, force_ids: bool):
    """The ROM's UNDI up on the NIC through drivers.undi's VFIO backend (``undi_on_device``: the
    device on vfio-pci, its ROM from the VFIO ROM region unless ``rom`` is given, init, loader,
    undinet's probe; the device reset and given back however it ends)."""
    try:
        from drivers.undi.vfio_device import undi_on_device
    except ImportError:
        raise LabError("this build has no VFIO backend for the UNDI machine (drivers/undi/vfio_device.py), so a "
                       "ROM's UNDI cannot drive a real NIC") from None
    return undi_on_device(bdf, rom, force_ids=force_ids, rom_name="--rom" if rom is not None else "")


def run(bdf: str, sizes=SIZES, seconds: float = 2.0, trace_frames: int = 100, *, rom_path: str | None = None,
        force_ids: bool = False, open_session=None, progress: Callable[[str], None] | None = None) -> dict:
    """The whole bench on one NIC, which starts bound to its kernel driver and is given back to it:
    the reference driver, then the ROM's UNDI through the VFIO backend. ``open_session(bdf, rom,
    force_ids)`` brings the UNDI up (default ``vfio_session``); what it yields has ``machine``,
    ``client`` and ``nic`` (whose ``rom()`` is the image the device holds)."""
    from drivers.frames import MAX_FRAME, MIN_FRAME
    from hw import vfio_bind
    from hw.pci import PciDevice
    from romlab.bench import native as bn

    say = progress or (lambda _m: None)
    started = utc_now()
    dev = PciDevice.open(bdf)
    ids = (dev.vendor_id, dev.device_id)
    kind = reference_kind(ids)
    if dev.driver in (None, "vfio-pci"):
        raise LabError(f"{dev.bdf} must start bound to its kernel driver (it is bound to {dev.driver or 'nothing'}): "
                       "the device is given back to it afterwards, and pktgen needs it")
    if not sizes or any(not MIN_FRAME <= s <= MAX_FRAME for s in sizes):
        raise LabError(f"frame sizes must be {MIN_FRAME}..{MAX_FRAME} bytes")
    rom = rom_source = None
    if rom_path:
        from drivers.undi.loader import check_ids, legacy_undi_image
        from romtools.walker import read_input

        rom, rom_source = read_input(rom_path), rom_path
        # refused here, before the reference runs or the NIC is bound, as `undi` refuses it
        check_ids(legacy_undi_image(rom), ids, force_ids)
    reference: list[Throughput] = []
    if kind == "kernel":
        netdirs = list((Path("/sys/bus/pci/devices") / str(dev.bdf) / "net").glob("*"))
        if not netdirs:
            raise LabError(f"{dev.bdf} has no network interface under its kernel driver")
        for size in sizes:
            say(f"kernel: pktgen, {size}-byte frames, {seconds:g} s")
            r = bn.kernel_tx(netdirs[0].name, size, 1, seconds, nic_counter=False)
            reference.append(Throughput("kernel", size, r.queued, r.seconds))
    vfio_bind.bind(dev)
    try:
        if kind == "c":
            for size in sizes:
                say(f"native: romlab C path, {size}-byte frames, {seconds:g} s")
                r = bn.romlab_tx(str(dev.bdf), "c", size, 1, seconds)
                reference.append(Throughput("c", size, r.queued, r.seconds, r.hw_packets))
        say("UNDI: to vfio-pci, ROM, init, UNDI loader, START_UNDI .. GET_IFACE_INFO")
        with (open_session or vfio_session)(str(dev.bdf), rom, force_ids) as session:
            if rom is None:
                rom, rom_source = session.nic.rom(), "the device's ROM BAR (VFIO ROM region)"
            figures, undi = bench_session(session.machine, session.client, sizes, seconds, trace_frames,
                                          progress=progress)
    finally:
        vfio_bind.unbind(PciDevice.open(bdf))
    doc = document(started, device_input(dev.bdf), ids, "vfio", rom, rom_source, kind, figures + reference, undi,
                   seconds, trace_frames)
    if kind == "kernel":  # the driver that owned the device is the reference: name it (8139cp on QEMU's rtl8139)
        doc["reference"]["driver"] = f"kernel driver {dev.driver} through pktgen"
    return doc


def document(started: str, input_: str, ids: tuple[int, int], backend: str, rom: bytes, rom_source: str,
             reference: str | None, figures: list[Throughput], undi: dict, seconds: float, trace_frames: int) -> dict:
    """The romlab.bench-undi/1 document: schema first, units in key names, UTC times with zone."""
    ratios = []
    for size in sorted({f.size for f in figures}):
        u = next((f for f in figures if f.path == "undi" and f.size == size), None)
        r = next((f for f in figures if f.path == reference and f.size == size), None)
        ratios.append({"frame_bytes": size,
                       "reference_over_undi": r.pps / u.pps if u and r and u.pps else None})
    for s in undi["sizes"]:
        s.pop("_trace", None)
        s["fast"].pop("_meter", None)
    return {"schema": SCHEMA, "input": input_, "started": started, "finished": utc_now(), "id": pci_id(*ids),
            "via": backend, "rom": {"from": rom_source, "size": len(rom),
                                        "sha256": hashlib.sha256(rom).hexdigest()},
            "reference": {"path": reference, "driver": REFERENCE_NAMES.get(reference)},
            "figure_duration_s": seconds, "trace_frames": trace_frames,
            "figures": [f.as_dict() for f in figures], "ratios": ratios, "undi": undi}


# --- the register model, for tests and for working on the bench without a NIC -------------------

MODEL_PARTS = {"e1000": (0x100E, False), "e1000e": (0x10D3, True)}


def model_device(part: str = "e1000", mac: bytes = bytes.fromhex("525400123456")):
    from drivers.intel_model import IntelModel
    from drivers.undi.device import ModelDevice

    device_id, pcie = MODEL_PARTS[part]
    return ModelDevice(IntelModel(device_id=device_id, pcie=pcie, mac=mac))


class _Sink:
    """Frames the model sent are dropped as they go (a wire with nothing on it), so a long run does
    not keep them all."""

    def __init__(self, model):
        self.count = 0
        model.tx_frames = self

    def append(self, _frame) -> None:
        self.count += 1


@dataclass
class ModelSession:
    """What ``vfio_session`` yields, for a register model: the machine, the client past undinet's
    probe, and the device (``rom()`` the image it was given)."""

    nic: object
    machine: object
    client: object


@contextlib.contextmanager
def model_session(device, rom: bytes, force_ids: bool = False):
    """The ROM's UNDI up on ``device`` (a register model) as a BIOS and undinet bring it up, with
    the model's interrupt line polled as undinet's IRQ handler would see it."""
    from drivers.undi.client import UndiClient
    from drivers.undi.loader import UndiMachine

    um = UndiMachine(rom, device, force_ids=force_ids)
    um.run_init()
    um.run_loader()
    client = UndiClient(um, irq_pending=lambda: device.irq)
    client.probe()
    device.rom = lambda: rom
    yield ModelSession(device, um, client)
    client.remove()


def run_model(part: str = "e1000", rom_path: str | None = None, sizes=SIZES, seconds: float = 1.0,
              trace_frames: int = 50, *, device=None, meter_log: bool = False) -> tuple[dict, list, dict]:
    """The UNDI half of the bench against the register model (no reference driver: there is no
    device for one). Returns the document, the throughput figures, and the raw breakdown (with
    the meters and traces kept, for tests)."""
    dev = device or model_device(part)
    sink = _Sink(dev.model)
    path = rom_path or DEBIAN_ROMS[(0x8086, dev.model.device_id)]
    rom = Path(path).read_bytes()
    started = utc_now()
    with model_session(dev, rom) as session:
        figures, undi = bench_session(session.machine, session.client, sizes, seconds, trace_frames,
                                      meter_log=meter_log)
    raw = {"sizes": [dict(s, fast=dict(s["fast"])) for s in undi["sizes"]], "sink": sink}
    ids = (dev.config_read(0, 2), dev.config_read(2, 2))
    doc = document(started, f"model:{part}", ids, "model", rom, path, None, figures, undi, seconds, trace_frames)
    return doc, figures, raw
