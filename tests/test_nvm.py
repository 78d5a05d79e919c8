"""`romlab nvm`: on QEMU's e1000 and e1000e (real device models), and on the BAR0 double.

QEMU part: the real CLI in a subprocess reaches QEMU's NIC through the register
relay (romlab.lab.regrelay); expected values come from QEMU's source
(e1000_eeprom_template, e1000e_eeprom_template, e1000x_core_prepare_eeprom: MAC
in words 0-2, device ID in words 0x0B/0x0D, checksum word 0x3F) and from the
-device mac= given.

Write part: QEMU's models cannot be written through the paths romlab uses (EEWR
on an I210, EEC bit-banging on an 82580), so those run in-process on a crafted
sysfs tree with the register double as BAR0, as in test_flash_pci.py.
"""
from __future__ import annotations

import json
import random
import struct

import pytest
from conftest import run_romlab
from test_flash_pci import BDF, card, one_line, run

from hw.parts import FAMILIES
from romtools.flash import chips
from romtools.flash.sim.chip import SimChip
from romtools.flash.sim.nic import NicBarDouble, SpiEeprom

FAM = {f.key: f for f in FAMILIES}
MAC = "52:54:00:12:34:56"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMLAB_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path / "sys"))


@pytest.mark.qemu
@pytest.mark.parametrize("model,device_id,ids,icw1", [
    ("e1000", "100e", "8086:100e", 0x6403),
    ("e1000e", "10d3", "8086:10d3", 0x026B),
])
def test_show_on_qemu(model, device_id, ids, icw1):
    r = run_romlab("nvm", "--qemu", f"{model},mac={MAC}", "show", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["schema"] == "romlab.nvm/1" and res["input"] == f"qemu:{model},mac={MAC}"
    assert res["id"] == ids and res["mac"] == MAC
    assert res["checksum"]["valid"] and res["checksum"]["sum"] == 0xBABA
    assert res["nvm_device"] == device_id and res["init_control_1"] == icw1
    assert res["boot_version"]["text"] == "1.2.28"               # word 0x32 = 0x121c in both templates
    assert res["words"][0:3] == [0x5452, 0x1200, 0x5634]
    text = run_romlab("nvm", "--qemu", f"{model},mac={MAC}", "show", timeout=60)
    assert text.returncode == 0 and f"mac: {MAC}".encode() in text.stdout
    assert b"sum to 0xbaba: valid" in text.stdout


@pytest.mark.qemu
def test_dry_run_and_refused_write_on_qemu_e1000e():
    # QEMU computes word 0x3f = 0x1ce3 for this MAC; clearing word 0x30 (0x0100) must add 0x0100 to it.
    r = run_romlab("nvm", "--qemu", f"e1000e,mac={MAC}", "set", "0x30=0x0000", "--dry-run", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changes"] == [{"word": 0x30, "old": 0x0100, "new": 0x0000},
                                               {"word": 0x3F, "old": 0x1CE3, "new": 0x1DE3}]
    r = run_romlab("nvm", "--qemu", f"e1000e,mac={MAC}", "set", "0x30=0x0000", timeout=60)
    assert r.returncode == 2 and b"ethtool -E" in r.stderr and r.stderr.count(b"\n") == 1


def i210_flash(checksum_ok=True):
    """A 64 KiB flash whose first bank holds NVM words (MAC 00:1b:21:aa:bb:cc, device 0x1533)."""
    words = [0xFFFF] * 2048
    words[0:3] = [0x1B00, 0xAA21, 0xCCBB]
    words[0x0D] = 0x1533
    words[0x30:0x34] = [0x0100, 0x4000, 0x1234, 0x4003]
    words[0x3F] = 0
    words[0x3F] = (0xBABA - sum(words[:0x3F])) & 0xFFFF
    if not checksum_ok:
        words[0x3F] ^= 0x0101
    flash = bytearray(b"\xff" * 65536)
    flash[0:4096] = struct.pack("<2048H", *words)
    return flash, words


def test_i210_set_writes_shadow_ram_and_commits(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x1533)
    flash, words = i210_flash()
    sim = SimChip(chips.by_name("W25X05"), flash)
    dbl = NicBarDouble(FAM["i210"], chip=sim)
    before = bytes(sim.mem)
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "show", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["mac"] == "00:1b:21:aa:bb:cc" and res["checksum"]["valid"]
    assert res["rom_capabilities"] == {"word": 0x4003, "programmed": True, "pxe_base_code": True, "undi": True,
                                       "uefi": False, "iscsi": False}
    # Dry run: the words that would change, nothing written.
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "set", "0x33=0x400b", "--dry-run")
    assert code == 0 and "word 0x33: 0x4003 -> 0x400b" in out and "word 0x3f:" in out
    assert dbl.stats["eewr_writes"] == 0 and bytes(sim.mem) == before
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "set", "0x33=0x400b", "--json")
    assert code == 0, err
    res = json.loads(out)
    new_checksum = (words[0x3F] - 8) & 0xFFFF                    # 0x4003 -> 0x400b adds 8 to the sum
    assert res["changes"] == [{"word": 0x33, "old": 0x4003, "new": 0x400B},
                              {"word": 0x3F, "old": words[0x3F], "new": new_checksum}]
    after = bytes(sim.mem)
    assert struct.unpack_from("<H", after, 0x66)[0] == 0x400B and struct.unpack_from("<H", after, 0x7E)[0] == new_checksum
    assert after[0x80:] == before[0x80:] and dbl.stats["flash_updates"] == 1
    backup = json.loads(open(res["backup"][:-4] + ".json").read())
    assert backup["kind"] == "nvm" and backup["words"] == 2048
    assert open(res["backup"], "rb").read() == before[:4096]


def test_fix_checksum_on_an_82580_eeprom(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x150E)
    ee = SpiEeprom(16384)
    ee.mem[:] = random.Random(2).randbytes(16384)
    dbl = NicBarDouble(FAM["82580"], eeprom=ee)
    words = list(struct.unpack_from("<64H", ee.mem, 0))
    assert sum(words) & 0xFFFF != 0xBABA                    # random words: the checksum is wrong
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "show")
    assert code == 1 and "NOT valid" in out
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "fix-checksum")
    assert code == 0, err
    fixed = list(struct.unpack_from("<64H", ee.mem, 0))
    assert sum(fixed) & 0xFFFF == 0xBABA and fixed[:63] == words[:63]
    assert ee.mem[128:] == bytes(random.Random(2).randbytes(16384))[128:]
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "show")
    assert code == 0 and "valid (0xbaba)" in out


def test_refusals(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x10D3)
    dbl = NicBarDouble(FAM["8257x"], nvm=[0x1111] * 64)
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "set", "0x30=1")
    assert code == 2 and "ethtool -E" in one_line(err, "nvm")
    assert not (tmp_path / "backups").exists()              # refused before any backup or write
    for bad, msg in (("0x3f=1", "checksum"), ("0x40=1", "outside"), ("0x30=0x10000", "16-bit"), ("x", "WORD=VALUE")):
        code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "set", bad)
        assert code == 2 and msg in one_line(err, "nvm"), bad
    code, out, err = run(monkeypatch, capsys, None, "nvm", "--pci", "09:00.0", "show")
    assert code == 2 and "no PCI device" in one_line(err, "nvm")
