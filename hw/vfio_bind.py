"""Moving a PCI device to vfio-pci and back to the driver it had.

Binding changes which kernel driver owns a device, so romlab checks everything it
can before the first write (root, an IOMMU group, a group holding only this
device, the vfio-pci module), remembers the original driver and ``driver_override``
in a small state file under ``/run/romlab/vfio`` (so ``romlab vfio unbind`` in a later
process can restore them), and keeps SIGINT/SIGTERM blocked (hw.signals) while a rebind is half
done so Ctrl-C cannot leave a device driverless.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

from hw import signals, sysfs
from hw.pci import Bdf, PciDevice
from romtools.errors import RomError

VFIO_DRIVER = "vfio-pci"
# Drivers that may own other devices of a group without making it unusable for VFIO
# (the kernel's own list: bridges' port driver, pci-stub and vfio-pci itself).
GROUP_SAFE_DRIVERS = {None, "vfio-pci", "pci-stub", "pcieport"}


def state_dir() -> Path:
    return Path(os.environ.get("ROMLAB_STATE_DIR") or "/run/romlab/vfio")


def _state_file(bdf: Bdf) -> Path:
    return state_dir() / f"{bdf}.json"


def check_bindable(dev: PciDevice) -> None:
    """Raise RomError if ``dev`` cannot go to vfio-pci; touches nothing."""
    if os.geteuid() != 0:
        raise RomError(f"binding {dev.bdf} to vfio-pci needs root")
    group = dev.iommu_group
    if group is None:
        raise RomError(
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
        raise RomError(
            f"IOMMU group {group} of {dev.bdf} also holds {', '.join(others)}; VFIO takes whole groups, "
            "so romlab will not rebind it (move the card to a slot of its own or check ACS)")


def _ensure_vfio_pci_loaded() -> None:
    if (sysfs.pci_drivers_dir() / VFIO_DRIVER).is_dir():
        return
    try:
        r = subprocess.run(["modprobe", "vfio-pci"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RomError("the vfio-pci driver is not loaded and modprobe is missing; load vfio-pci") from None
    if r.returncode != 0 or not (sysfs.pci_drivers_dir() / VFIO_DRIVER).is_dir():
        msg = (r.stderr or "").strip().splitlines()
        raise RomError(f"cannot load the vfio-pci module: {msg[-1] if msg else 'modprobe failed'}")


def _probe(dev: PciDevice) -> None:
    sysfs.write_text(sysfs.root() / "bus" / "pci" / "drivers_probe", str(dev.bdf))


def _unbind_current(dev: PciDevice) -> None:
    drv = dev.driver
    if drv:
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


def bind(dev: PciDevice, *, persist: bool = True) -> dict:
    """Give ``dev`` to vfio-pci; returns the remembered original state.

    With ``persist`` the original state is written to the state file for a later
    ``unbind`` in another process. A device already on vfio-pci is left as it is.
    """
    if dev.driver == VFIO_DRIVER:
        return _load_state(dev) or {"bdf": str(dev.bdf), "driver": None, "driver_override": None,
                                    "already_bound": True}
    check_bindable(dev)
    _ensure_vfio_pci_loaded()
    state = {"bdf": str(dev.bdf), "driver": dev.driver, "driver_override": dev.driver_override,
             "already_bound": False}
    with signals.held():
        if persist:
            _save_state(dev, state)
        try:
            _set_override(dev, VFIO_DRIVER)
            _unbind_current(dev)
            _probe(dev)
            got = _wait_driver(dev, VFIO_DRIVER)
            if got != VFIO_DRIVER:
                raise RomError(f"vfio-pci did not take {dev.bdf} (driver now: {got or 'none'}); see dmesg")
        except BaseException:
            _restore(dev, state)
            if persist:
                _forget(dev)
            raise
    return state


def unbind(dev: PciDevice) -> dict:
    """Take ``dev`` from vfio-pci and give it back to the driver it had before ``bind``."""
    if dev.driver != VFIO_DRIVER:
        raise RomError(f"{dev.bdf} is not bound to vfio-pci (driver: {dev.driver or 'none'})")
    if os.geteuid() != 0:
        raise RomError(f"unbinding {dev.bdf} from vfio-pci needs root")
    state = _load_state(dev) or {"bdf": str(dev.bdf), "driver": None, "driver_override": None}
    with signals.held():
        _restore(dev, state)
        _forget(dev)
    got = dev.driver
    if state.get("driver") and got != state["driver"]:
        raise RomError(f"{dev.bdf} went back to {got or 'no driver'}, not to {state['driver']}; see dmesg")
    return {**state, "now": got}


def _release(dev: PciDevice) -> None:
    """Make sure nothing holds ``dev`` through VFIO before it leaves vfio-pci.

    The kernel's unbind waits for the last device fd to close, uninterruptibly once a signal
    has come: this process's own fds are closed first, another process's are refused.
    """
    from hw import vfio

    vfio.close_all(dev.bdf)
    others = vfio.holders(dev)
    if others:
        raise RomError(f"{dev.bdf} is open through VFIO in process {', '.join(others)}; the kernel would "
                       f"wait for it, so romlab leaves it on vfio-pci: end that process, then run "
                       f"`romlab vfio unbind {dev.bdf}`")


def _restore(dev: PciDevice, state: dict) -> None:
    """Undo a bind: original override, away from vfio-pci, reprobe. Best effort per step."""
    if dev.driver == VFIO_DRIVER:
        _release(dev)
    errors = []
    for step in (lambda: _set_override(dev, state.get("driver_override")),
                 lambda: _unbind_current(dev) if dev.driver == VFIO_DRIVER else None,
                 lambda: _probe(dev) if dev.driver is None else None):
        try:
            step()
        except RomError as exc:
            errors.append(str(exc))
    if state.get("driver"):
        _wait_driver(dev, state["driver"])
    if errors:
        raise RomError(f"restoring {dev.bdf}'s driver: {errors[0]}")


@contextlib.contextmanager
def bound(dev: PciDevice):
    """vfio-pci for the duration of a ``with`` block; the original driver afterwards.

    The original state is taken before binding and put back in ``finally``, so a
    Ctrl-C that lands just as the bind completes (it is held until then) still
    finds the device restored.
    """
    if dev.driver == VFIO_DRIVER:
        yield
        return
    state = {"bdf": str(dev.bdf), "driver": dev.driver, "driver_override": dev.driver_override}
    try:
        bind(dev, persist=False)
        yield
    finally:
        with signals.held():
            if dev.driver != state["driver"] or dev.driver_override != state["driver_override"]:
                _restore(dev, state)


def _save_state(dev: PciDevice, state: dict) -> None:
    d = state_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        _state_file(dev.bdf).write_text(json.dumps(state))
    except OSError as exc:
        raise RomError(f"cannot record {dev.bdf}'s driver in {d}: {exc.strerror}") from None


def _load_state(dev: PciDevice) -> dict | None:
    try:
        return json.loads(_state_file(dev.bdf).read_text())
    except (OSError, ValueError):
        return None


def _forget(dev: PciDevice) -> None:
    with contextlib.suppress(OSError):
        _state_file(dev.bdf).unlink()
