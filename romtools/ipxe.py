"""Inside an iPXE build: its compressed payload, version, build name, PCI drivers, features and scripts.

iPXE's x86 images (option ROMs, ``.pxe``/``.kpxe`` boot files, ``.lkrn`` kernels) carry almost
everything in sections that ``zbin`` packed: each packed section is a little-endian 32-bit length,
a raw LZMA1 stream (lc=2, lp=0, pb=0, after iPXE's own x86 BCJ filter) and a CRC32 of that stream
(``crc32_le`` seeded with 0xffffffff, no final inversion), the length counting the stream and the
CRC. The linker script packs four sections in this order (libprefix.S's ``.zinfo``):
``.text16.early``, ``.text16.late``, ``.data16`` and ``.textdata``, each starting on a 16-byte
boundary (512 for ``.lkrn`` and ``.mrom`` payloads). ``.textdata`` (32-bit code, rodata, data and
the linker tables) is linked at virtual address 0, so a pointer in it is an offset into the decoded
section. iPXE's EFI images are PE files linked at ImageBase 0 and are not packed by zbin; the EFI
image of an option ROM may be EFI-compressed (``romtools.eficompress``).

What is read, and how:

- Packed blocks: found by their structure, a length that fits and a CRC32 that matches, in zbin's
  order (``find_blocks``): the first two looked for on 16-byte boundaries, the last two right after
  the one before, and nothing after the fourth. One ``Budget`` per input bounds the work: at most
  ``MAX_DECODED`` bytes decoded (or PE image mapped) for all its images together, and at most
  ``MAX_HASHED`` bytes of candidate blocks checked. The table readers below index a section once
  (no search of the whole section per candidate) and cap their candidates.
- PCI drivers: ``struct pci_driver`` records (include/ipxe/pci.h: ids, id_count, class, mask,
  probe, remove) whose ``ids`` point at ``struct pci_device_id`` arrays (name, vendor, device,
  driver_data) whose names are C strings, whose probe/remove point into code and whose class mask
  is one ``PCI_CLASS_ID`` can build (each byte 00 or ff). The linker table ``pci_drivers`` is the
  run of such records whose start and end addresses the code refers to: ``for_each_table_entry``
  compiles to a load of ``__table_start`` and a compare with ``__table_end`` (32-bit immediates
  in i386 code, RIP-relative displacements in x86-64 code). Records no code iterates (BOFM tables,
  structures that merely look alike) are left out. Heuristic where iPXE keeps no structure: the
  table boundaries; checked on every iPXE file Debian ships.
- Features: the ``dhcp_features`` linker table is a packed run of DHCP options (features.h): the
  version option (0xeb, 3, major, minor, patch) and one (tag, 1, version) option per feature.
  It is found as the run around the version option whose tags are all ``DHCP_EB_FEATURE_*`` tags
  (heuristic: tables have no header). Every ``FEATURE()`` also adds a ``struct feature`` (a name
  pointer) to the ``features`` table; that table is found as the run of name pointers whose names
  are exactly those of the options' tags, and its order (by category) is the order iPXE prints.
- Version and build name: version.c keeps ``product_version`` (VERSION, which begins with
  "major.minor.patch") and ``build_name`` (the make target, e.g. ``82540em.rom``), each also as a
  UTF-16 copy (``product_wversion``, ``build_wname``). Neither is pointed to by a table, so the
  version is the C string that begins with the version option's numbers and has a UTF-16 twin,
  and the build name is the nearest C string to it (within 512 bytes) that looks like a file
  name and has a UTF-16 twin (heuristic; version.c's constants are emitted together).
- Embedded scripts: embedded.c's ``struct image`` array (image.h): reference count 0, a free
  method, no list links, URI, flags, command line, type or replacement, a name and a data pointer
  with its length inside the section.
"""
from __future__ import annotations

import array
import lzma
import re
import struct
import zlib
from dataclasses import dataclass, field

from construct import Int16ul, Int32ul, Int64ul, Padding, Struct

from hw.errors import FormatError

#: No packed section, nor all of them together, may expand beyond this: iPXE's largest
#: build Debian ships (ipxe.pxe) decodes to 0.75 MB.
MAX_DECODED = 4 << 20
#: Bytes of candidate packed sections whose CRC32 may be checked per input: iPXE's own files cost
#: what their four sections hold (under 1 MB); a file of look-alike length fields is refused.
MAX_HASHED = 32 << 20
#: A PE image is mapped only up to this size (its SizeOfImage, bss included).
MAX_PE_IMAGE = 16 << 20

PCI_ANY_ID = 0xFFFF
SECTION_NAMES = (".text16.early", ".text16.late", ".data16", ".textdata")

#: DHCP_EB_FEATURE_* tags (include/ipxe/features.h) and the name each FEATURE() gives them.
FEATURE_TAGS = {
    0x10: "PXEXT", 0x11: "iSCSI", 0x12: "AoE", 0x13: "HTTP", 0x14: "HTTPS", 0x15: "TFTP", 0x16: "FTP",
    0x17: "DNS", 0x18: "bzImage", 0x19: "MBOOT", 0x1A: "SLAM", 0x1B: "SRP", 0x20: "NBI", 0x21: "PXE",
    0x22: "ELF", 0x23: "COMBOOT", 0x24: "EFI", 0x25: "FCoE", 0x26: "VLAN", 0x27: "Menu", 0x28: "SDI",
    0x29: "NFS",
}
DHCP_EB_VERSION = 0xEB

