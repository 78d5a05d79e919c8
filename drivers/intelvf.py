"""The 82576's SR-IOV virtual function (8086:10ca) as a device of its own, the way iPXE's intelvf.c
and Linux's igbvf drive it.

A VF is not a small PF. It has its own register map (82576 datasheet, "Virtual Function Device
Registers"; Linux igbvf's regs.h, iPXE's intelvf.h): VTCTRL and VTSTATUS, an extended interrupt
block (VTEICS/VTEIMS/VTEIMC/VTEIAC/VTEIAM/VTEICR, VTIVAR), its own statistics (VFGPRC and friends,
which count up and wrap rather than clear when read), a mailbox to its PF (VMMB at 0x0C40, sixteen
dwords of message memory at 0x0800) and queue 0's registers at the PF's queue-0 offsets. It has no
EEPROM, no MAC address registers, no RCTL/TCTL (the PF runs the units) and no MSI or INTx: only MSI-X.

Bring-up: bus mastering off, interrupts masked, VTCTRL.RST, wait for the PF to be out of its own
reset (VMMB.RSTI clear), then the VF-to-PF RESET message; the PF's reply carries the MAC address it
assigned (ACK) or none (NACK: the VF picks a random locally administered one and asks for it with
SET_MAC). The PF's anti-spoofing drops frames whose source is any other MAC, so what this class
sends uses ``mac``. The rings are the same rings as the PF's (advanced descriptors), programmed
while their queues are disabled and enabled before their tails are written; SRRCTL also asks the
device to drop frames when the VF has no descriptor free, so a stalled VF does not stall the port.

The PF must be up under its kernel driver (igb): it answers the mailbox and runs the units.
"""
from __future__ import annotations

import os
import time

from drivers.intel import RDH, RDT, RXDCTL0, SRRCTL_DROP_EN, TDH, TDT, TXDCTL0, IntelNic
from hw.errors import HardwareError, RomlabError
from hw.parts import DRIVER_PARTS, F_VF, Part

# VF registers (byte offsets into the VF's BAR 0).
VTCTRL, VTSTATUS = 0x0000, 0x0008
VTEICS, VTEIMS, VTEIMC, VTEIAC, VTEIAM, VTEICR = 0x1520, 0x1524, 0x1528, 0x152C, 0x1530, 0x1580
VTIVAR0 = 0x1700
VMMB, VMBMEM = 0x0C40, 0x0800
VFGPRC, VFGPTC, VFGORC, VFGOTC, VFMPRC = 0x0F10, 0x0F14, 0x0F18, 0x0F34, 0x0F3C
VTCTRL_RST = 1 << 26
VTSTATUS_LU = 1 << 1
# VTIVAR: queue 0's receive cause to MSI-X vector (bits 2:0) with its valid bit (7).
IVAR_VALID = 0x80
RX_VECTOR = 0  # MSI-X vector 0 of the VF; its cause bit in VTEI* is bit 0
RX_CAUSE = 1 << RX_VECTOR
ALL_CAUSES = 0x7  # the three causes a VF has

# VMMB bits (Linux E1000_V2PMAILBOX_*, iPXE INTELVF_MBCTRL_*).
MB_REQ, MB_ACK, MB_VFU, MB_PFU = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MB_PFSTS, MB_PFACK, MB_RSTI, MB_RSTD = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MBOX_WORDS = 16
# Messages (Linux e1000_mbx.h E1000_VF_*, E1000_VT_MSGTYPE_*).
MSG_RESET, MSG_SET_MAC = 0x01, 0x02
MSG_TYPE_MASK = 0xFFFF
MSG_ACK, MSG_NACK = 1 << 31, 1 << 30
MSG_RESPONSE = MSG_ACK | MSG_NACK

RESET_TIMEOUT = 1.0  # s, VTCTRL.RST to clear
PF_READY_TIMEOUT = 2.0  # s, VMMB.RSTI to clear (the PF's own reset, or its driver not loaded)
MBOX_TIMEOUT = 2.0  # s for the PF's reply (iPXE waits 500 ms; a PF under emulation answers slower)
MBOX_POLL = 0.001  # s


def _counter_delta(now: int, last: int) -> int:
    """The count between two reads of a 32-bit counter that wraps (the VF's statistics do)."""
    return (now - last) & 0xFFFFFFFF


