"""The hardware layer against real emulated devices: one `romlab vm` boot, many checks.

The guest (q35 + Intel vIOMMU, Debian's kernel) gets four NICs, each in a PCIe slot of
its own: an e1000 with Debian's efi-e1000.rom and a capture file, an e1000e with
efi-e1000e.rom, an rtl8139 with a ROM built here by hand, and an rtl8139 with no ROM.
tests/vm_guest_e2e.py runs every check inside and writes what it saw to a shared
directory; the assertions below are made here, on the host, against the romfiles
given to QEMU, the pcap QEMU wrote and the numbers in the 8254x manual and pci.ids.
The same guest runs the `--pci` and `vfio` examples of README.md and docs/ (chosen by
tests/test_docs_examples.py); the ROM-less rtl8139 shares the e1000's link, so that `nic recv`
has a sender.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import struct
import sys
import time
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, REPO, corpus, run_romlab
from json_conventions import check
from test_docs_examples import check_guest_run, export_for_guest, guest_examples

pytestmark = [pytest.mark.vm, pytest.mark.qemu, pytest.mark.root]

MACS = {"e1000": "52:54:00:12:34:56", "e1000e": "52:54:00:12:34:57", "own": "52:54:00:12:34:58",
        "norom": "52:54:00:12:34:59"}
KIB = 1024


def own_rom() -> bytes:
    """A 3 KiB legacy option ROM for an RTL8139 (10ec:8139), laid out by hand.

    0x00 55 AA, 0x02 size in 512-byte units (6), 0x03 entry (RETF), 0x18 pointer to
    the PCI data structure at 0x20: "PCIR", vendor, device, VPD 0, length 0x18,
    revision 0, class 02 00 00, image length 6, code revision 1, code type 0 (x86),
    indicator 0x80 (last image). The last byte makes the byte sum 0 mod 256.
    """
    rom = bytearray(b"\xff" * (6 * 512))
    rom[0:4] = b"\x55\xaa\x06\xcb"
    rom[4:0x18] = b"\x00" * 0x14
    struct.pack_into("<H", rom, 0x18, 0x20)
    rom[0x1A:0x20] = b"\x00" * 6
    rom[0x20:0x38] = b"PCIR" + struct.pack("<HHHHB3sHHBBH", 0x10EC, 0x8139, 0, 0x18, 0, b"\x00\x00\x02",
                                           6, 1, 0, 0x80, 0)
    text = b"romlab hand-made test ROM for an RTL8139 "
    for off in range(0x40, len(rom) - 1, len(text)):
        piece = text[: len(rom) - 1 - off]
        rom[off:off + len(piece)] = piece
    rom[-1] = (-sum(rom[:-1])) & 0xFF
    assert sum(rom) & 0xFF == 0
    return bytes(rom)


def tx_frame(nonce: bytes) -> bytes:
    """Broadcast, source = the MAC QEMU was given, EtherType 0x88B5 (local experimental), 60 bytes."""
    src = bytes.fromhex(MACS["e1000"].replace(":", ""))
    payload = b"romlab vfio e1000 tx " + nonce
    frame = b"\xff" * 6 + src + b"\x88\xb5" + payload
    return frame + b"\x00" * (60 - len(frame))


def read_pcap(path: Path) -> list[bytes]:
    data = path.read_bytes()
    magic, _vmaj, _vmin, _tz, _sig, _snap, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert magic == 0xA1B2C3D4 and linktype == 1
    out, off = [], 24
    while off + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack_from("<IIII", data, off)
        out.append(data[off + 16: off + 16 + incl])
        off += 16 + incl
    return out


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    share = tmp_path_factory.mktemp("vmshare")
    os.chmod(share, 0o777)  # the not-root checks run as nobody
    own = share / "own-rtl8139.rom"
    own.write_bytes(own_rom())
    nonce = secrets.token_hex(8).encode()
    frame = tx_frame(nonce)
    pcap = share / "e1000.pcap"
    config = {"nics": MACS, "tx_frame_hex": frame.hex()}
    export_for_guest("vm", share)
    nics = [
        f"e1000,romfile={corpus(IPXE_QEMU / 'efi-e1000.rom')},mac={MACS['e1000']},capture={pcap},link=docs",
        f"e1000e,romfile={corpus(IPXE_QEMU / 'efi-e1000e.rom')},mac={MACS['e1000e']}",
        f"rtl8139,romfile={own},mac={MACS['own']}",
        f"rtl8139,romfile=,mac={MACS['norom']},link=docs",
    ]
    args = ["vm", "--timeout", "1300", "--share", str(share)]
    for n in nics:
        args += ["--nic", n]
    args += ["--", sys.executable, str(REPO / "tests" / "vm_guest_e2e.py"), str(share), json.dumps(config)]
    t0 = time.monotonic()
    r = run_romlab(*args, timeout=1600)
    seconds = time.monotonic() - t0
    print(f"guest boot and checks: {seconds:.0f} s")
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    progress = share / "progress.log"
    assert r.returncode == 0, out[-3000:] + "\n-- guest progress:\n" + (
        progress.read_text()[-3000:] if progress.exists() else "(none)")
    results = json.loads((share / "results.json").read_text())
    docs = results.get("docs")
    if isinstance(docs, list):
        each = ", ".join(f"{r['id']} {r.get('seconds')} s" for r in docs)
        print(f"of which the documented examples: {sum(r.get('seconds', 0) for r in docs):.0f} s ({each})")
    return {"dir": share, "results": results, "frame": frame, "pcap": pcap, "own": own, "stdout": out}


def _ok(res: dict) -> dict:
    assert "exception" not in res, res.get("exception")
    return res


def test_guest_found_every_nic(guest):
    bdf = guest["results"]["bdf"]
    assert all(bdf[r] for r in MACS), bdf
    assert guest["results"]["drivers_at_start"] == {"e1000": "e1000", "e1000e": "e1000e", "own": "8139cp",
                                                   "norom": "8139cp"}
    # every check gave the devices back to the drivers they started with
    assert guest["results"]["drivers_at_end"] == guest["results"]["drivers_at_start"]


def test_guest_runs_the_kernel_set_up_unpacked(guest):
    """The guest booted the kernel scripts/setup.sh unpacked into romlab's cache (backports' 6.12),
    not one installed on the host: its release is the name of the cache's module directory."""
    from romlab.lab.vm import find_kernel, kernel_cache

    kernel = Path(find_kernel())
    assert kernel.parent.parent.parent == kernel_cache()
    assert guest["results"]["kernel_release"] == kernel.name.removeprefix("vmlinuz-")
    assert guest["results"]["kernel_release"].startswith("6.12.")


