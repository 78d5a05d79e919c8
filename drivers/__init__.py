"""NIC drivers: native user-space drivers and the ROM's own UNDI."""
from __future__ import annotations


def nic_class(vendor: int, device: int):
    """The class that drives a NIC with these PCI IDs: an SR-IOV virtual function (F_VF in hw.parts)
    is drivers.intelvf's, every other part drivers.intel's (which refuses the parts it does not run)."""
    from hw.parts import DRIVER_PARTS, F_VF

    part = DRIVER_PARTS.get((vendor, device))
    if part is not None and part.flags & F_VF:
        from drivers.intelvf import IntelVf

        return IntelVf
    from drivers.intel import IntelNic

    return IntelNic


def open_nic(bdf: str, *, impl: str = "c"):
    """Open the NIC at ``bdf`` with the driver its PCI IDs call for; the one lookup the CLI and the
    benches use, so a PF and a VF are opened the same way."""
    from hw.pci import PciDevice

    dev = PciDevice.open(bdf)
    return nic_class(dev.vendor_id, dev.device_id)(bdf, impl=impl)
