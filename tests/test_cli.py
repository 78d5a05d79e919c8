"""The CLI surface: --version and --help on every verb."""
from __future__ import annotations

from conftest import run_romlab
from romlab import __version__
from romlab.cli import VERBS as COMMANDS, build_parser


def test_version():
    r = run_romlab("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"romlab {__version__}"


def test_help_and_version_on_every_verb():
    sub = build_parser()._subparsers._group_actions[0]
    assert len(sub.choices) == len(COMMANDS)
    for verb in sub.choices:
        h = run_romlab(verb, "--help")
        assert h.returncode == 0 and b"usage: romlab " + verb.encode() in h.stdout
        v = run_romlab(verb, "--version")
        assert v.returncode == 0 and v.stdout.decode().strip() == f"romlab {__version__}"


def test_no_verb_is_usage_error():
    assert run_romlab().returncode == 2
