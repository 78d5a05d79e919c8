"""`patch` trusts no pointer: an edit changes only the structure it edits, or it is refused.

The ROMs are Debian's, with pointers mutated by hand (offsets below read off `xxd` of the files:
pxe-e1000.rom's PCIR is at 0x1c and its device list offset, PCIR+8, is 0x4bf; vgabios-vmware.bin's
PCIR is at 0x99dc, revision 0, ImageLength 78 blocks = 39936 bytes, the whole file), then a
property test mutates pointers and lengths at random and checks every outcome.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romlab.cli import main as romlab_main

PXE = Path("/usr/lib/ipxe/qemu/pxe-e1000.rom")
EFI = Path("/usr/lib/ipxe/qemu/efi-e1000.rom")
VMW = Path("/usr/share/seabios/vgabios-vmware.bin")
VMW_PCIR = 0x99DC


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = romlab_main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def vmware_rev3(list_offset: int) -> bytearray:
    """vgabios-vmware.bin with its PCIR made revision 3 and a device-list offset of our choosing."""
    d = bytearray(VMW.read_bytes())
    assert d[VMW_PCIR:VMW_PCIR + 4] == b"PCIR" and d[VMW_PCIR + 0x0C] == 0
    d[VMW_PCIR + 0x0C] = 3
    d[VMW_PCIR + 0x0A:VMW_PCIR + 0x0C] = struct.pack("<H", 0x1C)
    struct.pack_into("<H", d, VMW_PCIR + 8, list_offset)
    return d


def two_images(list_target: int) -> bytearray:
    """vgabios-vmware (revision 3, not last) followed by pxe-e1000: image 1 starts at 0x9c00."""
    first = vmware_rev3(list_target - VMW_PCIR)
    first[VMW_PCIR + 0x15] &= 0x7F
    return first + bytearray(PXE.read_bytes())


def refused(tmp_path, rom: bytes, *edit, lint_rule: str | None = None) -> str:
    src = tmp_path / "in.rom"
    src.write_bytes(rom)
    out = tmp_path / "out.rom"
    rc, _, err = run("patch", src, *edit, "-o", out)
    assert rc == 2, err
    assert err.count("\n") == 1, err
    assert not out.exists() and src.read_bytes() == rom
    if lint_rule:
        rc, text, _ = run("lint", src)
        assert rc == 1 and f"[{lint_rule}]" in text
    return err


def test_class2_device_list_pointing_into_the_next_image_is_refused(tmp_path):
    rom = two_images(0x9C00 + 0x100)
    for image in (["--image", "0"], []):
        err = refused(tmp_path, bytes(rom), *image, "--device", "10d3", lint_rule="device-list-bounds")
        assert "device list" in err


def test_class2_device_list_past_the_end_is_refused(tmp_path):
    err = refused(tmp_path, bytes(vmware_rev3(0x9C00 + 0x10 - VMW_PCIR)), "--add-device", "10d3",
                  lint_rule="device-list-bounds")
    assert "device list" in err


def test_class2_unterminated_device_list_is_refused(tmp_path):
    rom = vmware_rev3(0x9C00 - 2 - VMW_PCIR)
    rom[0x9BFE:0x9C00] = b"\x34\x12"  # the image's last word: an ID with no 0 after it
    refused(tmp_path, bytes(rom), "--device", "10d3", lint_rule="device-list-unterminated")


def test_class2_device_list_overlapping_the_pcir_is_refused(tmp_path):
    rom = vmware_rev3(2)  # the list starts at PCIR+2: "IR", then the vendor ID...
    err = refused(tmp_path, bytes(rom), "--remove-device", "5249", lint_rule="structure-overlap")
    assert "overlap" in err


def test_class2_pnp_string_with_no_end_is_refused(tmp_path):
    rom = bytearray(PXE.read_bytes())
    pnp = struct.unpack_from("<H", rom, 0x1A)[0]
    assert rom[pnp:pnp + 4] == b"$PnP"
    # The product pointer (PnP+0x10) moved to a run of 100 non-NUL bytes placed in the image.
    rom[0x8000:0x8064] = b"A" * 100
    struct.pack_into("<H", rom, pnp + 0x10, 0x8000)
    refused(tmp_path, bytes(rom), "--pnp-product", "", lint_rule="pnp-string-bounds")


def test_class5_vmware_with_a_pcir_outside_its_image_is_refused_not_a_crash(tmp_path):
    rom = vmware_rev3(2)
    struct.pack_into("<H", rom, VMW_PCIR + 0x10, 2)  # ImageLength 2 blocks: the PCIR is past the image
    src = tmp_path / "in.rom"
    src.write_bytes(bytes(rom))
    rc, _, err = run("patch", src, "--device", "10d3", "-o", tmp_path / "o.rom")
    assert rc in (1, 2) and err.count("\n") == 1 and "internal error" not in err


def test_clean_debian_roms_still_patch(tmp_path):
    for rom in (PXE, EFI):
        out = tmp_path / f"{rom.name}.out"
        rc, _, err = run("patch", rom, "--image", "0", "--device", "10d3", "--pnp-product", "Lab", "--class", "020000",
                         "--fix-checksums", "-o", out)
        assert rc == 0, err
        assert run("lint", out)[0] == 0
    # A list that must move: vgabios-vmware made revision 3 has the padding for it.
    src = tmp_path / "vmw3.rom"
    src.write_bytes(bytes(vmware_rev3(0)))
    rc, _, err = run("patch", src, "--add-device", "1234", "--add-device", "1235", "-o", tmp_path / "vmw3.out")
    assert rc == 0, err
    after = (tmp_path / "vmw3.out").read_bytes()
    assert allowed_changes(src.read_bytes(), after) == (True, "")
    at = VMW_PCIR + _u16(after, VMW_PCIR + 8)
    assert struct.unpack_from("<3H", after, at) == (0x1234, 0x1235, 0)


# -- the property: random pointer and length mutations ---------------------------------------------

def _u16(d, at):
    """The 16-bit word at ``at``; 0 where the file has no such word (a pointer mutated off the end)."""
    return struct.unpack_from("<H", d, at)[0] if 0 <= at <= len(d) - 2 else 0


def _images(d: bytes):
    """(offset, length, PCIR offset) of each image, read with no help from romlab; stops where it can't go on."""
    out, o = [], 0
    while o + 0x1A <= len(d) and d[o:o + 2] == b"\x55\xaa":
        p = o + _u16(d, o + 0x18)
        if d[p:p + 4] != b"PCIR":
            if o == 0:  # a non-PCI option ROM: its size is byte 2, in blocks
                out.append((0, d[2] * 512, None))
            break
        n = _u16(d, p + 0x10) * 512
        out.append((o, n, p))
        # The last-image flag is not followed: --last/--not-last may change it, and the images behind
        # it must stay byte for byte what they were.
        if not n:
            break
        o += n
    return out


