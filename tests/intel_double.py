"""A register-recording double of an 8254x/8257x NIC behind a fake VFIO device, to drive IntelNic.

Every BAR register access and every config-space write lands in one ordered event log, so a test
can check the order of a bring-up or a close against the datasheets. The registers behave as the
manuals describe, as far as IntelNic uses them:

- CTRL.RST (bit 26) resets the MAC: receive and transmit units off, ring registers and masks
  cleared, CTRL.GIO_MASTER_DISABLE cleared; the bit reads back set for ``rst_reads`` reads, then
  clears itself (or never, with ``rst_reads=None``).
- On a PCI Express part (82574L), setting CTRL.GIO_MASTER_DISABLE (bit 2) clears
  STATUS.GIO_MASTER_ENABLE (bit 19) once the part has no master request pending: after
  ``gio_reads`` reads of STATUS (or never, with ``gio_reads=None``). A conventional PCI part
  (82540EM) has no such handshake; like QEMU's model of it, its STATUS bit 19 stays set.
- On a PCI Express part, EECD.AUTO_RD (bit 9) is clear from a MAC reset until the NVM auto-read
  ends, ``auto_rd_reads`` reads of EECD later (or never, with ``auto_rd_reads=None``); the 8254x
  manual's EECD has no such bit, and this double leaves it clear there.
- GPRC, GPTC and MPC are clear-on-read; the test adds to them with ``count()``.
- STATUS.LU is set (link up); MDIC reports ready; EERD returns ``eeprom[word]`` with its done bit.

Receive descriptors can be written "by the device" with ``receive()``, which follows RDBAL/RDH
into the fake's DMA memory as the NIC would.
"""
from __future__ import annotations

import mmap
import struct

from hw.pci import parse_bdf
from hw.vfio import DmaBuffer

CTRL, STATUS, EECD, EERD, MDIC, ICR, IMC = 0x0000, 0x0008, 0x0010, 0x0014, 0x0020, 0x00C0, 0x00D8
EECD_AUTO_RD = 1 << 9
RCTL, TCTL = 0x0100, 0x0400
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
GPRC, GPTC, MPC = 0x4074, 0x4080, 0x4010
CTRL_RST, CTRL_GIO_MASTER_DISABLE, CTRL_SLU = 1 << 26, 1 << 2, 1 << 6
STATUS_LU, STATUS_GIO_MASTER_ENABLE = 1 << 1, 1 << 19
EERD_START = 1 << 0
MDIC_READY = 1 << 28
CLEAR_ON_READ = (GPRC, GPTC, MPC, ICR)
# Registers a MAC reset returns to zero (8254x/8257x manuals: their initial values).
RESET_TO_ZERO = (RCTL, TCTL, RDBAL, RDBAH, RDLEN, RDH, RDT, TDBAL, TDBAH, TDLEN, TDH, TDT, 0x00D0)

PCI_COMMAND, COMMAND_BUS_MASTER = 0x04, 0x4


class RecordingBar:
    """BAR0: reads and writes of the driver go through read32/write32 and are logged; ``mm`` is the
    same memory for the C ring's tail writes."""

    def __init__(self, nic: "FakeNic"):
        self.nic = nic
        self.mm = mmap.mmap(-1, 0x20000)
        self._u32 = memoryview(self.mm).cast("I")
        self.closed = False

    def reg(self, off: int) -> int:
        return self._u32[off >> 2]

    def set(self, off: int, value: int) -> None:
        self._u32[off >> 2] = value & 0xFFFFFFFF

    def read32(self, off: int) -> int:
        if self.closed:
            raise ValueError("operation forbidden on released memoryview object")
        value = self.nic.on_read(off)
        self.nic.log.append(("r", off, value))
        return value

    def write32(self, off: int, value: int) -> None:
        if self.closed:
            raise ValueError("operation forbidden on released memoryview object")
        self.nic.log.append(("w", off, value & 0xFFFFFFFF))
        self.nic.on_write(off, value & 0xFFFFFFFF)


