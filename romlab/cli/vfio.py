"""``romlab vfio``: hand a device to vfio-pci and back, and show what VFIO offers for it."""
from __future__ import annotations

NAME = "vfio"
HELP = "bind a PCI device to vfio-pci, give it back, or show its VFIO regions and interrupts"
DESCRIPTION = (
    "bind BDF: give the device to vfio-pci, remembering its driver; unbind BDF: give it back to that "
    "driver; info BDF: regions, interrupts, reset and IOMMU ranges (binds for the look if needed, "
    "restores after); --dma SIZE also pins and maps a buffer of SIZE bytes, which checks the "
    "locked-memory limit.")


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("bind", help="give BDF to vfio-pci")
    b.add_argument("bdf", metavar="BDF")
    u = sub.add_parser("unbind", help="give BDF back to the driver it had")
    u.add_argument("bdf", metavar="BDF")
    i = sub.add_parser("info", help="VFIO regions, interrupts and IOMMU ranges of BDF")
    i.add_argument("bdf", metavar="BDF")
    i.add_argument("--dma", metavar="SIZE", type=_size, help="also map a DMA buffer of SIZE bytes (e.g. 64K, 2M)")
    i.add_argument("--json", action="store_true")


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
    import sys

    from hw import vfio_bind
    from hw.pci import PciDevice

    dev = PciDevice.open(args.bdf)
    if args.action == "bind":
        st = vfio_bind.bind(dev)
        if st.get("already_bound"):
            print(f"{dev.bdf} is already bound to vfio-pci", file=sys.stderr)
        else:
            print(f"{dev.bdf}: {st['driver'] or 'no driver'} -> vfio-pci (group {dev.iommu_group}, "
                  f"/dev/vfio/{dev.iommu_group})", file=sys.stderr)
        return 0
    if args.action == "unbind":
        st = vfio_bind.unbind(dev)
        print(f"{dev.bdf}: {st['was'] or 'no driver'} -> {st['now'] or 'no driver'}", file=sys.stderr)
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
