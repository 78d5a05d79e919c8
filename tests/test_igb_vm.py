"""romlab's igb-family driver on QEMU's 82576 (igb) behind a vIOMMU, against the Linux kernel's igb on
a second 82576 on the same link: the PF both ways through the C ring (10,000 frames each way) and the
Python ring, then a virtual function of the same PF (the PF back on the kernel's igb) both ways
(2,000 frames each way), and a second VF the PF gave no MAC (200 frames each way). One guest boot runs tests/vm_igb_guest.py; this test asserts on the JSON
it writes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.vm

PF_COUNT, VF_COUNT, PY_COUNT, VF1_COUNT = 10_000, 2_000, 1_000, 200
VF_MAC = "52:54:00:00:76:10"


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    out = tmp_path_factory.mktemp("igbvm") / "result.json"
    cmd = [sys.executable, "-m", "romlab", "vm", "--nic", "igb,mac=52:54:00:00:76:0a,link=lab",
           "--nic", "igb,mac=52:54:00:00:76:0b,link=lab", "--share", str(out.parent), "--timeout", "1500",
           "--", sys.executable, str(REPO / "tests" / "vm_igb_guest.py"), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert out.exists(), f"guest wrote no result (exit {r.returncode}): {r.stdout[-3000:]} {r.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in doc.items() if k != "steps"}, indent=1)[:6000])
    assert "exception" not in doc, doc["exception"] + json.dumps(doc["steps"][-3:], indent=1)
    return doc


def test_pf_and_vfs_sit_in_iommu_groups_of_their_own(guest):
    groups = guest["groups"]
    assert len(set(groups.values())) == len(groups) == 2


def test_pf_sends_frames_the_kernel_receives_intact(guest):
    p = guest["pf"]
    assert p["bind_rc"] == 0 and p["info"]["part"] == "82576 (igb)" and p["info"]["link_up"] is True
    t = p["to_kernel"]
    assert t["send_rc"] == 0, t["send_err"]
    assert t["sent"] == PF_COUNT and t["kernel_received_intact"] == PF_COUNT and t["kernel_sequences_ok"]
    assert t["send_stats"]["tx_good"] == PF_COUNT  # the NIC's own transmit counter
    assert p["unbind_rc"] == 0


def test_pf_receives_the_kernels_frames_intact(guest):
    f = guest["pf"]["from_kernel"]
    assert f["recv_rc"] == 0, f.get("recv_error")
    assert f["romlab_received"] == PF_COUNT and f["romlab_verified"] == PF_COUNT and f["romlab_sequences_ok"]
    assert f["recv_stats"]["rx_dropped"] == 0 and f["recv_stats"]["rx_good"] >= PF_COUNT


def test_python_ring_on_the_pf(guest):
    p = guest["pf"]["python"]
    assert p["recv_impl"] == "python" and p["recv_rc"] == 0, p.get("recv_error")
    assert p["romlab_verified"] == PY_COUNT and p["romlab_sequences_ok"] and p["recv_stats"]["rx_ring"] == PY_COUNT
    t = guest["pf"]["python_to_kernel"]
    assert t["send_rc"] == 0 and t["kernel_received_intact"] == PY_COUNT and t["kernel_sequences_ok"]


def test_vf_gets_the_mac_its_pf_assigned(guest):
    v = guest["vf"]
    assert v["totalvfs"] == 7 and len(v["vfs"]) == 2 and v["set_vf_mac_rc"] == 0
    assert v["bind_rc"] == 0
    info = v["info"]
    assert info["part"] == "82576 virtual function (igbvf)" and info["mac"] == VF_MAC, info
    assert info["eeprom_mac"] is None and info["link_up"] is True


def test_vf_exchanges_frames_with_the_kernel_both_ways(guest):
    v = guest["vf"]
    t = v["to_kernel"]
    assert t["send_rc"] == 0, t["send_err"]
    assert t["sent"] == VF_COUNT and t["kernel_received_intact"] == VF_COUNT and t["kernel_sequences_ok"]
    assert t["send_stats"]["tx_good"] == VF_COUNT  # the VF's own counter (VFGPTC)
    f = v["from_kernel"]
    assert f["recv_rc"] == 0, f.get("recv_error")
    assert f["romlab_received"] == VF_COUNT and f["romlab_verified"] == VF_COUNT and f["romlab_sequences_ok"]
    assert f["recv_stats"]["rx_dropped"] == 0 and f["recv_stats"]["rx_good"] >= VF_COUNT
    # the receiver sleeps on the VF's MSI-X vector whenever its ring is empty (--mode irq), so frames
    # that all arrived intact arrived through wake-ups
    assert f["recv_mode"] == "irq" and f["recv_interrupts"] >= 1
    assert v["unbind_rc"] == 0


def test_vf_without_an_admin_mac_picks_one_and_exchanges_frames(guest):
    """VF 1 has no MAC from the PF (6.12's igb gives VFs none): the PF NACKs the reset, romlab picks a
    random locally administered unicast address (first octet: bit 1 set, bit 0 clear) and the PF
    accepts it with SET_MAC; anti-spoofing then passes frames from it."""
    v = guest["vf"]["vf1"]
    assert v["bind_rc"] == 0
    info = v["info"]
    assert info["part"] == "82576 virtual function (igbvf)" and info["link_up"] is True, info
    assert int(info["mac"].split(":")[0], 16) & 0x03 == 0x02 and info["mac"] != VF_MAC, info
    t = v["to_kernel"]
    assert t["send_rc"] == 0, t["send_err"]
    assert t["sent"] == VF1_COUNT and t["kernel_received_intact"] == VF1_COUNT and t["kernel_sequences_ok"]
    assert t["send_stats"]["tx_good"] == VF1_COUNT
    f = v["from_kernel"]
    assert f["recv_rc"] == 0, f.get("recv_error")
    assert f["romlab_verified"] == VF1_COUNT and f["romlab_sequences_ok"]
    assert v["unbind_rc"] == 0


def test_no_iommu_faults_or_kernel_warnings(guest):
    assert guest["dmesg_dmar"] == [] and guest["dmesg_warn"] == []
