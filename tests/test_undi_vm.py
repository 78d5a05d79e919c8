"""Each NIC's own UNDI driver, read from its ROM BAR through VFIO and run by `romlab undi`, driving
the (QEMU-emulated) NIC behind a vIOMMU, with the Linux kernel's driver on a second NIC of the same
model on the same link checking every frame. One guest boot runs tests/vm_undi_guest.py; this test
asserts on the JSON it writes.

The ROMs are Debian's iPXE builds that QEMU puts in each NIC's ROM BAR by default; the MACs are the
ones given to QEMU here; frame payloads are regenerated from their seed by drivers.frames on the
receiving side, and the kernel's own rx_packets counter counts what arrived.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import REPO

pytestmark = pytest.mark.vm

MACS = {"e1000": ["52:54:00:00:20:01", "52:54:00:00:20:02"],
        "e1000e": ["52:54:00:00:20:11", "52:54:00:00:20:12"],
        "rtl8139": ["52:54:00:00:20:21", "52:54:00:00:20:22"]}
DRIVERS = {"e1000": "e1000", "e1000e": "e1000e", "rtl8139": "8139cp"}  # QEMU's rtl8139 is rev 0x20: 8139cp
IDS = {"e1000": "8086:100e", "e1000e": "8086:10d3", "rtl8139": "10ec:8139"}
COUNT = 100


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    out = tmp_path_factory.mktemp("undivm") / "result.json"
    cmd = [sys.executable, "-m", "romlab", "vm"]
    for model, macs in MACS.items():
        for mac in macs:
            cmd += ["--nic", f"{model},mac={mac},link={model.replace('rtl', 'r')}"]
    cmd += ["--share", str(out.parent), "--timeout", "780", "--",
            sys.executable, str(REPO / "tests" / "vm_undi_guest.py"), str(out), json.dumps(MACS)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert out.exists(), f"guest wrote no result (exit {r.returncode}): {r.stdout[-3000:]} {r.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    doc["boot_seconds"] = time.monotonic() - t0
    print(json.dumps({"boot_seconds": doc["boot_seconds"], "steps": [(s["argv"][:2], s["rc"], round(s["seconds"], 1))
                                                                     for s in doc["steps"]]}))
    assert "exception" not in doc, doc["exception"] + json.dumps(doc["steps"][-3:], indent=1)
    assert doc.get("done"), "the guest was cut short: " + json.dumps(doc["steps"][-2:], indent=1)
    return doc


def test_info_from_the_rom_bar(guest):
    info = guest["info"]
    assert "error" not in info, info["error"]
    assert info["schema"] == "romlab.undi-info/2" and info["rom"] is None and info["rom_source"] == "rom-bar"
    assert info["id"] == "8086:100e" and info["rom_id"] == "8086:100e"
    assert bytes.fromhex(info["pxe"]["signature"]) == b"!PXE" and info["pxe"]["struct_length"] == 88
    assert bytes.fromhex(info["pxenv"]["signature"]) == b"PXENV+"
    assert info["pxe"]["entry_point_sp"]["segment"] == info["pxenv"]["undi_code_seg"]  # both name the UNDI code
    assert info["pxenv"]["version"] == 0x0201  # PXENV+ 2.1, as iPXE builds it
    gi = info["get_information"]
    assert gi["current_node_address"][:12] == MACS["e1000"][0].replace(":", "")
    assert gi["hw_addr_len"] == 6 and gi["hw_type"] == 1  # Ethernet
    nt = info["get_nic_type"]
    assert nt["nic_type"] == 2 and nt["id"] == "8086:100e" and nt["class"] == "020000"  # a PCI NIC
    assert bytes.fromhex(info["get_iface_info"]["iface_type"]).startswith(b"DIX+802.3")
    assert guest["info_driver_after"] == "e1000"


@pytest.mark.parametrize("model", sorted(MACS))
def test_undi_sends_to_the_kernel(guest, model):
    m = guest["models"][model]
    s = m["send"]
    assert s["rc"] == 0, s["doc"]
    assert s["doc"]["mac"] == MACS[model][0] and s["doc"]["id"] == IDS[model]
    assert s["doc"]["rom_source"] == "rom-bar"
    assert s["kernel_intact"] == COUNT and s["kernel_sequences_ok"]
    assert s["kernel_rx_packets"] >= COUNT
    assert m["driver_before"] == m["driver_after_send"] == m["driver_after"] == DRIVERS[model]


@pytest.mark.parametrize("model", sorted(MACS))
def test_undi_receives_from_the_kernel_at_half_its_rate(guest, model):
    m = guest["models"][model]
    assert m["measured_pps"] > 0, m["flood"]
    p = m["paced"]
    assert p["rc"] == 0, p["doc"]
    assert p["doc"]["verified"] == COUNT and p["sequences_ok"]
    assert p["doc"]["missed"] is not None  # the NIC's own counter, read and reported
    print(model, "UNDI receive", round(m["measured_pps"], 1), "frames/s; paced at", round(m["paced_pps"], 1),
          "missed", m["flood"]["doc"].get("missed"), "then", p["doc"]["missed"])


def _one_line(case) -> str:
    err = case["err"]
    assert case["rc"] == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    assert case["driver_after"] == "e1000"  # the NIC is back on its kernel driver
    return err


def test_mismatched_rom_refused(guest):
    err = _one_line(guest["bad"]["mismatch"])
    assert "the ROM is for 10ec:8139, the device is 8086:100e; use --force-ids" in err


def test_forced_rom_that_cannot_drive_the_device(guest):
    # pxe-rtl8139.rom's iPXE has no driver for an 8086:100e: its START_UNDI finds no network device at
    # the bus:dev.fn it is given and says so, status 0x63 (PXENV_STATUS_UNDI_CANNOT_INITIALIZE_NIC)
    err = _one_line(guest["bad"]["force_ids"])
    assert "START_UNDI failed: exit 0x1, PXE status 0x0063" in err


def test_looping_loader_ends_within_the_watchdog(guest):
    case = guest["bad"]["loops"]
    err = _one_line(case)
    assert "UNDI loader: did not return within the watchdog's 2 s" in err and "c800:0081" in err
    assert case["seconds"] < 60


def test_write_outside_ram_is_stopped_and_named(guest):
    err = _one_line(guest["bad"]["writes_outside_ram"])
    assert "UNDI loader:" in err and "write to unmapped memory at 0xa0000" in err and "c800:0085" in err


def test_port_outside_the_allowlist_is_stopped_and_named(guest):
    err = _one_line(guest["bad"]["port_outside"])
    assert "I/O port 0x3f8" in err and "outside the allowed ports" in err


def test_no_iommu_faults_or_kernel_warnings(guest):
    assert guest["dmesg_dmar"] == [] and guest["dmesg_warn"] == []


def test_json_keeps_the_conventions(guest):
    """docs/conventions.md's checker on every document `romlab undi` printed in the guest."""
    conventions = pytest.importorskip("json_conventions")
    docs = [("romlab.undi-info/2", guest["info"])]
    for m in guest["models"].values():
        docs += [("romlab.undi-send/2", m["send"]["doc"]), ("romlab.undi-recv/2", m["paced"]["doc"])]
    for schema, doc in docs:
        assert conventions.check(doc, schema) == [], doc
