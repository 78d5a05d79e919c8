"""serprog host: a serial port or a TCP socket to a serprog programmer.

Opening follows flashrom's synchronisation so that a device left in the middle
of a command comes back to a known state: eight NOPs, a wait (up to a second)
for their answers, a flush, then SYNCNOP until NAK+ACK comes back twice in a
row. Then the interface version, command map and bus type are checked.

Only commands flashrom itself uses are sent. ``transfer_many`` sends several
O_SPIOP commands before reading the answers, within the device's advertised
serial buffer, which saves one round trip per command on TCP and USB serial.
"""
from __future__ import annotations

import os
import socket
import struct
import time

import serial

from hw.errors import FlashError, RomlabError
from romtools.flash import serprog as sp
from romtools.flash.programmers.base import Programmer


class SerprogError(FlashError):
    pass


def _open_failure(dev: str | None, tcp: str | None, exc: Exception) -> str:
    """pyserial's text names its own internals; say what failed and what to check instead."""
    import errno as E

    code = getattr(exc, "errno", None)
    if code is None:  # pyserial wraps the OSError: find its errno in the message
        for name in ("ECONNREFUSED", "ENOENT", "EACCES", "ENOTTY", "EHOSTUNREACH", "ETIMEDOUT", "EBUSY"):
            if f"[Errno {getattr(E, name)}]" in str(exc) or f"({getattr(E, name)}," in str(exc):
                code = getattr(E, name)
                break
    if tcp:
        why = {E.ECONNREFUSED: "nothing listens there", E.ETIMEDOUT: "no answer",
               E.EHOSTUNREACH: "the host cannot be reached"}.get(code, "the address does not resolve or answer")
        return (f"cannot connect to the serprog programmer at {tcp}: {why} (is `romlab serprog-emu` or the "
                "network bridge running on that port?)")
    why = {E.ENOENT: "no such device", E.EACCES: "permission denied (add yourself to the dialout group, or "
           "run as root)", E.ENOTTY: "it is not a serial port", E.EBUSY: "another program holds it"}.get(
        code, os.strerror(code).lower() if code else "it cannot be opened as a serial port")
    return f"cannot open {dev} for the serprog programmer: {why} (a USB programmer is usually /dev/ttyACM0 or /dev/ttyUSB0)"


