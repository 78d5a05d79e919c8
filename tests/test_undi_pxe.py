"""The PXE/UNDI structures of romtools.pxe: sizes from the PXE 2.1 specification and iPXE's
pxe_api.h (worked out by hand from the field lists there), offsets of the fields callers rely on,
and build/parse round trips."""
from __future__ import annotations

import pytest

from romtools import pxe

# (declaration, size in bytes from the spec's field list)
SIZES = [
    (pxe.SegOff16, 4),
    (pxe.SegDesc, 8),  # u16 selector + u32 base + u16 size
    (pxe.Pxe, 0x58),  # !PXE StructLength
    (pxe.Pxenv, 0x2C),  # PXENV+ Length from version 2.01 on
    (pxe.UndiLoader, 24),  # 8 words + 2 far pointers
    (pxe.StartUndi, 12),
    (pxe.StopUndi, 2),
    (pxe.UndiStartup, 2),
    (pxe.UndiCleanup, 2),
    (pxe.UndiShutdown, 2),
    (pxe.UndiClose, 2),
    (pxe.UndiInitialize, 14),  # status + ADDR32 ProtocolIni + 8 reserved
    (pxe.McastAddress, 2 + 8 * 16),
    (pxe.UndiResetAdapter, 2 + 130),
    (pxe.UndiOpen, 136),  # status, OpenFlag, PktFilter, 130-byte multicast list
    (pxe.UndiTransmit, 20),
    (pxe.DataBlk, 8),
    (pxe.UndiTbd, 72),  # 2 + 4 + 2 + 8 * 8
    (pxe.UndiSetStationAddress, 18),
    (pxe.UndiGetInformation, 50),
    (pxe.UndiGetStatistics, 18),
    (pxe.PciNicInfo, 14),
    (pxe.UndiGetNicType, 17),
    (pxe.UndiGetIfaceInfo, 42),
    (pxe.UndiIsr, 16),
]


@pytest.mark.parametrize("schema, size", SIZES, ids=[str(i) for i in range(len(SIZES))])
def test_sizes_are_the_specs(schema, size):
    assert schema.sizeof() == size


def test_opcodes_are_the_specs():
    assert (pxe.START_UNDI, pxe.UNDI_STARTUP, pxe.UNDI_CLEANUP, pxe.UNDI_INITIALIZE) == (0, 1, 2, 3)
    assert (pxe.UNDI_RESET_ADAPTER, pxe.UNDI_SHUTDOWN, pxe.UNDI_OPEN, pxe.UNDI_CLOSE) == (4, 5, 6, 7)
    assert pxe.UNDI_TRANSMIT == 8 and pxe.UNDI_SET_STATION_ADDRESS == 0x0A
    assert (pxe.UNDI_GET_INFORMATION, pxe.UNDI_GET_STATISTICS) == (0x0C, 0x0D)
    assert (pxe.UNDI_GET_NIC_TYPE, pxe.UNDI_GET_IFACE_INFO, pxe.UNDI_ISR, pxe.STOP_UNDI) == (0x12, 0x13, 0x14, 0x15)
    assert pxe.call_name(0x14) == "UNDI_ISR" and pxe.call_name(0x99) == "opcode 0x0099"


def test_pxe_field_offsets():
    # !PXE: EntryPointSP at 0x10, SegDescCnt at 0x1D, the Stack descriptor at 0x20, BC_CodeWrite at 0x50.
    raw = bytearray(0x58)
    raw[0:4] = b"!PXE"
    raw[0x10:0x14] = bytes([0x60, 0x01, 0x00, 0x90])  # 9000:0160
    raw[0x1D] = 7
    raw[0x20:0x28] = bytes([0x00, 0x00, 0x00, 0x10, 0x09, 0x00, 0x10, 0x2F])
    raw[0x50:0x58] = bytes([0x34, 0x12, 0, 0, 0, 0, 0xCD, 0xAB])
    p = pxe.Pxe.parse(bytes(raw))
    assert (p.entry_point_sp.segment, p.entry_point_sp.offset) == (0x9000, 0x0160)
    assert pxe.linear(p.entry_point_sp) == 0x90160
    assert p.seg_desc_cnt == 7
    assert p.stack.physical_address == 0x91000 and p.stack.seg_size == 0x2F10
    assert p.bc_code_write.segment_address == 0x1234 and p.bc_code_write.seg_size == 0xABCD
    assert pxe.Pxe.build(p) == bytes(raw)


