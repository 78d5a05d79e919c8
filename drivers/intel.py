"""One driver for Intel's e1000 family, the way iPXE's intel.c serves many parts.

The parts differ in a handful of details, and those live as flags in the PCI ID
table (hw.parts), not as copied code: the 82574L (QEMU ``e1000e``) needs its
interrupt-throttle and extended-control set-up, the 82540EM (QEMU ``e1000``)
does not; both run with 16-byte legacy descriptors. The 82576 (igb, QEMU ``igb``)
runs the advanced descriptors (F_ADVANCED: ``drivers.descriptors.Advanced``,
``ring_advanced`` in drivers/c/ring.c) through the same rings, and its queues
have enable bits of their own (F_QUEUE_ENABLE: RXDCTL/TXDCTL.ENABLE, polled, and
SRRCTL for the buffer size and descriptor type), as Linux igb programs them. Its
virtual function is a device of its own (drivers/intelvf.py); ``drivers.open_nic``
picks the class by PCI ID.

Bring-up follows the datasheets' order (and iPXE's intel_reset): bus mastering off, mask
interrupts, units off, reset the MAC and wait for the reset and the NVM auto-read after it to
end, mask again, set link up, program the receive and transmit rings, and only then let the
device master the bus and enable its units. Until the reset has ended the
device may still be running whatever rings a previous user left it, so it gets no bus mastering
before. Close undoes it in the reverse order (iPXE's intel_close, Linux's e1000e reset): units
off, master requests drained on PCI Express parts, MAC reset polled to its end, bus mastering
off, and only then the DMA memory unmapped.
"""
from __future__ import annotations

import time

from hw.errors import HardwareError, RomlabError
from hw.parts import (  # noqa: F401
    DRIVER_PARTS,
    F_ADVANCED,
    F_AUTONEG,
    F_EERD_SHIFT_2,
    F_IAME,
    F_ITR,
    F_QUEUE_ENABLE,
    F_RFCTL,
    F_VF,
    Part,
)

# Registers (byte offsets into BAR0), 8254x/8257x software developer's manuals.
CTRL, STATUS, EECD, EERD, CTRL_EXT, MDIC = 0x0000, 0x0008, 0x0010, 0x0014, 0x0018, 0x0020
ICR, ITR, ICS, IMS, IMC = 0x00C0, 0x00C4, 0x00C8, 0x00D0, 0x00D8
RCTL, TCTL, TIPG = 0x0100, 0x0400, 0x0410
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
MTA, RAL0, RAH0, RXCSUM, RFCTL = 0x5200, 0x5400, 0x5404, 0x5000, 0x5008
GPRC, GPTC, GORCL, GOTCL, MPC = 0x4074, 0x4080, 0x4088, 0x4090, 0x4010
# Queue 0's split-receive control and queue enables (82576 datasheet; Linux igb's E1000_SRRCTL(0),
# E1000_RXDCTL(0), E1000_TXDCTL(0)): iPXE's intel.h puts xDCTL at 0x28 into each ring's block.
SRRCTL0, RXDCTL0, TXDCTL0 = 0x280C, 0x2828, 0x3828
XDCTL_ENABLE = 1 << 25
# SRRCTL: packet buffer size in 1 KiB units (bits 6:0), descriptor type in bits 27:25 (001b: advanced,
# one buffer), and drop-when-no-descriptor (bit 31) for a VF, whose stall would block the others.
SRRCTL_BSIZEPKT_SHIFT, SRRCTL_BSIZEPKT_MASK = 10, 0x7F
SRRCTL_DESCTYPE_ADV_ONEBUF, SRRCTL_DROP_EN = 1 << 25, 1 << 31
QUEUE_TIMEOUT = 1.0  # s; iPXE waits 100 ms (INTEL_DISABLE_MAX_WAIT_MS), Linux igb 10 ms: room for a loaded host