class SerprogProgrammer(Programmer):
    name = "serprog"

    def __init__(self, dev: str | None = None, tcp: str | None = None, baud: int = 115200,
                 timeout: float = 5.0):
        self.timeout = timeout
        self.target = f"tcp={tcp}" if tcp else f"dev={dev}"
        try:
            if tcp:
                host, _, port = tcp.rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise SerprogError(f"serprog tcp= wants HOST:PORT with a port from 1 to 65535, got {tcp!r}")
                self.port = serial.serial_for_url(f"socket://{host}:{port}", timeout=timeout)
                sock = getattr(self.port, "_socket", None)
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                self.port = serial.Serial(dev, baudrate=baud, timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SerprogError(_open_failure(dev, tcp, exc)) from None
        try:
            self._synchronize()
            self._setup()
        except Exception:
            self.port.close()
            raise

    # --- low level -------------------------------------------------------
    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise SerprogError(f"serprog {self.target}: connection lost ({exc})") from None

    def _read(self, n: int) -> bytes:
        try:
            data = self.port.read(n)
        except (serial.SerialException, OSError) as exc:
            raise SerprogError(f"serprog {self.target}: connection lost ({exc})") from None
        if len(data) != n:
            raise SerprogError(f"serprog {self.target}: the programmer stopped answering "
                               f"({len(data)} of {n} bytes in {self.timeout:.0f} s)")
        return data

    def _read_within(self, seconds: float) -> bytes:
        old = self.port.timeout
        self.port.timeout = seconds
        try:
            return self.port.read(1)
        except (serial.SerialException, OSError) as exc:
            raise SerprogError(f"serprog {self.target}: connection lost ({exc})") from None
        finally:
            self.port.timeout = old

    def command(self, cmd: int, params: bytes = b"", nret: int = 0) -> bytes | None:
        """One command; the reply bytes, or None on NAK."""
        self._write(bytes([cmd]) + params)
        ack = self._read(1)[0]
        if ack == sp.NAK:
            return None
        if ack != sp.ACK:
            raise SerprogError(f"serprog {self.target}: invalid answer 0x{ack:02x} to command 0x{cmd:02x}")
        return self._read(nret) if nret else b""

    # --- opening -----------------------------------------------------------
    def _synchronize(self) -> None:
        self._write(bytes([sp.NOP]) * 8)
        # Wait for the NOPs' answers (at most a second), then drop them.
        deadline = time.monotonic() + 1.0
        got = b""
        while time.monotonic() < deadline and got.count(bytes([sp.ACK])) < 8:
            got += self._read_within(max(0.0, deadline - time.monotonic()))
        time.sleep(0.01)
        self.port.reset_input_buffer()
        for _ in range(8):
            self._write(bytes([sp.SYNCNOP]))
            if self._expect_sync(0.05) and self._confirm_sync():
                return
        raise SerprogError(f"serprog {self.target}: cannot synchronise with the programmer; "
                           "check the port and baud rate, or reset the device")

    def _expect_sync(self, wait: float) -> bool:
        for _ in range(10):
            c = self._read_within(wait)
            if c != bytes([sp.NAK]):
                continue
            if self._read_within(0.02) == bytes([sp.ACK]):
                return True
        return False

    def _confirm_sync(self) -> bool:
        self._write(bytes([sp.SYNCNOP]))
        return self._read_within(0.5) == bytes([sp.NAK]) and self._read_within(0.1) == bytes([sp.ACK])

    def _setup(self) -> None:
        iface = self.command(sp.Q_IFACE, nret=2)
        if iface is None or struct.unpack("<H", iface)[0] != sp.IFACE_VERSION:
            raise SerprogError(f"serprog {self.target}: unsupported interface version {iface!r}")
        cmap = self.command(sp.Q_CMDMAP, nret=32)
        if cmap is None:
            raise SerprogError(f"serprog {self.target}: the programmer has no command map")
        self.cmdmap = cmap
        bus = self.command(sp.Q_BUSTYPE, nret=1)
        if bus is None or not bus[0] & sp.BUS_SPI or not sp.cmdmap_has(cmap, sp.O_SPIOP):
            raise SerprogError(f"serprog {self.target}: the programmer does not offer SPI")
        if self.command(sp.S_BUSTYPE, bytes([sp.BUS_SPI])) is None:
            raise SerprogError(f"serprog {self.target}: the programmer refused the SPI bus")
        self.max_write = self._limit(sp.Q_WRNMAXLEN)
        self.max_read = self._limit(sp.Q_RDNMAXLEN)
        name = self.command(sp.Q_PGMNAME, nret=16) if sp.cmdmap_has(cmap, sp.Q_PGMNAME) else None
        self.pgmname = name.rstrip(b"\x00").decode("ascii", "replace") if name else "(unknown)"
        serbuf = self.command(sp.Q_SERBUF, nret=2) if sp.cmdmap_has(cmap, sp.Q_SERBUF) else None
        self.serbuf = struct.unpack("<H", serbuf)[0] if serbuf else 16
        self.pins = sp.cmdmap_has(cmap, sp.S_PIN_STATE)
        if self.pins and self.command(sp.S_PIN_STATE, b"\x01") is None:
            raise SerprogError(f"serprog {self.target}: could not enable the output drivers")

    def _limit(self, cmd: int) -> int:
        if not sp.cmdmap_has(self.cmdmap, cmd):
            return 1 << 24
        r = self.command(cmd, nret=3)
        if r is None:
            return 1 << 24
        v = int.from_bytes(r, "little")
        return v or (1 << 24) - 1

    # --- SPI -----------------------------------------------------------------
    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        if len(mosi) > self.max_write:
            raise SerprogError(f"serprog {self.target}: {len(mosi)}-byte command exceeds the programmer's "
                               f"{self.max_write}-byte limit")
        self._write(sp.spiop(mosi, nread))
        return self._answer(nread)

    def _answer(self, nread: int) -> bytes:
        ack = self._read(1)[0]
        if ack == sp.NAK:
            raise SerprogError(f"serprog {self.target}: the programmer refused an SPI operation")
        if ack != sp.ACK:
            raise SerprogError(f"serprog {self.target}: invalid answer 0x{ack:02x} to an SPI operation")
        return self._read(nread) if nread else b""

    def transfer_many(self, ops: list[tuple[bytes, int]]) -> list[bytes]:
        out: list[bytes] = []
        i = 0
        while i < len(ops):
            batch = []
            size = 0
            while i < len(ops):
                m, n = ops[i]
                cmd = sp.spiop(m, n)
                if batch and size + len(cmd) > self.serbuf:
                    break
                if len(m) > self.max_write:
                    raise SerprogError(f"serprog {self.target}: {len(m)}-byte command exceeds the "
                                       f"programmer's {self.max_write}-byte limit")
                batch.append((cmd, n))
                size += len(cmd)
                i += 1
            self._write(b"".join(c for c, _ in batch))
            for _, n in batch:
                out.append(self._answer(n))
        return out

    def describe(self) -> str:
        return f"serprog {self.target} ({self.pgmname})"

    def close(self) -> None:
        port = getattr(self, "port", None)
        if port is None:
            return
        try:
            if getattr(self, "pins", False) and port.is_open:
                self._write(bytes([sp.S_PIN_STATE, 0]))
                self._read_within(0.5)
        except RomlabError:
            pass
        finally:
            port.close()
            self.port = None
