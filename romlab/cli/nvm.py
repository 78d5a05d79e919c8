"""``romlab nvm``: an Intel NIC's NVM words: show them, fix the checksum, change words."""
from __future__ import annotations

NAME = "nvm"
HELP = "show or edit an Intel NIC's NVM words (MAC, PXE words, 0xBABA checksum)"
# The actions, one line each: the description lists them, and a bare `romlab nvm` too.
ACTIONS = {
    "show": "MAC, checksum, device IDs, the boot-agent words 0x30-0x33, words 0x00-0x3f",
    "fix-checksum": "rewrite word 0x3f so that words 0x00-0x3f sum to 0xBABA",
    "set": "WORD=VALUE ...: change words (the checksum is rewritten when 0x00-0x3e change)",
}
DESCRIPTION = """\
Read the NVM words of an Intel NIC through its EERD register, in this machine (--pci BDF, as root;
a driver such as e1000e holds BAR 0, so add --unbind or use --via vfio) or on a NIC that QEMU
emulates (--qemu DEVICE, e.g. e1000,mac=52:54:00:12:34:56; no guest OS is booted, a small relay
program reaches the registers).

actions:
""" + "\n".join(f"  {name:<13} {what}" for name, what in ACTIONS.items()) + """

With --dry-run the words that would change are shown and nothing is written. Writes work on the
I210 (EEWR into the shadow RAM, then a flash update) and the 82580 (its SPI EEPROM); on other
controllers romlab points to `ethtool -E`. Every write is preceded by a backup of the whole NVM in
$ROMLAB_BACKUP_DIR.

exit status:
  0  ok
  1  show found an invalid checksum
  2  nothing was changed (bad input, no device, not root)
  3  a write did not read back"""

EXAMPLES = [
    ("romlab nvm --pci 03:00.0 --unbind show", "MAC, checksum and boot-agent words of a card (root)"),
    ("romlab nvm --qemu e1000e,mac=52:54:00:12:34:56 show", "the same for QEMU's emulated e1000e, no hardware"),
    ("romlab nvm --pci 03:00.0 --unbind set 0x31=0x4000 --dry-run", "what changing word 0x31 would write"),
]


def add_arguments(p):
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pci", metavar="BDF", help="an Intel NIC in this machine, e.g. 03:00.0 (needs root)")
    where.add_argument("--qemu", metavar="DEVICE", help="a NIC QEMU emulates, as a -device value")
    p.add_argument("--via", choices=("sysfs", "vfio"), default="sysfs",
                   help="with --pci: map BAR 0 from sysfs resource0 (default) or through VFIO")
    p.add_argument("--unbind", action="store_true",
                   help="with --pci: detach the kernel driver for the run and bind it again after")
    p.add_argument("action", choices=tuple(ACTIONS), metavar="ACTION", help=", ".join(ACTIONS) + " (see above)")
    p.add_argument("words", nargs="*", default=[], metavar="WORD=VALUE", help="with set: the words to change")
    p.add_argument("--dry-run", action="store_true", help="show the words that would change; write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _open(args):
    """(register Bar, family, vendor, device, where, input, closer); input is "pci:BDF" or "qemu:DEVICE"."""
    from hw.mmio import Window
    from romtools.flash.session import require_part

    if args.qemu:
        from romlab.lab.regrelay import QemuNic
        nic = QemuNic(args.qemu)
        try:
            fam = require_part(nic.vendor, nic.device, f"QEMU's {args.qemu}", purpose="nvm").family
        except BaseException:
            nic.close()
            raise
        return (Window(nic, fam.base), fam, nic.vendor, nic.device, f"qemu {args.qemu} ({nic.ids})",
                f"qemu:{args.qemu}", nic.close)
    from hw import access
    from hw.pci import PciDevice

    dev = PciDevice.open(args.pci)
    fam = require_part(dev.vendor_id, dev.device_id, str(dev.bdf), purpose="nvm", dev=dev).family
    bar = access.open_bar(dev, 0, args.via, unbind=args.unbind and args.via == "sysfs")
    return (Window(bar, fam.base), fam, dev.vendor_id, dev.device_id, f"{dev.bdf} ({dev.ids})",
            f"pci:{dev.bdf}", bar.close)


def run(args) -> int:
    from hw.errors import FlashError, UsageError
    from romlab.cli._common import print_json
    from romlab.conventions import document, pci_id, pci_word
    from romtools.flash import backup as backupmod
    from romtools.flash import nvm as nvmmod
    from romtools.flash.programmers.nicintel_eeprom import open_nvm

    if args.words and args.action != "set":
        raise UsageError(f"{args.action} takes no WORD=VALUE arguments")
    if args.action == "set" and not args.words:
        raise UsageError("set needs at least one WORD=VALUE, e.g. 0x30=0x0100")

    regs, fam, vendor, device, where, source, closer = _open(args)
    try:
        nvm = open_nvm(regs, fam, device, where)
        words = nvm.read_words(0, 64)
        info = nvmmod.decode(words)
        # The NVM's own device-ID word is an ID like the card's: the same spelling (docs/conventions.md).
        fields = {k: v for k, v in info.items() if k != "device_id"}
        result = document("romlab.nvm/1", input=source, family=fam.key, id=pci_id(vendor, device),
                          nvm_device=pci_word(info["device_id"]), words=words, **fields)
        if args.action == "show":
            if args.json:
                print_json(result)
            else:
                print(f"nvm of {where}, {fam.name}")
                for line in nvmmod.show_lines(info, words):
                    print(line)
            return 0 if info["checksum"]["valid"] else 1

        sets = nvmmod.parse_sets(args.words, 64) if args.action == "set" else {}
        changes = nvmmod.plan_changes(words, sets, fix_checksum=args.action == "fix-checksum")
        result["changes"] = [{"word": a, "old": o, "new": n} for a, (o, n) in sorted(changes.items())]
        lines = [f"nvm of {where}, {fam.name}"]
        if not changes:
            lines.append("nothing to change: the words already hold these values"
                         + (" and the checksum is valid" if info["checksum"]["valid"] else ""))
        for a, (o, n) in sorted(changes.items()):
            lines.append(f"  word 0x{a:02x}: 0x{o:04x} -> 0x{n:04x}" + ("  (checksum)" if a == 0x3F else ""))
        if args.dry_run or not changes:
            result["dry_run"] = args.dry_run
            if changes:
                lines.insert(1, f"would change {len(changes)} word(s):")
            print_json(result) if args.json else print("\n".join(lines))
            return 0
        if not nvm.writable:
            nvm.write_words({})          # raises with the advice for this controller
        # Back up the whole NVM before the first write.
        everything = nvm.read_words(0, nvm.size_words)
        backup = backupmod.save(b"".join(w.to_bytes(2, "little") for w in everything), {
            "kind": "nvm", "chip": f"{fam.key} NVM", "jedec": "nvm", "target": where, "pci_ids": result["id"], "family": fam.key,
            "words": len(everything)})
        nvm.write_words({a: n for a, (o, n) in changes.items()})
        nvm.commit()
        back = {a: nvm.read_word(a) for a in changes}
        bad = [a for a, (o, n) in changes.items() if back[a] != n]
        if bad:
            raise FlashError(f"{where}: word(s) {', '.join('0x%02x' % a for a in bad)} did not read back as "
                             f"written; the NVM before the change is in {backup}", exit_code=3)
        result["backup"] = str(backup)
        lines.insert(1, f"changed {len(changes)} word(s), read back and verified (backup: {backup}):")
        print_json(result) if args.json else print("\n".join(lines))
        return 0
    finally:
        closer()