class FakeNic:
    """The device: registers, config space and DMA memory, and the one log of what the driver did."""

    def __init__(self, device_id: int = 0x10D3, pcie: bool = True, rst_reads: int | None = 2,
                 gio_reads: int | None = 3, auto_rd_reads: int | None = 2):
        self.log: list[tuple] = []
        self.auto_rd_reads, self._auto_rd_left = auto_rd_reads, 0
        self.device_id, self.pcie = device_id, pcie
        self.rst_reads, self.gio_reads = rst_reads, gio_reads
        self._rst_left = self._gio_left = 0
        self.bar = RecordingBar(self)
        self.bar.set(STATUS, STATUS_LU | STATUS_GIO_MASTER_ENABLE)
        self.bar.set(CTRL, CTRL_SLU)
        self.eeprom = [0x5452, 0x0000, 0xD310] + [0] * 61
        self.config = bytearray(256)
        struct.pack_into("<HH", self.config, 0, 0x8086, device_id)
        struct.pack_into("<H", self.config, 0x06, 0x10)  # capability list present
        self.config[0x34] = 0x40
        self.config[0x40:0x42] = bytes([0x01, 0x50 if pcie else 0x00])  # power management
        if pcie:
            self.config[0x50:0x52] = bytes([0x10, 0x00])  # PCI Express
        self.dma: dict[int, DmaBuffer] = {}
        self._next_iova = 0x10000000
        self.resets = 0

    # -- registers ----------------------------------------------------------------------------------
    def on_read(self, off: int) -> int:
        bar = self.bar
        if off == CTRL:
            value = bar.reg(CTRL)
            if self._rst_left is None or self._rst_left > 0:
                value |= CTRL_RST
                if self._rst_left:
                    self._rst_left -= 1
            return value
        if off == STATUS:
            value = bar.reg(STATUS) & ~STATUS_GIO_MASTER_ENABLE
            if not self.pcie or not bar.reg(CTRL) & CTRL_GIO_MASTER_DISABLE:
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
                return bar.reg(EECD) & ~EECD_AUTO_RD
            return bar.reg(EECD) | EECD_AUTO_RD
        if off == EERD:
            word = (bar.reg(EERD) >> (2 if self.pcie else 8)) & 0xFF
            done = (1 << 1) if self.pcie else (1 << 4)
            return (self.eeprom[word] << 16) | done
        if off == MDIC:
            return bar.reg(MDIC) | MDIC_READY
        value = bar.reg(off)
        if off in CLEAR_ON_READ:
            bar.set(off, 0)
        return value

    def on_write(self, off: int, value: int) -> None:
        bar = self.bar
        if off == CTRL:
            if value & CTRL_RST:
                self.resets += 1
                for reg in RESET_TO_ZERO:
                    bar.set(reg, 0)
                value &= ~(CTRL_RST | CTRL_GIO_MASTER_DISABLE)
                self._rst_left = self.rst_reads
                self._auto_rd_left = self.auto_rd_reads
            elif value & CTRL_GIO_MASTER_DISABLE and not bar.reg(CTRL) & CTRL_GIO_MASTER_DISABLE:
                self._gio_left = self.gio_reads
        bar.set(off, value)

    def count(self, reg: int, n: int) -> None:
        self.bar.set(reg, self.bar.reg(reg) + n)

    # -- the device's side of the receive ring ------------------------------------------------------
    def memory_at(self, iova: int, size: int) -> memoryview:
        for buf in self.dma.values():
            if buf.iova <= iova and iova + size <= buf.iova + buf.size:
                return memoryview(buf.mem)[iova - buf.iova:iova - buf.iova + size]
        raise AssertionError(f"the driver gave the device IOVA {iova:#x}, which maps no DMA memory")

    def receive(self, data: bytes, eop: bool = True, errors: int = 0) -> None:
        """Write one receive descriptor at RDH (legacy layout, 8254x manual) and advance RDH."""
        bar = self.bar
        ring = (bar.reg(RDBAH) << 32) | bar.reg(RDBAL)
        count = bar.reg(RDLEN) // 16
        head = bar.reg(RDH)
        assert count and head != bar.reg(RDT), "the driver left the device no receive descriptor"
        desc = self.memory_at(ring + head * 16, 16)
        addr = struct.unpack_from("<Q", desc, 0)[0]
        self.memory_at(addr, len(data))[:] = data
        struct.pack_into("<H", desc, 8, len(data))
        desc[13] = errors
        desc[12] = 0x01 | (0x02 if eop else 0)
        bar.set(RDH, (head + 1) % count)

    # -- what IntelNic opens --------------------------------------------------------------------------
    def pci_device(self, bdf: str = "0000:00:03.0") -> "FakePciDevice":
        return FakePciDevice(self, bdf)


