"""Every verb's ``--json`` on real inputs, checked against docs/conventions.md (tests/json_conventions.py).

The walk is a table: each verb in romlab.cli.VERBS has an entry here that runs it on Debian's ROMs
(or this machine's PCI devices, a flash image driven through the chip model, a NIC QEMU emulates),
or a reasoned place in one of the exclusion tables. A verb added later with neither fails
``test_every_verb_is_walked``; a verb listed as having no --json that gains one fails too.
"""
from __future__ import annotations

import io
import json
import os
import struct
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, QEMU_SHARE, SEABIOS, corpus, run_romlab
from json_conventions import check

from romlab.cli import VERBS, build_parser, main

# Verbs without a --json option, and why none is wanted.
NO_JSON = {
    "vm": "runs a command in a guest and passes its output and exit status through unchanged",
    "serprog-emu": "a server: it prints the address it listens on and serves until stopped",
    "lab": "starts and stops the lab fleet's guests (up, down, fault); `lab fleet status` prints the fleet's "
           "state, which tests/test_fleet_vm.py reads",
}
# Verbs with --json whose documents are checked where their set-up lives.
ELSEWHERE = {
    "bench": "each action needs QEMU boots or a NIC: tests/test_bench_firmware.py checks the romlab.bench-firmware "
             "documents of its QEMU runs, tests/test_bench_render.py the romlab.bench-native document the CLI "
             "builds (figures given by hand, no NIC), tests/test_undi_bench.py the romlab.bench-undi documents "
             "`run` returns (on the register model, and on a stand-in device), each with this checker",
    "serve": "needs root, network namespaces and booting clients: "
             "tests/test_bench_firmware_serve.py::test_serve_refuses_without_a_dhcp_server_then_benches_two_clients "
             "checks each romlab.serve/1 line with this checker",
    "vfio": "needs a device VFIO can take, behind an IOMMU: the VM tier's guest runs `vfio info --json` and "
            "tests/test_vm.py checks it with this checker",
}

IPXE = [IPXE_QEMU / f"{k}-{n}.rom" for k in ("pxe", "efi") for n in ("e1000", "virtio", "rtl8139", "ne2k_pci")]
VGA = [SEABIOS / "vgabios-stdvga.bin", SEABIOS / "vgabios-virtio.bin", SEABIOS / "vgabios.bin"]
NON_PCI = [QEMU_SHARE / "linuxboot_dma.bin", QEMU_SHARE / "kvmvapic.bin"]
ROMS = IPXE + VGA + NON_PCI


def romlab_json(*args, ok=(0,)) -> dict:
    """Run romlab in this process and parse what it printed: one document, nothing else on stdout."""
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main([str(a) for a in args])
    assert rc in ok, (args, rc)
    return json.loads(buf.getvalue())


def sub_json(*args, ok=(0,), timeout=120) -> dict:
    """The same, in a fresh process (verbs that start QEMU or write through a programmer)."""
    r = run_romlab(*args, timeout=timeout, env=dict(os.environ))
    assert r.returncode in ok, (args, r.returncode, r.stderr)
    return json.loads(r.stdout)


WALKS = {}


def walk(verb: str, *marks):
    """Register the function that runs ``verb``; it yields (expected schema, document) pairs."""
    def register(fn):
        WALKS[verb] = (fn, marks)
        return fn
    return register


@walk("inspect")
def _inspect(tmp):
    for rom in ROMS:
        yield "romlab.inspect/4", romlab_json("inspect", corpus(rom), "--json", ok=(0, 1))
    yield from _inspect_more()


def _inspect_more():
    """The iPXE payload's driver table, and an iPXE file that is not an option ROM."""
    yield "romlab.inspect-drivers/1", romlab_json("inspect", "--drivers", corpus(IPXE_QEMU / "efi-e1000.rom"), "--json")
    yield "romlab.inspect/4", romlab_json("inspect", corpus(Path("/usr/lib/ipxe/undionly.kpxe")), "--json")


@walk("diff")
def _diff(tmp):
    for a, b in ((IPXE[0], IPXE[4]), (IPXE_QEMU / "pxe-e1000.rom", IPXE_QEMU / "pxe-e1000e.rom")):
        yield "romlab.diff/3", romlab_json("diff", corpus(a), corpus(b), "--json", ok=(0, 1))


