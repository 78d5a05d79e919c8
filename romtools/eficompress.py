"""EFI 1.1 compression, the format of compressed EFI option-ROM images (CompressionType 1).

``compress`` makes the same bytes as EDK2's EfiCompress (the encoder EfiRom and iPXE's
efirom use), so a rebuilt image can be compared with a shipped one byte for byte.
``decompress`` takes data from ROMs of unknown origin: it checks the header, every code
table and every copy, and turns anything malformed into a one-line ``RomlabError`` rather
than a crash, a hang or a huge allocation.  Both run in C (``romtools/c/eficompress.c``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from hw.errors import FormatError

# Refuse to expand beyond this unless the caller says otherwise: a PCI expansion ROM is at
# most 16 MiB, so 64 MiB leaves room without letting a forged header claim gigabytes.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024
HEADER_SIZE = 8


def _lib():
    try:
        from romtools._eficompress import ffi, lib
    except ImportError as exc:  # the extension is built by `pip install -e .`
        raise FormatError(f"the EFI compression extension is not built ({exc}); "
                       "run scripts/setup.sh or `pip install -e .`") from exc
    return ffi, lib


@dataclass(frozen=True)
class Header:
    """The 8-byte header: stream bytes after the header, and bytes it expands to."""

    compressed_size: int
    original_size: int


def read_header(data: bytes) -> Header:
    """The header fields, without decoding; raises RomlabError if fewer than 8 bytes."""
    if len(data) < HEADER_SIZE:
        raise FormatError(f"EFI-compressed data needs an 8-byte header, got {len(data)} bytes; "
                       "this is not EFI-compressed data")
    comp, orig = struct.unpack_from("<II", data, 0)
    return Header(comp, orig)


@dataclass(frozen=True)
class CompressStats:
    blocks: int
    fixups: int  # matches the finder offered that did not hold; 0 unless it has a bug


def compress_with_stats(data: bytes) -> tuple[bytes, CompressStats]:
    """``compress`` plus what the encoder did (block count, match-finder fix-ups)."""
    ffi, lib = _lib()
    if len(data) > lib.EFIC_MAX_INPUT:
        raise FormatError(f"{len(data)} bytes is too much for EFI compression "
                       f"(limit {lib.EFIC_MAX_INPUT} bytes)")
    src = ffi.from_buffer("uint8_t[]", data)
    out = ffi.new("uint8_t **")
    out_len = ffi.new("size_t *")
    stats = ffi.new("struct efic_stats *")
    rc = lib.efic_compress(src, len(data), out, out_len, stats)
    if rc == lib.EFIC_ENOMEM:
        raise MemoryError("EFI compression ran out of memory")
    if rc != lib.EFIC_OK:
        raise FormatError(f"EFI compression failed internally (code {rc}); "
                       "please report it with the input that caused it")
    try:
        result = ffi.buffer(out[0], out_len[0])[:]
    finally:
        lib.efic_release(out[0])
    return result, CompressStats(int(stats.blocks), int(stats.fixups))


def compress(data: bytes) -> bytes:
    """EFI 1.1-compress ``data``: header, then the block stream, as EfiCompress writes it."""
    return compress_with_stats(data)[0]


_TABLES = {0: "", 1: "extra-length table", 2: "char/length table", 3: "position table"}


def _fault_message(lib, rc: int, f) -> str:
    a, b = int(f.a), int(f.b)
    table = _TABLES.get(f.table, "")
    where = f"block {f.block} at byte {HEADER_SIZE + f.bit // 8:#x}"
    at = f"EFI-compressed data, {table} in {where}" if table else f"EFI-compressed data, {where}"
    if rc == lib.EFIC_ESHORT:
        return (f"EFI-compressed data needs an 8-byte header, got {a} bytes; "
                "this is not EFI-compressed data")
    if rc == lib.EFIC_ECOMPSIZE:
        return (f"EFI-compressed header says {a} bytes of stream follow but only {b} do; "
                "the data is truncated or not EFI-compressed")
    if rc == lib.EFIC_EORIGSIZE:
        return (f"EFI-compressed header says the data expands to {a} bytes, above the "
                f"{b}-byte limit; pass a larger max_size if that size is real")
    if rc == lib.EFIC_EBITS:
        return f"{at}: the stream ends early; the data is truncated or its header's sizes are wrong"
    if rc == lib.EFIC_EBLOCK:
        return f"{at}: a block of zero symbols; the data is corrupt"
    if rc == lib.EFIC_ECOUNT:
        return f"{at}: lists {a} code lengths for {b} symbols; the data is corrupt"
    if rc == lib.EFIC_ESYMBOL:
        return f"{at}: names symbol {a} of only {b}; the data is corrupt"
    if rc == lib.EFIC_ELENGTH:
        return f"{at}: a code length above 16; the data is corrupt"
    if rc == lib.EFIC_ERUN:
        return f"{at}: runs zero lengths to {a}, past its {b} entries; the data is corrupt"
    if rc == lib.EFIC_EINCOMPLETE:
        return f"{at}: code lengths leave part of the code space unused; the data is corrupt"
    if rc == lib.EFIC_EOVERFULL:
        return f"{at}: more codes than its lengths allow; the data is corrupt"
    if rc == lib.EFIC_EDISTANCE:
        return f"{at}: copies from {a} bytes back with only {b} written; the data is corrupt"
    if rc == lib.EFIC_EOVERRUN:
        return (f"{at}: copies {a} bytes with {b} left before the size in the header; "
                "the data is corrupt or the header is wrong")
    if rc == lib.EFIC_ELEFTOVER:
        return (f"{at}: {a} more symbols than the size in the header needs; "
                "the data is corrupt or the header is wrong")
    return f"{at}: decoding failed (code {rc}); the data is corrupt"


def decompress(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Expand EFI 1.1-compressed ``data`` (header included).

    Bytes after the stream the header announces are ignored, since ROM images pad a
    compressed driver out to a 512-byte boundary.  A header claiming more than
    ``max_size`` bytes is refused before anything is allocated.
    """
    if max_size < 0:
        raise ValueError("max_size must not be negative")
    ffi, lib = _lib()
    src = ffi.from_buffer("uint8_t[]", data)
    out = ffi.new("uint8_t **")
    out_len = ffi.new("size_t *")
    fault = ffi.new("struct efic_fault *")
    rc = lib.efic_decompress(src, len(data), min(max_size, 2**62), out, out_len, fault)
    if rc == lib.EFIC_ENOMEM:
        raise MemoryError("EFI decompression ran out of memory")
    if rc != lib.EFIC_OK:
        raise FormatError(_fault_message(lib, rc, fault))
    try:
        return ffi.buffer(out[0], out_len[0])[:]
    finally:
        lib.efic_release(out[0])
