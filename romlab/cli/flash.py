"""``romlab flash``: write an option ROM to a NIC's SPI flash, in-system or through a programmer."""
from __future__ import annotations

NAME = "flash"
HELP = "write an option ROM to a NIC's SPI flash, in-system or through a programmer (backup, minimal erase, verify)"
DESCRIPTION = """\
Write ROM into the SPI NOR flash of an Intel NIC in this machine (--pci BDF, as root) or of a chip
reached through --programmer SPEC.

programmers (--programmer):
  serprog:tcp=HOST:PORT      a serprog programmer over TCP (or `romlab serprog-emu`)
  serprog:dev=PATH[,baud=N]  a serprog programmer on a serial port
  file:PATH                  a flash image file, handled as a chip of its size
  ch341a                     a CH341A USB programmer (1a86:5512; mind its 5 V data lines)

modes (default: write ROM):
  --read OUT     read the whole chip into OUT
  --backup       read the whole chip and save it as a backup (with its record), write nothing
  --verify-only  compare the chip with ROM, change nothing
  --dry-run      show chip, layout, blocks to erase and bytes to write, change nothing
  --resume       finish an interrupted write from its journal

layouts (--layout; without it romlab decides only for a blank chip or one holding an option ROM
at 0, and refuses when it finds an Intel NVM):
  rom-at-0  the ROM from offset 0 (82574L-class cards)
  i210      the ROM from 0x2000, after the NVM
  FILE      a flashrom-style layout file with a region named rom

In-system (--pci) romlab drives the flash through the NIC's own registers (flashrom's
nicintel_spi: 8254x, 8257x/82583, 82599, I210), never writes the I210's NVM, and refuses a ROM
whose PCIR vendor/device IDs are not the card's (--force-ids). A bound driver (e1000e, e1000)
keeps the kernel from mapping BAR 0: add --unbind, or use --via vfio. For other NICs it says which
programmer to use instead. See docs/flashing.md.

Before anything is erased the whole chip is read (every piece twice, compared) and saved as a
backup in $ROMLAB_BACKUP_DIR (default ~/.local/share/romlab/backups) with a JSON record;
`romlab restore BACKUP` writes one back. Only blocks that differ are erased and programmed, each
is read back, then the whole chip is verified.

exit status:
  0  done (or nothing to change)
  1  --verify-only found differences
  2  nothing was changed (unusable input, no chip, unreliable reads)
  3  the flash was left partly written (the message names the backup)"""

EXAMPLES = [
    ("romlab flash --programmer serprog:tcp=127.0.0.1:4242 new.rom",
     "write through a serprog programmer (`romlab serprog-emu` for a rehearsal)"),
    ("romlab flash --pci 03:00.0 --unbind --dry-run new.rom", "what an in-system write would erase and program"),
    ("romlab flash --programmer ch341a --read chip.bin", "read the whole chip into chip.bin"),
]


def add_arguments(p):
    p.add_argument("rom", nargs="?", help="option ROM file to write (not needed with --read)")
    from romlab.cli._common import add_flash_target_arguments

    add_flash_target_arguments(p)
    p.add_argument("--force-ids", action="store_true",
                   help="with --pci: write a ROM whose PCIR IDs are not the card's")
    p.add_argument("--chip", metavar="NAME", help="chip name for file: images that are not a default size")
    p.add_argument("--layout", metavar="rom-at-0|i210|FILE", help="where the ROM goes on the flash")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--read", metavar="OUT", help="only read the whole chip into OUT")
    mode.add_argument("--backup", action="store_true",
                      help="only read the whole chip and save it as a backup that `romlab restore` takes")
    mode.add_argument("--verify-only", action="store_true", help="compare the chip with ROM, change nothing")
    mode.add_argument("--dry-run", action="store_true",
                      help="show chip, layout, blocks to erase and bytes to write; change nothing (never unbinds a "
                      "driver: with --pci, a chip the driver keeps from romlab is reported unknown)")
    mode.add_argument("--resume", action="store_true", help="finish an interrupted write from its journal")
    p.add_argument("--force", action="store_true",
                   help="write at 0 over an Intel NVM, or a ROM whose checksum is wrong")
    p.add_argument("--expect-sha256", metavar="HASH",
                   help="write only if the whole chip, as read before writing, has this sha256 (e.g. that of a "
                        "backup copied off the machine); otherwise write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr (as -q, which also "
                   "drops other remarks)")


def _report(args, result: dict, lines: list[str]) -> None:
    from romlab.cli._common import print_json
    if args.json:
        print_json(result)
    else:
        for line in lines:
            print(line)


