"""PCI devices as Linux shows them in sysfs: addresses, config space, BARs and the ROM.

Everything here goes through ``/sys/bus/pci/devices/<BDF>``, so it needs no driver of
its own and works whatever driver owns the device. The one write it makes is to the
``rom`` attribute, and it always puts that back the way it found it.
"""
from __future__ import annotations

import errno
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from hw import sysfs
from hw.errors import HardwareError, RomlabError, UsageError
from hw.mmio import ResourceBar

ROM_SIGNATURE = b"\x55\xaa"
PCIR_SIGNATURE = b"PCIR"
ROM_RESOURCE = 6
CONFIG_ROM_ADDRESS = 0x30  # type 0 header; bit 0 is the ROM BAR's enable bit
CONFIG_ROM_ADDRESS_BRIDGE = 0x38

# struct resource flags, as the sysfs "resource" file prints them
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x00100000

CAP_NAMES = {
    0x01: "Power Management", 0x02: "AGP", 0x03: "VPD", 0x04: "Slot ID", 0x05: "MSI",
    0x06: "CompactPCI Hot Swap", 0x07: "PCI-X", 0x08: "HyperTransport", 0x09: "Vendor Specific",
    0x0A: "Debug port", 0x0B: "CompactPCI CRC", 0x0C: "Hot-Plug", 0x0D: "Bridge Subsystem Vendor",
    0x0E: "AGP 8x", 0x0F: "Secure Device", 0x10: "PCI Express", 0x11: "MSI-X", 0x12: "SATA",
    0x13: "Advanced Features", 0x14: "Enhanced Allocation", 0x15: "Flattening Portal Bridge",
}
EXT_CAP_NAMES = {
    0x0001: "Advanced Error Reporting", 0x0002: "Virtual Channel", 0x0003: "Device Serial Number",
    0x0004: "Power Budgeting", 0x000B: "Vendor Specific", 0x000D: "Access Control Services",
    0x000E: "Alternative Routing-ID", 0x000F: "Address Translation Services", 0x0010: "SR-IOV",
    0x0013: "Page Request", 0x0015: "Resizable BAR", 0x0017: "TPH Requester", 0x0018: "LTR",
    0x0019: "Secondary PCI Express", 0x001E: "L1 PM Substates", 0x0023: "Designated Vendor-Specific",
    0x0025: "Data Link Feature", 0x0026: "Physical Layer 16 GT/s",
}

_BDF_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-7])$")


@dataclass(frozen=True, order=True)
class Bdf:
    """A PCI address; ``str()`` gives the full sysfs form ``0000:03:00.0``."""

    domain: int
    bus: int
    device: int
    function: int

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"


def parse_bdf(text: str) -> Bdf:
    """``03:00.0`` or ``0000:03:00.0`` (domain defaults to 0)."""
    m = _BDF_RE.match(text.strip())
    if not m:
        raise UsageError(f"{text!r} is not a PCI address; write it as 03:00.0 or 0000:03:00.0")
    dev = int(m["dev"], 16)
    if dev > 31:
        raise UsageError(f"{text!r} is not a PCI address: device number {dev:#x} is above 0x1f")
    return Bdf(int(m["domain"] or "0", 16), int(m["bus"], 16), dev, int(m["fn"]))


def kernel_rom_size(data: bytes | bytearray | memoryview) -> int:
    """How many bytes of a ROM BAR the kernel counts as ROM (its ``pci_get_rom_size`` rule).

    Images are followed while each starts with 55AA and its PCI data structure says
    "PCIR"; each adds ImageLength x 512 bytes, and the walk stops after the image
    whose indicator has bit 7 (last image) set, at a zero length, or at the end of
    the window. Anything after that (the BAR's fill) is not ROM. Returns 0 when the
    first image is not valid.
    """
    size = len(data)
    off = 0
    while off + 0x1A <= size:
        if bytes(data[off:off + 2]) != ROM_SIGNATURE:
            break
        pcir = off + struct.unpack_from("<H", data, off + 0x18)[0]
        if pcir + 0x18 > size or bytes(data[pcir:pcir + 4]) != PCIR_SIGNATURE:
            break
        length = struct.unpack_from("<H", data, pcir + 0x10)[0] * 512
        last = data[pcir + 0x15] & 0x80
        off += length
        if off >= size or not length or last:
            break
    return min(off, size)


