"""Which kernel driver owns a PCI device: vfio-pci and back, or no driver for one run.

Every verb that moves a device between drivers goes through here: ``romlab vfio bind`` and
``unbind``, the reads that put a device on vfio-pci for their duration (``dump --via vfio``,
``vfio info``), and ``flash``, ``nvm`` and ``restore --unbind``, which take the driver away
while the kernel maps BAR 0 for romlab. One path gives every one of them the same care:

* checks before the first write: root; for vfio-pci also an IOMMU group holding only this
  device and the vfio-pci module;
* a record of the driver and ``driver_override`` the device had, in a small state file under
  ``/run/romlab/vfio`` (``ROMLAB_STATE_DIR``), written before the first change and removed
  once they are back, so that a crash leaves the device's driver on record: ``romlab vfio
  unbind BDF`` (or the next ``--unbind`` run) gives it back from there. It is written to a
  temporary file, synced and renamed over, so a crash part-way leaves the old record or the
  new one, never an empty one; one read back is checked field by field, since its driver
  name becomes a sysfs path;
* one romlab process per device: an exclusive ``flock`` on ``BDF.lock`` beside the record,
  from the first check to the driver's return, so a second run cannot give the driver back
  while the first is still flashing;
* SIGINT/SIGTERM held (``hw.signals``) while a change is half done, so Ctrl-C cannot leave a
  device driverless;
* before a device leaves vfio-pci, this process's VFIO fds on it are closed and another
  process's are refused: the kernel's unbind would wait for them, uninterruptibly.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

from hw import signals, sysfs, vfio
from hw.errors import HardwareError
from hw.pci import Bdf, PciDevice

VFIO_DRIVER = "vfio-pci"
# Drivers that may own other devices of a group without making it unusable for VFIO
# (the kernel's own list: bridges' port driver, pci-stub and vfio-pci itself).
GROUP_SAFE_DRIVERS = {None, "vfio-pci", "pci-stub", "pcieport"}
# Default DMA domain types the kernel accepts in iommu_group/type (it also takes "auto").
DMA_DOMAINS = ("DMA", "DMA-FQ", "identity")


def state_dir() -> Path:
    return Path(os.environ.get("ROMLAB_STATE_DIR") or "/run/romlab/vfio")


def _state_file(bdf: Bdf) -> Path:
    return state_dir() / f"{bdf}.json"


# What the kernel accepts as a driver name, and all a record may hold: a name is joined to
# /sys/bus/pci/drivers, so "../" must never get that far.
_DRIVER_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _now(dev: PciDevice) -> dict:
    return {"bdf": str(dev.bdf), "driver": dev.driver, "driver_override": dev.driver_override}


def _require_root(dev: PciDevice, what: str) -> None:
    if os.geteuid() != 0:
        raise HardwareError(f"{what} {dev.bdf} needs root (run romlab as root or with sudo)")


def refuse_pf_with_vfs(dev: PciDevice) -> None:
    """A PF with VFs stays with its driver: taking the driver away tears the VFs down under
    whoever drives them, and the kernel makes VFs only through the PF's own driver."""
    vfs = dev.sriov_numvfs
    if vfs:
        raise HardwareError(f"{dev.bdf} is an SR-IOV PF with {vfs} VF(s) enabled; romlab will not take it from its "
                            f"driver while it has VFs: remove them with `romlab nic vfs --pci {dev.bdf} --count 0` "
                            "first")


def check_bindable(dev: PciDevice) -> None:
    """Raise HardwareError if ``dev`` cannot go to vfio-pci; touches nothing.

    A PF with VFs enabled is refused (``refuse_pf_with_vfs``)."""
    if os.geteuid() != 0:
        raise HardwareError(f"binding {dev.bdf} to vfio-pci needs root (run romlab as root or with sudo)")
    refuse_pf_with_vfs(dev)
    group = dev.iommu_group
    if group is None:
        raise HardwareError(
            f"{dev.bdf} has no IOMMU group: this kernel runs without an IOMMU; enable VT-d/AMD-Vi "
            "in firmware and boot with intel_iommu=on (or amd_iommu=on)")
    others = []
    for m in dev.group_members():
        if m == dev.bdf:
            continue
        other = PciDevice(m, sysfs.pci_devices_dir() / str(m))
        if other.driver in GROUP_SAFE_DRIVERS:
            continue
        others.append(f"{m} ({other.driver or 'no driver'})")
    if others:
        raise HardwareError(
            f"IOMMU group {group} of {dev.bdf} also holds {', '.join(others)}; VFIO takes whole groups, "
            "so romlab will not rebind it (move the card to a slot of its own or check ACS)")


