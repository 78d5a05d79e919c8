"""A register-recording double of an 8254x/8257x NIC behind a fake VFIO device, to drive IntelNic.

The registers are drivers.intel_model's (the same model the UNDI machine runs ROMs against); this
file adds what a test of IntelNic needs around it: every BAR register access and every
config-space write lands in one ordered event log, so a test can check the order of a bring-up or
a close against the datasheets; the reset, master-disable and NVM auto-read handshakes take a few
reads by default (``rst_reads``, ``gio_reads``, ``auto_rd_reads``; None for never); GPRC, GPTC and
MPC move only when the test says so with ``count()``; ``receive()`` writes a receive descriptor "by
the device", following RDBAL/RDH into the fake's DMA memory as the NIC would.
"""
from __future__ import annotations

import mmap
import struct

from drivers.intel_model import (  # noqa: F401  (register names the tests use through this module)
    CLEAR_ON_READ,
    CTRL,
    CTRL_GIO_MASTER_DISABLE,
    CTRL_RST,
    CTRL_SLU,
    EECD,
    EECD_AUTO_RD,
    EERD,
    GPRC,
    GPTC,
    ICR,
    IMC,
    MDIC,
    MDIC_READY,
    MPC,
    RCTL,
    RDBAH,
    RDBAL,
    RDH,
    RDLEN,
    RDT,
    RESET_TO_ZERO,
    RXDCTL0,
    SRRCTL0,
    STATUS,
    STATUS_GIO_MASTER_ENABLE,
    STATUS_LU,
    TCTL,
    TDBAH,
    TDBAL,
    TDH,
    TDLEN,
    TDT,
    TXDCTL0,
    XDCTL_ENABLE,
    IntelModel,
)
from hw.pci import parse_bdf
from hw.vfio import DmaBuffer

EERD_START = 1 << 0

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


class FakeNic(IntelModel):
    """The device: the model's registers in BAR0, config space and DMA memory, and the one log of
    what the driver did."""

    def __init__(self, device_id: int = 0x10D3, pcie: bool = True, rst_reads: int | None = 2,
                 gio_reads: int | None = 3, auto_rd_reads: int | None = 2, queue_reads: int = 2):
        self.log: list[tuple] = []
        self.bar = RecordingBar(self)
        self.dma: dict[int, DmaBuffer] = {}
        super().__init__(device_id=device_id, pcie=pcie, mac=bytes.fromhex("5254000010d3"),
                         rst_reads=rst_reads, gio_reads=gio_reads, auto_rd_reads=auto_rd_reads,
                         regs=self.bar.mm, memory_at=self.memory_at, queue_reads=queue_reads)
        self.config = bytearray(256)
        struct.pack_into("<HH", self.config, 0, 0x8086, device_id)
        struct.pack_into("<H", self.config, 0x06, 0x10)  # capability list present
        self.config[0x34] = 0x40
        self.config[0x40:0x42] = bytes([0x01, 0x50 if pcie else 0x00])  # power management
        if pcie:
            self.config[0x50:0x52] = bytes([0x10, 0x00])  # PCI Express
        self._next_iova = 0x10000000

    # -- the device's side of the receive ring ------------------------------------------------------
    def memory_at(self, iova: int, size: int) -> memoryview:
        for buf in self.dma.values():
            if buf.iova <= iova and iova + size <= buf.iova + buf.size:
                return memoryview(buf.mem)[iova - buf.iova:iova - buf.iova + size]
        raise AssertionError(f"the driver gave the device IOVA {iova:#x}, which maps no DMA memory")

    def receive(self, data: bytes, eop: bool = True, errors: int = 0) -> None:
        """One receive descriptor written at RDH, no counter moved (the test counts with count())."""
        assert self.write_rx_descriptor(data, eop, errors), "the driver left the device no receive descriptor"

    # -- what IntelNic opens --------------------------------------------------------------------------
    def pci_device(self, bdf: str = "0000:00:03.0") -> "FakePciDevice":
        return FakePciDevice(self, bdf)


class FakePciDevice:
    def __init__(self, nic: FakeNic, bdf: str):
        self.nic = nic
        self.bdf = parse_bdf(bdf)
        self.vendor_id, self.device_id = 0x8086, nic.device_id
        self.ids = f"{self.vendor_id:04x}:{self.device_id:04x}"
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


