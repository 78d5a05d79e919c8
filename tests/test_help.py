"""The CLI's manners: help like git's (an example per verb, one line per choice, did-you-mean),
-q/-v on every verb in either position, --version only at the top, group verbs that list their
actions, and the man page and shell completion made from the parser and installed by set-up."""
from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_romlab

from romlab import __version__
from romlab.cli import VERBS, build_parser, main

PXE_E1000 = "/usr/lib/ipxe/qemu/pxe-e1000.rom"

# The actions of the verbs that have them, written out from the README and docs/flashing.md.
ACTIONS = {
    "vfio": ["bind", "unbind", "info"],
    "nic": ["info", "send", "recv", "vfs"],
    "undi": ["info", "send", "recv"],
    "bench": ["firmware", "native", "undi"],
    "nvm": ["show", "fix-checksum", "set"],
}


def _help(*words: str) -> str:
    """What `romlab WORDS --help` prints, from a parser built the way main builds it."""
    parser = build_parser(words[0])
    for word in words:
        parser = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]
    return parser.format_help()


def _examples(help_text: str) -> list[str]:
    """The commands under "examples:" (indented two spaces; their explanations four more)."""
    assert "\nexamples:\n" in help_text
    body = help_text.split("\nexamples:\n", 1)[1]
    return [line[2:] for line in body.splitlines() if re.match(r"^  \S", line)]


def _parse(argv: list[str]):
    return build_parser(None).parse_args(argv)


def _one_line(r) -> str:
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- did you mean -------------------------------------------------------------------------------

def test_mistyped_verb_suggests_the_verb():
    err = _one_line(run_romlab("insp", PXE_E1000))
    assert "'insp' is not a romlab command; did you mean 'inspect'?" in err


def test_mistyped_option_suggests_the_option():
    err = _one_line(run_romlab("inspect", "--jsn", PXE_E1000))
    assert "'--jsn'" in err and "did you mean '--json'?" in err
    # in an action's parser, and ahead of the argument that is also missing (patch needs -o)
    err = _one_line(run_romlab("nic", "send", "--pci", "03:00.0", "--cuont", "5"))
    assert "did you mean '--count'?" in err
    err = _one_line(run_romlab("patch", PXE_E1000, "--fix-checksums", "--jsno"))
    assert "'--jsno'" in err and "did you mean '--json'?" in err and "required" not in err
    err = _one_line(run_romlab("patch", PXE_E1000, "--vendr", "8086"))
    assert "did you mean '--vendor'?" in err


def test_mistyped_action_suggests_the_action():
    err = _one_line(run_romlab("vfio", "bnid", "03:00.0"))
    assert "did you mean 'bind'?" in err
    err = _one_line(run_romlab("nvm", "--qemu", "e1000", "shwo"))
    assert "did you mean 'show'?" in err


# --- verbs with actions -------------------------------------------------------------------------

@pytest.mark.parametrize("verb", sorted(ACTIONS))
def test_bare_group_verb_lists_its_actions(verb):
    r = run_romlab(verb)
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b""
    assert err.startswith(f"usage: romlab {verb} ")
    listed = re.findall(r"^  ([a-z][a-z-]*)  ", err, re.M)
    assert listed == ACTIONS[verb]
    assert "required" not in err and "WORD=VALUE is" not in err and "error:" not in err
    # -q/-v alone are not an action either
    assert run_romlab(verb, "-q").stderr == r.stderr


def test_nvm_set_words_are_optional_for_the_parser():
    args = _parse(["nvm", "--qemu", "e1000", "show"])
    assert args.action == "show" and args.words == []


# --- help text ----------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_examples_that_parse(verb):
    examples = _examples(_help(verb))
    assert examples and all(e.startswith(f"romlab {verb} ") or e == f"romlab {verb}" for e in examples)
    for command in examples:
        words = shlex.split(command)[1:]
        args = _parse([os.path.expanduser(w) for w in words])   # exits 2 on a bad example
        assert args.command == verb


# The ROM verbs whose examples a reader types in order, one verb's outputs feeding the next's
# (extract writes e1000.efi, efi-rom efi.rom, combine reads it).
TYPED_IN_ORDER = ["inspect", "lint", "disasm", "scan", "diff", "patch", "split", "extract", "efi-rom", "combine", "pad",
                  "undi"]