CTRL_LRST, CTRL_SLU, CTRL_RST = 1 << 3, 1 << 6, 1 << 26
STATUS_LU = 1 << 1
# PCI Express parts (8257x): master-disable request and its acknowledgement (Linux e1000e's
# e1000e_disable_pcie_master); conventional PCI parts (8254x) have neither.
CTRL_GIO_MASTER_DISABLE, STATUS_GIO_MASTER_ENABLE = 1 << 2, 1 << 19
PCIE_CAP_ID = 0x10
MASTER_DISABLE_TIMEOUT = 0.08  # s; Linux: MASTER_DISABLE_TIMEOUT, 800 polls 100 us apart
RESET_TIMEOUT = 1.0  # s
# After a MAC reset the part reloads its settings from the NVM. The 8257x reports the end in
# EECD.AUTO_RD (Linux e1000e_get_auto_rd_done polls it about 10 ms); the 8254x has no such bit, and
# Linux's e1000_reset_hw waits 5 ms instead. It also gives the 8254x, which has no master-disable
# handshake, 10 ms with its units off for outstanding PCI transactions to end before the reset.
EECD_AUTO_RD = 1 << 9
AUTO_RD_FAMILIES = ("8257x",)
AUTO_RD_TIMEOUT = 0.05  # s
AUTO_RD_WAIT = 0.005  # s, 8254x
# The 82576 has EECD.AUTO_RD, but QEMU's igb never sets it: Linux's igb_get_auto_rd_done polls it
# for up to 10 ms and goes on without it ("Auto Read Done did not complete"). Polled the same way.
AUTO_RD_OPTIONAL = {"82576": 0.010}  # family: s to poll before going on without the bit
QUIESCE_WAIT = 0.010  # s, 8254x
POLL_INTERVAL = 0.0001  # s between register polls
IMPLS = ("c", "python")
RCTL_EN, RCTL_UPE, RCTL_MPE, RCTL_BAM, RCTL_SECRC = 1 << 1, 1 << 3, 1 << 4, 1 << 15, 1 << 26
# RCTL.BSIZE (bits 17:16) and BSEX (bit 25) for each receive buffer size the manuals allow.
RCTL_BSEX = 1 << 25
RCTL_BSIZE = {2048: 0, 1024: 1 << 16, 512: 2 << 16, 256: 3 << 16,
              16384: RCTL_BSEX | 1 << 16, 8192: RCTL_BSEX | 2 << 16, 4096: RCTL_BSEX | 3 << 16}
TCTL_EN, TCTL_PSP = 1 << 1, 1 << 3
TCTL_CT, TCTL_COLD = 0x0F << 4, 0x3F << 12
EERD_START, EERD_DONE = 1 << 0, 1 << 4
ICR_TXDW, ICR_LSC, ICR_RXT0 = 1 << 0, 1 << 2, 1 << 7

MDIC_WRITE, MDIC_READY, PHY_ADDR = 1 << 26, 1 << 28, 1
PHY_CTRL, PHY_CTRL_AUTONEG_EN, PHY_CTRL_RESTART_AN = 0, 1 << 12, 1 << 9


# The parts and their flags (F_*) are in hw.parts, one table shared with the in-system flash
# programmers; PARTS holds those this class runs (a virtual function is drivers.intelvf's).
PARTS = {key: p for key, p in DRIVER_PARTS.items() if not p.flags & F_VF}


def find_part(vendor: int, device: int) -> Part | None:
    """The part if romlab's driver runs it, else None."""
    return PARTS.get((vendor, device))


def srrctl(buf_size: int, fmt) -> int:
    """SRRCTL for one receive queue: its buffer size in 1 KiB units and its descriptor type (advanced,
    one buffer; the legacy type is 000b)."""
    from drivers.descriptors import ADVANCED

    if buf_size % 1024 or not 1 <= buf_size >> SRRCTL_BSIZEPKT_SHIFT <= SRRCTL_BSIZEPKT_MASK:
        raise HardwareError(f"receive buffers of {buf_size} bytes are not a size SRRCTL.BSIZEPKT can give the "
                            f"device (a multiple of 1024 up to {SRRCTL_BSIZEPKT_MASK} KiB)")
    return (buf_size >> SRRCTL_BSIZEPKT_SHIFT) | (SRRCTL_DESCTYPE_ADV_ONEBUF if fmt is ADVANCED else 0)


