"""``romlab split``: one file per image."""
from __future__ import annotations

from romlab.cli._common import (
    add_overwrite_argument,
    check_outputs,
    print_json,
    write_output,
)

NAME = "split"
HELP = "write each image of a ROM to its own file (bytes exactly as in the ROM)"

EXAMPLES = [
    ("romlab split efi-e1000.rom -o parts/", "parts/image-0-legacy.rom and parts/image-1-efi.rom"),
]


def add_arguments(p) -> None:
    p.add_argument("file", help="ROM to split")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for image-N-KIND.rom files")
    p.add_argument("--json", action="store_true", help="list the files written as JSON")
    add_overwrite_argument(p)


def run(args) -> int:
    import os

    from hw.errors import UsageError
    from romtools.walker import read_input, walk

    data = read_input(args.file)
    w = walk(data)
    if w.stop.problem:
        raise UsageError(f"the ROM does not walk cleanly ({w.stop.message}); nothing written")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"{args.output} exists and is not a directory")
    planned = []
    for img in w.images:
        kind = {0: "legacy", 3: "efi"}.get(img.code_type, "nonpci" if not img.pci else f"type{img.code_type:02x}")
        planned.append((img, os.path.join(args.output, f"image-{img.index}-{kind}.rom")))
    check_outputs([p for _, p in planned], inputs=(args.file,), overwrite=args.overwrite)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {args.output}: {exc.strerror or exc}") from None
    written = []
    for img, path in planned:
        write_output(path, data[img.offset:img.end], inputs=(args.file,), overwrite=args.overwrite)
        written.append({"image": img.index, "path": path, "offset": img.offset, "length": img.length})
    if args.json:
        print_json({"schema": "romlab.split/1", "input": args.file, "files": written})
    else:
        for f in written:
            print(f"image {f['image']}: {f['length']} bytes from 0x{f['offset']:x} -> {f['path']}")
    return 0