def _rom_ids(data: bytes) -> str | None:
    """The PCI IDs of the option ROM at the start of a chip image, for a backup's record (None if none)."""
    from hw.errors import RomlabError
    from romtools.flash import image

    if data[:2] != b"\x55\xaa":
        return None
    try:
        return image.check_option_rom(data, "flash").pci_ids
    except RomlabError:
        return None


def _refuse_pending(chip, current: bytes, backupmod, doing: str, found=None) -> None:
    """Refuse to go on over a chip that holds an unfinished write (its journal matches what the chip
    holds), naming the backup taken before that write; or when a journal could not be checked."""
    from hw.errors import FlashError, UsageError

    journal, unchecked = found or backupmod.pending_for(chip.jedec_hex, chip.size, current, chip.sector_size)
    if journal is not None:
        header, _ = journal.read()
        raise UsageError(f"an interrupted write to this {chip.name} is pending ({journal.path}), so the chip is "
                         f"partly written and romlab will not {doing}: its original is the backup "
                         f"{header['backup']}; put it back with `romlab restore {header['backup']}`, or finish "
                         "the write with `romlab flash --resume` and the same ROM")
    if unchecked:
        raise FlashError(f"a write journal could not be checked against this chip ({unchecked[0]}); it "
                         "may be this chip's unfinished write: restore that write's backup, or remove the "
                         "journal if it is not this chip's, and run again")


