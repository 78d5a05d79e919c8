"""romlab's e1000-family driver on real (QEMU-emulated) e1000 and e1000e devices behind a vIOMMU,
against the Linux kernel's drivers on the other end of a QEMU hub. One guest boot runs
tests/vm_nic_guest.py; this test asserts on the JSON it writes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    out = tmp_path_factory.mktemp("nicvm") / "result.json"
    cmd = [sys.executable, "-m", "romlab", "vm", "--nic", "e1000,mac=52:54:00:00:10:0e,link=lab",
           "--nic", "e1000e,mac=52:54:00:00:10:d3,link=lab", "--share", str(out.parent), "--timeout", "900",
           "--", sys.executable, str(REPO / "tests" / "vm_nic_guest.py"), str(out), "bench"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert out.exists(), f"guest wrote no result (exit {r.returncode}): {r.stdout[-3000:]} {r.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    assert "exception" not in doc, doc["exception"] + json.dumps(doc["steps"][-3:], indent=1)
    return doc


@pytest.mark.parametrize("which", [0, 1], ids=["romlab-e1000", "romlab-e1000e"])
def test_frames_cross_intact_both_ways(guest, which):
    p = guest["pairs"][which]
    assert p["send_rc"] == 0
    assert p["kernel_received_intact"] == 200 and p["kernel_sequences_ok"]
    assert p["recv_rc"] == 0, p.get("recv_error")
    assert p["romlab_received"] == 200 and p["romlab_verified"] == 200 and p["romlab_sequences_ok"]
    assert p["recv_stats"]["rx_dropped"] == 0 and p["recv_stats"]["rx_good"] >= 200
    assert p["unbind_rc"] == 0


@pytest.mark.parametrize("which", [0, 1], ids=["romlab-e1000", "romlab-e1000e"])
def test_python_ring_receives_from_the_device(guest, which):
    """The Python ring's receive path on the real (emulated) device, not only on test memory."""
    p = guest["pairs"][which]["python"]
    assert p["recv_impl"] == "python" and p["recv_rc"] == 0, p.get("recv_error")
    assert p["romlab_received"] == 200 and p["romlab_verified"] == 200 and p["romlab_sequences_ok"]
    assert p["recv_stats"]["rx_dropped"] == 0 and p["recv_stats"]["rx_good"] >= 200
    assert p["recv_stats"]["rx_ring"] == 200


def test_mempool_on_hugepages(guest):
    info = guest["hugepage_info"]
    assert info.get("hugepages") is True, info
    assert info["mac"] == "52:54:00:00:10:d3" and info["eeprom_mac"] == "52:54:00:00:10:d3"


def test_receive_by_interrupt(guest):
    p = guest["pairs"][0]  # romlab's e1000 waited on its interrupt eventfd between batches
    assert p["recv_mode"] == "irq" and p["recv_interrupts"] >= 1


def test_sigint_mid_batch_leaves_device_usable(guest):
    s = guest["sigint"]
    assert s["interrupted_rc"] == 130 and "interrupted" in s["interrupted_err"]
    assert "Traceback" not in s["interrupted_err"]
    assert s["next_send_rc"] == 0 and s["next_send_sent"] == 100
    assert s["unbind_rc"] == 0 and s["driver_after"] == "e1000"
    assert guest["dmesg_dmar"] == [] and guest["dmesg_warn"] == []


def test_bad_cases(guest):
    rc, err = guest["bad"]["bound_to_kernel"]
    assert rc == 2 and "still bound to its kernel driver e1000" in err and len(err.splitlines()) == 1
    rc, err = guest["bad"]["not_a_nic"]
    assert rc == 2 and "not a NIC this driver supports" in err


def test_native_bench_runs_all_three_paths(guest):
    """Kernel (pktgen at burst = batch), C and Python on the e1000, 3 runs a figure, all counted
    by the NIC: romlab's runs count on GPTC exactly what they queued (the ring was flushed), the
    kernel's count on the ethtool statistic GPTC feeds what pktgen queued plus the few frames
    the stack sends on its own (IPv6 solicitations) while the interface is up."""
    b = guest["bench"]
    assert "error" not in b, b.get("error")
    assert b["schema"] == "romlab.bench-native/6" and b["started"].endswith("+00:00")
    assert len(b["inputs"]) == 1 and b["inputs"][0].startswith("pci:0000:")
    assert b["runs"] == 3 and b["kernel_counter"] == "ethtool tx_packets" and b["count_mismatches"] == []
    (nic,) = b["nics"]
    assert nic["nic"] == "e1000" and nic["kernel_driver"] == "e1000" and nic["romlab_error"] is None
    # Linux makes a group's default domain strict ("DMA") under a vIOMMU with caching mode (QEMU's
    # intel-iommu as `romlab vm` sets it up); --kernel-dma identity sets it for the kernel's runs
    # only, and the group and the driver are as they were after the bench.
    assert guest["group_type_before"] == "DMA" and nic["iommu_domain_found"] == "DMA"
    assert nic["kernel_iommu_domain"] == "identity"
    assert guest["group_type_after"] == "DMA" and guest["driver_after"] == "e1000"
    assert "identity, set for its runs (the group's own: DMA)" in b["table"]
    assert nic["input"] == b["inputs"][0] and nic["pf"] is None
    figs = {(f["path"], f["frame_bytes"], f["batch"]): f for f in nic["figures"]}
    assert set(figs) == {(p, s, n) for p in ("kernel", "c", "python") for s in (64, 1514) for n in (1, 32, 256)}
    for (path, _size, _batch), f in figs.items():
        runs = f["runs"]
        assert len(runs) == 3 and all(r["hw_packets"] > 0 and r["duration_s"] > 0 for r in runs)
        for r in runs:
            assert r["pps"] == r["hw_packets"] / r["duration_s"]
            if path == "kernel":
                assert 0 <= r["hw_packets"] - r["queued"] <= 50, r
            else:
                assert r["hw_packets"] == r["queued"], r
        pps = sorted(r["pps"] for r in runs)
        assert f["median_pps"] == pps[1] and (f["min_pps"], f["max_pps"]) == (pps[0], pps[2])
        assert f["spread_pct"] == pytest.approx((pps[2] - pps[0]) / pps[1] * 100)
    print(b["table"])