_u32 = struct.Struct("<I").unpack_from


def _layouts(ptr: int):
    """struct pci_device_id, struct pci_driver and struct image for a pointer width (4: i386, 8: x86-64)."""
    P = Int32ul if ptr == 4 else Int64ul
    pad = Padding(ptr - 4)  # after a 32-bit member that precedes a pointer on x86-64
    device_id = Struct("name" / P, "vendor" / Int16ul, "device" / Int16ul, Padding(ptr - 4) if ptr == 8 else Padding(0),
                       "driver_data" / P)
    driver = Struct("ids" / P, "id_count" / Int32ul, "class_code" / Int32ul, "class_mask" / Int32ul,
                    Padding(4) if ptr == 8 else Padding(0), "probe" / P, "remove" / P)
    image = Struct("refcnt_count" / Int32ul, pad, "refcnt_free" / P, "list_next" / P, "list_prev" / P,
                   "uri" / P, "name" / P, "flags" / Int32ul, pad, "cmdline" / P, "data" / P, "len" / P,
                   "type" / P, "replacement" / P)
    return device_id, driver, image


LAYOUTS = {4: _layouts(4), 8: _layouts(8)}
#: The same three layouts as struct formats, for the loops that try every word of a section
#: (construct's parser costs tens of microseconds a record).
FAST = {4: (struct.Struct("<IHHI"), struct.Struct("<6I"), struct.Struct("<12I")),
        8: (struct.Struct("<QHH4xQ"), struct.Struct("<QIII4xQQ"), struct.Struct("<I4x5QI4x5Q"))}
assert all(f.size == c.sizeof() for w in (4, 8) for f, c in zip(FAST[w], LAYOUTS[w]))
#: Candidate struct pci_driver records looked at per section: Debian's ipxe.pxe, every driver
#: built in, has 61 (59 of them iterated); past this the section is look-alikes.
MAX_DRIVER_CANDIDATES = 1024


# --- results ---------------------------------------------------------------------------------

@dataclass
class Block:
    """One zbin-packed section: where its length field is, its packed and decoded sizes."""

    name: str
    offset: int  # of the 32-bit length field, in the input
    packed: int  # the length field: LZMA stream + CRC32
    size: int  # bytes after decoding

    def as_dict(self):
        return {"name": self.name, "offset": self.offset, "packed": self.packed, "size": self.size}


