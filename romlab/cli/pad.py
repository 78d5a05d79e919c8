"""``romlab pad``: pad a ROM with 0xFF to a size, a flash size or a hypervisor's limit."""
from __future__ import annotations

from romlab.cli._common import add_edit_arguments, add_overwrite_argument, check_outputs, print_json, write_output

NAME = "pad"
HELP = "pad a ROM with 0xFF to SIZE, the next flash size, or a VirtualBox/VMware preset"

EXAMPLES = [
    ("romlab pad /usr/lib/ipxe/qemu/pxe-e1000.rom --to flash -o padded.rom", "pad to the next flash size (64K, 128K, ...)"),
    ("romlab pad /usr/lib/ipxe/qemu/efi-e1000.rom --to 256K -o padded-256k.rom", "pad to 256 KiB"),
]


def add_arguments(p) -> None:
    p.add_argument("file", help="ROM to pad")
    p.add_argument("--to", required=True, metavar="SIZE|flash|virtualbox|vmware",
                   help="bytes (128K, 0x20000), 'flash' (next power of two from 64K), 'virtualbox' (56K), 'vmware' (64K)")
    p.add_argument("-o", "--output", required=True, help="output file")
    add_edit_arguments(p)
    p.add_argument("--json", action="store_true", help="print the romlab.pad/1 JSON document")
    add_overwrite_argument(p)


def run(args) -> int:
    from romlab.conventions import document
    from romtools.build import pad
    from romtools.flash.chips import CHIPS
    from romtools.walker import read_input, walk

    data = read_input(args.file)
    w = walk(data)
    rom = data[:w.end] if w.trailing_fill == 0xFF else data
    out = pad(rom, args.to, limit=max(c.size for c in CHIPS))
    check_outputs([args.output], inputs=(args.file,), overwrite=args.overwrite)
    if not args.dry_run:
        write_output(args.output, out, inputs=(args.file,), overwrite=args.overwrite)
    if args.json:
        print_json(document("romlab.pad/1", input=args.file, output=args.output, rom_length=len(rom),
                            padding=len(out) - len(rom), length=len(out), dry_run=args.dry_run))
        return 0
    print(("dry run: nothing written (would write " if args.dry_run else "wrote ")
          + f"{args.output}: {len(rom)} bytes of ROM + {len(out) - len(rom)} bytes of 0xFF = {len(out)}"
          + (")" if args.dry_run else ""))
    return 0