class IntelNic:
    """Open one NIC of the family through VFIO. Use as a context manager."""

    # The receive interrupt: the register that unmasks a cause, the one that masks it, the cause
    # register and the receive cause's bit in all three. The PF's cause register clears when read,
    # a VF's when 1 is written to the bit (IRQ_CAUSE_WRITE_CLEARS).
    IRQ_UNMASK, IRQ_MASK, IRQ_CAUSE, IRQ_RX = IMS, IMC, ICR, ICR_RXT0
    IRQ_CAUSE_WRITE_CLEARS = False

    RX_COUNT = 256
    TX_COUNT = 512
    BUF_SIZE = 2048
    OWNS_UNITS = True  # the receive and transmit units (RCTL, TCTL, TIPG) are this function's to run
    SRRCTL_EXTRA = 0  # bits beyond buffer size and descriptor type for SRRCTL
    HAS_EEPROM = True  # eeprom_word reads the NVM through EERD

    def __init__(self, bdf: str, *, impl: str = "c"):
        from drivers.ring import require_dma_ordering
        from hw.pci import PciDevice
        from hw.vfio import VfioDevice

        if impl not in IMPLS:
            raise HardwareError(f"no ring implementation {impl!r}; choose one of {', '.join(IMPLS)}")
        require_dma_ordering()
        if self.BUF_SIZE not in RCTL_BSIZE:
            raise HardwareError(f"receive buffers of {self.BUF_SIZE} bytes are not a size RCTL.BSIZE can give the "
                                f"device ({', '.join(map(str, sorted(RCTL_BSIZE)))})")
        self._closed = False
        self.vfio = self.bar = self.rx = self.tx = None
        self.rx_mem = self.tx_mem = self.pool = None
        dev = PciDevice.open(bdf)
        part = self._find_part(dev)
        if dev.driver not in (None, "vfio-pci"):
            raise HardwareError(f"{dev.bdf} is still bound to its kernel driver {dev.driver}; run "
                           f"`romlab vfio bind {dev.bdf}` first")
        if dev.driver is None:
            raise HardwareError(f"{dev.bdf} is bound to no driver; run `romlab vfio bind {dev.bdf}` first")
        from drivers.descriptors import ADVANCED, LEGACY

        self.part, self.impl = part, impl
        self.fmt = ADVANCED if part.flags & F_ADVANCED else LEGACY
        self.bdf = str(dev.bdf)
        self.vfio = VfioDevice(dev)
        self._totals = {"rx_good": 0, "tx_good": 0, "rx_missed": 0}
        try:
            self.pcie = self._is_pcie()
            self.bar = self.vfio.map_bar(0)
            self._reset()
            self._read_counters()  # they count from the reset on: start the totals there
            self._init_rings()
        except BaseException:
            try:
                self.close()
            except RomlabError:
                pass  # the error that stopped the open says what went wrong first
            raise

    @staticmethod
    def _find_part(dev) -> Part:
        """The part this class runs for ``dev``, or the one-line error saying why not."""
        from hw.pci import LIST_HINT

        part = find_part(dev.vendor_id, dev.device_id)
        vf = DRIVER_PARTS.get((dev.vendor_id, dev.device_id))
        if part is None and vf is not None and vf.flags & F_VF:
            raise HardwareError(f"{dev.bdf} ({dev.ids}) is an SR-IOV virtual function ({vf.name}); it is driven "
                                f"through its PF's mailbox by drivers.intelvf (drivers.open_nic picks it)")
        if part is None:
            raise HardwareError(f"{dev.bdf} ({dev.ids}) is not a NIC this driver supports "
                                f"({', '.join(f'{p.vendor:04x}:{p.device:04x}' for p in DRIVER_PARTS.values())}); "
                                f"{LIST_HINT}")
        return part

    def _is_pcie(self) -> bool:
        """Whether the part sits on PCI Express (has the capability), which decides the
        master-disable handshake on close."""
        from hw.pci import parse_capabilities

        return any(c.id == PCIE_CAP_ID and not c.extended for c in parse_capabilities(self.vfio.read_config(0, 256)))

    def _poll(self, reg: int, mask: int, want_set: bool, timeout: float, interval: float = POLL_INTERVAL) -> bool:
        """Read ``reg`` until the ``mask`` bit reads set (or clear); False if ``timeout`` ran out.

        Whether the time is up is decided before each read, so the last read always comes after the
        deadline: a process stalled by the scheduler past the deadline still looks once more instead
        of failing on a read taken before the stall."""
        deadline = time.monotonic() + timeout
        while True:
            expired = time.monotonic() > deadline
            if bool(self.bar.read32(reg) & mask) == want_set:
                return True
            if expired:
                return False
            time.sleep(interval)

    # -- bring-up ---------------------------------------------------------------------------
    def _reset(self) -> None:
        bar = self.bar
        self.vfio.set_bus_master(False)  # whatever a previous user left running stops reaching memory
        bar.write32(IMC, 0xFFFFFFFF)
        if not self._mac_reset():
            raise HardwareError(f"{self.bdf}: the NIC did not come out of reset within {RESET_TIMEOUT:g} s")
        if not self._auto_read_done():
            raise HardwareError(f"{self.bdf}: the NVM auto-read after the reset did not end within "
                                f"{AUTO_RD_TIMEOUT:g} s (EECD.AUTO_RD never set); check the NVM")
        bar.write32(IMC, 0xFFFFFFFF)
        bar.read32(ICR)
        if self.part.flags & F_IAME:
            bar.write32(CTRL_EXT, bar.read32(CTRL_EXT) & ~(1 << 27))
        if self.part.flags & F_ITR:
            bar.write32(ITR, 0)
        ctrl = bar.read32(CTRL) | CTRL_SLU
        if self.part.flags & F_QUEUE_ENABLE:
            ctrl &= ~CTRL_LRST  # the igb generation comes out of reset with its link held in reset
        bar.write32(CTRL, ctrl)
        for i in range(128):
            bar.write32(MTA + 4 * i, 0)
        if self.part.flags & F_AUTONEG:
            self._phy_write(PHY_CTRL, 0x0140 | PHY_CTRL_AUTONEG_EN | PHY_CTRL_RESTART_AN)
        self.wait_link(3.0)

    def _mac_reset(self) -> bool:
        """Reset the MAC (CTRL.RST) and poll until the bit clears itself; False if it never does.

        A PCI Express part is first asked to stop mastering (CTRL.GIO_MASTER_DISABLE) and polled
        until it has no request pending (STATUS.GIO_MASTER_ENABLE clear), as Linux's e1000e does
        before every reset; a part that does not acknowledge in time still stops at the reset. A
        conventional PCI part has no such handshake: with its units off it is given the fixed
        QUIESCE_WAIT instead."""
        bar = self.bar
        bar.write32(RCTL, 0)
        bar.write32(TCTL, 0)
        if self.pcie:
            bar.write32(CTRL, bar.read32(CTRL) | CTRL_GIO_MASTER_DISABLE)
            self._poll(STATUS, STATUS_GIO_MASTER_ENABLE, False, MASTER_DISABLE_TIMEOUT)
        else:
            bar.read32(STATUS)  # the writes above reach the device before the wait starts
            time.sleep(QUIESCE_WAIT)
        bar.write32(CTRL, bar.read32(CTRL) | CTRL_RST)
        time.sleep(POLL_INTERVAL)  # the manuals: no register access for 1 us after setting RST
        return self._poll(CTRL, CTRL_RST, False, RESET_TIMEOUT)

    def _auto_read_done(self) -> bool:
        """Wait for the NVM auto-read a MAC reset starts: poll EECD.AUTO_RD where the family has
        it (on the 82576 for AUTO_RD_OPTIONAL's time, then on either way), else the 8254x's fixed
        AUTO_RD_WAIT. False if a bit the family must set never came."""
        key = self.part.family.key
        if key in AUTO_RD_FAMILIES:
            return self._poll(EECD, EECD_AUTO_RD, True, AUTO_RD_TIMEOUT)
        if key in AUTO_RD_OPTIONAL:
            self._poll(EECD, EECD_AUTO_RD, True, AUTO_RD_OPTIONAL[key])
            return True
        time.sleep(AUTO_RD_WAIT)
        return True

    def _phy_write(self, reg: int, value: int) -> None:
        self.bar.write32(MDIC, value | (reg << 16) | (PHY_ADDR << 21) | MDIC_WRITE)
        if not self._poll(MDIC, MDIC_READY, True, 0.5):
            raise HardwareError(f"{self.bdf}: PHY register write timed out")

    def wait_link(self, timeout: float) -> bool:
        """Wait for the link (autonegotiation takes about half a second after a reset)."""
        deadline = time.monotonic() + timeout
        while not self.link_up:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _queue_enable(self, reg: int, on: bool) -> None:
        """Set or clear a queue's ENABLE bit and poll until the device reports it so (datasheet 82576:
        a queue is programmed while disabled, and its tail is written only once it reads enabled)."""
        bar = self.bar
        bar.write32(reg, (XDCTL_ENABLE | 1 << 16) if on else 0)  # WTHRESH 1: every descriptor written back
        if not self._poll(reg, XDCTL_ENABLE, on, QUEUE_TIMEOUT):
            which = "receive" if reg == RXDCTL0 else "transmit"
            raise HardwareError(f"{self.bdf}: the {which} queue did not {'start' if on else 'stop'} within "
                                f"{QUEUE_TIMEOUT:g} s ({'RX' if reg == RXDCTL0 else 'TX'}DCTL.ENABLE)")

    def _init_rings(self) -> None:
        from drivers.mempool import Mempool
        from drivers.ring import CRing, PyRing, RingMemory

        bar, fmt = self.bar, self.fmt
        queues = bool(self.part.flags & F_QUEUE_ENABLE)
        ring_cls = CRing if self.impl == "c" else PyRing
        dsize = fmt.desc_size
        self.pool = Mempool(self.vfio, RingMemory.pool_size(self.RX_COUNT, self.BUF_SIZE, fmt)
                            + RingMemory.pool_size(self.TX_COUNT, self.BUF_SIZE, fmt))
        self.rx_mem = RingMemory(self.pool, self.RX_COUNT, self.BUF_SIZE, fmt)
        self.tx_mem = RingMemory(self.pool, self.TX_COUNT, self.BUF_SIZE, fmt)
        self.rx = ring_cls(self.rx_mem, bar, RDT, rx=True, fmt=fmt)
        self.tx = ring_cls(self.tx_mem, bar, TDT, rx=False, fmt=fmt)
        if queues:
            self._queue_enable(RXDCTL0, False)
            self._queue_enable(TXDCTL0, False)
        # Head and tail both zeroed while the queue is off (iPXE's intel_create_ring, Linux's
        # igb_configure_*_ring): a VF's reset leaves its tails where the last user put them, and a
        # stale tail would hand the device descriptors the moment its queue is enabled.
        for base, head, tail, mem in ((RDBAL, RDH, RDT, self.rx_mem), (TDBAL, TDH, TDT, self.tx_mem)):
            bar.write32(base, mem.desc.iova & 0xFFFFFFFF)
            bar.write32(base + 4, mem.desc.iova >> 32)
            bar.write32(base + 8, mem.count * dsize)
            bar.write32(head, 0)
            bar.write32(tail, 0)
        if queues:
            bar.write32(SRRCTL0, srrctl(self.BUF_SIZE, fmt) | self.SRRCTL_EXTRA)
        if self.part.flags & F_RFCTL:
            bar.write32(RFCTL, 0)
            bar.write32(RXCSUM, 0)
        if not queues:
            bar.write32(RDT, self.RX_COUNT - 1)
        if self.OWNS_UNITS:
            bar.write32(TIPG, 0x0060200A)
        self.vfio.set_bus_master(True)  # the rings are in place: now the device may use them
        if queues:  # enabled queues first, then the receive tail, then the units (Linux igb's order)
            self._queue_enable(TXDCTL0, True)
            self._queue_enable(RXDCTL0, True)
            bar.write32(RDT, self.RX_COUNT - 1)
        if self.OWNS_UNITS:
            bar.write32(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD)
            bar.write32(RCTL, RCTL_EN | RCTL_UPE | RCTL_MPE | RCTL_BAM | RCTL_SECRC | RCTL_BSIZE[self.BUF_SIZE])

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
                raise HardwareError(f"{self.bdf}: EEPROM read of word {word} timed out")

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

    def _read_counters(self) -> None:
        """Add the hardware's clear-on-read counters to the totals kept since open."""
        for name, reg in (("rx_good", GPRC), ("tx_good", GPTC), ("rx_missed", MPC)):
            self._totals[name] += self.bar.read32(reg)

    def stats(self) -> dict[str, int]:
        """Counts since open: the hardware's good frames received and sent and frames it missed
        (its registers clear when read, so they are added up here), the frames the receive ring
        dropped (spanning descriptors, in error, or too long), and the rings' own frame counts."""
        self._read_counters()
        return {**self._totals, "rx_dropped": int(self.rx.dropped), "rx_ring": int(self.rx.packets),
                "tx_ring": int(self.tx.packets)}

    # -- interrupts -------------------------------------------------------------------------
    def irq_enable(self) -> int:
        """Route the NIC's interrupt (MSI where offered, else INTx) to an eventfd; return it."""
        from hw import vfio

        index = vfio.IRQ_MSI
        try:
            if self.vfio.irq_info(index).count < 1:
                raise HardwareError("no MSI")
            fd = self.vfio.irq_enable(index)[0]
        except RomlabError:
            index = vfio.IRQ_INTX
            fd = self.vfio.irq_enable(index)[0]
        self._irq_index = index
        self._irq_fd = fd
        self.interrupts = 0
        return fd

    def wait_rx(self, timeout: float) -> bool:
        """Sleep until the NIC raises a receive interrupt (or ``timeout``); True if one came.

        The cause is armed only while waiting, so a busy poll loop pays nothing for it; one already
        pending fires as soon as it is. The registers are the class's IRQ_* (a VF's differ)."""
        import os
        import select

        if getattr(self, "_irq_fd", None) is None:
            self.irq_enable()
        bar = self.bar
        bar.write32(self.IRQ_UNMASK, self.IRQ_RX)
        try:
            ready, _, _ = select.select([self._irq_fd], [], [], timeout)
            if ready:
                os.read(self._irq_fd, 8)
                self.interrupts += 1
            return bool(ready)
        finally:
            bar.write32(self.IRQ_MASK, self.IRQ_RX)
            if self.IRQ_CAUSE_WRITE_CLEARS:
                bar.write32(self.IRQ_CAUSE, self.IRQ_RX)  # the next frame raises it afresh
            else:
                bar.read32(self.IRQ_CAUSE)
            from hw import vfio

            if self._irq_index == vfio.IRQ_INTX:
                self.vfio.irq_unmask(self._irq_index)

    # -- teardown ---------------------------------------------------------------------------
    def _stop(self) -> str | None:
        """Stop the device's DMA: units off, master requests drained (PCI Express), MAC reset to
        its end, bus mastering off. Returns what went wrong, if the reset never ended."""
        bar = self.bar
        bar.write32(IMC, 0xFFFFFFFF)
        bar.write32(RCTL, 0)
        bar.write32(TCTL, 0)
        problem = None
        if not self._mac_reset():
            problem = (f"{self.bdf}: the NIC did not come out of its reset on close within {RESET_TIMEOUT:g} s; "
                       f"bus mastering is off and its DMA memory freed, but reset it (or rebind its driver) "
                       f"before trusting it")
        elif not self._auto_read_done():
            problem = (f"{self.bdf}: the NVM auto-read after the reset on close did not end within "
                       f"{AUTO_RD_TIMEOUT:g} s; bus mastering is off and its DMA memory freed, but check the NVM")
        self.vfio.set_bus_master(False)
        return problem

    def close(self) -> None:
        """Stop the device, free DMA, close VFIO, on every path; a second call does nothing."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        problem = None
        try:
            if self.bar is not None:
                problem = self._stop()
        finally:
            for ring in (self.rx, self.tx):
                if ring is not None:
                    ring.release()
            self.rx = self.tx = None
            if self.pool is not None:
                self.pool.free()
            self.rx_mem = self.tx_mem = self.pool = None
            if self.vfio is not None:
                self.vfio.close()
        if problem:
            raise HardwareError(problem)

    def __enter__(self) -> "IntelNic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
