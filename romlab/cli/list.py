"""``romlab list``: the PCI devices present, with their ROM BARs and drivers."""
from __future__ import annotations

NAME = "list"
HELP = "list PCI devices with their names, ROM BAR size, ROM validity and driver"
DESCRIPTION = HELP + """.
Whether a valid ROM is present needs root (the kernel's rom file is root-only); without it that
column shows '?'."""

EXAMPLES = [
    ("romlab list", "every PCI device (the ROM column needs root)"),
    ("romlab list --with-rom --json", "devices with a ROM BAR, as JSON"),
]


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the romlab.list/1 JSON document instead of a table")
    p.add_argument("--with-rom", action="store_true", help="only devices that have a ROM BAR")


def _size(n: int) -> str:
    if not n:
        return "-"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def _rom_state(dev) -> tuple[str, int | None]:
    """('valid'|'invalid'|'none'|'unreadable', trimmed size) for one device."""
    from hw.errors import RomlabError
    from hw.pci import kernel_rom_size

    if not dev.rom_bar_size:
        return "none", None
    try:
        data = dev.read_rom_sysfs()
    except RomlabError as exc:
        return ("invalid", 0) if "no valid image" in str(exc) else ("unreadable", None)
    size = kernel_rom_size(data)
    return ("valid", size) if size else ("invalid", 0)


def run(args) -> int:
    from hw.pci import list_devices
    from romlab.cli._common import print_json
    from romlab.conventions import class_code, document, pci_id
    from romtools.pciids import default as pciids

    names = pciids()
    rows = []
    for dev in list_devices():
        if args.with_rom and not dev.rom_bar_size:
            continue
        state, size = _rom_state(dev)
        vendor, device = dev.vendor_id, dev.device_id
        vname = names.vendor(vendor)
        dname = names.device(vendor, device)
        rows.append({
            "bdf": str(dev.bdf), "id": pci_id(vendor, device),
            "subsystem": pci_id(dev.subsystem_vendor_id, dev.subsystem_device_id),
            "vendor_name": vname, "device_name": dname,
            "class": class_code(dev.class_code), "class_name": names.class_name(dev.class_code),
            "driver": dev.driver, "iommu_group": dev.iommu_group,
            "rom_bar_size": dev.rom_bar_size, "rom": state, "rom_size": size,
        })
    if args.json:
        print_json(document("romlab.list/1", devices=rows))
        return 0
    if not rows:
        print("no PCI devices")
        return 0
    print(f"{'BDF':<13} {'ID':<9} {'DRIVER':<12} {'ROM BAR':>8}  {'ROM':<18} NAME")
    for r in rows:
        rom = {"valid": f"valid, {_size(r['rom_size'])}", "none": "-", "invalid": "invalid",
               "unreadable": "?"}[r["rom"]]
        name = " ".join(x for x in (r["vendor_name"], r["device_name"]) if x) or (r["class_name"] or "")
        print(f"{r['bdf']:<13} {r['id']} {r['driver'] or '-':<12} "
              f"{_size(r['rom_bar_size']):>8}  {rom:<18} {name}")
    return 0
