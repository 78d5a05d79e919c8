"""A network interface's driver statistics (``ethtool -S``) and ring sizes (``ethtool -g``/``-G``), through
the SIOCETHTOOL ioctl, so neither needs an ethtool binary (a test guest has none).

The benches compare romlab's driver with the kernel's on the count the NIC itself keeps: e1000,
e1000e and igb report their Good Packets Transmitted Count register (GPTC) as the ethtool statistic
``tx_packets`` and igbvf its VF's VFGPTC the same way (each driver's gstrings table in Linux), where
the netdev's own ``tx_packets`` is the driver's count of frames it queued. Reading it through the
ioctl needs no ethtool binary; each read first has the driver fold the register into its running
total, so two reads give the frames the NIC sent between them.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct

from hw.errors import HardwareError

SIOCETHTOOL = 0x8946
ETHTOOL_GRINGPARAM, ETHTOOL_SRINGPARAM = 0x10, 0x11
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32
IFNAMSIZ = 16
_IFREQ_SIZE = 40            # struct ifreq on 64-bit Linux: the name and a 24-byte union
# ETHTOOL_GSTRINGS and ETHTOOL_GSTATS are asked for the count ETHTOOL_GSSET_INFO gave. Current kernels
# copy nothing and write back a length of 0 when that is not the driver's count any more (a driver's
# count can change between two calls: igb's grows when SR-IOV is enabled); older ones copied the
# driver's current count whatever the caller asked. So the buffers hold MAX_STATS entries, far above
# any driver's count, and the lengths written back are checked before anything is read.
MAX_STATS = 4096
# struct ethtool_ringparam (linux/ethtool.h): cmd, then the four maxima, then the four sizes in use.
RING_FIELDS = ("rx_max_pending", "rx_mini_max_pending", "rx_jumbo_max_pending", "tx_max_pending",
               "rx_pending", "rx_mini_pending", "rx_jumbo_pending", "tx_pending")
_RING = "<9I"


def _ioctl(sock: socket.socket, ifname: str, buf: ctypes.Array, what: str,
           unsupported: str = "has no ethtool statistics", verb: str = "reading") -> None:
    ifr = struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), ctypes.addressof(buf)).ljust(_IFREQ_SIZE, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise HardwareError(f"no network interface {ifname!r}") from None
        if exc.errno == errno.EOPNOTSUPP:
            raise HardwareError(f"{ifname}'s driver {unsupported}") from None
        if exc.errno == errno.EPERM:
            raise HardwareError(f"permission denied {verb} {what} of {ifname}; this needs root "
                                "(run romlab as root or with sudo)") from None
        raise HardwareError(f"{verb} {what} of {ifname} through SIOCETHTOOL failed: {exc.strerror}") from None


def _check_name(ifname: str) -> None:
    if not ifname or len(ifname.encode()) >= IFNAMSIZ or "/" in ifname:
        raise HardwareError(f"{ifname!r} is not a network interface name")


def _buffer(data: bytes) -> ctypes.Array:
    return ctypes.create_string_buffer(data, len(data))


def stats(ifname: str) -> dict[str, int]:
    """Every ethtool statistic of ``ifname`` by name (``ethtool -S``), taken in one read."""
    _check_name(ifname)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        info = _buffer(struct.pack("<IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_STATS, 0))
        _ioctl(sock, ifname, info, "the statistics count")
        _, _, mask, count = struct.unpack("<IIQI", info.raw)
        if not mask & (1 << ETH_SS_STATS) or count == 0:
            raise HardwareError(f"{ifname}'s driver has no ethtool statistics")
        if count > MAX_STATS:
            raise HardwareError(f"{ifname}'s driver reports {count} statistics, more than the {MAX_STATS} romlab reads")
        names = _buffer(struct.pack("<III", ETHTOOL_GSTRINGS, ETH_SS_STATS, count)
                        + bytes(MAX_STATS * ETH_GSTRING_LEN))
        _ioctl(sock, ifname, names, "the statistics names")
        values = _buffer(struct.pack("<II", ETHTOOL_GSTATS, count) + bytes(MAX_STATS * 8))
        _ioctl(sock, ifname, values, "the statistics")
    n_names = struct.unpack_from("<I", names.raw, 8)[0]
    n_values = struct.unpack_from("<I", values.raw, 4)[0]
    if max(n_names, n_values) > MAX_STATS:
        raise HardwareError(f"{ifname}'s driver reports {max(n_names, n_values)} statistics, more than the "
                            f"{MAX_STATS} romlab reads")
    if n_names != n_values or n_names != count:
        raise HardwareError(f"{ifname}'s driver changed its statistics while romlab read them ({count} counted, "
                            f"{n_names} names, {n_values} values; SR-IOV being enabled does that); read them again")
    out = {}
    for i in range(n_names):
        raw = names.raw[12 + i * ETH_GSTRING_LEN:12 + (i + 1) * ETH_GSTRING_LEN]
        name = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        out[name] = struct.unpack_from("<Q", values.raw, 8 + i * 8)[0]
    return out


def stat(ifname: str, name: str) -> int:
    """One ethtool statistic of ``ifname``; an error naming the driver's statistics if it has none by that name."""
    s = stats(ifname)
    if name not in s:
        raise HardwareError(f"{ifname}'s driver has no ethtool statistic {name!r} (it has {len(s)}, e.g. "
                            f"{', '.join(list(s)[:5])})")
    return s[name]


def get_ring(ifname: str) -> dict[str, int]:
    """The driver's ring sizes and their maxima (``ethtool -g``), by struct ethtool_ringparam's names."""
    _check_name(ifname)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return _get_ring(sock, ifname)


def _get_ring(sock: socket.socket, ifname: str) -> dict[str, int]:
    buf = _buffer(struct.pack(_RING, ETHTOOL_GRINGPARAM, *[0] * len(RING_FIELDS)))
    _ioctl(sock, ifname, buf, "the ring sizes", "cannot report its ring sizes")
    return dict(zip(RING_FIELDS, struct.unpack_from(_RING, buf.raw)[1:]))


def set_ring(ifname: str, rx: int | None = None, tx: int | None = None) -> dict[str, int]:
    """Resize the driver's receive and/or transmit ring (``ethtool -G rx N tx N``); returns the sizes
    the driver reports afterwards (drivers round to their own multiples). A size above the driver's
    maximum is refused here, naming the maximum."""
    _check_name(ifname)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ring = _get_ring(sock, ifname)
        for key, want in (("rx", rx), ("tx", tx)):
            if want is None:
                continue
            most = ring[f"{key}_max_pending"]
            if not 1 <= want <= most:
                raise HardwareError(f"{ifname}'s driver takes {key} rings of 1..{most} descriptors, not {want}")
            ring[f"{key}_pending"] = want
        buf = _buffer(struct.pack(_RING, ETHTOOL_SRINGPARAM, *(ring[f] for f in RING_FIELDS)))
        _ioctl(sock, ifname, buf, "the ring sizes", "cannot change its ring sizes", verb="setting")
        return _get_ring(sock, ifname)
