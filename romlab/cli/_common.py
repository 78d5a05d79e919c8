"""What the read verbs share: getting ROM bytes from a file or a device, and writing JSON."""
from __future__ import annotations

import json
import sys

STDIN = "-"
STDIN_NAME = "<stdin>"  # how reports and errors name a ROM read from standard input


def add_source_arguments(parser, *, pci: bool = True) -> None:
    parser.add_argument("files", nargs="*", default=[], metavar="FILE", help="ROM files to read; - reads standard input")
    if pci:
        parser.add_argument("--pci", metavar="BDF", help="read the ROM from a PCI device (e.g. 03:00.0) instead")
        parser.add_argument("--via", choices=("sysfs", "vfio"), default="sysfs",
                            help="how to read the device's ROM (default: sysfs)")


def read_file_input(path: str, **bounds) -> tuple[bytes, str]:
    """The bytes of one FILE argument and the name reports give it; ``-`` is standard input.

    Standard input is bounded like a file (``bounds`` are ``read_input``'s limit, what, bound);
    ``check_inputs`` has made sure it is there and not a terminal.
    """
    from hw.errors import FormatError
    from romtools.walker import read_input, read_stream

    if path != STDIN:
        return read_input(path, **bounds), path
    try:
        return read_stream(sys.stdin.buffer, STDIN_NAME, **bounds), STDIN_NAME
    except OSError as exc:
        raise FormatError(f"{STDIN_NAME}: cannot read: {exc.strerror or exc}") from None


def check_inputs(args, *, one_input_only: dict[str, bool] | None = None) -> list[str]:
    """The FILE arguments of a read verb, after the checks that need no file read.

    ``one_input_only`` maps an option's name to whether it was given: such an option is refused
    with several inputs, before anything is read."""
    from hw.errors import UsageError

    names = list(args.files)
    pci = getattr(args, "pci", None)
    if pci and names:
        raise UsageError("give either FILEs or --pci BDF, not both")
    if not names and not pci:
        raise UsageError("no input: give a ROM FILE" + (" (or --pci BDF)" if hasattr(args, "pci") else "")
                         + "; - reads standard input")
    if names.count(STDIN) > 1:
        raise UsageError("- (standard input) is given more than once; it can be read only once")
    if STDIN in names and (sys.stdin is None or sys.stdin.isatty()):
        # A ROM is never typed: waiting for one on a terminal would look like a hang.
        raise UsageError(f"- reads a ROM from standard input, which is {'closed' if sys.stdin is None else 'a terminal'}"
                         f" here; redirect or pipe a file into it (`romlab {args.command} - < rom.rom`), "
                         "or name the file")
    if len(names) > 1:
        for option, given in (one_input_only or {}).items():
            if given:
                raise UsageError(f"{option} works on one input and {len(names)} are given; "
                                 f"run `romlab {args.command}` once per file")
    return names


def run_inputs(args, one, *, read_bounds: dict | None = None, names: list[str] | None = None,
               blocks: bool = False) -> int:
    """Run a read verb's ``one(data, source) -> (status, doc)`` on each input; the worst status.

    ``one`` prints its text itself and returns its JSON document (or None without --json). One
    input prints that document, as the verb always has; several print a romlab.batch/1 document
    holding each input's. A file that cannot be read or is no ROM gets its one-line error on
    stderr (and an error entry in the batch) and the others still run: like ``grep`` over many
    files, the exit status is the worst of the per-input statuses. ``blocks`` separates the text
    of several inputs by a blank line.
    """
    from hw.errors import RomlabError
    from romlab.cli import terminal_safe

    names = check_inputs(args) if names is None else names
    if not names:                                  # --pci
        from hw.access import read_rom

        from romlab.conventions import device_input

        status, doc = one(read_rom(args.pci, via=args.via), device_input(args.pci))
        if doc is not None:
            print_json(doc)
        return status
    several = len(names) > 1
    worst, results = 0, []
    for i, name in enumerate(names):
        if blocks and several and i and not args.json:
            print()
        shown, named = STDIN_NAME if name == STDIN else name, True
        try:
            data, source = read_file_input(name, **(read_bounds or {}))
            named = False              # reading's errors name the file; what the verb finds does not
            status, doc = one(data, source)
        except RomlabError as exc:
            message = str(exc) if named else f"{shown}: {_ipxe_file_message(data, shown, exc) or exc}"
            sys.stdout.flush()
            print(terminal_safe(f"romlab {args.command}: error: {message}"), file=sys.stderr)
            status = exc.exit_code
            doc = {"input": shown, "exit": status, "error": message} if several else None
        worst = max(worst, status)
        if doc is not None:
            if several:
                results.append(doc)
            else:
                print_json(doc)
    if several and args.json:
        from romlab.conventions import batch

        print_json(batch(args.command, results, worst))
    return worst


def _ipxe_file_message(data: bytes, shown: str, exc) -> str | None:
    """What to say instead of the walker's "not an option ROM" (with its advice to scan) when the
    file is an iPXE .pxe/.kpxe/.lkrn file: scan would find nothing in it, inspect reads it. None for
    anything else, or when ``exc`` is not the walker's refusal; an EFI PE file keeps the walker's
    own message (what the PE is, and how efi-rom wraps a driver), which advises no scan."""
    import shlex

    from hw.errors import FormatError, NotAnOptionRom
    from romtools import ipxe

    kind = ipxe.container_of(data) if isinstance(exc, NotAnOptionRom) else None
    if kind is None or kind == "EFI PE file":
        return None
    try:
        if not ipxe.find_blocks(data, 0, len(data)):
            return None  # (a truncated iPXE file still holds its first packed sections)
    except FormatError:
        return None
    name = "-" if shown == STDIN_NAME else shlex.quote(shown)
    return (f"not an option ROM but an iPXE {kind}, which this verb does not read; "
            f"`romlab inspect {name}` reads its iPXE payload (version, drivers, features, scripts)")


