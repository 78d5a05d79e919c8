"""The man page and the bash and zsh completion scripts, made from the parser itself.

``python -m romlab.cli._manual PREFIX`` writes PREFIX/man/man1/romlab.1,
PREFIX/bash-completion/completions/romlab and PREFIX/zsh/site-functions/_romlab; scripts/setup.sh
runs it into .venv/share and installs the files where ``man romlab`` and the shells look.

The completion comes from shtab. The man page is written here rather than by argparse-manpage:
that tool refills every description, so the one-line-per-choice lists of ``romlab flash --help``
run together again, and it leaves out each verb's examples; the parser holds all a man page needs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

from romlab import __version__
from romlab.cli import (
    TOP_EPILOG,
    VERBS,
    _actions_of,
    _sub_parsers,
    build_parser,
)

# Which arguments name files or directories, for the shells to complete paths there.
_FILE_DESTS = {"file", "files", "rom", "backup", "driver", "inputs", "output", "pcap", "stats", "plot", "html", "nbp",
               "script", "read", "layout", "image_file"}
_FILE_METAVARS = {"FILE", "OUT", "OUT.png", "PATH|none", "auto|PATH", "rom-at-0|i210|FILE", "ROM"}
_DIR_DESTS = {"extract", "share"}


def _complete_paths(parser) -> None:
    """Mark path arguments with shtab's FILE or DIRECTORY completion, in every parser below ``parser``."""
    import shtab

    for action in parser._actions:
        if action.nargs == 0 or action.choices or action.dest in ("help", "version"):
            continue
        if action.metavar == "DIR" or action.dest in _DIR_DESTS:
            action.complete = shtab.DIRECTORY
        elif action.metavar in _FILE_METAVARS or (action.dest in _FILE_DESTS and action.type in (None, str)):
            action.complete = shtab.FILE
    for sub in _sub_parsers(parser)[1].values():
        _complete_paths(sub)


def completion(shell: str) -> str:
    """The completion script for ``shell`` (bash or zsh), every verb, action and option included."""
    import shtab

    parser = build_parser(None)
    _complete_paths(parser)
    return shtab.complete(parser, shell)


# --- the man page -------------------------------------------------------------------------------