def test_list_shows_names_and_rom_sizes(guest):
    res = _ok(guest["results"]["list"])
    assert res["json"]["rc"] == 0, res["json"]["stderr"]
    listed = json.loads(res["json"]["stdout"])
    assert check(listed, "romlab.list/1") == []
    rows = {r["bdf"]: r for r in listed["devices"]}
    bdf = guest["results"]["bdf"]
    e1000, e1000e, own, norom = (rows[bdf[k]] for k in ("e1000", "e1000e", "own", "norom"))
    # names as pci.ids spells them; sizes: BAR = next power of two of the romfile, ROM = the file
    assert (e1000["vendor_name"], e1000["device_name"]) == ("Intel Corporation", "82540EM Gigabit Ethernet Controller")
    assert e1000e["device_name"] == "82574L Gigabit Network Connection"
    assert own["vendor_name"].startswith("Realtek Semiconductor")
    assert own["device_name"] == "RTL-8100/8101L/8139 PCI Fast Ethernet Adapter"
    assert (e1000["rom_bar_size"], e1000["rom"], e1000["rom_size"]) == (256 * KIB, "valid", 249856)
    assert (e1000e["rom_bar_size"], e1000e["rom"], e1000e["rom_size"]) == (256 * KIB, "valid", 249856)
    assert (own["rom_bar_size"], own["rom"], own["rom_size"]) == (4 * KIB, "valid", 3 * KIB)
    assert (norom["rom_bar_size"], norom["rom"]) == (0, "none")
    assert e1000["driver"] == "e1000" and own["driver"] == "8139cp"
    line = next(ln for ln in res["text"]["stdout"].splitlines() if ln.startswith(bdf["e1000"]))
    assert "82540EM" in line and "256 KiB" in line and "valid, 244 KiB" in line
    # not root: the kernel's rom file is root-only, so validity is unknown but nothing fails
    nr = {r["bdf"]: r for r in json.loads(res["nonroot"]["stdout"])["devices"]}
    assert res["nonroot"]["rc"] == 0 and nr[bdf["e1000"]]["rom"] == "unreadable"
    assert nr[bdf["e1000"]]["rom_bar_size"] == 256 * KIB