@dataclass(frozen=True)
class PciId:
    vendor: int
    device: int
    name: str
    driver_data: int

    @property
    def id(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"


@dataclass
class Driver:
    """One ``struct pci_driver``: its ID table and the class it insists on (mask 0: any class)."""

    index: int
    address: int
    class_code: int
    class_mask: int
    ids: list[PciId]

    def claims(self, vendor: int, device: int, class_code: int | None = None) -> PciId | None:
        """The entry through which pci_find_driver() would pick this driver, or None."""
        if class_code is not None and (self.class_code ^ class_code) & self.class_mask:
            return None
        for i in self.ids:
            if i.vendor in (PCI_ANY_ID, vendor) and i.device in (PCI_ANY_ID, device):
                return i
        return None

    @property
    def name(self) -> str:
        """iPXE keeps no driver name (struct pci_driver has none): the first ID's name stands for it."""
        return self.ids[0].name if self.ids else f"driver{self.index}"

    def as_dict(self):
        return {"index": self.index, "address": self.address, "name": self.name,
                "class": f"{self.class_code & 0xFFFFFF:06x}", "class_mask": f"{self.class_mask:06x}",
                "ids": [{"id": i.id, "name": i.name, "driver_data": i.driver_data} for i in self.ids]}


@dataclass
class Feature:
    name: str
    option: int  # the DHCP encapsulated option tag
    version: int

    def as_dict(self):
        return {"name": self.name, "option": f"{self.option:02x}", "version": self.version}


@dataclass
class Script:
    name: str
    address: int
    text: bytes

    def as_dict(self):
        return {"name": self.name, "address": self.address, "length": len(self.text),
                "text": self.text.decode("utf-8", "replace")}


@dataclass
class Payload:
    """What an iPXE build carries, decoded. ``container`` says how it was found."""

    container: str
    arch: str  # "i386" or "x86-64"
    blocks: list[Block] = field(default_factory=list)
    version: str | None = None
    version_option: tuple[int, int, int] | None = None
    build: str | None = None
    drivers: list[Driver] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decoded_size: int = 0

    def claims(self, vendor: int, device: int, class_code: int | None = None) -> list[tuple[Driver, PciId]]:
        out = []
        for d in self.drivers:
            hit = d.claims(vendor, device, class_code)
            if hit is not None:
                out.append((d, hit))
        return out

    def all_ids(self) -> list[tuple[Driver, PciId]]:
        return [(d, i) for d in self.drivers for i in d.ids]

    def as_dict(self):
        return {
            "container": self.container, "arch": self.arch, "build": self.build, "version": self.version,
            "version_option": ".".join(map(str, self.version_option)) if self.version_option else None,
            "decoded_size": self.decoded_size, "blocks": [b.as_dict() for b in self.blocks],
            "drivers": [d.as_dict() for d in self.drivers], "features": [f.as_dict() for f in self.features],
            "scripts": [s.as_dict() for s in self.scripts], "notes": list(self.notes),
        }


def _error(message: str, offset: int | None = None) -> FormatError:
    """A readable input whose iPXE payload is broken: exit status 1, as for a ROM with problems.

    ``offset`` (where the trouble is, in the input) rides along for lint's finding."""
    exc = FormatError(message, exit_code=1)
    exc.offset = offset  # type: ignore[attr-defined]
    return exc


# --- zbin blocks -----------------------------------------------------------------------------

def _crc32_le(data: bytes) -> int:
    """iPXE's crc32_le(0xffffffff, data): zlib's CRC32 without its final inversion."""
    return zlib.crc32(data) ^ 0xFFFFFFFF


class Budget:
    """What reading one input may cost, shared by every image of it (a combined ROM of twenty iPXE
    images gets the same allowance as one image): bytes decoded, and bytes hashed while looking for
    packed sections (each candidate costs a CRC32 over the length it claims)."""

    def __init__(self, decoded: int = MAX_DECODED, hashed: int = MAX_HASHED):
        self.decoded, self.hashed = decoded, hashed

    def hash(self, n: int, off: int) -> None:
        if n > self.hashed:
            raise _error(f"more than {MAX_HASHED >> 20} MiB of look-alike iPXE packed sections to check (CRC32) "
                         f"by 0x{off:x}: the input is not an iPXE build romlab can read; refused", off)
        self.hashed -= n


def _is_block(data: bytes, off: int, end: int, budget: Budget) -> bool:
    if off + 9 > end:
        return False
    length = _u32(data, off)[0]
    if length < 5 or off + 4 + length > end or data[off + 4] != 0:
        return False  # a range coder's first byte is always 0
    budget.hash(length - 4, off)
    return _crc32_le(memoryview(data)[off + 4:off + length]) == _u32(data, off + length)[0]


def _next_block(data: bytes, start: int, end: int, budget: Budget) -> tuple[int, int] | None:
    """The first CRC-checked packed block on a 16-byte boundary in [start, end), or None."""
    first = (start + 15) & ~15
    if first + 9 > end:
        return None
    # The length fields at every boundary at once, then a CRC32 only where one fits.
    n = (end - 8 - first + 15) // 16
    window = bytes(memoryview(data)[first:first + n * 16])
    lengths = array.array("I")
    lengths.frombytes(window + bytes(n * 16 - len(window)))
    if struct.pack("=H", 1) != b"\x01\x00":
        lengths.byteswap()
    lengths = lengths[::4]
    for k, length in enumerate(lengths):
        o = first + 16 * k
        if 5 <= length <= end - o - 4 and _is_block(data, o, end, budget):
            return o, length
    return None


def find_blocks(data: bytes, start: int, end: int, budget: Budget | None = None) -> list[tuple[int, int]]:
    """(offset, length field) of the packed sections of an iPXE image in [start, end), in order.

    zbin writes them as libprefix.S's ``.zinfo`` lists them: the prefix (copied), .text16.early,
    then (after the payload alignment and an uncompressed payload prefix, for .mrom and .lkrn)
    .text16.late, .data16 and .textdata, each on the next 16-byte boundary after the previous one.
    So the first two are looked for (the first CRC-checked block from where the search stands), the
    last two must follow; the search stops after four, as iPXE reads no further. Each CRC32
    checked is paid from ``budget``.
    """
    budget = budget or Budget()
    found: list[tuple[int, int]] = []
    pos = start
    while len(found) < len(SECTION_NAMES):
        if len(found) < 2:
            hit = _next_block(data, pos, end, budget)
        else:
            # _max_align (16) in pcbios.lds; the 512 of an .lkrn's or .mrom's sectors too
            hit = next(((at, _u32(data, at)[0]) for at in dict.fromkeys(((pos + 15) & ~15, (pos + 511) & ~511))
                        if _is_block(data, at, end, budget)), None)
        if hit is None:
            break
        found.append(hit)
        pos = hit[0] + 4 + hit[1]
    return found


def _explain_broken(data: bytes, found: list[tuple[int, int]], start: int, end: int) -> tuple[str, int]:
    """Why fewer than four packed blocks were found, and where: look where the next block should start."""
    where = [(found[-1][0] + 4 + found[-1][1] + 15) & ~15] if found else []
    where += [(w + 511) & ~511 for w in where]
    for pos in where:
        if pos + 4 > end:
            return (f"the iPXE payload stops after {len(found)} of its 4 packed sections: the next one would start "
                    f"at 0x{pos:x}, at or past the end of the image (0x{end:x}); the file is truncated"), end
        length = _u32(data, pos)[0]
        if data[pos:end].count(data[pos]) == end - pos:
            continue  # padding: the block is not here
        if pos + 4 + length > end:
            return (f"the iPXE packed section at 0x{pos:x} says it holds {length} bytes but only {end - pos - 4} "
                    "remain in the image: the payload is truncated or its length field is corrupt"), pos
        if length >= 5:
            return f"the iPXE packed section at 0x{pos:x} ({length} bytes) fails its CRC32: the payload is corrupt", pos
    return (f"found {len(found)} of the 4 packed sections an iPXE image holds (text16.early, text16.late, data16, "
            f"textdata) between 0x{start:x} and 0x{end:x}: the payload is corrupt or truncated"), start


def _unlzma(data: bytes, off: int, length: int, budget: Budget) -> bytes:
    packed = memoryview(data)[off + 4:off + length]
    dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "dict_size": MAX_DECODED}])
    try:
        out = dec.decompress(packed, max_length=budget.decoded + 1)
    except lzma.LZMAError as exc:
        raise _error(f"the iPXE packed section at 0x{off:x} is not a valid LZMA stream ({exc}): the payload is "
                     "corrupt", off) from None
    if len(out) > budget.decoded:
        raise _error(f"the iPXE packed section at 0x{off:x} expands beyond the {budget.decoded} bytes left "
                     f"(romlab decodes at most {MAX_DECODED >> 20} MiB of payload per file): refused", off)
    if not dec.eof:
        raise _error(f"the iPXE packed section at 0x{off:x} ends before its LZMA end marker: the payload is "
                     "truncated or corrupt", off)
    budget.decoded -= len(out)
    return out