def run(args) -> int:
    from pathlib import Path

    from hw.errors import FlashError, UsageError
    from romlab.cli import detail, quiet
    from romlab.cli._common import check_outputs, open_programmer, write_output
    from romlab.conventions import device_input, document, hexid, pci_id
    from romtools.flash import backup as backupmod
    from romtools.flash import image, session, writer
    from romtools.walker import read_input

    progress = session.Progress(False if args.no_progress or args.json or quiet() else None)
    if args.force_ids and not args.pci:
        raise UsageError("--force-ids goes with --pci (only an in-system target has PCI IDs to compare)")

    def warn(msg: str) -> None:
        import sys
        print(f"romlab flash: warning: {msg}", file=sys.stderr)

    def open_target():
        """(programmer, SPI NOR, PciSession or None)."""
        if args.pci:
            pci = session.PciSession(args.pci, via=args.via, warn=None if args.json else warn, unbind=args.unbind)
            return pci.prog, pci.nor, pci
        prog, nor = session.open_chip(open_programmer(args.programmer, args.chip))
        return prog, nor, None

    if args.read:
        if args.rom:
            raise UsageError("--read takes no ROM argument")
        check_outputs([args.read], overwrite=args.force, flag="--force")
        prog, nor, _ = open_target()
        with prog:
            data = session.read_stable(nor, progress)
        write_output(args.read, data, overwrite=args.force, flag="--force")
        target = device_input(args.pci) if args.pci else args.programmer
        _report(args, document("romlab.flash/1", input=target, target=target, chip=nor.chip.name,
                               jedec=nor.chip.jedec_hex, size=len(data), sha256=session.sha256(data),
                               output=args.read),
                [f"chip: {nor.chip.vendor} {nor.chip.name} ({len(data) // 1024} KiB, JEDEC {nor.chip.jedec_hex})",
                 f"read {len(data)} bytes into {args.read} (sha256 {session.sha256(data)})"])
        return 0

    if args.backup:
        # A backup on its own, before any write is decided (a fleet copies it off the machine first).
        if args.rom:
            raise UsageError("--backup takes no ROM argument")
        prog, nor, pci = open_target()
        with prog:
            data = session.read_stable(nor, progress)
        chip = nor.chip
        # A half-written chip is no backup: the one to keep is the journal's, taken before that write.
        _refuse_pending(chip, data, backupmod, "back it up")
        path = backupmod.save(data, {"target": prog.describe(), "programmer": pci.spec if pci else args.programmer,
                                     "chip": chip.name, "jedec": chip.jedec_hex,
                                     "pci_ids_in_backup": _rom_ids(data),
                                     **({"pci": pci.bdf, "card_pci_ids": pci.ids} if pci else {})})
        target = device_input(args.pci) if args.pci else args.programmer
        _report(args, document("romlab.flash/1", input=target, target=target, chip=chip.name,
                               jedec=chip.jedec_hex, size=len(data), sha256=session.sha256(data),
                               backup=str(path)),
                [f"chip: {chip.vendor} {chip.name} ({len(data) // 1024} KiB, JEDEC {chip.jedec_hex})",
                 f"backup: {path} (sha256 {session.sha256(data)})"])
        return 0

    if not args.rom:
        raise UsageError("give the ROM file to write (or --read OUT, or --backup)")
    expect = (args.expect_sha256 or "").strip().lower()
    if args.expect_sha256 is not None and (len(expect) != 64 or set(expect) - set("0123456789abcdef")):
        raise UsageError(f"--expect-sha256 {args.expect_sha256!r} is not a sha256 (64 hex digits)")
    rom = read_input(args.rom)
    info = image.check_option_rom(rom, args.rom)
    if sum(rom[:info.length]) & 0xFF and not args.force:
        raise UsageError(f"{args.rom}: the ROM's 8-bit checksum is not 0, so a BIOS would skip it "
                       "(fix it, or --force)")

    key = args.programmer
    if args.pci:
        from hw.pci import PciDevice
        card = PciDevice.open(args.pci)
        session.require_flash_part(card)
        key = f"pci:{card.bdf}"
        if not args.force_ids:
            # Checked before the card is touched: the IDs are those sysfs shows.
            image.check_target_ids(rom[:info.length], card.vendor_id, card.device_id, args.rom)
    if args.pci and args.dry_run:
        pci, why = session.open_for_dry_run(args.pci, args.via, args.unbind, None if args.json else warn)
        if pci is None:
            _report(args, document("romlab.flash/1", input=args.rom, target=f"pci:{card.bdf}", bdf=str(card.bdf),
                                   card_id=card.ids, driver=card.driver, dry_run=True, changes="unknown",
                                   reason=why), [f"romlab flash: {card.bdf}: {why}"])
            return 0
        prog, nor = pci.prog, pci.nor
    else:
        prog, nor, pci = open_target()
    with prog:
        chip = nor.chip
        chip_line = f"chip: {chip.vendor} {chip.name} ({chip.size // 1024} KiB, JEDEC {chip.jedec_hex})"
        if len(rom) > chip.size:
            raise UsageError(f"{args.rom} is {len(rom)} bytes; the {chip.name} holds only {chip.size}")
        detail(f"romlab flash: {chip_line} through {prog.describe()}; reading it twice for the backup")
        current = session.read_stable(nor, progress)
        if expect and session.sha256(current) != expect:
            # Checked before anything is written: the backup held elsewhere must be what this chip holds.
            raise FlashError(f"the {chip.name} holds sha256 {session.sha256(current)}, not the expected {expect} "
                             "(--expect-sha256); it changed since that backup was taken: nothing was written, back "
                             "it up again")
        # A journal belongs to the chip: found by what the chip holds, not by how it is reached.
        journal, unchecked = backupmod.pending_for(chip.jedec_hex, chip.size, current, chip.sector_size)
        if args.resume:
            if journal is None:
                bad = (f"; {len(unchecked)} journal(s) could not be read ({unchecked[0]})" if unchecked else "")
                raise UsageError(f"no interrupted write matches this {chip.name}: every sector would have to hold "
                               f"either its backup or the new image{bad}; flash without --resume")
            header, done = journal.read()
            original, _ = backupmod.load(header["backup"])
            resumed_blocks = len(done)
            layout = image.Layout(header["layout"], header["region"][0], header["region"][1])
            target = image.build_target(original, layout, rom)
            if session.sha256(target) != header["target_sha256"]:
                raise UsageError("this ROM and layout are not what the interrupted write was writing "
                               f"(journal {journal.path})")
            backup_path = header["backup"]
        else:
            if not args.verify_only:
                # A dry run refuses too: what it would report is a plan over a half-written chip.
                _refuse_pending(chip, current, backupmod, "write it", (journal, unchecked))
            if pci is not None:
                layout = pci.layout(args.layout, current, force=args.force)
            else:
                layout = image.choose_layout(args.layout, current, force=args.force)
            target = image.build_target(current, layout, rom)
            backup_path = None

        pl = writer.plan(nor, current, target)
        detail(f"romlab flash: layout {layout.name}, ROM region 0x{layout.start:06x}-0x{layout.end - 1:06x}; "
               f"{len(pl.steps)} block(s) differ, {pl.unchanged_sectors} sector(s) already right")
        result = document("romlab.flash/1", input=args.rom, target=pci.spec if pci else args.programmer,
                          chip=chip.name, jedec=chip.jedec_hex, size=chip.size, programmer=prog.describe(),
                          rom_id=pci_id(info.vendor, info.device),
                          **({"bdf": pci.bdf, "card_id": pci.ids, "family": pci.family.key} if pci else {}),
                          rom_bytes=len(rom), layout={"name": layout.name, "start": layout.start, "end": layout.end},
                          erase_blocks=[{"start": s.start, "size": s.size, "opcode": hexid(s.erase_op, 2)}
                                        for s in pl.steps if s.erase_op is not None],
                          erase_bytes=pl.erase_bytes, program_bytes=pl.program_bytes,
                          unchanged_sectors=pl.unchanged_sectors)
        lines = ([f"card: {pci.bdf} {pci.ids} ({pci.family.name}), ROM region from "
                  f"0x{pci.family.rom_start:x}"] if pci else []) + [chip_line,
                 f"rom: {args.rom} ({len(rom)} bytes, PCI {info.pci_ids}, {info.images} image(s))",
                 f"layout: {layout.name}, ROM region 0x{layout.start:06x}-0x{layout.end - 1:06x}, "
                 f"{layout.size - len(rom)} bytes of 0xFF padding"]

        if args.verify_only:
            same = current == target
            result["matches"] = same
            lines.append("flash matches the ROM" if same else
                         f"flash differs: {len(pl.steps)} block(s) would change")
            _report(args, result, lines)
            return 0 if same else 1

        if args.dry_run:
            result["dry_run"] = True
            erases = [s for s in pl.steps if s.erase_op is not None]
            if not pl.changes:
                lines.append("no change needed: the flash already holds this image")
            else:
                lines.append(f"would erase {len(erases)} block(s), {pl.erase_bytes} bytes"
                             + (":" if erases else ""))
                for s in erases:
                    lines.append(f"  0x{s.start:06x}-0x{s.start + s.size - 1:06x} "
                                 f"({s.size // 1024} KiB, opcode 0x{s.erase_op:02x})")
                lines.append(f"would program {pl.program_bytes} bytes "
                             f"({pl.unchanged_sectors} sector(s) already right)")
            _report(args, result, lines)
            return 0

        if not pl.changes and not args.resume:
            # Nothing to write, so nothing to back up: the chip already is what a backup would restore.
            result.update(changed=False, backup=None)
            lines.append("no change needed: the flash already holds this image; nothing written, no backup saved")
            _report(args, result, lines)
            return 0

        if backup_path is None:
            found = _rom_ids(current)
            backup_path = str(backupmod.save(current, {
                "target": prog.describe(), "programmer": key, "chip": chip.name,
                **({"pci": pci.bdf, "card_pci_ids": pci.ids} if pci else {}),
                "jedec": chip.jedec_hex, "pci_ids_in_backup": found,
                "writing": {"rom": str(Path(args.rom).resolve()), "rom_sha256": session.sha256(rom),
                            "pci_ids": info.pci_ids}}))
        result["backup"] = backup_path
        lines.append(f"backup: {backup_path}")

        if not pl.changes:
            result["changed"] = False
            lines.append("no change needed: the flash already holds this image")
            if args.resume:
                journal.finish()        # the interrupted write had in fact ended
                lines.append(f"journal {journal.path.name} removed: nothing was left to write")
            _report(args, result, lines)
            return 0

        for s in pl.steps:
            detail(f"romlab flash: block 0x{s.start:06x}-0x{s.start + s.size - 1:06x}: "
                   + (f"erase (opcode 0x{s.erase_op:02x}), " if s.erase_op is not None else "no erase, ")
                   + "program, read back")
        if not args.resume:
            journal = backupmod.Journal.new(chip.jedec_hex)
        header = {"chip": chip.name, "jedec": chip.jedec_hex, "size": chip.size,
                  "target_sha256": session.sha256(target), "backup": backup_path,
                  "layout": layout.name, "region": [layout.start, layout.end],
                  "rom_sha256": session.sha256(rom)}
        try:
            stats = session.apply(nor, current, target, journal, header, progress, resume=args.resume)
        except writer.WriteError as exc:
            how = f"--pci {pci.bdf}" if pci else f"--programmer {args.programmer}"
            raise writer.WriteError(f"{exc}; the flash is now partly written: run the same command with "
                                    f"--resume, or `romlab restore {backup_path} {how}`", state="partial") from None
        if args.resume:
            result["blocks_done_before_resume"] = resumed_blocks
        result.update(changed=True, verified=True, retries=stats["retries"],
                      erased=stats["erased"], programmed=stats["programmed"])
        lines.append(f"erased {stats['erased']} bytes, programmed {stats['programmed']} bytes"
                     + (f", {stats['retries']} block(s) retried" if stats["retries"] else ""))
        lines.append("verified: the flash holds the ROM" + (" (resumed)" if args.resume else ""))
        _report(args, result, lines)
        return 0
