"""JEDEC SFDP (JESD216): the self-description a SPI NOR part carries.

Parts not in ``romtools.flash.chips`` can still be written safely when they
answer the SFDP read (opcode 0x5A): the Basic Flash Parameter Table gives the
density, the erase types and the write granularity. This module parses that
table, and builds one for the chip model so both sides follow one description.

Layout used (all little-endian):
  header  @0: "SFDP" (0x50444653), minor rev, major rev, NPH (headers - 1), 0xFF
  param   @8+8n: ID LSB, minor, major, length (dwords), 24-bit table pointer, ID MSB
  BFPT (ID 0xFF00) dword 1: bits 1:0 = 01 -> 4 KiB erase supported, opcode in 15:8;
        bit 2 -> write granularity >= 64 bytes; bits 18:17 address bytes (00 = 3 only)
  dword 2: density; bit 31 clear -> bits - 1, set -> 2^N bits
  dwords 8-9: erase types 1-4, 16 bits each: size exponent (7:0), opcode (15:8)
  dword 11 (rev B+): bits 7:4 page size exponent
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from hw.errors import FlashError

SIGNATURE = 0x50444653
BFPT_ID = 0xFF00


@dataclass
class SfdpInfo:
    size: int
    erase_types: dict[int, int]        # opcode -> block size
    page_size: int                     # write granularity for page program
    addr_bytes: str                    # "3", "3or4" or "4"
    revision: tuple[int, int]


def parse(data: bytes) -> SfdpInfo:
    """Parse an SFDP area read from offset 0; raises RomlabError if it is not one."""
    if len(data) < 16:
        raise FlashError("SFDP area too short; the chip may not support SFDP")
    sig, minor, major, nph = struct.unpack_from("<IBBB", data, 0)
    if sig != SIGNATURE:
        raise FlashError("no SFDP signature (read %08x); the chip does not describe itself" % sig)
    for n in range(nph + 1):
        off = 8 + 8 * n
        if off + 8 > len(data):
            break
        id_lsb, pminor, pmajor, plen = struct.unpack_from("<BBBB", data, off)
        ptr = int.from_bytes(data[off + 4:off + 7], "little")
        id_msb = data[off + 7]
        if (id_msb << 8 | id_lsb) != BFPT_ID:
            continue
        table = data[ptr:ptr + 4 * plen]
        if plen < 9 or len(table) < 36:
            raise FlashError("SFDP basic parameter table is shorter than 9 dwords")
        return _parse_bfpt(table, (major, minor))
    raise FlashError("SFDP has no basic flash parameter table")


def _parse_bfpt(table: bytes, revision: tuple[int, int]) -> SfdpInfo:
    dw = struct.unpack_from("<%dI" % (len(table) // 4), table)
    d1, d2 = dw[0], dw[1]
    erase_types: dict[int, int] = {}
    if d1 & 0x3 == 0x1:
        erase_types[(d1 >> 8) & 0xFF] = 4096
    addr_bytes = {0: "3", 1: "3or4", 2: "4"}.get((d1 >> 17) & 0x3, "?")
    if d2 & 0x80000000:
        bits = 1 << (d2 & 0x7FFFFFFF)
    else:
        bits = d2 + 1
    size = bits // 8
    for word in (dw[7] & 0xFFFF, dw[7] >> 16, dw[8] & 0xFFFF, dw[8] >> 16):
        exp, op = word & 0xFF, word >> 8
        if exp:
            erase_types[op] = 1 << exp
    page_size = 64 if d1 & 0x4 else 1
    if len(dw) >= 11:
        page_size = 1 << ((dw[10] >> 4) & 0xF)
    return SfdpInfo(size=size, erase_types=erase_types, page_size=page_size,
                    addr_bytes=addr_bytes, revision=revision)


def build(size: int, erase_types: dict[int, int], page_size: int = 256) -> bytes:
    """An SFDP area (rev 1.6, one BFPT of 16 dwords) describing a part."""
    header = struct.pack("<IBBBB", SIGNATURE, 6, 1, 0, 0xFF)
    ptr = 0x30
    param = struct.pack("<BBBB", BFPT_ID & 0xFF, 6, 1, 16) + ptr.to_bytes(3, "little") + bytes([BFPT_ID >> 8])
    dw = [0xFFFFFFFF] * 16
    op4k = next((op for op, s in erase_types.items() if s == 4096), None)
    # Reserved bits (31:23, 7:5) read as 1; no fast-read modes, no DTR, 3-byte
    # addressing only (bits 18:17 = 00).
    d1 = 0xFF800000 | 0x00E0
    d1 |= 0x4 if page_size >= 64 else 0
    d1 |= (0x1 | (op4k << 8)) if op4k is not None else (0x3 | 0xFF00)
    dw[0] = d1
    dw[1] = size * 8 - 1
    types = sorted(((s, op) for op, s in erase_types.items() if s < size))[:4]
    words = [(s.bit_length() - 1) | (op << 8) for s, op in types] + [0] * (4 - len(types))
    dw[7] = words[0] | words[1] << 16
    dw[8] = words[2] | words[3] << 16
    dw[10] = (dw[10] & ~0xF0) | ((page_size.bit_length() - 1) << 4)
    area = bytearray(header + param)
    area += b"\xff" * (ptr - len(area))
    area += struct.pack("<16I", *dw)
    return bytes(area)
