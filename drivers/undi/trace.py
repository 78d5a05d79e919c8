"""Where a UNDI call's time goes: a meter of disjoint time buckets, and the ``--trace`` counts.

**Meter** (cheap; used on the fast path too). A call's time is cut at its boundaries, and each
piece is timed by the two timestamps that bound it, never derived by subtracting one total from
another: the client starts a call (``begin``), the machine enters ``emu_start`` and comes back
out, unicorn hands a port, an interrupt or a device access to Python and gets control back, the
client finishes (``end``). At each boundary one ``perf_counter_ns`` is taken; the time since the
previous boundary goes to the bucket that was running, and the new bucket starts. So the buckets
cannot overlap, a nested boundary (an I/O BAR access inside the port hook) hands its piece back
when it returns, and a call's buckets add up to its own begin-to-end time exactly. What the meter
does not see (a caller's own work between calls) is what a bench prints as unaccounted. The
meter adds no hook of its own: it takes timestamps inside hooks the machine has anyway.

=============  ==================================================================================
python_before  from the client's start of the call to ``emu_start``: building and writing the
               parameter block (and a TRANSMIT's TBD and frame), setting registers and the stack
emu            inside ``emu_start`` outside every Python hook body: the ROM's code run by unicorn,
               unicorn itself, and the crossing from unicorn into a hook and back (which Python
               cannot timestamp); with a device's BARs mapped straight in, its accesses too
bar_callbacks  inside the device's BAR callbacks (memory BAR MMIO and I/O BAR ports)
bios           inside the interrupt hook: BIOS services, the IVT dispatch of the ROM's own
               ``int``, and the BIOS's IRQ 0 handler (tick count, INT 1Ch) run for the timer
               interrupt that wakes a ``hlt``
ports          inside the port hooks for the legacy ports (PIT, 61h, PIC, CMOS, POST, CF8h/CFCh)
python_after   from each ``emu_start``'s return to the next one or to the end of the call: the
               machine's checks, raising the timer interrupt after a ``hlt`` (the frame pushed and
               the vector looked up, ``Machine.far_call``), reading the block back and parsing it
=============  ==================================================================================

**Trace** (``--trace``; slow). Every device register access goes through the BAR callbacks,
counted and timed per (BAR, offset, read/write), even where the device offers its BARs for
direct mapping. Every instruction is counted by a per-instruction code hook. Real/protected
mode switches are counted exactly, without reading CR0 at every instruction: only ``mov cr0, r``
(0F 22 /0) and ``lmsw`` (0F 01 /6) can change CR0.PE in this machine (no task switches, no
``loadall``), so the code hook looks at the first opcode bytes of each instruction in the
machine's RAM and, after one of those two, reads CR0 once at the next instruction and counts a
switch when PE differs from the last value seen. The hook's address is linear; it is read as a
physical one, which holds while CR0.PG is clear, as it is for iPXE and the PXE ROMs seen (flat
protected mode, no paging). A ROM that sets CR0.PG is not stopped, but while paging is on the
opcode bytes read may be other code's, so the mode-switch count is then approximate: the trace
notes it (``paging_seen``, the CR0 read that showed PG set). Nothing of this runs unless a Trace is
attached (``UndiMachine.set_trace``).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from unicorn import UC_HOOK_CODE
from unicorn import x86_const as X

PYTHON_BEFORE, EMU, DEVICE, BIOS, PORTS, PYTHON_AFTER = (
    "python_before", "emu", "bar_callbacks", "bios", "ports", "python_after")
BUCKETS = (PYTHON_BEFORE, EMU, DEVICE, BIOS, PORTS, PYTHON_AFTER)
CR0_PG = 1 << 31
PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))


@dataclass
class CallRecord:
    """One kind of call (``UNDI_TRANSMIT``, ``UNDI_ISR/PROCESS``): how many, each one's time, and
    the time in each bucket over all of them; the trace's counts when a Trace was attached."""

    label: str
    calls: int = 0
    call_ns: list[int] = field(default_factory=list)
    ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    instructions: int = 0
    mode_switches: int = 0
    device_reads: int = 0
    device_writes: int = 0
    device_ns: int = 0  # inside the device's own bar_read/bar_write, as the trace timed each access


