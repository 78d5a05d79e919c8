"""The layers are checked, not described.

import-linter's contracts (pyproject.toml, [tool.importlinter]) hold the four packages in their
order (romlab > drivers > romtools > hw), keep the ROM formats away from devices and processes,
and keep the flashing protocols away from the simulators. The tests below run those contracts,
show that they do catch a forbidden import, and check two things import-linter does not: no import
cycle among romlab's own modules (imports inside functions included), and no module reaching into
another package's private names.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("romlab", "drivers", "romtools", "hw")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_hold():
    r = _lint_imports(REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """The four packages and pyproject.toml, copied so a test can add imports to them."""
    root = tmp_path_factory.mktemp("tree")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(REPO / "pyproject.toml", root)
    return root


@pytest.mark.parametrize("module, added, broken", [
    ("hw/sysfs.py", "from romlab import cli", "hw.sysfs -> romlab.cli"),
    ("romtools/walker.py", "from drivers import frames", "romtools.walker -> drivers.frames"),
    ("romtools/scan.py", "import subprocess", "romtools.scan -> subprocess"),
    ("romtools/flash/spinor.py", "from romtools.flash.sim import chip", "romtools.flash.spinor -> romtools.flash.sim.chip"),
], ids=["hw-imports-cli", "formats-import-driver", "formats-start-process", "protocol-imports-simulator"])
def test_contracts_fail_when_a_forbidden_import_is_added(tree_copy, module, added, broken):
    path = tree_copy / module
    original = path.read_text()
    try:
        # Inside a function, where a lazy import would hide from a reader but not from the check.
        path.write_text(original + f"\n\ndef _added_for_the_test():\n    {added}\n")
        r = _lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert r.returncode != 0
    assert broken in r.stdout, r.stdout[-4000:]


def _project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _imports(path: Path, name: str, is_package: bool) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import statement, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _project_modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for mod, names, _ in _imports(path, name, path.name == "__init__.py"):
            targets = [mod] + [f"{mod}.{n}" for n in names]
            for t in targets:
                if t in mods and t != name:
                    graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_are_in_the_graph():
    # romtools.flash.session imports hw.access only inside PciSession.__init__.
    assert "hw.access" in _graph()["romtools.flash.session"]


def test_no_import_cycle_among_romlab_modules():
    assert _cycles(_graph()) == []


def test_no_module_imports_another_packages_private_names():
    mods = _project_modules()
    found = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for mod, names, line in _imports(path, name, path.name == "__init__.py"):
            if mod.split(".")[0] not in PACKAGES:
                continue
            # A private module (hw._vfio_cdef) or a private name (boot._stage) may be used only by
            # modules of the package that holds it.
            owner = mod.rpartition(".")[0]
            private_mod = any(p.startswith("_") and not p.startswith("__") for p in mod.split("."))
            if private_mod and not (package == owner or package.startswith(owner + ".") and owner):
                found.append(f"{name}:{line} imports {mod}")
            for n in names:
                if n.startswith("_") and not n.startswith("__") and package != mod and \
                        not (f"{mod}.{n}" in mods and package == mod):
                    found.append(f"{name}:{line} imports {mod}.{n}")
    assert found == []


def test_every_format_module_is_under_the_formats_contract():
    """A new module at the top of romtools is a format module, so the no-device contract must name it."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    formats = next(c for c in contracts if c["name"].startswith("ROM formats"))["source_modules"]
    # Build helpers that cffi runs at install time, not format code: they read C headers.
    builders = {"romtools._eficompress_build", "romtools.cheader"}
    modules = {f"romtools.{p.stem}" for p in (REPO / "romtools").glob("*.py") if p.stem != "__init__"}
    assert modules - builders == set(formats)