class FakePciDevice:
    def __init__(self, nic: FakeNic, bdf: str):
        self.nic = nic
        self.bdf = parse_bdf(bdf)
        self.vendor_id, self.device_id = 0x8086, nic.device_id
        self.driver = "vfio-pci"


class FakeVfio:
    """The VfioDevice calls IntelNic makes, answered by the FakeNic and logged."""

    def __init__(self, dev: FakePciDevice):
        self.nic = dev.nic
        self.pci = dev
        self.closed = False
        self.nic.log.append(("vfio_open",))

    def _check(self) -> None:
        if self.closed:
            raise OSError(9, "Bad file descriptor")

    def map_bar(self, index: int) -> RecordingBar:
        self._check()
        assert index == 0
        return self.nic.bar

    def read_config(self, offset: int, size: int) -> bytes:
        self._check()
        return bytes(self.nic.config[offset:offset + size])

    def write_config(self, offset: int, data: bytes) -> None:
        self._check()
        self.nic.log.append(("cfg", offset, int.from_bytes(data, "little")))
        self.nic.config[offset:offset + len(data)] = data

    def set_bus_master(self, on: bool = True) -> None:
        cmd = int.from_bytes(self.read_config(PCI_COMMAND, 2), "little")
        cmd = (cmd | COMMAND_BUS_MASTER) if on else (cmd & ~COMMAND_BUS_MASTER)
        self.write_config(PCI_COMMAND, cmd.to_bytes(2, "little"))

    def dma_alloc(self, size: int, align: int | None = None, hugepages: bool = False) -> DmaBuffer:
        self._check()
        size = (size + 4095) & ~4095
        iova = self.nic._next_iova
        self.nic._next_iova += (size + (2 << 20) - 1) & ~((2 << 20) - 1)
        buf = DmaBuffer(mmap.mmap(-1, size), iova, size)
        self.nic.dma[iova] = buf
        self.nic.log.append(("dma_alloc", iova, size))
        return buf

    def dma_free(self, buf: DmaBuffer) -> None:
        self._check()
        self.nic.log.append(("dma_free", buf.iova))
        del self.nic.dma[buf.iova]
        buf.mem.close()

    def close(self) -> None:
        if not self.closed:
            self.nic.log.append(("vfio_close",))
            self.nic.bar.closed = True
        self.closed = True


def install(monkeypatch, nic: FakeNic) -> None:
    """Make IntelNic open ``nic`` for any BDF: PciDevice.open and VfioDevice answer with the fakes."""
    import hw.pci
    import hw.vfio

    monkeypatch.setattr(hw.pci.PciDevice, "open", classmethod(lambda cls, bdf: nic.pci_device(str(bdf))))
    monkeypatch.setattr(hw.vfio, "VfioDevice", FakeVfio)


def bus_master(event) -> bool | None:
    """For a config write to the command register: whether it leaves bus mastering on."""
    if event[0] == "cfg" and event[1] == PCI_COMMAND:
        return bool(event[2] & COMMAND_BUS_MASTER)
    return None
