"""Every `romlab` example in README.md and docs/*.md runs as typed and exits as documented.

The convention the pages follow (README.md, "Tests", says it for readers):

* An example is a line starting with ``romlab `` (or ``sudo romlab ``) in a fenced ```` ```sh ````
  block; a line ending in a backslash continues on the next. A romlab line in a plain fence or
  another shell's is an error here, so no example escapes; ```` ```text ```` is for diagrams.
* It runs in ``sh``, in a scratch directory of its own, with ``romlab`` on PATH. The directory
  holds the files it names: the bare names in ``FIXTURES`` (Debian's real ROMs, or images built
  from them), and any file an earlier example on the same page writes with ``-o``/``--output``
  ``--extract`` or ``--read`` (that example runs first and its output is copied in).
* It must exit 0, unless its comment ends with ``[exit N]``; then N, with the error on one line.
  An example that exits 0 must have written every ``-o`` file it names.
* ``[needs: hardware]`` (a real card, programmer or network interface, and root) or
  ``[needs: qemu]`` (it boots a QEMU guest) at the end of the comment: not run in the scratch
  directory. Such a line must show why (``--pci``, ``--programmer``, ``--interface``, ``vfio``,
  ``sudo``; ``vm``, ``boot``, ``bench firmware``) and is parsed by romlab's own parser so its
  options are real. Then it runs where a real part can run it (``placement``): ``boot`` here,
  under QEMU; ``--pci`` and ``vfio`` in tests/test_vm.py's guest on its emulated NICs; ``--programmer
  ch341a`` in tests/test_flash_vm.py's guest on the CH341A emulator. The rest are in
  ``PARSED_ONLY``, each with the reason, and are reported as skips naming it, so the count of
  examples not run is in every test summary.
"""
from __future__ import annotations

import json
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
    "my.rom": IPXE_QEMU / "pxe-e1000.rom",         # docs/hardware.md: the ROM a guest's e1000 carries
    "ipxe.rom": IPXE_QEMU / "pxe-e1000e.rom",      # docs/flashing.md: iPXE built for the 82574L (8086:10d3)
    "card-flash.bin": _padded("pxe-e1000e.rom", 128 << 10),          # an 82574L's 128 KiB flash holding it
    "flash-dump.bin": _padded("pxe-e1000.rom", 256 << 10, 0x10000),  # a ROM 64 KiB into a 256 KiB dump
}

NEEDS = {
    "hardware": lambda w: bool({"--pci", "--programmer", "--interface"} & set(w)) or w[0] == "sudo"
    or w[1] == "vfio",
    "qemu": lambda w: w[1] in ("vm", "boot", "lab") or w[1:3] == ["bench", "firmware"] or "--qemu" in w,
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
                if w in ("-o", "--output", "--extract", "--read")]

    @property
    def inputs(self) -> list[str]:
        outs = set(self.outputs)
        words = []
        for w in self.words[1:]:
            if w in outs or w.startswith("-"):
                continue
            words.append(w)
            # a MODEL,KEY=VALUE list names files in its values too (--nic e1000,romfile=my.rom)
            words += [kv.split("=", 1)[1] for kv in w.split(",") if "=" in kv and kv.split("=", 1)[1] not in outs]
        return words


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
    # the guest kernel set-up unpacked, and the KVM probe's verdict, stay where set-up put them
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
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


# -- where the examples that need a device or a guest run --------------------------------------

