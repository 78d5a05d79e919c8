"""Every `romlab` example in README.md and docs/*.md runs as typed and exits as documented.

The convention the pages follow (README.md, "Tests", says it for readers):

* An example is a line starting with ``romlab `` (or ``sudo romlab ``) in a fenced ```` ```sh ````
  block; a line ending in a backslash continues on the next. A romlab line in a plain fence or
  another shell's is an error here, so no example escapes; ```` ```text ```` is for diagrams.
* It runs in ``sh``, in a scratch directory of its own, with ``romlab`` on PATH. The directory
  holds the files it names: the bare names in ``FIXTURES`` (Debian's real ROMs, or images built
  from them), and any file an earlier example on the same page writes with ``-o``/``--output``
  or ``--extract`` (that example runs first and its output is copied in).
* It must exit 0, unless its comment ends with ``[exit N]``; then N, with the error on one line.
  An example that exits 0 must have written every ``-o`` file it names.
* ``[needs: hardware]`` (a real card, programmer or network interface, and root) or
  ``[needs: qemu]`` (it boots a QEMU guest) at the end of the comment: not run. Such a line must
  show why (``--pci``, ``--programmer``, ``--interface``, ``vfio``, ``sudo``; ``vm``, ``boot``,
  ``bench firmware``), is parsed by romlab's own parser so its options are real, and is reported
  as a skip naming the need, so the count of examples not run is in every test summary.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import IPXE_QEMU, REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _padded(rom: str, size: int, at: int = 0):
    """An image of ``size`` bytes of 0xFF with Debian's ``rom`` at offset ``at``: what a NIC's
    flash holds after a ROM was written to it, or a dump with a ROM somewhere inside."""
    def build() -> bytes:
        data = (IPXE_QEMU / rom).read_bytes()
        assert at + len(data) <= size
        return b"\xff" * at + data + b"\xff" * (size - at - len(data))
    return build


# Bare names the pages use, and the real file each stands for.
FIXTURES = {
    "pxe-e1000.rom": IPXE_QEMU / "pxe-e1000.rom",
    "pxe-e1000e.rom": IPXE_QEMU / "pxe-e1000e.rom",
    "efi-e1000.rom": IPXE_QEMU / "efi-e1000.rom",
    "efi-e1000e.rom": IPXE_QEMU / "efi-e1000e.rom",
    "rom.rom": IPXE_QEMU / "pxe-e1000.rom",        # "a ROM you have": a legacy iPXE image
    "ipxe.rom": IPXE_QEMU / "pxe-e1000e.rom",      # docs/flashing.md: iPXE built for the 82574L (8086:10d3)
    "card-flash.bin": _padded("pxe-e1000e.rom", 128 << 10),          # an 82574L's 128 KiB flash holding it
    "flash-dump.bin": _padded("pxe-e1000.rom", 256 << 10, 0x10000),  # a ROM 64 KiB into a 256 KiB dump
}

NEEDS = {
    "hardware": lambda w: bool({"--pci", "--programmer", "--interface"} & set(w)) or w[0] == "sudo"
    or w[1] == "vfio",
    "qemu": lambda w: w[1] in ("vm", "boot") or w[1:3] == ["bench", "firmware"] or "--qemu" in w,
}

FENCE = re.compile(r"^\s*```\s*(\S*)")
TAG = re.compile(r"\[(exit (\d+)|needs: ([a-z]+))\]")


@dataclass
class Example:
    page: str
    line: int
    text: str
    lang: str
    exit: int = 0
    needs: str | None = None
    words: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def outputs(self) -> list[str]:
        return [self.words[i + 1].rstrip("/") for i, w in enumerate(self.words[:-1])
                if w in ("-o", "--output", "--extract")]

    @property
    def inputs(self) -> list[str]:
        outs = set(self.outputs)
        return [w for w in self.words[1:] if w not in outs and not w.startswith("-")]


def collect(pages=PAGES) -> list[Example]:
    found = []
    for page in pages:
        rel = str(page.relative_to(REPO)) if page.is_relative_to(REPO) else page.name
        lang = None  # None: outside a fence
        pending = ""
        start = 0
        for n, raw in enumerate(page.read_text().splitlines(), 1):
            m = FENCE.match(raw)
            if m and not pending:
                lang = m.group(1) if lang is None else None
                continue
            if lang is None:
                continue
            line = raw.strip()
            if pending:
                line, pending = pending + " " + line, ""
            else:
                start = n
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
                continue
            if not re.match(r"(sudo )?romlab ", line):
                continue
            ex = Example(rel, start, line, lang)
            comment = line.split(" #", 1)[1] if " #" in line else ""
            for _, code, need in TAG.findall(comment):
                if code:
                    ex.exit = int(code)
                else:
                    ex.needs = need
            ex.words = shlex.split(line, comments=True)
            found.append(ex)
    return found


EXAMPLES = collect()
RUN = [e for e in EXAMPLES if e.lang == "sh" and e.needs is None]
LISTED = [e for e in EXAMPLES if e.lang == "sh" and e.needs is not None]


SHELL_FENCES = ("", "sh", "bash", "shell", "console", "shell-session", "zsh")


def test_every_romlab_example_is_in_an_sh_block_and_tagged_with_a_known_need():
    # A romlab line in any fence a reader would paste from must be in an ```sh block, so it runs
    # here; ```text blocks (diagrams, JSON outlines) are not commands.
    assert not [e.id for e in EXAMPLES if e.lang in SHELL_FENCES and e.lang != "sh"], \
        "romlab examples outside ```sh blocks"
    assert {e.needs for e in LISTED} <= set(NEEDS)
    # The pages do have examples, and most of them run here.
    assert len(RUN) >= 25 and len(RUN) > len(LISTED) / 2, (len(RUN), len(LISTED))


def test_collect_reads_the_convention(tmp_path):
    """The reader itself, on a page written here: fences, continuation lines, tags, other shells."""
    page = tmp_path / "p.md"
    page.write_text("text romlab inspect not.rom\n"
                    "```sh\nmake demo\nromlab lint a.rom          # fine\n"
                    "romlab disasm a.rom --entry bcv   # none here [exit 2]\n"
                    "romlab vm --nic e1000 \\\n    -- romlab list   # [needs: qemu]\n```\n"
                    "   ```\n   sudo romlab nvm --pci 03:00.0 show\n   ```\n")
    got = [(e.line, e.lang, e.exit, e.needs, e.words) for e in collect([page])]
    assert got == [
        (4, "sh", 0, None, ["romlab", "lint", "a.rom"]),
        (5, "sh", 2, None, ["romlab", "disasm", "a.rom", "--entry", "bcv"]),
        (6, "sh", 0, "qemu", ["romlab", "vm", "--nic", "e1000", "--", "romlab", "list"]),
        (10, "", 0, None, ["sudo", "romlab", "nvm", "--pci", "03:00.0", "show"]),
    ]


# -- running them ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A ``romlab`` on PATH that is this tree's, a HOME of its own, and the results of the examples
    run so far (one run each, shared by the examples that need another's output)."""
    root = tmp_path_factory.mktemp("docs-examples")
    bindir = root / "bin"
    bindir.mkdir()
    wrapper = bindir / "romlab"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m romlab \"$@\"\n")
    wrapper.chmod(0o755)
    home = root / "home"
    home.mkdir()
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", HOME=str(home),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("NO_COLOR", None)
    return {"root": root, "env": env, "done": {}}


