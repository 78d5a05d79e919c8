"""The ``romlab`` command line: one module per verb here, and the dispatcher below.

Each verb module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``:
it parses, calls into drivers/romtools/hw, and prints. Heavy imports (capstone, pefile, cffi
modules) happen inside ``run``.

A fresh ``romlab inspect`` must start fast, so only the verb asked for is imported and given its
parser; ``romlab --help``, no verb, or an unknown one builds them all (to list them or suggest one).
Errors from the layers below are turned into one line on stderr and the exit status of their kind.
"""
from __future__ import annotations

import sys

from romlab import __version__

# Verb name -> module under romlab.cli, in the order --help lists them.
VERBS = {
    "inspect": "inspect",
    "lint": "lint",
    "diff": "diff",
    "disasm": "disasm",
    "scan": "scan",
    "patch": "patch",
    "split": "split",
    "extract": "extract",
    "combine": "combine",
    "efi-rom": "efi_rom",
    "pad": "pad",
    "nic": "nic",
    "flash": "flash",
    "restore": "restore",
    "serprog-emu": "serprog_emu",
    "nvm": "nvm",
    "list": "list",
    "dump": "dump",
    "vfio": "vfio",
    "vm": "vm",
    "boot": "boot",
    "bench": "bench",
    "serve": "serve",
}


def terminal_safe(text: str) -> str:
    """``text`` with every control or format character but newline and tab written as an escape.

    Strings in a ROM or from a device are the attacker's: an ``ESC[2J`` in a $PnP or UNDI string
    must reach the terminal as text, not as a command to it. Printable Unicode is kept.
    """
    import unicodedata

    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in "\n\t" or ch.isprintable():
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class _SafeStream:
    """A text stream that passes everything written through ``terminal_safe``."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_safe(text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _verb_in(argv: list[str]) -> str | None:
    """The verb named on the command line, if it is one of ours (the first word not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in VERBS else None
    return None


def _parser_class():
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse with the project's rule for usage errors: one line, then where to read more."""

        def error(self, message):
            if message.startswith("argument COMMAND: invalid choice"):
                import difflib

                word = message.split("'")[1]
                close = difflib.get_close_matches(word, VERBS, n=1)
                message = f"{word!r} is not a romlab command" + (f"; did you mean {close[0]!r}?" if close else "")
            self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    return Parser


def build_parser(only: str | None = None):
    """The parser for every verb, or with ``only`` for that verb alone (the fast path)."""
    import importlib

    parser = _parser_class()(
        prog="romlab",
        description="A workbench for network-card option ROMs and their drivers.",
    )
    parser.add_argument("--version", action="version", version=f"romlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=type(parser))
    for name, module in VERBS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(f"romlab.cli.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        p.add_argument("--version", action="version", version=f"romlab {__version__}")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    from hw.errors import RomlabError

    argv = sys.argv[1:] if argv is None else [*argv]  # `list` here is the list verb's module once it ran
    parser = build_parser(_verb_in(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:
        (getattr(args, "_parser", None) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    stdout = sys.stdout
    sys.stdout = _SafeStream(stdout)
    try:
        return int(args._run(args) or 0)
    except RomlabError as exc:
        print(terminal_safe(f"romlab {args.command}: error: {exc}"), file=sys.stderr)
        return exc.exit_code  # 2 for every kind, unless the error carries its own (3: flash partly written)
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
        print(terminal_safe(f"romlab {args.command}: internal error: {type(exc).__name__}: {exc} "
                            "(run with ROMLAB_DEBUG=1 for the traceback, and report it)"), file=sys.stderr)
        return 70
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    sys.exit(main())