def print_json(doc) -> None:
    """Print one ``--json`` document (docs/conventions.md: an object whose first key is its schema)."""
    if not isinstance(doc, dict) or next(iter(doc), None) != "schema":
        raise TypeError("a --json document is an object whose first key is 'schema'")
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def hex_id(bits: int = 16):
    """argparse type: a PCI ID or class code in hex, with or without 0x."""
    import argparse

    def parse(text: str) -> int:
        t = text.lower()
        t = t[2:] if t.startswith("0x") else t
        try:
            v = int(t, 16)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a hex number") from None
        if not 0 <= v < (1 << bits):
            raise argparse.ArgumentTypeError(f"{text!r} does not fit in {bits} bits")
        return v

    return parse


def add_overwrite_argument(parser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that already exist (never the input)")


def _new_file_mode(path: str) -> int:
    """An existing file keeps its mode; a new one gets 0666 less the umask, as any other tool's output."""
    import os

    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def check_outputs(paths, *, inputs=(), overwrite: bool = False, flag: str = "--overwrite",
                  instead: str = "") -> None:
    """Refuse, before anything is written, an output that is an input or that exists without --overwrite.

    ``instead`` names the verb's own way of changing its input, if it has one (patch's --in-place)."""
    import os

    from hw.errors import UsageError

    ins = {os.path.realpath(i) for i in inputs if os.path.exists(i)}
    for path in paths:
        if os.path.realpath(path) in ins:
            raise UsageError(f"{path} is an input file; romlab never writes over its input (write elsewhere"
                             + (f", or {instead})" if instead else ")"))
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory; give a file name for the output")
        if os.path.lexists(path) and not overwrite:
            raise UsageError(f"{path} already exists; add {flag} to replace it, or write elsewhere")


def write_output(path: str, data: bytes, *, inputs: tuple[str, ...] = (), in_place: bool = False,
                 overwrite: bool = False, flag: str = "--overwrite", instead: str = "") -> str | None:
    """Write ``data`` to ``path`` atomically (temporary file, then rename).

    Refuses to write over one of ``inputs`` unless ``in_place``, and over any other existing file
    unless ``overwrite``; with ``in_place`` the old file is first kept as PATH.bak (PATH.bak.1, .2,
    ... when that exists). Returns the backup's path, if one was made.
    """
    import os
    import shutil
    import tempfile

    from hw.errors import UsageError

    if not in_place:
        check_outputs([path], inputs=inputs, overwrite=overwrite, flag=flag, instead=instead)
    elif os.path.isdir(path):
        raise UsageError(f"{path} is a directory; give a file name for the output")
    backup = None
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    try:
        if in_place and os.path.exists(path):
            backup = path + ".bak"
            n = 1
            while os.path.exists(backup):
                backup, n = f"{path}.bak.{n}", n + 1
            shutil.copy2(path, backup)
        fd, tmp = tempfile.mkstemp(prefix=".romlab-", dir=directory)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return backup


def add_flash_target_arguments(parser) -> None:
    """The target options `flash` and `restore` share: a NIC in this machine or an external programmer."""
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--pci", metavar="BDF", help="an Intel NIC in this machine, e.g. 03:00.0 (needs root)")
    target.add_argument("--programmer", "-p", metavar="SPEC",
                        help="serprog:tcp=HOST:PORT | serprog:dev=PATH[,baud=N] | file:PATH | ch341a")
    parser.add_argument("--via", choices=("sysfs", "vfio"), default="sysfs",
                        help="with --pci: map BAR 0 from sysfs resource0 (default) or through VFIO")
    parser.add_argument("--unbind", action="store_true",
                        help="with --pci: detach the kernel driver for the run and bind it again after")


def open_programmer(spec: str, chip: str | None = None):
    """A ``--programmer`` value, opened: the real programmers from ``romtools.flash.programmers``,
    and ``file:PATH``, a flash image driven through the chip model (``romtools.flash.sim``)."""
    from romtools.flash.programmers import open_hardware, parse_spec

    kind, opts = parse_spec(spec)
    if kind == "file":
        from romtools.flash.sim.fileprog import FileProgrammer

        return FileProgrammer(opts["path"], chip=chip)
    return open_hardware(kind, opts)


def add_edit_arguments(parser) -> None:
    """--dry-run for the verbs that write an edited ROM."""
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would change (old -> new) and write nothing")


def print_changes(changes) -> None:
    """One line per changed field, as every edit verb shows them: "image 0 PCIR device: 100e -> 10d3"
    (the same lines under --dry-run, which ends with a line saying nothing was written)."""
    for c in changes:
        print(c.text())


def add_keep_flags_argument(parser) -> None:
    """--keep-flags, the one way to ask for an image file without a last-image flag (extract, split)."""
    parser.add_argument("--keep-flags", action="store_true",
                        help="write images exactly as in the ROM, even one that lacks the last-image flag "
                             "(by default the flag is set and the checksums fixed, so the file is a ROM of its own)")
