"""A firmware serial console turned into lines and boot events.

Firmware writes to serial as if to a screen: ANSI colour and cursor sequences,
backspaces that erase spinner characters, carriage returns that rewrite a line, and
(SeaBIOS's serial console) a CR LF inserted at column 80. :class:`Console` undoes
those so each line reads as it looked on screen, and recognises the lines that say
how far a network boot got: the firmware and ROM banners, the boot entry, iPXE's
device, DHCP, transfer and error lines, classic PXE messages, and OVMF's PXE lines.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

WRAP = 80

# (kind, pattern). The first match names a line; named groups become the event's facts.
PATTERNS: list[tuple[str, re.Pattern]] = [(k, re.compile(p)) for k, p in [
    ("firmware", r"^SeaBIOS \(version (?P<version>[^)]+)\)"),
    ("firmware", r"^(?P<version>UEFI firmware|BdsDxe: .*firmware.*)"),
    ("ipxe_banner", r"^iPXE \(http://ipxe\.org\) (?P<bdf>[0-9a-f]{2}:[0-9a-f]{2}\.\d) (?P<segment>[0-9A-F]{4})"),
    ("boot_entry", r"^Booting from (?P<what>.+?)\.\.\.\s*$"),
    ("boot_entry", r"^BdsDxe: starting (?P<what>.+)$"),
    ("ipxe_start", r"^iPXE (?:\(PCI (?P<bdf>[^)]*)\) )?starting execution"),
    ("ipxe_init", r"^iPXE initialising devices\.\.\.\s*(?P<result>.*)$"),
    ("ipxe_version", r"^iPXE (?P<version>\S+) -- Open Source Network Boot Firmware"),
    ("undi", r"UNDI device is (?P<bus>PCI|ISAPnP) (?P<bdf>\S+?),"),
    ("netdev", r"^(?P<ifname>net\d+): (?P<mac>[0-9a-f]{2}(?::[0-9a-f]{2}){5}) using (?P<chip>\S+) on (?P<bus>\S+)"),
    ("dhcp", r"^Configuring \((?P<ifname>net\d+) (?P<mac>[0-9a-f:]{17})\)[. ]*(?P<result>.*)$"),
    ("address", r"^(?P<ifname>net\d+): (?P<ip>\d+\.\d+\.\d+\.\d+)/(?P<mask>\S+)(?: gw (?P<gw>\S+))?"),
    ("next_server", r"^Next server: (?P<ip>\S+)"),
    ("filename", r"^Filename: (?P<name>.*)$"),
    ("fetch", r"^(?P<uri>(?:tftp|http|https|ftp|nfs)://\S+?)\.\.\.\s*(?P<result>.*)$"),
    ("image", r"^(?P<name>\S+) : (?P<size>\d+) bytes \[(?P<type>[^\]]+)\]"),
    ("no_boot", r"^(?P<text>No bootable device\.?.*|No more network devices.*|Boot failed.*)$"),
    ("pxe_error", r"(?P<code>PXE-E[0-9A-F]{2}): (?P<text>.*)$"),
    ("pxe_client_ip", r"CLIENT IP: (?P<ip>\d+\.\d+\.\d+\.\d+)"),
    ("pxe_start", r">>\s*Start PXE over (?P<proto>IPv[46])"),
    ("pxe_station", r"Station IP address is (?P<ip>\S+)"),
    ("pxe_nbp", r"NBP filename is (?P<name>\S+)"),
    ("pxe_nbp_size", r"NBP filesize is (?P<size>\d+)"),
    ("pxe_nbp_ok", r"Succeed to download NBP file"),
    ("link_stats", r"^\s+\[(?P<text>.*)\]$"),
    ("ipxe_error", r"(?P<text>.*)\(https?://ipxe\.org/(?P<code>[0-9a-f]{8})\)"),
]]

_SEABIOS_OWN = re.compile(r"^(Press ESC for boot menu|Select boot device|Booting from|No bootable device|"
                          r"Machine UUID|\d+\. )")


@dataclass
class Event:
    t: float  # seconds since QEMU started
    kind: str
    line: str
    facts: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The event in docs/conventions.md's spelling: what the console printed as text becomes a
        quantity (sizes, the banner's segment) or a BDF with its domain."""
        facts = dict(self.facts)
        if "size" in facts:
            facts["size"] = int(facts["size"])
        if "segment" in facts:
            facts["segment"] = int(facts["segment"], 16)
        if "bdf" in facts and re.fullmatch(r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", facts["bdf"]):
            facts["bdf"] = "0000:" + facts["bdf"]
        return {"t_s": round(self.t, 3), "kind": self.kind, "line": self.line, **facts}


def classify(line: str) -> tuple[str, dict] | None:
    for kind, pat in PATTERNS:
        m = pat.search(line)
        if m:
            return kind, {k: v for k, v in m.groupdict().items() if v is not None}
    return None


class Console:
    """Bytes from a serial console in, screen lines and events out. Thread-safe."""

    def __init__(self):
        self.raw = bytearray()
        self.lines: list[tuple[float, str]] = []
        self.events: list[Event] = []
        self.closed = False
        self.started = time.monotonic()
        self._cond = threading.Condition()
        self._cur: list[str] = []
        self._col = 0
        self._esc = ""  # pending escape sequence
        self._carry = ""  # a line cut at column 80, waiting for its continuation
        self._after_firmware = False
        self._banner_done = False

    # -- input ------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        with self._cond:
            self.raw += data
            for ch in data.decode("latin-1"):
                self._put(ch)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _put(self, ch: str) -> None:
        if self._esc:
            self._esc += ch
            if len(self._esc) == 2 and ch != "[" and ch not in "()":
                self._esc = ""  # two-byte sequence such as ESC c
            elif len(self._esc) == 3 and self._esc[1] in "()":
                self._esc = ""  # character set selection
            elif len(self._esc) > 2 and self._esc[1] == "[" and ("@" <= ch <= "~"):
                self._esc = ""
            elif len(self._esc) > 32:
                self._esc = ""
            return
        if ch == "\x1b":
            self._esc = ch
        elif ch == "\r":
            self._col = 0
        elif ch == "\n":
            self._end_line()
        elif ch == "\b":
            self._col = max(0, self._col - 1)
        elif ch == "\t":
            self._write(" " * (8 - self._col % 8))
        elif ch >= " " and ch != "\x7f":
            self._write(ch)

    def _write(self, text: str) -> None:
        for c in text:
            if self._col < len(self._cur):
                self._cur[self._col] = c
            else:
                self._cur.extend(" " * (self._col - len(self._cur)))
                self._cur.append(c)
            self._col += 1

    def _end_line(self) -> None:
        text = "".join(self._cur)
        self._cur, self._col = [], 0
        if len(text) == WRAP:
            # SeaBIOS's serial console breaks the line at column 80: join it back.
            self._carry += text
            return
        text = (self._carry + text).rstrip()
        self._carry = ""
        if not text.strip():
            return
        t = time.monotonic() - self.started
        self.lines.append((t, text))
        self._note(t, text)

    def _note(self, t: float, text: str) -> None:
        hit = classify(text)
        if hit is None:
            # The first line a ROM prints after the SeaBIOS banner and before the boot entry
            # is its banner, whoever made it.
            if self._after_firmware and not self._banner_done and not _SEABIOS_OWN.match(text):
                self._banner_done = True
                self.events.append(Event(t, "rom_banner", text, {}))
            return
        kind, facts = hit
        if kind == "firmware":
            self._after_firmware = True
        elif kind == "ipxe_banner" and not self._banner_done:
            self._banner_done = True
            self.events.append(Event(t, "rom_banner", text, {"maker": "iPXE", **facts}))
            return
        elif kind == "boot_entry":
            self._after_firmware = False
        self.events.append(Event(t, kind, text, facts))

    # -- output -----------------------------------------------------------
    def partial(self) -> str:
        """The line being written now (a progress indicator, a prompt), as on screen."""
        with self._cond:
            return (self._carry + "".join(self._cur)).rstrip()

    def tail(self, n: int = 8) -> list[str]:
        with self._cond:
            out = [text for _, text in self.lines[-n:]]
        cur = self.partial()
        if cur.strip():
            out = (out + [cur])[-n:]
        return out

    def find(self, kind: str) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.kind == kind]

    def first(self, kind: str) -> Event | None:
        hits = self.find(kind)
        return hits[0] if hits else None

    def wait(self, predicate, timeout: float) -> bool:
        """Block until ``predicate(self)`` holds, the console closes, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self):
                    return True
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return predicate(self)
                self._cond.wait(min(left, 0.5))

    def notify(self) -> None:
        """Wake :meth:`wait` (another source, such as an HTTP server, has news)."""
        with self._cond:
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(t for _, t in self.lines)