def _image_allowed(d: bytes, o: int, p: int) -> set[int]:
    """Offsets (relative to the image) an edit of image ``o`` may change, as ``d`` shows its structures:
    the size bytes, the PCIR, its device list, the $PnP header and its strings (up to the NULs after
    them), and the checksum bytes: header byte 6, the image's last byte, UNDI ROM ID +5, iPXE header +5."""
    ok = {2, 3, 6} | (set(range(p - o, p - o + 0x1C)) if p is not None else set())
    n = _u16(d, p + 0x10) * 512 if p is not None else d[o + 2] * 512
    if n:
        ok.add(n - 1)
    off = _u16(d, p + 8) if p is not None else 0
    if off and d[p + 0x0C] >= 3:
        at = p + off
        while at + 2 <= len(d):
            ok |= {at - o, at + 1 - o}
            if _u16(d, at) == 0:
                break
            at += 2
    pnp = o + _u16(d, o + 0x1A)
    if d[pnp:pnp + 4] == b"$PnP":
        ok |= set(range(pnp - o, pnp - o + max(d[pnp + 5] * 16, 0x20)))
        for field in (0x0E, 0x10):
            ptr = _u16(d, pnp + field)
            if ptr:
                at = o + ptr
                while at < len(d) and d[at] != 0:   # the string
                    ok.add(at - o)
                    at += 1
                while at < len(d) and d[at] == 0:   # its NUL and the NUL padding after it
                    ok.add(at - o)
                    at += 1
    for ptr_at, sig in ((0x16, b"UNDI"), (0x10, b"iPXE")):
        at = o + _u16(d, o + ptr_at)
        if _u16(d, o + ptr_at) and d[at:at + 4] == sig:
            ok.add(at + 5 - o)
    return ok