def test_pxenv_field_offsets():
    raw = bytearray(0x2C)
    raw[0:6] = b"PXENV+"
    raw[6:8] = b"\x01\x02"  # version 2.01
    raw[8] = 0x2C
    raw[0x0A:0x0E] = bytes([0x80, 0x01, 0x00, 0x90])
    raw[0x24:0x26] = b"\x00\x90"  # UNDICodeSeg
    raw[0x28:0x2C] = bytes([0x20, 0x07, 0x00, 0x90])  # PXEPtr
    p = pxe.Pxenv.parse(bytes(raw))
    assert p.version == 0x0201 and p.length == 0x2C
    assert (p.rm_entry.segment, p.rm_entry.offset) == (0x9000, 0x0180)
    assert p.undi_code_seg == 0x9000 and pxe.linear(p.pxe_ptr) == 0x90720
    assert pxe.Pxenv.build(p) == bytes(raw)


def test_transmit_and_tbd_offsets():
    t = pxe.UndiTransmit.build(dict(status=0, protocol=pxe.P_UNKNOWN, xmit_flag=pxe.XMT_BROADCAST,
                                    dest_addr=dict(offset=0x10, segment=0x2000),
                                    tbd=dict(offset=0x20, segment=0x3000), reserved=[0, 0]))
    assert t[3] == 1 and t[4:8] == b"\x10\x00\x00\x20" and t[8:12] == b"\x20\x00\x00\x30"
    blocks = [dict(td_ptr_type=1, td_rsvd_byte=0, td_data_len=0x40 + i, td_data_ptr=dict(offset=i, segment=0x4000))
              for i in range(pxe.MAX_DATA_BLKS)]
    tbd = pxe.UndiTbd.build(dict(immed_length=60, xmit=dict(offset=0x100, segment=0x5000), data_blk_count=1,
                                 data_block=blocks))
    assert tbd[0:2] == b"\x3c\x00" and tbd[2:6] == b"\x00\x01\x00\x50" and tbd[6:8] == b"\x01\x00"
    assert tbd[8:16] == bytes([1, 0, 0x40, 0, 0, 0, 0, 0x40])  # DataBlock[0] at 8
    assert tbd[64:66] == bytes([1, 0])  # DataBlock[7] starts at 8 + 7 * 8
    assert pxe.UndiTbd.parse(tbd).data_block[7].td_data_len == 0x47


def test_get_information_and_isr_offsets():
    raw = bytearray(50)
    raw[2:4] = b"\x00\xc0"  # BaseIo
    raw[4:6] = b"\x0b\x00"  # IRQ 11
    raw[6:8] = (1500).to_bytes(2, "little")
    raw[0x0C:0x12] = bytes.fromhex("525400123456")
    raw[0x1C:0x22] = bytes.fromhex("525400abcdef")
    raw[0x2C:0x2E] = b"\x00\xc8"
    g = pxe.UndiGetInformation.parse(bytes(raw))
    assert (g.base_io, g.int_number, g.max_tran_unit, g.rom_address) == (0xC000, 11, 1500, 0xC800)
    assert g.current_node_address[:6] == bytes.fromhex("525400123456")
    assert g.perm_node_address[:6] == bytes.fromhex("525400abcdef")
    isr = pxe.UndiIsr.parse(bytes([0, 0, 3, 0, 0x40, 0, 0x40, 0, 14, 0, 0x10, 0, 0x00, 0x90, 0, 1]))
    assert isr.func_flag == pxe.ISR_OUT_RECEIVE and isr.frame_header_length == 14
    assert pxe.linear(isr.frame) == 0x90010 and isr.pkt_type == pxe.P_BROADCAST


@pytest.mark.parametrize("schema", [s for s, _ in SIZES], ids=[str(i) for i in range(len(SIZES))])
def test_round_trip_of_patterned_bytes(schema):
    """Every byte of every block parses and builds back (Const signatures put in place)."""
    size = schema.sizeof()
    raw = bytearray((i * 37 + 11) & 0xFF for i in range(size))
    for sig in (b"!PXE", b"PXENV+"):
        if schema in (pxe.Pxe, pxe.Pxenv) and schema.subcons[0].subcon.value == sig:
            raw[:len(sig)] = sig
    assert schema.build(schema.parse(bytes(raw))) == bytes(raw)
