"""``romlab combine``: stack images into one ROM."""
from __future__ import annotations

from romlab.cli import terminal_safe
from romlab.cli._common import add_overwrite_argument, print_json, write_output

NAME = "combine"
HELP = "stack ROM images into one ROM, last-image flag on the final image only"

EXAMPLES = [
    ("romlab combine pxe-e1000.rom efi.rom -o both.rom", "a legacy and an EFI image in one ROM"),
]


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="ROM", help="ROMs or images, in order")
    p.add_argument("-o", "--output", required=True, help="output ROM")
    p.add_argument("--checksum-byte", choices=("header", "last", "none"), default="header",
                   help="where each legacy image's checksum is adjusted (default: header byte 6, as iPXE)")
    p.add_argument("--json", action="store_true", help="report as JSON")
    add_overwrite_argument(p)


def run(args) -> int:
    import sys

    from romtools.build import combine
    from romtools.walker import read_input, walk

    datas = [read_input(p) for p in args.inputs]
    out, warnings = combine(datas, args.checksum_byte)
    write_output(args.output, out, inputs=tuple(args.inputs), overwrite=args.overwrite)
    n = len(walk(out).images)
    if args.json:
        print_json({"schema": "romlab.combine/1", "inputs": args.inputs, "output": args.output, "images": n,
                    "length": len(out), "warnings": warnings})
    else:
        for w in warnings:
            print(terminal_safe(f"warning: {w}"), file=sys.stderr)
        print(f"wrote {args.output}: {n} images, {len(out)} bytes")
    return 0