@walk("lint")
def _lint(tmp):
    for rom in ROMS:
        yield "romlab.lint/2", romlab_json("lint", corpus(rom), "--json", ok=(0, 1))
    yield "romlab.lint-rules/2", romlab_json("lint", "--rules", "--json")


@walk("disasm")
def _disasm(tmp):
    for rom in IPXE[:4]:
        for entry in ("init", "bev"):
            yield "romlab.disasm/2", romlab_json("disasm", corpus(rom), "--entry", entry, "--json")


@walk("scan")
def _scan(tmp):
    # A flash-dump-like file: two Debian ROMs at 64 KiB boundaries in 0xFF fill.
    a, b = corpus(IPXE[0]).read_bytes(), corpus(IPXE[4]).read_bytes()
    dump = bytearray(b"\xff" * (0x10000 + len(a) + 0x10000 + len(b) + 0x10000))
    dump[0x10000:0x10000 + len(a)] = a
    at = (0x10000 + len(a) + 0xFFFF) & ~0xFFFF
    dump[at:at + len(b)] = b
    path = tmp / "dump.bin"
    path.write_bytes(bytes(dump))
    doc = romlab_json("scan", path, "--json", "--extract", tmp / "found", ok=(0, 1))
    assert [r["offset"] for r in doc["roms"]][:2] == [0x10000, at]
    yield "romlab.scan/2", doc
    yield "romlab.scan/2", romlab_json("scan", corpus(SEABIOS / "bios-256k.bin"), "--json", ok=(0, 1))


@walk("patch")
def _patch(tmp):
    yield "romlab.patch/2", romlab_json("patch", corpus(IPXE[0]), "--device", "10d3", "--fix-checksums",
                                        "-o", tmp / "p.rom", "--json")


@walk("split")
def _split(tmp):
    yield "romlab.split/2", romlab_json("split", corpus(IPXE_QEMU / "efi-e1000.rom"), "-o", tmp / "parts", "--json")


@walk("extract")
def _extract(tmp):
    src = corpus(IPXE_QEMU / "efi-e1000.rom")
    yield "romlab.extract/3", romlab_json("extract", src, "--image", "0", "-o", tmp / "i0.rom", "--json")
    yield "romlab.extract/3", romlab_json("extract", src, "--image", "1", "--efi-driver", "-o", tmp / "d.efi",
                                          "--json")


@walk("combine")
def _combine(tmp):
    yield "romlab.combine/2", romlab_json("combine", corpus(IPXE_QEMU / "pxe-e1000.rom"),
                                          corpus(IPXE_QEMU / "efi-virtio.rom"), "-o", tmp / "c.rom", "--json")


@walk("efi-rom")
def _efi_rom(tmp):
    romlab_json("extract", corpus(IPXE_QEMU / "efi-e1000.rom"), "--image", "1", "--efi-driver", "-o",
                tmp / "d.efi", "--json")
    yield "romlab.efi-rom/2", romlab_json("efi-rom", tmp / "d.efi", "--vendor", "8086", "--device", "100e",
                                          "--device", "100f", "-o", tmp / "e.rom", "--json")


@walk("pad")
def _pad(tmp):
    yield "romlab.pad/1", romlab_json("pad", corpus(IPXE[0]), "--to", "flash", "-o", tmp / "padded.rom", "--json")


@walk("flash")
def _flash(tmp):
    chip = tmp / "chip.bin"
    chip.write_bytes(b"\xff" * 524288)
    prog = f"file:{chip}"
    rom = corpus(IPXE_QEMU / "pxe-e1000.rom")
    yield "romlab.flash/1", sub_json("flash", rom, "-p", prog, "--dry-run", "--json")
    yield "romlab.flash/1", sub_json("flash", rom, "-p", prog, "--json")
    yield "romlab.flash/1", sub_json("flash", rom, "-p", prog, "--verify-only", "--json")
    yield "romlab.flash/1", sub_json("flash", "-p", prog, "--read", tmp / "read.bin", "--json")


