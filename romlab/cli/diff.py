"""``romlab diff``: what differs between two option ROMs or iPXE files, structure by structure."""
from __future__ import annotations

from romlab.cli._common import print_json

NAME = "diff"
HELP = "show what differs between two option ROMs (or iPXE files), structure by structure"
DESCRIPTION = HELP + """:
headers, IDs, device lists, checksums, and the iPXE payload's version, drivers and their IDs,
features and embedded scripts.
Exit status: 0 equal, 1 different, 2 unusable input."""

EXAMPLES = [
    ("romlab diff pxe-e1000.rom pxe-e1000e.rom", "what a retarget changed: IDs, checksums, build"),
    ("romlab diff --json pxe-e1000.rom efi-e1000.rom", "the romlab.diff/2 document"),
]

SCHEMA = "romlab.diff/2"


def add_arguments(p) -> None:
    p.add_argument("a", metavar="A", help="first ROM or iPXE file")
    p.add_argument("b", metavar="B", help="second ROM or iPXE file")
    p.add_argument("--json", action="store_true", help="print the romlab.diff/2 JSON document")


def _show(value) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, bool) or not isinstance(value, int):
        return repr(value) if isinstance(value, str) else str(value)
    return f"0x{value:x}" if value > 9 else str(value)


def run(args) -> int:
    from romtools.diff import diff
    from romtools.walker import read_input

    a, b = read_input(args.a), read_input(args.b)
    differences = diff(a, b)
    if args.json:
        print_json({"schema": SCHEMA, "inputs": [args.a, args.b], "equal": not differences,
                    "differences": [d.as_dict() for d in differences]})
    else:
        for d in differences:
            if isinstance(d.a, list) or isinstance(d.b, list):
                gone = [x for x in d.a or [] if x not in (d.b or [])]
                new = [x for x in d.b or [] if x not in (d.a or [])]
                parts = ([f"only in A: {', '.join(gone)}"] if gone else []) + ([f"only in B: {', '.join(new)}"] if new else [])
                print(f"{d.field}: " + ("; ".join(parts) or "same entries, another order"))
            elif isinstance(d.a, str) and isinstance(d.b, str) and "\n" in d.a + d.b:
                import difflib

                print(f"{d.field}:")
                for line in difflib.unified_diff(d.a.splitlines(), d.b.splitlines(), "A", "B", lineterm=""):
                    print(f"  {line}")
            else:
                print(f"{d.field}: {_show(d.a)} -> {_show(d.b)}")
        print(f"{args.a} and {args.b}: " + (f"{len(differences)} difference(s)" if differences else "equal"))
    return 1 if differences else 0
