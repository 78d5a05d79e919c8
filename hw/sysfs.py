"""Reading and writing sysfs attributes with errors a user can act on.

Every PCI and VFIO operation starts from ``/sys``; keeping the root in one place lets
the tests point romlab at a crafted tree (``ROMLAB_SYSFS``) for the cases a virtual
machine cannot stage, such as a host with no IOMMU at all.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from hw.errors import HardwareError


def root() -> Path:
    """The sysfs mount romlab reads; ``ROMLAB_SYSFS`` overrides ``/sys``."""
    return Path(os.environ.get("ROMLAB_SYSFS") or "/sys")


def pci_devices_dir() -> Path:
    return root() / "bus" / "pci" / "devices"


def pci_drivers_dir() -> Path:
    return root() / "bus" / "pci" / "drivers"


_GERUND = {"read": "reading", "write": "writing", "open": "opening"}


def explain(exc: OSError, verb: str, path: Path) -> HardwareError:
    """One line for an OSError met while doing ``verb`` ("read", "write", "open") to ``path``."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return HardwareError(f"permission denied {_GERUND[verb]} {path}; this needs root "
                             "(run romlab as root or with sudo)")
    if exc.errno == errno.ENOENT:
        return HardwareError(f"{path} does not exist")
    return HardwareError(f"cannot {verb} {path}: {exc.strerror or exc}")


def read_text(path: Path, default: str | None = None) -> str:
    """One attribute, stripped; ``default`` when it is absent (not when unreadable)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if default is not None:
            return default
        raise HardwareError(f"{path} does not exist") from None
    except OSError as exc:
        raise explain(exc, "read", path) from None


def read_int(path: Path, default: int | None = None) -> int:
    text = read_text(path, None if default is None else "")
    if text == "" and default is not None:
        return default
    try:
        return int(text, 0)
    except ValueError:
        raise HardwareError(f"{path} holds {text!r}, not a number") from None


def write_text(path: Path, value: str, *, raw: bool = False) -> None:
    """Write one attribute in a single write(2), as sysfs expects.

    With ``raw`` the OSError is raised as it is, for a caller whose message depends on the errno
    the kernel refused the value with (SR-IOV's sriov_numvfs: ERANGE, ENOENT, EBUSY each mean
    something else); otherwise it becomes one line a user can act on."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        if raw:
            raise
        raise explain(exc, "write", path) from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        if raw:
            raise
        raise HardwareError(f"writing {value.strip()!r} to {path} failed: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def link_name(path: Path) -> str | None:
    """Last component of a symlink's target (a driver's or a group's name), or None."""
    try:
        return os.path.basename(os.readlink(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise explain(exc, "read", path) from None
