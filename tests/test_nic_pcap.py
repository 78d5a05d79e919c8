"""`romlab nic recv --pcap` writes libpcap files; the bytes are checked against the format itself
(tcpdump's pcap-savefile(5): a 24-byte header with magic a1b2c3d4, version 2.4, snapshot length and
link type 1 for Ethernet, then per frame seconds, microseconds, captured and original length)."""
from __future__ import annotations

import struct

from romlab.cli.nic import _pcap_writer


def test_pcap_file_holds_each_frame_with_its_time(tmp_path):
    path = tmp_path / "rx.pcap"
    frames = [bytes(range(60)), b"\xff" * 6 + b"\x52\x54\x00\x12\x34\x56" + b"\x88\xb5" + b"x" * 1500]
    w = _pcap_writer(path)
    w.writepkt(memoryview(frames[0]), 1700000000.25)
    w.writepkt(frames[1], 1700000001.5)
    w.close()
    data = path.read_bytes()
    assert data[:24] == bytes.fromhex("d4c3b2a1" "0200" "0400" "00000000" "00000000" "ffff0000" "01000000")
    off, got = 24, []
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        got.append((sec, usec, data[off + 16:off + 16 + incl]))
        assert incl == orig
        off += 16 + incl
    assert got == [(1700000000, 250000, frames[0]), (1700000001, 500000, frames[1])]
