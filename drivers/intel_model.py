"""A register model of an 8254x/8257x (e1000/e1000e) or 82576 (igb) NIC: what a driver sees through BAR0.

It serves two kinds of caller that must agree on what the hardware does: tests of romlab's own
driver (tests/intel_double.py puts a VFIO fake around it and logs every access), and the UNDI
machine (drivers/undi), where a ROM's driver runs against it. The registers behave as the
manuals describe, as far as those drivers use them:

- CTRL.RST (bit 26) resets the MAC: units off, ring registers and masks cleared, RAL0/RAH0
  reloaded from the EEPROM's first three words (Address Valid set), CTRL.GIO_MASTER_DISABLE
  cleared; the bit reads back set for ``rst_reads`` reads, then clears itself (never, with None).
- On a PCI Express part (82574L), setting CTRL.GIO_MASTER_DISABLE clears STATUS.GIO_MASTER_ENABLE
  after ``gio_reads`` reads of STATUS; a conventional PCI part (82540EM) has no such handshake.
- On a PCI Express part, EECD.AUTO_RD is clear from a MAC reset until ``auto_rd_reads`` reads of
  EECD later; the 8254x's EECD has no such bit.
- EERD returns ``eeprom[word]`` with its done bit: address at bit 2 and done at bit 1 on PCI
  Express parts ("large" format), address at bit 8 and done at bit 4 on the 8254x.
- GPRC, GPTC, MPC and ICR are clear-on-read. IMS sets and IMC clears interrupt mask bits, ICS
  raises causes; the interrupt line is up while ICR & IMS is not zero.
- A write to TDT makes the device walk its transmit ring (legacy 16-byte descriptors): buffers
  of a frame are gathered up to EOP, the frame goes to ``tx_frames``, DD is written back where
  RS asks, TDH follows, ICR.TXDW is raised. Frames put in ``rx_queue`` are written into the
  receive ring while RCTL.EN is set and a descriptor is free (RDH != RDT), raising ICR.RXT0.

- The 82576 (device 0x10C9, ``advanced``) walks its rings in the advanced format (82576 datasheet:
  transmit data descriptor with cmd_type_len at byte 8 and olinfo_status at 12, DD written back into
  bit 0 of olinfo_status; receive write-back with status_error at byte 8 and length at 12, its
  first 8 bytes overwriting the buffer address) and only while queue 0 is enabled: RXDCTL0/TXDCTL0
  bit 25, set by reset, and reading back what was written ``queue_reads`` reads later. SRRCTL0's
  BSIZEPKT (1 KiB units) is the receive buffer size; a frame longer than it is not taken.

The device reaches memory only through ``memory_at(address, size)``, the bus-master view its
owner gives it, so a driver's bad descriptor address shows up as that owner's error.
"""
from __future__ import annotations

import collections
import struct
from typing import Callable

CTRL, STATUS, EECD, EERD, MDIC = 0x0000, 0x0008, 0x0010, 0x0014, 0x0020
ICR, ICS, IMS, IMC = 0x00C0, 0x00C8, 0x00D0, 0x00D8
RCTL, TCTL = 0x0100, 0x0400
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
GPRC, GPTC, MPC = 0x4074, 0x4080, 0x4010
SRRCTL0, RXDCTL0, TXDCTL0 = 0x280C, 0x2828, 0x3828
XDCTL_ENABLE = 1 << 25
ADV_DCMD_EOP, ADV_DCMD_RS, ADV_DCMD_DEXT, ADV_DTYP_DATA = 1 << 24, 1 << 27, 1 << 29, 0x3 << 20
ADVANCED_PARTS = (0x10C9, 0x10CA)  # the 82576 and its virtual function
RAL0, RAH0 = 0x5400, 0x5404
EECD_AUTO_RD = 1 << 9
CTRL_RST, CTRL_GIO_MASTER_DISABLE, CTRL_SLU = 1 << 26, 1 << 2, 1 << 6
STATUS_LU, STATUS_GIO_MASTER_ENABLE = 1 << 1, 1 << 19
STATUS_FD, STATUS_SPEED_1000 = 1 << 0, 2 << 6
RCTL_EN, TCTL_EN = 1 << 1, 1 << 1
RAH_AV = 1 << 31
MDIC_READY = 1 << 28
ICR_TXDW, ICR_TXQE, ICR_LSC, ICR_RXT0 = 1 << 0, 1 << 1, 1 << 2, 1 << 7
TX_CMD_EOP, TX_CMD_RS, TX_STA_DD = 0x01, 0x08, 0x01
RX_STA_DD, RX_STA_EOP = 0x01, 0x02
CLEAR_ON_READ = (GPRC, GPTC, MPC, ICR)
# Registers a MAC reset returns to zero (8254x/8257x manuals: their initial values).
RESET_TO_ZERO = (RCTL, TCTL, RDBAL, RDBAH, RDLEN, RDH, RDT, TDBAL, TDBAH, TDLEN, TDH, TDT, IMS, ICR)
BAR0_SIZE = 0x20000
DESC = 16
LEN_MASK = 0xFFF80  # TDLEN/RDLEN bits 19:7
MAX_FRAME = 16384  # the largest frame the model gathers from transmit buffers


