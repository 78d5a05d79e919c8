"""``romlab inspect``: every image, header, checksum and entry point of an expansion ROM, and its iPXE payload."""
from __future__ import annotations

from romlab.cli._common import add_source_arguments, run_inputs

NAME = "inspect"
HELP = "show every image, header, checksum and entry point of an option ROM, and what its iPXE payload holds"
DESCRIPTION = HELP + """.
Also reads iPXE's .pxe, .kpxe, .lkrn and .efi files.
Exit status: 0 a readable ROM with nothing wrong, 1 the walk stopped on a problem or the iPXE
payload is broken (all that was found is still shown), 2 unusable input."""

EXAMPLES = [
    ("romlab inspect /usr/lib/ipxe/qemu/efi-e1000.rom", "every image of Debian's e1000 ROM, legacy and EFI"),
    ("romlab inspect --json /usr/lib/ipxe/qemu/efi-e1000.rom", "the same as the romlab.inspect/4 JSON document"),
    ("romlab inspect --drivers /usr/lib/ipxe/qemu/pxe-e1000.rom", "every vendor:device the ROM's iPXE drives"),
    ("romlab inspect /usr/lib/ipxe/undionly.kpxe", "an iPXE boot file: version, drivers, features"),
    ("romlab inspect --pci 03:00.0", "the ROM of a card in this machine (root)"),
    ("romlab inspect - < /usr/lib/ipxe/qemu/pxe-e1000.rom", "a ROM from standard input"),
]


def add_arguments(p) -> None:
    add_source_arguments(p)
    p.add_argument("--json", action="store_true", help="print the romlab.inspect/4 JSON document (docs/inspect-json.md)")
    p.add_argument("--no-names", action="store_true", help="do not look names up in pci.ids")
    p.add_argument("--drivers", action="store_true",
                   help="list every vendor:device the iPXE payload's PCI drivers claim (with --json: "
                        "romlab.inspect-drivers/1)")


def run(args) -> int:
    import sys

    from hw.errors import FormatError, NotAnOptionRom
    from romlab.report import DRIVERS_SCHEMA, drivers_rows, inspect_dict, render_text
    from romtools import ipxe
    from romtools.pciids import default as pciids
    from romtools.walker import walk

    names = None if args.no_names else pciids()

    def one(data, source):
        try:
            w = walk(data)
        except NotAnOptionRom as not_rom:
            return _show_file(args, source, data, ipxe.as_file(data, not_rom), names)
        payloads, errors = {}, []
        budget = ipxe.Budget()  # one for the whole input
        for img in w.images:
            try:
                payload = ipxe.for_image(data, w, img, budget)
            except FormatError as exc:
                payloads[img.index] = (None, str(exc))
                errors.append(f"image {img.index}: {exc}")
                continue
            if payload is not None:
                payloads[img.index] = (payload, None)
        doc = None
        if args.drivers:
            rows = [r for i, (p, _) in payloads.items() if p is not None for r in drivers_rows(i, p, names)]
            if args.json:
                doc = {"schema": DRIVERS_SCHEMA, "input": source, "ids": rows, "errors": errors}
            else:
                _print_rows(source, rows, payloads)
        elif args.json:
            doc = inspect_dict(w, source, names, list(w.findings), payloads)
        else:
            print(render_text(w, source, names, list(w.findings), payloads))
        if errors:
            from romlab.cli import terminal_safe

            sys.stdout.flush()
            print(terminal_safe(f"romlab inspect: error: {source}: {errors[0]}"), file=sys.stderr)
            return 1, doc
        return (1 if w.stop.problem else 0), doc

    return run_inputs(args, one, blocks=True)


def _print_rows(source, rows, payloads) -> None:
    if not any(p is not None for p, _ in payloads.values()):
        if not payloads:  # (a payload that cannot be read is said on stderr, once)
            print(f"{source}: no iPXE payload, so no PCI driver table to list")
        return
    for r in rows:
        where = "" if r["image"] is None else f"image {r['image']}  "
        pci = " / ".join(n for n in (r["vendor_name"], r["device_name"]) if n)
        print(f"{where}driver {r['driver']}  {r['id']}  {r['name'] or '-':<16} {pci}".rstrip())
    print(f"{source}: {len(rows)} vendor:device IDs")


def _show_file(args, source, data, payload, names):
    from romlab.report import DRIVERS_SCHEMA, drivers_rows, file_dict, render_payload

    if args.drivers:
        rows = drivers_rows(None, payload, names)
        if args.json:
            return 0, {"schema": DRIVERS_SCHEMA, "input": source, "ids": rows, "errors": []}
        _print_rows(source, rows, {None: (payload, None)})
    elif args.json:
        return 0, file_dict(source, len(data), payload)
    else:
        print(f"{source}: {len(data)} bytes, an iPXE file, not an option ROM")
        print("\n".join(render_payload(payload)))
    return 0, None
