"""A flash journal belongs to the chip, and every record romlab reads back is checked first.

The chip is a serprog-emu process over an image file; killing its connection mid-write and
bringing the programmer back on another TCP port is what a USB-serial programmer unplugged and
plugged in again looks like.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_romlab
from test_flash_cli import PXE_E1000
from test_serprog_emu import emulator

SIZE = 131072


# Every test gets a backup directory of its own (conftest's fixture), used or not.
pytestmark = pytest.mark.usefixtures("backups")


def _env():
    return dict(os.environ)


def _one_line(r) -> str:
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "internal error" not in err and "Traceback" not in err, err
    return err


def _interrupted(tmp_path, backups, seed=61):
    """A chip whose write of pxe-e1000.rom was cut by a lost connection; (chip file, original, port)."""
    chip = tmp_path / "chip.bin"
    original = random.Random(seed).randbytes(SIZE)
    chip.write_bytes(original)
    with emulator(chip, "--fault", "disconnect:300000") as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
        assert r.returncode == 3 and b"--resume" in r.stderr, r.stderr
        port = emu.port
    assert len(list(backups.glob("journal-*.jsonl"))) == 1
    return chip, original, port


def test_class4_resume_on_another_port_finishes_and_restore_gives_the_original_back(tmp_path, backups):
    chip, original, first_port = _interrupted(tmp_path, backups)
    rom = Path(PXE_E1000).read_bytes()
    with emulator(chip) as emu:
        assert emu.port != first_port
        plain = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
        assert plain.returncode == 2 and "--resume" in _one_line(plain)
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--resume", env=_env())
        assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == rom + b"\xff" * (SIZE - len(rom))
    assert not list(backups.glob("journal-*"))
    (backup,) = [p for p in backups.glob("*.bin")]
    with emulator(chip) as emu:
        r = run_romlab("restore", backup, "--programmer", emu.spec, env=_env())
        assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == original


def test_class4_a_moot_resume_removes_the_journal(tmp_path, backups):
    chip, _, _ = _interrupted(tmp_path, backups, seed=62)
    rom = Path(PXE_E1000).read_bytes()
    chip.write_bytes(rom + b"\xff" * (SIZE - len(rom)))      # the write was finished some other way
    with emulator(chip) as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--resume", env=_env())
        assert r.returncode == 0 and b"nothing was left to write" in r.stdout, r.stderr
        assert not list(backups.glob("journal-*"))
        again = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
        assert again.returncode == 0 and b"no change needed" in again.stdout, again.stderr


def test_class4_a_journal_of_another_chip_does_not_block(tmp_path, backups):
    _interrupted(tmp_path, backups, seed=63)
    other = tmp_path / "other.bin"
    other.write_bytes(random.Random(64).randbytes(SIZE))       # same part, different contents
    with emulator(other) as emu:
        resume = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--resume",
                            env=_env())
        assert resume.returncode == 2 and "no interrupted write matches" in _one_line(resume)
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
        assert r.returncode == 0, r.stderr
    assert len(list(backups.glob("journal-*.jsonl"))) == 1     # the first chip's write is still pending


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff", b"[1, 2, 3]\n", b'{"chip": 1}\n',
                                     b'{"chip": "W25X10", "jedec": "ef3011", "size": 131072}\n'],
                         ids=["empty", "garbage", "list", "wrong-type", "missing-keys"])
def test_class5_damaged_journals_are_one_line_errors(tmp_path, backups, content):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * SIZE)
    backups.mkdir()
    (backups / "journal-20260101T000000Z-ef3011.jsonl").write_bytes(content)
    with emulator(chip) as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", "--resume", env=_env())
    assert r.returncode == 2 and "could not be read" in _one_line(r)
    assert chip.read_bytes() == b"\xff" * SIZE


@pytest.mark.parametrize("record", [[1, 2], {"sha256": 5}, {"chip": "W25X10", "jedec": "ef3011"}],
                         ids=["list", "wrong-type", "missing-keys"])
def test_class5_restore_with_a_record_of_the_wrong_shape(tmp_path, record):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * SIZE)
    (tmp_path / "b.bin").write_bytes(b"\x00" * SIZE)
    (tmp_path / "b.json").write_text(json.dumps(record))
    r = run_romlab("restore", tmp_path / "b.bin", "--programmer", f"file:{chip}")
    assert r.returncode == 2 and "not a romlab record" in _one_line(r)
    assert chip.read_bytes() == b"\xff" * SIZE


def test_class7_restore_without_its_record_names_the_missing_json(tmp_path):
    (tmp_path / "X.rom").write_bytes(b"\x00" * SIZE)
    r = run_romlab("restore", tmp_path / "X.rom", "--programmer", f"file:{tmp_path / 'X.rom'}")
    assert r.returncode == 2 and "X.json is missing" in _one_line(r)


def test_class5_layout_file_that_is_not_text(tmp_path):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * SIZE)
    layout = tmp_path / "layout.txt"
    layout.write_bytes(b"\xff\xfe\x00\x01 rom\n")
    r = run_romlab("flash", PXE_E1000, "--programmer", f"file:{chip}", "--layout", layout)
    assert r.returncode == 2 and "not UTF-8" in _one_line(r)
    assert chip.read_bytes() == b"\xff" * SIZE


@pytest.mark.parametrize("where", ["dir", "missing-dir"])
def test_class5_read_into_a_directory_or_a_missing_one(tmp_path, where):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * SIZE)
    out = tmp_path if where == "dir" else tmp_path / "nowhere" / "r.bin"
    r = run_romlab("flash", "--programmer", f"file:{chip}", "--read", out)
    assert r.returncode == 2 and str(out) in _one_line(r)


@pytest.mark.parametrize("spec, said", [
    ("serprog:dev=/dev/nonexistent-romlab", "no such device"),
    ("serprog:dev=/dev/null", "not a serial port"),
    ("serprog:tcp=127.0.0.1:1", "nothing listens there"),
    ("serprog:tcp=localhost:99999", "port from 1 to 65535"),
])
def test_class7_a_bad_port_is_explained_without_pyserial_internals(tmp_path, spec, said):
    r = run_romlab("flash", "--programmer", spec, "--read", tmp_path / "r.bin")
    err = _one_line(r)
    assert r.returncode == 2 and said in err and "socket://" not in err and "Errno" not in err


BIG = 524288


def _big_chip_and_rom(tmp_path, seed: int):
    """A 512 KiB chip of random bytes and a ROM that fills it: (chip file, its bytes, ROM file)."""
    from test_flash_cli import synthetic_rom

    chip = tmp_path / "chip.bin"
    original = random.Random(seed).randbytes(BIG)
    chip.write_bytes(original)
    rom = tmp_path / "big.rom"
    rom.write_bytes(synthetic_rom(BIG, seed=seed + 1))
    return chip, original, rom


def _done_blocks(backups) -> int:
    (j,) = backups.glob("journal-*.jsonl")
    return len(j.read_text().splitlines()) - 1


def test_class4_a_blank_chip_or_a_twin_does_not_take_another_chips_journal(tmp_path, backups):
    """After a block was logged done, only the chip that holds it matches the journal."""
    chip, original, rom = _big_chip_and_rom(tmp_path, 71)
    # The backup read moves 2 x 512 KiB; hang up after a few 64 KiB blocks of the write.
    with emulator(chip, "--fault", "disconnect:1400000") as emu:
        r = run_romlab("flash", rom, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
        assert r.returncode == 3, r.stderr
    assert _done_blocks(backups) >= 1
    for name, contents in (("blank", b"\xff" * BIG), ("twin", original)):
        other = tmp_path / f"{name}.bin"
        other.write_bytes(contents)
        with emulator(other) as emu:
            r = run_romlab("flash", rom, "--programmer", emu.spec, "--layout", "rom-at-0", "--resume", env=_env())
            assert r.returncode == 2 and "no interrupted write matches" in _one_line(r), name
    assert len(list(backups.glob("journal-*.jsonl"))) == 1     # chip A's journal is still there


def test_class4_partly_programmed_bytes_still_match(tmp_path, backups):
    chip, original, _ = _interrupted(tmp_path, backups, seed=73)
    data = bytearray(chip.read_bytes())
    rom = Path(PXE_E1000).read_bytes()
    target = rom + b"\xff" * (SIZE - len(rom))
    # The sector the write stopped in holds neither the backup nor the image (erased, at least in part).
    # Make one of its bytes a page program cut short: the image's byte with one more 1 bit still set.
    at = next(i for i in range(SIZE) if data[i] not in (target[i], original[i]) and target[i] != 0xFF)
    extra = next(bit for bit in (1, 2, 4, 8, 16, 32, 64, 128) if not target[at] & bit)
    data[at] = target[at] | extra
    chip.write_bytes(bytes(data))
    with emulator(chip) as emu:
        plain = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
        assert plain.returncode == 2 and "pending" in _one_line(plain)


def test_class4_a_journal_whose_backup_is_gone_blocks_a_plain_write(tmp_path, backups):
    chip, _, _ = _interrupted(tmp_path, backups, seed=74)
    before = chip.read_bytes()
    for b in backups.glob("*.bin"):
        b.unlink()
    with emulator(chip) as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=_env())
    assert r.returncode == 2 and "could not be checked" in _one_line(r)
    assert chip.read_bytes() == before and not list(backups.glob("*.bin"))


def test_class4_a_relative_backup_dir_still_finds_the_journal(tmp_path, backups, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ, ROMLAB_BACKUP_DIR="backups")
    chip = tmp_path / "chip.bin"
    chip.write_bytes(random.Random(75).randbytes(SIZE))
    with emulator(chip, "--fault", "disconnect:300000") as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0", env=env)
        assert r.returncode == 3
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    env["ROMLAB_BACKUP_DIR"] = "../backups"
    with emulator(chip) as emu:
        r = subprocess.run([sys.executable, "-m", "romlab", "flash", PXE_E1000, "--programmer", emu.spec,
                            "--layout", "rom-at-0", "--resume"], cwd=sub, env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("which", ["record", "journal", "layout"])
def test_class1_a_fifo_where_a_record_belongs_is_refused(tmp_path, backups, which):
    chip = tmp_path / "chip.bin"
    chip.write_bytes(b"\xff" * SIZE)
    backups.mkdir()
    if which == "record":
        (tmp_path / "b.bin").write_bytes(b"\xff" * SIZE)
        os.mkfifo(tmp_path / "b.json")
        argv = ["restore", tmp_path / "b.bin", "--programmer", f"file:{chip}"]
    elif which == "journal":
        os.mkfifo(backups / "journal-20260101T000000Z-ef3011.jsonl")
        argv = ["flash", PXE_E1000, "--programmer", f"file:{chip}", "--layout", "rom-at-0", "--resume"]
    else:
        os.mkfifo(tmp_path / "layout")
        argv = ["flash", PXE_E1000, "--programmer", f"file:{chip}", "--layout", tmp_path / "layout", "--dry-run"]
    r = run_romlab(*argv, timeout=60)
    assert r.returncode == 2 and "not a regular file" in _one_line(r)


def test_class4_programmer_killed_mid_write_resumes_on_another_port(tmp_path, backups):
    import signal
    import subprocess
    import time

    chip, original, rom = _big_chip_and_rom(tmp_path, 81)
    argv = [sys.executable, "-m", "romlab", "flash", str(rom), "--layout", "rom-at-0"]
    with emulator(chip, "--timing", "datasheet") as emu:
        first_port = emu.port
        proc = subprocess.Popen([*argv, "--programmer", emu.spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:      # wait for two finished blocks in the journal
            found = list(backups.glob("journal-*.jsonl")) if backups.exists() else []
            if found and len(found[0].read_text().splitlines()) >= 3:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.005)
        emu.proc.send_signal(signal.SIGKILL)    # the programmer dies mid-write
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 3 and b"--resume" in err, err
    with emulator(chip) as emu:
        assert emu.port != first_port
        r = run_romlab(*argv[3:], "--programmer", emu.spec, "--resume", env=_env())
        assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == rom.read_bytes()
    assert not list(backups.glob("journal-*"))
    (backup,) = backups.glob("*.bin")
    with emulator(chip) as emu:
        assert run_romlab("restore", backup, "--programmer", emu.spec, env=_env()).returncode == 0
    assert chip.read_bytes() == original
