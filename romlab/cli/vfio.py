"""``romlab vfio``: hand a device to vfio-pci and back, and show what VFIO offers for it."""
from __future__ import annotations

NAME = "vfio"
HELP = "bind a PCI device to vfio-pci, give it back, or show its VFIO regions and interrupts"
DESCRIPTION = """\
Hand a PCI device to vfio-pci, so that user-space drivers (romlab nic, romlab dump --raw, QEMU)
can reach it, give it back afterwards, or see what VFIO offers for it."""

EXAMPLES = [
    ("romlab vfio bind 03:00.0", "take the device from its kernel driver (root)"),
    ("romlab vfio info 03:00.0 --dma 2M", "its regions and interrupts; also pin and map a 2 MiB DMA buffer"),
    ("romlab vfio unbind 03:00.0", "give it back to the driver it had"),
]


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("bind", help="give BDF to vfio-pci, remembering the driver it had",
                       description="Unbind BDF from its kernel driver and bind it to vfio-pci, remembering the "
                                   "driver\nfor `romlab vfio unbind`. Needs root.")
    b.add_argument("bdf", metavar="BDF", help="the device, e.g. 03:00.0 or 0000:03:00.0")
    u = sub.add_parser("unbind", help="give BDF back to the driver it had before bind",
                       description="Unbind BDF from vfio-pci and bind it to the driver it had before "
                                   "`romlab vfio bind`\n(or leave it without one if it had none). Needs root.")
    u.add_argument("bdf", metavar="BDF", help="the device, e.g. 03:00.0 or 0000:03:00.0")
    i = sub.add_parser("info", help="what VFIO offers for BDF: regions, interrupts, reset, IOMMU ranges",
                       description="""\
Open BDF through VFIO and show what a user-space driver gets:
  regions      each BAR, the ROM and config space: size, and whether it can be read, written, mmapped
  interrupts   INTx, MSI, MSI-X ...: vectors, and whether they are maskable or automasked
  reset        whether the device can be reset through VFIO
  IOVA ranges  the addresses the IOMMU lets DMA buffers be mapped at
A device not bound to vfio-pci is bound for the look and given back to its driver after.
--dma SIZE also pins and maps a buffer of SIZE bytes, which checks the locked-memory limit.""")
    i.add_argument("bdf", metavar="BDF", help="the device, e.g. 03:00.0 or 0000:03:00.0")
    i.add_argument("--dma", metavar="SIZE", type=_size, help="also map a DMA buffer of SIZE bytes (e.g. 64K, 2M)")
    i.add_argument("--json", action="store_true", help="print the result as JSON")


def _size(text: str) -> int:
    import argparse

    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in mult:
            return int(t[:-1], 0) * mult[t[-1]]
        return int(t, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size") from None


def run(args) -> int:
    from hw import vfio_bind
    from hw.pci import PciDevice
    from romlab.cli import note

    dev = PciDevice.open(args.bdf)
    if args.action == "bind":
        st = vfio_bind.bind(dev)
        if st.get("already_bound"):
            note(f"{dev.bdf} is already bound to vfio-pci")
        else:
            note(f"{dev.bdf}: {st['driver'] or 'no driver'} -> vfio-pci (group {dev.iommu_group}, "
                 f"/dev/vfio/{dev.iommu_group})")
        return 0
    if args.action == "unbind":
        st = vfio_bind.unbind(dev)
        back = (f" (IOMMU domain back to {st['iommu_domain']})"
                if st.get("iommu_domain") and st.get("iommu_domain_was") != st["iommu_domain"] else "")
        note(f"{dev.bdf}: {st['was'] or 'no driver'} -> {st['now'] or 'no driver'}{back}")
        return 0
    return _info(dev, args)


def _info(dev, args) -> int:
    from hw import vfio, vfio_bind
    from romlab.cli._common import print_json
    from romlab.conventions import device_input, document

    with vfio_bind.bound(dev):
        with vfio.VfioDevice(dev) as v:
            info = v.info()
            doc = {**document("romlab.vfio-info/1", input=device_input(dev.bdf)), "backend": v.backend,
                   "iommu_group": dev.iommu_group, **info,
                   "regions": [r.to_json() for r in v.regions()],
                   "irqs": [i.to_json() for i in v.irqs()],
                   "iova_ranges": [[s, e - 1] for s, e in v.iova.free]}
            if args.dma:
                buf = v.dma_alloc(args.dma)
                doc["dma"] = {"size": buf.size, "iova": buf.iova}
                v.dma_free(buf)
    if args.json:
        print_json(doc)
        return 0
    print(f"{dev.bdf}  VFIO {doc['backend']}  group {doc['iommu_group']}  "
          f"reset: {'yes' if doc['reset'] else 'no'}")
    print("regions:")
    for r in doc["regions"]:
        if not r["size"]:
            continue
        flags = "".join(c if r[k] else "-" for c, k in (("r", "read"), ("w", "write"), ("m", "mmap")))
        print(f"  {r['index']}  {r['name']:<7} {r['size']:>10}  {flags}")
    print("interrupts:")
    for i in doc["irqs"]:
        print(f"  {i['index']}  {i['name']:<7} {i['count']} vector(s)"
              f"{', maskable' if i['maskable'] else ''}{', automasked' if i['automasked'] else ''}")
    print("IOVA ranges: " + ", ".join(f"{s:#x}-{e:#x}" for s, e in doc["iova_ranges"]))
    if "dma" in doc:
        print(f"DMA: mapped and unmapped {doc['dma']['size']} bytes at IOVA {doc['dma']['iova']:#x}")
    return 0