def _producer(ex: Example, name: str) -> Example | None:
    """The last example before ``ex`` on its page that writes ``name``."""
    earlier = [e for e in RUN if e.page == ex.page and e.line < ex.line and name in e.outputs]
    return earlier[-1] if earlier else None


def run_example(ex: Example, sandbox) -> tuple[subprocess.CompletedProcess, Path]:
    done = sandbox["done"]
    if ex.id in done:
        return done[ex.id]
    work = sandbox["root"] / re.sub(r"[^A-Za-z0-9]+", "_", ex.id)
    work.mkdir()
    for name in ex.inputs:
        if name in FIXTURES:
            src = FIXTURES[name]
            (work / name).write_bytes(src() if callable(src) else src.read_bytes())
            continue
        prod = _producer(ex, name)
        if prod is None:
            continue  # a word, not a file (a verb, an ID, a path outside the directory)
        r, where = run_example(prod, sandbox)
        made = where / name
        if r.returncode != 0 or not made.exists():
            pytest.fail(f"{ex.id} needs {name}, written by {prod.id} ({prod.text!r}), which failed: "
                        f"exit {r.returncode}, {r.stderr.strip()[-300:]}")
        if made.is_dir():
            shutil.copytree(made, work / name)
        else:
            shutil.copyfile(made, work / name)
    r = subprocess.run(["sh", "-c", ex.text], cwd=work, env=sandbox["env"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=300, check=False)
    done[ex.id] = (r, work)
    return r, work


@pytest.mark.parametrize("ex", [pytest.param(e, id=e.id) for e in RUN])
def test_example_exits_as_documented(ex, sandbox):
    r, work = run_example(ex, sandbox)
    said = f"{ex.text}\nexit {r.returncode}\nstdout: {r.stdout[-1500:]}\nstderr: {r.stderr[-1500:]}"
    assert "Traceback" not in r.stderr, said
    assert r.returncode == ex.exit, said
    if ex.exit == 0:
        for out in ex.outputs:
            assert (work / out).exists(), f"{ex.text}: exit 0 but {out} was not written"
    elif ex.exit == 1 and ex.words[1] == "diff":
        assert r.stdout.strip() and not r.stderr, said   # exit 1 is diff's answer "they differ", not an error
    else:
        # The error is one line that says what is wrong: romlab VERB: error: ...
        errors = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and errors[0].startswith(f"romlab {ex.words[1]}: error: "), said
        for out in ex.outputs:
            assert not (work / out).exists(), f"{ex.text}: failed, yet wrote {out}"


@pytest.mark.parametrize("ex", [pytest.param(e, id=e.id) for e in LISTED])
def test_example_needing_a_device_parses_and_is_listed(ex, capsys):
    """Not run (it needs a card or a guest), but its tag is justified and romlab's parser accepts
    it, so a misspelt option or an `a|b` alternative cannot hide behind the tag."""
    from romlab.cli import build_parser

    assert NEEDS[ex.needs](ex.words), f"{ex.id}: nothing in {ex.text!r} needs {ex.needs}"
    argv = ex.words[1:] if ex.words[0] == "romlab" else ex.words[2:]
    parser = build_parser(argv[0])
    try:
        _, extra = parser.parse_known_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{ex.id}: romlab's parser refuses {ex.text!r} (exit {exc.code}): {capsys.readouterr().err}")
    assert not extra, f"{ex.id}: unknown arguments {extra}"
    pytest.skip(f"{ex.id} needs {ex.needs}: {ex.text.split(' #')[0].strip()}")
