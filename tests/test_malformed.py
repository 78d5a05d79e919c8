"""Malformed input never gives a traceback or a hang: only romlab's one-line error or a report."""
from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import sys

import pytest
from conftest import IPXE_QEMU, SEABIOS, corpus, run_romlab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.errors import RomlabError
from romtools.lint import lint
from romtools.walker import walk

EFI = IPXE_QEMU / "efi-e1000.rom"


def _clean_exit(r, allowed=(0, 1, 2)):
    err = r.stderr.decode()
    assert "Traceback" not in err, err
    assert r.returncode in allowed
    if r.returncode == 2:
        assert len(err.strip().splitlines()) == 1, err
    return err


def test_truncated_at_every_512_byte_boundary(tmp_path):
    data = corpus(EFI).read_bytes()
    assert len(data) % 512 == 0
    bad = 0
    for cut in range(512, len(data), 512):
        w = walk(data[:cut])
        assert w.stop.problem
        if cut == 0x12600:  # exactly the legacy image, which is not marked last
            assert w.stop.reason == "no-last-image"
        else:
            assert w.stop.reason == "truncated"
            assert f"{cut - (0 if cut < 0x12600 else 0x12600)}" in w.stop.message
        bad += 1
    assert bad == len(data) // 512 - 1
    # A few through the CLI: exit 1, the tree still printed.
    for cut in (512, 0x12600, 0x12600 + 512, len(data) - 512):
        p = tmp_path / f"cut{cut}.rom"
        p.write_bytes(data[:cut])
        r = run_romlab("inspect", p)
        _clean_exit(r, (1,))
        assert b"truncated" in r.stdout and b"image 0" in r.stdout


def test_truncation_message_names_expected_and_actual(tmp_path):
    data = corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes()[:65536]
    p = tmp_path / "t.rom"
    p.write_bytes(data)
    r = run_romlab("inspect", "--json", p)
    assert r.returncode == 1
    stop = json.loads(r.stdout)["stop"]
    assert stop["reason"] == "truncated" and "75264" in stop["message"] and "65536" in stop["message"]


@pytest.mark.parametrize("mutation", ["zero-length", "pcir-past-end", "random", "empty", "tiny"])
def test_crafted_bad_inputs(tmp_path, mutation):
    data = bytearray(corpus(EFI).read_bytes())
    if mutation == "zero-length":
        data[0x2C:0x2E] = b"\0\0"
    elif mutation == "pcir-past-end":
        data = data[:4096]
        data[0x18:0x1A] = (0xF000).to_bytes(2, "little")
    elif mutation == "random":
        data = bytearray(random.Random(7).randbytes(65536))
    elif mutation == "empty":
        data = bytearray()
    else:
        data = bytearray(b"\x55\xaa\x01")
    p = tmp_path / "bad.rom"
    p.write_bytes(bytes(data))
    for verb in ("inspect", "lint", "disasm", "scan"):
        _clean_exit(run_romlab(verb, p, timeout=60))


def test_paths_that_are_not_files(tmp_path):
    for path, words in ((tmp_path, "directory"), (tmp_path / "missing.rom", "no such file")):
        for verb in ("inspect", "lint", "disasm", "scan"):
            r = run_romlab(verb, path)
            err = _clean_exit(r, (2,))
            assert words in err


def test_unreadable_file_as_non_root_user(tmp_path):
    p = tmp_path / "secret.rom"
    shutil.copy(corpus(EFI), p)
    p.chmod(0)
    if os.geteuid() != 0:
        err = _clean_exit(run_romlab("inspect", p), (2,))
        assert "permission denied" in err
        return
    # As root: a forked child becomes 'nobody' (who cannot read a mode-0 file) and runs the CLI's main.
    nobody = pwd.getpwnam("nobody")
    tmp_path.chmod(0o755)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            sys.stderr = os.fdopen(wfd, "w")
            from romlab.cli import main

            code = main(["inspect", str(p)])
            sys.stderr.flush()
        except BaseException:
            code = 99
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        err = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "permission denied" in err


_REAL = [corpus(EFI).read_bytes()[:0x14000], corpus(SEABIOS / "vgabios-stdvga.bin").read_bytes()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from([0, 1]), edits=st.lists(st.tuples(st.integers(0, 0x13FFF), st.integers(0, 255)),
                                                     max_size=12), cut=st.integers(0, 0x14000))
def test_mutated_real_roms_raise_only_romerror(which, edits, cut):
    data = bytearray(_REAL[which])
    for off, val in edits:
        if off < len(data):
            data[off] = val
    data = bytes(data[:cut])
    try:
        w = walk(data)
    except RomlabError:
        return
    lint(w)
    from romlab.report import inspect_dict, render_text

    render_text(w, "x", None, w.findings)
    json.dumps(inspect_dict(w, "x", None, w.findings))