def test_rom_examples_name_files_a_reader_has_or_says_where_they_come_from():
    """A file an example reads is one of Debian's by its full path (it exists here), the output of
    an earlier example, or named in the example's own explanation: no bare name from nowhere."""
    import glob
    from importlib import import_module

    made: set[str] = set()
    for verb in TYPED_IN_ORDER:
        for command, what in import_module(f"romlab.cli.{VERBS[verb]}").EXAMPLES:
            words = shlex.split(command)[2:]
            outs = {words[i + 1].rstrip("/") for i, w in enumerate(words[:-1]) if w in ("-o", "--output", "--extract")}
            for w in words:
                if w.startswith("-") or w.rstrip("/") in outs or not re.search(r"\.(rom|bin|efi|img)$", w):
                    continue
                if os.path.isabs(w):
                    assert glob.glob(w), f"{command}: {w} does not exist"
                else:
                    assert w in made or w in what, f"{command}: where does {w} come from?"
            made |= outs


def test_help_subprocess_shows_examples():
    r = run_romlab("flash", "--help")
    assert r.returncode == 0
    assert "\nexamples:\n  romlab flash --programmer " in r.stdout.decode()


def test_flash_and_nvm_descriptions_one_line_per_choice():
    flash = _help("flash")
    for line in ("  serprog:tcp=HOST:PORT ", "  serprog:dev=PATH[,baud=N] ", "  file:PATH ", "  ch341a ",
                 "  --read OUT ", "  --verify-only ", "  --dry-run ", "  --resume ",
                 "  rom-at-0 ", "  i210 ", "  FILE "):
        assert re.search("^" + re.escape(line), flash, re.M), line
    nvm = _help("nvm")
    for action in ACTIONS["nvm"]:
        assert re.search(rf"^  {re.escape(action)}  +\S", nvm, re.M), action


@pytest.mark.parametrize("verb", sorted(ACTIONS.keys() - {"nvm"}))
def test_actions_explain_themselves(verb):
    for action in ACTIONS[verb]:
        text = _help(verb, action)
        description = text.split("\n\n")[1]
        assert not description.startswith(("positional arguments", "options")), (verb, action)
        assert len(description) > 80, (verb, action, description)


def test_vm_help_documents_every_nic_key():
    from romlab.lab.qemu import LAB_KEYS

    text = _help("vm")
    # romlab's own keys, and the QEMU properties a ROM experiment needs
    for key in (*LAB_KEYS, "romfile", "romsize", "rombar", "mac"):
        assert re.search(rf"^  {key}=", text, re.M), key


def test_lint_rules_json():
    r = run_romlab("lint", "--rules", "--json")
    assert r.returncode == 0
    import json

    doc = json.loads(r.stdout)
    assert doc["schema"] == "romlab.lint-rules/2"
    rules = doc["rules"]
    # "rule" as a finding names it; "origin", not "source", which the conventions keep from meaning the input
    assert rules and all(set(rule) == {"rule", "severity", "origin", "summary"} for rule in rules)
    assert all(rule["severity"] in ("error", "warning", "info") for rule in rules)
    text = run_romlab("lint", "--rules").stdout.decode().splitlines()
    assert [(r["rule"], r["severity"]) for r in rules] == [tuple(line.split()[:2]) for line in text]


# --- --version, -q, -v --------------------------------------------------------------------------

