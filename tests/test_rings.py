"""The C ring loops and their pure-Python twin leave identical descriptors and buffers.

Device memory here is plain anonymous memory (the real device runs in tests/test_nic_vm.py);
the 'device' side of each step (setting DD, writing receive lengths) is done by hand with
the layout from the 8254x manual: legacy descriptors of 16 bytes, status at byte 12.
"""
from __future__ import annotations

import struct

import pytest
from ring_double import Bar, RingMem

from drivers import frames
from drivers.ring import CRing, PyRing


def pair(rx, count=16, size=2048):
    rings = []
    for cls in (CRing, PyRing):
        bar, mem = Bar(), RingMem(count, size)
        rings.append((cls(mem, bar, 0x3818, rx=rx), bar, mem))
    return rings


def test_tx_batches_match():
    data, lens = frames.batch(b"\x52\x54\x00\x00\x00\x01", frames.BROADCAST, 7, 0, 20, 100)
    results = []
    for ring, bar, mem in pair(rx=False):
        sent = ring.tx_batch(data, lens)
        assert sent == 15  # 16 descriptors, one kept empty
        assert bar.read32(0x3818) == 15
        # device completes the first 10
        for i in range(10):
            mem.desc.mem[i * 16 + 12] = 1
        assert ring.tx_pending() == 5
        sent2 = ring.tx_batch(data[15 * 100:], lens[15:])
        assert sent2 == 5 and bar.read32(0x3818) == (15 + 5) % 16
        results.append((bytes(mem.desc.mem), bytes(mem.bufs.mem)))
    assert results[0] == results[1]
    desc = results[0][0]
    addr, length, cso, cmd, status, css, special = struct.unpack_from("<QHBBBBH", desc, 16)
    assert (addr, length, cmd) == (0x200000 + 2048, 100, 0x0B)


@pytest.mark.parametrize("out_size", [65536, 250])
def test_rx_batches_match(out_size):
    pkts = [frames.frame(b"\x02" * 6, frames.BROADCAST, 3, i, 60 + i) for i in range(6)]
    outs = []
    size = 128 if out_size < 2048 else 2048  # an out buffer is never smaller than one ring buffer
    for ring, bar, mem in pair(rx=True, size=size):
        for i in range(16):  # the rx ring points every descriptor at its own buffer
            assert struct.unpack_from("<Q", mem.desc.mem, i * 16)[0] == 0x200000 + i * size
        for i, p in enumerate(pkts):  # the 'device' writes frames 0..5, frame 4 with an error
            mem.bufs.mem[i * size:i * size + len(p)] = p
            struct.pack_into("<HHBB", mem.desc.mem, i * 16 + 8, len(p), 0, 0x03, 0x01 if i == 4 else 0)
        out = bytearray(out_size)
        n, lens = ring.rx_batch(out, 32)
        got = list(frames.split(out, lens, n))
        outs.append((n, got, bytes(mem.desc.mem), bar.read32(0x3818), ring.dropped))
    assert outs[0] == outs[1]
    n, got, _, tail, dropped = outs[0]
    if out_size == 65536:
        assert n == 5 and [frames.check(f, 3) for f in got] == [0, 1, 2, 3, 5] and tail == 5 and dropped == 1
    else:
        # 60 + 61 + 62 + 63 = 246 bytes fit in 250; frame 4 is dropped for its error, whatever its
        # size; frame 5 (65 bytes) does not fit what is left and waits for the next batch
        assert n == 4 and [frames.check(f, 3) for f in got] == [0, 1, 2, 3] and tail == 4 and dropped == 1


