"""`romlab bench undi`'s measuring, on the e1000 register model (the VFIO backend plugs into the
same Device interface): the meter's buckets are real, disjoint pieces of time whose sum and the
unaccounted rest make the wall time measured around the run; the trace counts what the device
itself counts; instruction and mode-switch counts match hand-assembled code whose counts are
worked out from its listing; a BAR offered for direct mapping is reached with no callback on the
fast path and through callbacks under the trace; the JSON's shape; the table and the PNG, measured
in its pixels, from a document written by hand.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
from datetime import datetime, timedelta

import pytest
from PIL import Image
from test_bench_render import _rgb, assert_heights_proportional, measure_bar
from json_conventions import check
from test_undi_crafted import listing

from drivers.intel_model import BAR0_SIZE, IntelModel
from drivers.undi import machine as M
from drivers.undi.client import UndiClient
from drivers.undi.device import ModelDevice
from drivers.undi.loader import UndiMachine
from drivers.undi.trace import BUCKETS, Meter, Trace
from romlab.bench import render
from romlab.bench import undi as bu

PXE_E1000 = "/usr/lib/ipxe/qemu/pxe-e1000.rom"
needs_rom = pytest.mark.skipif(not os.path.exists(PXE_E1000), reason="Debian's ipxe-qemu is not installed")
MAC = bytes.fromhex("02a1b2c3d4e5")
CODE_AT = 0x9000  # in the client's scratch segment, clear of its blocks


@pytest.fixture(scope="module")
def model_run():
    if not os.path.exists(PXE_E1000):
        pytest.skip("Debian's ipxe-qemu is not installed")
    dev = bu.model_device("e1000", MAC)
    doc, figures, raw = bu.run_model(device=dev, sizes=(64, 1514), seconds=0.3, trace_frames=12, meter_log=True)
    return doc, figures, raw, dev


# --- the meter ---------------------------------------------------------------------------------

def test_buckets_are_disjoint_pieces_that_with_the_unaccounted_rest_make_the_wall_time(model_run):
    doc, _, raw, _ = model_run
    for size, out in zip(raw["sizes"], doc["undi"]["sizes"]):
        meter, t0, t1 = size["fast"]["_meter"]
        pieces = sorted(meter.log, key=lambda p: (p[1], p[2]))
        assert pieces and all(b in BUCKETS for b, _, _ in pieces)
        # Every piece lies inside the wall window and none overlaps the next.
        assert t0 <= pieces[0][1] and pieces[-1][2] <= t1
        for (_, s0, e0), (_, s1, e1) in zip(pieces, pieces[1:]):
            assert s0 <= e0 <= s1 <= e1
        # The buckets reported are the pieces' sums, nothing else.
        by_bucket = dict.fromkeys(BUCKETS, 0)
        for b, s, e in pieces:
            by_bucket[b] += e - s
        fast = out["fast"]
        totals = dict.fromkeys(BUCKETS, 0)
        for c in fast["calls"]:
            for b in BUCKETS:
                totals[b] += c["buckets_ns_total"][b]
        assert totals == by_bucket
        # Unaccounted is the time between the pieces (and before the first, after the last).
        gaps = (pieces[0][1] - t0) + (t1 - pieces[-1][2]) + sum(s1 - e0 for (_, _, e0), (_, s1, _) in
                                                                 zip(pieces, pieces[1:]))
        assert fast["unaccounted_ns"] == gaps
        assert sum(totals.values()) + fast["unaccounted_ns"] == fast["wall_ns"] == t1 - t0
        assert 0 < fast["unaccounted_ns"] < fast["wall_ns"]
        # The ROM ran inside emu_start and touched the device in every kind of call.
        for c in fast["calls"]:
            assert c["buckets_ns_total"]["emu"] > 0 and c["buckets_ns_total"]["python_before"] > 0, c["call"]
        # A call's time is its buckets' sum: the pieces of one call follow each other with no gap.
        assert sum(sum(c["buckets_ns_total"].values()) for c in fast["calls"]) == \
            sum(c["time_ns_total"] for c in fast["calls"])


def test_nested_boundaries_hand_their_piece_back():
    m = Meter(log=True)
    assert m.begin("X") and not m.begin("Y")  # an inner begin leaves the outer call running
    prev = m.enter("emu")
    assert prev == "python_before"
    outer = m.enter("ports")
    inner = m.enter("bar_callbacks")
    assert m.enter(inner) == "bar_callbacks" and m.enter(outer) == "ports"
    m.enter("python_after")
    m.end()
    assert [b for b, _, _ in m.log] == ["python_before", "emu", "ports", "bar_callbacks", "ports", "emu", "python_after"]
    assert set(m.calls) == {"X"} and m.calls["X"].calls == 1
    assert m.calls["X"].call_ns[0] == m.log[-1][2] - m.log[0][1] == sum(m.calls["X"].ns.values())


# --- the trace against the device's own count ------------------------------------------------------

@pytest.fixture(scope="module")
def opened():
    if not os.path.exists(PXE_E1000):
        pytest.skip("Debian's ipxe-qemu is not installed")
    dev = ModelDevice(IntelModel(mac=MAC))
    um = UndiMachine(open(PXE_E1000, "rb").read(), dev)
    um.run_init()
    um.run_loader()
    client = UndiClient(um, irq_pending=lambda: dev.irq)
    client.probe()
    client.open()
    return um, client, dev


def test_trace_counts_every_register_access_the_device_counted(opened):
    um, client, dev = opened
    before = dev.accesses.copy()
    meter = Meter()
    trace = Trace(meter)
    um.set_meter(meter)
    um.set_trace(trace)
    try:
        for seq in range(5):
            client.transmit(MAC + b"\xff" * 6 + b"\x88\xb5" + bytes([seq]) * 60)
            client.poll()
        # And the I/O BAR (IOADDR/IODATA), which iPXE's driver leaves alone: a snippet reads STATUS
        # through it and CTRL through BAR0, so both paths are counted.
        io = um.bar_addresses[1]
        code = bytes.fromhex("ba" + struct.pack("<H", io).hex()   # mov dx, io (IOADDR)
                             + "66b808000000"                    # mov eax, 8 (STATUS)
                             + "66ef"                            # out dx, eax
                             + "83c204"                          # add dx, 4 (IODATA)
                             + "66ed"                            # in eax, dx
                             + "66bb" + struct.pack("<I", um.bar_addresses[0]).hex()  # mov ebx, BAR0
                             + "67668b0b"                        # mov ecx, [ebx] (CTRL)
                             + "cb")                             # retf
        assert listing(code, 0)[:3] == [f"mov dx, {io:#x}", "mov eax, 8", "out dx, eax"]
        assert listing(code, 0)[-2:] == ["mov ecx, dword ptr [ebx]", "retf"]
        um.m.write(M.SCRATCH_SEG * 16 + CODE_AT, code)
        um.m.far_call(M.SCRATCH_SEG, CODE_AT, timeout=5)
    finally:
        um.set_trace(None)
        um.set_meter(None)
    assert um.m.reg("eax") == dev.model.on_read(8)  # STATUS, through IODATA
    counted = dev.accesses - before
    assert trace.access_counts() == counted
    assert counted[(1, 0, "w")] == 1 and counted[(1, 4, "r")] == 1 and counted[(0, 0, "r")] >= 1
    # The per-call counts add up to the same accesses; TRANSMIT rings the TDT doorbell once a frame.
    assert trace.registers[(0, 0x3818, "w")][0] == 5
    # The calls' own counts, plus the snippet's three accesses (made outside any call), are all of them.
    per_call = sum(r.device_reads + r.device_writes for r in meter.calls.values())
    assert per_call + 3 == sum(counted.values())
    assert meter.calls["UNDI_TRANSMIT"].device_writes == 5
    # iPXE's PXE entry goes to protected mode and back once per call (pxe_entry.S, virt_call).
    for rec in meter.calls.values():
        assert rec.mode_switches == 2 * rec.calls and rec.instructions > 100 * rec.calls, rec.label


def test_instructions_and_mode_switches_of_hand_assembled_code(opened):
    """Five round trips real -> protected -> real, one entered with lmsw, one CR0 write with a
    0x66 prefix, and a CR0 write that leaves PE alone; counts worked out from the listing."""
    um, _, _ = opened
    body = bytes.fromhex(
        "0f20c0"      # mov eax, cr0
        "0c01"        # or al, 1
        "0f22c0"      # mov cr0, eax        -> protected
        "24fe"        # and al, 0xfe
        "660f22c0"    # mov cr0, eax (0x66) -> real
    )
    code = (bytes.fromhex("fa" "b90500") + body + bytes.fromhex("e2" + f"{(-(len(body) + 2)) & 0xFF:02x}")
            + bytes.fromhex("0f01f0"     # lmsw ax (AL still has PE clear: no switch)
                            "0c02"       # or al, 2 (MP)
                            "0f22c0"     # mov cr0, eax: MP set, PE unchanged
                            "0c01"       # or al, 1
                            "0f01f0"     # lmsw ax          -> protected
                            "24fe"       # and al, 0xfe
                            "0f22c0"     # mov cr0, eax     -> real
                            "cb"))       # retf
    lst = listing(code, 0)
    assert lst[:8] == ["cli", "mov cx, 5", "mov eax, cr0", "or al, 1", "mov cr0, eax", "and al, 0xfe",
                       "mov cr0, eax", "loop 4"]
    assert lst[8:] == ["lmsw ax", "or al, 2", "mov cr0, eax", "or al, 1", "lmsw ax", "and al, 0xfe",
                       "mov cr0, eax", "retf"]
    um.m.write(M.SCRATCH_SEG * 16 + CODE_AT, code)
    trace = Trace()
    um.set_trace(trace)
    try:
        um.m.far_call(M.SCRATCH_SEG, CODE_AT, timeout=5)
    finally:
        um.set_trace(None)
    # cli, mov cx; 5 x (5 in the body + loop); 8 after the loop, retf included.
    assert trace.instructions == 2 + 5 * 6 + 8
    assert trace.mode_switches == 5 * 2 + 2


def test_a_rom_that_turns_paging_on_is_noted_by_the_trace():
    """PE and PG set by one CR0 write with the first 4 MiB identity-mapped (page directory at
    0x60000, its one table at 0x61000, entries present and writable: low bits 3), then both
    cleared: two mode switches, and the trace says paging was on."""
    from test_undi_crafted import LOADER, crafted, machine

    um = machine(crafted({LOADER: b"\xcb"}))
    um.m.write(0x60000, struct.pack("<I", 0x61000 | 3))
    um.m.write(0x61000, b"".join(struct.pack("<I", page << 12 | 3) for page in range(1024)))
    code = bytes.fromhex("fa"
                         "66b800000600"    # mov eax, 0x60000
                         "0f22d8"          # mov cr3, eax
                         "0f20c0"          # mov eax, cr0
                         "660d01000080"    # or eax, 0x80000001
                         "0f22c0"          # mov cr0, eax     -> protected, paging on
                         "6625feffff7f"    # and eax, 0x7ffffffe
                         "0f22c0"          # mov cr0, eax     -> real, paging off
                         "cb")
    assert listing(code, 0) == ["cli", "mov eax, 0x60000", "mov cr3, eax", "mov eax, cr0", "or eax, 0x80000001",
                                "mov cr0, eax", "and eax, 0x7ffffffe", "mov cr0, eax", "retf"]
    um.m.write(M.SCRATCH_SEG * 16 + CODE_AT, code)
    trace = Trace()
    assert not trace.paging_seen
    um.set_trace(trace)
    try:
        um.m.far_call(M.SCRATCH_SEG, CODE_AT, timeout=5)
    finally:
        um.set_trace(None)
    assert trace.instructions == 9 and trace.mode_switches == 2
    assert trace.paging_seen and um.m.reg("cr0") & 0x80000001 == 0


# --- a BAR mapped straight in (what the VFIO backend offers) ----------------------------------------

class DirectBarDevice(ModelDevice):
    """BAR0 offered as plain memory at a host address, as the VFIO backend offers its mmapped BAR."""

    def __init__(self):
        super().__init__(IntelModel(mac=MAC))
        self.bar0 = mmap.mmap(-1, BAR0_SIZE)

    def bar_memory(self, index):
        return ctypes.addressof(ctypes.c_char.from_buffer(self.bar0)) if index == 0 else None


@needs_rom
def test_a_bar_offered_for_direct_mapping_is_reached_without_callbacks_until_traced():
    dev = DirectBarDevice()
    um = UndiMachine(open(PXE_E1000, "rb").read(), dev)
    bar = um.bar_addresses[0]
    assert um.m.direct == [(bar, BAR0_SIZE)]
    code = bytes.fromhex("66b8" + struct.pack("<I", bar + 0x10).hex()   # mov eax, BAR0 + 0x10
                         + "6766c70078563412"                           # mov dword [eax], 0x12345678
                         + "67668b18"                                   # mov ebx, [eax]
                         + "cb")
    assert listing(code, 0) == [f"mov eax, {bar + 0x10:#x}", "mov dword ptr [eax], 0x12345678",
                                "mov ebx, dword ptr [eax]", "retf"]
    um.m.write(M.SCRATCH_SEG * 16 + CODE_AT, code)
    um.m.far_call(M.SCRATCH_SEG, CODE_AT, timeout=5)
    assert dev.bar0[0x10:0x14] == bytes.fromhex("78563412") and um.m.reg("ebx") == 0x12345678
    assert dev.access_count == 0  # no callback: the access went straight to the buffer

    trace = Trace()
    um.set_trace(trace)
    assert um.m.direct == []
    dev.bar0[0x10:0x14] = bytes(4)
    um.m.far_call(M.SCRATCH_SEG, CODE_AT, timeout=5)
    um.set_trace(None)
    assert trace.access_counts() == {(0, 0x10, "w"): 1, (0, 0x10, "r"): 1} == dev.accesses
    assert dev.bar0[0x10:0x14] == bytes(4)  # under the trace the accesses went to the callbacks

    assert um.m.direct == [(bar, BAR0_SIZE)]  # and back straight in
    um.m.far_call(M.SCRATCH_SEG, CODE_AT, timeout=5)
    assert dev.bar0[0x10:0x14] == bytes.fromhex("78563412") and dev.access_count == 2


# --- the document ------------------------------------------------------------------------------------

UNIT_MARKERS = ("_s", "_ns", "_us", "pps", "_per_frame", "_per_call", "_factor", "_over_undi", "_per_access")


def _floats(node, path=("", "")):
    """(parent key, key) of every float: a bucket's figure is named by its bucket, its unit by the
    dictionary holding the buckets."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _floats(v, (path[1], k))
    elif isinstance(node, list):
        for v in node:
            yield from _floats(v, path)
    elif isinstance(node, float):
        yield path


