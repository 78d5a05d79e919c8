"""The ``romlab`` command line: a thin dispatcher over ``romlab.commands``.

Verbs live in their own modules; this file only builds the parser, runs the verb
and turns romlab's own errors into one-line messages with the documented exit codes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from romlab import __version__

# Verb modules under romlab.commands, in the order --help lists them.
COMMANDS = [
    "inspect",
    "lint",
    "disasm",
    "scan",
    "patch",
    "split",
    "extract",
    "combine",
    "efi_rom",
    "pad",
    "nic",
    "flash",
    "restore",
    "serprog_emu",
    "nvm",
    "list", "dump", "vfio", "vm",
    "boot", "bench", "serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="romlab",
        description="A workbench for network-card option ROMs and their drivers.",
    )
    parser.add_argument("--version", action="version", version=f"romlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"romlab.commands.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        p.add_argument("--version", action="version", version=f"romlab {__version__}")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from romtools.errors import RomError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except RomError as exc:
        print(f"romlab {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"romlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"romlab {args.command}: error: out of memory", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # last resort: a bug in romlab, still one line unless asked for more
        if os.environ.get("ROMLAB_DEBUG"):
            raise
        print(f"romlab {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(run with ROMLAB_DEBUG=1 for the traceback, and report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