def _ensure_vfio_pci_loaded() -> None:
    if (sysfs.pci_drivers_dir() / VFIO_DRIVER).is_dir():
        return
    try:
        r = subprocess.run(["modprobe", "vfio-pci"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise HardwareError("the vfio-pci driver is not loaded and modprobe is missing; load vfio-pci") from None
    if r.returncode != 0 or not (sysfs.pci_drivers_dir() / VFIO_DRIVER).is_dir():
        msg = (r.stderr or "").strip().splitlines()
        raise HardwareError(f"cannot load the vfio-pci module: {msg[-1] if msg else 'modprobe failed'}")


# --------------------------------------------------------------------------- the kernel's knobs
def _probe(dev: PciDevice) -> None:
    sysfs.write_text(sysfs.root() / "bus" / "pci" / "drivers_probe", str(dev.bdf))


def _bind_to(dev: PciDevice, driver: str) -> None:
    sysfs.write_text(sysfs.pci_drivers_dir() / driver / "bind", str(dev.bdf))


def _unbind_current(dev: PciDevice) -> None:
    """Take ``dev`` from whatever driver has it (from vfio-pci: only after ``_release``)."""
    if dev.driver:
        sysfs.write_text(dev.path / "driver" / "unbind", str(dev.bdf))


def _set_override(dev: PciDevice, value: str | None) -> None:
    sysfs.write_text(dev.path / "driver_override", (value or "") + "\n")


def _wait_driver(dev: PciDevice, want: str | None, timeout: float = 10.0) -> str | None:
    """Probing is synchronous for PCI, but give an asynchronous probe a moment."""
    deadline = time.monotonic() + timeout
    while True:
        drv = dev.driver
        if drv == want or time.monotonic() >= deadline:
            return drv
        time.sleep(0.05)


def _release(dev: PciDevice) -> None:
    """Make sure nothing holds ``dev`` through VFIO before it leaves vfio-pci.

    The kernel's unbind waits for the last device fd to close, uninterruptibly once a signal
    has come: this process's own fds are closed first, another process's are refused.
    """
    vfio.close_all(dev.bdf)
    others = vfio.holders(dev)
    if others:
        raise HardwareError(f"{dev.bdf} is open through VFIO in process {', '.join(others)}; the kernel would "
                            f"wait for it, so romlab leaves it on vfio-pci: end that process, then run "
                            f"`romlab vfio unbind {dev.bdf}`")


def _restore(dev: PciDevice, state: dict) -> None:
    """Put ``dev`` back to ``state``: its ``driver_override``, then its driver.

    The driver is bound by name, falling back to a probe if that is refused; with no driver
    on record it stays without one, unless ``state["probe"]`` asks the kernel to choose (a
    device whose earlier driver romlab does not know). Every step is tried; the first error
    is raised after.
    """
    want = state.get("driver")
    errors = []

    def step(fn):
        try:
            fn()
        except HardwareError as exc:
            errors.append(str(exc))

    domain = state.get("iommu_domain")
    retype = domain is not None and dev.iommu_domain not in (None, domain)   # no group: nothing to put back
    leave = dev.driver not in (None, want) or (retype and dev.driver is not None)
    if leave and dev.driver == VFIO_DRIVER:
        _release(dev)                     # refused: the device stays as it is
    if dev.driver_override != state.get("driver_override"):
        step(lambda: _set_override(dev, state.get("driver_override")))
    if leave:
        step(lambda: _unbind_current(dev))
    if retype and dev.driver is None:
        step(lambda: _set_domain(dev, domain))
    if dev.driver is None:
        if want:
            try:
                _bind_to(dev, want)
            except HardwareError as exc:  # a driver that refuses a bind by name may still take a probe
                with contextlib.suppress(HardwareError):
                    _probe(dev)
                if dev.driver != want:
                    errors.append(str(exc))
        elif state.get("probe"):
            step(lambda: _probe(dev))
    got = _wait_driver(dev, want) if want else dev.driver
    if not errors and want and got != want:
        errors.append(f"{dev.bdf} went back to {got or 'no driver'}, not to {want}; see dmesg")
    if not errors and domain is not None and dev.iommu_domain not in (None, domain):
        errors.append(f"IOMMU group {dev.iommu_group} of {dev.bdf} is left at {dev.iommu_domain}, not {domain}")
    if errors:
        again = (f"; its driver is on record: `romlab vfio unbind {dev.bdf}` tries again"
                 if _state_file(dev.bdf).exists() else "")
        raise HardwareError(f"restoring {dev.bdf}'s driver: {errors[0]}{again}")


# --------------------------------------------------------------------------- the record
def _save_state(dev: PciDevice, state: dict) -> None:
    """Write the record so that it is whole or absent: temporary file, fsync, rename, fsync of the
    directory (a crash mid-write must not leave an empty record, read as "nothing owed")."""
    d = state_dir()
    final = _state_file(dev.bdf)
    tmp = d / f".{final.name}.{os.getpid()}.tmp"
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = json.dumps(state).encode()
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise HardwareError(f"cannot record {dev.bdf}'s driver in {d}: {exc.strerror}") from None


def _bad_record(dev: PciDevice, path: Path, why: str) -> HardwareError:
    return HardwareError(f"the driver record {path} for {dev.bdf} {why}; romlab will not act on it: delete it "
                         f"and bind the device's driver by hand (echo {dev.bdf} > /sys/bus/pci/drivers/DRIVER/bind)")


def _load_state(dev: PciDevice) -> dict | None:
    """The record for ``dev``, None if there is none; one that is not what romlab writes is refused."""
    path = _state_file(dev.bdf)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HardwareError(f"cannot read the driver record {path} for {dev.bdf}: {exc.strerror}") from None
    try:
        state = json.loads(text)
    except ValueError:
        raise _bad_record(dev, path, "is not JSON" if text.strip() else "is empty") from None
    if not isinstance(state, dict):
        raise _bad_record(dev, path, "is not a JSON object")
    if state.get("bdf", str(dev.bdf)) != str(dev.bdf):
        raise _bad_record(dev, path, f"names another device ({state.get('bdf')!r})")
    for key in ("driver", "driver_override"):
        if key not in state:
            raise _bad_record(dev, path, f"has no {key!r}")
        v = state[key]
        if v is not None and not (isinstance(v, str) and _DRIVER_NAME.fullmatch(v)):
            raise _bad_record(dev, path, f"holds {key} {v!r}, not a driver name")
    if state.get("iommu_domain") is not None and state["iommu_domain"] not in DMA_DOMAINS:
        raise _bad_record(dev, path, f"holds iommu_domain {state['iommu_domain']!r}, not one of {', '.join(DMA_DOMAINS)}")
    for key in ("probe", "already_bound"):
        if not isinstance(state.get(key, False), bool):
            raise _bad_record(dev, path, f"holds {key} {state[key]!r}, not true or false")
    return state


# --------------------------------------------------------------------------- one process per device
_LOCKS: dict[str, list] = {}       # BDF -> [fd, depth]: flock conflicts between a process's own opens


@contextlib.contextmanager
def _locked(dev: PciDevice):
    """Exclusive use of ``dev`` among romlab processes, refused at once (not waited for) if taken.

    The lock file holds the PID of its holder, for the message; it is never removed, since
    removing a lock file races with a process that has just opened it.
    """
    key = str(dev.bdf)
    held = _LOCKS.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    d = state_dir()
    path = d / f"{key}.lock"
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise HardwareError(f"cannot open the lock file {path} for {dev.bdf}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise HardwareError(f"{dev.bdf} is in use by romlab process {pid}; wait for it to finish "
                                "(or end it), then try again") from None
        except OSError as exc:
            raise HardwareError(f"cannot lock {path} for {dev.bdf}: {exc.strerror}") from None
        with contextlib.suppress(OSError):           # the PID is only for the message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _LOCKS[key] = [fd, 1]
        try:
            yield
        finally:
            del _LOCKS[key]
    finally:
        os.close(fd)          # closing the last fd of the open file description drops the flock


def _owed(dev: PciDevice) -> dict | None:
    """The record of a driver romlab still owes ``dev``: one whose device is still on vfio-pci
    or still without a driver. A device back on an ordinary driver owes nothing."""
    state = _load_state(dev)
    if state is None:
        return None
    if dev.driver in (None, VFIO_DRIVER):
        return state
    domain = state.get("iommu_domain")
    return state if domain is not None and dev.iommu_domain not in (None, domain) else None


def _forget(dev: PciDevice) -> None:
    with contextlib.suppress(OSError):
        _state_file(dev.bdf).unlink()


# --------------------------------------------------------------------------- the moves
def bind(dev: PciDevice) -> dict:
    """Give ``dev`` to vfio-pci; returns the state it is owed back (the record).

    The record is kept after the call, for ``unbind`` in this or a later process. A device
    already on vfio-pci is left as it is. A device left without a driver by a crash keeps the
    crash's record, which knows the driver it had.
    """
    if dev.driver == VFIO_DRIVER:
        return _owed(dev) or {"bdf": str(dev.bdf), "driver": None, "driver_override": None,
                              "already_bound": True}
    check_bindable(dev)
    with _locked(dev):
        return _bind(dev)


def _bind(dev: PciDevice) -> dict:
    _ensure_vfio_pci_loaded()
    now = _now(dev)
    owed = _owed(dev)
    state = {**(owed or now), "already_bound": False}
    with signals.held():
        if owed is None:
            _save_state(dev, state)
        try:
            _set_override(dev, VFIO_DRIVER)
            _unbind_current(dev)
            _probe(dev)
            got = _wait_driver(dev, VFIO_DRIVER)
            if got != VFIO_DRIVER:
                raise HardwareError(f"vfio-pci did not take {dev.bdf} (driver now: {got or 'none'}); see dmesg")
        except BaseException:
            _restore(dev, now)
            if owed is None:
                _forget(dev)
            raise
    return state


def unbind(dev: PciDevice) -> dict:
    """Give ``dev`` back the driver on record (taking it from vfio-pci, or after a crash left it
    with none); without a record the kernel chooses, by a probe."""
    owed = _owed(dev)
    if dev.driver != VFIO_DRIVER and not (dev.driver is None and owed) and not (owed and owed.get("iommu_domain")):
        raise HardwareError(f"{dev.bdf} is not bound to vfio-pci (driver: {dev.driver or 'none'})")
    if os.geteuid() != 0:
        raise HardwareError(f"unbinding {dev.bdf} from vfio-pci needs root (run romlab as root or with sudo)")
    with _locked(dev):
        owed = _owed(dev)
        state = owed or {"bdf": str(dev.bdf), "driver": None, "driver_override": None, "probe": True}
        was, domain_was = dev.driver, dev.iommu_domain
        with signals.held():
            _restore(dev, state)
            _forget(dev)
    return {**state, "was": was, "now": dev.driver, "iommu_domain_was": domain_was}


@contextlib.contextmanager
def bound(dev: PciDevice):
    """vfio-pci for the duration of a ``with`` block; the driver it had afterwards.

    The state to go back to is taken before binding and put back in ``finally``, so a
    Ctrl-C that lands just as the bind completes (it is held until then) still finds the
    device restored; the record covers a crash in between. The device is locked against
    other romlab processes throughout.
    """
    if dev.driver == VFIO_DRIVER:
        yield
        return
    check_bindable(dev)
    with _locked(dev):
        now = _now(dev)
        owed = _owed(dev)
        try:
            bind(dev)
            yield
        finally:
            with signals.held():
                _restore(dev, now)
                if owed is None:
                    _forget(dev)


@contextlib.contextmanager
def detached(dev: PciDevice):
    """No driver for the duration of a ``with`` block; the driver back afterwards.

    While a driver has claimed a BAR the kernel will not map it through sysfs for anyone
    else; without a driver it will. A device left driverless by an earlier crash gets the
    driver on record back at the end, settling that record. The device is locked against
    other romlab processes from the first look at its record to the driver's return.
    """
    if dev.driver is None and _owed(dev) is None:
        yield                     # nothing to take away, nothing owed
        return
    _require_root(dev, "detaching the driver of")
    refuse_pf_with_vfs(dev)
    with _locked(dev):
        now = _now(dev)
        owed = _owed(dev)
        target = now if now["driver"] is not None else owed
        settles = owed is None or now["driver"] is None
        started = False               # nothing to undo until the record is safe
        try:
            with signals.held():
                if now["driver"] == VFIO_DRIVER:
                    _release(dev)             # refuse before anything is written
                if owed is None:
                    _save_state(dev, now)
                started = True
                _unbind_current(dev)
            yield
        finally:
            if started:
                with signals.held():
                    _restore(dev, target)
                    if settles:
                        _forget(dev)


def _set_domain(dev: PciDevice, kind: str) -> None:
    """Write the group's default domain type (the kernel takes it only while no driver holds the
    group) and read it back."""
    try:
        sysfs.write_text(dev.path / "iommu_group" / "type", kind)
    except HardwareError as exc:
        raise HardwareError(f"the kernel refused IOMMU domain type {kind} for group {dev.iommu_group} "
                            f"of {dev.bdf}: {exc}") from exc
    got = dev.iommu_domain
    if got != kind:
        raise HardwareError(f"IOMMU group {dev.iommu_group} of {dev.bdf} reads {got or 'nothing'} after "
                            f"{kind} was written to its type")


@contextlib.contextmanager
def dma_domain(dev: PciDevice, kind: str):
    """``dev`` under its own kernel driver with its IOMMU group's default DMA domain of type
    ``kind`` for the ``with`` block, then back to the type it had; yields the type read back.

    The kernel driver's cost per frame depends on it: in a "DMA" domain every buffer is mapped
    and, when unmapped, flushed from the IOTLB one by one (Linux forces that strict mode under a
    vIOMMU that caches translations), while "identity" passes bus addresses through as a host
    booted with iommu=pt does. The kernel changes a group's type only while no driver holds the
    group, so the driver is taken off, the type written, the driver given back, and the same on
    the way out. The record of the driver (as for ``bind``) also holds the type found, from
    before the first write until both are back: after a crash, ``romlab vfio unbind BDF`` puts
    back the type and the driver. A group of more than one device is refused, and so is one
    whose type is not one of ``DMA_DOMAINS`` (the kernel would not take it back)."""
    if kind not in DMA_DOMAINS:
        raise HardwareError(f"IOMMU domain type {kind!r}: choose one of {', '.join(DMA_DOMAINS)}")
    _require_root(dev, "changing the IOMMU domain of")
    with _locked(dev):
        refuse_pending(dev)
        found = dev.iommu_domain
        if found is None:
            raise HardwareError(f"{dev.bdf} has no IOMMU group: its kernel driver works without translation "
                                "already, so there is no domain to change")
        if found not in DMA_DOMAINS:
            raise HardwareError(f"IOMMU group {dev.iommu_group} of {dev.bdf} has domain type {found}, which the "
                                f"kernel would not take back; romlab changes only {', '.join(DMA_DOMAINS)}")
        if found == kind:
            yield found
            return
        driver = dev.driver
        if driver in (None, VFIO_DRIVER):
            raise HardwareError(f"{dev.bdf} is bound to {driver or 'no driver'}; its IOMMU domain is changed "
                                "for its kernel driver, so that driver must hold it")
        members = dev.group_members()
        if len(members) > 1:
            raise HardwareError(f"IOMMU group {dev.iommu_group} of {dev.bdf} holds {len(members)} devices; romlab "
                                "changes the domain type only of a group of one device")
        refuse_pf_with_vfs(dev)
        state = {**_now(dev), "iommu_domain": found}
        try:
            with signals.held():
                _save_state(dev, state)
                _unbind_current(dev)
                _set_domain(dev, kind)
                _bind_to(dev, driver)
                if _wait_driver(dev, driver) != driver:
                    raise HardwareError(f"{driver} did not take {dev.bdf} back under IOMMU domain type {kind}; "
                                        "see dmesg")
            yield dev.iommu_domain
        except BaseException as exc:
            with signals.held():
                try:
                    _restore(dev, state)
                    _forget(dev)
                except HardwareError as failed:   # the record stays; the body's exception is the one raised
                    exc.add_note(str(failed))
            raise
        else:
            with signals.held():
                _restore(dev, state)          # raises, keeping the record, if anything is not back
                _forget(dev)


def refuse_pending(dev: PciDevice) -> None:
    """Refuse to start on a device whose record says an earlier run did not finish putting its
    driver or IOMMU domain back: a new run would take the half-restored state for the original."""
    if _load_state(dev) is not None:
        raise HardwareError(f"{dev.bdf} has a driver record from an earlier romlab run that did not finish "
                            f"({_state_file(dev.bdf)}); run `romlab vfio unbind {dev.bdf}` first")
