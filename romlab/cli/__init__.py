"""The ``romlab`` command line: one module per verb here, and the dispatcher below.

Each verb module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``:
it parses, calls into drivers/romtools/hw, and prints. Heavy imports (capstone, pefile, cffi
modules) happen inside ``run``. Its help is ``DESCRIPTION`` (shown as written: one line per
choice), ``EXAMPLES`` ((command, what it does) pairs, the "examples:" of --help and the man page)
and, for a verb whose action is a positional choice rather than a subcommand, ``ACTIONS``.

-q/--quiet and -v/--verbose belong to every verb and may stand before or after it; verbs reach them
through ``note`` (a remark -q silences), ``detail`` (shown with -v), ``quiet()`` and ``verbose()``.
No verb colours its output, so NO_COLOR and a non-terminal stdout need nothing more.

A fresh ``romlab inspect`` must start fast, so only the verb asked for is imported and given its
parser; ``romlab --help``, no verb, or an unknown one builds them all (to list them or suggest one).
Errors from the layers below are turned into one line on stderr and the exit status of their kind.
"""
from __future__ import annotations

import sys

from romlab import __version__

# Verb name -> module under romlab.cli, in the order --help lists them. (Once the list verb is
# imported, ``list`` in this module is romlab.cli.list, not the builtin: write [*x] here.)
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
    "undi": "undi",
    "flash": "flash",
    "restore": "restore",
    "serprog-emu": "serprog_emu",
    "nvm": "nvm",
    "list": "list",
    "dump": "dump",
    "vfio": "vfio",
    "vm": "vm",
    "lab": "lab",
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


# -q/-v as the dispatcher saw them, for verbs' notes and detail (set by main, read by note/detail).
_say = {"quiet": False, "verbose": False}


def quiet() -> bool:
    """-q/--quiet was given: progress and remarks on stderr are left out (errors and warnings stay)."""
    return _say["quiet"]


def verbose() -> bool:
    """-v/--verbose was given: verbs add the detail of each step, errors their cause chain."""
    return _say["verbose"]


def note(text: str) -> None:
    """A remark on stderr that is not the verb's result (progress, what was done): -q leaves it out."""
    if not _say["quiet"]:
        print(terminal_safe(text), file=sys.stderr, flush=True)


def detail(text: str) -> None:
    """A line of step-by-step detail on stderr, only with -v."""
    if _say["verbose"] and not _say["quiet"]:
        print(terminal_safe(text), file=sys.stderr, flush=True)


TOP_EPILOG = """\
examples:
  romlab inspect /usr/lib/ipxe/qemu/efi-e1000.rom
  romlab lint --strict /usr/lib/ipxe/qemu/pxe-e1000.rom
  romlab flash --programmer serprog:tcp=127.0.0.1:4242 new.rom
  romlab vfio bind 03:00.0

environment:
  NO_COLOR           honoured: romlab writes no colour codes at all, on a terminal or not
  ROMLAB_BACKUP_DIR  where flash, restore and nvm keep backups (default ~/.local/share/romlab/backups)
  ROMLAB_DEBUG       a Python traceback instead of the one-line internal error

Each command has its own help: romlab COMMAND --help (or man romlab)."""


def _examples(examples) -> str | None:
    """A verb's EXAMPLES, ``[(command, what it does), ...]``, as an "examples:" epilog."""
    if not examples:
        return None
    lines = ["examples:"]
    for command, what in examples:
        lines += [f"  {command}", f"      {what}"]
    return "\n".join(lines)


def _add_global_options(parser, *, top: bool = False) -> None:
    """-q and -v on the top parser and on every verb's (and action's) parser.

    Below the top they default to SUPPRESS, so ``romlab -q flash`` is not undone by the flash
    parser's own default: given anywhere, the option is set.
    """
    import argparse

    default = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-q", "--quiet", action="store_true", **default,
                        help="no progress or remarks on stderr; errors and warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", **default,
                        help="the detail of each step; errors with their causes")


def _sub_parsers(parser):
    """(subparsers action, {name: parser}) of a parser that has actions as subcommands, else (None, {})."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action, action.choices
    return None, {}


def _actions_of(parser) -> list[tuple[str, str]]:
    """The actions a verb offers, with their one-line help: its subcommands, or its ACTIONS table."""
    sp, _ = _sub_parsers(parser)
    if sp is not None:
        return [(a.dest, a.help or "") for a in sp._choices_actions]
    return [*(getattr(parser, "romlab_actions", None) or {}).items()]


def _action_names(parser) -> set[str]:
    """How argparse names a verb's action argument in its messages (metavar or dest)."""
    import argparse

    names = set()
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) or (getattr(parser, "romlab_actions", None)
                                                         and a.dest == "action" and not a.option_strings):
            names.update(n for n in (a.metavar, a.dest) if n)
    return names


def list_actions(parser) -> None:
    """A verb that needs an action and got none: its usage and its actions, one per line, exit 2."""
    actions = _actions_of(parser)
    width = max(len(n) for n, _ in actions)
    out = [parser.format_usage().rstrip(), f"{parser.prog}: give one of these actions:"]
    out += [f"  {name:<{width}}  {what}".rstrip() for name, what in actions]
    out.append(f"(see '{parser.prog} --help'" + (f" or '{parser.prog} {actions[0][0]} --help')"
                                                 if _sub_parsers(parser)[0] else ")"))
    parser.exit(2, "\n".join(out) + "\n")


def _option_strings(parser) -> set[str]:
    """Every option string of ``parser`` and the parsers below it."""
    found = set(parser._option_string_actions)
    for sub in _sub_parsers(parser)[1].values():
        found |= _option_strings(sub)
    return found