@walk("restore")
def _restore(tmp):
    chip = tmp / "chip.bin"
    chip.write_bytes(b"\xff" * 524288)
    prog = f"file:{chip}"
    done = sub_json("flash", corpus(IPXE_QEMU / "pxe-e1000.rom"), "-p", prog, "--json")
    yield "romlab.restore/1", sub_json("restore", done["backup"], "-p", prog, "--dry-run", "--json")
    yield "romlab.restore/1", sub_json("restore", done["backup"], "-p", prog, "--json")


@walk("nvm", pytest.mark.qemu)
def _nvm(tmp):
    mac = "52:54:00:12:34:56"
    yield "romlab.nvm/1", sub_json("nvm", "--qemu", f"e1000e,mac={mac}", "show", "--json", timeout=60)
    yield "romlab.nvm/1", sub_json("nvm", "--qemu", f"e1000,mac={mac}", "set", "0x30=0x0000", "--dry-run", "--json",
                                   timeout=60)


@walk("list")
def _list(tmp):
    yield "romlab.list/1", romlab_json("list", "--json")


@walk("dump")
def _dump(tmp, monkeypatch):
    # The kernel's rom attribute is a file that hands out the ROM once enabled: a sysfs tree shaped like
    # the kernel's, with Debian's pxe-e1000.rom as that file, stands in for a card with a ROM.
    monkeypatch.setenv("ROMLAB_SYSFS", str(_sysfs_with_rom(tmp, corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes())))
    monkeypatch.setenv("ROMLAB_STATE_DIR", str(tmp / "state"))
    doc = romlab_json("dump", "--pci", "03:00.0", "-o", tmp / "dumped.rom", "--json")
    assert doc["input"] == "pci:0000:03:00.0"
    yield "romlab.dump/1", doc
    yield "romlab.inspect/4", romlab_json("inspect", "--pci", "03:00.0", "--json")


def _sysfs_with_rom(tmp: Path, rom: bytes) -> Path:
    root = tmp / "sys"
    dev = root / "devices" / "pci0000:00" / "0000:03:00.0"
    dev.mkdir(parents=True)
    (root / "bus" / "pci" / "devices").mkdir(parents=True)
    (root / "bus" / "pci" / "drivers" / "e1000").mkdir(parents=True)
    (root / "bus" / "pci" / "devices" / "0000:03:00.0").symlink_to(dev)
    (dev / "vendor").write_text("0x8086\n")
    (dev / "device").write_text("0x100e\n")
    (dev / "class").write_text("0x020000\n")
    (dev / "driver").symlink_to(root / "bus" / "pci" / "drivers" / "e1000")
    lines = ["0x00000000fe200000 0x00000000fe21ffff 0x0000000000040200"]
    lines += ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 5
    lines.append("0x00000000fe240000 0x00000000fe27ffff 0x0000000000046200")
    (dev / "resource").write_text("\n".join(lines) + "\n")
    cfg = bytearray(256)
    struct.pack_into("<HH", cfg, 0, 0x8086, 0x100E)
    (dev / "config").write_bytes(bytes(cfg))
    (dev / "rom").write_bytes(rom)
    return root


class _FakeNic:
    """What romlab.cli.nic needs of a NIC, for a machine without one VFIO can take (the documents'
    shape is under test here; the driver itself is tested in the VM tier)."""
    bdf, interrupts, link_up, mac = "0000:00:04.0", 0, True, bytes.fromhex("525400123456")
    HAS_EEPROM = True

    class part:
        name = "82540EM"

    class pool:
        hugepages = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def eeprom_word(self, i):
        return (0x5452, 0x1200, 0x5634)[i] if i < 3 else 0

    def tx_batch(self, data, lens):
        return len(lens)

    def tx_flush(self):
        return True

    def rx_wait_batch(self, out, timeout, mode):
        return 0, []

    def stats(self):
        return {"rx_good": 0, "tx_good": 4, "rx_missed": 0, "rx_dropped": 0, "rx_ring": 0, "tx_ring": 0}


