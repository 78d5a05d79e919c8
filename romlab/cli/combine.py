"""``romlab combine``: stack images into one ROM.

The last-image flag ends up on the final image only, and each image's checksums are fixed; every
field that differs from the image as it was in its input is shown old -> new.
"""
from __future__ import annotations

from romlab.cli import terminal_safe
from romlab.cli._common import (
    add_edit_arguments,
    add_overwrite_argument,
    check_outputs,
    print_changes,
    print_json,
    write_output,
)

NAME = "combine"
HELP = "stack ROM images into one ROM, last-image flag on the final image only"

EXAMPLES = [
    ("romlab combine /usr/lib/ipxe/qemu/pxe-e1000.rom efi.rom -o both.rom",
     "a legacy and an EFI image in one ROM (efi.rom as the romlab efi-rom examples write it)"),
]


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="ROM", help="ROMs or images, in order")
    p.add_argument("-o", "--output", required=True, help="output ROM")
    p.add_argument("--checksum-byte", choices=("header", "last", "none"), default="header",
                   help="where each legacy image's checksum is adjusted (default: header byte 6, as iPXE)")
    p.add_argument("--json", action="store_true", help="report as JSON")
    add_edit_arguments(p)
    add_overwrite_argument(p)


def run(args) -> int:
    import sys

    from romtools.build import combine, combine_sources
    from romtools.changes import image_pairs_changes
    from romtools.walker import read_input, walk

    datas = [read_input(p) for p in args.inputs]
    out, warnings = combine(datas, args.checksum_byte)
    images = walk(out).images
    changes = image_pairs_changes(list(zip(combine_sources(datas), (out[i.offset:i.end] for i in images))))
    check_outputs([args.output], inputs=tuple(args.inputs), overwrite=args.overwrite)
    if not args.dry_run:
        write_output(args.output, out, inputs=tuple(args.inputs), overwrite=args.overwrite)
    n = len(images)
    if args.json:
        print_json({"schema": "romlab.combine/2", "inputs": args.inputs, "output": args.output,
                    "dry_run": args.dry_run, "images": n, "length": len(out),
                    "changes": [c.as_dict() for c in changes], "warnings": warnings})
    else:
        print_changes(changes)
        for w in warnings:
            print(terminal_safe(f"warning: {w}"), file=sys.stderr)
        print(("dry run: nothing written (would write " if args.dry_run else "wrote ")
              + f"{args.output}: {n} images, {len(out)} bytes" + (")" if args.dry_run else ""))
    return 0
