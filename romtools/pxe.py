"""The PXE 2.1 structures and UNDI parameter blocks, declared once with construct.

An UNDI driver is reached through structures that live in real-mode memory: the !PXE and
PXENV+ structures its loader fills in, the s_UNDI_LOADER block the loader is called with, and
one parameter block per API call, each starting with a u16 Status. Declaring each one here
gives the emulator, the UNDI client and ``romlab undi info`` the same parse, build and sizeof,
so no caller packs an offset by hand. Layouts and numbers follow the PXE 2.1 specification
(Intel, 1999) as iPXE's pxe_api.h and pxe_types.h record it; every structure is packed and
little-endian, and every pointer in it is a real-mode SEGOFF16 (offset first, then segment),
so every buffer of the API lives below 1 MiB.
"""
from __future__ import annotations

from construct import (
    Array,
    Bytes,
    Const,
    Int8ul,
    Int16ul,
    Int32ul,
    Struct,
)

# --- the small types ----------------------------------------------------------------------

#: A real-mode far pointer: offset, then segment (s_SEGOFF16).
SegOff16 = Struct("offset" / Int16ul, "segment" / Int16ul)

#: A protected-mode segment description of !PXE (s_SEGDESC): selector, base, size.
SegDesc = Struct("segment_address" / Int16ul, "physical_address" / Int32ul, "seg_size" / Int16ul)

#: MAC_ADDR_t is 16 bytes in the PXE API, whatever the medium's address length.
MAC_ADDR_LEN = 16
MacAddr = Bytes(MAC_ADDR_LEN)


def linear(ptr) -> int:
    """The linear address a SEGOFF16 names (segment * 16 + offset)."""
    return (ptr.segment << 4) + ptr.offset


# --- what the UNDI loader hands back ------------------------------------------------------

#: The !PXE structure (s_PXE), 88 bytes; its bytes sum to 0 over StructLength.
Pxe = Struct(
    "signature" / Const(b"!PXE"),
    "struct_length" / Int8ul,
    "struct_cksum" / Int8ul,
    "struct_rev" / Int8ul,
    "reserved_1" / Int8ul,
    "undi_rom_id" / SegOff16,
    "base_rom_id" / SegOff16,
    "entry_point_sp" / SegOff16,  # 16-bit entry: push seg, off, opcode; lcall
    "entry_point_esp" / SegOff16,  # 16:16 protected-mode entry
    "status_callout" / SegOff16,
    "reserved_2" / Int8ul,
    "seg_desc_cnt" / Int8ul,
    "first_selector" / Int16ul,
    "stack" / SegDesc,
    "undi_data" / SegDesc,
    "undi_code" / SegDesc,
    "undi_code_write" / SegDesc,
    "bc_data" / SegDesc,
    "bc_code" / SegDesc,
    "bc_code_write" / SegDesc,
)

#: The older PXENV+ structure (s_PXENV), 44 bytes from version 2.01 on (PXEPtr added).
Pxenv = Struct(
    "signature" / Const(b"PXENV+"),
    "version" / Int16ul,  # 0x0201 for PXE 2.1
    "length" / Int8ul,
    "checksum" / Int8ul,
    "rm_entry" / SegOff16,  # BX = opcode, ES:DI = parameters; lcall
    "pm_offset" / Int32ul,
    "pm_selector" / Int16ul,
    "stack_seg" / Int16ul,
    "stack_size" / Int16ul,
    "bc_code_seg" / Int16ul,
    "bc_code_size" / Int16ul,
    "bc_data_seg" / Int16ul,
    "bc_data_size" / Int16ul,
    "undi_data_seg" / Int16ul,
    "undi_data_size" / Int16ul,
    "undi_code_seg" / Int16ul,
    "undi_code_size" / Int16ul,
    "pxe_ptr" / SegOff16,
)

#: The block the UNDI loader (UNDI ROM ID's UNDILoader) is far-called with (s_UNDI_LOADER).
UndiLoader = Struct(
    "status" / Int16ul,
    "ax" / Int16ul,  # as for START_UNDI: the PCI bus:dev.fn
    "bx" / Int16ul,
    "dx" / Int16ul,
    "di" / Int16ul,
    "es" / Int16ul,
    "undi_ds" / Int16ul,  # where the caller wants the UNDI data and code segments
    "undi_cs" / Int16ul,
    "pxe_ptr" / SegOff16,  # out: !PXE
    "pxenv_ptr" / SegOff16,  # out: PXENV+
)

