"""``romlab restore``: write a backup made by ``romlab flash`` back to its chip."""
from __future__ import annotations

NAME = "restore"
HELP = "write a flash backup back, after checking it belongs to the chip"
DESCRIPTION = """\
Write BACKUP (a .bin with its .json record from `romlab flash`) back through --programmer, or
in-system to the Intel NIC at --pci BDF (as root).
The backup's sha256 must match its record, and the chip found must have the record's JEDEC ID and
size. What the chip holds now is saved as a new backup first; then only differing blocks are
erased and programmed, and the whole chip is verified."""

EXAMPLES = [
    ("romlab restore ~/.local/share/romlab/backups/20260101T120000Z-ef3013-1a2b3c4d.bin --pci 03:00.0 --unbind",
     "put a backup back on the card it came from"),
    ("romlab restore backup.bin --programmer serprog:tcp=127.0.0.1:4242 --dry-run", "what would change, through a programmer"),
]


def add_arguments(p):
    p.add_argument("backup", help="backup file (.bin or .json)")
    from romlab.cli._common import add_flash_target_arguments

    add_flash_target_arguments(p)
    p.add_argument("--chip", metavar="NAME", help="chip name for file: images that are not a default size")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr (as -q, which also "
                   "drops other remarks)")


def run(args) -> int:
    from hw.errors import UsageError
    from romlab.cli._common import open_programmer, print_json
    from romlab.conventions import document
    from romtools.flash import backup as backupmod
    from romtools.flash import session, writer

    data, record = backupmod.load(args.backup)
    from romlab.cli import quiet

    progress = session.Progress(False if args.no_progress or args.json or quiet() else None)
    if args.pci:
        if args.dry_run:
            pci, why = session.open_for_dry_run(args.pci, args.via, args.unbind)
            if pci is None:
                result = document("romlab.restore/1", input=str(args.backup), target=f"pci:{args.pci}",
                                  dry_run=True, changed=False, changes="unknown", reason=why)
                print_json(result) if args.json else print(f"romlab restore: {args.pci}: {why}")
                return 0
        else:
            pci = session.PciSession(args.pci, via=args.via, unbind=args.unbind)
        prog, nor, key = pci.prog, pci.nor, pci.spec
        if record.get("card_pci_ids") not in (None, pci.ids):
            prog.close()
            raise UsageError(f"the backup was taken from a {record['card_pci_ids']} card; {pci.bdf} is "
                           f"a {pci.ids}")
    else:
        prog, nor = session.open_chip(open_programmer(args.programmer, args.chip))
        key = args.programmer
    with prog:
        chip = nor.chip
        if record.get("jedec") != chip.jedec_hex or record.get("size") != chip.size:
            raise UsageError(f"the backup is of a {record.get('chip')} (JEDEC {record.get('jedec')}, "
                           f"{record.get('size')} bytes); the programmer reaches a {chip.name} "
                           f"(JEDEC {chip.jedec_hex}, {chip.size} bytes)")
        current = session.read_stable(nor, progress)
        # A restore supersedes an unfinished write to this chip: its journal goes once the chip is back.
        superseded, _ = backupmod.pending_for(chip.jedec_hex, chip.size, current, chip.sector_size)
        pl = writer.plan(nor, current, data)
        result = document("romlab.restore/1", input=str(args.backup), target=key, chip=chip.name,
                          jedec=chip.jedec_hex, erase_bytes=pl.erase_bytes, program_bytes=pl.program_bytes)
        if not pl.changes and superseded is not None and not args.dry_run:
            superseded.finish()
        if args.dry_run or not pl.changes:
            result["changed"] = False
            msg = ("no change needed: the chip already holds the backup" if not pl.changes else
                   f"would erase {pl.erase_bytes} bytes and program {pl.program_bytes} bytes")
            print_json(result) if args.json else print(msg)
            return 0
        before = backupmod.save(current, {"target": prog.describe(), "programmer": key,
                                          "chip": chip.name, "jedec": chip.jedec_hex,
                                          "before_restoring": record.get("file")})
        header = {"chip": chip.name, "jedec": chip.jedec_hex, "size": chip.size,
                  "target_sha256": session.sha256(data), "backup": str(before), "layout": "restore",
                  "region": [0, chip.size]}
        journal = backupmod.Journal.new(chip.jedec_hex)
        try:
            stats = session.apply(nor, current, data, journal, header, progress)
        except writer.WriteError as exc:
            # The journal stays: the chip is half restored, and a plain flash must not back that up.
            raise writer.WriteError(f"{exc}; the flash is now partly written: run this restore again "
                                    f"(what it held before is in {before})", state="partial") from None
        if superseded is not None:
            superseded.finish()
        result.update(changed=True, verified=True, previous_contents=str(before),
                      erased=stats["erased"], programmed=stats["programmed"])
        print_json(result) if args.json else print(
              f"restored {args.backup} to {chip.name}: erased {stats['erased']} bytes, programmed "
              f"{stats['programmed']} bytes, verified (previous contents saved as {before})")
        return 0