def test_json_shape(model_run):
    doc, _, raw, _ = model_run
    text = json.dumps(doc)
    assert text.startswith('{"schema": "romlab.bench-undi/1"')
    assert check(doc, "romlab.bench-undi/1") == []  # docs/conventions.md
    assert doc["id"] == "8086:100e" and doc["via"] == "model" and doc["input"] == "model:e1000"
    for key in ("started", "finished"):
        t = datetime.fromisoformat(doc[key])
        assert t.utcoffset() == timedelta(0)
    # Every non-integer figure says its unit (or that it is a ratio) in its key.
    keys = set(_floats(doc))
    assert keys and all(k.endswith(UNIT_MARKERS) or (k in BUCKETS and parent.endswith(UNIT_MARKERS))
                        for parent, k in keys), sorted(keys)
    assert [(f["path"], f["frame_bytes"]) for f in doc["figures"]] == [("undi", 64), ("undi", 1514)]
    for f in doc["figures"]:
        assert f["pps"] == f["packets"] / f["duration_s"]
        assert f["mbit_s"] == f["pps"] * f["frame_bytes"] * 8 / 1e6
        assert f["driver_counted_packets"] == f["packets"]  # UNDI's own XmtGoodFrames agrees
    # Everything sent reached the model's wire: the timed frames, the traced ones.
    assert raw["sink"].count == sum(f["packets"] for f in doc["figures"]) + 2 * doc["trace_frames"]
    assert doc["ratios"] == [{"frame_bytes": 64, "reference_over_undi": None},
                             {"frame_bytes": 1514, "reference_over_undi": None}]
    for s in doc["undi"]["sizes"]:
        calls = {c["call"]: c for c in s["fast"]["calls"]}
        # undinet's pattern: one TRANSMIT per frame, and a poll after it that finds the interrupt
        # line up (the transmit completed), so ISR START and PROCESS at least.
        assert calls["UNDI_TRANSMIT"]["calls_per_frame"] == 1.0
        assert calls["UNDI_TRANSMIT"]["calls"] == s["fast"]["frames"]
        assert {"UNDI_ISR/START", "UNDI_ISR/PROCESS"} <= set(calls)
        assert s["trace"]["frames"] == doc["trace_frames"]
        for row in s["trace"]["calls"]:
            # The trace's factor is medians against medians; a Python hook per instruction (about
            # 1,900 of them a call) cannot leave a call as fast as it was.
            assert row["trace_overhead_factor"] == row["median_us_per_call"] / calls[row["call"]]["median_us_per_call"]
            assert row["trace_overhead_factor"] > 1 and row["instructions_per_call"] > 1000
        assert {r["offset"] for r in s["trace"]["registers"]} >= {0x3818}
        assert "_trace" not in s and "_meter" not in s["fast"]
    assert doc["undi"]["empty_call"]["calls"] == 200 and doc["undi"]["empty_call"]["calls_per_frame"] is None
    json.loads(text)