@dataclass
class Resource:
    """One line of sysfs ``resource``: a BAR (index 0-5) or the ROM BAR (index 6)."""

    index: int
    start: int
    end: int
    flags: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1 if self.end > self.start else 0

    @property
    def kind(self) -> str:
        if self.index == ROM_RESOURCE:
            return "rom"
        if self.flags & IORESOURCE_IO:
            return "io"
        if self.flags & IORESOURCE_MEM:
            return "mem64" if self.flags & IORESOURCE_MEM_64 else "mem32"
        return "unused"

    @property
    def prefetchable(self) -> bool:
        return bool(self.flags & IORESOURCE_PREFETCH)

    def to_json(self) -> dict:
        return {"index": self.index, "kind": self.kind, "start": self.start, "size": self.size,
                "prefetchable": self.prefetchable}


@dataclass
class Capability:
    id: int
    offset: int
    extended: bool = False
    version: int | None = None

    @property
    def name(self) -> str:
        table = EXT_CAP_NAMES if self.extended else CAP_NAMES
        return table.get(self.id, f"unknown {self.id:#x}")

    def to_json(self) -> dict:
        d = {"id": self.id, "offset": self.offset, "name": self.name, "extended": self.extended}
        if self.version is not None:
            d["version"] = self.version
        return d


def parse_capabilities(config: bytes) -> list[Capability]:
    """The standard capability list (from 0x34) and, with 4 KiB of config, the extended one."""
    caps: list[Capability] = []
    if len(config) < 0x40 or not (struct.unpack_from("<H", config, 0x06)[0] & 0x10):
        return caps
    header_type = config[0x0E] & 0x7F
    ptr = config[0x14 if header_type == 2 else 0x34] & 0xFC
    seen: set[int] = set()
    while ptr >= 0x40 and ptr + 2 <= len(config) and ptr not in seen:
        seen.add(ptr)
        caps.append(Capability(config[ptr], ptr))
        ptr = config[ptr + 1] & 0xFC
    if len(config) >= 0x104 and any(c.id == 0x10 for c in caps):
        off = 0x100
        seen = set()
        while 0x100 <= off <= len(config) - 4 and off not in seen:
            seen.add(off)
            head = struct.unpack_from("<I", config, off)[0]
            if head in (0, 0xFFFFFFFF):
                break
            caps.append(Capability(head & 0xFFFF, off, extended=True, version=(head >> 16) & 0xF))
            off = (head >> 20) & 0xFFC
            if not off:
                break
    return caps


# Where every message about a missing or unsuitable device sends the user, in the same words.
LIST_HINT = "`romlab list` shows the devices present"


def no_rom_bar(bdf) -> HardwareError:
    """The error for a device without a ROM BAR: one sentence, whichever road found it."""
    return HardwareError(f"{bdf} has no expansion ROM (no ROM BAR); `romlab list --with-rom` shows the devices "
                         "that have one")


def no_valid_rom(bdf) -> HardwareError:
    """The error for a ROM BAR with no 55AA/PCIR image at its start, and how to see what it holds."""
    return HardwareError(f"{bdf}'s ROM BAR holds no valid image (no 55AA/PCIR at its start); "
                         f"`romlab dump --pci {bdf} --raw -o FILE` copies what is there")


