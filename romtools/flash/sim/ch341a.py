"""The CH341A's device side: packets in, answers out, pins driving a SPI flash model.

The protocol itself (packet layout, bit order, pin map) is in ``romtools.flash.ch341a``;
this half only exists to test hosts (romlab's and flashrom's) against it.
"""
from __future__ import annotations

from romtools.flash.ch341a import (
    CMD_I2C_STREAM,
    CMD_SPI_STREAM,
    CMD_UIO_STREAM,
    I2C_END,
    I2C_SET,
    PACKET,
    REVERSE,
    UIO_DIR,
    UIO_END,
    UIO_OUT,
    UIO_US,
)
from romtools.flash.sim.nic import SpiBitSlave


class Ch341aDevice:
    """The chip's side: packets in, answers out, pins driving a SPI flash model.

    ``chip`` takes whole transactions (``transfer(mosi, nread)``), like
    ``sim.chip.SimChip``; ``SpiBitSlave`` turns the byte stream into them, so a
    program or erase starts when CS# rises, as on a real part.
    """

    def __init__(self, chip):
        self.slave = SpiBitSlave(chip)
        self.pins = 0xFF
        self.directions = 0
        self.stream_config = None
        self.stats = {"packets": 0, "commands": 0, "spi_bytes": 0, "unknown": 0}

    @property
    def cs_selected(self) -> bool:
        return bool(self.directions & 1) and not self.pins & 1

    def _update_cs(self) -> None:
        was = self.slave.selected
        self.slave.pins(0 if self.cs_selected else 1, 0, 0)
        if self.slave.selected and not was:
            self.stats["commands"] += 1

    def packet(self, data: bytes) -> bytes | None:
        """Handle one packet; the answer to send on the IN endpoint, or None."""
        self.stats["packets"] += 1
        if not data:
            return None
        cmd = data[0]
        if cmd == CMD_SPI_STREAM:
            out = bytearray()
            for b in data[1:PACKET]:
                if self.slave.selected:
                    out.append(REVERSE[self.slave.exchange(REVERSE[b])])
                else:
                    out.append(0xFF)        # nothing selected: MISO floats high
            self.stats["spi_bytes"] += len(out)
            return bytes(out)
        if cmd == CMD_UIO_STREAM:
            for sub in data[1:PACKET]:
                kind = sub & 0xC0
                if sub == UIO_END:
                    break
                if kind == UIO_OUT:
                    self.pins = sub & 0x3F
                    self._update_cs()
                elif kind == UIO_DIR:
                    self.directions = sub & 0x3F
                    self._update_cs()
                elif kind == UIO_US:
                    pass                    # a delay: the model has no setup times to honour
                else:
                    self.stats["unknown"] += 1
                    break
            return None
        if cmd == CMD_I2C_STREAM:
            for sub in data[1:PACKET]:
                if sub == I2C_END:
                    break
                if sub & 0xE0 == I2C_SET:
                    self.stream_config = sub & 0x1F
            return None
        self.stats["unknown"] += 1
        return None

    def packets(self, stream: bytes):
        """Answers for a byte stream cut into 32-byte packets (the last may be short)."""
        for i in range(0, len(stream), PACKET):
            answer = self.packet(stream[i:i + PACKET])
            if answer is not None:
                yield answer