def test_version_only_at_the_top(capsys):
    r = run_romlab("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"romlab {__version__}"
    for verb in VERBS:
        with pytest.raises(SystemExit) as e:
            main([verb, "--version"])
        assert e.value.code == 2, verb
        assert "--version is an option of romlab itself" in capsys.readouterr().err, verb


def _first_example(verb: str) -> list[str]:
    return [os.path.expanduser(w) for w in shlex.split(_examples(_help(verb))[0])[1:]]


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_quiet_and_verbose_anywhere(verb):
    argv = _first_example(verb)           # [verb, (action,) ...]
    head = 2 if verb in ACTIONS and verb != "nvm" else 1
    plain = _parse(argv)
    assert plain.quiet is False and plain.verbose is False
    for short, long, dest in (("-q", "--quiet", "quiet"), ("-v", "--verbose", "verbose")):
        other = "verbose" if dest == "quiet" else "quiet"
        places = [[short, *argv], [argv[0], short, *argv[1:]], [*argv[:head], long, *argv[head:]]]
        if verb != "vm":                  # vm's COMMAND takes every word after it
            places.append([*argv, short])
        for words in places:
            args = _parse(words)
            assert getattr(args, dest) is True and getattr(args, other) is False, words


def test_quiet_and_verbose_reach_the_verb():
    r = run_romlab("-q", "inspect", PXE_E1000)
    assert r.returncode == 0 and r.stdout == run_romlab("inspect", PXE_E1000, "--verbose").stdout


def _run_on_pty_stderr(argv: list[str], env: dict) -> tuple[int, bytes, bytes]:
    """Run romlab with stderr on a terminal (where the flash progress bar draws): (status, out, err)."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "romlab", *argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        assert ready, "romlab hung"
        try:
            chunk = os.read(master, 65536)
        except OSError:       # EIO: the child closed its end
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    out = p.stdout.read()
    p.stdout.close()
    return p.wait(timeout=120), out, err


def test_flash_quiet_drops_the_progress_bar_and_verbose_shows_the_blocks(tmp_path, backups):
    env = {**os.environ, "ROMLAB_BACKUP_DIR": str(backups)}
    runs = {}
    for flag in ("", "-q", "-v"):
        chip = tmp_path / f"chip{flag}.bin"
        chip.write_bytes(b"\xff" * (512 << 10))
        argv = ["flash", "--programmer", f"file:{chip}", PXE_E1000, *([flag] if flag else [])]
        runs[flag] = _run_on_pty_stderr(argv, env)
        assert runs[flag][0] == 0, runs[flag]
        assert chip.read_bytes()[:len(Path(PXE_E1000).read_bytes())] == Path(PXE_E1000).read_bytes()
    assert b"[#" in runs[""][2] and b"block 0x" not in runs[""][2]
    assert runs["-q"][2] == b""
    rom_size = Path(PXE_E1000).stat().st_size
    blocks = re.findall(rb"block 0x([0-9a-f]+)-0x([0-9a-f]+): ", runs["-v"][2])
    # every erased block lies in the ROM's span from 0, and together they cover it
    assert blocks and int(blocks[0][0], 16) == 0 and int(blocks[-1][1], 16) + 1 >= rom_size
    def result(out: bytes) -> list[bytes]:   # the backup's name has the time in it
        return [line for line in out.splitlines() if not line.startswith(b"backup: ")]

    assert result(runs[""][1]) == result(runs["-q"][1]) == result(runs["-v"][1])


def test_verbose_errors_show_their_cause(monkeypatch, capsys):
    import romlab.cli.inspect as verb
    from hw.errors import FormatError

    def fail(args):
        try:
            raise OSError(5, "Input/output error")
        except OSError as exc:
            raise FormatError("cannot read the ROM") from exc

    monkeypatch.setattr(verb, "run", fail)
    assert main(["inspect", "x.rom"]) == 2
    err = capsys.readouterr().err
    assert err == "romlab inspect: error: cannot read the ROM\n"
    assert main(["inspect", "x.rom", "-v"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["romlab inspect: error: cannot read the ROM", "  caused by: OSError: [Errno 5] Input/output error"]


def test_verbose_internal_error_shows_the_traceback(monkeypatch, capsys):
    import romlab.cli.inspect as verb

    monkeypatch.delenv("ROMLAB_DEBUG", raising=False)
    monkeypatch.setattr(verb, "run", lambda args: {}["missing"])
    assert main(["inspect", "x.rom"]) == 70
    assert "Traceback" not in capsys.readouterr().err
    assert main(["-v", "inspect", "x.rom"]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'missing'" in err


def test_no_colour_codes_on_a_terminal_with_no_color():
    import pty

    for argv in (["--help"], ["inspect", PXE_E1000], ["lint", PXE_E1000], ["insp"]):
        master, slave = pty.openpty()
        p = subprocess.Popen([sys.executable, "-m", "romlab", *argv], stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=slave, env={**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color"})
        os.close(slave)
        out = b""
        while select.select([master], [], [], 60)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        p.wait(timeout=60)
        assert out and b"\x1b" not in out, argv


def test_a_verb_imports_only_its_own_module():
    code = ("import sys; from romlab.cli import main; main(['inspect', %r]); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('romlab.cli.') or m == 'shtab')))"
            % PXE_E1000)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[-1].split() == ["romlab.cli._common", "romlab.cli.inspect"]


# --- man page and completion --------------------------------------------------------------------

def _render_man(path: Path) -> str:
    r = subprocess.run(["man", "-l", str(path)], capture_output=True, timeout=60,
                       env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_man_page_renders(tmp_path):
    from romlab.cli._manual import man_page

    page = tmp_path / "romlab.1"
    page.write_text(man_page())
    warnings = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, timeout=60)
    assert warnings.returncode == 0 and warnings.stderr == b"", warnings.stderr
    text = _render_man(page)
    assert re.search(r"^NAME\n +romlab - a workbench for network-card option ROMs", text, re.M)
    for verb in VERBS:
        assert re.search(rf"^   romlab {re.escape(verb)}$", text, re.M), verb
    assert re.search(r"^   romlab vfio info$", text, re.M)
    # a list stays one entry per choice, options keep their hyphens, examples are there
    assert re.search(r"^ +serprog:dev=PATH\[,baud=N\]$", text, re.M)
    assert re.search(r"^ +--verify-only$", text, re.M)
    assert re.search(r"^ +romlab inspect /usr/lib/ipxe/qemu/efi-e1000.rom$", text, re.M)


def _bash_complete(script: Path, words: list[str]) -> list[str]:
    """What bash completes for the last of ``words``, through the function `complete -p romlab` names."""
    line = " ".join(words)
    prog = (f"source {shlex.quote(str(script))}\n"
            "spec=$(complete -p romlab) || exit 3\n"
            "fn=${spec##*-F }; fn=${fn%% *}\n"
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
            f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n"
            f"\"$fn\" romlab {shlex.quote(words[-1])} {shlex.quote(words[-2])}\n"
            "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w.strip() for w in r.stdout.decode().splitlines() if w.strip()]


def test_bash_completion(tmp_path):
    from romlab.cli._manual import completion

    script = tmp_path / "romlab"
    script.write_text(completion("bash"))
    assert _bash_complete(script, ["romlab", "ins"]) == ["inspect"]
    assert _bash_complete(script, ["romlab", "-q", "fl"]) == ["flash"]
    assert _bash_complete(script, ["romlab", "inspect", "--js"]) == ["--json"]
    assert _bash_complete(script, ["romlab", "vfio", ""]) == ACTIONS["vfio"]
    assert sorted(_bash_complete(script, ["romlab", ""])) == sorted(VERBS)


def test_zsh_completion_is_a_compdef():
    from romlab.cli._manual import completion

    text = completion("zsh")
    assert text.startswith("#compdef romlab")
    assert all(f"{verb}:" in text or f"'{verb}'" in text or f'"{verb}' in text for verb in VERBS)


def test_setup_installed_the_man_page_completion_and_command():
    """scripts/setup.sh (run by `make test` and CI first) put these where a user's shell finds them."""
    where = subprocess.run(["man", "-w", "romlab"], capture_output=True, timeout=60)
    assert where.returncode == 0, "`man romlab` finds no page: run scripts/setup.sh"
    text = _render_man(Path(where.stdout.decode().strip()))
    assert "romlab - a workbench for network-card option ROMs" in text and re.search(r"^   romlab inspect$", text, re.M)
    dirs = [Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "bash-completion/completions",
            Path("/usr/local/share/bash-completion/completions"), Path("/usr/share/bash-completion/completions")]
    found = [d / "romlab" for d in dirs if (d / "romlab").is_file()]
    assert found, "no bash completion for romlab installed: run scripts/setup.sh"
    assert _bash_complete(found[0], ["romlab", "ins"]) == ["inspect"]
    assert sorted(_bash_complete(found[0], ["romlab", ""])) == sorted(VERBS)
    command = shutil.which("romlab", path=os.environ.get("PATH", "") + os.pathsep + str(Path.home() / ".local/bin"))
    assert command, "no romlab command on PATH"
    r = subprocess.run([command, "--version"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.decode().strip() == f"romlab {__version__}"
