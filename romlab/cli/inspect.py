"""``romlab inspect``: every image, header, checksum and entry point of an expansion ROM."""
from __future__ import annotations

from romlab.cli._common import add_source_arguments, run_inputs

NAME = "inspect"
HELP = "show every image, header, checksum and entry point of an option ROM"
DESCRIPTION = (HELP + ". Exit status: 0 a readable ROM with nothing wrong, 1 the walk stopped on a problem "
               "(all that was found is still shown), 2 unusable input.")


def add_arguments(p) -> None:
    add_source_arguments(p)
    p.add_argument("--json", action="store_true", help="print the romlab.inspect/2 JSON document (docs/inspect-json.md)")
    p.add_argument("--no-names", action="store_true", help="do not look names up in pci.ids")


def run(args) -> int:
    from romlab.report import inspect_dict, render_text
    from romtools.pciids import default as pciids
    from romtools.walker import walk

    names = None if args.no_names else pciids()

    def one(data, source):
        w = walk(data)
        findings = [f for f in w.findings]
        if args.json:
            return 1 if w.stop.problem else 0, inspect_dict(w, source, names, findings)
        print(render_text(w, source, names, findings))
        return 1 if w.stop.problem else 0, None

    return run_inputs(args, one, blocks=True)