@pytest.mark.parametrize("role,romfile", [("e1000", "efi-e1000.rom"), ("e1000e", "efi-e1000e.rom"), ("own", None)])
def test_dump_sysfs_and_vfio_match_romfile(guest, role, romfile):
    d = guest["dir"]
    expected = (IPXE_QEMU / romfile).read_bytes() if romfile else guest["own"].read_bytes()
    runs = _ok(guest["results"]["dumps"])[role]["runs"]
    for via in ("sysfs", "vfio"):
        assert runs[via]["rc"] == 0, runs[via]["stderr"]
        assert (d / f"{role}-{via}.rom").read_bytes() == expected, via
    if role == "e1000":  # 01:00.0 as well as 0000:01:00.0
        assert runs["short_bdf"]["rc"] == 0 and (d / f"{role}-short.rom").read_bytes() == expected
    # --raw: the whole BAR through VFIO; vfio-pci serves bytes past the ROM's last image as 0xFF
    raw = (d / f"{role}-raw.rom").read_bytes()
    bar = 256 * KIB if romfile else 4 * KIB
    assert runs["raw"]["rc"] == 0, runs["raw"]["stderr"]
    assert len(raw) == bar
    assert raw[: len(expected)] == expected
    assert raw[len(expected):] == b"\xff" * (bar - len(expected))


def test_dump_leaves_rom_enable_state_and_driver(guest):
    for role in ("e1000", "e1000e", "own"):
        rec = _ok(guest["results"]["dumps"])[role]
        before = rec["before"]
        # Whatever the ROM BAR's enable state was before (QEMU 10's firmware can leave one set), each
        # dump leaves it, and the driver, as it found them.
        assert isinstance(before["rom_attr_enabled"], bool)
        for name, run in rec["runs"].items():
            if name == "short_bdf":
                continue
            assert run["after"] == before, (role, run["cmd"])


def test_inspect_and_lint_read_the_device(guest):
    res = _ok(guest["results"]["pci_readers"])
    bdf = guest["results"]["bdf"]
    for key in ("inspect_sysfs", "inspect_vfio"):
        assert res[key]["rc"] == 0, res[key]["stderr"]
        doc = json.loads(res[key]["stdout"])
        assert doc["input"] == f"pci:{bdf['e1000']}" and doc["size"] == 249856
        # efi-e1000.rom: a legacy x86 image of 0x12600 bytes, then the EFI image, last
        assert [(i["offset"], i["length"], i["last"]) for i in doc["images"]] == [(0, 0x12600, False),
                                                                                  (0x12600, 0x2AA00, True)]
        assert [i["pcir"]["device"] for i in doc["images"]] == ["100e", "100e"]
    own = json.loads(res["inspect_own"]["stdout"])
    assert [(i["length"], i["pcir"]["vendor"], i["pcir"]["device"]) for i in own["images"]] == [
        (3072, "10ec", "8139")]
    assert res["lint"]["rc"] in (0, 1), res["lint"]["stderr"]
    info = res["vfio_info_text"]
    assert info["rc"] == 0, info["stderr"]
    assert re.search(r"^\s+6\s+ROM\s+262144\s+r--$", info["stdout"], re.M), info["stdout"]
    assert re.search(r"^\s+0\s+BAR0\s+131072\s+rwm$", info["stdout"], re.M), info["stdout"]
    info = res["vfio_info_json"]
    assert info["rc"] == 0, info["stderr"]
    doc = json.loads(info["stdout"])
    assert check(doc, "romlab.vfio-info/1") == [] and doc["input"] == f"pci:{bdf['e1000']}"
    assert {"index": 6, "name": "ROM", "size": 262144} == {k: doc["regions"][6][k] for k in ("index", "name", "size")}
    assert res["driver_after"] == "e1000"


def _one_line_error(run: dict, *needles: str) -> None:
    assert run["rc"] != 0, run
    lines = run["stderr"].strip().splitlines()
    assert len(lines) == 1, run["stderr"]
    assert "error:" in lines[0] and "Traceback" not in run["stderr"]
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_cases(guest):
    bad = _ok(guest["results"]["bad"])
    _one_line_error(bad["missing_bdf"], "no PCI device 0000:3f:1f.7")
    _one_line_error(bad["no_rom_sysfs"], "has no expansion ROM")
    _one_line_error(bad["no_rom_vfio"], "has no expansion ROM")
    assert bad["no_rom_driver_after"] == "8139cp"
    _one_line_error(bad["not_root_dump"], "permission denied", "needs root")
    _one_line_error(bad["not_root_bind"], "needs root")
    assert bad["not_root_driver_after"] == "e1000"
    # the ICH9 functions of q35 share one IOMMU group
    assert bad["group_members"] == ["0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"]
    _one_line_error(bad["group_bind"], "also holds 0000:00:1f.0 (lpc_ich), 0000:00:1f.3 (i801_smbus)")
    assert bad["group_driver_before"] == bad["group_driver_after"] == "ahci"
    _one_line_error(bad["raw_sysfs"], "--raw needs --via vfio")
    assert not (guest["dir"] / "missing.rom").exists() and not (guest["dir"] / "norom.rom").exists()


