"""``romlab efi-rom``: build an EFI option-ROM image from a PE driver."""
from __future__ import annotations

from romlab.cli._common import add_overwrite_argument, hex_id, print_json, write_output

NAME = "efi-rom"
HELP = "build an EFI option-ROM image from a PE driver (EDK2 EfiRom or iPXE efirom layout)"


def add_arguments(p) -> None:
    p.add_argument("driver", help="EFI driver (.efi, PE/COFF, subsystem 0x0B or 0x0C)")
    p.add_argument("--vendor", type=hex_id(), required=True, help="PCI vendor ID")
    p.add_argument("--device", type=hex_id(), action="append", required=True,
                   help="PCI device ID; repeat for a PCI 3.0 device list (edk2 layout)")
    p.add_argument("--compress", action="store_true", help="EFI-compress the driver")
    p.add_argument("--class", dest="class_code", type=hex_id(24),
                   help="class code (default: 000000 for edk2, 020000 for ipxe, as those tools do)")
    p.add_argument("--layout", choices=("edk2", "ipxe"), default="edk2", help="image layout (default edk2)")
    p.add_argument("--not-last", action="store_true", help="leave the last-image flag clear")
    p.add_argument("-o", "--output", required=True, help="output image")
    p.add_argument("--json", action="store_true", help="report as JSON")
    add_overwrite_argument(p)


def run(args) -> int:
    from romlab.conventions import document, hexid
    from romtools.build import efi_rom
    from romtools.walker import read_input, walk

    pe = read_input(args.driver, what="PE driver", bound="more than an EFI option ROM can carry")
    out = efi_rom(pe, args.vendor, args.device, compress=args.compress, class_code=args.class_code,
                  layout=args.layout, last=not args.not_last)
    write_output(args.output, out, inputs=(args.driver,), overwrite=args.overwrite)
    img = walk(out).images[0]
    if args.json:
        print_json(document("romlab.efi-rom/2", input=args.driver, output=args.output, length=len(out),
                            layout=args.layout, compressed=args.compress, machine=hexid(img.header.machine, 4),
                            efi_subsystem=hexid(img.header.subsystem, 4),
                            efi_image_offset=img.header.efi_image_offset))
    else:
        print(f"wrote {args.output}: {len(out)} bytes, {args.layout} layout, "
              f"{'compressed' if args.compress else 'uncompressed'}, PE at 0x{img.header.efi_image_offset:x}")
    return 0