@walk("nic")
def _nic(tmp, monkeypatch):
    import romlab.cli.nic as nic_cli

    monkeypatch.setattr(nic_cli, "_open", lambda args: _FakeNic())
    yield "romlab.nic-info/2", romlab_json("nic", "info", "--pci", "00:04.0", "--json")
    yield "romlab.nic-send/2", romlab_json("nic", "send", "--pci", "00:04.0", "--count", "4", "--json")
    yield "romlab.nic-recv/2", romlab_json("nic", "recv", "--pci", "00:04.0", "--timeout", "0", "--json", ok=(1,))
    yield "romlab.nic-vfs/1", _nic_vfs(tmp, monkeypatch)


def _nic_vfs(tmp, monkeypatch):
    """`nic vfs` on a crafted sysfs tree whose kernel half is tests/test_sriov.py's (an igb PF)."""
    from test_sriov import FakeIov

    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp / "sys"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    FakeIov(tmp, monkeypatch)
    return romlab_json("nic", "vfs", "--pci", "01:00.0", "--count", "2", "--json")


@walk("undi")
def _undi(tmp, monkeypatch):
    """The documents of romlab undi with the ROM's UNDI (Debian's pxe-e1000.rom) run on the register
    model in place of a NIC; the same documents from a real (QEMU) NIC are checked in
    tests/test_undi_vm.py."""
    import contextlib
    from types import SimpleNamespace

    import romlab.cli.undi as undi_cli
    from drivers.intel_model import IntelModel
    from drivers.undi.client import UndiClient
    from drivers.undi.device import ModelDevice
    from drivers.undi.loader import UndiMachine
    from drivers.undi.vfio_device import UndiRun
    from hw.pci import parse_bdf

    class Nic(ModelDevice):
        """The parts of drivers.undi.vfio_device.VfioNic the verb reads beside the Device interface."""
        ids = (0x8086, 0x100E)
        v = SimpleNamespace(pci=SimpleNamespace(bdf=parse_bdf("00:04.0")))

        def missed_packets(self):
            return 0

    @contextlib.contextmanager
    def session(args, rom):
        dev = Nic(IntelModel(device_id=0x100E, mac=bytes.fromhex("525400123456")), bdf=0x20)
        um = UndiMachine(corpus(IPXE_QEMU / "pxe-e1000.rom").read_bytes(), dev)
        um.run_init()
        um.run_loader()
        client = UndiClient(um, irq_pending=lambda: dev.irq)
        client.probe()
        yield UndiRun(dev, um, client, "rom-bar")

    monkeypatch.setattr(undi_cli, "_session", session)
    yield "romlab.undi-info/2", romlab_json("undi", "info", "--pci", "00:04.0", "--json")
    yield "romlab.undi-send/2", romlab_json("undi", "send", "--pci", "00:04.0", "--count", "4", "--json")
    yield "romlab.undi-recv/2", romlab_json("undi", "recv", "--pci", "00:04.0", "--timeout", "0.2", "--json",
                                            ok=(1,))


@walk("boot", pytest.mark.qemu)
def _boot(tmp):
    yield "romlab.boot/2", sub_json("boot", "--nic", "e1000", "--rom", corpus(IPXE_QEMU / "pxe-e1000.rom"),
                                    "--timeout", "120", "--json", timeout=240)


