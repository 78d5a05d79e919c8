"""``romlab scan``: list the option ROMs inside a larger firmware or flash dump."""
from __future__ import annotations

from romlab.cli._common import (
    STDIN_NAME,
    add_overwrite_argument,
    check_inputs,
    check_outputs,
    run_inputs,
    write_output,
)

NAME = "scan"
HELP = "find option ROMs at any offset inside a firmware or flash dump"

EXAMPLES = [
    ("romlab scan /usr/lib/ipxe/qemu/*.rom", "each file's option ROMs, wherever they start in it"),
    ("romlab scan flash-dump.bin --extract roms/",
     "a flash chip's contents (romlab flash ... --read flash-dump.bin): each ROM to roms/rom-OFFSET.bin"),
]


def add_arguments(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="firmware images, flash dumps or any files to search; - reads standard input")
    p.add_argument("--extract", metavar="DIR", help="write each ROM found to DIR/rom-OFFSET.bin")
    p.add_argument("--json", action="store_true", help="print the romlab.scan/2 JSON document")
    add_overwrite_argument(p)
    p.add_argument("--max-bytes", type=_size, default=256 << 20, metavar="N",
                   help="read at most N bytes (K, M, G suffixes; default 256M): more is refused")


def _size(text: str) -> int:
    import argparse

    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use e.g. 64M or 1G")
    return int(digits) * mult


def run(args) -> int:
    import os
    import sys

    from hw.errors import UsageError
    from romlab.conventions import document, hexid, pci_id
    from romlab.report import stop_dict
    from romtools.scan import scan

    names = check_inputs(args, one_input_only={"--extract": bool(args.extract)})
    several = len(names) > 1

    def one(data, source):
        found = scan(data)
        rows = []
        for f in found:
            imgs = f.walk.images
            rows.append({
                "offset": f.offset, "length": f.length, "images": len(imgs), "clean": f.walk.clean,
                "stop": stop_dict(f.walk),
                "ids": [{"id": pci_id(i.pcir.vendor_id, i.pcir.device_id), "code_type": hexid(i.pcir.code_type, 2)}
                        if i.pcir is not None else None for i in imgs],
            })
        written = []
        if args.extract:
            inputs = () if source == STDIN_NAME else (source,)
            if os.path.exists(args.extract) and not os.path.isdir(args.extract):
                raise UsageError(f"{args.extract} exists and is not a directory; give a directory for --extract")
            paths = [os.path.join(args.extract, f"rom-{f.offset:08x}.bin") for f in found]
            check_outputs(paths, inputs=inputs, overwrite=args.overwrite)
            try:
                os.makedirs(args.extract, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {args.extract}: {exc.strerror or exc}") from None
            for f, path in zip(found, paths):
                write_output(path, data[f.offset:f.offset + f.length], inputs=inputs, overwrite=args.overwrite)
                written.append(path)
        status = 1 if not found or not all(r["clean"] for r in rows) else 0
        if args.json:
            return status, document("romlab.scan/2", input=source, size=len(data), roms=rows, extracted=written)
        if not rows:
            print(f"romlab scan: {source}: no option ROM found in {len(data)} bytes", file=sys.stderr)
        prefix = f"{source}: " if several else ""
        for r, f in zip(rows, found):
            ids = ", ".join(f"{i['id']}/type 0x{i['code_type']}" if i else "non-PCI" for i in r["ids"])
            state = "walks cleanly" if r["clean"] else f"walk stopped: {r['stop']['message']}"
            print(f"{prefix}0x{r['offset']:08x}  {r['length']:8} bytes  {r['images']} image(s)  [{ids}]  {state}")
        for path in written:
            print(f"wrote {path}")
        return status, None

    return run_inputs(args, one, names=names, read_bounds={"limit": args.max_bytes, "what": "file to scan",
                                              "bound": "scan's bound (--max-bytes; raise it to read more)"})