# --- table and picture from a document written by hand ---------------------------------------------

def _call(name, per_frame, buckets_us, median_us):
    total_us = sum(buckets_us.values())
    return {"call": name, "calls": 100, "calls_per_frame": per_frame, "time_ns_total": int(total_us * 100e3),
            "mean_us_per_call": total_us, "median_us_per_call": median_us,
            "buckets_ns_total": {b: int(v * 100e3) for b, v in buckets_us.items()},
            "buckets_us_per_call": buckets_us}


def _buckets(before, emu, device, bios, ports, after):
    return dict(zip(BUCKETS, (before, emu, device, bios, ports, after)))


def hand_doc() -> dict:
    sizes = []
    for size, tx_emu in ((64, 200.0), (1514, 260.0)):
        calls = [_call("UNDI_TRANSMIT", 1.0, _buckets(100.0, tx_emu, 20.0, 0.0, 0.0, 40.0), 300.0),
                 _call("UNDI_ISR/START", 1.0, _buckets(50.0, 150.0, 10.0, 0.0, 0.0, 30.0), 200.0)]
        sizes.append({"frame_bytes": size,
                      "fast": {"frames": 1000, "wall_ns": 700_000_000, "accounted_ns": 600_000_000,
                               "unaccounted_ns": 100_000_000, "calls": calls},
                      "trace": {"frames": 10, "wall_ns": 1, "instructions": 1, "mode_switches": 2, "registers": [],
                                "calls": [{"call": "UNDI_TRANSMIT", "calls": 10, "mean_us_per_call": 1200.0,
                                           "median_us_per_call": 900.0,
                                           "instructions_per_call": 1927.0, "mode_switches_per_call": 2.0,
                                           "device_reads_per_call": 0.0, "device_writes_per_call": 1.0,
                                           "device_us_per_call": 12.5, "trace_overhead_factor": 3.0}]}})
    return {"schema": "romlab.bench-undi/1", "input": "pci:0000:00:03.0", "started": "2026-01-01T00:00:00+00:00",
            "id": "8086:100e", "via": "vfio", "rom": {"from": "rom.bin", "size": 65536, "sha256": ""},
            "reference": {"path": "c", "driver": "romlab native driver, C path, batch 1"},
            "figures": [{"path": "undi", "frame_bytes": 64, "packets": 2000, "duration_s": 1.0, "pps": 2000.0,
                         "mbit_s": 1.024},
                        {"path": "undi", "frame_bytes": 1514, "packets": 1500, "duration_s": 1.0,
                         "pps": 1500.0, "mbit_s": 18.168},
                        {"path": "c", "frame_bytes": 64, "packets": 10000, "duration_s": 1.0, "pps": 10000.0,
                         "mbit_s": 5.12},
                        {"path": "c", "frame_bytes": 1514, "packets": 6000, "duration_s": 1.0, "pps": 6000.0,
                         "mbit_s": 72.672}],
            "ratios": [{"frame_bytes": 64, "reference_over_undi": 5.0}, {"frame_bytes": 1514, "reference_over_undi": 4.0}],
            "undi": {"empty_call": _call(bu.EMPTY_LABEL, None, _buckets(30.0, 100.0, 0.0, 0.0, 0.0, 10.0), 120.0),
                     "sizes": sizes}}