def eeprom_with_mac(mac: bytes, words: int = 64) -> list[int]:
    """An EEPROM image whose words 0-2 hold ``mac`` (low byte first, as the manuals store it) and
    whose word 0x3F makes the first 64 words sum to 0xBABA, the checksum the manuals require."""
    image = [mac[0] | mac[1] << 8, mac[2] | mac[3] << 8, mac[4] | mac[5] << 8] + [0] * (words - 3)
    image[0x3F] = (0xBABA - sum(image[:0x3F])) & 0xFFFF
    return image


class IntelModel:
    """The registers and rings of one NIC; ``regs`` is its BAR0 (a 128 KiB buffer if not given)."""

    def __init__(self, device_id: int = 0x100E, pcie: bool = False, mac: bytes = bytes.fromhex("525400123456"),
                 rst_reads: int | None = 0, gio_reads: int | None = 0, auto_rd_reads: int | None = 0,
                 regs=None, memory_at: Callable[[int, int], memoryview] | None = None, queue_reads: int = 0):
        self.device_id, self.pcie = device_id, pcie
        self.advanced = device_id in ADVANCED_PARTS
        self.queue_reads = queue_reads
        self._queue_shown: dict[int, tuple[int, int]] = {}  # xDCTL -> (value shown, reads left before the new one)
        self.rst_reads, self.gio_reads, self.auto_rd_reads = rst_reads, gio_reads, auto_rd_reads
        self._rst_left = self._gio_left = self._auto_rd_left = 0
        self._u32 = memoryview(regs if regs is not None else bytearray(BAR0_SIZE)).cast("B").cast("I")
        self.memory_at = memory_at
        self.eeprom = eeprom_with_mac(mac)
        self.tx_frames: collections.deque[bytes] = collections.deque()
        self.rx_queue: collections.deque[bytes] = collections.deque()
        self._tx_partial = bytearray()
        self.resets = 0
        self.set(STATUS, STATUS_LU | STATUS_FD | STATUS_SPEED_1000 | STATUS_GIO_MASTER_ENABLE)
        self.set(CTRL, CTRL_SLU)
        self._load_mac()
        self._reset_queues()

    # -- raw register storage -----------------------------------------------------------------
    def reg(self, off: int) -> int:
        return self._u32[off >> 2]

    def set(self, off: int, value: int) -> None:
        self._u32[off >> 2] = value & 0xFFFFFFFF

    def count(self, reg: int, n: int) -> None:
        self.set(reg, self.reg(reg) + n)

    @property
    def mac(self) -> bytes:
        return struct.pack("<HHH", *self.eeprom[:3])

    def _load_mac(self) -> None:
        self.set(RAL0, self.eeprom[0] | self.eeprom[1] << 16)
        self.set(RAH0, self.eeprom[2] | RAH_AV)

    @property
    def irq(self) -> bool:
        """The interrupt line: a cause is pending that the mask lets through."""
        return bool(self.reg(ICR) & self.reg(IMS))

    # -- what the driver does -----------------------------------------------------------------
    def on_read(self, off: int) -> int:
        if off == CTRL:
            value = self.reg(CTRL)
            if self._rst_left is None or self._rst_left > 0:
                value |= CTRL_RST
                if self._rst_left:
                    self._rst_left -= 1
            return value
        if off == STATUS:
            value = self.reg(STATUS) & ~STATUS_GIO_MASTER_ENABLE
            if not self.pcie or not self.reg(CTRL) & CTRL_GIO_MASTER_DISABLE:
                return value | STATUS_GIO_MASTER_ENABLE
            if self._gio_left is None or self._gio_left > 0:
                if self._gio_left:
                    self._gio_left -= 1
                return value | STATUS_GIO_MASTER_ENABLE
            return value
        if off == EECD:
            if not self.pcie or self._auto_rd_left is None or self._auto_rd_left > 0:
                if self._auto_rd_left:
                    self._auto_rd_left -= 1
                return self.reg(EECD) & ~EECD_AUTO_RD
            return self.reg(EECD) | EECD_AUTO_RD
        if off == EERD:
            word = (self.reg(EERD) >> (2 if self.pcie else 8)) & 0xFF
            done = (1 << 1) if self.pcie else (1 << 4)
            value = self.eeprom[word] if word < len(self.eeprom) else 0xFFFF
            return (value << 16) | done
        if off == MDIC:
            return self.reg(MDIC) | MDIC_READY
        if self.advanced and off in (RXDCTL0, TXDCTL0) and off in self._queue_shown:
            shown, left = self._queue_shown[off]
            if left > 0:
                self._queue_shown[off] = (shown, left - 1)
                return shown
            del self._queue_shown[off]
        value = self.reg(off)
        if off in CLEAR_ON_READ:
            self.set(off, 0)
        return value

    def on_write(self, off: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if off == CTRL:
            if value & CTRL_RST:
                self.reset()
                value &= ~(CTRL_RST | CTRL_GIO_MASTER_DISABLE)
            elif value & CTRL_GIO_MASTER_DISABLE and not self.reg(CTRL) & CTRL_GIO_MASTER_DISABLE:
                self._gio_left = self.gio_reads
        elif off == IMS:
            value |= self.reg(IMS)
        elif off == IMC:
            self.set(IMS, self.reg(IMS) & ~value)
        elif off == ICS:
            self.set(ICR, self.reg(ICR) | value)
            return
        elif self.advanced and off in (RXDCTL0, TXDCTL0) and self.queue_reads:
            self._queue_shown[off] = (self.reg(off), self.queue_reads)
        self.set(off, value)
        if off == TDT and self.memory_at is not None:
            self._transmit()
        elif (off == RDT or off == RCTL) and self.memory_at is not None:
            self._deliver()

    def reset(self) -> None:
        self.resets += 1
        for reg in RESET_TO_ZERO:
            self.set(reg, 0)
        self._tx_partial.clear()
        self._load_mac()
        self._rst_left = self.rst_reads
        self._auto_rd_left = self.auto_rd_reads
        self._reset_queues()

    def _reset_queues(self) -> None:
        """The 82576's queue 0 comes out of reset enabled, with 2 KiB receive buffers (datasheet
        defaults; QEMU's igb the same)."""
        if self.advanced:
            self._queue_shown.clear()
            self.set(RXDCTL0, XDCTL_ENABLE | 1 << 16)
            self.set(TXDCTL0, XDCTL_ENABLE)
            self.set(SRRCTL0, 2)

    def queue_enabled(self, reg: int) -> bool:
        return not self.advanced or bool(self.reg(reg) & XDCTL_ENABLE)

    # -- the device's side of the rings -------------------------------------------------------
    def ring_geometry(self, bal: int, bah: int, length: int) -> tuple[int, int]:
        """Base and descriptor count; the length register keeps only bits 19:7, as the manuals say,
        so one doorbell makes the model walk at most 65535 descriptors, whatever a driver wrote."""
        return (self.reg(bah) << 32) | self.reg(bal), (self.reg(length) & LEN_MASK) // DESC

    def _transmit(self) -> None:
        if not self.reg(TCTL) & TCTL_EN or not self.queue_enabled(TXDCTL0):
            return
        base, count = self.ring_geometry(TDBAL, TDBAH, TDLEN)
        if not count:
            return
        head, tail = self.reg(TDH), self.reg(TDT) % count
        sent = False
        while head != tail:
            desc = self.memory_at(base + head * DESC, DESC)
            if self.advanced:
                addr, cmd_type_len = struct.unpack_from("<QI", desc, 0)
                assert cmd_type_len & (ADV_DCMD_DEXT | ADV_DTYP_DATA) == ADV_DCMD_DEXT | ADV_DTYP_DATA, (
                    f"descriptor {head}: {cmd_type_len:#x} is not an advanced data descriptor")
                length = cmd_type_len & 0xFFFF
                cmd = (TX_CMD_EOP if cmd_type_len & ADV_DCMD_EOP else 0) | (TX_CMD_RS if cmd_type_len & ADV_DCMD_RS else 0)
            else:
                addr, length, _cso, cmd = struct.unpack_from("<QHBB", desc, 0)
            if len(self._tx_partial) + length > MAX_FRAME:
                self._tx_partial.clear()  # a frame with no end: the manuals' device drops it
            self._tx_partial += self.memory_at(addr, length)
            if cmd & TX_CMD_EOP:
                self.tx_frames.append(bytes(self._tx_partial))
                self._tx_partial.clear()
                self.count(GPTC, 1)
                sent = True
            if cmd & TX_CMD_RS:
                desc[12] |= TX_STA_DD  # legacy STA and advanced olinfo_status both start at byte 12
            head = (head + 1) % count
            self.set(TDH, head)
        if sent:
            self.set(ICR, self.reg(ICR) | ICR_TXDW | ICR_TXQE)

    def write_rx_descriptor(self, data: bytes, eop: bool = True, errors: int = 0) -> bool:
        """Write one buffer into the descriptor at RDH and advance RDH, touching no counter and no
        interrupt cause; False when the driver left no descriptor free."""
        base, count = self.ring_geometry(RDBAL, RDBAH, RDLEN)
        head = self.reg(RDH)
        if not count or head == self.reg(RDT) % count or not self.queue_enabled(RXDCTL0):
            return False
        desc = self.memory_at(base + head * DESC, DESC)
        addr = struct.unpack_from("<Q", desc, 0)[0]
        if self.advanced:
            assert len(data) <= (self.reg(SRRCTL0) & 0x7F) * 1024, "a frame longer than SRRCTL0's buffer size"
        self.memory_at(addr, len(data))[:] = data
        if self.advanced:  # the write-back: packet information over the address, then status, errors, length
            desc[0:8] = bytes(8)
            struct.pack_into("<IHH", desc, 8, RX_STA_DD | (RX_STA_EOP if eop else 0) | errors << 24, len(data), 0)
        else:
            struct.pack_into("<H", desc, 8, len(data))
            desc[13] = errors
            desc[12] = RX_STA_DD | (RX_STA_EOP if eop else 0)
        self.set(RDH, (head + 1) % count)
        return True

    def receive(self, data: bytes, eop: bool = True, errors: int = 0) -> bool:
        """A frame received as the device would: into the ring, GPRC counted and RXT0 raised; or,
        with no descriptor free, missed (MPC counted) and False."""
        if not self.write_rx_descriptor(data, eop, errors):
            self.count(MPC, 1)
            return False
        self.count(GPRC, 1)
        self.set(ICR, self.reg(ICR) | ICR_RXT0)
        return True

    def _deliver(self) -> None:
        while self.rx_queue and self.reg(RCTL) & RCTL_EN:
            count = (self.reg(RDLEN) & LEN_MASK) // DESC
            if not count or self.reg(RDH) == self.reg(RDT) % count or not self.queue_enabled(RXDCTL0):
                return
            self.receive(self.rx_queue.popleft())

    def inject(self, frame: bytes) -> None:
        """A frame arrives from the wire: into the ring now if it can, else when a descriptor frees."""
        self.rx_queue.append(bytes(frame))
        if self.memory_at is not None:
            self._deliver()
