"""EFI 1.1 compression against EDK2's own encoder and decoder (PyPI uefi-firmware).

The corpus is the PE driver inside each of Debian's iPXE EFI ROMs.  EDK2's decoder must
restore romlab's output, romlab's decoder must restore EDK2's, and romlab's output must
be byte-identical to EDK2's.  Streams built bit by bit here from the format description
check the decoder's answers and its refusals; hypothesis throws random and mutated
streams at it, and only RomlabError may come out.
"""
from __future__ import annotations

import faulthandler
import random
import struct

import pefile
import pytest
from conftest import IPXE_QEMU, corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uefi_firmware.efi_compressor import EfiCompress, EfiDecompress

from hw.errors import RomlabError
from romtools.eficompress import (
    DEFAULT_MAX_SIZE,
    compress,
    compress_with_stats,
    decompress,
    read_header,
)

ROMS = [f"efi-{n}.rom" for n in ("e1000", "e1000e", "eepro100", "ne2k_pci", "pcnet", "rtl8139",
                                 "virtio", "vmxnet3")]


def efi_driver(rom_name: str) -> bytes:
    """The PE driver in a Debian iPXE EFI ROM.

    The EFI image starts where the legacy image ends (PCIR ImageLength * 512, PCIR pointer
    at 0x18); in it, CompressionType is the u16 at 0x0C and the PE starts at
    EfiImageHeaderOffset (u16 at 0x16).  The PE ends where its last section's raw data
    does; the image's InitializationSize (u16 at 0x02, * 512) bounds it.
    """
    rom = corpus(IPXE_QEMU / rom_name).read_bytes()
    pcir = struct.unpack_from("<H", rom, 0x18)[0]
    assert rom[pcir:pcir + 4] == b"PCIR"
    efi = rom[struct.unpack_from("<H", rom, pcir + 0x10)[0] * 512:]
    assert efi[:2] == b"\x55\xaa" and struct.unpack_from("<I", efi, 4)[0] == 0x0EF1
    assert struct.unpack_from("<H", efi, 0x0C)[0] == 0, "Debian ships these drivers uncompressed"
    start = struct.unpack_from("<H", efi, 0x16)[0]
    init = struct.unpack_from("<H", efi, 0x02)[0] * 512
    pe = pefile.PE(data=efi[start:init], fast_load=True)
    end = max([s.PointerToRawData + s.SizeOfRawData for s in pe.sections]
              + [pe.OPTIONAL_HEADER.SizeOfHeaders])
    assert start + end <= init
    return efi[start:start + end]


@pytest.fixture(scope="module")
def edk2_streams():
    """EDK2's compression of each driver, made once for the module."""
    out = {}
    for name in ROMS:
        drv = efi_driver(name)
        out[name] = (drv, EfiCompress(drv, len(drv)))
    return out


@pytest.fixture
def hang_guard():
    """A hang inside C cannot be interrupted from Python; this kills the run instead."""
    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# ------------------------------------------------------------------------------------
# The corpus


def test_corpus_drivers_are_pe_images():
    sizes = {name: len(efi_driver(name)) for name in ROMS}
    for name, size in sizes.items():
        assert 100_000 < size < 256 * 1024, name
    # `objdump -h -p` on that PE: the last section, .debug, starts at file offset 0x2a8e0 with
    # 0x44 bytes, padded to FileAlignment 0x20: the file ends at 0x2a940.
    assert sizes["efi-e1000.rom"] == 0x2A940
    assert efi_driver("efi-e1000.rom")[:2] == b"MZ"


@pytest.mark.parametrize("name", ROMS)
def test_edk2_decoder_restores_romlab_output(name, edk2_streams):
    drv, _ = edk2_streams[name]
    ours, stats = compress_with_stats(drv)
    assert EfiDecompress(ours, len(ours)) == drv
    assert stats.fixups == 0
    hdr = read_header(ours)
    assert (hdr.compressed_size, hdr.original_size) == (len(ours) - 8, len(drv))