def allowed_changes(before: bytes, after: bytes) -> tuple[bool, str]:
    """Independent of romlab's walker: each image changed only in the structures a PCIR/device-list/$PnP
    edit may touch: the PCIR (28 bytes), the old and the new device list (from PCIR+8 in each file, up to
    its 0), the $PnP header and its strings, the size bytes 2-3 and, when the image grew, the whole
    blocks appended at its old end. Every other byte, and anything after the images, is unchanged."""
    old, new = _images(before), _images(after)
    if len(old) != len(new):
        return False, f"{len(old)} images before, {len(new)} after"
    for (o1, n1, p1), (o2, n2, p2) in zip(old, new):
        grown = n2 - n1
        if grown < 0 or grown % 512 or (p1 is None) != (p2 is None) or p1 is not None and p2 - o2 != p1 - o1:
            return False, f"image at 0x{o1:x} changed its length by {grown} or moved its PCIR"
        ok = _image_allowed(before, o1, p1) | _image_allowed(after, o2, p2) | set(range(n1, n1 + grown))
        a, b = before[o1:o1 + n1], after[o2:o2 + n1]
        for i in range(n1):
            if a[i] != b[i] and i not in ok:
                return False, f"byte 0x{o1 + i:x} of the image at 0x{o1:x} changed"
    e1 = old[-1][0] + old[-1][1] if old else 0
    e2 = new[-1][0] + new[-1][1] if new else 0
    if before[e1:] != after[e2:]:
        return False, "bytes after the images changed"
    return True, ""


POINTERS = {  # name -> (where the 16-bit field is, relative to what)
    "device-list": lambda d: _u16(d, 0x18) + 8,
    "pcir-pointer": lambda d: 0x18,
    "pnp-pointer": lambda d: 0x1A,
    "pnp-product": lambda d: _u16(d, 0x1A) + 0x10,
    "pnp-manufacturer": lambda d: _u16(d, 0x1A) + 0x0E,
    "image-length": lambda d: _u16(d, 0x18) + 0x10,
}


def _structure_rules(data: bytes) -> set[str]:
    from romtools.walker import walk

    rules = {"structure-bounds", "structure-overlap", "pnp-string-bounds", "device-list-bounds",
             "device-list-unterminated"}
    return {f.rule for f in walk(data).findings if f.rule in rules}


class Mutant:
    """A Debian ROM and the pointer changes made to it; shown by name, not as bytes, when a case fails."""

    def __init__(self, base: str, changes: list[tuple[str, str, int]], unterminated: bool):
        self.base, self.changes, self.unterminated = base, changes, unterminated

    def __repr__(self):
        return f"Mutant({self.base!r}, {self.changes!r}, unterminated={self.unterminated})"

    def build(self) -> bytes:
        b = self.base
        d = bytearray(PXE.read_bytes()) if b == "pxe" else vmware_rev3(0) if b == "vmware3" else two_images(VMW_PCIR)
        for name, how, delta in self.changes:
            at = POINTERS[name](d)
            if not 0 <= at <= len(d) - 2:
                continue
            pcir = _u16(d, 0x18)
            value = {"set": delta, "past-end": len(d) - pcir + delta, "next-image": 0x9C00 - pcir + delta,
                     "shift": _u16(d, at) + delta}[how]
            struct.pack_into("<H", d, at, value & 0xFFFF)
        if self.unterminated:  # fill after the list with non-zero words
            at = _u16(d, 0x18) + _u16(d, _u16(d, 0x18) + 8)
            if at + 8 <= len(d):
                d[at:at + 8] = b"\x34\x12" * 4
        return bytes(d)


CHANGE = st.tuples(
    st.sampled_from(sorted(POINTERS)),
    st.sampled_from(["set", "past-end", "next-image", "shift"]),
    st.one_of(st.integers(0, 0xFFFF), st.integers(0, 0x40), st.sampled_from([-2, 0, 2, 4, 0x10])),
)


@st.composite
def mutants(draw):
    return Mutant(draw(st.sampled_from(["pxe", "vmware3", "two"])), draw(st.lists(CHANGE, min_size=1, max_size=2)),
                  draw(st.booleans()))


EDITS = st.sampled_from([["--device", "10d3"], ["--add-device", "1234"], ["--remove-device", "100e"],
                         ["--vendor", "8087"], ["--pnp-product", "Lab"], ["--pnp-manufacturer", ""],
                         ["--add-device", "1234", "--add-device", "1235", "--add-device", "1236"],
                         ["--class", "020000"], ["--not-last"], ["--last"], ["--fix-checksums"],
                         ["--add-device", "1234", "--fix-checksums", "--checksum-byte", "last"],
                         ["--pnp-product", "Lab", "--fix-checksums"]])


