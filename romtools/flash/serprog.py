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