def test_table_from_a_hand_document():
    lines = render.undi_table(hand_doc()).splitlines()
    assert lines[0].startswith("pci:0000:00:03.0 [8086:100e], via vfio")
    rows = [ln.split() for ln in lines[3:7]]
    # reference/UNDI = 10000 / 2000 and 6000 / 1500; Mbit/s = pps x size x 8 / 1e6.
    assert rows == [["undi", "64", "2000", "1.02", "-"], ["undi", "1514", "1500", "18.17", "-"],
                    ["c", "64", "10000", "5.12", "5.0x"], ["c", "1514", "6000", "72.67", "4.0x"]]
    text = "\n".join(lines)
    # TRANSMIT at 64 B: 100 + 200 + 20 + 0 + 0 + 40 = 360 us per call.
    assert any(ln.split() == ["UNDI_TRANSMIT", "1.00", "360.0", "300.0", "100.0", "200.0", "20.0", "0.0", "0.0",
                              "40.0"] for ln in lines)
    assert "unaccounted: 100.000 ms of 700.000 ms wall (14%)" in text
    assert any(ln.split() == ["UNDI_TRANSMIT", "1200.0", "900.0", "3.0x", "1927", "2.0", "0.0", "1.0", "12.5"] for ln in lines)


def test_png_bars_and_bucket_segments_measured_in_pixels(tmp_path):
    png = tmp_path / "undi.png"
    render.undi_plot(hand_doc(), str(png))
    im = Image.open(png)
    meta = json.loads(im.text[render.PNG_KEY_UNDI])
    im = im.convert("RGB")
    assert meta["schema"] == "romlab.bench-undi/1"
    assert meta["axes"]["throughput"] == {"scale": "linear", "from": 0, "unit": "packets/s"}
    assert sorted((b["path"], b["frame_bytes"], b["pps"]) for b in meta["bars"]) == [
        ("c", 64, 10000.0), ("c", 1514, 6000.0), ("undi", 64, 2000.0), ("undi", 1514, 1500.0)]
    measured = assert_heights_proportional(im, meta["bars"], "pps")
    h = {(b["path"], b["frame_bytes"]): bottom - top + 1 for b, (_, top, bottom) in zip(meta["bars"], measured)}
    assert abs(h["undi", 64] * 5 - h["c", 64]) <= 10  # the ratio, read off the picture

    # The stacks: each segment as tall as its value on the panel's one scale, sitting on the one
    # below it, every stack on one baseline. Segments under 6 pixels are too thin to measure.
    segs = meta["segments"]
    assert {(s["call"], s["frame_bytes"]) for s in segs} == {
        ("UNDI_TRANSMIT", 64), ("UNDI_ISR/START", 64), ("UNDI_TRANSMIT", 1514), ("UNDI_ISR/START", 1514),
        (bu.EMPTY_LABEL, None)}
    tall = [s for s in segs if s["box_px"][3] - s["box_px"][1] >= 6]
    assert len(tall) >= 12
    heights = []
    for s in tall:
        top, bottom = measure_bar(im, s["box_px"], _rgb(s["colour"]))
        heights.append((s["us_per_call"], bottom - top + 1))
    vmax, hmax = max(heights)
    for v, px in heights:
        assert abs(px - v * hmax / vmax) <= 2, (v, px, v * hmax / vmax)
    by_stack = {}
    for s in segs:
        by_stack.setdefault((s["call"], s["frame_bytes"]), []).append(s)
    bases = set()
    for stack in by_stack.values():
        drawn = [s for s in stack if s["us_per_call"] > 0]
        for lower, upper in zip(drawn, drawn[1:]):
            assert abs(upper["box_px"][3] - lower["box_px"][1]) <= 1
            assert upper["bottom_us"] == pytest.approx(lower["bottom_us"] + lower["us_per_call"])
        bases.add(drawn[0]["box_px"][3])
    assert max(bases) - min(bases) <= 1