def unbcj(buf: bytes) -> bytes:
    """Undo zbin's x86 BCJ filter, as unlzma.S does after decoding.

    zbin turned each rel32 operand of an E8/E9 opcode into an absolute offset (targets in
    [0, limit)) and moved positives in [limit-offset, limit) to [-offset, 0); limit is the length
    less 5, and scanning resumes after the operand.
    """
    b = bytearray(buf)
    limit = len(b) - 5
    pos = 0
    find = b.find
    while pos <= limit:
        i = find(b"\xe8", pos, limit + 1)
        j = find(b"\xe9", pos, limit + 1)
        if i < 0 and j < 0:
            break
        pos = i if j < 0 or (0 <= i < j) else j
        value = _u32(b, pos + 1)[0]
        if value < limit:
            struct.pack_into("<I", b, pos + 1, (value - pos) & 0xFFFFFFFF)
        elif (~value & 0xFFFFFFFF) < pos:
            struct.pack_into("<I", b, pos + 1, (value + limit) & 0xFFFFFFFF)
        pos += 5
    return bytes(b)


def decode_x86(data: bytes, start: int, end: int, container: str, budget: Budget | None = None) -> Payload:
    """The payload of an iPXE x86 image occupying data[start:end]; its cost is paid from ``budget``."""
    budget = budget or Budget()
    found = find_blocks(data, start, end, budget)
    if len(found) != 4:
        if not found:
            raise _error(f"no iPXE packed section with a valid CRC32 between 0x{start:x} and 0x{end:x}: the payload "
                         "is corrupt, truncated or not compressed", start)
        message, where = _explain_broken(data, found, start, end)
        raise _error(message, where)
    payload = Payload(container, "i386")
    textdata = b""
    for name, (off, length) in zip(SECTION_NAMES, found):
        out = unbcj(_unlzma(data, off, length, budget))
        payload.blocks.append(Block(name, off, length, len(out)))
        payload.decoded_size += len(out)
        textdata = out
    _read_tables(payload, Space(textdata, 0, 4, [(0, len(textdata))]))
    return payload


# --- an address space: the decoded .textdata, or a mapped PE image ----------------------------

class Space:
    """Bytes at virtual addresses, with the ranges that hold code."""

    def __init__(self, data: bytes, base: int, ptr: int, code: list[tuple[int, int]]):
        self.data, self.base, self.ptr, self.code = data, base, ptr, code  # code ranges as offsets

    def offset(self, va: int, size: int = 1) -> int | None:
        off = va - self.base
        return off if 0 <= off and off + size <= len(self.data) else None

    def in_code(self, va: int) -> bool:
        off = va - self.base
        return any(lo <= off < hi for lo, hi in self.code)

    def cstring(self, va: int, limit: int = 256, empty: bool = False) -> str | None:
        """The printable NUL-terminated string at ``va`` (or None); an empty one only when ``empty``."""
        off = self.offset(va)
        if off is None:
            return None
        endp = self.data.find(b"\0", off, off + limit + 1)
        if endp < off or (endp == off and not empty):
            return None
        raw = self.data[off:endp]
        if all(32 <= c < 127 for c in raw):
            return raw.decode("ascii")
        return None

    def words(self) -> array.array:
        w = array.array("I" if self.ptr == 4 else "Q")
        n = len(self.data) // self.ptr * self.ptr
        w.frombytes(self.data[:n])
        if struct.pack("=H", 1) != b"\x01\x00":
            w.byteswap()
        return w

    def referenced(self, targets: set[int]) -> set[int]:
        """Which of ``targets`` (virtual addresses) the code refers to.

        i386 code loads a table's bounds as 32-bit immediates. x86-64 code reaches them RIP-relative:
        a ModRM byte with mod 00 and r/m 101, then a 32-bit displacement from the next instruction
        (assumed to end with the displacement, as a LEA or MOV of an address does).
        """
        hits: set[int] = set()
        for lo, hi in self.code:
            chunk = self.data[lo:hi]
            if self.ptr == 4:
                if len(targets) <= 8:
                    hits.update(t for t in targets if chunk.find(struct.pack("<I", t & 0xFFFFFFFF)) >= 0)
                    continue
                # Many targets: every 32-bit word at every byte offset, each looked up once.
                for k in range(4):
                    n = (len(chunk) - k) // 4 * 4
                    w = array.array("I")
                    w.frombytes(chunk[k:k + n])
                    if struct.pack("=H", 1) != b"\x01\x00":
                        w.byteswap()
                    hits.update(targets.intersection(w))
                continue
            for m in _RIP_MODRM.finditer(chunk):
                at = m.start() + 1
                if at + 4 <= len(chunk):
                    t = self.base + lo + at + 4 + struct.unpack_from("<i", chunk, at)[0]
                    if t in targets:
                        hits.add(t)
        return hits