def _roff(text: str) -> str:
    """``text`` safe in a roff line: backslashes and hyphens escaped, no control character at the start."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _bold(text: str) -> str:
    return f"\\fB{_roff(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{_roff(text)}\\fR"


_ITEM = re.compile(r"^  (\S(?:.*?\S)?)(?: {2,}(\S.*))?$")


def _prose(text: str) -> list[str]:
    """A description as the help shows it, in roff: paragraphs are filled, indented "term  text" lines
    (one per choice) become tagged paragraphs, deeper-indented lines continue the item above."""
    out: list[str] = []
    para: list[str] = []
    in_list = False

    def end(list_too: bool) -> None:
        nonlocal para, in_list
        if para:
            out.extend([".PP", _roff(" ".join(para))])
            para = []
        if list_too and in_list:
            out.append(".RE")
            in_list = False

    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        item = _ITEM.match(line)
        if not line.strip():
            end(True)
        elif in_list and indent > 3:
            out.append(_roff(line.strip()))
        elif item and indent == 2:
            end(False)
            if not in_list:
                out.append(".RS 2")   # a list sits under the line that introduces it
                in_list = True
            out.extend([".TP", _bold(item.group(1))])
            if item.group(2):
                out.append(_roff(item.group(2)))
        else:
            if in_list:
                end(True)
            para.append(line.strip())
    end(True)
    return out


def _usage(parser) -> list[str]:
    first, *rest = parser.format_usage().removeprefix("usage: ").rstrip().splitlines()
    rest = [line[len("usage: "):] if line.startswith(" " * len("usage: ")) else line for line in rest]
    return [".PP", ".nf", *(_roff(line.rstrip()) for line in [first, *rest]), ".fi"]


def _options(parser) -> list[str]:
    """Each argument of ``parser`` as a tagged paragraph, with its help as --help gives it."""
    formatter = parser._get_formatter()
    out: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            names = ", ".join(_bold(o) for o in action.option_strings)
            if action.nargs != 0:
                names += " " + _italic(formatter._format_args(action, formatter._get_default_metavar_for_optional(action)))
        else:
            names = _italic(formatter._metavar_formatter(action, action.dest)(1)[0])
        out += [".TP", names]
        if action.help:
            out.append(_roff(formatter._expand_help(action)))
    return out


def _examples(mod_examples, prefix: str) -> list[str]:
    mine = [e for e in mod_examples if (e[0] + " ").startswith(prefix + " ")]
    if not mine:
        return []
    out = [".PP", "Examples:", ".RS 2"]
    for command, what in mine:
        out += [".TP", _bold(command), _roff(what)]
    return out + [".RE"]


def _verb_section(parser, examples, *, heading: str = ".SS") -> list[str]:
    out = [f"{heading} {_roff(parser.prog)}"]
    out += _usage(parser)
    if parser.description:
        out += _prose(parser.description)
    options = _options(parser)
    if options:
        out += [".PP", "Arguments and options:", ".RS 2", *options, ".RE"]
    subs = _sub_parsers(parser)[1]
    if not subs:
        out += _examples(examples, parser.prog)
        return out
    out += [".PP", "Actions:", ".RS 2"]
    for name, what in _actions_of(parser):
        out += [".TP", _bold(name), _roff(what)]
    out.append(".RE")
    out += _examples(examples, parser.prog)
    for sub in subs.values():
        out += _verb_section(sub, ())   # the verb's examples, above, cover its actions
    return out


def man_page(date: str | None = None) -> str:
    """romlab(1), in roff: every verb with its usage, description, options and examples."""
    import importlib

    parser = build_parser(None)
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        date = time.strftime("%Y-%m-%d", time.gmtime(int(epoch) if epoch else None))
    out = [
        f'.TH ROMLAB 1 "{date}" "romlab {__version__}" "romlab manual"',
        ".SH NAME",
        "romlab \\- " + _roff(parser.description.rstrip(".").replace("A workbench", "a workbench")),
        ".SH SYNOPSIS",
        f".B romlab\n[{_bold('-q')}] [{_bold('-v')}] {_italic('COMMAND')} [{_italic('ARGS')}...]",
        ".br",
        f".B romlab\n{_bold('--version')} | {_bold('--help')} | {_italic('COMMAND')} {_bold('--help')}",
        ".SH DESCRIPTION",
        _roff(parser.description),
        "Each command reads or writes option ROMs, flash chips or NICs; the commands are:",
        ".RS 2",
    ]
    for name, what in _actions_of(parser):
        out += [".TP", _bold(name), _roff(what)]
    both = f"{_bold('romlab -q flash ...')} and {_bold('romlab flash -q ...')}"
    out += [".RE", ".SH OPTIONS", f"These are taken before or after the command, e.g. both {both}.", ".RS 2"]
    out += _options(parser)
    out += [".RE", ".SH COMMANDS"]
    verb_parsers = _sub_parsers(parser)[1]
    for name, module in VERBS.items():
        mod = importlib.import_module(f"romlab.cli.{module}")
        out += _verb_section(verb_parsers[name], getattr(mod, "EXAMPLES", ()))
    env = TOP_EPILOG.split("environment:\n", 1)[1].split("\n\n", 1)[0]
    out += [".SH ENVIRONMENT", *_prose(env)[1:]] if env.startswith("  ") else []
    out += [
        ".SH EXIT STATUS",
        "Each command's section gives its own; across all of them:",
        ".RS 2",
        ".TP", "0", "done, nothing wrong found",
        ".TP", "1", "the command ran and found what it looks for (a lint error, a difference, a failed boot)",
        ".TP", "2", "unusable input or usage; nothing was changed",
        ".TP", "3", "a write was left partly done (flash, nvm); the message names the backup",
        ".TP", "70", "an internal error in romlab (ROMLAB_DEBUG=1 shows the traceback)",
        ".TP", "130", "interrupted",
        ".RE",
        ".SH SEE ALSO",
        "flashrom(8), lspci(8), qemu-system-x86_64(1)",
        "",
    ]
    return "\n".join(out)


def write_all(prefix: str) -> list[str]:
    """Write the man page and both completion scripts under ``prefix``; returns the paths written."""
    files = {
        os.path.join(prefix, "man", "man1", "romlab.1"): man_page(),
        os.path.join(prefix, "bash-completion", "completions", "romlab"): completion("bash"),
        os.path.join(prefix, "zsh", "site-functions", "_romlab"): completion("zsh"),
    }
    for path, text in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return [*files]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m romlab.cli._manual PREFIX  (writes PREFIX/man/man1/romlab.1 and the "
                 "bash and zsh completions)")
    for written in write_all(sys.argv[1]):
        print(written)