@settings(max_examples=int(__import__('os').environ.get('ROMLAB_EXAMPLES', 50)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rom=mutants(), edit=EDITS, image=st.sampled_from([[], ["--image", "0"]]))
def test_class2_patch_changes_only_what_it_edits_or_refuses(tmp_path, rom, edit, image):
    rom = rom.build()
    src, out = tmp_path / "in.rom", tmp_path / "out.rom"
    src.write_bytes(rom)
    if out.exists():
        os.unlink(out)
    rc, text, err = run("patch", src, *image, *edit, "-o", out)
    assert src.read_bytes() == rom
    if rc == 0 and not out.exists():
        # A patch that changes nothing writes nothing, and says so.
        assert "nothing to change" in text, text
    elif rc == 0:
        ok, why = allowed_changes(rom, out.read_bytes())
        assert ok, f"{edit}: {why}"
        # An accepted edit leaves no structure less sound than it found it.
        assert _structure_rules(out.read_bytes()) <= _structure_rules(rom), edit
    else:
        assert rc in (1, 2) and err.count("\n") == 1 and "internal error" not in err, err
        assert not out.exists()


# -- every reading verb on the same mutants: bounded time and memory, one line on failure --------------

_DRIVER = r"""
import contextlib, io, json, sys
from romlab.cli import main
rom, out = sys.argv[1], sys.argv[2]
results = []
for argv in (["inspect", rom], ["inspect", "--json", rom], ["lint", rom], ["disasm", rom, "--entry", "init"],
             ["scan", rom], ["split", rom, "-o", out + "/split"], ["extract", rom, "--image", "0", "-o", out + "/x.rom"]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException as exc:
            rc = f"raised {type(exc).__name__}: {exc}"
    results.append({"argv": argv[0], "rc": rc, "stderr": e.getvalue()})
# The peak of this process's own memory: VmHWM starts afresh at exec, where ru_maxrss keeps the
# high-water mark of the forked parent (a long pytest run) it was exec'ed from.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"results": results, "maxrss_kib": hwm}))
"""


@settings(max_examples=int(__import__('os').environ.get('ROMLAB_EXAMPLES', 50)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rom=mutants(), flips=st.lists(st.tuples(st.integers(0, 0x3FF), st.integers(0, 255)), max_size=4))
def test_class1_reading_verbs_on_mutants_end_in_time_and_memory_with_one_line(tmp_path, rom, flips):
    import subprocess
    import sys
    import time

    data = bytearray(rom.build())
    for at, value in flips:  # and a few bytes of the headers changed at random
        data[at] = value
    src = tmp_path / "m.rom"
    src.write_bytes(bytes(data))
    for p in tmp_path.glob("split/*"):
        p.unlink()
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(src), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, err.decode()[-2000:]
    import json

    doc = json.loads(out)
    assert doc["maxrss_kib"] < 200 * 1024, (doc["maxrss_kib"], [(r["argv"], r["rc"]) for r in doc["results"]])
    for r in doc["results"]:
        assert r["rc"] in (0, 1, 2), r
        if r["rc"] == 2:  # unusable input: one line; 1 is a readable ROM with problems, shown on stdout
            assert r["stderr"].count("\n") == 1 and "internal error" not in r["stderr"], r
    assert src.read_bytes() == bytes(data)
    assert elapsed < 7 * 5      # seven verbs, 5 s each at most (a hang, not a speed, is what this catches)


def test_fix_checksums_never_writes_into_another_structure(tmp_path):
    # pxe-e1000.rom: $PnP at 0x40, UNDI ROM ID at 0x84 (xxd). A $PnP header made to start at 0x7b has its
    # checksum byte (+9) on the 'U' of "UNDI": fixing it would destroy the UNDI ROM ID.
    rom = bytearray(PXE.read_bytes())
    assert rom[0x84:0x88] == b"UNDI"
    rom[0x7B:0x84] = bytes(rom[0x40:0x49])
    struct.pack_into("<H", rom, 0x1A, 0x7B)
    refused(tmp_path, bytes(rom), "--fix-checksums", lint_rule="structure-overlap")


def test_the_last_byte_checksum_spares_a_moved_device_list(tmp_path):
    src = tmp_path / "vmw3.rom"
    src.write_bytes(bytes(vmware_rev3(0)))
    out = tmp_path / "o.rom"
    rc, _, err = run("patch", src, "--add-device", "1234", "--fix-checksums", "--checksum-byte", "last", "-o", out)
    assert rc == 0, err
    after = out.read_bytes()
    at = VMW_PCIR + _u16(after, VMW_PCIR + 8)
    assert struct.unpack_from("<2H", after, at) == (0x1234, 0) and at + 4 <= len(after) - 1
    assert sum(after) & 0xFF == 0


def test_last_flag_on_a_non_pci_rom_is_refused_in_one_line(tmp_path):
    isa = Path("/usr/share/seabios/vgabios-isavga.bin")
    rc, _, err = run("patch", isa, "--image", "0", "--last", "-o", tmp_path / "o.rom")
    assert rc == 2 and err.count("\n") == 1 and "non-PCI" in err and "internal error" not in err