_RIP_MODRM = re.compile(rb"[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]")


# --- tables ----------------------------------------------------------------------------------

def _read_tables(payload: Payload, space: Space) -> None:
    _read_features(payload, space)
    _read_version(payload, space)
    _read_drivers(payload, space)
    _read_scripts(payload, space)


def _feature_options(data: bytes) -> tuple[int, int, list[tuple[int, int]], tuple[int, int, int]] | None:
    """The dhcp_features run (start, end, [(tag, version)], version) with the most feature options."""
    versions = _version_prefixes(data)
    best = None
    for m in re.finditer(rb"\xeb\x03", data):
        i = m.start()
        if i + 5 > len(data):
            continue
        version = tuple(data[i + 2:i + 5])
        s = i
        while s >= 3 and data[s - 3] in FEATURE_TAGS and data[s - 2] == 1:
            s -= 3
        e = i + 5
        while e + 3 <= len(data) and data[e] in FEATURE_TAGS and data[e + 1] == 1:
            e += 3
        opts = [(data[p], data[p + 2]) for p in range(s, i, 3)] + [(data[p], data[p + 2]) for p in range(i + 5, e, 3)]
        if version not in versions:
            continue  # no string begins with these numbers: an x86 "jmp short" and its neighbours
        if best is None or len(opts) > len(best[2]):
            best = (s, e, opts, version)
    return best


def _version_prefixes(data: bytes) -> set[tuple[int, int, int]]:
    """Every (major, minor, patch) with which some string in ``data`` begins: a NUL, then the three
    numbers as str() spells them (the patch may run on into more digits, as "1.0.0+" or "1.0.01"
    begins with "1.0.0"). One pass, where a find per candidate option would be quadratic."""
    out = set()
    for m in re.finditer(rb"\0(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.([0-9]+)", data):
        major, minor, patch = int(m[1]), int(m[2]), m[3]
        for k in range(1, min(3, len(patch)) + 1):
            text = patch[:k].decode()
            if str(int(text)) == text:
                out.add((major, minor, int(text)))
    return out


def _read_features(payload: Payload, space: Space) -> None:
    found = _feature_options(space.data)
    if found is None:
        payload.notes.append("no dhcp_features table (DHCP option 0xeb with the version) was found")
        return
    _, _, opts, version = found
    payload.version_option = version
    want = sorted(FEATURE_TAGS[t] for t, _ in opts)
    versions = {FEATURE_TAGS[t]: v for t, v in opts}
    tags = {FEATURE_TAGS[t]: t for t, _ in opts}
    order = _feature_name_table(space, want)
    if order is None:
        if opts:
            payload.notes.append("the features name table was not found: names come from the DHCP option tags")
        order = [FEATURE_TAGS[t] for t, _ in opts]
    payload.features = [Feature(n, tags[n], versions[n]) for n in order]


def _feature_name_table(space: Space, want: list[str]) -> list[str] | None:
    """The ``features`` linker table: len(want) consecutive pointers to exactly the names in ``want``.

    One window slides over the words, counting how far its names are from ``want``."""
    if not want or len(want) > len(FEATURE_TAGS):
        return None  # each FEATURE() is linked once: more options than tags is no table
    data = space.data
    addrs = {}
    for name in set(want):
        for m in re.finditer(re.escape(name.encode()) + b"\0", data):  # tail-merged strings too
            addrs[space.base + m.start()] = name
    if not addrs:
        return None
    names = [addrs.get(w) for w in space.words()]
    n = len(want)
    target: dict[str | None, int] = {}
    for name in want:
        target[name] = target.get(name, 0) + 1
    have: dict[str | None, int] = {}
    off = len(target)  # names whose count in the window differs from target's

    def move(name, step):
        nonlocal off
        before = have.get(name, 0)
        have[name] = before + step
        off += (before == target.get(name, 0)) - (before + step == target.get(name, 0))

    for j, name in enumerate(names):
        move(name, 1)
        if j >= n:
            move(names[j - n], -1)
        if j >= n - 1 and off == 0:
            return names[j - n + 1:j + 1]
    return None


def _twins(space: Space, text: str) -> bool:
    """Whether ``text`` has a UTF-16 copy (version.c's w-strings), remembered per text."""
    seen = space.__dict__.setdefault("_twins", {})
    if text not in seen:
        seen[text] = space.data.find(text.encode("utf-16-le") + b"\0\0") >= 0
    return seen[text]


#: How many strings may be tried as the version, and as the build name, before giving up: version.c
#: emits one of each; a section full of look-alikes must not cost a search of it per look-alike.
MAX_VERSION_CANDIDATES = 32


_BUILD_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.[a-z0-9]+")


