"""The CH341A's USB SPI protocol: both ends, independent of how the bytes travel.

The CH341A (USB 1a86:5512) takes commands on bulk OUT endpoint 0x02 and answers
on bulk IN 0x82, in 32-byte packets, each starting with a command byte:

* ``0xAB`` UIO stream: sub-commands until ``0x20`` (END): ``0x80|v`` drives pins
  D0-D5 (D0 = CS#, D3 = SCK, D5 = MOSI), ``0x40|m`` sets which of them are
  outputs, ``0xC0|n`` waits n microseconds. Nothing is answered.
* ``0xA8`` SPI stream: up to 31 bytes clocked out and in at once (full duplex,
  mode 0, about 2 MHz); the answer is one byte per byte sent. On the wire every
  byte is bit-reversed (the CH341A shifts LSB first), in both directions.
* ``0xAA`` I2C stream: ``0x60|s`` configures the stream (bit 2 set would mean
  two-wire "double" SPI), ``0x00`` ends it.

A host (flashrom's ch341a_spi, and romlab's ``programmers.ch341a``) starts with
``AA 61 00`` and enables the pins with ``AB B7 7F 20`` (CS# high, SCK low, MOSI
high, D0-D5 outputs). Each SPI command is one OUT transfer: a first packet that
"plucks" CS# (deselect, a few repeats as a delay, select, END, padded to 32
bytes), then ``A8`` packets carrying the command bytes and then 0xFF filler for
the bytes to read. CS# stays selected afterwards; the next pluck (or the pin
disable ``AB B7 40 20`` at the end) deselects it, which is when a program or
erase command starts in the flash. The answers to the ``A8`` packets arrive on
the IN endpoint, one short packet per ``A8`` packet; the bytes read are those
after the command bytes.
"""
from __future__ import annotations

VID, PID = 0x1A86, 0x5512
EP_OUT, EP_IN = 0x02, 0x82
PACKET = 32
CMD_SPI_STREAM, CMD_I2C_STREAM, CMD_UIO_STREAM = 0xA8, 0xAA, 0xAB
UIO_IN, UIO_DIR, UIO_OUT, UIO_US, UIO_END = 0x00, 0x40, 0x80, 0xC0, 0x20
I2C_SET, I2C_END = 0x60, 0x00
PINS_IDLE = 0x37            # CS# (D0-D2) high, SCK (D3) low, D4/D5 (MOSI) high
PINS_SELECTED = 0x36        # the same with CS# (D0) low
PIN_DIRECTIONS = 0x3F       # D0-D5 are outputs; D6/D7 (MISO) inputs

REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def init_packets() -> list[bytes]:
    """What a host sends once: stream configuration, then pins enabled."""
    return [bytes([CMD_I2C_STREAM, I2C_SET | 0x01, I2C_END]),
            bytes([CMD_UIO_STREAM, UIO_OUT | PINS_IDLE, UIO_DIR | PIN_DIRECTIONS, UIO_END])]


def disable_packet() -> bytes:
    """CS# high and all pins inputs: ends the last command and frees the bus."""
    return bytes([CMD_UIO_STREAM, UIO_OUT | PINS_IDLE, UIO_DIR, UIO_END])


def transaction(mosi: bytes, nread: int, delay_repeats: int = 2) -> bytes:
    """The OUT transfer for one SPI command: CS# pluck packet, then A8 packets."""
    pluck = bytes([CMD_UIO_STREAM, UIO_OUT | PINS_IDLE] + [UIO_OUT | PINS_IDLE] * delay_repeats
                  + [UIO_OUT | PINS_SELECTED, UIO_END])
    out = bytearray(pluck.ljust(PACKET, b"\x00"))
    stream = bytes(REVERSE[b] for b in mosi) + b"\xff" * nread
    for i in range(0, len(stream), PACKET - 1):
        out.append(CMD_SPI_STREAM)
        out += stream[i:i + PACKET - 1]
    return bytes(out)


def answer_length(mosi_len: int, nread: int) -> int:
    return mosi_len + nread
