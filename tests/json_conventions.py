"""docs/conventions.md as a checker: every rule a ``--json`` document must keep, as code.

``check(doc, schema)`` returns the list of broken rules, each naming the path to the value, so a
failure reads like a review comment. Used by tests/test_conventions.py (every verb) and by the
tests of verbs that need set-ups of their own (serve's lab).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

SCHEMA = re.compile(r"romlab\.([a-z][a-z0-9-]*)/([1-9][0-9]*)")
PAIR = re.compile(r"[0-9a-f]{4}:[0-9a-f]{4}")
WORD = re.compile(r"[0-9a-f]{4}")
CLASS = re.compile(r"[0-9a-f]{6}")
HEX = re.compile(r"[0-9a-f]+")
BDF = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
TIMELIKE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

# Keys whose value is spelled one way everywhere (docs/conventions.md, "Identifiers").
SPELLED = {"id": PAIR, "subsystem": PAIR, "card_id": PAIR, "rom_id": PAIR, "vendor": WORD, "device": WORD,
           "nvm_device": WORD, "class": CLASS, "bdf": BDF}
# Other identifiers: lowercase hex without 0x, the width their field has.
IDENTIFIERS = {"jedec": 6, "opcode": 2, "code_type": 2, "machine": 4, "efi_subsystem": 4, "compression": 4,
               "efi_signature": 8, "build_id": 8, "device_type": 6, "device_id": 8, "option": 2}
# Spellings the conventions replaced: a document using one has not been brought over.
RETIRED = {"source", "vendor_id", "class_code", "pci_ids", "rom_pci_ids", "card_pci_ids",
           "device_ids", "exit_status", "seconds", "mbps", "t", "names"}
# Text in another tool's syntax (an instruction's operands as capstone prints them, a console line).
TEXT = {"op_str", "line", "message", "console", "console_tail", "summary"}
# Quantities are integers (or null where absent).
# A key is one when its last word (after "_", or the whole key) is one of these: "backend" is not
# an "end". ("bytes" alone is data, a disassembled instruction's bytes in hex; "_bytes" is a count.)
QUANTITY = re.compile(r"(?:^|_)(offset|size|length|count|blocks|ptr|rva|iova|start|end|available)$|_bytes$")
# Documents with no input: `list` (the machine), `lint --rules` (the rule table), `batch` (each
# result has its own).
NO_INPUT = {"list", "lint-rules", "batch"}
# Documents with several inputs, listed under "inputs": `combine` and `diff` (ROMs), `bench firmware`
# (the NIC models QEMU emulates, "qemu:e1000"), `bench native` (the NICs it measures, "pci:...").
SEVERAL_INPUTS = {"combine", "diff", "bench-firmware", "bench-native"}


def check(doc, schema: str | None = None) -> list[str]:
    """Every way ``doc`` breaks the conventions; [] when it keeps them all."""
    errs: list[str] = []
    if not isinstance(doc, dict):
        return [f"the document is a {type(doc).__name__}, not an object"]
    keys = list(doc)
    if not keys or keys[0] != "schema":
        errs.append(f"first key is {keys[:1]}, not 'schema'")
    m = SCHEMA.fullmatch(str(doc.get("schema")))
    if not m:
        errs.append(f"schema {doc.get('schema')!r} is not romlab.<verb>/<n>")
        return errs
    if schema is not None and doc["schema"] != schema:
        errs.append(f"schema is {doc['schema']!r}, expected {schema!r}")
    name = m.group(1)
    if name in SEVERAL_INPUTS:
        ins = doc.get("inputs")
        if not (isinstance(ins, list) and ins and all(isinstance(i, str) for i in ins)):
            errs.append(f"'inputs' is {ins!r}, not a list of the inputs")
        if "input" in doc:
            errs.append("'input' in a document of several inputs (they are 'inputs')")
    elif name not in NO_INPUT and "input" not in doc:
        errs.append("no 'input'")
    inp = doc.get("input")
    if isinstance(inp, str) and inp.startswith("pci:") and not BDF.fullmatch(inp[4:]):
        errs.append(f"input {inp!r}: a device input is pci:DDDD:BB:DD.F, domain included")
    if name == "batch":
        for i, sub in enumerate(doc.get("results", [])):
            if isinstance(sub, dict) and set(sub) == {"input", "exit", "error"}:
                continue                   # an input that could not be read: its one-line error
            errs += [f"results[{i}]: {e}" for e in check(sub)]
        if not isinstance(doc.get("exit"), int):
            errs.append("batch without an integer 'exit'")
        return errs
    _walk(doc, "", errs)
    return errs


def _walk(node, path: str, errs: list[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else k
            _key(k, v, here, errs)
            if k not in TEXT:
                _walk(v, here, errs)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, f"{path}[{i}]", errs)
    elif isinstance(node, str):
        if re.fullmatch(r"0x[0-9a-fA-F]+", node):
            errs.append(f"{path}: {node!r} is written with 0x")
        if TIMELIKE.match(node):
            _time(node, path, errs)


def _key(k: str, v, path: str, errs: list[str]) -> None:
    if k in RETIRED:
        errs.append(f"{path}: the key {k!r} is a retired spelling")
    if k == "schema" and "." in path:
        return
    if k in SPELLED and v is not None and not (isinstance(v, str) and SPELLED[k].fullmatch(v)):
        errs.append(f"{path}: {v!r} is not spelled as {SPELLED[k].pattern}")
    if k in IDENTIFIERS and v is not None:
        if not (isinstance(v, str) and HEX.fullmatch(v) and len(v) == IDENTIFIERS[k]):
            errs.append(f"{path}: {v!r} is not a {IDENTIFIERS[k]}-digit lowercase hex identifier")
    if k == "devices" and isinstance(v, list):
        for i, d in enumerate(v):
            if not isinstance(d, dict) and not (isinstance(d, str) and WORD.fullmatch(d)):
                errs.append(f"{path}[{i}]: {d!r} is not a device ID like '100e'")
    if k == "stop" and v is not None and not (isinstance(v, dict) and isinstance(v.get("reason"), str)):
        errs.append(f"{path}: a stop is an object with a 'reason' (null: nothing walked), not {v!r}")
    if QUANTITY.search(k) and v is not None and not isinstance(v, bool) and not isinstance(v, (int, dict, list)):
        errs.append(f"{path}: {v!r} is a quantity and must be an integer")
    if k.endswith("_s") and v is not None and not (isinstance(v, (int, float, list)) and not isinstance(v, bool)):
        errs.append(f"{path}: {v!r} carries a unit in its key and must be a number")


def _time(text: str, path: str, errs: list[str]) -> None:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        errs.append(f"{path}: {text!r} looks like a time but is not ISO 8601")
        return
    if t.utcoffset() is None:
        errs.append(f"{path}: {text!r} has no time zone")
    elif t.utcoffset() != timedelta(0):
        errs.append(f"{path}: {text!r} is not in UTC")
