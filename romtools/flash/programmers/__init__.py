"""Programmers: the ways romlab reaches a SPI NOR chip.

``parse_spec`` reads a ``--programmer`` value and ``open_hardware`` opens the real ones:

  serprog:tcp=HOST:PORT          serprog over TCP (a network bridge or ``romlab serprog-emu``)
  serprog:dev=PATH[,baud=N]      serprog over a serial device (default 115200 baud)
  file:PATH                      a flash image file, driven as a chip of its size
  ch341a                         a CH341A USB programmer (1a86:5512)
"""
from __future__ import annotations

from hw.errors import FlashError

SPECS = ("serprog:tcp=HOST:PORT", "serprog:dev=PATH[,baud=N]", "file:PATH", "ch341a")


def parse_spec(spec: str) -> tuple[str, dict]:
    kind, _, rest = spec.partition(":")
    if kind == "ch341a":
        if rest:
            raise FlashError(f"ch341a takes no options, got {rest!r}")
        return kind, {}
    if kind == "file":
        if not rest:
            raise FlashError("file: needs a path, e.g. file:flash.bin")
        return kind, {"path": rest}
    if kind == "serprog":
        opts = {}
        for part in filter(None, rest.split(",")):
            key, eq, value = part.partition("=")
            if not eq or key not in ("tcp", "dev", "baud"):
                raise FlashError(f"bad serprog option {part!r}; use {SPECS[0]} or {SPECS[1]}")
            opts[key] = value
        if ("tcp" in opts) == ("dev" in opts):
            raise FlashError(f"serprog needs exactly one of tcp= or dev=; use {SPECS[0]} or {SPECS[1]}")
        if "baud" in opts:
            if not opts["baud"].isdigit():
                raise FlashError(f"bad baud rate {opts['baud']!r}")
            opts["baud"] = int(opts["baud"])
        return kind, opts
    raise FlashError(f"unknown programmer {spec!r}; use one of: {', '.join(SPECS)}")


def open_hardware(kind: str, opts: dict):
    """A programmer that reaches a real chip, from ``parse_spec``'s answer.

    ``file:`` is not one: a flash image file is driven through the chip model
    (``romtools.flash.sim.fileprog``), which the CLI opens itself.
    """
    if kind == "ch341a":
        from romtools.flash.programmers.ch341a import Ch341aProgrammer
        return Ch341aProgrammer()
    if kind == "serprog":
        from romtools.flash.programmers.serprog import SerprogProgrammer
        return SerprogProgrammer(dev=opts.get("dev"), tcp=opts.get("tcp"), baud=opts.get("baud", 115200))
    raise FlashError(f"{kind!r} is not a hardware programmer; use one of: {', '.join(SPECS)}")
