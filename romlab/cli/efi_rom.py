"""``romlab efi-rom``: build an EFI option-ROM image from a PE driver.

The class code is what a BIOS and ``lint`` compare between the images of one ROM, so it defaults to
the class of the ROM the image will be combined with (--like ROM, whose IDs it also takes when
--vendor/--device are not given), else to Ethernet (020000); the output says which it used.
"""
from __future__ import annotations

from romlab.cli._common import (
    add_edit_arguments,
    add_overwrite_argument,
    check_outputs,
    hex_id,
    print_json,
    write_output,
)

NAME = "efi-rom"
HELP = "build an EFI option-ROM image from a PE driver (EDK2 EfiRom or iPXE efirom layout)"

EXAMPLES = [
    ("romlab efi-rom e1000.efi --vendor 8086 --device 100e -o efi.rom",
     "an EFI image in EDK2's layout from a PE driver (e1000.efi as the romlab extract examples write it)"),
    ("romlab efi-rom e1000.efi --vendor 8086 --device 100e --device 100f --compress -o efi-2.rom",
     "compressed, with a PCI 3.0 device list"),
]


def add_arguments(p) -> None:
    p.add_argument("driver", help="EFI driver (.efi, PE/COFF, subsystem 0x0B or 0x0C)")
    p.add_argument("--vendor", type=hex_id(), help="PCI vendor ID (default: that of --like)")
    p.add_argument("--device", type=hex_id(), action="append",
                   help="PCI device ID; repeat for a PCI 3.0 device list (edk2 layout) (default: that of --like)")
    p.add_argument("--like", metavar="ROM",
                   help="the ROM this image will be combined with: its image 0 gives the class code (and the IDs "
                        "not given)")
    p.add_argument("--compress", action="store_true", help="EFI-compress the driver")
    p.add_argument("--class", dest="class_code", type=hex_id(24),
                   help="class code (default: that of --like, else 020000, Ethernet)")
    p.add_argument("--layout", choices=("edk2", "ipxe"), default="edk2", help="image layout (default edk2)")
    p.add_argument("--not-last", action="store_true",
                   help="leave the last-image flag clear (for an image another will follow)")
    p.add_argument("-o", "--output", required=True, help="output image")
    p.add_argument("--json", action="store_true", help="report as JSON")
    add_edit_arguments(p)
    add_overwrite_argument(p)


def _like(path: str):
    """Image 0's PCIR of the ROM named by --like."""
    from hw.errors import UsageError
    from romtools.walker import read_input, walk

    w = walk(read_input(path))
    if not w.images or w.images[0].pcir is None:
        raise UsageError(f"--like {path}: its image 0 has no PCIR, so no class code or IDs to take")
    return w.images[0].pcir


def run(args) -> int:
    from hw.errors import UsageError
    from romlab.conventions import class_code, document, hexid, pci_id, pci_word
    from romtools.build import CLASS_NETWORK, efi_rom
    from romtools.walker import read_input, walk

    like = _like(args.like) if args.like else None
    vendor = args.vendor if args.vendor is not None else like.vendor_id if like is not None else None
    devices = args.device or ([like.device_id] if like is not None else None)
    if vendor is None or not devices:
        raise UsageError("give --vendor and --device (or --like ROM to take them from the ROM it will join)")
    if like is not None and (args.vendor is None or not args.device) and not (vendor and devices[0]):
        raise UsageError(f"--like {args.like}: its PCIR says {vendor:04x}:{devices[0]:04x}, which names no device; "
                         "give --vendor and --device")
    if args.class_code is not None:
        klass, source = args.class_code, "--class"
    elif like is not None:
        klass, source = like.class_code, f"the class of {args.like}"
    else:
        klass, source = CLASS_NETWORK, "the default, Ethernet; --class or --like to change"
    pe = read_input(args.driver, what="PE driver", bound="more than an EFI option ROM can carry")
    out = efi_rom(pe, vendor, devices, compress=args.compress, class_code=klass,
                  layout=args.layout, last=not args.not_last)
    check_outputs([args.output], inputs=(args.driver,), overwrite=args.overwrite)
    if not args.dry_run:
        write_output(args.output, out, inputs=(args.driver,), overwrite=args.overwrite)
    img = walk(out).images[0]
    if args.json:
        print_json(document("romlab.efi-rom/2", input=args.driver, output=args.output, length=len(out),
                            layout=args.layout, compressed=args.compress, machine=hexid(img.header.machine, 4),
                            efi_subsystem=hexid(img.header.subsystem, 4),
                            efi_image_offset=img.header.efi_image_offset, id=pci_id(vendor, devices[0]),
                            devices=[pci_word(d) for d in devices], **{"class": class_code(klass)},
                            class_from="option" if args.class_code is not None else
                            "like" if like is not None else "default", last=not args.not_last,
                            dry_run=args.dry_run))
    else:
        print(("dry run: nothing written; would write " if args.dry_run else "wrote ")
              + f"{args.output}: {len(out)} bytes, {args.layout} layout, "
              f"{'compressed' if args.compress else 'uncompressed'}, PE at 0x{img.header.efi_image_offset:x}, "
              f"PCI {vendor:04x}:{devices[0]:04x}, class {klass:06x} ({source})")
        if args.not_last:
            print("the last-image flag is clear, as --not-last asks: combine puts an image after it")
    return 0
