"""``romlab patch``: retarget and fix an option ROM, writing a new file.

What changed is shown field by field, old -> new (``romtools.changes``). A patch that changes
nothing writes nothing: no output file, and with --in-place no rewrite and no backup.
"""
from __future__ import annotations

from romlab.cli import terminal_safe
from romlab.cli._common import (
    add_edit_arguments,
    add_overwrite_argument,
    check_outputs,
    hex_id,
    print_changes,
    print_json,
    write_output,
)

NAME = "patch"
HELP = "change PCI IDs, device list, class, last-image flag, $PnP strings; fix checksums"

EXAMPLES = [
    ("romlab patch /usr/lib/ipxe/qemu/pxe-e1000.rom --device 10d3 --fix-checksums -o e1000e.rom",
     "retarget Debian's e1000 ROM to device 10d3 in e1000e.rom; the input is not changed"),
    ("romlab patch /usr/lib/ipxe/qemu/pxe-e1000.rom --device 10d3 --fix-checksums --dry-run",
     "each field it would change, old -> new; nothing written"),
    ("romlab patch rom.rom --in-place --device 10d3 --fix-checksums",
     "change your own ROM file itself, keeping rom.rom.bak (to try: cp /usr/lib/ipxe/qemu/pxe-e1000.rom rom.rom)"),
]


def add_arguments(p) -> None:
    p.add_argument("file", help="ROM to patch (never changed unless --in-place)")
    out = p.add_mutually_exclusive_group()  # one of them, unless --dry-run
    out.add_argument("-o", "--output", help="write the patched ROM here (not written when nothing changes)")
    out.add_argument("--in-place", action="store_true",
                     help="replace FILE, keeping FILE.bak (neither is written when nothing changes)")
    p.add_argument("--image", type=int, help="image to change (default: every PCI image)")
    p.add_argument("--vendor", type=hex_id(), help="PCIR vendor ID")
    p.add_argument("--device", type=hex_id(), help="PCIR device ID (also kept in a revision-3 device list)")
    p.add_argument("--add-device", type=hex_id(), action="append", default=[], metavar="ID",
                   help="add ID to the PCI 3.0 device list: into padding after the list or at the image's end, "
                        "or by appending a block to an image that ends within 64 KiB of its PCIR (the list "
                        "pointer is 16 bits); iPXE's ROMs have no such room, use --device there")
    p.add_argument("--remove-device", type=hex_id(), action="append", default=[], metavar="ID",
                   help="remove ID from the PCI 3.0 device list")
    p.add_argument("--class", dest="class_code", type=hex_id(24), help="class code, e.g. 020000")
    last = p.add_mutually_exclusive_group()
    last.add_argument("--last", action="store_true", help="set the last-image flag (needs --image on multi-image ROMs)")
    last.add_argument("--not-last", action="store_true", help="clear the last-image flag")
    p.add_argument("--pnp-manufacturer", metavar="TEXT", help="replace the $PnP manufacturer string")
    p.add_argument("--pnp-product", metavar="TEXT", help="replace the $PnP product string")
    p.add_argument("--fix-checksums", action="store_true",
                   help="fix every checksum: legacy image, $PnP, UNDI ROM ID, iPXE header, iPXE .efirom byte")
    p.add_argument("--checksum-byte", choices=("header", "last", "none"), default="header",
                   help="where the legacy image's checksum is adjusted: header byte 6 (default, as iPXE), the "
                        "image's last byte (as EfiRom), or nowhere")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    add_edit_arguments(p)
    add_overwrite_argument(p)


def run(args) -> int:
    import sys

    from hw.errors import UsageError
    from romtools.changes import rom_changes
    from romtools.checksums import fix_rom_checksums
    from romtools.patch import RomPatcher
    from romtools.walker import read_input, walk

    asked = args.fix_checksums or any(
        v not in (None, [], False) for v in (args.vendor, args.device, args.add_device, args.remove_device,
                                             args.class_code, args.last, args.not_last, args.pnp_manufacturer,
                                             args.pnp_product))
    if not asked:
        raise UsageError("nothing to change: give at least one of --vendor, --device, --add-device, --remove-device, "
                       "--class, --last, --not-last, --pnp-manufacturer, --pnp-product, --fix-checksums")
    if not (args.output or args.in_place or args.dry_run):
        raise UsageError("say where the patched ROM goes: -o OUT or --in-place (or --dry-run to only see the changes)")
    data = read_input(args.file)
    patcher = RomPatcher(data)
    targets = patcher.select(args.image)
    from romtools.ipxe import retarget_warnings

    drives = retarget_warnings(data, targets, args.vendor, args.device, args.add_device)
    for i in targets:
        if args.vendor is not None:
            patcher.set_vendor(i, args.vendor)
        if args.device is not None:
            patcher.set_device(i, args.device)
        for d in args.remove_device:  # first, so that the slots it frees can take the added IDs
            patcher.remove_device(i, d)
        for d in args.add_device:
            patcher.add_device(i, d)
        if args.class_code is not None:
            patcher.set_class(i, args.class_code)
        for which in ("manufacturer", "product"):
            text = getattr(args, f"pnp_{which}")
            if text is not None:
                patcher.set_pnp_string(i, which, text)
    if args.last or args.not_last:
        if args.image is None and len(patcher.images()) > 1:
            raise UsageError("--last/--not-last on a multi-image ROM needs --image N")
        for i in targets:
            patcher.set_last(i, args.last)
    buf = bytearray(patcher.result())
    notes = list(patcher.notes)
    warnings = list(drives)
    if args.fix_checksums:
        warnings += fix_rom_checksums(buf, args.checksum_byte)
    bad = [c for img in walk(bytes(buf)).images for c in img.checksums if c.complete and c.value]
    if bad:
        warnings.append("checksums now invalid: " + ", ".join(f"{c.name} at 0x{c.offset:x}" for c in bad)
                        + " (add --fix-checksums)")
    changes = rom_changes(data, bytes(buf))
    out = args.file if args.in_place else args.output
    if out is not None and not args.in_place:
        check_outputs([out], inputs=(args.file,), overwrite=args.overwrite,
                      instead="use --in-place, which keeps a backup")
    unchanged = bytes(buf) == data
    backup = None
    if not unchanged and not args.dry_run:
        backup = write_output(out, bytes(buf), inputs=(args.file,), in_place=args.in_place,
                              overwrite=args.overwrite, instead="use --in-place, which keeps a backup")
    written = not unchanged and not args.dry_run
    if args.json:
        print_json({"schema": "romlab.patch/2", "input": args.file, "output": out, "dry_run": args.dry_run,
                    "written": written, "backup": backup, "changes": [c.as_dict() for c in changes],
                    "notes": notes, "warnings": warnings})
    else:
        print_changes(changes)
        for n in notes:
            print(terminal_safe(f"note: {n}"), file=sys.stderr)
        for w in warnings:
            print(terminal_safe(f"warning: {w}"), file=sys.stderr)
        if unchanged:
            print(f"nothing to change: {args.file} already holds these values"
                  + ("; it was not rewritten" if args.in_place else f"; {out} not written" if out else ""))
        elif args.dry_run:
            would = f" (would write {out}" + (" and keep a backup)" if args.in_place else ")") if out else ""
            print("dry run: nothing written" + would)
        else:
            print(f"wrote {out}" + (f" (backup {backup})" if backup else ""))
    return 0