# --- the UNDI API: opcodes ----------------------------------------------------------------

START_UNDI = 0x0000
UNDI_STARTUP = 0x0001
UNDI_CLEANUP = 0x0002
UNDI_INITIALIZE = 0x0003
UNDI_RESET_ADAPTER = 0x0004
UNDI_SHUTDOWN = 0x0005
UNDI_OPEN = 0x0006
UNDI_CLOSE = 0x0007
UNDI_TRANSMIT = 0x0008
UNDI_SET_MCAST_ADDRESS = 0x0009
UNDI_SET_STATION_ADDRESS = 0x000A
UNDI_SET_PACKET_FILTER = 0x000B
UNDI_GET_INFORMATION = 0x000C
UNDI_GET_STATISTICS = 0x000D
UNDI_CLEAR_STATISTICS = 0x000E
UNDI_INITIATE_DIAGS = 0x000F
UNDI_FORCE_INTERRUPT = 0x0010
UNDI_GET_MCAST_ADDRESS = 0x0011
UNDI_GET_NIC_TYPE = 0x0012
UNDI_GET_IFACE_INFO = 0x0013
UNDI_ISR = 0x0014
STOP_UNDI = 0x0015  # the spec gives UNDI_GET_STATE the same number; iPXE calls that a spec bug

#: PXENV_EXIT_t, returned in AX by every call.
EXIT_SUCCESS, EXIT_FAILURE = 0x0000, 0x0001

# --- the UNDI API: parameter blocks -------------------------------------------------------

MAXNUM_MCADDR = 8
McastAddress = Struct("mcast_addr_count" / Int16ul, "mcast_addr" / Array(MAXNUM_MCADDR, MacAddr))

#: Blocks that hold nothing but the status word.
StatusOnly = Struct("status" / Int16ul)

StartUndi = Struct(
    "status" / Int16ul,
    "ax" / Int16ul,
    "bx" / Int16ul,
    "dx" / Int16ul,
    "di" / Int16ul,
    "es" / Int16ul,
)
StopUndi = UndiStartup = UndiCleanup = UndiShutdown = UndiClose = StatusOnly

UndiInitialize = Struct(
    "status" / Int16ul,
    "protocol_ini" / Int32ul,  # NDIS 2.0 information, 0 for none
    "reserved" / Bytes(8),
)

#: RESET_ADAPTER's block (s_PXENV_UNDI_RESET): status and the multicast list to restore.
UndiResetAdapter = Struct("status" / Int16ul, "r_mcast_buf" / McastAddress)

FLTR_DIRECTED, FLTR_BRDCST, FLTR_PRMSCS, FLTR_SRC_RTG = 0x0001, 0x0002, 0x0004, 0x0008
UndiOpen = Struct(
    "status" / Int16ul,
    "open_flag" / Int16ul,
    "pkt_filter" / Int16ul,
    "r_mcast_buf" / McastAddress,
)

P_UNKNOWN, P_IP, P_ARP, P_RARP, P_OTHER = 0, 1, 2, 3, 4
XMT_DESTADDR, XMT_BROADCAST = 0, 1
MAX_DATA_BLKS = 8

#: One extra transmit buffer of a TBD; TDPtrType is always 1 (SEGOFF16) in PXE 2.1.
DataBlk = Struct(
    "td_ptr_type" / Int8ul,
    "td_rsvd_byte" / Int8ul,
    "td_data_len" / Int16ul,
    "td_data_ptr" / SegOff16,
)

#: Transmit buffer descriptor: the immediate buffer, then up to eight more blocks.
UndiTbd = Struct(
    "immed_length" / Int16ul,
    "xmit" / SegOff16,
    "data_blk_count" / Int16ul,
    "data_block" / Array(MAX_DATA_BLKS, DataBlk),
)

UndiTransmit = Struct(
    "status" / Int16ul,
    "protocol" / Int8ul,  # P_UNKNOWN: the caller built the media header
    "xmit_flag" / Int8ul,
    "dest_addr" / SegOff16,
    "tbd" / SegOff16,
    "reserved" / Array(2, Int32ul),
)

UndiSetStationAddress = Struct("status" / Int16ul, "station_address" / MacAddr)

ETHER_TYPE = 1
UndiGetInformation = Struct(
    "status" / Int16ul,
    "base_io" / Int16ul,
    "int_number" / Int16ul,
    "max_tran_unit" / Int16ul,
    "hw_type" / Int16ul,
    "hw_addr_len" / Int16ul,
    "current_node_address" / MacAddr,
    "perm_node_address" / MacAddr,
    "rom_address" / Int16ul,
    "rx_buf_ct" / Int16ul,
    "tx_buf_ct" / Int16ul,
)

