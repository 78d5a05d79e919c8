"""How every ``--json`` document spells things: one home for the rules in docs/conventions.md.

Scripts read romlab's output the way people read lspci's: a vendor:device pair is "8086:100e", a
class code "020000". Keeping every spelling here means a verb cannot drift into its own (an
integer ID in one document and a string in the next is what the conventions were written to end).
"""
from __future__ import annotations

from typing import Any


def hexid(value: int | None, digits: int) -> str | None:
    """An identifier (JEDEC ID, opcode, signature, type code) as lowercase hex, ``digits`` wide, no 0x."""
    if value is None:
        return None
    return f"{value:0{digits}x}"


def pci_id(vendor: int | None, device: int | None) -> str | None:
    """A vendor:device (or subsystem vendor:device) pair as lspci -n prints it: "8086:100e"."""
    if vendor is None or device is None:
        return None
    return f"{vendor:04x}:{device:04x}"


def pci_word(value: int | None) -> str | None:
    """A vendor or device ID standing alone (a PCIR field, a device-list entry): "8086"."""
    return hexid(value, 4)


def class_code(value: int | None) -> str | None:
    """A 24-bit class code, base class first, as lspci -n prints it: "020000"."""
    return hexid(value, 6)


def device_input(bdf) -> str:
    """The ``input`` of a verb that reads a PCI device: "pci:0000:03:00.0" (the domain always there)."""
    from hw.pci import parse_bdf

    return f"pci:{parse_bdf(str(bdf))}"


def utc_now() -> str:
    """Now, in UTC, ISO 8601 with its zone and whole seconds: "2026-11-28T22:10:00+00:00"."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def document(schema: str, **fields: Any) -> dict[str, Any]:
    """A ``--json`` document: one object, ``schema`` ("romlab.<verb>/<n>") its first key."""
    return {"schema": schema, **fields}


def batch(verb: str, results: list[dict], exit_status: int) -> dict[str, Any]:
    """The one document a read verb prints for several inputs: each input's own document, in order,
    and the worst exit status among them (the status the command exits with)."""
    return document("romlab.batch/1", verb=verb, exit=exit_status, results=results)