def _read_version(payload: Payload, space: Space) -> None:
    if payload.version_option is None:
        return
    data = space.data
    needle = b"\0" + ".".join(map(str, payload.version_option)).encode()
    best = None
    for k, m in enumerate(re.finditer(re.escape(needle), data)):
        if k == MAX_VERSION_CANDIDATES:
            break
        text = space.cstring(space.base + m.start() + 1)
        if text is None:
            continue
        if _twins(space, text):
            best = (m.start() + 1, text)
            break
        if best is None:
            best = (m.start() + 1, text)
    if best is None:
        payload.notes.append("no version string begins with the version option's numbers")
        return
    at, payload.version = best
    if not _twins(space, payload.version):
        payload.notes.append("the version string has no UTF-16 copy (product_wversion) next to it")
    near = []
    lo, hi = max(0, at - 512), min(len(data), at + 512)
    tried = 0
    for m in re.finditer(rb"(?<=\0)[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.[a-z0-9]+\0", data[lo:hi]):
        text = m.group()[:-1].decode()
        pos = lo + m.start()
        if text == payload.version or not _BUILD_NAME.fullmatch(text):
            continue
        tried += 1
        if tried > MAX_VERSION_CANDIDATES:
            break
        if _twins(space, text):
            near.append((abs(pos - at), text))
    if near:
        payload.build = min(near)[1]
    else:
        payload.notes.append("no build name (a file name with a UTF-16 copy) lies next to the version string")


#: The class masks PCI_CLASS_ID can build: each of the three class bytes 00 or ff.
_CLASS_MASKS = frozenset(a | b | c for a in (0, 0xFF) for b in (0, 0xFF00) for c in (0, 0xFF0000))


def _read_drivers(payload: Payload, space: Space) -> None:
    device_id, driver, _ = FAST[space.ptr]
    rec, isz, ptr = driver.size, device_id.size, space.ptr
    words = space.words()
    wide = ptr == 8
    per = rec // ptr
    in_code, offset = space.in_code, space.offset
    candidates: dict[int, Driver] = {}
    for j in range(len(words) - per + 1):
        # the word layout of struct pci_driver, checked before construct parses the record
        count = words[j + 1] & 0xFFFFFFFF
        if not 1 <= count <= 4096:
            continue
        mask = words[j + 2] & 0xFFFFFFFF if wide else words[j + 3]
        probe, remove = (words[j + 3], words[j + 4]) if wide else (words[j + 4], words[j + 5])
        if words[j] % 4 or mask not in _CLASS_MASKS or not (in_code(probe) and in_code(remove)):
            continue
        va = space.base + j * ptr
        if j * ptr + rec > len(space.data):
            break
        d_ids, _, d_class, d_mask, _, _ = driver.unpack_from(space.data, j * ptr)
        ids_off = offset(d_ids, count * isz)
        if ids_off is None:
            continue
        ids = []
        for k in range(count):
            e_name, e_vendor, e_device, e_data = device_id.unpack_from(space.data, ids_off + k * isz)
            name = space.cstring(e_name, 64, empty=True)  # sis190.c names some IDs ""
            if name is None or (len(space.code) > 1 and in_code(e_name)):
                break
            ids.append(PciId(e_vendor, e_device, name, e_data))
        else:
            candidates[va] = Driver(0, va, d_class, d_mask, ids)
            if len(candidates) == MAX_DRIVER_CANDIDATES:
                payload.notes.append(f"more than {MAX_DRIVER_CANDIDATES} records look like PCI drivers: the "
                                     "rest of the section was not searched")
                break
    runs: list[list[Driver]] = []
    for va in sorted(candidates):
        if runs and runs[-1][-1].address + rec == va:
            runs[-1].append(candidates[va])
        else:
            runs.append([candidates[va]])
    bounds = {r[0].address for r in runs} | {r[-1].address + rec for r in runs}
    refs = space.referenced(bounds)
    tables = [r for r in runs if r[0].address in refs and r[-1].address + rec in refs]
    for r in tables:
        for d in r:
            d.index = len(payload.drivers)
            payload.drivers.append(d)
    if len(tables) > 1:
        payload.notes.append(f"{len(tables)} separate runs of PCI driver records are iterated by code")


#: struct image as embedded.c initialises it: refcnt {0, ref_no_free}, no list links or URI, a
#: name, no flags or command line, data and length, no type or replacement (the zero words).
#: iPXE embeds the files named by EMBED= (embedded.c's array), in practice one script or a few.
MAX_SCRIPTS = 16