def _has_json_option(verb: str) -> bool:
    """Whether ``verb`` (or any of its actions) takes --json."""
    import argparse

    parser = build_parser(verb)
    stack = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = False
    while stack:
        for p in stack.pop().choices.values():
            found |= "--json" in p._option_string_actions
            stack += [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return found


def test_every_verb_is_walked():
    listed = set(WALKS) | set(NO_JSON) | set(ELSEWHERE)
    assert set(VERBS) - listed == set(), "add a walk (or a reasoned exclusion) for these verbs"
    assert listed - set(VERBS) == set(), "these entries name no verb"
    assert not set(WALKS) & (set(NO_JSON) | set(ELSEWHERE))
    for verb in NO_JSON:
        assert not _has_json_option(verb), f"{verb} has --json now: give it a walk"
    for verb in (*WALKS, *ELSEWHERE):
        assert _has_json_option(verb), f"{verb} has no --json"


@pytest.mark.parametrize("verb", [pytest.param(v, marks=m) for v, (_, m) in sorted(WALKS.items())])
def test_json_follows_the_conventions(verb, tmp_path, backups, monkeypatch):
    fn, _ = WALKS[verb]
    kw = {"monkeypatch": monkeypatch} if "monkeypatch" in fn.__code__.co_varnames[:fn.__code__.co_argcount] else {}
    docs = list(fn(tmp_path, **kw))
    assert docs
    for schema, doc in docs:
        assert check(doc, schema) == [], (schema, json.dumps(doc)[:400])


def test_batch_document_of_several_inputs():
    """`lint A B --json` prints one romlab.batch/1 document holding one lint document per input."""
    a, b = corpus(IPXE[0]), corpus(IPXE[1])
    missing = "no-such.rom"
    r = run_romlab("lint", a, b, missing, "--json")
    doc = json.loads(r.stdout)
    assert check(doc, "romlab.batch/1") == []
    assert doc["verb"] == "lint" and [d["input"] for d in doc["results"]] == [str(a), str(b), missing]
    assert doc["exit"] == r.returncode == 2 and "error" in doc["results"][2]
    r = run_romlab("scan", a, b, "--json")
    assert check(json.loads(r.stdout), "romlab.batch/1") == []


def test_stdin_is_the_input_dash():
    r = run_romlab("inspect", "-", "--json", input=corpus(IPXE[0]).read_bytes())
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert check(doc, "romlab.inspect/4") == [] and doc["input"] == "<stdin>"


def test_checker_catches_the_old_spellings():
    """The checker itself: each retired spelling seen in romlab before the conventions is caught."""
    assert check({"schema": "romlab.lint/2", "input": "a.rom"}) == []
    bad = [
        [{"chip": "W25X40"}],                                                  # no object, no schema
        {"input": "a.rom", "schema": "romlab.x/1"},                            # schema not first
        {"schema": "romlab.inspect/1", "source": "a.rom"},                     # source, no input
        {"schema": "romlab.x/1", "input": "a", "pcir": {"vendor": 0x8086}},    # integer ID
        {"schema": "romlab.x/1", "input": "a", "id": "8086:10D3"},             # upper case
        {"schema": "romlab.x/1", "input": "a", "class": "0x020000"},           # 0x
        {"schema": "romlab.x/1", "input": "a", "jedec": "ef3013", "opcode": 216},
        {"schema": "romlab.x/1", "input": "a", "stop": "last image"},          # stop as a string
        {"schema": "romlab.x/1", "input": "a", "time": "2026-11-28T22:10:00"},  # no zone
        {"schema": "romlab.x/1", "input": "pci:03:00.0"},                      # BDF without domain
        {"schema": "romlab.x/1", "input": "a", "seconds": 1.5},                # unit not in the key
        {"schema": "romlab.x/1", "input": "a", "size": "64K"},                 # quantity as text
        {"schema": "romlab.x/1", "input": "a", "device_list": {"devices": [0x100E]}},
        {"schema": "romlab.bench-firmware/3", "input": "e1000"},               # several inputs are "inputs"
        {"schema": "romlab.combine/2", "inputs": "a.rom"},                     # ...a list of them
        {"schema": "romlab.bench-native/3", "input": "pci:0000:03:00.0", "nic": {"device_ids": "8086:100e"}},
    ]
    for doc in bad:
        assert check(doc) != [], doc
    assert check({"schema": "romlab.x/1", "input": "a", "time": "2026-11-28T22:10:00+00:00"}) == []
    assert check({"schema": "romlab.bench-firmware/3", "inputs": ["qemu:e1000", "qemu:virtio-net"]}) == []


def test_batch_helper_keeps_the_conventions():
    """romlab.conventions.batch, for the read verbs that take several inputs: one document whose
    results are each input's own, and the worst status."""
    from romlab.conventions import batch

    docs = [romlab_json("lint", corpus(p), "--json", ok=(0, 1)) for p in IPXE[:2]]
    doc = batch("lint", docs, max(d["exit"] for d in docs))
    assert check(doc, "romlab.batch/1") == [] and doc["results"] == docs
    broken = batch("lint", [{"schema": "romlab.lint/2", "source": "a.rom"}], 0)
    assert check(broken) != []