class FakeVf(FakeNic):
    """An 82576 virtual function (0x10CA) and the PF's side of its mailbox, for IntelVf.

    The VF's own registers that share an offset and a meaning with the PF's are the model's:
    VTCTRL.RST is CTRL.RST at 0 (self-clearing after ``rst_reads`` reads), VTSTATUS.LU is STATUS.LU,
    and queue 0's ring registers are where the PF's are. The units are the PF's: RCTL and TCTL stay
    enabled whatever a reset does, and the VF never writes them. The statistics are the VF's
    (VFGPRC/VFGPTC), which count up and wrap instead of clearing when read. The mailbox (VMMB at
    0x0C40, message memory at 0x0800) behaves as the 82576 datasheet and QEMU's igb give it: VFU taken
    when written (and let go when a write leaves it out), REQ delivers the message to the PF, which
    acknowledges (PFACK) and posts its reply (PFSTS); reading VMMB clears PFSTS, PFACK and RSTD; RSTI
    reads set while the PF is not ready. The PF answers RESET with ``pf_mac`` (ACK) or, with None,
    NACK; SET_MAC with ACK when ``accept_mac``; nothing at all when ``pf_silent``. With
    ``reset_on_msg`` (a message type) the PF acknowledges that message (PFACK) and then goes into a
    reset of its own instead of replying: RSTI reads set from then on."""

    VMMB, VMBMEM = 0x0C40, 0x0800
    VFGPRC, VFGPTC = 0x0F10, 0x0F14
    MB_REQ, MB_ACK, MB_VFU, MB_PFU, MB_PFSTS, MB_PFACK, MB_RSTI, MB_RSTD = (1 << i for i in range(8))

    def __init__(self, pf_mac: bytes | None = bytes.fromhex("525400007610"), accept_mac: bool = True,
                 pf_ready: bool = True, pf_silent: bool = False, reset_on_msg: int | None = None, **kw):
        self.pf_mac, self.accept_mac, self.pf_ready, self.pf_silent = pf_mac, accept_mac, pf_ready, pf_silent
        self.reset_on_msg = reset_on_msg
        self.messages: list[list[int]] = []  # what the VF sent, in order
        self.vmmb = 0
        super().__init__(0x10CA, True, **kw)
        self._units_on()

    def _units_on(self) -> None:
        self.set(RCTL, 1 << 1)
        self.set(TCTL, 1 << 1)

    # What a VF reset leaves alone: QEMU's igb_vf_reset clears only the queues' enable bits (and the
    # PF's VFRE/VFTE for the VF); the ring registers keep what the last user wrote, tails included.
    KEPT_BY_RESET = (RDBAL, RDBAH, RDLEN, RDH, RDT, TDBAL, TDBAH, TDLEN, TDH, TDT, SRRCTL0)

    def reset(self) -> None:
        kept = {reg: self.reg(reg) for reg in self.KEPT_BY_RESET}
        super().reset()
        for reg, value in kept.items():
            self.set(reg, value)
        self._units_on()
        self.set(RXDCTL0, 0)  # a VF reset takes its queues away (QEMU's igb_vf_reset)
        self.set(TXDCTL0, 0)

    def count(self, reg: int, n: int) -> None:
        reg = {GPRC: self.VFGPRC, GPTC: self.VFGPTC}.get(reg, reg)
        self.set(reg, self.reg(reg) + n)

    def on_read(self, off: int) -> int:
        if off == self.VMMB:
            value = self.vmmb | (0 if self.pf_ready else self.MB_RSTI)
            self.vmmb &= ~(self.MB_PFSTS | self.MB_PFACK | self.MB_RSTD)
            return value
        return super().on_read(off)

    def on_write(self, off: int, value: int) -> None:
        if off in (RCTL, TCTL, 0x0410):
            raise AssertionError(f"a VF wrote the PF's register {off:#x}")
        if off != self.VMMB:
            super().on_write(off, value)
            return
        if value & self.MB_VFU:
            if not self.vmmb & self.MB_PFU:
                self.vmmb |= self.MB_VFU
        else:
            self.vmmb &= ~self.MB_VFU
        if value & self.MB_REQ and not self.pf_silent:
            self._pf_answers([self.reg(self.VMBMEM + 4 * i) for i in range(16)])

    def _pf_answers(self, msg: list[int]) -> None:
        self.messages.append(msg)
        self.vmmb |= self.MB_PFACK
        kind = msg[0] & 0xFFFF
        if kind == self.reset_on_msg:
            self.pf_ready = False
            return
        if kind == 0x01:
            if self.pf_mac is None:
                reply = [0x01 | 1 << 30]
            else:
                reply = [0x01 | 1 << 31, int.from_bytes(self.pf_mac[:4], "little"),
                         int.from_bytes(self.pf_mac[4:], "little"), 0]
        elif kind == 0x02:
            if self.accept_mac:
                self.pf_mac = msg[1].to_bytes(4, "little") + (msg[2] & 0xFFFF).to_bytes(2, "little")
            reply = [0x02 | (1 << 31 if self.accept_mac else 1 << 30)]
        else:
            reply = [kind | 1 << 30]
        for i in range(16):
            self.set(self.VMBMEM + 4 * i, reply[i] if i < len(reply) else 0)
        self.vmmb |= self.MB_PFSTS
