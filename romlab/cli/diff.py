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
    ("romlab diff /usr/lib/ipxe/qemu/pxe-e1000.rom /usr/lib/ipxe/qemu/pxe-e1000e.rom", "what a retarget changed: IDs, checksums, build"),
    ("romlab diff --json /usr/lib/ipxe/qemu/pxe-e1000.rom /usr/lib/ipxe/qemu/efi-e1000.rom", "the romlab.diff/3 document"),
]

SCHEMA = "romlab.diff/3"


def add_arguments(p) -> None:
    p.add_argument("a", metavar="A", help="first ROM or iPXE file; - reads standard input")
    p.add_argument("b", metavar="B", help="second ROM or iPXE file; - reads standard input")
    p.add_argument("--json", action="store_true", help="print the romlab.diff/3 JSON document")


def _entries(items: list[str]) -> str:
    """Entries with how many times each is there, when more than once."""
    counts: dict[str, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return ", ".join(x if n == 1 else f"{x} (x{n})" for x, n in counts.items())


def run(args) -> int:
    from types import SimpleNamespace

    from romlab.cli._common import check_inputs, read_file_input
    from romtools.changes import show
    from romtools.diff import diff, only_in

    check_inputs(SimpleNamespace(files=[args.a, args.b], command="diff"))
    (a, name_a), (b, name_b) = read_file_input(args.a), read_file_input(args.b)
    differences = diff(a, b)
    if args.json:
        print_json({"schema": SCHEMA, "inputs": [name_a, name_b], "equal": not differences,
                    "differences": [d.as_dict() for d in differences]})
    else:
        for d in differences:
            if isinstance(d.a, list) and isinstance(d.b, list):
                gone, new = only_in(d.a, d.b), only_in(d.b, d.a)
                parts = ([f"only in A: {_entries(gone)}"] if gone else []) + ([f"only in B: {_entries(new)}"] if new else [])
                print(f"{d.field}: " + ("; ".join(parts) or "same entries, another order"))
            elif isinstance(d.a, str) and isinstance(d.b, str) and "\n" in d.a + d.b:
                import difflib

                print(f"{d.field}:")
                for line in difflib.unified_diff(d.a.splitlines(), d.b.splitlines(), "A", "B", lineterm=""):
                    print(f"  {line}")
            else:
                print(f"{d.field}: {show(d.a)} -> {show(d.b)}")
        print(f"{name_a} and {name_b}: " + (f"{len(differences)} difference(s)" if differences else "equal"))
    return 1 if differences else 0