def _unknown_option(parser, words: list[str]) -> str | None:
    """The first long option in ``words`` that no parser here knows, even as an abbreviation."""
    known = _option_strings(parser) | (_option_strings(_top[0]) - _TOP_ONLY if _top else set())
    for word in words:
        if word == "--":
            break
        if word.startswith("--") and len(word) > 2:
            name = word.split("=", 1)[0]
            if not any(k.startswith(name) for k in known):
                return word
    return None


def _did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, [*choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


_TOP_ONLY = {"--version"}  # options of romlab itself, not of its commands


def unknown_option_message(parser, word: str) -> str:
    """One line for an option ``parser`` does not have, with the nearest one it has."""
    name = word.split("=", 1)[0]
    if name in _TOP_ONLY:
        return f"{name} is an option of romlab itself, not of a command: romlab {name}"
    longs = [o for o in parser._option_string_actions if o.startswith("--")] if name.startswith("--") \
        else [*parser._option_string_actions]
    return f"unrecognized option {word!r}" + _did_you_mean(name, longs)


_top: list = []       # the top parser being used, for the option check of an error in a verb's parser
_argv: list[str] = []  # the words being parsed, for the same


def _parser_class():
    import argparse
    import re

    class Parser(argparse.ArgumentParser):
        """argparse with the project's rules for usage errors: one line, the nearest right word, and
        for a verb that needs an action and got none, the list of its actions."""

        def error(self, message):
            missing = re.match(r"the following arguments are required: (.*)", message)
            unknown = _unknown_option(self, _argv) if re.search(r"\b(is|are) required\b", message) else None
            if unknown:  # a mistyped option is more likely the cause than a missing argument
                message = unknown_option_message(self, unknown)
            elif missing and _actions_of(self) and \
                    {m.strip() for m in missing.group(1).split(",")} & _action_names(self):
                list_actions(self)
            choice = re.match(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)$", message)
            if choice:
                name, word = choice.group(1), choice.group(2)
                options = re.findall(r"'([^']*)'", choice.group(3))
                if name == "COMMAND":
                    message = f"{word!r} is not a romlab command" + _did_you_mean(word, VERBS)
                else:
                    message = f"{word!r} is not one of {', '.join(options)}" + _did_you_mean(word, options)
            self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    return Parser


def _formatter():
    import argparse

    class Formatter(argparse.RawDescriptionHelpFormatter):
        """Descriptions and examples as written (one line per choice); option help wrapped."""

        def __init__(self, prog):
            super().__init__(prog, max_help_position=32)

    return Formatter


def _finish_actions(parser, formatter, examples) -> None:
    """Give the parsers of a verb's actions (``vfio bind`` ...) the same -q/-v and formatter, and
    as their epilog the verb's examples that use them."""
    _, subs = _sub_parsers(parser)
    for sub in subs.values():
        sub.formatter_class = formatter
        _add_global_options(sub)
        sub.set_defaults(_parser=sub)
        mine = [e for e in examples if (e[0] + " ").startswith(sub.prog + " ")]
        if sub.epilog is None and mine:
            sub.epilog = _examples(mine)
        _finish_actions(sub, formatter, examples)


def build_parser(only: str | None = None):
    """The parser for every verb, or with ``only`` for that verb alone (the fast path)."""
    import importlib

    cls, formatter = _parser_class(), _formatter()
    parser = cls(
        prog="romlab",
        description="A workbench for network-card option ROMs and their drivers.",
        epilog=TOP_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"romlab {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=cls, title="commands")
    for name, module in VERBS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(f"romlab.cli.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=_examples(getattr(mod, "EXAMPLES", ())), formatter_class=formatter)
        p.romlab_actions = getattr(mod, "ACTIONS", None)
        mod.add_arguments(p)
        _add_global_options(p)
        p.set_defaults(_run=mod.run, _parser=p)
        sp, _ = _sub_parsers(p)
        for group in p._action_groups:   # a verb's actions under "actions:", not "positional arguments:"
            if sp is not None and group._group_actions == [sp]:
                group.title = "actions"
        _finish_actions(p, formatter, getattr(mod, "EXAMPLES", ()))
    _top[:] = [parser]
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    from hw.errors import RomlabError

    argv = sys.argv[1:] if argv is None else [*argv]
    parser = build_parser(_verb_in(argv))
    _argv[:] = argv
    args, extra = parser.parse_known_args(argv)
    if extra:
        where = getattr(args, "_parser", None) or parser
        unknown = _unknown_option(where, extra)
        where.error(unknown_option_message(where, unknown) if unknown
                    else f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    sp, _ = _sub_parsers(args._parser)
    if sp is not None and getattr(args, sp.dest, None) is None:
        list_actions(args._parser)
    _say.update(quiet=args.quiet, verbose=args.verbose)
    stdout = sys.stdout
    sys.stdout = _SafeStream(stdout)
    try:
        return int(args._run(args) or 0)
    except RomlabError as exc:
        print(terminal_safe(f"romlab {args.command}: error: {exc}"), file=sys.stderr)
        if args.verbose:
            _print_causes(exc)
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
        if args.verbose:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        print(terminal_safe(f"romlab {args.command}: internal error: {type(exc).__name__}: {exc} "
                            "(run with ROMLAB_DEBUG=1 for the traceback, and report it)"), file=sys.stderr)
        return 70
    finally:
        sys.stdout = stdout


def _print_causes(exc: BaseException) -> None:
    """With -v: what led to an error, one line per link of its chain (``raise ... from``, or the
    error being handled when it was raised)."""
    seen = {id(exc)}
    while True:
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if exc is None or id(exc) in seen:
            return
        seen.add(id(exc))
        print(terminal_safe(f"  caused by: {type(exc).__name__}: {exc}"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
