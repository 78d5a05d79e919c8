"""``romlab disasm``: 16-bit disassembly of a legacy image's entry points, following the first jump."""
from __future__ import annotations

from romlab.cli._common import add_source_arguments, run_inputs
from romlab.conventions import document

NAME = "disasm"
HELP = "disassemble a legacy image's init, BCV/BDV/BEV or UNDI loader entry (16-bit x86)"
ENTRIES = ("init", "bcv", "bdv", "bev", "undi-loader")

EXAMPLES = [
    ("romlab disasm /usr/lib/ipxe/qemu/pxe-e1000.rom", "the init entry, following its first jump"),
    ("romlab disasm /usr/lib/ipxe/qemu/pxe-e1000.rom --entry bev --count 16", "16 instructions from the boot entry vector"),
]


def add_arguments(p) -> None:
    add_source_arguments(p)
    p.add_argument("--image", type=int, default=0, help="image index (default 0)")
    p.add_argument("--entry", choices=ENTRIES, default="init", help="entry point (default init)")
    p.add_argument("--count", type=int, default=32, help="instructions to show (default 32)")
    p.add_argument("--json", action="store_true", help="print the romlab.disasm/2 JSON document")


def run(args) -> int:
    from hw.errors import UsageError
    from romtools.disasm import disassemble_entry
    from romtools.walker import walk

    if args.count < 1:   # a usage error, said once, not once per input
        raise UsageError("--count must be a positive number of instructions")

    def one(data, source):
        listing = disassemble_entry(walk(data), data, args.image, args.entry, args.count)
        if args.json:
            return 0, document("romlab.disasm/2", input=source, **listing.as_dict())
        print(f"{source}: image {args.image}, entry {args.entry} at 0x{listing.start:05x}"
              + (f", jump followed 0x{listing.followed[0]:05x} -> 0x{listing.followed[1]:05x}"
                 if listing.followed else ""))
        for ins in listing.instructions:
            print(f"  {ins.offset:05x}:  {ins.raw.hex(' '):24} {ins.mnemonic:8} {ins.op_str}")
        return 0, None

    return run_inputs(args, one, blocks=True)