@pytest.mark.parametrize("name", ROMS)
def test_romlab_decoder_restores_edk2_output(name, edk2_streams):
    drv, ref = edk2_streams[name]
    assert decompress(ref) == drv


@pytest.mark.parametrize("name", ROMS)
def test_size_within_one_percent_of_edk2(name, edk2_streams):
    drv, ref = edk2_streams[name]
    assert len(compress(drv)) <= len(ref) * 1.01


@pytest.mark.parametrize("name", ROMS)
def test_byte_identical_to_edk2(name, edk2_streams):
    drv, ref = edk2_streams[name]
    assert compress(drv) == ref


def test_padding_after_the_stream_is_ignored(edk2_streams):
    drv, ref = edk2_streams["efi-virtio.rom"]
    assert decompress(ref + b"\xff" * 511) == drv


def test_mutated_corpus_streams_only_raise_romerror(edk2_streams, hang_guard):
    rng = random.Random(6)
    _, ref = edk2_streams["efi-pcnet.rom"]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(150):
        data = bytearray(ref)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(8, len(data))] ^= 1 << rng.randrange(8)
        try:
            out = decompress(bytes(data))
        except RomlabError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
        else:
            assert len(out) == len(efi_driver("efi-pcnet.rom"))
            outcomes["ok"] += 1
    assert outcomes["error"] > 100


# ------------------------------------------------------------------------------------
# Edge cases of the encoder


def test_empty_input_by_hand():
    # One block of no symbols: 16-bit count 0, extra table "count 0, symbol 0" (5+5 bits),
    # char/length "count 0, symbol 0" (9+9), position "count 0, symbol 0" (4+4): 52 zero
    # bits, padded to 7 bytes, plus the trailing zero byte: stream length 8.
    expected = bytes.fromhex("08000000" "00000000") + bytes(8)
    assert compress(b"") == expected
    assert EfiCompress(b"", 0) == expected
    assert decompress(expected) == b""


def test_one_byte_by_hand():
    # Count 1 (0000000000000001), extra table 00000 00000, char/length count 0 then
    # symbol 0x41 (000000000 001000001), position 0000 0000, and the one symbol costs no
    # bits: 52 bits -> 00 01 00 00 04 10 00, then the trailing 00.
    expected = bytes.fromhex("08000000" "01000000" "00010000041000" "00")
    assert compress(b"A") == expected
    assert EfiCompress(b"A", 1) == expected
    assert decompress(expected) == b"A"


@pytest.mark.parametrize("data", [
    bytes(100_000),
    b"\xff" * 8192 + b"\x00" * 8193,
    b"abc" * 30_000,
    bytes(range(256)) * 200,
    (b"\x90" * 255 + b"\xcc") * 300,
    random.Random(1).randbytes(50_000),
    random.Random(2).randbytes(9000) * 3,
], ids=["zeros", "two-windows", "abc", "ramp", "256-period", "random", "random-repeated"])
def test_round_trips_and_matches_edk2(data):
    ours = compress(data)
    assert decompress(ours) == data
    assert EfiDecompress(ours, len(ours)) == data
    assert ours == EfiCompress(data, len(data))


def test_random_data_grows_only_by_the_block_overhead():
    data = random.Random(3).randbytes(100_000)
    ours = compress(data)
    # Literals cost about 8 bits each when nothing repeats; tables and headers add a little.
    assert len(data) < len(ours) < len(data) * 1.02


def test_accepts_bytearray_and_memoryview():
    data = b"romlab " * 500
    assert compress(bytearray(data)) == compress(memoryview(data)) == compress(data)
    assert decompress(bytearray(compress(data))) == data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"\x00" * 300, b"MZ\x90\x00",
                                                                   b"\xe8\x00\x00\x00\x00"])),
                max_size=120))
def test_hypothesis_round_trip_and_identity(chunks):
    data = b"".join(chunks)
    ours = compress(data)
    assert decompress(ours) == data
    assert ours == EfiCompress(data, len(data))


