"""``romlab split``: one file per image.

Each file is a ROM of its own, so an image that is not the ROM's last gets its last-image flag set
(checksums fixed, shown old -> new); ``combine`` clears it again, so split-then-combine gives the
ROM back byte for byte. --keep-flags writes the images exactly as they are in the ROM.
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

NAME = "split"
HELP = "write each image of a ROM to its own file, each marked as a last image (--keep-flags: bytes as in the ROM)"

EXAMPLES = [
    ("romlab split /usr/lib/ipxe/qemu/efi-e1000.rom -o parts/", "parts/image-0-legacy.rom and parts/image-1-efi.rom"),
]


def add_arguments(p) -> None:
    p.add_argument("file", help="ROM to split")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for image-N-KIND.rom files")
    add_keep_flags_argument(p)
    p.add_argument("--checksum-byte", choices=("header", "last", "none"), default="header",
                   help="where a legacy image's checksum is adjusted after its flag is set (default: header byte 6)")
    p.add_argument("--json", action="store_true", help="list the files written as JSON")
    add_edit_arguments(p)
    add_overwrite_argument(p)


def run(args) -> int:
    import os
    import sys

    from hw.errors import UsageError
    from romtools.build import set_last_flag
    from romtools.changes import image_pairs_changes
    from romtools.walker import read_input, walk

    data = read_input(args.file)
    w = walk(data)
    if w.stop.problem:
        raise UsageError(f"the ROM does not walk cleanly ({w.stop.message}); nothing written")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"{args.output} exists and is not a directory")
    planned = []
    changes, warnings = [], []
    for img in w.images:
        kind = {0: "legacy", 3: "efi"}.get(img.code_type, "nonpci" if not img.pci else f"type{img.code_type:02x}")
        body = data[img.offset:img.end]
        if img.pcir is not None and not img.last and not args.keep_flags:
            buf = bytearray(body)
            warnings += set_last_flag(buf, True, args.checksum_byte)
            changes += image_pairs_changes([(body, bytes(buf))], start=img.index)
            body = bytes(buf)
        planned.append((img, os.path.join(args.output, f"image-{img.index}-{kind}.rom"), body))
    check_outputs([p for _, p, _ in planned], inputs=(args.file,), overwrite=args.overwrite)
    if not args.dry_run:
        try:
            os.makedirs(args.output, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {args.output}: {exc.strerror or exc}") from None
    written = []
    for img, path, body in planned:
        if not args.dry_run:
            write_output(path, body, inputs=(args.file,), overwrite=args.overwrite)
        written.append({"image": img.index, "path": path, "offset": img.offset, "length": img.length})
    if args.json:
        print_json({"schema": "romlab.split/2", "input": args.file, "dry_run": args.dry_run, "files": written,
                    "changes": [c.as_dict() for c in changes], "warnings": warnings})
    else:
        print_changes(changes)
        for warning in warnings:
            print(terminal_safe(f"warning: {warning}"), file=sys.stderr)
        for f in written:
            print(f"image {f['image']}: {f['length']} bytes from 0x{f['offset']:x} -> {f['path']}")
        if args.dry_run:
            print("dry run: nothing written")
    return 0
