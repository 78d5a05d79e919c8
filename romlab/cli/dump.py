"""``romlab dump``: copy a device's expansion ROM to a file."""
from __future__ import annotations

NAME = "dump"
HELP = "copy a PCI device's option ROM to a file"
DESCRIPTION = """\
Copy the option ROM of a PCI device to FILE.
  (default)  only the images, trimmed the way the kernel's pci_get_rom_size does (follow the
             55AA/PCIR images to the last-image flag)
  --raw      the whole ROM BAR, fill included, read through VFIO
--via vfio binds the device to vfio-pci for the read if it is not bound already and gives it back
to its driver afterwards."""

EXAMPLES = [
    ("romlab dump --pci 03:00.0 -o nic.rom", "the card's ROM images, as the kernel trims them (root)"),
    ("romlab dump --pci 03:00.0 --raw -o bar.bin", "the whole ROM BAR, through VFIO"),
]


def add_arguments(p) -> None:
    p.add_argument("--pci", metavar="BDF", required=True, help="the device, e.g. 03:00.0 or 0000:03:00.0")
    p.add_argument("--via", choices=("sysfs", "vfio"), default=None,
                   help="sysfs rom file (default) or the VFIO ROM region (default with --raw)")
    p.add_argument("--raw", action="store_true", help="the whole ROM BAR, fill included")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write the ROM")
    p.add_argument("--json", action="store_true", help="report what was written as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")


def run(args) -> int:
    import hashlib
    import os

    from hw.access import read_rom
    from hw.errors import UsageError
    from hw.pci import parse_bdf
    from romlab.cli._common import check_outputs, print_json, write_output
    from romlab.conventions import device_input, document

    bdf = str(parse_bdf(args.pci))
    via = args.via or ("vfio" if args.raw else "sysfs")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UsageError(f"directory {out_dir} does not exist; create it or give -o a path in an existing one")
    check_outputs([args.output], overwrite=args.overwrite)   # before the device is touched
    data = read_rom(bdf, via=via, raw=args.raw)
    write_output(args.output, data, overwrite=args.overwrite)
    doc = document("romlab.dump/1", input=device_input(bdf), via=via, raw=args.raw, size=len(data),
                   output=args.output, sha256=hashlib.sha256(data).hexdigest())
    if args.json:
        print_json(doc)
    else:
        from romlab.cli import note

        note(f"{bdf}: wrote {len(data)} bytes ({'whole ROM BAR' if args.raw else 'ROM images'}, via {via}) "
             f"to {args.output}")
    return 0