# ------------------------------------------------------------------------------------
# Streams built by hand


class Bits:
    """Most-significant-bit-first writer for building test streams."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, n: int, value: int) -> "Bits":
        self.bits += [(value >> i) & 1 for i in range(n - 1, -1, -1)]
        return self

    def stream(self, orig_size: int, comp_size: int | None = None, cut: int = 0) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        body = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
        body = body[:len(body) - cut] if cut else body
        return struct.pack("<II", len(body) if comp_size is None else comp_size, orig_size) + body


def single_block(count: int, char: int, pos_class: int = 0) -> Bits:
    """A block whose char/length and position tables each hold one symbol (0 bits each)."""
    return Bits().put(16, count).put(5, 0).put(5, 0).put(9, 0).put(9, char).put(4, 0).put(4, pos_class)


def literal_then_copy(copy_len: int = 4) -> Bits:
    """'x' then a copy of copy_len bytes from 1 back: two symbols, one bit each."""
    b = Bits().put(16, 2)
    # extra table: symbol 2 (long zero run) and symbol 3 (length 1), one bit each
    b.put(5, 4).put(3, 0).put(3, 0).put(3, 1).put(2, 0).put(3, 1)
    # char/length lengths of symbols 0..(253+copy_len): 120 zeros, 'x' = 1, zeros, copy = 1
    last = 253 + copy_len
    b.put(9, last + 1)
    b.put(1, 0).put(9, 120 - 20).put(1, 1)
    b.put(1, 0).put(9, last - 121 - 20).put(1, 1)
    b.put(4, 0).put(4, 0)           # position table: class 0 only (distance 1)
    b.put(1, 0).put(1, 1)           # 'x', copy
    return b


def test_handmade_literal_and_copy():
    data = literal_then_copy().stream(5)
    assert decompress(data) == b"xxxxx"
    assert EfiDecompress(data, len(data)) == b"xxxxx"


def test_handmade_zero_bit_symbols_expand_16_mib():
    # 'Z', then 65535 copies of 256 bytes from 1 back, all at zero bits per symbol: a
    # legitimate 13-byte stream that expands to 16776961 bytes.
    size = 1 + 65535 * 256
    b = single_block(1, ord("Z"))
    b.bits += single_block(65535, 509).bits
    data = b.stream(size)
    assert len(data) == 8 + 13
    assert decompress(data) == b"Z" * size
    with pytest.raises(RomlabError, match="above the 1000000-byte limit"):
        decompress(data, max_size=1_000_000)


def refused(data: bytes, **kw) -> str:
    with pytest.raises(RomlabError) as exc:
        decompress(data, **kw)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_refuses_short_header():
    assert "8-byte header, got 5 bytes" in refused(b"\x01\x00\x00\x00\x00")


def test_refuses_compressed_size_past_the_data():
    # 52 bits of block: 7 bytes after the header.
    assert "says 100 bytes of stream follow but only 7 do" in refused(single_block(1, 65).stream(1, 100))


def test_refuses_original_size_above_the_cap():
    msg = refused(struct.pack("<II", 0, 0xFFFFFFFF))
    assert f"4294967295 bytes, above the {DEFAULT_MAX_SIZE}-byte limit" in msg


def test_refuses_copy_before_the_start():
    assert "copies from 1 bytes back with only 0 written" in refused(single_block(1, 256).stream(3))


def test_refuses_copy_past_the_original_size():
    assert "copies 4 bytes with 2 left" in refused(literal_then_copy().stream(3))


def test_refuses_symbols_beyond_the_original_size():
    assert "2 more symbols than the size in the header needs" in refused(single_block(5, 65).stream(3))


def test_refuses_empty_block():
    assert "block of zero symbols" in refused(Bits().put(16, 0).stream(1))


def test_refuses_truncated_stream():
    assert "ends early" in refused(literal_then_copy().stream(5, cut=1))


def test_refuses_header_longer_than_stream_contents():
    assert "ends early" in refused(Bits().put(8, 0).stream(10))


def test_refuses_table_count_above_alphabet():
    msg = refused(Bits().put(16, 1).put(5, 20).stream(1))
    assert "extra-length table" in msg and "lists 20 code lengths for 19 symbols" in msg


@pytest.mark.parametrize("bits,what", [
    (Bits().put(16, 1).put(5, 0).put(5, 19), "names symbol 19 of only 19"),
    (Bits().put(16, 1).put(5, 0).put(5, 0).put(9, 0).put(9, 510), "names symbol 510 of only 510"),
    (Bits().put(16, 1).put(5, 0).put(5, 0).put(9, 0).put(9, 65).put(4, 0).put(4, 14),
     "names symbol 14 of only 14"),
])
def test_refuses_single_symbol_outside_alphabet(bits, what):
    assert what in refused(bits.stream(1))


def test_refuses_code_length_above_16():
    # 111 then ten ones: length 17.
    assert "code length above 16" in refused(Bits().put(16, 1).put(5, 1).put(3, 7).put(10, 0x3FF).stream(1))


def test_refuses_incomplete_code():
    # One symbol of length 1 leaves half the code space unused.
    msg = refused(Bits().put(16, 1).put(5, 1).put(3, 1).stream(1))
    assert "extra-length table" in msg and "part of the code space unused" in msg


def test_refuses_all_zero_lengths():
    assert "unused" in refused(Bits().put(16, 1).put(5, 2).put(3, 0).put(3, 0).stream(1))


def test_refuses_overfull_code():
    # Three symbols of length 1 (the 2-bit gap after the third length skips none).
    msg = refused(Bits().put(16, 1).put(5, 3).put(3, 1).put(3, 1).put(3, 1).put(2, 0).stream(1))
    assert "more codes than its lengths allow" in msg


def test_refuses_zero_run_past_table_end():
    # Char/length count 5 but the extra table's only symbol is "20 or more zeros".
    b = Bits().put(16, 1).put(5, 0).put(5, 2).put(9, 5).put(9, 0)
    msg = refused(b.stream(1))
    assert "char/length table" in msg and "runs zero lengths to 20, past its 5 entries" in msg


def test_gap_after_third_extra_length_may_reach_past_the_count():
    # EfiCompress writes the 2-bit gap after the third extra-table length even when the
    # table has only three entries, so a gap reaching index 6 with a count of 3 is valid.
    b = Bits().put(16, 1).put(5, 3).put(3, 1).put(3, 2).put(3, 2).put(2, 3)
    b.put(9, 0).put(9, ord("q")).put(4, 0).put(4, 0)   # char/length: only 'q'; position: only 0
    data = b.stream(1)
    assert decompress(data) == b"q"
    assert EfiDecompress(data, len(data)) == b"q"


def test_max_size_must_not_be_negative():
    with pytest.raises(ValueError):
        decompress(b"", max_size=-1)


# ------------------------------------------------------------------------------------
# Hostile input


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.integers(0, 1 << 22))
def test_hypothesis_random_streams_only_raise_romerror(hang_guard, body, orig):
    data = struct.pack("<II", len(body), orig) + body
    try:
        out = decompress(data, max_size=1 << 22)
    except RomlabError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(out) == orig


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=3000),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, 50), st.booleans())
def test_hypothesis_mutated_streams_only_raise_romerror(hang_guard, plain, edits, cut, keep_sizes):
    data = bytearray(compress(plain * 3))
    for at, value in edits:
        data[at % len(data)] = value
    if cut:
        del data[max(8, len(data) - cut):]
        if not keep_sizes and len(data) >= 8:
            data[0:4] = struct.pack("<I", len(data) - 8)
    try:
        out = decompress(bytes(data), max_size=1 << 22)
    except RomlabError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(out) == read_header(bytes(data)).original_size
