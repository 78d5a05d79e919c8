"""Test frames: deterministic payloads that both ends can regenerate and hash.

Frames carry EtherType 0x88B5 (IEEE "local experimental"), a 4-byte sequence number and a
payload derived from (seed, sequence), so a receiver checks integrity without the sender
shipping hashes alongside.
"""
from __future__ import annotations

import hashlib
import struct
from array import array

ETHERTYPE = 0x88B5
BROADCAST = b"\xff" * 6
HEADER = 14 + 4  # Ethernet header + sequence number
MIN_FRAME, MAX_FRAME = 60, 1514


def parse_mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


def fmt_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def payload(seed: int, seq: int, size: int) -> bytes:
    n = size - HEADER
    return hashlib.shake_128(struct.pack("<QI", seed, seq)).digest(n) if n > 0 else b""


def frame(src: bytes, dst: bytes, seed: int, seq: int, size: int) -> bytes:
    if not MIN_FRAME <= size <= MAX_FRAME:
        raise ValueError(f"frame size {size} is outside {MIN_FRAME}..{MAX_FRAME}")
    return dst + src + struct.pack(">HI", ETHERTYPE, seq) + payload(seed, seq, size)


def batch(src: bytes, dst: bytes, seed: int, first: int, count: int, size: int) -> tuple[bytes, array]:
    """``count`` frames in one contiguous buffer, and their lengths."""
    data = b"".join(frame(src, dst, seed, first + i, size) for i in range(count))
    return data, array("H", [size] * count)


def split(data, lens, n: int):
    """Yield the first ``n`` frames of a received batch."""
    pos = 0
    for i in range(n):
        yield bytes(data[pos:pos + lens[i]])
        pos += lens[i]


def check(f: bytes, seed: int) -> int | None:
    """The sequence number of an intact test frame, or None for anything else."""
    if len(f) < HEADER or struct.unpack_from(">H", f, 12)[0] != ETHERTYPE:
        return None
    seq = struct.unpack_from(">I", f, 14)[0]
    return seq if f[HEADER:] == payload(seed, seq, len(f)) else None