class Meter:
    """Disjoint time buckets per call. ``log`` keeps every piece as (bucket, start_ns, end_ns),
    for tests that check the pieces themselves."""

    def __init__(self, log: bool = False):
        self.calls: dict[str, CallRecord] = {}
        self.record: CallRecord | None = None
        self.bucket: str | None = None
        self.since = 0
        self._call_start = 0
        self.log: list[tuple[str, int, int]] | None = [] if log else None

    def begin(self, label: str) -> bool:
        """Start a call; False (and nothing done) when one is already running, so an outer
        ``begin`` (the client's transmit) keeps the call an inner one (its ``call``) would open."""
        if self.record is not None:
            return False
        rec = self.calls.get(label)
        if rec is None:
            rec = self.calls[label] = CallRecord(label)
        rec.calls += 1
        self.record, self.bucket = rec, PYTHON_BEFORE
        self.since = self._call_start = time.perf_counter_ns()
        return True

    def enter(self, bucket: str | None) -> str | None:
        """A boundary: the piece since the last one goes to the bucket that ran; ``bucket`` runs
        from now. Returns the bucket that was running, for the hook to go back to."""
        prev = self.bucket
        rec = self.record
        if rec is not None:
            t = time.perf_counter_ns()
            rec.ns[prev] += t - self.since
            if self.log is not None:
                self.log.append((prev, self.since, t))
            self.since = t
        self.bucket = bucket
        return prev

    def end(self) -> None:
        rec = self.record
        if rec is None:
            return
        t = time.perf_counter_ns()
        rec.ns[self.bucket] += t - self.since
        if self.log is not None:
            self.log.append((self.bucket, self.since, t))
        rec.call_ns.append(t - self._call_start)
        self.record = self.bucket = None


class Trace:
    """The ``--trace`` counts (see the module's docstring). ``registers`` maps (BAR index, offset,
    "r" or "w") to [accesses, ns]; the per-call counts go to the meter's current record."""

    def __init__(self, meter: Meter | None = None):
        self.meter = meter
        self.registers: dict[tuple[int, int, str], list[int]] = {}
        self.instructions = 0
        self.mode_switches = 0
        self._hook = None
        self._uc = self._view = None
        self._cr0_pending = False
        self._pe = 0
        self.paging_seen = False  # CR0.PG was seen set: the mode-switch count is approximate

    # -- device accesses (called from UndiMachine's BAR callbacks) ------------------------------
    def bar_read(self, device, index: int, offset: int, size: int) -> int:
        t0 = time.perf_counter_ns()
        value = device.bar_read(index, offset, size)
        self._account(index, offset, "r", time.perf_counter_ns() - t0)
        return value

    def bar_write(self, device, index: int, offset: int, size: int, value: int) -> None:
        t0 = time.perf_counter_ns()
        device.bar_write(index, offset, size, value)
        self._account(index, offset, "w", time.perf_counter_ns() - t0)

    def _account(self, index: int, offset: int, kind: str, ns: int) -> None:
        slot = self.registers.get((index, offset, kind))
        if slot is None:
            slot = self.registers[(index, offset, kind)] = [0, 0]
        slot[0] += 1
        slot[1] += ns
        rec = self.meter.record if self.meter is not None else None
        if rec is not None:
            if kind == "r":
                rec.device_reads += 1
            else:
                rec.device_writes += 1
            rec.device_ns += ns

    def access_counts(self) -> Counter:
        """(BAR, offset, "r"/"w") -> accesses, the shape a device's own count can be compared with."""
        return Counter({k: v[0] for k, v in self.registers.items()})

    # -- instructions and mode switches (a code hook on the machine's unicorn) --------------------
    def attach(self, uc, view) -> None:
        if self._hook is None:
            self._uc, self._view = uc, view
            cr0 = uc.reg_read(X.UC_X86_REG_CR0)
            self._pe = cr0 & 1
            self.paging_seen |= bool(cr0 & CR0_PG)
            self._cr0_pending = False
            self._hook = uc.hook_add(UC_HOOK_CODE, self._on_code)
            uc.ctl_flush_tb()  # code translated before the hook existed would not call it

    def detach(self) -> None:
        if self._hook is not None:
            self._settle()
            self._uc.hook_del(self._hook)
            self._uc.ctl_flush_tb()  # and translated with it, would still carry the call's cost
            self._hook = None

    def _settle(self) -> None:
        """Read CR0 once after a CR0 write whose next instruction never ran (the run stopped)."""
        if self._cr0_pending:
            self._cr0_pending = False
            cr0 = self._uc.reg_read(X.UC_X86_REG_CR0)
            self.paging_seen |= bool(cr0 & CR0_PG)
            pe = cr0 & 1
            if pe != self._pe:
                self._pe = pe
                self._switch()

    def _switch(self) -> None:
        self.mode_switches += 1
        rec = self.meter.record if self.meter is not None else None
        if rec is not None:
            rec.mode_switches += 1

    def _on_code(self, uc, address: int, size: int, _ud) -> None:
        self.instructions += 1
        rec = self.meter.record if self.meter is not None else None
        if rec is not None:
            rec.instructions += 1
        if self._cr0_pending:
            self._settle()
        view = self._view
        if address + size > len(view):
            return  # code outside RAM (a BAR mapped straight in) is counted, not read
        b = view[address]
        if b == 0x0F or b in PREFIXES:
            at, end = address, address + size
            while at < end and view[at] in PREFIXES:
                at += 1
            if at + 2 < end and view[at] == 0x0F:
                op, reg = view[at + 1], (view[at + 2] >> 3) & 7
                if (op == 0x22 and reg == 0) or (op == 0x01 and reg == 6):
                    self._cr0_pending = True
