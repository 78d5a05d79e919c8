"""Descriptor formats: how a ring fills and reads one family's descriptors (the ``describe`` hook of
iPXE's intel.c, the device ops of ixy), so a second format is a second class, not a second ring:
``Legacy`` for the e1000/e1000e, ``Advanced`` for the igb family (82576 and its virtual function).

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


class Advanced(Legacy):
    """The 16-byte advanced descriptors of the 82575/82576 (igb) and later: a transmit data descriptor
    (DTYP data, DEXT) and a receive descriptor whose write-back overwrites the buffer address the
    driver wrote, which is why every refill describes the whole descriptor again (both rings do)."""

    name = "advanced"
    c_ops = "ring_advanced"
    desc_size = ffi.sizeof("struct adv_rxd_read")
    _TX_SIZE = ffi.sizeof("struct adv_txd")
    _TX_ADDR, _TX_CMD, _TX_OLINFO = (_field("struct adv_txd", n) for n in ("addr", "cmd_type_len", "olinfo_status"))
    _RX_ADDR = _field("struct adv_rxd_read", "pkt_addr")
    _RX_LEN = _field("struct adv_rxd_wb", "length")
    _RX_STATERR = _field("struct adv_rxd_wb", "status_error")
    _TX_CMD_VALUE = (lib.ADV_TXD_DTYP_DATA | lib.ADV_TXD_DCMD_DEXT | lib.ADV_TXD_DCMD_EOP | lib.ADV_TXD_DCMD_IFCS
                     | lib.ADV_TXD_DCMD_RS)
    _TX_DD, _RX_DD, _RX_EOP = lib.ADV_TXD_STAT_DD, lib.ADV_RXD_STAT_DD, lib.ADV_RXD_STAT_EOP
    _RX_ERR = lib.ADV_RXD_ERR_FRAME
    _PAYLEN_SHIFT = lib.ADV_TXD_PAYLEN_SHIFT

    @staticmethod
    def _get(desc, at: int, field: tuple[int, int]) -> int:
        off, size = field
        return int.from_bytes(desc[at + off:at + off + size], "little")

    def tx_describe(self, desc, at: int, addr: int, length: int) -> None:
        desc[at:at + self._TX_SIZE] = bytes(self._TX_SIZE)
        self._put(desc, at, self._TX_ADDR, addr)
        self._put(desc, at, self._TX_CMD, self._TX_CMD_VALUE | length)
        self._put(desc, at, self._TX_OLINFO, length << self._PAYLEN_SHIFT)

    def tx_done(self, desc, at: int) -> bool:
        return bool(self._get(desc, at, self._TX_OLINFO) & self._TX_DD)

    def rx_done(self, desc, at: int) -> bool:
        return bool(self._get(desc, at, self._RX_STATERR) & self._RX_DD)

    def rx_result(self, desc, at: int) -> tuple[int, int]:
        staterr = self._get(desc, at, self._RX_STATERR)
        flags = (RING_RX_EOP if staterr & self._RX_EOP else 0) | (RING_RX_ERROR if staterr & self._RX_ERR else 0)
        return flags, self._get(desc, at, self._RX_LEN)


ADVANCED = Advanced()
FORMATS = {f.name: f for f in (LEGACY, ADVANCED)}
