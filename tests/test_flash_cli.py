"""`romlab flash` and `romlab restore` end to end, through the serprog emulator and file: images."""
from __future__ import annotations

import hashlib
import json
import os
import random
import struct
from pathlib import Path

import pytest
from conftest import corpus, run_romlab
from test_serprog_emu import emulator

PXE_E1000 = "/usr/lib/ipxe/qemu/pxe-e1000.rom"
PXE_E1000_LEN = 75264          # `ls -l`: 147 blocks of 512 bytes


# Every test gets a backup directory of its own (conftest's fixture), used or not.
pytestmark = pytest.mark.usefixtures("backups")


def romlab(*args, **kw):
    return run_romlab(*args, env=dict(os.environ), **kw)


def one_line_error(r, verb="flash"):
    err = r.stderr.decode()
    assert r.returncode != 0
    assert err.startswith(f"romlab {verb}: error: ") and err.count("\n") == 1, err
    return err


def synthetic_rom(size: int, seed: int = 0, vendor: int = 0x8086, device: int = 0x10D3) -> bytes:
    """A valid one-image option ROM of ``size`` bytes (PCIR at 0x40, checksum fixed)."""
    rom = bytearray(random.Random(seed).randbytes(size))
    rom[0:3] = b"\x55\xaa" + bytes([min(size // 512, 255)])
    rom[0x18:0x1A] = struct.pack("<H", 0x40)
    rom[0x40:0x58] = (b"PCIR" + struct.pack("<HHHHB", vendor, device, 0, 0x18, 0) + b"\x00\x00\x02"
                      + struct.pack("<HHBBH", size // 512, 1, 0, 0x80, 0))
    rom[-1] = 0
    rom[-1] = -sum(rom) & 0xFF
    return bytes(rom)


def test_flash_pxe_e1000_through_serprog(tmp_path, backups):
    rom = corpus(PXE_E1000).read_bytes()
    assert len(rom) == PXE_E1000_LEN
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * 524288)
    with emulator(chip) as emu:
        r = romlab("flash", PXE_E1000, "--programmer", emu.spec, "--json")
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        assert res["chip"] == "W25X40" and res["jedec"] == "ef3013" and res["rom_id"] == "8086:100e"
        assert res["schema"] == "romlab.flash/1" and res["input"] == str(PXE_E1000) and res["target"] == emu.spec
        data = chip.read_bytes()
        assert data[:PXE_E1000_LEN] == rom
        assert data[PXE_E1000_LEN:] == b"\xff" * (524288 - PXE_E1000_LEN)
        # The backup is the blank chip, with its record.
        record = json.loads(Path(res["backup"]).with_suffix(".json").read_text())
        assert record["sha256"] == hashlib.sha256(b"\xff" * 524288).hexdigest()
        assert record["jedec"] == "ef3013" and record["size"] == 524288
        assert record["writing"]["pci_ids"] == "8086:100e" and record["time"].endswith("Z")
        assert Path(res["backup"]).read_bytes() == b"\xff" * 524288
        # Nothing was erased on a blank chip; a second run changes nothing.
        assert sum(emu.stats(sessions=1)["erase_counts"]) == 0
        again = romlab("flash", PXE_E1000, "--programmer", emu.spec)
        assert again.returncode == 0 and b"no change needed" in again.stdout
        st = emu.stats(sessions=2)
        assert st["sessions"][1]["write_seconds"] is None
        out = tmp_path / "read.bin"
        rd = romlab("flash", "--programmer", emu.spec, "--read", str(out))
        assert rd.returncode == 0, rd.stderr
    assert out.read_bytes()[:PXE_E1000_LEN] == rom and out.read_bytes() == chip.read_bytes()
    ins = romlab("inspect", str(out))
    assert ins.returncode == 0 and b"0x100e" in ins.stdout


def test_dry_run_and_verify_only_touch_nothing(tmp_path, backups):
    chip = tmp_path / "chip.bin"
    before = random.Random(4).randbytes(131072)
    chip.write_bytes(before)
    with emulator(chip) as emu:
        r = romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        # Random contents need every 4 KiB sector erased: two 64 KiB block erases.
        assert [(b["start"], b["size"], b["opcode"]) for b in res["erase_blocks"]] == \
            [(0, 65536, "d8"), (65536, 65536, "d8")]
        # Pages already 0xFF after the erase need no programming: pxe-e1000.rom has one
        # such page (at 0x12500, found with a hex dump), so 75264 - 256 bytes.
        assert res["program_bytes"] == 75008
        v = romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--verify-only")
        assert v.returncode == 1 and b"flash differs" in v.stdout
        st = emu.stats(sessions=2)
    assert chip.read_bytes() == before
    assert st["erases"] == 0 and st["programs"] == 0
    assert not backups.exists() or not list(backups.iterdir())


def test_refusals_leave_the_flash_alone(tmp_path, backups):
    chip = tmp_path / "chip.bin"
    before = b"\xff" * 131072
    chip.write_bytes(before)
    big = tmp_path / "big.rom"
    big.write_bytes(synthetic_rom(196608))
    notrom = tmp_path / "not.rom"
    notrom.write_bytes(b"MZ" + b"\x00" * 1000)
    with emulator(chip) as emu:
        err = one_line_error(romlab("flash", str(big), "--programmer", emu.spec))
        assert "196608 bytes" in err and "131072" in err
        err = one_line_error(romlab("flash", str(notrom), "--programmer", emu.spec))
        assert "55 AA" in err
        st = emu.stats(sessions=1)
    assert chip.read_bytes() == before and st["erases"] == 0 and st["programs"] == 0
    with emulator(chip, "--absent") as emu:
        err = one_line_error(romlab("flash", PXE_E1000, "--programmer", emu.spec))
        assert "no chip answers" in err and "ff ff ff" in err
    # Nothing listening: take a port from a listener we close again.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = romlab("flash", PXE_E1000, "--programmer", f"serprog:tcp=127.0.0.1:{port}")
    assert r.returncode == 2 and "cannot connect to the serprog programmer" in one_line_error(r)
    r = romlab("flash", PXE_E1000, "--programmer", "serprog:dev=/dev/nonexistent-romlab")
    assert r.returncode == 2 and "for the serprog programmer: no such device" in one_line_error(r)
    assert chip.read_bytes() == before


def nvm_image(size: int) -> bytearray:
    """Intel NVM words 0x00-0x3F with the 0xBABA checksum in word 0x3F, then blank flash."""
    img = bytearray(b"\xff" * size)
    words = [0x5452, 0x0054, 0x5634] + [0] * 60          # MAC 52:54:00:54:34:56 and zeros
    words[0x0A] = 0x4000                                 # signature 01b in bits 15:14
    words.append((0xBABA - sum(words)) & 0xFFFF)
    img[0:128] = struct.pack("<64H", *words)
    return img


def test_layouts_protect_an_i210_nvm(tmp_path, backups):
    flash = tmp_path / "flash.bin"
    img = nvm_image(131072)
    flash.write_bytes(img)
    spec = f"file:{flash}"
    err = one_line_error(romlab("flash", PXE_E1000, "--programmer", spec))
    assert "Intel NVM" in err
    err = one_line_error(romlab("flash", PXE_E1000, "--programmer", spec, "--layout", "rom-at-0"))
    assert "Intel NVM" in err
    assert flash.read_bytes() == img
    r = romlab("flash", PXE_E1000, "--programmer", spec, "--layout", "i210")
    assert r.returncode == 0, r.stderr
    data = flash.read_bytes()
    rom = Path(PXE_E1000).read_bytes()
    assert data[:0x2000] == img[:0x2000]
    assert data[0x2000:0x2000 + len(rom)] == rom and data[0x2000 + len(rom):] == b"\xff" * (131072 - 0x2000 - len(rom))
    # A layout file: the ROM region 0x4000-0x1ffff, everything else kept.
    layout = tmp_path / "layout.txt"
    layout.write_text("00000000:00003fff nvm\n00004000:0001ffff rom\n")
    r = romlab("flash", PXE_E1000, "--programmer", spec, "--layout", str(layout))
    assert r.returncode == 0, r.stderr
    data = flash.read_bytes()
    assert data[:0x2000] == img[:0x2000] and data[0x4000:0x4000 + len(rom)] == rom
    # A region too small for the ROM is refused.
    layout.write_text("00000000:0000ffff rom\n")
    err = one_line_error(romlab("flash", PXE_E1000, "--programmer", spec, "--layout", str(layout)))
    assert "75264 bytes" in err and "65536" in err


def test_restore_writes_the_backup_back(tmp_path, backups):
    chip = tmp_path / "chip.bin"
    original = random.Random(6).randbytes(131072)
    chip.write_bytes(original)
    with emulator(chip) as emu:
        r = romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--json")
        assert r.returncode == 0, r.stderr
        backup = json.loads(r.stdout)["backup"]
        assert Path(backup).read_bytes() == original
        assert chip.read_bytes() != original
        r = romlab("restore", backup, "--programmer", emu.spec)
        assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == original
    # A backup of a 128 KiB W25X10 does not go onto a 512 KiB W25X40.
    other = tmp_path / "other.bin"
    other.write_bytes(b"\xff" * 524288)
    err = one_line_error(romlab("restore", backup, "--programmer", f"file:{other}"), "restore")
    assert "W25X10" in err and "W25X40" in err
    assert other.read_bytes() == b"\xff" * 524288
    # A damaged backup is refused.
    Path(backup).write_bytes(b"\x00" + original[1:])
    err = one_line_error(romlab("restore", backup, "--programmer", f"file:{other}"), "restore")
    assert "damaged" in err


def test_block_protected_chip_is_unlocked_and_relocked(tmp_path, backups):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * 524288)
    with emulator(chip, "--chip", "AT25DF041A") as emu:          # powers up globally protected
        r = romlab("flash", PXE_E1000, "--programmer", emu.spec, "--json")
        assert r.returncode == 0, r.stderr
        st = emu.stats(sessions=1)
    assert chip.read_bytes()[:PXE_E1000_LEN] == Path(PXE_E1000).read_bytes()
    assert st["status"] & 0x3C == 0x1C and st["ignored_protected"] == 0
