"""The fleet, end to end: three `romlab lab fleet` guests driven by ansible-playbook over SSH.

One fleet boot (the three TCG guests in parallel) serves every scenario, in order:

1. the inventory report lists every host's NICs (the e1000 under test, the virtio management NIC)
   with the ROM BAR's and the flash's iPXE build ID;
2. the roll-out of image B in check mode (with --diff) reports 3 changes and leaves every chip as
   it was, byte for byte;
3. with `serial: 1` and host 2's programmer losing writes, host 1 ends with B, the run stops at
   host 2, host 3 still holds A byte for byte;
4. the restore playbook puts host 2's backup back: A byte for byte; a backup of another host is refused;
5. a clean roll-out gives all three B, and a second one reports 0 changes.

A is Debian's pxe-e1000.rom; B the same ROM with another $PnP product string (`romlab patch`),
so it stays a ROM for the 82540EM. The expected chips are built here from the ROM files (the ROM
at 0, then 0xFF to the chip's end) and the iPXE build ID read from iPXE's ROM header (found through
the word at 0x10: "iPXE", length, checksum, shrunk length, a reserved byte, the 32-bit build ID).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import IPXE_QEMU, REPO, run_romlab

pytestmark = [pytest.mark.vm, pytest.mark.qemu]

HOSTS = 3
CHIP_SIZE = 128 * 1024
A = (IPXE_QEMU / "pxe-e1000.rom").read_bytes()
BIN = Path(sys.executable).parent


def chip_image(rom: bytes) -> bytes:
    return rom + b"\xff" * (CHIP_SIZE - len(rom))


def ipxe_build_id(rom: bytes) -> str:
    at = struct.unpack_from("<H", rom, 0x10)[0]      # iPXE's romprefix.S points at its header from 0x10
    assert rom[at:at + 4] == b"iPXE"
    return "%08x" % struct.unpack_from("<I", rom, at + 8)[0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Fleet:
    def __init__(self, lab: Path, work: Path, state: dict):
        self.lab, self.work, self.state = lab, work, state

    def chip(self, i: int) -> bytes:
        return (self.lab / f"host{i}" / "chip.bin").read_bytes()

    def chips(self) -> list[bytes]:
        return [self.chip(i) for i in range(1, HOSTS + 1)]

    def playbook(self, name: str, *args: str, timeout: float = 1800) -> tuple[int, str]:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   PATH=f"{BIN}:{os.environ.get('PATH', '')}", ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-tmp"))
        t0 = time.monotonic()
        r = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.lab / "inventory.yml"),
                            str(REPO / "ansible" / name), "-e", f"@{self.work / 'vars.json'}", *args],
                           capture_output=True, text=True, timeout=timeout, env=env)
        out = r.stdout + r.stderr
        print(f"ansible-playbook {name} {' '.join(args)}: exit {r.returncode}, {time.monotonic() - t0:.0f} s")
        return r.returncode, out


def task_results(out: str, task: str) -> dict[str, str]:
    """{host: ok|changed|failed|skipping} of one task in the default callback's output."""
    res = {}
    for block in re.split(r"\nTASK \[", out)[1:]:
        if block.startswith(task + "]"):
            for m in re.finditer(r"^(ok|changed|failed|fatal|skipping): \[(lab\d)\]", block, re.M):
                res[m.group(2)] = "failed" if m.group(1) == "fatal" else m.group(1)
    return res


def recap(out: str) -> dict[str, dict[str, int]]:
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(lab\d)\s+:\s+(.*)$", out, re.M)}


FLASH_TASK = "Back up and flash the NICs"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from romlab.lab import fleet as labfleet

    if not (labfleet.sshd_root() / "usr" / "sbin" / "sshd").exists():
        pytest.skip(f"no sshd under {labfleet.sshd_root()} (scripts/setup.sh unpacks it)")
    work = tmp_path_factory.mktemp("fleet")
    lab = work / "lab"
    # B: A with another $PnP product string and its checksums fixed; still an 82540EM ROM.
    r = run_romlab("patch", str(IPXE_QEMU / "pxe-e1000.rom"), "--pnp-product", "iPXB", "--fix-checksums",
                   "-o", str(work / "B.rom"))
    assert r.returncode == 0, r.stderr
    dist = work / "dist"
    w = subprocess.run([str(BIN / "python"), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(dist), str(REPO)], capture_output=True, text=True, timeout=600)
    assert w.returncode == 0, w.stderr[-2000:]
    wheel = next(dist.glob("romlab-*.whl"))
    (work / "vars.json").write_text(json.dumps({
        "romlab_wheel": str(wheel), "romlab_backup_dir": str(work / "backups"),
        "romlab_report": str(work / "report.html"), "romlab_roms": {"8086:100e": str(work / "B.rom")}}))
    t0 = time.monotonic()
    state = labfleet.up(str(lab), HOSTS, str(IPXE_QEMU / "pxe-e1000.rom"))
    print(f"fleet of {HOSTS} TCG guests up (sshd answering) after {time.monotonic() - t0:.0f} s: "
          + ", ".join(f"{h['name']} {h['boot_seconds']} s" for h in state["hosts"]))
    try:
        yield Fleet(lab, work, state)
    finally:
        labfleet.down(str(lab))
        shutil.rmtree(work / "ansible-tmp", ignore_errors=True)


@pytest.fixture(scope="module")
def report(fleet):
    rc, out = fleet.playbook("report.yml")
    assert rc == 0, out[-4000:]
    return json.loads((fleet.work / "report.json").read_text()), (fleet.work / "report.html").read_text(), out