@dataclass
class PciDevice:
    """A device under ``/sys/bus/pci/devices``; attributes are read when asked for.

    Reading needs no driver and works whatever driver owns the device. Which driver that
    is changes only through ``hw.vfio_bind``, which keeps a record of it.
    """

    bdf: Bdf
    path: Path = field(repr=False)

    @classmethod
    def open(cls, bdf: str | Bdf) -> "PciDevice":
        b = bdf if isinstance(bdf, Bdf) else parse_bdf(bdf)
        path = sysfs.pci_devices_dir() / str(b)
        if not path.exists():
            raise HardwareError(f"no PCI device {b}; {LIST_HINT}")
        return cls(b, path)

    # identity -----------------------------------------------------------
    def _hex(self, name: str, default: int | None = None) -> int:
        return sysfs.read_int(self.path / name, default)

    @property
    def vendor_id(self) -> int:
        return self._hex("vendor")

    @property
    def device_id(self) -> int:
        return self._hex("device")

    @property
    def subsystem_vendor_id(self) -> int:
        return self._hex("subsystem_vendor", 0)

    @property
    def subsystem_device_id(self) -> int:
        return self._hex("subsystem_device", 0)

    @property
    def class_code(self) -> int:
        return self._hex("class", 0)

    @property
    def ids(self) -> str:
        """``vendor:device`` in lspci's form, e.g. ``8086:10d3``."""
        return "%04x:%04x" % (self.vendor_id, self.device_id)

    @property
    def driver(self) -> str | None:
        return sysfs.link_name(self.path / "driver")

    @property
    def driver_override(self) -> str | None:
        text = sysfs.read_text(self.path / "driver_override", "(null)")
        return None if text in ("(null)", "") else text

    @property
    def iommu_group(self) -> int | None:
        name = sysfs.link_name(self.path / "iommu_group")
        return int(name) if name is not None else None

    @property
    def iommu_domain(self) -> str | None:
        """The type of the default DMA domain the kernel gives this device's IOMMU group
        (``iommu_group/type``: "DMA" maps each buffer and flushes the IOTLB at every unmap,
        "DMA-FQ" batches those flushes, "identity" passes addresses through untranslated; VFIO
        attaches a domain of its own without changing this one); None without an IOMMU group."""
        if self.iommu_group is None:
            return None
        text = sysfs.read_text(self.path / "iommu_group" / "type", "")
        return text or None

    def group_members(self) -> list[Bdf]:
        """Every device in this device's IOMMU group, itself included."""
        group = self.iommu_group
        if group is None:
            return []
        gdir = sysfs.root() / "kernel" / "iommu_groups" / str(group) / "devices"
        try:
            return sorted(parse_bdf(n) for n in os.listdir(gdir))
        except FileNotFoundError:
            return [self.bdf]

    # config space and resources ------------------------------------------
    def config(self) -> bytes:
        """Config space as far as the kernel lets us read it (64 bytes unless root)."""
        try:
            with open(self.path / "config", "rb") as f:
                return f.read()
        except OSError as exc:
            raise HardwareError(f"cannot read config space of {self.bdf}: {exc.strerror}") from None

    @property
    def memory_enabled(self) -> bool:
        """Whether the device decodes memory accesses (command register bit 1).

        sysfs ``enable`` only counts pci_enable_device() calls, so it is the fallback for a
        config space that cannot be read."""
        try:
            with open(self.path / "config", "rb") as fh:
                head = fh.read(6)
        except OSError:
            head = b""
        if len(head) == 6:
            return bool(head[4] & 0x2)
        return sysfs.read_int(self.path / "enable", 1) != 0

    def capabilities(self) -> list[Capability]:
        return parse_capabilities(self.config())

    def resources(self) -> list[Resource]:
        text = sysfs.read_text(self.path / "resource", "")
        out = []
        for i, line in enumerate(text.splitlines()):
            parts = line.split()
            if len(parts) != 3:
                continue
            out.append(Resource(i, int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)))
        return out

    def bars(self) -> list[Resource]:
        return [r for r in self.resources()[:6] if r.size]

    @property
    def rom_resource(self) -> Resource | None:
        res = self.resources()
        if len(res) > ROM_RESOURCE and res[ROM_RESOURCE].size:
            return res[ROM_RESOURCE]
        return None

    @property
    def rom_bar_size(self) -> int:
        r = self.rom_resource
        return r.size if r else 0

    def rom_bar_enabled(self) -> bool | None:
        """The enable bit of the ROM BAR in config space (None if config is too short)."""
        cfg = self.config()
        reg = CONFIG_ROM_ADDRESS_BRIDGE if (len(cfg) > 0x0E and cfg[0x0E] & 0x7F == 1) else CONFIG_ROM_ADDRESS
        if len(cfg) < reg + 4:
            return None
        return bool(struct.unpack_from("<I", cfg, reg)[0] & 1)

    def map_resource(self, index: int = 0) -> ResourceBar:
        """BAR ``index`` mapped from sysfs ``resource<index>`` (raises ``mmio.BarBusy`` while a
        driver holds it)."""
        return ResourceBar(self.path / f"resource{index}")

    # ROM through sysfs ------------------------------------------------------
    def read_rom_sysfs(self) -> bytes:
        """The ROM as the kernel hands it out: enable, read, disable.

        The ``rom`` attribute refuses reads (EINVAL) until "1" is written to it; it
        is put back to disabled afterwards unless it was already enabled, on every
        path including errors and Ctrl-C. The kernel stops at the last image, so
        this never includes the BAR's fill.
        """
        rom_path = self.path / "rom"
        if not rom_path.exists():
            raise no_rom_bar(self.bdf)
        try:
            fd = os.open(rom_path, os.O_RDWR)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise HardwareError(f"permission denied opening {rom_path}; reading a ROM needs root (run romlab as root or with sudo)") from None
            raise HardwareError(f"cannot open {rom_path}: {exc.strerror}") from None
        try:
            was_enabled = _rom_attr_enabled(fd)
            if not was_enabled:
                os.pwrite(fd, b"1", 0)
            try:
                chunks = []
                off = 0
                while True:
                    try:
                        chunk = os.pread(fd, 1 << 16, off)
                    except OSError as exc:
                        if exc.errno == errno.EIO:
                            raise no_valid_rom(self.bdf) from None
                        raise HardwareError(f"reading {rom_path} failed: {exc.strerror}") from None
                    if not chunk:
                        break
                    chunks.append(chunk)
                    off += len(chunk)
                return b"".join(chunks)
            finally:
                if not was_enabled:
                    os.pwrite(fd, b"0", 0)
        finally:
            os.close(fd)

    def rom_attr_enabled(self) -> bool:
        """Whether sysfs ``rom`` currently allows reads (someone wrote "1" to it)."""
        fd = os.open(self.path / "rom", os.O_RDONLY)
        try:
            return _rom_attr_enabled(fd)
        finally:
            os.close(fd)

    # network interfaces ------------------------------------------------------
    def net_interfaces(self) -> dict[str, str | None]:
        """The network interfaces a kernel driver made for this device, name -> MAC address (None
        when unreadable); empty without a network driver."""
        d = self.path / "net"
        try:
            names = sorted(os.listdir(d))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise sysfs.explain(exc, "read", d) from None
        out: dict[str, str | None] = {}
        for n in names:
            try:
                out[n] = sysfs.read_text(d / n / "address", "") or None
            except HardwareError:
                out[n] = None
        return out

    # SR-IOV ------------------------------------------------------------------
    # The kernel gives a physical function with the SR-IOV capability the attributes sriov_totalvfs
    # and sriov_numvfs and one link virtfnN per enabled VF; each VF has a link physfn back. VFs are
    # made by writing a count to sriov_numvfs, which the PF's driver carries out (its
    # sriov_configure); see Linux's drivers/pci/iov.c.
    @property
    def sriov_capable(self) -> bool:
        """Whether this device is an SR-IOV physical function the kernel can make VFs on."""
        return (self.path / "sriov_totalvfs").exists()

    def require_sriov(self) -> None:
        """Raise the one error for a device that is not an SR-IOV physical function."""
        if self.sriov_capable:
            return
        pf = self.physfn
        if pf is not None:
            raise HardwareError(f"{self.bdf} is itself a VF (of {pf}); SR-IOV is set up on the physical function: "
                                f"`romlab nic vfs --pci {pf}`")
        raise HardwareError(f"{self.bdf} ({self.ids}) is not SR-IOV capable: the kernel shows no sriov_totalvfs "
                            f"for it; VFs are made on a physical function with the SR-IOV capability ({LIST_HINT})")

    @property
    def sriov_totalvfs(self) -> int:
        """How many VFs the device offers (0 when it is not SR-IOV capable)."""
        return sysfs.read_int(self.path / "sriov_totalvfs", 0)

    @property
    def sriov_numvfs(self) -> int:
        """How many VFs are enabled now (0 when it is not SR-IOV capable)."""
        return sysfs.read_int(self.path / "sriov_numvfs", 0)

    def virtfns(self) -> list[Bdf]:
        """The PF's enabled VFs, in VF-number order (virtfn0, virtfn1, ...)."""
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise sysfs.explain(exc, "read", self.path) from None
        found = []
        for n in names:
            m = re.fullmatch(r"virtfn(\d+)", n)
            target = sysfs.link_name(self.path / n) if m else None
            if target is None:
                continue
            try:
                found.append((int(m[1]), parse_bdf(target)))
            except UsageError:
                continue
        return [b for _, b in sorted(found)]

    @property
    def physfn(self) -> Bdf | None:
        """For a VF, the PF it belongs to; None for any other device."""
        name = sysfs.link_name(self.path / "physfn")
        if name is None:
            return None
        try:
            return parse_bdf(name)
        except UsageError:
            return None

    def set_sriov_numvfs(self, count: int) -> None:
        """Enable ``count`` VFs (0 removes them all).

        The kernel refuses to change a non-zero count to another non-zero one (EBUSY), so a
        change goes through 0 first; if the new count then fails, the message says the old VFs are
        gone. Its refusals come back as one line each: above the total
        (ERANGE), no PF driver or one without SR-IOV support (ENOENT).
        """
        self.require_sriov()
        total = self.sriov_totalvfs
        if not 0 <= count <= total:
            raise UsageError(f"{self.bdf} offers {total} VFs; the VF count must be 0..{total}, not {count}")
        now = self.sriov_numvfs
        if now == count:
            return
        if now and count:
            self._write_numvfs(0, count)
        try:
            self._write_numvfs(count, count)
        except RomlabError as exc:
            if now and count:  # the 0 went through: the VFs that were there are gone
                raise type(exc)(f"{exc}; the {now} VFs {self.bdf} had before were removed on the way (a count "
                                f"changes only through 0): `romlab nic vfs --pci {self.bdf} --count {now}` "
                                f"makes them again") from None
            raise

    def _write_numvfs(self, value: int, wanted: int) -> None:
        path = self.path / "sriov_numvfs"
        try:
            sysfs.write_text(path, f"{value}\n", raw=True)
        except OSError as exc:
            raise self._numvfs_error(exc, value, wanted) from None

    def _numvfs_error(self, exc: OSError, value: int, wanted: int) -> RomlabError:
        drv = self.driver
        if exc.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
            return HardwareError(f"permission denied writing {self.path / 'sriov_numvfs'}; creating VFs needs "
                                 "root (run romlab as root or with sudo)")
        if exc.errno == errno.ERANGE:
            return UsageError(f"{self.bdf} offers {self.sriov_totalvfs} VFs; {value} is more than that")
        if exc.errno == errno.ENOENT and drv is None:
            return HardwareError(f"{self.bdf} has no driver: the kernel makes VFs through the PF's driver; bind "
                                 f"it to its own driver first (`romlab vfio unbind {self.bdf}` if romlab took it)")
        if exc.errno == errno.ENOENT and drv == "vfio-pci":
            return HardwareError(f"{self.bdf} is bound to vfio-pci, which makes no VFs unless loaded with "
                                 f"enable_sriov=1; give the PF back to its driver with `romlab vfio unbind {self.bdf}`")
        if exc.errno == errno.ENOENT:
            return HardwareError(f"{self.bdf}'s driver {drv} does not support SR-IOV (it cannot make VFs); "
                                 "bind the PF to a driver that does (for the 82576: igb)")
        if exc.errno == errno.EBUSY:
            return HardwareError(f"{self.bdf} already has {self.sriov_numvfs} VFs and the kernel would not "
                                 f"change that; remove them with `romlab nic vfs --pci {self.bdf} --count 0`")
        what = "removing the VFs of" if value == 0 and wanted == 0 else f"making {value} VFs on"
        return HardwareError(f"{what} {self.bdf} failed: {exc.strerror or exc} (from driver {drv}); see dmesg")

    def to_json(self) -> dict:
        return {
            "bdf": str(self.bdf), "vendor": self.vendor_id, "device": self.device_id,
            "subsystem_vendor": self.subsystem_vendor_id, "subsystem_device": self.subsystem_device_id,
            "class": self.class_code, "driver": self.driver, "iommu_group": self.iommu_group,
            "bars": [r.to_json() for r in self.bars()], "rom_bar_size": self.rom_bar_size,
        }


def _rom_attr_enabled(fd: int) -> bool:
    try:
        os.pread(fd, 1, 0)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        if exc.errno == errno.EIO:  # enabled, but no valid image behind it
            return True
        raise
    return True


def list_devices() -> list[PciDevice]:
    d = sysfs.pci_devices_dir()
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    devs = []
    for n in names:
        try:
            b = parse_bdf(n)
        except UsageError:
            continue
        devs.append(PciDevice(b, d / n))
    return sorted(devs, key=lambda x: x.bdf)