UndiGetStatistics = Struct(
    "status" / Int16ul,
    "xmt_good_frames" / Int32ul,
    "rcv_good_frames" / Int32ul,
    "rcv_crc_errors" / Int32ul,
    "rcv_resource_errors" / Int32ul,
)

PCI_NIC, PNP_NIC, CARDBUS_NIC = 2, 3, 4
#: GET_NIC_TYPE's information for a PCI or CardBus NIC (the larger arm of its union).
PciNicInfo = Struct(
    "vendor_id" / Int16ul,
    "dev_id" / Int16ul,
    "base_class" / Int8ul,
    "sub_class" / Int8ul,
    "prog_intf" / Int8ul,
    "rev" / Int8ul,
    "bus_dev_func" / Int16ul,
    "sub_vendor_id" / Int16ul,
    "sub_device_id" / Int16ul,
)
UndiGetNicType = Struct("status" / Int16ul, "nic_type" / Int8ul, "info" / PciNicInfo)

SUPPORTED_BROADCAST, SUPPORTED_MULTICAST, SUPPORTED_PROMISCUOUS = 0x0001, 0x0002, 0x0008
SUPPORTED_SET_STATION_ADDRESS, SUPPORTED_RESET, SUPPORTED_OPEN_CLOSE = 0x0010, 0x0400, 0x0800
SUPPORTED_IRQ = 0x1000
UndiGetIfaceInfo = Struct(
    "status" / Int16ul,
    "iface_type" / Bytes(16),  # NDIS 2.0 name, NUL-padded ("DIX+802.3" for Ethernet)
    "link_speed" / Int32ul,  # bits per second
    "service_flags" / Int32ul,
    "reserved" / Array(4, Int32ul),
)

ISR_IN_START, ISR_IN_PROCESS, ISR_IN_GET_NEXT = 1, 2, 3
ISR_OUT_OURS, ISR_OUT_NOT_OURS = 0, 1
ISR_OUT_DONE, ISR_OUT_TRANSMIT, ISR_OUT_RECEIVE, ISR_OUT_BUSY = 0, 2, 3, 4
P_DIRECTED, P_BROADCAST, P_MULTICAST = 0, 1, 2
UndiIsr = Struct(
    "status" / Int16ul,
    "func_flag" / Int16ul,
    "buffer_length" / Int16ul,
    "frame_length" / Int16ul,
    "frame_header_length" / Int16ul,
    "frame" / SegOff16,
    "prot_type" / Int8ul,
    "pkt_type" / Int8ul,
)

#: Each opcode's name and parameter block, for callers that dispatch on the number.
CALLS = {
    START_UNDI: ("START_UNDI", StartUndi),
    UNDI_STARTUP: ("UNDI_STARTUP", UndiStartup),
    UNDI_CLEANUP: ("UNDI_CLEANUP", UndiCleanup),
    UNDI_INITIALIZE: ("UNDI_INITIALIZE", UndiInitialize),
    UNDI_RESET_ADAPTER: ("UNDI_RESET_ADAPTER", UndiResetAdapter),
    UNDI_SHUTDOWN: ("UNDI_SHUTDOWN", UndiShutdown),
    UNDI_OPEN: ("UNDI_OPEN", UndiOpen),
    UNDI_CLOSE: ("UNDI_CLOSE", UndiClose),
    UNDI_TRANSMIT: ("UNDI_TRANSMIT", UndiTransmit),
    UNDI_SET_STATION_ADDRESS: ("UNDI_SET_STATION_ADDRESS", UndiSetStationAddress),
    UNDI_GET_INFORMATION: ("UNDI_GET_INFORMATION", UndiGetInformation),
    UNDI_GET_STATISTICS: ("UNDI_GET_STATISTICS", UndiGetStatistics),
    UNDI_GET_NIC_TYPE: ("UNDI_GET_NIC_TYPE", UndiGetNicType),
    UNDI_GET_IFACE_INFO: ("UNDI_GET_IFACE_INFO", UndiGetIfaceInfo),
    UNDI_ISR: ("UNDI_ISR", UndiIsr),
    STOP_UNDI: ("STOP_UNDI", StopUndi),
}


def call_name(opcode: int) -> str:
    return CALLS[opcode][0] if opcode in CALLS else f"opcode {opcode:#06x}"
