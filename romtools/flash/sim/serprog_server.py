"""A virtual serprog programmer with a simulated chip, over TCP or a pty.

``romlab serprog-emu`` runs this so that a flash can be rehearsed with no
hardware, by romlab or by any serprog host such as flashrom. The chip image is
a file mapped into memory: every erase and program lands in it at once. After
each host session the counters (per-sector erase counts, faults injected, the
span of the write phase) go to the ``--stats`` file as JSON, so tests and
benches can see what a host really did to the chip.
"""
from __future__ import annotations

import json
import mmap
import os
import select
import socket
import time
import tty

from hw.errors import FlashError
from romtools.flash import chips as chipdb
from romtools.flash.sim.chip import TIMINGS, Faults, SimChip
from romtools.flash.sim.serprog import SerprogDevice

FAULT_KINDS = ("flip", "drop", "lie", "disconnect")


def parse_faults(items: list[str], seed: int) -> Faults:
    kw = {}
    for item in items:
        kind, _, value = item.partition(":")
        if kind not in FAULT_KINDS or not value:
            raise FlashError(f"bad --fault {item!r}; use flip:RATE, drop:RATE, lie:RATE or disconnect:BYTES")
        try:
            if kind == "disconnect":
                kw["disconnect_after"] = int(value, 0)
            else:
                rate = float(value)
                if not 0 <= rate <= 1:
                    raise ValueError
                kw[kind] = rate
        except ValueError:
            raise FlashError(f"bad --fault value {item!r}: a rate is a number from 0 to 1, "
                           "a disconnect a byte count") from None
    return Faults(seed=seed, **kw)


class Emulator:
    def __init__(self, image: str, chip_name: str | None = None, timing: str = "fast",
                 faults: Faults | None = None, status: int | None = None, stats_path: str | None = None,
                 absent: bool = False):
        if timing not in TIMINGS:
            raise FlashError(f"unknown timing {timing!r}; use one of {', '.join(TIMINGS)}")
        try:
            fd = os.open(image, os.O_RDWR)
        except OSError as exc:
            raise FlashError(f"cannot open chip image {image}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if chip_name:
                chip = chipdb.by_name(chip_name)
                if chip is None:
                    names = ", ".join(c.name for c in chipdb.CHIPS)
                    raise FlashError(f"unknown chip {chip_name!r}; known: {names}")
                if chip.size != size:
                    raise FlashError(f"{image} is {size} bytes but {chip.name} holds {chip.size}; "
                                   "make the image the chip's size")
            else:
                chip = chipdb.default_for_size(size)
                if chip is None:
                    sizes = ", ".join(f"{s // 1024} KiB" for s in chipdb.default_sizes())
                    raise FlashError(f"{image} is {size} bytes; without --chip the image must be one of "
                                   f"{sizes}")
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.faults = faults or Faults()
        self.sim = SimChip(chip, self.map, timing=timing, faults=self.faults, status=status)
        self.stats_path = stats_path
        # No chip on the clip: MISO floats high, every byte read is 0xFF.
        self.spi = (lambda mosi, nread: b"\xff" * nread) if absent else self.sim.transfer
        self.sessions: list[dict] = []
        self.disconnected = False
        self.wire_bytes = 0

    # --- bookkeeping -------------------------------------------------------
    def _end_session(self, dev: SerprogDevice, nin: int, nout: int) -> None:
        st = self.sim.stats
        first, last = st["first_modify"], st["last_modify_end"]
        self.sessions.append({"spi_ops": dev.spi_ops, "bytes_in": nin, "bytes_out": nout,
                              "commands": sorted(dev.seen),
                              "write_seconds": (last - first) if first is not None else None})
        st["first_modify"] = st["last_modify_end"] = None
        self.map.flush()
        self.write_stats()

    def write_stats(self) -> None:
        if not self.stats_path:
            return
        snap = self.sim.snapshot()
        snap.pop("first_modify", None)
        snap.pop("last_modify_end", None)
        snap["sessions"] = self.sessions
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(snap, fh)
        os.replace(tmp, self.stats_path)

    def _cut(self, n: int) -> bool:
        """Count wire bytes; True once the disconnect fault fires."""
        limit = self.faults.disconnect_after
        self.wire_bytes += n
        if limit is not None and not self.disconnected and self.wire_bytes >= limit:
            self.disconnected = True
            return True
        return False

    # --- transports ----------------------------------------------------------
    def serve_tcp(self, host: str, port: int, ready=print, once: bool = False) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind((host, port))
        except OSError as exc:
            raise FlashError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        srv.listen(1)
        ready(f"listening on tcp:{host}:{srv.getsockname()[1]} ({self.sim.chip.name}, "
              f"{self.sim.chip.size // 1024} KiB)")
        self.write_stats()
        try:
            while True:
                conn, _ = srv.accept()
                self._session_tcp(conn)
                if once:
                    return
        finally:
            srv.close()

    def _session_tcp(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dev = SerprogDevice(self.spi)
        nin = nout = 0
        try:
            while True:
                try:
                    data = conn.recv(1 << 20)
                except ConnectionError:
                    break
                if not data:
                    break
                nin += len(data)
                out = dev.feed(data)
                if self._cut(len(data) + len(out)):
                    keep = max(0, len(out) - (self.wire_bytes - self.faults.disconnect_after))
                    if keep:
                        conn.sendall(out[:keep])
                    conn.shutdown(socket.SHUT_RDWR)
                    break
                if out:
                    try:
                        conn.sendall(out)
                    except ConnectionError:
                        break
                    nout += len(out)
        finally:
            conn.close()
            self._end_session(dev, nin, nout)

    def serve_pty(self, ready=print) -> None:
        if self.faults.disconnect_after is not None:
            raise FlashError("the disconnect fault needs --listen tcp:PORT (a pty cannot hang up)")
        master, slave = os.openpty()
        tty.setraw(slave)
        ready(f"serprog pty {os.ttyname(slave)} ({self.sim.chip.name}, {self.sim.chip.size // 1024} KiB)")
        self.write_stats()
        dev = SerprogDevice(self.spi)
        nin = nout = 0
        idle_since = time.monotonic()
        try:
            while True:
                r, _, _ = select.select([master], [], [], 0.5)
                if not r:
                    # A quiet line for a while ends a host's session for the stats.
                    if dev.spi_ops and time.monotonic() - idle_since > 1.0:
                        self._end_session(dev, nin, nout)
                        dev = SerprogDevice(self.spi)
                        nin = nout = 0
                    continue
                data = os.read(master, 1 << 16)
                idle_since = time.monotonic()
                nin += len(data)
                out = dev.feed(data)
                view = memoryview(out)
                while view:
                    n = os.write(master, view)
                    view = view[n:]
                nout += len(out)
        finally:
            os.close(master)
            os.close(slave)
