"""The serprog protocol (version 1): constants, encoding, and the device side.

serprog is the serial protocol of flashrom's DIY programmers (Arduino, Pico,
STM32 boards): one command byte, little-endian parameters with 24-bit lengths,
an ACK (0x06) or NAK (0x15) and the reply. SPI parts are driven with
``O_SPIOP`` (0x13): write length, read length, the bytes to send; the answer is
ACK and the bytes read. ``SerprogDevice`` implements the programmer end over
any byte stream, with a ``SimChip`` behind it; the host end lives in
``romtools.flash.programmers.serprog``.
"""
from __future__ import annotations

import struct

ACK = 0x06
NAK = 0x15

NOP = 0x00
Q_IFACE = 0x01
Q_CMDMAP = 0x02
Q_PGMNAME = 0x03
Q_SERBUF = 0x04
Q_BUSTYPE = 0x05
Q_CHIPSIZE = 0x06
Q_OPBUF = 0x07
Q_WRNMAXLEN = 0x08
R_BYTE = 0x09
R_NBYTES = 0x0A
O_INIT = 0x0B
O_WRITEB = 0x0C
O_WRITEN = 0x0D
O_DELAY = 0x0E
O_EXEC = 0x0F
SYNCNOP = 0x10
Q_RDNMAXLEN = 0x11
S_BUSTYPE = 0x12
O_SPIOP = 0x13
S_SPI_FREQ = 0x14
S_PIN_STATE = 0x15

BUS_PARALLEL = 1 << 0
BUS_LPC = 1 << 1
BUS_FWH = 1 << 2
BUS_SPI = 1 << 3

IFACE_VERSION = 1


def u24(n: int) -> bytes:
    return (n & 0xFFFFFF).to_bytes(3, "little")


def spiop(mosi: bytes, nread: int) -> bytes:
    """The bytes of one O_SPIOP command."""
    return bytes([O_SPIOP]) + u24(len(mosi)) + u24(nread) + mosi


def cmdmap(commands) -> bytes:
    bits = bytearray(32)
    for c in commands:
        bits[c // 8] |= 1 << (c % 8)
    return bytes(bits)


def cmdmap_has(bitmap: bytes, command: int) -> bool:
    return bool(bitmap[command // 8] >> (command % 8) & 1)


# Bytes of parameters each command carries before its variable part.
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