# --- the whole run's order, with the PCI and VFIO steps stood in for ---------------------------------

class _FakePci:
    def __init__(self, ids, driver="e1000"):
        self.vendor_id, self.device_id = ids
        self.driver, self.bdf = driver, "0000:00:03.0"


@pytest.fixture
def fake_lab(monkeypatch):
    """PciDevice.open, vfio_bind and the native driver replaced by recorders: what `run` does to
    the NIC, in order."""
    from hw import pci, vfio_bind
    from romlab.bench import native

    events = []
    monkeypatch.setattr(pci.PciDevice, "open", classmethod(lambda cls, bdf: _FakePci((0x8086, 0x100E))))
    monkeypatch.setattr(vfio_bind, "bind", lambda dev: events.append("bind"))
    monkeypatch.setattr(vfio_bind, "unbind", lambda dev: events.append("unbind"))

    def romlab_tx(bdf, impl, size, batch, seconds):
        events.append(f"native {impl} {size} batch {batch}")
        return native.Run(50_000, 50_000, 1.0)

    monkeypatch.setattr(native, "romlab_tx", romlab_tx)
    return events


@needs_rom
def test_run_measures_the_reference_then_undi_and_gives_the_nic_back(fake_lab):
    import contextlib

    @contextlib.contextmanager
    def open_session(bdf, rom, force_ids):
        fake_lab.append(f"open {bdf} rom={rom is not None}")
        dev = bu.model_device("e1000", MAC)
        bu._Sink(dev.model)
        with bu.model_session(dev, open(PXE_E1000, "rb").read()) as session:
            yield session
        fake_lab.append("close")

    doc = bu.run("00:03.0", (64,), 0.2, 5, open_session=open_session)
    assert fake_lab == ["bind", "native c 64 batch 1", "open 0000:00:03.0 rom=False", "close", "unbind"]
    assert doc["via"] == "vfio" and doc["reference"]["path"] == "c"
    assert doc["rom"]["from"] == "the device's ROM BAR (VFIO ROM region)" and doc["rom"]["size"] == 75264
    assert doc["input"] == "pci:0000:00:03.0" and check(doc, "romlab.bench-undi/1") == []
    undi = next(f for f in doc["figures"] if f["path"] == "undi")
    ref = next(f for f in doc["figures"] if f["path"] == "c")
    assert ref["pps"] == 50_000.0
    assert doc["ratios"] == [{"frame_bytes": 64, "reference_over_undi": 50_000.0 / undi["pps"]}]