# Examples no real part here can run, by their text (the comment left off), and why.
PARSED_ONLY = {
    "romlab lab fleet up --hosts 3 --dir lab --rom /usr/lib/ipxe/qemu/pxe-e1000.rom":
        "boots three guests that stay up; tests/test_fleet_vm.py runs the lab fleet",
    "romlab lab fleet down --dir ../lab": "needs a running lab fleet (tests/test_fleet_vm.py)",
    "sudo romlab flash --pci 03:00.0 --unbind --read card-flash.bin":
        "in-system flash access needs the NIC's FLA register; QEMU's e1000/e1000e have none "
        "(tests/test_flash_vm.py checks that refusal)",
    "sudo romlab flash --pci 03:00.0 --unbind ipxe.rom --dry-run": "needs FLA, which QEMU's NICs lack",
    "sudo romlab flash --pci 03:00.0 --unbind ipxe.rom": "needs FLA, which QEMU's NICs lack",
    "sudo romlab flash --pci 03:00.0 --unbind ipxe.rom --verify-only": "needs FLA, which QEMU's NICs lack",
    "sudo romlab restore ~/.local/share/romlab/backups/20260101T120000Z-ef3013-1a2b3c4d.bin --pci 03:00.0 --unbind":
        "writes a card's flash through FLA, which QEMU's NICs lack, from a backup of that card",
    "romlab bench native --pci 03:00.0 --plot native.png":
        "18 figures of 3 s each by design, over a minute of guest time beside pktgen's set-up; "
        "tests/test_nic_vm.py runs bench native in its guest",
    "romlab bench undi --pci 03:00.0 --plot undi.png":
        "runs the ROM's UNDI in an emulated PC, which inside a TCG guest would be emulation in "
        "emulation, for 2 s figures and a trace per size; tests/test_undi_bench.py runs it on the register model",
    "romlab undi recv --pci 03:00.0 --count 100 --json":
        "needs frames paced to what the ROM's UNDI takes under emulation in a guest (tens a second), "
        "not the docs peer's flood; tests/test_undi_vm.py runs undi recv against a paced kernel peer",
    "romlab serve --interface eth1":
        "serves a real lab network beside its DHCP server until interrupted; "
        "tests/test_bench_firmware_serve.py runs serve in a namespace lab",
    "sudo romlab nic vfs --pci 01:00.0 --count 2":
        "needs an SR-IOV physical function (QEMU's igb), which tests/test_vm.py's guest has not; "
        "tests/test_sriov.py runs the verb on a crafted sysfs tree, and bench native in tests/test_nic_vm.py "
        "makes VFs on an igb PF through the same hw.pci path",
    "romlab bench firmware --nic e1000,e1000e,rtl8139,virtio-net --plot firmware.png":
        "four NIC models, each its own guest boot with three 16 MiB downloads per path; "
        "tests/test_bench_firmware.py runs its short variant",
}

# The NIC of a guest that stands for the page's 03:00.0: flashing.md is about an 82574L.
ROLE = {"docs/flashing.md": "e1000e"}
DOC_BDF = "03:00.0"


def command(ex: Example) -> str:
    return ex.text.split(" #", 1)[0].strip()


def argv_of(ex: Example) -> list[str]:
    """The words after ``romlab`` (and ``sudo``)."""
    return ex.words[1:] if ex.words[0] == "romlab" else ex.words[2:]


def placement(ex: Example) -> str:
    """Where an example tagged with a need runs: ``host`` (here, under QEMU: `boot`, and `vm` with a
    guest of its own), ``vm`` (the guest
    of tests/test_vm.py), ``flash_vm`` (the guest of tests/test_flash_vm.py) or ``parsed``."""
    w = argv_of(ex)
    if command(ex) in PARSED_ONLY:
        return "parsed"
    if w[0] in ("boot", "vm"):
        return "host"   # a guest of its own: since QEMU 10 and one vCPU, 20-40 s a boot
    if "--programmer" in w and w[w.index("--programmer") + 1] == "ch341a":
        return "flash_vm"
    if "--pci" in w or w[0] == "vfio":
        return "vm"
    raise AssertionError(f"{ex.id}: {ex.text!r} runs nowhere; give it a place or a PARSED_ONLY reason")


def guest_examples(where: str) -> list[dict]:
    """The examples a guest runs, as the guest program reads them (JSON): argv after ``romlab``
    with the page's 03:00.0 as ``{bdf}``, the guest NIC that stands for it, the driver the page
    says the NIC has before (vfio-pci for `nic` and `vfio unbind`, its own kernel driver else),
    whether frames must arrive from a peer (`nic recv`), and the fixture files it names."""
    out = []
    for ex in LISTED:
        if placement(ex) != where:
            continue
        argv = argv_of(ex)
        assert ex.words[0] == "romlab" or ex.words[:2] == ["sudo", "romlab"], ex.text  # guests run as root
        for name in ex.inputs:
            assert name in FIXTURES or _producer(ex, name) is None, \
                f"{ex.id}: a guest has only fixtures, not {name} from another example"
        vfio_first = argv[0] == "nic" or argv[:2] == ["vfio", "unbind"]
        out.append({"id": ex.id, "argv": ["{bdf}" if a == DOC_BDF else a for a in argv],
                    "role": ROLE.get(ex.page, "e1000") if DOC_BDF in argv else None,
                    "driver": "vfio-pci" if vfio_first else "kernel",
                    "peer": argv[:2] == ["nic", "recv"],
                    "fixtures": [n for n in ex.inputs if n in FIXTURES], "outputs": ex.outputs})
    return out


