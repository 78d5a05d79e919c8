"""The serprog programmer's device side: feed it what the host sent, get back what to answer.

The protocol (command numbers, framing) is in ``romtools.flash.serprog``; this half serves
``romlab serprog-emu`` and the tests, with a simulated chip behind it.
"""
from __future__ import annotations

import struct

from romtools.flash.serprog import (
    ACK,
    BUS_SPI,
    IFACE_VERSION,
    NAK,
    NOP,
    O_SPIOP,
    Q_BUSTYPE,
    Q_CMDMAP,
    Q_IFACE,
    Q_PGMNAME,
    Q_RDNMAXLEN,
    Q_SERBUF,
    Q_WRNMAXLEN,
    S_BUSTYPE,
    S_PIN_STATE,
    S_SPI_FREQ,
    SYNCNOP,
    cmdmap,
    u24,
)

_PARAMS = {NOP: 0, Q_IFACE: 0, Q_CMDMAP: 0, Q_PGMNAME: 0, Q_SERBUF: 0, Q_BUSTYPE: 0,
           Q_WRNMAXLEN: 0, Q_RDNMAXLEN: 0, SYNCNOP: 0, S_BUSTYPE: 1, O_SPIOP: 6,
           S_SPI_FREQ: 4, S_PIN_STATE: 1}


class SerprogDevice:
    """The programmer end: feed it what the host sent, get back what to answer.

    ``spi`` is a callable ``(mosi, nread) -> bytes`` (a SimChip's ``transfer``).
    Only the SPI command set is offered: the parallel-bus operation buffer
    (0x07, 0x09-0x0F) is not, so hosts never try it.
    """

    SUPPORTED = (NOP, Q_IFACE, Q_CMDMAP, Q_PGMNAME, Q_SERBUF, Q_BUSTYPE, Q_WRNMAXLEN,
                 Q_RDNMAXLEN, SYNCNOP, S_BUSTYPE, O_SPIOP, S_SPI_FREQ, S_PIN_STATE)

    def __init__(self, spi, name: bytes = b"romlab-emu", serbuf: int = 0xFFFF,
                 max_write: int = 0, max_read: int = 0):
        self.spi = spi
        self.name = name[:16].ljust(16, b"\x00")
        self.serbuf = serbuf
        self.max_write = max_write
        self.max_read = max_read
        self.map = cmdmap(self.SUPPORTED)
        self.buf = bytearray()
        self.freq = 8_000_000
        self.pins = 1
        self.spi_ops = 0
        self.seen: set[int] = set()

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        buf = self.buf
        pos = 0
        end = len(buf)
        while pos < end:
            cmd = buf[pos]
            self.seen.add(cmd)
            plen = _PARAMS.get(cmd)
            if plen is None:
                out.append(NAK)
                pos += 1
                continue
            if pos + 1 + plen > end:
                break
            if cmd == O_SPIOP:
                slen = int.from_bytes(buf[pos + 1:pos + 4], "little")
                rlen = int.from_bytes(buf[pos + 4:pos + 7], "little")
                if pos + 7 + slen > end:
                    break
                mosi = bytes(buf[pos + 7:pos + 7 + slen])
                pos += 7 + slen
                if (self.max_write and slen > self.max_write) or (self.max_read and rlen > self.max_read):
                    out.append(NAK)
                    continue
                self.spi_ops += 1
                out.append(ACK)
                out += self.spi(mosi, rlen)
                continue
            params = bytes(buf[pos + 1:pos + 1 + plen])
            pos += 1 + plen
            out += self._simple(cmd, params)
        del buf[:pos]
        return bytes(out)

    def _simple(self, cmd: int, params: bytes) -> bytes:
        if cmd == NOP:
            return bytes([ACK])
        if cmd == SYNCNOP:
            return bytes([NAK, ACK])
        if cmd == Q_IFACE:
            return bytes([ACK]) + struct.pack("<H", IFACE_VERSION)
        if cmd == Q_CMDMAP:
            return bytes([ACK]) + self.map
        if cmd == Q_PGMNAME:
            return bytes([ACK]) + self.name
        if cmd == Q_SERBUF:
            return bytes([ACK]) + struct.pack("<H", self.serbuf)
        if cmd == Q_BUSTYPE:
            return bytes([ACK, BUS_SPI])
        if cmd == Q_WRNMAXLEN:
            return bytes([ACK]) + u24(self.max_write)
        if cmd == Q_RDNMAXLEN:
            return bytes([ACK]) + u24(self.max_read)
        if cmd == S_BUSTYPE:
            return bytes([ACK if params[0] and not params[0] & ~BUS_SPI else NAK])
        if cmd == S_SPI_FREQ:
            want = struct.unpack("<I", params)[0]
            if want == 0:
                return bytes([NAK])
            self.freq = min(want, 8_000_000)
            return bytes([ACK]) + struct.pack("<I", self.freq)
        if cmd == S_PIN_STATE:
            self.pins = params[0]
            return bytes([ACK])
        return bytes([NAK])
