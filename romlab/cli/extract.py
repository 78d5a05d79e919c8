"""``romlab extract``: one image, or the EFI driver inside it."""
from __future__ import annotations

from romlab.cli._common import add_overwrite_argument, print_json, write_output

NAME = "extract"
HELP = "write one image of a ROM, or with --efi-driver the PE driver of an EFI image"


def add_arguments(p) -> None:
    p.add_argument("file", help="ROM to read")
    p.add_argument("--image", type=int, required=True, help="image index")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--efi-driver", action="store_true",
                   help="write the image's PE/COFF driver (decompressed when compressed), checked with pefile")
    p.add_argument("--json", action="store_true", help="report as JSON")
    add_overwrite_argument(p)


def run(args) -> int:
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
    report = document("romlab.extract/2", input=args.file, image=args.image, output=args.output)
    if args.efi_driver:
        from romtools.extract import efi_driver

        out, info = efi_driver(data, img)
        report["driver"] = _driver_json(info.as_dict())
    else:
        out = data[img.offset:img.end]
    write_output(args.output, out, inputs=(args.file,), overwrite=args.overwrite)
    report["length"] = len(out)
    if args.json:
        print_json(report)
    else:
        line = f"wrote {len(out)} bytes to {args.output}"
        if args.efi_driver:
            d = report["driver"]
            line += (f": PE driver, machine 0x{d['machine']} ({d['machine_name']}), subsystem 0x{d['efi_subsystem']}"
                     + (", was EFI-compressed" if d["compressed"] else ""))
            if d["signed"]:
                line += "; signed: " + ", ".join(f"{c['type_name']} ({c['length']} bytes)" for c in d["certificates"])
            else:
                line += "; not signed (no certificate table)"
        print(line)
    return 0


def _driver_json(d: dict) -> dict:
    """The PE driver's report with its type codes spelled as identifiers (docs/conventions.md)."""
    from romlab.conventions import hexid

    return {"machine": hexid(d["machine"], 4), "machine_name": d["machine_name"],
            "efi_subsystem": hexid(d["subsystem"], 4), "size": d["size"], "compressed": d["compressed"],
            "signed": d["signed"],
            "certificates": [{**c, "type": hexid(c["type"], 4)} for c in d["certificates"]]}
