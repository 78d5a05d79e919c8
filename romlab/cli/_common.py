"""What the read verbs share: getting ROM bytes from a file or a device, and writing JSON."""
from __future__ import annotations

import json
import sys


def add_source_arguments(parser, *, pci: bool = True) -> None:
    parser.add_argument("file", nargs="?", help="ROM file to read")
    if pci:
        parser.add_argument("--pci", metavar="BDF", help="read the ROM from a PCI device (e.g. 03:00.0) instead")
        parser.add_argument("--via", choices=("sysfs", "vfio"), default="sysfs",
                            help="how to read the device's ROM (default: sysfs)")


def load_source(args) -> tuple[bytes, str]:
    """The ROM bytes and a name for them, from FILE or --pci."""
    from hw.errors import UsageError
    from romtools.walker import read_input

    pci = getattr(args, "pci", None)
    if pci and args.file:
        raise UsageError("give either a FILE or --pci BDF, not both")
    if pci:
        from hw.access import read_rom

        from romlab.conventions import device_input

        return read_rom(pci, via=args.via), device_input(pci)
    if not args.file:
        raise UsageError("no input: give a ROM FILE (or --pci BDF)")
    return read_input(args.file), args.file


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