@needs_rom
def test_run_gives_the_nic_back_when_the_rom_is_refused(fake_lab, tmp_path):
    """e1000's ROM given for an e1000e: refused before it runs (its PCIR IDs are not the NIC's),
    and the NIC still goes back to its driver."""

    from hw.errors import UsageError

    rom = tmp_path / "e1000.rom"
    rom.write_bytes(open(PXE_E1000, "rb").read())
    with pytest.raises(UsageError, match="the ROM is for 8086:100e, the device is 8086:10d3"):
        bu.run("00:03.0", (64,), 0.2, 5, rom_path=str(rom),
               open_session=lambda bdf, image, force: bu.model_session(bu.model_device("e1000e", MAC), image, force))
    assert fake_lab == ["bind", "native c 64 batch 1", "unbind"]


def test_a_rom_for_another_device_is_refused_before_the_nic_is_bound(fake_lab, monkeypatch, tmp_path):
    """A --rom whose PCIR names 8086:100e, for an 8086:10d3: refused before the reference driver
    runs or the NIC leaves its driver; --force-ids lets it through to the bind."""
    from test_undi_crafted import LOADER, crafted

    from hw import pci
    from hw.errors import UsageError

    monkeypatch.setattr(pci.PciDevice, "open", classmethod(lambda cls, bdf: _FakePci((0x8086, 0x10D3), "e1000e")))
    rom = tmp_path / "e1000.rom"
    rom.write_bytes(crafted({LOADER: b"\xcb"}, device_id=0x100E))
    opened = []
    with pytest.raises(UsageError, match="the ROM is for 8086:100e, the device is 8086:10d3; use --force-ids"):
        bu.run("00:03.0", (64,), 0.2, 5, rom_path=str(rom), open_session=lambda *a: opened.append(a))
    assert fake_lab == [] and opened == []
    with pytest.raises(TypeError):  # the stand-in session is no context manager: only how far it got matters
        bu.run("00:03.0", (64,), 0.2, 5, rom_path=str(rom), force_ids=True, open_session=lambda *a: opened.append(a))
    assert fake_lab == ["bind", "native c 64 batch 1", "unbind"] and len(opened) == 1