class IntelVf(IntelNic):
    """Open one 82576 virtual function through VFIO; the same interface as IntelNic."""

    OWNS_UNITS = False  # RCTL/TCTL are the PF's
    IRQ_UNMASK, IRQ_MASK, IRQ_CAUSE, IRQ_RX = VTEIMS, VTEIMC, VTEICR, RX_CAUSE
    IRQ_CAUSE_WRITE_CLEARS = True
    SRRCTL_EXTRA = SRRCTL_DROP_EN
    HAS_EEPROM = False

    @staticmethod
    def _find_part(dev) -> Part:
        from hw.pci import LIST_HINT

        part = DRIVER_PARTS.get((dev.vendor_id, dev.device_id))
        if part is None or not part.flags & F_VF:
            raise HardwareError(f"{dev.bdf} ({dev.ids}) is not a virtual function this driver supports "
                                f"({', '.join(f'{p.vendor:04x}:{p.device:04x}' for p in DRIVER_PARTS.values() if p.flags & F_VF)}); "
                                f"{LIST_HINT}")
        return part

    # -- bring-up -------------------------------------------------------------------------------
    def _reset(self) -> None:
        bar = self.bar
        self._counters_last: dict[str, int] = {}
        self.vfio.set_bus_master(False)
        bar.write32(VTEIMC, ALL_CAUSES)
        bar.write32(VTCTRL, VTCTRL_RST)
        time.sleep(0.0001)  # as after CTRL.RST: no access for a moment
        if not self._poll(VTCTRL, VTCTRL_RST, False, RESET_TIMEOUT):
            raise HardwareError(f"{self.bdf}: the virtual function did not come out of reset within "
                                f"{RESET_TIMEOUT:g} s")
        bar.write32(VTEIMC, ALL_CAUSES)
        self._wait_pf_ready()
        reply = self._mbox_msg([MSG_RESET])
        if reply[0] & MSG_TYPE_MASK != MSG_RESET:
            raise HardwareError(f"{self.bdf}: the PF answered the VF reset with message {reply[0]:#010x}")
        if reply[0] & MSG_ACK:
            self._mac = b"".join(w.to_bytes(4, "little") for w in reply[1:3])[:6]
        else:  # the PF assigned none: choose one, as igbvf and iPXE do, and ask for it
            mac = bytearray(os.urandom(6))
            mac[0] = (mac[0] & 0xFE) | 0x02  # unicast, locally administered
            self._set_mac(bytes(mac))
        if self._mac[0] & 1 or not any(self._mac):
            raise HardwareError(f"{self.bdf}: the PF assigned the MAC address {self._mac.hex(':')}, which is not "
                                f"a unicast address; set one with `ip link set PF vf N mac ...`")

    def _wait_pf_ready(self) -> None:
        """VMMB.RSTI stays set while the PF is in reset or has no driver to finish it (CTRL_EXT.PFRSTD)."""
        if not self._poll(VMMB, MB_RSTI, False, PF_READY_TIMEOUT, MBOX_POLL):
            raise HardwareError(f"{self.bdf}: the PF has not finished its reset (VMMB.RSTI still set after "
                                f"{PF_READY_TIMEOUT:g} s); load its driver and bring it up "
                                f"(`ip link set PF up`)")

    def _mbox_msg(self, words: list[int]) -> list[int]:
        """Send one message to the PF and return its reply (sixteen dwords), iPXE's intelvf_mbox_msg:
        claim the buffer (VFU), write the message, post it (REQ, which also releases VFU), then wait
        for the PF to acknowledge (PFACK) and to post its reply (PFSTS), read the reply and ack it.
        The status bits clear when read, so what has been seen is kept across reads."""
        bar = self.bar
        msg = list(words) + [0] * (MBOX_WORDS - len(words))
        seen, reply = 0, None
        deadline = time.monotonic() + MBOX_TIMEOUT
        while True:
            if not seen & MB_VFU:
                bar.write32(VMMB, MB_VFU)
            ctrl = bar.read32(VMMB)
            seen |= ctrl
            if ctrl & MB_RSTI:
                bar.write32(VMMB, 0)
                raise HardwareError(f"{self.bdf}: the PF reset while the VF was talking to it (VMMB.RSTI); "
                                    f"open the VF again")
            if ctrl & MB_VFU:
                for i, w in enumerate(msg):
                    bar.write32(VMBMEM + 4 * i, w)
            if seen & MB_VFU and seen & MB_PFACK and ctrl & MB_PFSTS:
                reply = [bar.read32(VMBMEM + 4 * i) for i in range(MBOX_WORDS)]
            bar.write32(VMMB, (MB_ACK if ctrl & MB_PFSTS else 0) | (MB_REQ if ctrl & MB_VFU else 0))
            if reply is not None and reply[0] & MSG_RESPONSE:
                return reply
            if time.monotonic() > deadline:
                raise HardwareError(f"{self.bdf}: the PF did not answer message {words[0]:#x} within "
                                    f"{MBOX_TIMEOUT:g} s (mailbox {seen:#04x} seen); is the PF's interface up "
                                    f"under its kernel driver?")
            time.sleep(MBOX_POLL)

    def _set_mac(self, mac: bytes) -> None:
        """Ask the PF to let this VF use ``mac`` (its filter and its anti-spoofing follow it)."""
        reply = self._mbox_msg([MSG_SET_MAC, int.from_bytes(mac[0:4], "little"), int.from_bytes(mac[4:6], "little")])
        if reply[0] & MSG_TYPE_MASK != MSG_SET_MAC or not reply[0] & MSG_ACK:
            raise HardwareError(f"{self.bdf}: the PF refused the MAC address {mac.hex(':')} (reply "
                                f"{reply[0]:#010x}); set the VF's address on the PF: `ip link set PF vf N mac ...`")
        self._mac = bytes(mac)

    # -- what the VF reports ---------------------------------------------------------------------
    @property
    def mac(self) -> bytes:
        """The address the PF assigned (or accepted): the only source address its frames may carry."""
        return self._mac

    @property
    def link_up(self) -> bool:
        return bool(self.bar.read32(VTSTATUS) & VTSTATUS_LU)

    def eeprom_word(self, word: int) -> int:
        raise HardwareError(f"{self.bdf} is a virtual function: it has no EEPROM of its own (its PF has)")

    def _read_counters(self) -> None:
        """Add what the VF's counters moved since the last read: they wrap at 32 bits and do not clear
        when read (Linux igbvf's UPDATE_VF_COUNTER), so the first read after open is the baseline."""
        last = self._counters_last
        for name, reg in (("rx_good", VFGPRC), ("tx_good", VFGPTC)):
            now = self.bar.read32(reg)
            if name in last:
                self._totals[name] += _counter_delta(now, last[name])
            last[name] = now

    def stats(self) -> dict:
        """As IntelNic.stats; ``rx_missed`` is None: a VF has no missed-packet counter of its own."""
        s = super().stats()
        s["rx_missed"] = None
        return s

    # -- interrupts: MSI-X only -------------------------------------------------------------------
    def irq_enable(self) -> int:
        from hw import vfio

        if self.vfio.irq_info(vfio.IRQ_MSIX).count < 1:
            raise HardwareError(f"{self.bdf}: VFIO offers no MSI-X vector, and a virtual function has no other "
                                f"interrupt")
        self._irq_fd = self.vfio.irq_enable(vfio.IRQ_MSIX, 1)[0]
        self._irq_index = vfio.IRQ_MSIX
        self.interrupts = 0
        # queue 0's receive cause to vector 0, cleared automatically when it fires
        self.bar.write32(VTIVAR0, IVAR_VALID | RX_VECTOR)
        self.bar.write32(VTEIAC, RX_CAUSE)
        return self._irq_fd

    # -- teardown -------------------------------------------------------------------------------
    def _stop(self) -> str | None:
        """Mask, stop both queues and zero their heads and tails, reset the VF (the PF sees it and takes
        its queues back), bus mastering off. Returns what went wrong, if anything."""
        bar = self.bar
        problem = None
        bar.write32(VTEIMC, ALL_CAUSES)
        for reg in (RXDCTL0, TXDCTL0):
            try:
                self._queue_enable(reg, False)
            except RomlabError as exc:
                problem = problem or (f"{exc}; bus mastering is off and its DMA memory freed, but reset the VF "
                                      f"before trusting it")
        for reg in (RDH, RDT, TDH, TDT):  # a VF reset keeps them: the next user must not inherit ours
            bar.write32(reg, 0)
        bar.write32(VTCTRL, VTCTRL_RST)
        time.sleep(0.0001)
        if not self._poll(VTCTRL, VTCTRL_RST, False, RESET_TIMEOUT) and problem is None:
            problem = (f"{self.bdf}: the virtual function did not come out of its reset on close within "
                       f"{RESET_TIMEOUT:g} s; bus mastering is off and its DMA memory freed")
        self.vfio.set_bus_master(False)
        return problem

    def __enter__(self) -> IntelVf:
        return self