def test_report_lists_every_nic_and_rom(fleet, report):
    facts, html, _ = report
    assert sorted(facts) == [f"lab{i}" for i in range(1, HOSTS + 1)]
    for i, host in enumerate(sorted(facts), 1):
        nics = {n["id"]: n for n in facts[host]}
        assert set(nics) == {"8086:100e", "1af4:1000"}
        nic, mgmt = nics["8086:100e"], nics["1af4:1000"]
        assert mgmt["management"] is True and nic["management"] is False
        assert [x["mac"] for x in nic["interfaces"]] == [f"52:54:00:aa:00:{i:02x}"]
        assert nic["driver"] == "e1000"
        assert nic["rom"]["state"] == "valid"
        assert nic["rom"]["sha256"] == sha(A)          # QEMU's ROM BAR holds the file as given
        assert [im["ipxe_build_id"] for im in nic["rom"]["images"]] == [ipxe_build_id(A)]
        assert nic["rom"]["images"][0]["id"] == "8086:100e"
        assert nic["flash"]["chip"] == "W25X10" and nic["flash"]["size"] == CHIP_SIZE
        assert nic["flash"]["sha256"] == sha(chip_image(A))
        assert nic["flash"]["rom"]["images"][0]["ipxe_build_id"] == ipxe_build_id(A)
        assert nic["nvm"]["available"] is False and "e1000 driver" in nic["nvm"]["reason"]
        assert f"<td>{host}</td>" in html and nic["bdf"] in html
    assert html.count(ipxe_build_id(A)) >= 2 * HOSTS


def test_check_mode_reports_three_changes_writes_nothing(fleet, report):
    before = [sha(c) for c in fleet.chips()]
    assert before == [sha(chip_image(A))] * HOSTS
    rc, out = fleet.playbook("rollout.yml", "--check", "--diff")
    assert rc == 0, out[-4000:]
    assert task_results(out, FLASH_TASK) == {f"lab{i}": "changed" for i in range(1, HOSTS + 1)}, out[-3000:]
    assert sum(v["changed"] for v in recap(out).values()) == HOSTS
    assert "product iPXB" in out and "product iPXE" in out     # diff: old and new ROM
    assert [sha(c) for c in fleet.chips()] == before
    assert not (fleet.work / "backups").exists()


def test_refuses_the_management_nic(fleet, report):
    rc, out = fleet.playbook("rollout.yml", "--check", "-l", "lab1",
                             "-e", '{"romlab_roms": {"1af4:1000": "%s"}, "romlab_select": {"ids": ["1af4:1000"]}}'
                             % (fleet.work / "B.rom"))
    assert rc != 0
    assert "carries the management connection" in out


@pytest.fixture(scope="module")
def faulty_rollout(fleet, report):
    from romlab.lab import fleet as labfleet

    labfleet.fault(str(fleet.lab), 2, ["lie:0.3"])
    try:
        rc, out = fleet.playbook("rollout.yml")
    finally:
        labfleet.fault(str(fleet.lab), 2, ["none"])
    return rc, out


def test_serial_rollout_stops_at_the_failing_host(fleet, faulty_rollout):
    rc, out = faulty_rollout
    assert rc != 0
    assert task_results(out, FLASH_TASK) == {"lab1": "changed", "lab2": "failed"}, out[-4000:]
    assert "restorable" in out and "romlab restore" in out
    b = (fleet.work / "B.rom").read_bytes()
    assert fleet.chip(1) == chip_image(b)
    assert fleet.chip(2) not in (chip_image(A), chip_image(b))     # left partly written
    assert fleet.chip(3) == chip_image(A)
    for host in ("lab1", "lab2"):
        bins = list((fleet.work / "backups" / host).glob("*/*.bin"))
        assert len(bins) == 1 and bins[0].read_bytes() == chip_image(A)
        owner = json.loads(bins[0].with_suffix(".fleet.json").read_text())
        assert owner["host"] == host and owner["sha256"] == sha(chip_image(A))
    assert not (fleet.work / "backups" / "lab3").exists()


def test_restore_refuses_another_hosts_backup(fleet, faulty_rollout):
    other = next((fleet.work / "backups" / "lab2").glob("*/*.bin"))
    before = fleet.chip(3)
    rc, out = fleet.playbook("restore.yml", "-l", "lab3", "-e", f"romlab_backup={other}",
                             "-e", "romlab_restore_bdf=0000:01:00.0")
    assert rc != 0 and "was taken from lab2" in out, out[-3000:]
    assert fleet.chip(3) == before


def test_restore_brings_host2_back(fleet, faulty_rollout):
    rc, out = fleet.playbook("restore.yml", "-l", "lab2")
    assert rc == 0, out[-4000:]
    assert fleet.chip(2) == chip_image(A)


def test_clean_rollout_then_nothing_to_do(fleet, faulty_rollout):
    b = (fleet.work / "B.rom").read_bytes()
    assert fleet.chip(2) == chip_image(A), "host 2 was not restored first"
    rc, out = fleet.playbook("rollout.yml")
    assert rc == 0, out[-4000:]
    assert task_results(out, FLASH_TASK) == {"lab1": "ok", "lab2": "changed", "lab3": "changed"}
    assert fleet.chips() == [chip_image(b)] * HOSTS
    rc, out = fleet.playbook("rollout.yml")
    assert rc == 0, out[-4000:]
    assert task_results(out, FLASH_TASK) == {f"lab{i}": "ok" for i in range(1, HOSTS + 1)}
    assert all(v["changed"] == 0 for v in recap(out).values()), recap(out)
    assert fleet.chips() == [chip_image(b)] * HOSTS
