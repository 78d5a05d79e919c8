"""`bench firmware`'s sized runs without QEMU: the sizing rule worked by hand, the planner's sizing
steps against a real HTTP client, the igb ROM the bench makes, and the link-down diagnosis from
console bytes as QEMU's igb printed them."""
from __future__ import annotations

import math
import struct
import time
import urllib.request

import pytest
from conftest import IPXE_QEMU, corpus

MIB = 1 << 20


def test_run_size_lasts_twice_the_minimum_at_the_fastest_pace_in_whole_mib_between_floor_and_cap():
    from romlab.bench.firmware import run_size

    # 4 MiB in 0.5 s is 8 MiB/s; twice a 2 s minimum is 4 s: 32 MiB.
    assert run_size([(4 * MIB, 0.5)], 2.0, 16 * MIB) == 32 * MIB
    # 1 MiB in 1 s, minimum 1.1 s: 2.2 MiB, rounded up to 3 MiB.
    assert run_size([(MIB, 1.0)], 1.1, 0) == 3 * MIB
    # UNDI's pace (4 MiB in 4.5 s): 3.6 MiB would do, the floor (--size) is 16 MiB.
    assert run_size([(4 * MIB, 4.5)], 2.0, 16 * MIB) == 16 * MIB
    # 64 MiB in 0.1 s would want 2560 MiB; the guest holds at most 1 GiB.
    assert run_size([(64 * MIB, 0.1)], 2.0, 16 * MIB) == 1024 * MIB
    # A stalled first transfer (4 MiB in 1.5 s) next to 80 MiB in 1.25 s (64 MiB/s): 256 MiB.
    assert run_size([(4 * MIB, 1.5), (80 * MIB, 1.25)], 2.0, 16 * MIB) == 256 * MIB


def test_sizing_grows_until_a_transfer_lasts_a_second_or_the_minimum():
    from romlab.bench.firmware import next_sizing

    # 0.1 s: grow to what would take 2 s at that pace, 20 times 4 MiB.
    assert next_sizing(4 * MIB, 0.1, 2.0) == 80 * MIB
    # 0.9 s: 2/0.9 = 2.22 times, 8.9 MiB, rounded up to 9 MiB.
    assert next_sizing(4 * MIB, 0.9, 2.0) == 9 * MIB
    # 0.6 s: 2/0.6 = 3.33 times 3 MiB is exactly 10 MiB, but the float can land a hair above it.
    assert next_sizing(3 * MIB, 0.6, 2.0) in (10 * MIB, 11 * MIB)
    # A slow pace still at least doubles.
    assert next_sizing(4 * MIB, 0.999, 2.0) == 9 * MIB
    # Long enough: 1 s, or the minimum when that is shorter.
    assert next_sizing(4 * MIB, 1.2, 2.0) is None
    assert next_sizing(4 * MIB, 0.4, 0.3) is None
    # ...unless it was the boot's first: then once more at its size.
    assert next_sizing(4 * MIB, 1.2, 2.0, count=1) == 4 * MIB
    assert next_sizing(4 * MIB, 0.1, 2.0, count=1) == 80 * MIB
    # Capped at 1 GiB, and no step beyond it.
    assert next_sizing(600 * MIB, 0.1, 2.0) == 1024 * MIB
    assert next_sizing(1024 * MIB, 0.1, 2.0) is None


