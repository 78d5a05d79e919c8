"""One driver for Intel's e1000 family, the way iPXE's intel.c serves many parts.

The parts differ in a handful of details, and those live as flags in the PCI ID
table below, not as copied code: the 82574L (QEMU ``e1000e``) needs its
interrupt-throttle and extended-control set-up, the 82540EM (QEMU ``e1000``)
does not. Both run here with 16-byte legacy descriptors, so one pair of rings
(``drivers.ring``) serves them. igb/ixgbe would join with their own flags
(advanced descriptors, per-queue enable bits) in the same table.

Bring-up follows the datasheets' order: mask interrupts, reset, mask again, set
link up, program the receive and transmit rings, enable.
"""
from __future__ import annotations

import time

from hw.parts import DRIVER_PARTS, F_AUTONEG, F_EERD_SHIFT_2, F_IAME, F_ITR, F_RFCTL, Part  # noqa: F401
from romtools.errors import RomError

# Registers (byte offsets into BAR0), 8254x/8257x software developer's manuals.
CTRL, STATUS, EECD, EERD, CTRL_EXT, MDIC = 0x0000, 0x0008, 0x0010, 0x0014, 0x0018, 0x0020
ICR, ITR, ICS, IMS, IMC = 0x00C0, 0x00C4, 0x00C8, 0x00D0, 0x00D8
RCTL, TCTL, TIPG = 0x0100, 0x0400, 0x0410
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
MTA, RAL0, RAH0, RXCSUM, RFCTL = 0x5200, 0x5400, 0x5404, 0x5000, 0x5008
GPRC, GPTC, GORCL, GOTCL, MPC = 0x4074, 0x4080, 0x4088, 0x4090, 0x4010

CTRL_SLU, CTRL_RST = 1 << 6, 1 << 26
STATUS_LU = 1 << 1
RCTL_EN, RCTL_UPE, RCTL_MPE, RCTL_BAM, RCTL_SECRC = 1 << 1, 1 << 3, 1 << 4, 1 << 15, 1 << 26
TCTL_EN, TCTL_PSP = 1 << 1, 1 << 3
TCTL_CT, TCTL_COLD = 0x0F << 4, 0x3F << 12
EERD_START, EERD_DONE = 1 << 0, 1 << 4
ICR_TXDW, ICR_LSC, ICR_RXT0 = 1 << 0, 1 << 2, 1 << 7

MDIC_WRITE, MDIC_READY, PHY_ADDR = 1 << 26, 1 << 28, 1
PHY_CTRL, PHY_CTRL_AUTONEG_EN, PHY_CTRL_RESTART_AN = 0, 1 << 12, 1 << 9


# The parts and their flags (F_*) are in hw.parts, one table shared with the in-system flash
# programmers; PARTS holds those this driver runs.
PARTS = DRIVER_PARTS


def find_part(vendor: int, device: int) -> Part | None:
    """The part if romlab's driver runs it, else None."""
    return PARTS.get((vendor, device))


