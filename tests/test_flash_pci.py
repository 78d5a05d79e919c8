"""`romlab flash --pci` and `romlab restore --pci` on a crafted sysfs tree with the BAR0 double.

No Intel NIC is plugged into this machine, so the device comes from a crafted
sysfs tree (ROMLAB_SYSFS: vendor, device, config with the command register,
resource0, a driver link) and its BAR0 from the register double
(romtools.flash.sim.nic) with the chip model behind FLA; the CLI runs in-process
with PciDevice.map_resource (sysfs resource0) swapped for the double. The refusals that never reach
the registers (wrong IDs, other vendors, missing device, decoding off, not root)
run the real CLI in a subprocess on the crafted tree.
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys

import pytest
from conftest import REPO, corpus
from test_flash_cli import nvm_image, synthetic_rom

from hw.parts import FAMILIES
from hw.pci import PciDevice
from romlab import cli
from romtools.flash import chips
from romtools.flash.sim.chip import SimChip
from romtools.flash.sim.nic import NicBarDouble

FAM = {f.key: f for f in FAMILIES}
PXE_E1000E = "/usr/lib/ipxe/qemu/pxe-e1000e.rom"     # PCIR 8086:10d3 (hex dump at 0x1c)
PXE_E1000 = "/usr/lib/ipxe/qemu/pxe-e1000.rom"       # PCIR 8086:100e
BDF = "0000:03:00.0"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMLAB_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path / "sys"))


def card(tmp_path, vendor, device, command=0x0006, driver=None, bdf=BDF, bar_size=131072):
    """A PCI function in the crafted sysfs tree."""
    d = tmp_path / "sys" / "bus" / "pci" / "devices" / bdf
    d.mkdir(parents=True)
    for name, value in (("vendor", vendor), ("device", device), ("subsystem_vendor", vendor),
                        ("subsystem_device", 0), ("class", 0x020000)):
        (d / name).write_text(f"0x{value:04x}\n")
    (d / "enable").write_text("1\n" if command & 2 else "0\n")
    config = bytearray(64)
    struct.pack_into("<HHH", config, 0, vendor, device, command)
    (d / "config").write_bytes(bytes(config))
    (d / "resource0").write_bytes(bytes(bar_size))
    if driver:
        drv = tmp_path / "sys" / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True)
        (drv / "bind").write_text("")
        (drv / "unbind").write_text("")
        (d / "driver").symlink_to(drv)
    return d


def double(family, chip, contents, **kw):
    part = chips.by_name(chip)
    sim = SimChip(part, bytearray(contents))
    return sim, NicBarDouble(FAM[family], chip=sim, **kw)


def run(monkeypatch, capsys, dbl, *argv):
    """The CLI in this process, with BAR0 of the crafted device being the double."""
    def map_resource(self, index=0):
        if dbl is None or index != 0:
            raise AssertionError("romlab mapped BAR0 although it should have refused first")
        return dbl
    monkeypatch.setattr(PciDevice, "map_resource", map_resource)
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err, verb="flash"):
    assert err.startswith(f"romlab {verb}: error: ") and err.count("\n") == 1, err
    return err


def test_82574l_in_system_rom_at_0(tmp_path, monkeypatch, capsys):
    rom = corpus(PXE_E1000E).read_bytes()
    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    sim, dbl = double("8257x", "W25X10", b"\xff" * 131072)
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", "03:00.0", PXE_E1000E)
    assert code == 0, err
    # The bound driver is worth a warning, not a refusal.
    assert err.count("\n") == 1 and "warning" in err and "e1000e driver" in err
    assert "card: 0000:03:00.0 8086:10d3" in out and "verified" in out
    assert bytes(sim.mem[:75264]) == rom and bytes(sim.mem[75264:]) == b"\xff" * (131072 - 75264)
    assert dbl.eecd & 0x30 == 0x10            # flash writes disabled again
    assert dbl.stats["illegal_fwe"] == 0 and dbl.stats["blocked_writes"] == 0
    backups = sorted((tmp_path / "backups").glob("*.json"))
    record = json.loads(backups[0].read_text())
    assert record["pci"] == BDF and record["card_pci_ids"] == "8086:10d3" and record["jedec"] == "ef3011"
    assert backups[0].with_suffix(".bin").read_bytes() == b"\xff" * 131072


def test_wrong_ids_refused_before_the_card_is_touched(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x10D3)
    code, out, err = run(monkeypatch, capsys, None, "flash", "--pci", BDF, PXE_E1000)
    assert code == 2
    assert "8086:100e" in one_line(err) and "8086:10d3" in err and "--force-ids" in err
    # --force-ids lets it through (a dry run here: nothing is written).
    sim, dbl = double("8257x", "W25X05", random.Random(3).randbytes(65536))
    before = bytes(sim.mem)
    small = tmp_path / "e1000.rom"
    small.write_bytes(synthetic_rom(16384, vendor=0x8086, device=0x100E))
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, small, "--force-ids", "--dry-run",
                         "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["rom_id"] == "8086:100e" and res["card_id"] == "8086:10d3" and res["dry_run"]
    assert res["target"] == f"pci:{BDF}" and res["bdf"] == BDF
    # Random contents: every sector needs an erase; on a 64 KiB part the 64 KiB block is the whole
    # chip, so the writer plans sixteen 4 KiB sector erases.
    assert [(b["start"], b["opcode"]) for b in res["erase_blocks"]] == [(i * 4096, "20") for i in range(16)]
    assert bytes(sim.mem) == before


def test_i210_rom_goes_after_the_nvm(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x1533)
    flash = nvm_image(65536)
    sim, dbl = double("i210", "W25X05", flash)
    rom = synthetic_rom(16384, seed=4, vendor=0x8086, device=0x1533)
    romfile = tmp_path / "i210.rom"
    romfile.write_bytes(rom)
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, romfile, "--layout", "rom-at-0")
    assert code == 2 and "never writes there" in one_line(err) and "0x2000" in err
    assert bytes(sim.mem) == bytes(flash)
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, romfile, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["family"] == "i210" and res["layout"] == {"name": "i210", "start": 0x2000, "end": 65536}
    data = bytes(sim.mem)
    assert data[:0x2000] == bytes(flash[:0x2000])
    assert data[0x2000:0x6000] == rom and data[0x6000:] == b"\xff" * (65536 - 0x6000)
    assert sim.erase_counts[0] == 0 and sim.erase_counts[1] == 0      # the two NVM sectors
    assert dbl.stats["illegal_fwe"] == 0 and dbl.eecd & 0x30 == 0     # no FWE on the I210


def test_i210_secure_mode(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x1533)
    sim, dbl = double("i210", "W25X05", b"\xff" * 65536, locked=True)
    romfile = tmp_path / "i210.rom"
    romfile.write_bytes(synthetic_rom(8192, vendor=0x8086, device=0x1533))
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, romfile)
    assert code == 2 and "secure mode (FLA.LOCKED)" in one_line(err)
    assert bytes(sim.mem) == b"\xff" * 65536


def test_read_then_restore_in_system(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x10D3)
    original = random.Random(8).randbytes(65536)
    sim, dbl = double("8257x", "W25X05", original)
    out_file = tmp_path / "read.bin"
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, "--read", out_file)
    assert code == 0 and out_file.read_bytes() == original
    romfile = tmp_path / "new.rom"
    romfile.write_bytes(synthetic_rom(16384, seed=2))
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, romfile, "--layout", "rom-at-0",
                         "--json")
    assert code == 0, err
    backup = json.loads(out)["backup"]
    assert bytes(sim.mem)[:16384] == romfile.read_bytes()
    code, out, err = run(monkeypatch, capsys, dbl, "restore", backup, "--pci", BDF)
    assert code == 0, err
    assert bytes(sim.mem) == original and dbl.eecd & 0x30 == 0x10


@pytest.mark.parametrize("vendor,device,words", [
    (0x14E4, 0x1657, ["Broadcom", "ch341a or serprog"]),
    (0x10EC, 0x8168, ["Realtek", "ch341a or serprog"]),
    (0x15B3, 0x1003, ["Mellanox", "mstflint"]),
    (0x8086, 0x150E, ["82580", "romlab nvm", "ch341a"]),
    (0x8086, 0x1539, ["I211", "no external flash"]),
    (0x8086, 0x1572, ["8086:1572", "ch341a or serprog"]),
])
def test_nics_romlab_cannot_drive_are_pointed_elsewhere(tmp_path, monkeypatch, capsys, vendor, device, words):
    card(tmp_path, vendor, device)
    romfile = tmp_path / "x.rom"
    romfile.write_bytes(synthetic_rom(8192, vendor=vendor, device=device))
    code, out, err = run(monkeypatch, capsys, None, "flash", "--pci", BDF, romfile)
    assert code == 2
    for w in words:
        assert w in one_line(err), (w, err)


def cli_subprocess(tmp_path, *args, drop_root=False):
    env = dict(os.environ, ROMLAB_SYSFS=str(tmp_path / "sys"), ROMLAB_BACKUP_DIR=str(tmp_path / "backups"))
    cmd = [sys.executable, "-m", "romlab", *map(str, args)]
    if drop_root:
        # Root without the capabilities that bypass file permissions: what a normal user meets.
        cmd = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--",
               "-c", " ".join(f"'{c}'" for c in cmd)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


def test_missing_device_bad_address_and_decoding_off(tmp_path):
    card(tmp_path, 0x8086, 0x10D3, command=0x0000)
    r = cli_subprocess(tmp_path, "flash", "--pci", "07:00.0", PXE_E1000E)
    assert r.returncode == 2 and "no PCI device 0000:07:00.0" in one_line(r.stderr)
    r = cli_subprocess(tmp_path, "flash", "--pci", "3:0", PXE_E1000E)
    assert r.returncode == 2 and "not a PCI address" in one_line(r.stderr)
    r = cli_subprocess(tmp_path, "flash", "--pci", BDF, PXE_E1000E)
    assert r.returncode == 2 and "memory decoding turned off" in one_line(r.stderr)


@pytest.mark.root
def test_not_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities with capsh")
    d = card(tmp_path, 0x8086, 0x10D3)
    os.chmod(d / "resource0", 0o000)
    r = cli_subprocess(tmp_path, "flash", "--pci", BDF, PXE_E1000E, drop_root=True)
    assert r.returncode == 2
    assert "permission denied opening" in one_line(r.stderr) and "needs root" in r.stderr


def test_a_dry_run_never_unbinds_the_driver(tmp_path, monkeypatch, capsys):
    """The driver holds BAR 0 (the kernel refuses the mapping): --dry-run --unbind reports the change as
    unknown instead of taking the NIC from its driver; without the driver's hold it reads as usual."""
    from hw.mmio import BarBusy

    d = card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    unbind = tmp_path / "sys" / "bus" / "pci" / "drivers" / "e1000e" / "unbind"
    sim, dbl = double("8257x", "W25X10", b"\xff" * 131072)

    def held(self, index=0):
        raise BarBusy("resource0 busy")
    monkeypatch.setattr(PciDevice, "map_resource", held)
    code = cli.main(["flash", "--pci", BDF, "--unbind", "--dry-run", "--json", PXE_E1000E])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["changes"] == "unknown" and doc["dry_run"] is True and "unknown without unbinding" in doc["reason"]
    assert "e1000e" in doc["reason"] and "erase_blocks" not in doc
    assert unbind.read_text() == "" and (d / "driver").is_symlink()          # nothing was unbound
    # The same for a restore's dry run.
    backup = tmp_path / "b.bin"
    backup.write_bytes(b"\xff" * 131072)
    (tmp_path / "b.json").write_text(json.dumps({"chip": "W25X10", "jedec": "ef3011", "size": 131072,
                                                 "sha256": __import__("hashlib").sha256(b"\xff" * 131072).hexdigest()}))
    code = cli.main(["restore", str(backup), "--pci", BDF, "--unbind", "--dry-run", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["changes"] == "unknown" and unbind.read_text() == ""
    # Without --unbind a dry run that cannot map the BAR is the usual one-line refusal, still unbinding nothing.
    monkeypatch.setattr(PciDevice, "map_resource", held)
    code = cli.main(["flash", "--pci", BDF, "--dry-run", PXE_E1000E])
    err = capsys.readouterr().err
    assert code != 0 and "--unbind" in one_line(err) and unbind.read_text() == ""
    # A BAR the kernel maps with the driver bound: the dry run reads the chip and plans, unbinding nothing.
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, "--unbind", "--dry-run", "--json",
                         PXE_E1000E)
    assert code == 0, err
    doc = json.loads(out)
    assert "changes" not in doc and doc["program_bytes"] > 0 and unbind.read_text() == ""
    assert bytes(sim.mem) == b"\xff" * 131072
