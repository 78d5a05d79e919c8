"""hw is the lowest layer: it imports nothing of romlab's other packages, and its modules form no cycle.

Imports are read statically (grimp, the graph behind import-linter), those inside functions
included, so an import put off until a function runs still counts.
"""
from __future__ import annotations

import grimp


def _graph():
    return grimp.build_graph("hw", "romtools", "drivers", "romlab", include_external_packages=False)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_are_in_the_graph():
    # romtools.flash.session imports hw.access only inside PciSession.__init__.
    assert "hw.access" in _graph().find_modules_directly_imported_by("romtools.flash.session")


def test_hw_imports_only_hw():
    g = _graph()
    upward = {(m, i) for m in g.find_descendants("hw") for i in g.find_modules_directly_imported_by(m)
              if i.split(".")[0] != "hw"}
    assert upward == set()


def test_no_import_cycle_among_hw_modules():
    g = _graph()
    mods = g.find_descendants("hw") | {"hw"}
    edges = {m: {i for i in g.find_modules_directly_imported_by(m) if i in mods} for m in mods}
    assert _cycles(edges) == []