def test_descriptor_layout_in_the_header_is_the_manuals():
    """drivers/c/ring.h declares the legacy layout once, for C and Python: it must be the 8254x
    manual's (legacy transmit descriptor: address 0, length 8, CSO 10, CMD 11, STA 12, CSS 13,
    special 14; receive descriptor: address 0, length 8, checksum 10, status 12, errors 13,
    special 14; 16 bytes each)."""
    from drivers._ring import ffi, lib

    def layout(name):
        return {field: f.offset for field, f in ffi.typeof(name).fields}

    assert layout("struct legacy_txd") == {"addr": 0, "length": 8, "cso": 10, "cmd": 11, "status": 12, "css": 13,
                                           "special": 14}
    assert layout("struct legacy_rxd") == {"addr": 0, "length": 8, "csum": 10, "status": 12, "errors": 13,
                                           "special": 14}
    assert ffi.sizeof("struct legacy_txd") == ffi.sizeof("struct legacy_rxd") == 16
    # command bits EOP, IFCS, RS and status bits DD, EOP, as the manual numbers them
    assert (lib.LEGACY_TXD_CMD_EOP, lib.LEGACY_TXD_CMD_IFCS, lib.LEGACY_TXD_CMD_RS) == (1 << 0, 1 << 1, 1 << 3)
    assert (lib.LEGACY_DESC_DD, lib.LEGACY_RXD_EOP) == (1 << 0, 1 << 1)


def test_advanced_descriptor_layout_in_the_header_is_the_datasheets():
    """The 82576 datasheet's advanced layouts (as iPXE's intel.h and Linux's e1000_82575.h give them):
    transmit data descriptor address 0, cmd_type_len 8, olinfo_status 12; receive read format packet
    address 0, header address 8; receive write-back packet information 0, status_error 8, length 12,
    VLAN 14; 16 bytes each. Bits: DTYP data 0011b at 23:20, DCMD EOP/IFCS/RS/DEXT at bits 24/25/27/29,
    PAYLEN from bit 14, DD bit 0, receive EOP bit 1, frame errors CE/SE/SEQ/CXE/RXE at 24/25/26/28/31."""
    from drivers._ring import ffi, lib

    def layout(name):
        return {field: f.offset for field, f in ffi.typeof(name).fields}

    assert layout("struct adv_txd") == {"addr": 0, "cmd_type_len": 8, "olinfo_status": 12}
    assert layout("struct adv_rxd_read") == {"pkt_addr": 0, "hdr_addr": 8}
    assert layout("struct adv_rxd_wb") == {"pkt_info": 0, "hdr_info": 2, "rss": 4, "status_error": 8, "length": 12,
                                           "vlan": 14}
    assert ffi.sizeof("struct adv_txd") == ffi.sizeof("struct adv_rxd_read") == ffi.sizeof("struct adv_rxd_wb") == 16
    assert lib.ADV_TXD_DTYP_DATA == 0b0011 << 20
    assert (lib.ADV_TXD_DCMD_EOP, lib.ADV_TXD_DCMD_IFCS, lib.ADV_TXD_DCMD_RS, lib.ADV_TXD_DCMD_DEXT) == (
        1 << 24, 1 << 25, 1 << 27, 1 << 29)
    assert lib.ADV_TXD_PAYLEN_SHIFT == 14
    assert (lib.ADV_TXD_STAT_DD, lib.ADV_RXD_STAT_DD, lib.ADV_RXD_STAT_EOP) == (1, 1, 2)
    assert lib.ADV_RXD_ERR_FRAME == (1 << 24) | (1 << 25) | (1 << 26) | (1 << 28) | (1 << 31)


@pytest.mark.parametrize("cls", [CRing, PyRing], ids=["c", "python"])
def test_advanced_checksum_results_are_not_frame_errors(cls):
    """IPE and L4E (bits 30 and 29) report a checksum the device checked, not a damaged frame: the
    frame is delivered, as Linux igb delivers it; a frame error (RXE, bit 31) is dropped."""
    from ring_double import ADVANCED_DEV, device_rx, make_ring, received, ring_format

    ring, bar, mem = make_ring(cls, rx=True, fmt=ring_format("advanced"))
    good = frames.frame(b"\x02" * 6, frames.BROADCAST, 5, 0, 80)
    device_rx(mem, 0, good, dev=ADVANCED_DEV)
    struct.pack_into("<I", mem.desc.mem, 8, 0x3 | 1 << 30 | 1 << 29)  # DD, EOP, IPE, L4E
    device_rx(mem, 1, good, errors=0x80, dev=ADVANCED_DEV)  # RXE
    out = bytearray(4096)
    n, lens = ring.rx_batch(out, 8)
    assert received(out, lens, n) == [good] and ring.dropped == 1