class IntelNic:
    """Open one NIC of the family through VFIO. Use as a context manager."""

    RX_COUNT = 256
    TX_COUNT = 512
    BUF_SIZE = 2048

    def __init__(self, bdf: str, *, impl: str = "c"):
        from hw.pci import PciDevice
        from hw.vfio import VfioDevice

        dev = PciDevice.open(bdf)
        part = find_part(dev.vendor_id, dev.device_id)
        if part is None:
            raise RomError(f"{dev.bdf} is {dev.vendor_id:04x}:{dev.device_id:04x}, not a NIC this driver supports "
                           f"({', '.join(f'{p.vendor:04x}:{p.device:04x}' for p in PARTS.values())})")
        if dev.driver not in (None, "vfio-pci"):
            raise RomError(f"{dev.bdf} is still bound to its kernel driver {dev.driver}; run "
                           f"'romlab vfio bind {dev.bdf}' first")
        if dev.driver is None:
            raise RomError(f"{dev.bdf} is bound to no driver; run 'romlab vfio bind {dev.bdf}' first")
        self.part, self.impl = part, impl
        self.bdf = str(dev.bdf)
        self.vfio = VfioDevice(dev)
        self.rx_mem = self.tx_mem = self.pool = None
        try:
            self.bar = self.vfio.map_bar(0)
            self._reset()
            self._init_rings()
        except BaseException:
            self.close()
            raise

    # -- bring-up ---------------------------------------------------------------------------
    def _reset(self) -> None:
        bar = self.bar
        self._bus_master(True)
        bar.write32(IMC, 0xFFFFFFFF)
        bar.write32(CTRL, bar.read32(CTRL) | CTRL_RST)
        deadline = time.monotonic() + 1.0
        time.sleep(0.001)
        while bar.read32(CTRL) & CTRL_RST:
            if time.monotonic() > deadline:
                raise RomError(f"{self.bdf}: the NIC did not come out of reset within 1 s")
            time.sleep(0.001)
        bar.write32(IMC, 0xFFFFFFFF)
        bar.read32(ICR)
        if self.part.flags & F_IAME:
            bar.write32(CTRL_EXT, bar.read32(CTRL_EXT) & ~(1 << 27))
        if self.part.flags & F_ITR:
            bar.write32(ITR, 0)
        bar.write32(CTRL, bar.read32(CTRL) | CTRL_SLU)
        for i in range(128):
            bar.write32(MTA + 4 * i, 0)
        if self.part.flags & F_AUTONEG:
            self._phy_write(PHY_CTRL, 0x0140 | PHY_CTRL_AUTONEG_EN | PHY_CTRL_RESTART_AN)
        self.wait_link(3.0)

    def _phy_write(self, reg: int, value: int) -> None:
        self.bar.write32(MDIC, value | (reg << 16) | (PHY_ADDR << 21) | MDIC_WRITE)
        deadline = time.monotonic() + 0.5
        while not self.bar.read32(MDIC) & MDIC_READY:
            if time.monotonic() > deadline:
                raise RomError(f"{self.bdf}: PHY register write timed out")
            time.sleep(0.0005)

    def wait_link(self, timeout: float) -> bool:
        """Wait for the link (autonegotiation takes about half a second after a reset)."""
        deadline = time.monotonic() + timeout
        while not self.link_up:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _bus_master(self, on: bool) -> None:
        cmd = int.from_bytes(self.vfio.read_config(4, 2), "little")
        cmd = (cmd | 0x4) if on else (cmd & ~0x4)
        self.vfio.write_config(4, cmd.to_bytes(2, "little"))

    def _init_rings(self) -> None:
        from drivers.mempool import Mempool
        from drivers.ring import CRing, PyRing, RingMemory

        bar = self.bar
        ring_cls = CRing if self.impl == "c" else PyRing
        self.pool = Mempool(self.vfio, RingMemory.pool_size(self.RX_COUNT, self.BUF_SIZE)
                            + RingMemory.pool_size(self.TX_COUNT, self.BUF_SIZE))
        self.rx_mem = RingMemory(self.pool, self.RX_COUNT, self.BUF_SIZE)
        self.tx_mem = RingMemory(self.pool, self.TX_COUNT, self.BUF_SIZE)
        self.rx = ring_cls(self.rx_mem, bar, RDT, rx=True)
        self.tx = ring_cls(self.tx_mem, bar, TDT, rx=False)
        for base, mem in ((RDBAL, self.rx_mem), (TDBAL, self.tx_mem)):
            bar.write32(base, mem.desc.iova & 0xFFFFFFFF)
            bar.write32(base + 4, mem.desc.iova >> 32)
            bar.write32(base + 8, mem.count * 16)
            bar.write32(base + 0x10, 0)
        if self.part.flags & F_RFCTL:
            bar.write32(RFCTL, 0)
            bar.write32(RXCSUM, 0)
        bar.write32(TDT, 0)
        bar.write32(RDT, self.RX_COUNT - 1)
        bar.write32(TIPG, 0x0060200A)
        bar.write32(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD)
        bar.write32(RCTL, RCTL_EN | RCTL_UPE | RCTL_MPE | RCTL_BAM | RCTL_SECRC)

    # -- operations -------------------------------------------------------------------------
    @property
    def mac(self) -> bytes:
        lo, hi = self.bar.read32(RAL0), self.bar.read32(RAH0)
        return lo.to_bytes(4, "little") + (hi & 0xFFFF).to_bytes(2, "little")

    def eeprom_word(self, word: int) -> int:
        if self.part.flags & F_EERD_SHIFT_2:
            cmd, done = (word << 2) | EERD_START, 1 << 1
        else:
            cmd, done = (word << 8) | EERD_START, EERD_DONE
        self.bar.write32(EERD, cmd)
        deadline = time.monotonic() + 0.5
        while True:
            v = self.bar.read32(EERD)
            if v & done:
                return v >> 16
            if time.monotonic() > deadline:
                raise RomError(f"{self.bdf}: EEPROM read of word {word} timed out")

    @property
    def link_up(self) -> bool:
        return bool(self.bar.read32(STATUS) & STATUS_LU)

    def tx_batch(self, pkts: bytes, lens) -> int:
        return self.tx.tx_batch(pkts, lens)

    def tx_flush(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.tx.tx_pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def rx_batch(self, out: bytearray, max_pkts: int = 256):
        return self.rx.rx_batch(out, max_pkts)

    def rx_wait_batch(self, out: bytearray, timeout: float, mode: str = "adaptive", max_pkts: int = 256):
        """A batch of received frames within ``timeout``: by polling, by interrupt, or adaptively
        (poll while frames keep coming, sleep on the interrupt after a run of empty polls)."""
        deadline = time.monotonic() + timeout
        empty = 0
        while True:
            n, lens = self.rx.rx_batch(out, max_pkts)
            left = deadline - time.monotonic()
            if n or left <= 0:
                return n, lens
            empty += 1
            if mode == "irq" or (mode == "adaptive" and empty >= 64):
                self.wait_rx(min(left, 0.5))
                empty = 0
            elif mode == "poll" or mode == "adaptive":
                time.sleep(0.0002 if mode == "adaptive" else 0)

    def stats(self) -> dict[str, int]:
        """Hardware counters (they clear on read) plus the rings' own counts."""
        return {"rx_good": self.bar.read32(GPRC), "tx_good": self.bar.read32(GPTC),
                "rx_missed": self.bar.read32(MPC), "rx_ring": int(self.rx.packets), "tx_ring": int(self.tx.packets)}

    # -- interrupts -------------------------------------------------------------------------
    def irq_enable(self) -> int:
        """Route the NIC's interrupt (MSI where offered, else INTx) to an eventfd; return it."""
        from hw import _vfio_cdef as C

        index = C.VFIO_PCI_MSI_IRQ_INDEX
        try:
            if self.vfio.irq_info(index).count < 1:
                raise RomError("no MSI")
            fd = self.vfio.irq_enable(index)[0]
        except RomError:
            index = C.VFIO_PCI_INTX_IRQ_INDEX
            fd = self.vfio.irq_enable(index)[0]
        self._irq_index = index
        self._irq_fd = fd
        self.interrupts = 0
        return fd

    def wait_rx(self, timeout: float) -> bool:
        """Sleep until the NIC raises a receive interrupt (or ``timeout``); True if one came.

        The cause is armed only while waiting, so a busy poll loop pays nothing for it."""
        import os
        import select

        if getattr(self, "_irq_fd", None) is None:
            self.irq_enable()
        self.bar.write32(IMS, ICR_RXT0)
        try:
            ready, _, _ = select.select([self._irq_fd], [], [], timeout)
            if ready:
                os.read(self._irq_fd, 8)
                self.interrupts += 1
            return bool(ready)
        finally:
            self.bar.write32(IMC, ICR_RXT0)
            self.bar.read32(ICR)  # reading clears the causes
            from hw import _vfio_cdef as C

            if self._irq_index == C.VFIO_PCI_INTX_IRQ_INDEX:
                self.vfio.irq_unmask(self._irq_index)

    # -- teardown ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the rings, turn bus mastering off, free DMA, close VFIO: on every path."""
        bar = getattr(self, "bar", None)
        try:
            if bar is not None:
                bar.write32(IMC, 0xFFFFFFFF)
                bar.write32(RCTL, 0)
                bar.write32(TCTL, 0)
                time.sleep(0.002)
                self._bus_master(False)
        finally:
            for ring in (getattr(self, "rx", None), getattr(self, "tx", None)):
                if ring is not None:
                    ring.release()
            self.rx = self.tx = None
            if self.pool is not None:
                self.pool.free()
            self.rx_mem = self.tx_mem = self.pool = None
            self.vfio.close()

    def __enter__(self) -> "IntelNic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