def _read_scripts(payload: Payload, space: Space) -> None:
    """embedded.c's images: each one's data lies in the section, is followed by the NUL byte
    embedded.c appends, and overlaps neither another image's data nor an image record; so all of
    them together hold at most the section's bytes."""
    _, _, image = FAST[space.ptr]
    size = image.size
    data = space.data
    records: list[int] = []
    found: list[tuple[int, int, str, int]] = []  # (data offset, length, name, address)
    w = space.words()
    # the zero runs of _EMBEDDED_IMAGE, word by word (words are pointer-sized: on x86-64 the
    # reference count and its padding, and the flags and theirs, are one word each)
    starts = [j for j in range(len(w) - size // space.ptr + 1)
              if not (w[j] or w[j + 2] or w[j + 3] or w[j + 4] or w[j + 6] or w[j + 7] or w[j + 10] or w[j + 11])
              and w[j + 1]]
    for j in starts:
        off = j * space.ptr
        _, free, _, _, _, name_va, _, _, data_va, length, _, _ = image.unpack_from(data, off)
        if not space.in_code(free) or not 0 < length < len(data):
            continue
        name = space.cstring(name_va, 128)
        at = space.offset(data_va, length + 1)
        if name is None or at is None or data[at + length] != 0:
            continue
        records.append(off)
        found.append((at, length, name, data_va))
        if len(found) > 4 * MAX_SCRIPTS:
            break  # a section of look-alikes: no need to look further
    taken: list[tuple[int, int]] = []
    for at, length, name, va in found:
        if any(at < r + size and r < at + length for r in records):
            continue  # its data would hold an image record: not a file embedded.c placed
        if any(at < hi and lo < at + length for lo, hi in taken):
            continue
        if len(taken) == MAX_SCRIPTS:
            payload.notes.append(f"more than {MAX_SCRIPTS} embedded images found; the rest are not shown")
            break
        taken.append((at, at + length))
        payload.scripts.append(Script(name, va, data[at:at + length]))


# --- PE images -------------------------------------------------------------------------------

_PE_SECTION = struct.Struct("<8sIIIIIIHHI")


def map_pe(pe: bytes, limit: int = MAX_PE_IMAGE) -> Space:
    """A PE image laid out at its virtual addresses (raw data only), with its code sections; one
    that needs more than ``limit`` bytes of memory is refused."""
    if len(pe) < 0x40 or pe[:2] != b"MZ":
        raise _error("the EFI image holds no PE file (no 'MZ')")
    lfanew = _u32(pe, 0x3C)[0]
    if lfanew + 24 > len(pe) or pe[lfanew:lfanew + 4] != b"PE\0\0":
        raise _error(f"the PE header pointer 0x{lfanew:x} finds no 'PE' signature")
    machine, nsect = struct.unpack_from("<HH", pe, lfanew + 4)
    opt_size = struct.unpack_from("<H", pe, lfanew + 20)[0]
    opt = lfanew + 24
    if opt + 60 > len(pe):
        raise _error("the PE optional header runs past the end of the image: truncated")
    magic = struct.unpack_from("<H", pe, opt)[0]
    if magic == 0x10B:
        ptr, base = 4, _u32(pe, opt + 28)[0]
    elif magic == 0x20B:
        ptr, base = 8, struct.unpack_from("<Q", pe, opt + 24)[0]
    else:
        raise _error(f"the PE optional header magic is 0x{magic:x}, neither PE32 nor PE32+")
    size = _u32(pe, opt + 56)[0]
    if size > min(limit, MAX_PE_IMAGE):
        raise _error(f"the PE image says it needs {size} bytes of memory, more than the {min(limit, MAX_PE_IMAGE)} "
                     f"bytes romlab still maps for this file (at most {MAX_DECODED >> 20} MiB of payload per file)")
    table = opt + opt_size
    if table + nsect * _PE_SECTION.size > len(pe):
        raise _error("the PE section table runs past the end of the image: truncated")
    mem = bytearray(size)
    code = []
    for k in range(nsect):
        _, vsize, vaddr, rsize, rptr, *_, chars = _PE_SECTION.unpack_from(pe, table + k * _PE_SECTION.size)
        n = min(rsize, vsize or rsize)
        if vaddr + max(n, vsize) > size:
            raise _error(f"PE section {k} lies outside the image's SizeOfImage ({size} bytes)")
        if n and rptr + n > len(pe):
            raise _error(f"PE section {k} says its data is at 0x{rptr:x}-0x{rptr + n - 1:x}, past the end of the "
                         f"image ({len(pe)} bytes): truncated")
        mem[vaddr:vaddr + n] = pe[rptr:rptr + n]
        if chars & 0x20000020:  # IMAGE_SCN_CNT_CODE or IMAGE_SCN_MEM_EXECUTE
            code.append((vaddr, vaddr + max(n, vsize)))
    space = Space(bytes(mem), base, ptr, code)
    space.machine = machine  # type: ignore[attr-defined]
    return space


def decode_pe(pe: bytes, container: str, budget: Budget | None = None) -> Payload | None:
    """The tables of an iPXE EFI image; None when the PE holds no iPXE (no dhcp_features table).
    The mapped image is paid from ``budget``'s decoded bytes, as a packed section's output is."""
    budget = budget or Budget()
    space = map_pe(pe, budget.decoded)
    budget.decoded -= len(space.data)
    payload = Payload(container, "i386" if space.ptr == 4 else "x86-64")
    payload.decoded_size = len(space.data)
    _read_tables(payload, space)
    if payload.version_option is None:
        return None
    return payload


# --- whole inputs ----------------------------------------------------------------------------

def efi_pe_bytes(data: bytes, img, limit: int = MAX_PE_IMAGE) -> bytes:
    """The PE file of an EFI ROM image, EFI-decompressed when its header says so (to at most ``limit``)."""
    h = img.header
    start = img.offset + h.efi_image_offset
    end = img.offset + img.available
    if not img.offset < start < end:
        raise _error(f"image {img.index}: EfiImageHeaderOffset 0x{h.efi_image_offset:x} is outside the image")
    body = data[start:end]
    if h.compression == 1:
        from romtools.eficompress import decompress

        try:
            return decompress(body, max_size=min(limit, MAX_PE_IMAGE))
        except FormatError as exc:
            raise _error(f"image {img.index}: {exc}") from None
    return body


def for_image(data: bytes, walk, img, budget: Budget | None = None) -> Payload | None:
    """The iPXE payload of one walked image, or None when the image is not an iPXE build.

    A legacy image is iPXE's when it has an iPXE header (word 0x10); an EFI image when its PE
    holds iPXE's dhcp_features table. Trouble in the payload raises a ``FormatError`` (exit 1)
    whose ``offset`` says where; an EFI image that is not in iPXE's efirom layout and cannot be
    read is simply not an iPXE payload. Callers reading several images of one input pass one
    ``Budget`` to all of them.
    """
    budget = budget or Budget()
    try:
        if img.header_kind == "legacy" and img.ipxe is not None:
            end = img.offset + img.available
            nxt = walk.images[img.index + 1] if img.index + 1 < len(walk.images) else None
            if nxt is not None and nxt.pcir is not None and nxt.pcir.code_type == 0xFF:
                end = nxt.offset + nxt.available  # an .mrom: its payload is the vendor-specific image after it
            return decode_x86(data, img.offset, end, "legacy option ROM image", budget)
        if img.header_kind == "efi" and img.header.efi_signature == 0x0EF1 and img.header.compression in (0, 1):
            from romtools.walker import ipxe_efirom_layout

            try:
                return decode_pe(efi_pe_bytes(data, img, budget.decoded), "EFI option ROM image", budget)
            except FormatError:
                if ipxe_efirom_layout(img):
                    raise  # iPXE's own layout: the driver is iPXE's, and it is broken
                return None  # another vendor's driver that romlab cannot map is no iPXE payload
        return None
    except FormatError as exc:
        if getattr(exc, "offset", None) is None:
            exc.offset = img.offset  # type: ignore[attr-defined]
        raise


def for_rom(data: bytes, walk) -> dict[int, Payload]:
    """Every iPXE payload of a walked option ROM, by image index."""
    out = {}
    budget = Budget()
    for img in walk.images:
        p = for_image(data, walk, img, budget)
        if p is not None:
            out[img.index] = p
    return out


def container_of(data: bytes) -> str | None:
    """What kind of iPXE file ``data`` is when it is not an option ROM, or None if none romlab knows."""
    if data[:2] == b"MZ":
        return "EFI PE file"
    if len(data) > 0x206 and data[0x1FE:0x200] == b"\x55\xaa" and data[0x202:0x206] == b"HdrS":
        return "Linux kernel image (.lkrn)"
    # A PXE NBP is loaded at 0000:7C00 and entered at its first byte; iPXE's pxeprefix.S begins by
    # reloading CS with a far jump to segment 07C0h (EA ofs16 C0 07). Without it, packed sections
    # found further in belong to something else (an option ROM inside a larger image: scan's job).
    if len(data) >= 5 and data[0] == 0xEA and data[3:5] == b"\xc0\x07":
        return "PXE boot file (.pxe, .kpxe)"
    return None


def for_file(data: bytes, budget: Budget | None = None) -> Payload:
    """The payload of an iPXE file that is not an option ROM: .pxe/.kpxe, .lkrn, or an EFI PE file."""
    kind = container_of(data)
    if kind == "EFI PE file":
        p = decode_pe(data, kind, budget)
        if p is None:
            raise FormatError("no option ROM at offset 0, and the PE file holds no iPXE dhcp_features table: it is "
                              "neither an option ROM nor an iPXE build romlab can read")
        return p
    if kind is None:
        raise FormatError("no option ROM at offset 0, and not an iPXE .pxe/.kpxe/.lkrn/.efi file either")
    budget = budget or Budget()
    found = find_blocks(data, 0, len(data), budget)
    if not found:
        raise FormatError("no option ROM at offset 0 and no iPXE packed section in the file: it is neither an "
                          "option ROM nor an iPXE .pxe/.kpxe/.lkrn/.efi file")
    return decode_x86(data, 0, len(data), kind, budget)


def as_file(data: bytes, not_rom: FormatError) -> Payload:
    """The payload of ``data``, which the walker refused with ``not_rom`` (not an option ROM).

    An iPXE .pxe/.kpxe/.lkrn/.efi file is read; a broken payload is a FormatError with exit
    status 1. Anything else raises ``not_rom`` itself, so the user reads the option-ROM message
    (with its hint to scan a larger image) rather than one about iPXE files.
    """
    try:
        return for_file(data)
    except FormatError as exc:
        if exc.exit_code == 1:
            raise
        raise not_rom from None


def retarget_warnings(data: bytes, images: list[int], vendor: int | None, device: int | None,
                      added: list[int] = ()) -> list[str]:
    """What ``patch`` should say before it points images at IDs their iPXE payload does not drive.

    The same judgement as lint's ipxe-no-driver (for the new PCIR ID) and ipxe-device-list-unclaimed
    (for device-list entries added); a payload that cannot be read is said too, but does not stop
    an edit of the headers.
    """
    from romtools.walker import walk as walk_rom

    w = walk_rom(data)
    out = []
    budget = Budget()
    for i in images:
        img = w.images[i]
        try:
            payload = for_image(data, w, img, budget)
        except FormatError as exc:
            out.append(f"image {i}: the iPXE payload cannot be read, so whether it drives the new IDs is unknown: {exc}")
            continue
        if payload is None or img.pcir is None:
            continue
        v = img.pcir.vendor_id if vendor is None else vendor
        d = img.pcir.device_id if device is None else device
        if (vendor is not None or device is not None) and not payload.claims(v, d, img.pcir.class_code):
            out.append(f"image {i}: no PCI driver in its iPXE payload ({payload.build or 'iPXE'}) claims {v:04x}:{d:04x}; "
                       "iPXE would load on that device and not drive it (romlab inspect --drivers lists what it drives)")
        for a in added:
            if not payload.claims(v, a, img.pcir.class_code):
                out.append(f"image {i}: no PCI driver in its iPXE payload claims the added device-list entry {v:04x}:{a:04x}")
    return out
