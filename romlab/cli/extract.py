"""``romlab extract``: one image, or the EFI driver inside it.

An image cut out of a multi-image ROM is a ROM of its own, and a ROM whose only image lacks the
last-image flag makes a BIOS read past its end: so the flag is set (and the checksums fixed), shown
old -> new, unless --keep-flags asks for the bytes exactly as they were in the ROM.
"""
from __future__ import annotations

from romlab.cli import terminal_safe
from romlab.cli._common import (
    add_edit_arguments,
    add_keep_flags_argument,
    add_overwrite_argument,
    check_outputs,
    print_changes,
    print_json,
    write_output,
)

NAME = "extract"
HELP = "write one image of a ROM (marked as the last image), or with --efi-driver the PE driver of an EFI image"

EXAMPLES = [
    ("romlab extract /usr/lib/ipxe/qemu/efi-e1000.rom --image 1 -o efi.img", "image 1, bytes as they are in the ROM"),
    ("romlab extract /usr/lib/ipxe/qemu/efi-e1000.rom --image 1 --efi-driver -o e1000.efi", "the PE driver inside it, decompressed"),
]


def add_arguments(p) -> None:
    p.add_argument("file", help="ROM to read")
    p.add_argument("--image", type=int, required=True, help="image index")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--efi-driver", action="store_true",
                   help="write the image's PE/COFF driver (decompressed when compressed), checked with pefile")
    add_keep_flags_argument(p)
    p.add_argument("--checksum-byte", choices=("header", "last", "none"), default="header",
                   help="where a legacy image's checksum is adjusted after its flag is set (default: header byte 6)")
    p.add_argument("--json", action="store_true", help="report as JSON")
    add_edit_arguments(p)
    add_overwrite_argument(p)


def run(args) -> int:
    import sys

    from hw.errors import UsageError
    from romlab.conventions import document
    from romtools.walker import read_input, walk

    data = read_input(args.file)
    w = walk(data)
    if not 0 <= args.image < len(w.images):
        raise UsageError(f"image {args.image} does not exist: this ROM has images 0 to {len(w.images) - 1}")
    img = w.images[args.image]
    if img.available < img.length:
        raise UsageError(f"image {args.image} is truncated ({img.available} of {img.length} bytes); nothing written")
    report = document("romlab.extract/3", input=args.file, image=args.image, output=args.output,
                      dry_run=args.dry_run)
    changes, warnings = [], []
    if args.efi_driver:
        from romtools.extract import efi_driver

        out, info = efi_driver(data, img)
        report["driver"] = _driver_json(info.as_dict())
    else:
        from romtools.build import set_last_flag
        from romtools.changes import image_pairs_changes

        out = data[img.offset:img.end]
        if img.pcir is not None and not img.last and not args.keep_flags:
            buf = bytearray(out)
            warnings = set_last_flag(buf, True, args.checksum_byte)
            changes = image_pairs_changes([(out, bytes(buf))], start=args.image)
            out = bytes(buf)
        report["changes"] = [c.as_dict() for c in changes]
    check_outputs([args.output], inputs=(args.file,), overwrite=args.overwrite)
    if not args.dry_run:
        write_output(args.output, out, inputs=(args.file,), overwrite=args.overwrite)
    report["length"] = len(out)
    report["warnings"] = warnings
    if args.json:
        print_json(report)
        return 0
    print_changes(changes)
    for warning in warnings:
        print(terminal_safe(f"warning: {warning}"), file=sys.stderr)
    line = (f"dry run: nothing written (would write {len(out)} bytes to {args.output})" if args.dry_run else
            f"wrote {len(out)} bytes to {args.output}")
    if args.efi_driver:
        d = report["driver"]
        line += (f": PE driver, machine 0x{d['machine']} ({d['machine_name']}), subsystem 0x{d['efi_subsystem']}"
                 + (", was EFI-compressed" if d["compressed"] else ""))
        if d["signed"]:
            line += "; signed: " + ", ".join(f"{c['type_name']} ({c['length']} bytes)" for c in d["certificates"])
        else:
            line += "; not signed (no certificate table)"
    elif changes:
        line += (f"; the last-image flag {'would be' if args.dry_run else 'was'} set so that the file is a ROM of its "
                 "own (--keep-flags keeps the image as it was in the ROM)")
    print(line)
    return 0


def _driver_json(d: dict) -> dict:
    """The PE driver's report with its type codes spelled as identifiers (docs/conventions.md)."""
    from romlab.conventions import hexid

    return {"machine": hexid(d["machine"], 4), "machine_name": d["machine_name"],
            "efi_subsystem": hexid(d["subsystem"], 4), "size": d["size"], "compressed": d["compressed"],
            "signed": d["signed"],
            "certificates": [{**c, "type": hexid(c["type"], 4)} for c in d["certificates"]]}
