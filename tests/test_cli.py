"""The CLI surface: the verbs `romlab --help` offers, --help on every verb, --version at the top."""
from __future__ import annotations

import re
from pathlib import Path

from conftest import run_romlab

from romlab import __version__

REPO = Path(__file__).resolve().parent.parent

# The verbs as the README and docs/flashing.md document them, written out here by hand: a verb
# added, renamed or dropped in the code must be added, renamed or dropped here (and in the docs).
VERBS = {
    "inspect", "lint", "disasm", "scan", "diff",                        # README: Reading ROMs
    "patch", "split", "extract", "efi-rom", "combine", "pad",           # README: Changing and building ROMs
    "list", "dump", "vfio", "vm", "nic", "undi", "bench", "boot", "serve",  # README: Hardware, drivers and benches
    "flash", "restore", "nvm", "serprog-emu", "lab",                           # docs/flashing.md
}


def listed_verbs(help_text: str) -> list[str]:
    """The verbs under "commands:" in --help: one per line, indented by four spaces."""
    body = help_text.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^    ([a-z][a-z0-9-]*)(?:\s|$)", body, re.M)


def test_version():
    r = run_romlab("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"romlab {__version__}"


def test_defect9_cli_verbs_are_the_documented_ones():
    r = run_romlab("--help")
    assert r.returncode == 0
    verbs = listed_verbs(r.stdout.decode())
    assert len(verbs) == len(set(verbs))
    assert set(verbs) == VERBS
    docs = (REPO / "README.md").read_text() + "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    undocumented = sorted(v for v in VERBS if not re.search(rf"\bromlab {re.escape(v)}\b", docs))
    assert not undocumented


def test_help_on_every_verb_and_version_only_at_the_top():
    for verb in sorted(VERBS):
        h = run_romlab(verb, "--help")
        assert h.returncode == 0 and b"usage: romlab " + verb.encode() + b" " in h.stdout
        v = run_romlab(verb, "--version")
        assert v.returncode == 2 and v.stdout == b"" and b"romlab --version" in v.stderr


def test_no_verb_is_usage_error():
    r = run_romlab()
    assert r.returncode == 2 and r.stderr.decode().startswith("usage: romlab ")