def test_payload_of_repeats_the_block_to_the_size():
    from romlab.bench.firmware import payload_of

    block = bytes(range(7))
    assert payload_of(17, block) == block + block + block[:3]
    assert payload_of(7, block) == block and payload_of(3, block) == block[:3]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def test_planner_sizes_then_hands_out_runs_of_the_size_the_sizing_transfer_gives():
    from romlab.bench.firmware import PhasePlan
    from romlab.lab.http import LabHttp, payload_bytes

    block = payload_bytes(MIB // 2)
    plan = PhasePlan("native", "t", 2, MIB, min_run_s=0.2, block=block)
    with LabHttp(payload=block, planner=plan) as lab:
        plan.http = lab
        base = lab.url()
        script = _get(f"{base}/next?mac=52:54:00:12:34:56&chip=82540em").decode().splitlines()
        # The first step is a sizing transfer of min(--size, 4 MiB), confirmed, then back to the server.
        assert f"imgfetch --name romlab_p {base}/payload/t-size1 || goto romlab_fail" in script
        i = script.index(f"imgfetch --name romlab_p {base}/payload/t-size1 || goto romlab_fail")
        assert script[i + 1] == f"imgfetch --name romlab_d {base}/done/t-size1 || goto romlab_fail"
        assert f"chain {base}/next?stage=sized&chip=${{netX/chip}} || goto romlab_fail" in script
        got = _get(f"{base}/payload/t-size1")
        assert got == block + block  # 1 MiB: the 512 KiB block twice
        time.sleep(0.3)  # the client is slow to confirm: the transfer lasts longer than the 0.2 s minimum
        _get(f"{base}/done/t-size1")
        # Long enough, but the boot's first: the same size once more.
        again = _get(f"{base}/next?stage=sized&chip=82540em").decode().splitlines()
        assert f"imgfetch --name romlab_p {base}/payload/t-size2 || goto romlab_fail" in again
        assert _get(f"{base}/payload/t-size2") == block + block
        time.sleep(0.4)
        _get(f"{base}/done/t-size2")
        # A sizing step from another driver is refused.
        other = PhasePlan("native", "u", 1, MIB, min_run_s=0.2, block=block)
        other.http, other.chip = lab, "82540em"
        lab.planner = other
        assert "exit 1" in _get(f"{base}/next?stage=sized&chip=undionly").decode()
        assert "not the bench's '82540em'" in other.error
        lab.planner = plan
        warm = _get(f"{base}/next?stage=sized&chip=82540em").decode().splitlines()
        took = [lab.transfers[f"t-size{k}"].seconds for k in (1, 2)]
        assert took[0] >= 0.3 and took[1] >= 0.4
        # What lasts twice 0.2 s at 1 MiB per the shorter of the two, in whole MiB, at least --size (1 MiB).
        want = max(MIB, math.ceil(MIB * 0.2 * 2 / min(took) / MIB) * MIB)
        assert plan.run_size == want and plan.error is None
        assert plan.sizing == [{"size_bytes": MIB, "duration_s": t, "mbit_s": MIB * 8 / t / 1e6} for t in took]
        # Then one transfer of the runs' size, before the runs, and back for them.
        assert f"imgfetch --name romlab_p {base}/payload/t-warm || goto romlab_fail" in warm
        assert f"chain {base}/next?stage=warmed&chip=${{netX/chip}} || goto romlab_fail" in warm
        assert len(_get(f"{base}/payload/t-warm")) == want
        _get(f"{base}/done/t-warm")
        runs = _get(f"{base}/next?stage=warmed&chip=82540em").decode().splitlines()
        assert plan.warmup["size_bytes"] == want and plan.warmup["duration_s"] == lab.transfers["t-warm"].seconds
        # The runs: a start mark, the payload, its confirmation.
        for k in (1, 2):
            j = runs.index(f"imgfetch --name romlab_p {base}/payload/t-{k} || goto romlab_fail")
            assert runs[j - 2:j] == [f"imgfetch --name romlab_s {base}/status/start/t-{k} || goto romlab_fail",
                                     "imgfree romlab_s"]
            assert runs[j + 1] == f"imgfetch --name romlab_d {base}/done/t-{k} || goto romlab_fail"
        got = _get(f"{base}/payload/t-1")
        assert len(got) == want and got == (block * (want // len(block)))


def test_bench_script_without_marks_is_what_serve_hands_out():
    from romlab.bench.firmware import bench_script

    lines = bench_script("http://h", "undi", "c", 1, MIB).splitlines()
    assert not any("/status/start/" in ln for ln in lines)
    assert "imgfetch --name romlab_p http://h/payload/c-1 || goto romlab_fail" in lines


def _pcir(image: bytes) -> int:
    at = struct.unpack_from("<H", image, 0x18)[0]
    assert image[at:at + 4] == b"PCIR"
    return at


def test_igb_rom_is_debians_e1000e_rom_with_device_10c9_and_a_good_checksum(tmp_path):
    from romlab.bench.firmware import default_rom

    src = corpus(IPXE_QEMU / "pxe-e1000e.rom").read_bytes()
    made = default_rom("igb", str(tmp_path))
    assert made.startswith(str(tmp_path))
    with open(made, "rb") as f:
        new = f.read()
    p = _pcir(src)
    assert struct.unpack_from("<HH", src, p + 4) == (0x8086, 0x10D3)
    assert struct.unpack_from("<HH", new, p + 4) == (0x8086, 0x10C9)
    length = struct.unpack_from("<H", new, p + 0x10)[0] * 512
    assert sum(new[:length]) % 256 == 0
    changed = [i for i in range(len(src)) if src[i] != new[i]]
    # The PCIR device ID, the entry of the PCI 3.0 device list that held 10d3 (revision 3: its
    # pointer at PCIR+8, relative to the PCIR), and the checksum byte at 6.
    rev = new[p + 0x0C]
    listed = []
    if rev >= 3 and struct.unpack_from("<H", src, p + 8)[0]:
        lst = p + struct.unpack_from("<H", src, p + 8)[0]
        while struct.unpack_from("<H", src, lst)[0]:
            if struct.unpack_from("<H", src, lst)[0] == 0x10D3:
                listed += [lst, lst + 1]
                assert struct.unpack_from("<H", new, lst)[0] == 0x10C9
            lst += 2
    assert listed  # iPXE's ROM has a device list, and 10d3 in it
    assert set(changed) <= {6, p + 6, p + 7, *listed} and {p + 6, listed[0]} <= set(changed)
    # Other NICs keep Debian's own file.
    assert default_rom("e1000", str(tmp_path)) == str(IPXE_QEMU / "pxe-e1000.rom")


IGB_CONSOLE = (b"iPXE 1.0.0+git-20190125.36a4c85-5.1 -- Open Source Network Boot Firmware -- http://ipxe.org\r\n"
               b"net0: 52:54:00:12:34:56 using 82576 on 0000:00:02.0 (open)\r\n"
               b"  [Link:down, TX:0 TXE:0 RX:0 RXE:0]\r\n"
               b"  [Link status: Down (http://ipxe.org/38086101)]\r\n"
               b"Waiting for link-up on net0................. Down (http://ipxe.org/38086101)\r\n"
               b"No more network devices\r\n")


@pytest.mark.parametrize("console,expected", [
    (IGB_CONSOLE, "Waiting for link-up on net0................. Down (http://ipxe.org/38086101)"),
    ((b"net0: 52:54:00:12:34:56 using 82540em on 0000:00:03.0 (open)\r\n"
      b"Configuring (net0 52:54:00:12:34:56)...... No configuration methods succeeded (http://ipxe.org/040ee119)\r\n"),
     None),
])
def test_link_down_is_read_from_ipxes_error_code(console, expected):
    from romlab.bench.firmware import link_down
    from romlab.lab.console import Console

    c = Console()
    c.feed(console)
    c.close()
    got = link_down(c)
    # The last matching line: iPXE prints the code in ifstat's status and in the wait line.
    assert got == expected or (expected is None and got is None)


def test_cpu_stats_are_megabits_per_qemu_cpu_second_over_complete_runs():
    from romlab.bench.firmware import PathResult, Run

    p = PathResult("native")
    # 100 MiB is 838.8608 megabits: in 2, 4 and 2.5 CPU seconds, 419.4, 209.7 and 335.5 Mbit per CPU second.
    for i, cpu in enumerate((2.0, 4.0, 2.5), 1):
        p.runs.append(Run(i, 3.0, 100 * MIB, 100 * MIB, 2.9, True, None, cpu))
    st = p.cpu_stats()
    assert st["runs"] == 3
    assert st["median_mbit_per_cpu_s"] == pytest.approx(335.54432)
    assert st["min_mbit_per_cpu_s"] == pytest.approx(209.7152) and st["max_mbit_per_cpu_s"] == pytest.approx(419.4304)
    assert st["spread_pct"] == pytest.approx((419.4304 - 209.7152) / 335.54432 * 100)
    # A run without its CPU time leaves the path without this figure rather than with a partial one.
    p.runs.append(Run(4, 3.0, 100 * MIB, 100 * MIB, 2.9, True, None, None))
    assert p.cpu_stats() is None and p.stats()["runs"] == 4
