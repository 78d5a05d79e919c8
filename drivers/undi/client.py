"""The UNDI API spoken the way iPXE's undinet.c speaks it, quirks included.

Bring-up is START_UNDI, UNDI_STARTUP, INITIALIZE (retried: some stacks fail it until the link has
settled), GET_INFORMATION, GET_IFACE_INFO; opening is SET_STATION_ADDRESS (its failure ignored,
as undinet does) then OPEN with the directed, broadcast and promiscuous filters; removal is
SHUTDOWN, CLEANUP, STOP_UNDI. A frame goes out through one TRANSMIT: undinet pads it to 60 bytes
and, for IP, ARP and RARP, strips the Ethernet header and names the protocol, because some stacks
cannot send P_UNKNOWN frames; the bytes are copied into one base-memory buffer first. TX
completions are not waited for (many stacks never report them). Frames come in through ISR:
IN_START when the device's interrupt line is up (what undinet's IRQ handler does), then
IN_PROCESS and IN_GET_NEXT until DONE, at most four frames per poll, each fragment copied out of
the ROM's memory after its pointer and length are checked.
"""
from __future__ import annotations

import struct
import time
from typing import Callable

from hw.errors import RomRunError
from romtools import pxe

from . import machine as M
from .loader import UndiMachine

ETH_ZLEN, ETH_HLEN = 60, 14
PROTOCOLS = {0x0800: pxe.P_IP, 0x0806: pxe.P_ARP, 0x8035: pxe.P_RARP}
RX_QUOTA = 4
# ISR PROCESS/GET_NEXT calls one poll may make. A driver hands back each finished transmit and
# each receive fragment once, then DONE; a ring holds far fewer than this, so more means the ROM
# answers TRANSMIT or bad fragments for ever, and the poll ends instead of spinning with it.
ISR_CALLS_PER_POLL = 256
INITIALIZE_RETRIES, INITIALIZE_RETRY_DELAY = 10, 0.2
# Where the client keeps its buffers, in the scratch segment (the parameter block is at 0x100).
TBD_AT, DEST_AT, IMMED_AT, BLOCK_AT = 0x0200, 0x0300, 0x0400, 0x1000
MAX_FRAME = 0xC00
ISR_LABELS = {pxe.ISR_IN_START: "UNDI_ISR/START", pxe.ISR_IN_PROCESS: "UNDI_ISR/PROCESS",
              pxe.ISR_IN_GET_NEXT: "UNDI_ISR/GET_NEXT"}


def _blank(schema) -> dict:
    return schema.parse(bytes(schema.sizeof()))


