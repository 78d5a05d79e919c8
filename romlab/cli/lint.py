"""``romlab lint``: judge an option ROM by what PciBusDxe, Linux and iPXE accept."""
from __future__ import annotations

from romlab.cli._common import add_source_arguments, print_json, run_inputs
from romlab.conventions import document

NAME = "lint"
HELP = "check an option ROM against the rules UEFI, Linux and iPXE apply"
DESCRIPTION = HELP + """.
Exit status: 0 no errors (warnings fail only with --strict), 1 at least one error, 2 unusable input."""

EXAMPLES = [
    ("romlab lint /usr/lib/ipxe/qemu/pxe-e1000.rom", "check one ROM; exit status 1 on an error"),
    ("romlab lint /usr/lib/ipxe/qemu/*.rom", "every ROM Debian ships for QEMU: a result per file, the worst status"),
    ("romlab lint --strict --json /usr/lib/ipxe/qemu/efi-e1000.rom", "warnings fail too; the findings as JSON"),
    ("romlab lint --rules", "every rule, its severity and where it comes from"),
]


def add_arguments(p) -> None:
    add_source_arguments(p)
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--json", action="store_true", help="print findings as the romlab.lint/2 JSON document")
    p.add_argument("--rules", action="store_true", help="list every rule and exit (with --json: the romlab.lint-rules/2 document)")


def run(args) -> int:
    from hw.errors import UsageError
    from romlab.report import LINT_SCHEMA
    from romtools.lint import RULES, exit_status, lint
    from romtools.walker import walk

    if args.rules:
        if args.files or args.pci:
            raise UsageError("--rules lists the rules and reads no ROM; give it no FILE or --pci")
        if args.json:
            print_json(document("romlab.lint-rules/2", rules=[
                {"rule": r.id, "severity": r.severity, "origin": r.source, "summary": r.summary}
                for r in RULES.values()]))
            return 0
        for r in RULES.values():
            print(f"{r.id:28} {r.severity:8} {r.source:24} {r.summary}")
        return 0

    def one(data, source):
        findings = lint(walk(data), data)
        status = exit_status(findings, args.strict)
        if args.json:
            return status, document(LINT_SCHEMA, input=source, strict=args.strict, exit=status,
                                    findings=[f.as_dict() for f in findings])
        for f in findings:
            print(f"{source}:0x{f.offset:05x}: {f.severity}: [{f.rule}] {f.message}")
        counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
        print(f"{source}: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
        return status, None

    return run_inputs(args, one)
