"""The read verbs (inspect, lint, disasm, scan) over several files and standard input.

A batch must give each file exactly the result a call for that file alone gives, so the
expected documents come from one call per file; the anchors that do not come from romlab
are the Debian ROMs' bytes: pxe-ne2k_pci.rom's PCIR at 0x1c names 0000:0000 (an error for
lint), the file sizes, and the 55 AA signature a crafted image carries.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import IPXE_QEMU, corpus, run_romlab

PXE = IPXE_QEMU / "pxe-e1000.rom"
NE2K = IPXE_QEMU / "pxe-ne2k_pci.rom"   # PCIR at 0x1c: vendor 0000, device 0000 (hex dump)
QEMU_ROMS = ["efi-e1000", "efi-e1000e", "efi-eepro100", "efi-ne2k_pci", "efi-pcnet", "efi-rtl8139", "efi-virtio",
             "efi-vmxnet3", "pxe-e1000", "pxe-e1000e", "pxe-eepro100", "pxe-ne2k_pci", "pxe-pcnet", "pxe-rtl8139",
             "pxe-virtio", "pxe-vmxnet3"]


def _err(r) -> str:
    return r.stderr.decode().strip()


def _qemu_roms():
    return [corpus(IPXE_QEMU / f"{name}.rom") for name in QEMU_ROMS]


def test_lint_checks_all_sixteen_qemu_roms_in_one_call():
    roms = _qemu_roms()
    r = run_romlab("lint", *roms)
    summaries = [line for line in r.stdout.decode().splitlines() if " error(s), " in line]
    assert [line.split(": ")[0] for line in summaries] == [str(p) for p in roms]
    # Every finding line names its file; ne2k's 0000:0000 PCIR is an error, so the worst status is 1.
    assert all(line.startswith(tuple(f"{p}:" for p in roms)) for line in r.stdout.decode().splitlines())
    assert f"{NE2K}:0x00020: error: [pcir-ids-zero]" in r.stdout.decode()
    assert r.returncode == 1 and r.stderr == b""


def test_batch_json_holds_each_files_own_document():
    roms = _qemu_roms()
    r = run_romlab("lint", "--json", *roms)
    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.batch/1" and doc["verb"] == "lint"
    alone = [run_romlab("lint", "--json", p) for p in roms]
    assert doc["results"] == [json.loads(a.stdout) for a in alone]
    assert doc["exit"] == r.returncode == max(a.returncode for a in alone) == 1


def test_one_input_prints_the_verbs_own_document():
    one = json.loads(run_romlab("inspect", "--json", PXE).stdout)
    assert one["schema"] == "romlab.inspect/4" and one["input"] == str(PXE)


def test_unreadable_file_gets_one_line_and_the_others_still_run(tmp_path):
    missing = tmp_path / "missing.rom"
    r = run_romlab("lint", corpus(PXE), missing, corpus(NE2K))
    assert _err(r) == f"romlab lint: error: {missing}: no such file"
    out = r.stdout.decode()
    assert f"{PXE}: 0 error(s), 0 warning(s), 0 info" in out and f"{NE2K}: 1 error(s)" in out
    assert r.returncode == 2

    r = run_romlab("lint", "--json", corpus(PXE), missing)
    doc = json.loads(r.stdout)
    assert doc["exit"] == 2 == r.returncode
    assert doc["results"][1] == {"input": str(missing), "exit": 2, "error": f"{missing}: no such file"}


def test_not_a_rom_among_roms(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello, world\n")
    r = run_romlab("inspect", corpus(PXE), text)
    assert _err(r) == (f"romlab inspect: error: {text}: not an option ROM: no 55 AA signature at offset 0 "
                       "(found 68 65); use `romlab scan` to look for ROMs inside a larger image")
    assert r.stdout.decode().startswith(f"{PXE}: {PXE.stat().st_size} bytes, 1 image(s)")
    assert r.returncode == 2


def test_worst_status_orders_0_1_2(tmp_path):
    cut = tmp_path / "cut.rom"
    cut.write_bytes(corpus(PXE).read_bytes()[:0x8000])   # the PCIR says 75264 bytes: truncated, status 1
    assert run_romlab("inspect", PXE, PXE).returncode == 0
    assert run_romlab("inspect", PXE, cut).returncode == 1
    assert run_romlab("inspect", cut, tmp_path / "none.rom", PXE).returncode == 2


def test_stdin_is_read_like_a_file():
    data = corpus(PXE).read_bytes()
    r = run_romlab("inspect", "-", input=data)
    assert r.returncode == 0, _err(r)
    assert r.stdout.decode().splitlines()[0] == f"<stdin>: {len(data)} bytes, 1 image(s)"
    from_stdin = json.loads(run_romlab("lint", "--json", "-", input=corpus(NE2K).read_bytes()).stdout)
    from_file = json.loads(run_romlab("lint", "--json", NE2K).stdout)
    assert from_stdin["findings"] == from_file["findings"] and from_stdin["findings"]


def test_stdin_among_files():
    r = run_romlab("lint", PXE, "-", input=corpus(NE2K).read_bytes())
    lines = r.stdout.decode().splitlines()
    assert lines[0] == f"{PXE}: 0 error(s), 0 warning(s), 0 info"
    assert lines[1].startswith("<stdin>:0x00020: error: [pcir-ids-zero]")
    assert r.returncode == 1


def test_stdin_given_twice_is_refused():
    r = run_romlab("lint", "-", PXE, "-", input=corpus(PXE).read_bytes())
    assert _err(r) == "romlab lint: error: - (standard input) is given more than once; it can be read only once"
    assert r.returncode == 2 and r.stdout == b""


def test_stdin_is_bounded_like_a_file():
    big = b"\x55\xaa" + bytes((16 << 20) - 1)     # one byte more than a 16 MiB ROM BAR
    r = run_romlab("inspect", "-", input=big)
    assert _err(r) == ("romlab inspect: error: <stdin> is larger than 16 MiB, the largest ROM a PCI device can "
                       "hold (a 16 MiB ROM BAR); it is not a ROM file romlab will read")
    assert r.returncode == 2


def test_stdin_on_a_terminal_is_refused_not_waited_for():
    main, tty = os.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "romlab", "lint", "-"], stdin=tty, capture_output=True,
                           timeout=60, check=False)
    finally:
        os.close(main)
        os.close(tty)
    assert r.stderr.decode().strip() == (
        "romlab lint: error: - reads a ROM from standard input, which is a terminal here; redirect or pipe a "
        "file into it (`romlab lint - < rom.rom`), or name the file")
    assert r.returncode == 2


def test_empty_stdin():
    r = run_romlab("disasm", "-", input=b"")
    assert _err(r) == "romlab disasm: error: <stdin>: the input is empty, not an option ROM"
    assert r.returncode == 2


def test_disasm_blocks_per_file():
    r = run_romlab("disasm", "--count", "2", PXE, NE2K)
    assert r.returncode == 0, _err(r)
    blocks = r.stdout.decode().split("\n\n")
    assert [b.splitlines()[0].split(":")[0] for b in blocks] == [str(PXE), str(NE2K)]
    # Both start with iPXE's `jmp near` at offset 3 (e9 rel16).
    assert all(b.splitlines()[1].lstrip().startswith("00003:  e9 ") for b in blocks)


def _embedded(tmp_path, name: str, at: int) -> str:
    rom = corpus(PXE).read_bytes()
    p = tmp_path / name
    p.write_bytes(bytes(at) + rom + bytes(0x800))
    return str(p)


def test_scan_several_files_prefixes_rows(tmp_path):
    a, b = _embedded(tmp_path, "a.bin", 0x1000), _embedded(tmp_path, "b.bin", 0x2000)
    empty = tmp_path / "zeros.bin"
    empty.write_bytes(bytes(4096))
    r = run_romlab("scan", a, b, empty)
    rows = r.stdout.decode().splitlines()
    assert [row.split("  ")[0] for row in rows] == [f"{a}: 0x00001000", f"{b}: 0x00002000"]
    assert _err(r) == f"romlab scan: {empty}: no option ROM found in 4096 bytes"
    assert r.returncode == 1
    assert run_romlab("scan", a, b).returncode == 0


def test_scan_reads_stdin(tmp_path):
    a = _embedded(tmp_path, "a.bin", 0x3000)
    with open(a, "rb") as f:
        r = run_romlab("scan", "--json", "-", input=f.read())
    doc = json.loads(r.stdout)
    assert [rom["offset"] for rom in doc["roms"]] == [0x3000] and r.returncode == 0


def test_one_input_options_refuse_several(tmp_path):
    a, b = _embedded(tmp_path, "a.bin", 0x1000), _embedded(tmp_path, "b.bin", 0x2000)
    out = tmp_path / "roms"
    r = run_romlab("scan", "--extract", out, a, b)
    assert _err(r) == "romlab scan: error: --extract works on one input and 2 are given; run `romlab scan` once per file"
    assert r.returncode == 2 and not out.exists()

    r = run_romlab("lint", "--rules", PXE)
    assert _err(r) == "romlab lint: error: --rules lists the rules and reads no ROM; give it no FILE or --pci"
    assert r.returncode == 2 and r.stdout == b""

    r = run_romlab("inspect", "--pci", "03:00.0", PXE)
    assert _err(r) == "romlab inspect: error: give either FILEs or --pci BDF, not both"
    assert r.returncode == 2


def test_no_input():
    r = run_romlab("inspect")
    assert _err(r) == "romlab inspect: error: no input: give a ROM FILE (or --pci BDF); - reads standard input"
    assert r.returncode == 2


def test_bad_option_is_reported_once_not_per_file():
    r = run_romlab("disasm", "--count", "0", PXE, NE2K)
    assert _err(r) == "romlab disasm: error: --count must be a positive number of instructions"
    assert r.returncode == 2 and r.stdout == b""