def test_cli_prints_json_writes_the_file_and_the_png(monkeypatch, tmp_path, capsys):
    """`romlab bench undi --json -o FILE --plot PNG`: the document on stdout (schema first, the
    table in it), the same document in FILE, the PNG written and named on stderr."""
    from romlab.cli import main

    doc = hand_doc()
    seen = {}

    def fake_run(bdf, sizes, seconds, trace_frames, **kw):
        seen.update(bdf=bdf, sizes=sizes, seconds=seconds, trace_frames=trace_frames, rom=kw["rom_path"])
        return json.loads(json.dumps(doc))

    monkeypatch.setattr(bu, "run", fake_run)
    out, png = tmp_path / "u.json", tmp_path / "u.png"
    rc = main(["bench", "undi", "--pci", "00:03.0", "--size", "64,1514", "--seconds", "1.5", "--trace-frames", "7",
               "--json", "-o", str(out), "--plot", str(png)])
    captured = capsys.readouterr()
    assert rc == 0
    assert seen == {"bdf": "00:03.0", "sizes": [64, 1514], "seconds": 1.5, "trace_frames": 7, "rom": None}
    printed = json.loads(captured.out)
    assert list(printed)[0] == "schema" and printed["table"] == render.undi_table(doc)
    assert json.loads(out.read_text()) == printed
    assert f"wrote {out}" in captured.err and f"wrote {png}" in captured.err
    with Image.open(png) as im:
        assert json.loads(im.text[render.PNG_KEY_UNDI])["id"] == "8086:100e"
    # An output that exists is not replaced without --overwrite, before anything runs.
    seen.clear()
    rc = main(["bench", "undi", "--pci", "00:03.0", "-o", str(out)])
    assert rc == 2 and not seen and "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e6", "0"])
def test_cli_refuses_non_finite_or_huge_seconds_before_anything_runs(monkeypatch, capsys, seconds):
    from romlab.cli import main

    seen = []
    monkeypatch.setattr(bu, "run", lambda *a, **kw: seen.append(a))
    rc = main(["bench", "undi", "--pci", "00:03.0", "--seconds", seconds])
    err = capsys.readouterr().err
    assert rc == 2 and not seen and err.count("\n") == 1 and "--seconds must be in (0, 3600]" in err