class UndiClient:
    def __init__(self, um: UndiMachine, irq_pending: Callable[[], bool] | None = None, timeout: float = 5.0):
        self.um, self.m = um, um.m
        self.irq_pending = irq_pending
        self.timeout = timeout  # the watchdog for each call
        self.mac = b""
        self.info = self.iface = self.nic_type = None
        self.isr_processing = False
        self.rx_errors = 0
        self.last_call = ""

    # -- one call ---------------------------------------------------------------------------------
    def call(self, opcode: int, check: bool = True, label: str | None = None, **fields):
        """Build the opcode's block from ``fields`` (the rest zero), call, and parse what came back.
        With ``check``, an exit code other than success ends in a RomRunError naming the call.
        ``label`` names the call in a meter's breakdown (default: the call's name)."""
        name, schema = pxe.CALLS[opcode]
        meter = self.m.meter
        began = meter is not None and meter.begin(label or name)
        try:
            block = _blank(schema)
            block.update(fields)
            self.last_call = name
            exit_code, raw = self.um.call(opcode, schema.build(block), timeout=self.timeout)
            out = schema.parse(raw)
        finally:
            if began:
                meter.end()
        if check and exit_code != pxe.EXIT_SUCCESS:
            raise RomRunError(f"{name} failed: exit {exit_code:#x}, PXE status {out.status:#06x}")
        out.exit = exit_code
        return out

    # -- bring-up and removal -----------------------------------------------------------------------
    def start_undi(self):
        dev = self.um.device
        return self.call(pxe.START_UNDI, ax=dev.bdf, bx=0xFFFF, dx=0xFFFF, di=0x0000, es=0xF000)

    def startup(self):
        return self.call(pxe.UNDI_STARTUP)

    def initialize(self, retries: int = INITIALIZE_RETRIES):
        for attempt in range(retries):
            out = self.call(pxe.UNDI_INITIALIZE, check=attempt == retries - 1)
            if out.exit == pxe.EXIT_SUCCESS:
                return out
            time.sleep(INITIALIZE_RETRY_DELAY)
        return out

    def get_information(self):
        self.info = self.call(pxe.UNDI_GET_INFORMATION)
        if not 0 < self.info.hw_addr_len <= pxe.MAC_ADDR_LEN:
            raise RomRunError(f"UNDI_GET_INFORMATION: HwAddrLen {self.info.hw_addr_len} is not a MAC length")
        self.mac = bytes(self.info.current_node_address[:self.info.hw_addr_len])
        return self.info

    def get_iface_info(self):
        self.iface = self.call(pxe.UNDI_GET_IFACE_INFO)
        return self.iface

    def get_nic_type(self):
        self.nic_type = self.call(pxe.UNDI_GET_NIC_TYPE)
        return self.nic_type

    def get_statistics(self):
        return self.call(pxe.UNDI_GET_STATISTICS)

    def set_station_address(self, mac: bytes, check: bool = False):
        return self.call(pxe.UNDI_SET_STATION_ADDRESS, check=check,
                         station_address=bytes(mac).ljust(pxe.MAC_ADDR_LEN, b"\0"))

    def reset_adapter(self):
        return self.call(pxe.UNDI_RESET_ADAPTER)

    def open(self, pkt_filter: int = pxe.FLTR_DIRECTED | pxe.FLTR_BRDCST | pxe.FLTR_PRMSCS):
        self.set_station_address(self.mac)
        return self.call(pxe.UNDI_OPEN, pkt_filter=pkt_filter)

    def close(self):
        return self.call(pxe.UNDI_CLOSE)

    def shutdown(self):
        return self.call(pxe.UNDI_SHUTDOWN)

    def cleanup(self):
        return self.call(pxe.UNDI_CLEANUP)

    def stop_undi(self):
        return self.call(pxe.STOP_UNDI)

    def probe(self) -> None:
        """undinet_probe's sequence."""
        self.start_undi()
        self.startup()
        self.initialize()
        self.get_information()
        self.get_iface_info()

    def remove(self) -> None:
        """undinet_remove's sequence."""
        self.shutdown()
        self.cleanup()
        self.stop_undi()

    # -- frames -----------------------------------------------------------------------------------
    def transmit(self, frame: bytes, data_block: bool = False):
        """Send one Ethernet frame. undinet puts it all in the TBD's immediate buffer; with
        ``data_block`` the first 16 bytes go there and the rest in one DATABLK, which a stack must
        gather (the spec's TBD with one data block)."""
        if len(frame) < ETH_HLEN or len(frame) > MAX_FRAME:
            raise RomRunError(f"UNDI_TRANSMIT: a frame of {len(frame)} bytes cannot be sent")
        meter = self.m.meter
        began = meter is not None and meter.begin("UNDI_TRANSMIT")  # the TBD's building counts too
        try:
            return self._transmit(frame, data_block)
        finally:
            if began:
                meter.end()

    def _transmit(self, frame: bytes, data_block: bool):
        frame = bytes(frame).ljust(ETH_ZLEN, b"\0")
        dest, ethertype = frame[:6], struct.unpack(">H", frame[12:14])[0]
        protocol = PROTOCOLS.get(ethertype, pxe.P_UNKNOWN)
        payload = frame if protocol == pxe.P_UNKNOWN else frame[ETH_HLEN:]
        base = M.SCRATCH_SEG * 16
        self.m.write(base + DEST_AT, dest.ljust(pxe.MAC_ADDR_LEN, b"\0"))
        blocks = [dict(td_ptr_type=0, td_rsvd_byte=0, td_data_len=0, td_data_ptr=dict(offset=0, segment=0))
                  for _ in range(pxe.MAX_DATA_BLKS)]
        immed, rest = (payload[:16], payload[16:]) if data_block else (payload, b"")
        self.m.write(base + IMMED_AT, immed)
        if rest:
            self.m.write(base + BLOCK_AT, rest)
            blocks[0] = dict(td_ptr_type=1, td_rsvd_byte=0, td_data_len=len(rest),
                             td_data_ptr=dict(offset=BLOCK_AT, segment=M.SCRATCH_SEG))
        tbd = pxe.UndiTbd.build(dict(immed_length=len(immed), xmit=dict(offset=IMMED_AT, segment=M.SCRATCH_SEG),
                                     data_blk_count=1 if rest else 0, data_block=blocks))
        self.m.write(base + TBD_AT, tbd)
        return self.call(pxe.UNDI_TRANSMIT, protocol=protocol,
                         xmit_flag=pxe.XMT_BROADCAST if dest == b"\xff" * 6 else pxe.XMT_DESTADDR,
                         dest_addr=dict(offset=DEST_AT, segment=M.SCRATCH_SEG),
                         tbd=dict(offset=TBD_AT, segment=M.SCRATCH_SEG))

    def isr(self, func_flag: int):
        return self.call(pxe.UNDI_ISR, label=ISR_LABELS.get(func_flag), func_flag=func_flag)

    def poll(self) -> list[bytes]:
        """undinet_poll: frames received, at most RX_QUOTA. Without an interrupt line to look at
        (``irq_pending`` None) it processes on every poll, as undinet does for stacks whose IRQs
        never fire."""
        frames: list[bytes] = []
        if not self.isr_processing:
            if self.irq_pending is not None:
                if not self.irq_pending():
                    return frames
                if self.isr(pxe.ISR_IN_START).func_flag != pxe.ISR_OUT_OURS:
                    return frames
            self.isr_processing = True
            flag = pxe.ISR_IN_PROCESS
        else:
            flag = pxe.ISR_IN_GET_NEXT
        partial = bytearray()
        calls = 0
        while len(frames) < RX_QUOTA:
            calls += 1
            if calls > ISR_CALLS_PER_POLL:
                raise RomRunError(f"UNDI_ISR: {ISR_CALLS_PER_POLL} PROCESS/GET_NEXT calls in one poll without DONE "
                                  "or a whole frame: the UNDI driver is looping")
            out = self.isr(flag)
            flag = pxe.ISR_IN_GET_NEXT
            if out.func_flag == pxe.ISR_OUT_TRANSMIT:
                continue
            if out.func_flag == pxe.ISR_OUT_RECEIVE:
                total, frag = out.frame_length, out.buffer_length
                if total == 0 or total < frag or len(partial) + frag > total:
                    self.rx_errors += 1  # undinet's "insane fragment"
                    partial.clear()
                    continue
                partial += self.m.read(pxe.linear(out.frame), frag, "the received fragment (ISR Frame)")
                if len(partial) == total:
                    frames.append(bytes(partial))
                    partial.clear()
                continue
            self.isr_processing = False  # DONE, or a FuncFlag undinet does not know
            break
        if partial:
            self.rx_errors += 1  # an incomplete frame when the quota or DONE came
        return frames