def test_locked_memory_limit(guest):
    bad = _ok(guest["results"]["bad"])
    assert bad["memlock_bind"]["rc"] == 0, bad["memlock_bind"]["stderr"]
    ok = json.loads(bad["memlock_ok"]["stdout"])
    assert ok["dma"]["size"] == 64 * KIB
    _one_line_error(bad["memlock_low"], "locked-memory limit is 0 KiB", "CAP_IPC_LOCK")
    assert bad["memlock_driver_during"] == "vfio-pci"
    assert bad["memlock_unbind"]["rc"] == 0 and bad["memlock_driver_after"] == "e1000"


def test_ctrl_c_during_vfio_read_restores_driver(guest):
    runs = _ok({"r": guest["results"]["ctrl_c"]})["r"]
    assert all(r["signalled"] for r in runs)
    for r in runs:
        assert r["driver_after"] == "e1000" and r["override_after"] == "(null)", r
        assert r["rc"] in (0, 130), r
        if r["rc"] == 130:  # inside the verb, or just after it finished (the file is then written)
            assert r["stderr"].strip().splitlines()[-1] in ("romlab dump: interrupted", "romlab: interrupted"), r
    assert any(r["rc"] == 130 for r in runs)


def test_unbind_refuses_a_device_another_process_holds(guest):
    """The kernel's unbind would wait for the holder for ever; romlab names it and leaves the device."""
    res = _ok(guest["results"]["held"])
    assert res["bind"]["rc"] == 0 and res["holder_said"] == "open"
    _one_line_error(res["unbind_held"], f"is open through VFIO in process {res['holder_pid']} (python")
    assert res["driver_held"] == "vfio-pci"
    assert res["holder_rc"] == 0
    assert res["unbind_free"]["rc"] == 0 and res["driver_after"] == "e1000"


def test_vfio_end_to_end(guest):
    res = _ok(guest["results"]["vfio_e2e"])
    assert res["driver_before"] == "e1000" and res["driver_bound"] == "vfio-pci"
    assert res["backend"] == "container"
    assert res["config_ids"] == [0x8086, 0x100E]
    assert res["command_reg"] & 0x6 == 0x6  # memory decoding (vfio-pci) and bus master (ours)
    regions = {r["index"]: r for r in res["regions"]}
    # 82540EM: BAR0 128 KiB memory, BAR1 64 bytes of I/O ports (QEMU's e1000), ROM 256 KiB, config 256 B
    assert regions[0]["size"] == 128 * KIB and regions[0]["mmap"]
    assert regions[1]["size"] == 64
    assert regions[6]["size"] == 256 * KIB and not regions[6]["write"]
    assert regions[7]["size"] == 256
    assert res["irqs"][0]["name"] == "INTx" and res["irqs"][0]["count"] == 1
    # the MAC QEMU was given, read word by word from the emulated EEPROM
    assert res["eeprom_mac"] == MACS["e1000"]
    # the descriptor came back done and the head moved past it
    assert res["tx_status"] & 1 and res["tx_tdh"] == 1
    assert res["irq_before"] == 0 and res["irq_count"] >= 1
    assert res["icr_after_irq"] & 0x4
    assert res["before_reset"]["TDLEN"] == 128
    assert res["reset_supported"]
    after = res["after_reset"]
    assert (after["TDLEN"], after["TDBAL"], after["TCTL"], after["TDT"], after["IMS"]) == (0, 0, 0, 0, 0)
    # after reset the receive address 0 is reloaded from the EEPROM, with Address Valid (bit 31)
    # MAC 52:54:00:12:34:56 as the 8254x keeps it: RAL0 = bytes 0-3 little-endian, RAH0 = bytes 4-5 | AV (bit 31)
    assert after["RAL0"] == 0x12005452
    assert after["RAH0"] == 0x80005634
    assert res["dma_left"] == 0
    assert res["driver_after"] == "e1000"


def test_transmitted_frame_in_capture(guest):
    frames = read_pcap(guest["pcap"])
    assert guest["frame"] in frames, [f.hex() for f in frames]


@pytest.mark.parametrize("ex_id", [e["id"] for e in guest_examples("vm")])
def test_documented_example_ran_as_documented(guest, ex_id):
    rec = check_guest_run("vm", guest["dir"], ex_id)
    work = Path(rec["work"])
    # What a documented dump wrote is the ROM QEMU was given (the whole BAR with --raw: vfio-pci
    # fills past the last image with 0xFF).
    if rec["argv"][0] == "dump":
        rom = (IPXE_QEMU / "efi-e1000.rom").read_bytes()
        out = (work / rec["argv"][rec["argv"].index("-o") + 1]).read_bytes()
        assert out == (rom + b"\xff" * (256 * KIB - len(rom)) if "--raw" in rec["argv"] else rom)
    if rec["argv"][:2] == ["nic", "recv"]:
        assert rec["peer_sent"] >= 1000
