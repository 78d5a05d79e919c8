"""What the read verbs share: getting ROM bytes from a file or a device, and writing JSON."""
from __future__ import annotations

import json
import sys


def add_source_arguments(parser, *, pci: bool = True) -> None:
    parser.add_argument("file", nargs="?", help="ROM file to read")
    if pci:
        parser.add_argument("--pci", metavar="BDF", help="read the ROM from a PCI device (e.g. 03:00.0) instead")
        parser.add_argument("--via", choices=("sysfs", "vfio"), default="sysfs",
                            help="how to read the device's ROM (default: sysfs)")


def load_source(args) -> tuple[bytes, str]:
    """The ROM bytes and a name for them, from FILE or --pci."""
    from romtools.errors import RomError
    from romtools.walker import read_input

    pci = getattr(args, "pci", None)
    if pci and args.file:
        raise RomError("give either a FILE or --pci BDF, not both")
    if pci:
        from hw.pci import read_rom

        return read_rom(pci, via=args.via), f"pci:{pci}"
    if not args.file:
        raise RomError("no input: give a ROM FILE (or --pci BDF)")
    return read_input(args.file), args.file


def print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
