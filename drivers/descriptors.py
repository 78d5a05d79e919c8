"""Descriptor formats: how a ring fills and reads one family's descriptors (the ``describe`` hook of
iPXE's intel.c, the device ops of ixy), so a second format is a second class, not a second ring.

Each format is known to both rings: the C ring uses the ``struct ring_format`` named by
``c_ops`` (drivers/c/ring.c), the Python ring calls the methods here, which have the same names and
the same contract:

- ``tx_describe(desc, at, addr, length)``: the descriptor at byte ``at`` sends ``length`` bytes
  from ``addr`` as one whole frame and asks for a done report.
- ``rx_describe(desc, at, addr)``: the descriptor (and the buffer at ``addr``) go to the device.
- ``tx_done(desc, at)`` / ``rx_done(desc, at)``: the done bit, the only thing read before the
  ring's read barrier.
- ``rx_result(desc, at)``: after the barrier, ``(flags, length)`` with ``RING_RX_EOP`` and
  ``RING_RX_ERROR`` flags.

Layouts and bit values are not written here: they come from drivers/c/ring.h through cffi
(``ffi.offsetof``, ``ffi.sizeof``, the header's constants), so the compiler and Python read one
declaration.
"""
from __future__ import annotations

from drivers._ring import ffi, lib

RING_RX_EOP, RING_RX_ERROR = lib.RING_RX_EOP, lib.RING_RX_ERROR


def _field(struct_name: str, name: str) -> tuple[int, int]:
    """(offset, size) of a field of a header struct."""
    t = ffi.typeof(struct_name)
    field = dict(t.fields)[name]
    return field.offset, ffi.sizeof(field.type)


class Legacy:
    """The 16-byte legacy descriptors of the 8254x (e1000) and 8257x (e1000e, legacy mode)."""

    name = "legacy"
    c_ops = "ring_legacy"
    desc_size = ffi.sizeof("struct legacy_rxd")
    _TX_SIZE = ffi.sizeof("struct legacy_txd")
    _TX_ADDR, _TX_LEN, _TX_CMD = (_field("struct legacy_txd", n) for n in ("addr", "length", "cmd"))
    _TX_STATUS = ffi.offsetof("struct legacy_txd", "status")
    _RX_ADDR = _field("struct legacy_rxd", "addr")
    _RX_LEN = _field("struct legacy_rxd", "length")
    _RX_STATUS = ffi.offsetof("struct legacy_rxd", "status")
    _RX_ERRORS = ffi.offsetof("struct legacy_rxd", "errors")
    _TX_CMD_VALUE = lib.LEGACY_TXD_CMD_EOP | lib.LEGACY_TXD_CMD_IFCS | lib.LEGACY_TXD_CMD_RS
    _DD, _RX_EOP = lib.LEGACY_DESC_DD, lib.LEGACY_RXD_EOP

    @staticmethod
    def _put(desc, at: int, field: tuple[int, int], value: int) -> None:
        off, size = field
        desc[at + off:at + off + size] = value.to_bytes(size, "little")

    def tx_describe(self, desc, at: int, addr: int, length: int) -> None:
        desc[at:at + self._TX_SIZE] = bytes(self._TX_SIZE)
        self._put(desc, at, self._TX_ADDR, addr)
        self._put(desc, at, self._TX_LEN, length)
        self._put(desc, at, self._TX_CMD, self._TX_CMD_VALUE)

    def rx_describe(self, desc, at: int, addr: int) -> None:
        desc[at:at + self.desc_size] = bytes(self.desc_size)
        self._put(desc, at, self._RX_ADDR, addr)

    def tx_done(self, desc, at: int) -> bool:
        return bool(desc[at + self._TX_STATUS] & self._DD)

    def rx_done(self, desc, at: int) -> bool:
        return bool(desc[at + self._RX_STATUS] & self._DD)

    def rx_result(self, desc, at: int) -> tuple[int, int]:
        status, errors = desc[at + self._RX_STATUS], desc[at + self._RX_ERRORS]
        off, size = self._RX_LEN
        length = int.from_bytes(desc[at + off:at + off + size], "little")
        return (RING_RX_EOP if status & self._RX_EOP else 0) | (RING_RX_ERROR if errors else 0), length


LEGACY = Legacy()
