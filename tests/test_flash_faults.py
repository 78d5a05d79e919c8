"""Faults on the way to the chip: romlab must finish correctly or fail loudly, and never lose the backup."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_romlab
from test_flash_cli import PXE_E1000, synthetic_rom
from test_serprog_emu import emulator

SIZE = 131072


# Every test gets a backup directory of its own (conftest's fixture), used or not.
pytestmark = pytest.mark.usefixtures("backups")


def target_of(rom: bytes, size: int) -> bytes:
    return rom + b"\xff" * (size - len(rom))


def the_backup(backups: Path) -> bytes | None:
    bins = sorted(backups.glob("*.bin")) if backups.exists() else []
    assert len(bins) <= 1
    return bins[0].read_bytes() if bins else None


@pytest.mark.parametrize("fault,seed", [("flip:1e-4", 21), ("drop:1e-4", 22), ("lie:1e-4", 23)])
def test_low_fault_rates_still_finish(tmp_path, backups, fault, seed):
    chip = tmp_path / "chip.bin"
    original = random.Random(seed).randbytes(SIZE)
    chip.write_bytes(original)
    rom = Path(PXE_E1000).read_bytes()
    with emulator(chip, "--fault", fault, "--seed", str(seed)) as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0",
                       env=dict(os.environ))
        st = emu.stats(sessions=1)
    kind = fault.split(":")[0]
    assert st["faults"][kind] > 0, "the fault never fired; the test proves nothing"
    assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == target_of(rom, SIZE)
    assert the_backup(backups) == original


@pytest.mark.parametrize("fault,seed", [("flip:1e-2", 31), ("drop:1e-2", 32), ("lie:1e-2", 33)])
def test_high_fault_rates_fail_loudly(tmp_path, backups, fault, seed):
    chip = tmp_path / "chip.bin"
    original = random.Random(seed).randbytes(SIZE)
    chip.write_bytes(original)
    with emulator(chip, "--fault", fault, "--seed", str(seed)) as emu:
        r = run_romlab("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0",
                       env=dict(os.environ))
    err = r.stderr.decode()
    assert r.returncode in (2, 3) and err.startswith("romlab flash: error:") and err.count("\n") == 1, err
    backup = the_backup(backups)
    if r.returncode == 2:
        assert chip.read_bytes() == original            # nothing was changed
    else:
        assert backup == original and "partly written" in err and "romlab restore" in err


def test_disconnect_mid_write_then_resume(tmp_path, backups):
    chip = tmp_path / "chip.bin"
    original = random.Random(41).randbytes(SIZE)
    chip.write_bytes(original)
    rom = Path(PXE_E1000).read_bytes()
    # The backup read moves 2 x 128 KiB; hang up 40 KB into the write.
    with emulator(chip, "--fault", "disconnect:300000") as emu:
        args = ("flash", PXE_E1000, "--programmer", emu.spec, "--layout", "rom-at-0")
        r = run_romlab(*args, env=dict(os.environ))
        assert r.returncode == 3, r.stderr
        assert b"connection lost" in r.stderr and b"--resume" in r.stderr
        assert chip.read_bytes() != target_of(rom, SIZE)
        again = run_romlab(*args, env=dict(os.environ))
        assert again.returncode == 2 and b"pending" in again.stderr      # not without --resume
        r2 = run_romlab(*args, "--resume", env=dict(os.environ))
        assert r2.returncode == 0, r2.stderr
    assert chip.read_bytes() == target_of(rom, SIZE)
    assert the_backup(backups) == original
    assert not list(backups.glob("journal-*"))


def test_sigkill_mid_write_resumes_without_re_erasing(tmp_path, backups):
    size = 524288
    chip = tmp_path / "chip.bin"
    original = random.Random(51).randbytes(size)
    chip.write_bytes(original)
    rom = synthetic_rom(size, seed=52)
    (tmp_path / "big.rom").write_bytes(rom)
    with emulator(chip, "--timing", "datasheet") as emu:
        args = [sys.executable, "-m", "romlab", "flash", str(tmp_path / "big.rom"), "--programmer", emu.spec,
                "--layout", "rom-at-0"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        deadline = time.monotonic() + 60
        journal = None
        while time.monotonic() < deadline:
            found = list(backups.glob("journal-*.jsonl")) if backups.exists() else []
            if found and len(found[0].read_text().splitlines()) >= 3:      # header + 2 blocks
                journal = found[0]
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.005)
        assert journal is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines = journal.read_text().splitlines()
        done = [json.loads(x) for x in lines[1:] if x.strip()]
        killed = emu.stats(sessions=1)["erase_counts"]
        assert chip.read_bytes() != rom
        r = run_romlab(*args[3:], "--resume", "--json", env=dict(os.environ))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["blocks_done_before_resume"] == len(done)
        final = emu.stats(sessions=2)["erase_counts"]
    assert chip.read_bytes() == rom
    assert the_backup(backups) == original
    sector = 4096
    done_sectors = {s for d in done for s in range(d["done"] // sector, (d["done"] + d["size"]) // sector)}
    assert len(done_sectors) >= 32                       # at least two 64 KiB blocks were finished
    for i in done_sectors:
        assert killed[i] == 1 and final[i] == 1          # finished before the kill: never erased again
    assert all(c in (1, 2) for c in final)               # at most the block cut short is erased twice