def export_for_guest(where: str, share: Path) -> list[dict]:
    """Write ``share/docs-examples.json`` and the fixtures it names (``share/docs-fixtures``)."""
    todo = guest_examples(where)
    fix = share / "docs-fixtures"
    fix.mkdir(exist_ok=True)
    for name in {n for e in todo for n in e["fixtures"]}:
        src = FIXTURES[name]
        (fix / name).write_bytes(src() if callable(src) else src.read_bytes())
    (share / "docs-examples.json").write_text(json.dumps(todo, indent=1))
    return todo


def check_run(ex: Example, rc, stdout: str, stderr: str, work: Path) -> None:
    """The example exited as its page says: wherever it ran."""
    said = f"{ex.text}\nexit {rc}\nstdout: {stdout[-1500:]}\nstderr: {stderr[-1500:]}"
    assert "Traceback" not in stderr, said
    assert rc == ex.exit, said
    if ex.exit == 0:
        for out in ex.outputs:
            assert (work / out).exists(), f"{ex.text}: exit 0 but {out} was not written"
    elif ex.exit == 1 and argv_of(ex)[0] == "diff":
        assert stdout.strip() and not stderr, said   # exit 1 is diff's answer "they differ", not an error
    else:
        # The error is one line that says what is wrong: romlab VERB: error: ...
        errors = [ln for ln in stderr.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and errors[0].startswith(f"romlab {argv_of(ex)[0]}: error: "), said
        for out in ex.outputs:
            assert not (work / out).exists(), f"{ex.text}: failed, yet wrote {out}"


def check_guest_run(where: str, share: Path, ex_id: str) -> dict:
    """The example ``ex_id``, placed in this guest, ran there and exited as documented (the
    guest's record in ``share/docs-results.json``, its scratch directory under ``share/docs``)."""
    ran = json.loads((share / "docs-results.json").read_text())
    assert [r["id"] for r in ran] == [e["id"] for e in guest_examples(where)], \
        [r for r in ran if "exception" in r]
    rec = next(r for r in ran if r["id"] == ex_id)
    assert "exception" not in rec, rec["exception"]
    check_run(next(e for e in LISTED if e.id == ex_id), rec["rc"], rec["stdout"], rec["stderr"], Path(rec["work"]))
    return rec


HOST_QEMU = [e for e in LISTED if placement(e) == "host"]


@pytest.mark.parametrize("ex", [pytest.param(e, id=e.id) for e in RUN]
                         + [pytest.param(e, id=e.id, marks=pytest.mark.qemu) for e in HOST_QEMU])
def test_example_exits_as_documented(ex, sandbox):
    r, work = run_example(ex, sandbox)
    check_run(ex, r.returncode, r.stdout, r.stderr, work)


def test_every_example_needing_a_device_runs_somewhere_or_says_why_not():
    places = {e.id: placement(e) for e in LISTED}   # raises for an example placed nowhere
    assert set(PARSED_ONLY) <= {command(e) for e in LISTED}, \
        f"PARSED_ONLY names examples no page has: {set(PARSED_ONLY) - {command(e) for e in LISTED}}"
    assert all(PARSED_ONLY[command(e)].strip() for e in LISTED if places[e.id] == "parsed")
    # The guests' programs receive exactly the examples placed there (test_vm.py and
    # test_flash_vm.py check that each of those ran and exited as documented).
    for where in ("vm", "flash_vm"):
        assert [g["id"] for g in guest_examples(where)] == [e.id for e in LISTED if places[e.id] == where]
    counts = {w: sum(1 for p in places.values() if p == w) for w in ("host", "vm", "flash_vm", "parsed")}
    print(f"examples needing a device or a guest: {counts}")
    # Most of them run: only those no part here can run are parsed only.
    assert counts["parsed"] <= len(PARSED_ONLY) and counts["parsed"] < len(LISTED) / 3, counts


@pytest.mark.parametrize("ex", [pytest.param(e, id=e.id) for e in LISTED])
def test_example_needing_a_device_parses_and_is_listed(ex, capsys):
    """Its tag is justified and romlab's parser accepts it, so a misspelt option or an `a|b`
    alternative cannot hide behind the tag; one run nowhere is reported as a skip with the reason."""
    from romlab.cli import build_parser

    assert NEEDS[ex.needs](ex.words), f"{ex.id}: nothing in {ex.text!r} needs {ex.needs}"
    argv = argv_of(ex)
    parser = build_parser(argv[0])
    try:
        _, extra = parser.parse_known_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{ex.id}: romlab's parser refuses {ex.text!r} (exit {exc.code}): {capsys.readouterr().err}")
    assert not extra, f"{ex.id}: unknown arguments {extra}"
    if placement(ex) == "parsed":
        pytest.skip(f"{ex.id} needs {ex.needs}, parsed only: {command(ex)}: {PARSED_ONLY[command(ex)]}")
