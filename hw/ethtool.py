"""A network interface's driver statistics, as ``ethtool -S`` shows them, read with the SIOCETHTOOL ioctl.

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
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32
IFNAMSIZ = 16
_IFREQ_SIZE = 40            # struct ifreq on 64-bit Linux: the name and a 24-byte union
MAX_STATS = 4096            # far above any driver's count; a bound on what one read allocates


def _ioctl(sock: socket.socket, ifname: str, buf: ctypes.Array, what: str) -> None:
    ifr = struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), ctypes.addressof(buf)).ljust(_IFREQ_SIZE, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise HardwareError(f"no network interface {ifname!r}") from None
        if exc.errno == errno.EOPNOTSUPP:
            raise HardwareError(f"{ifname}'s driver has no ethtool statistics") from None
        raise HardwareError(f"reading {what} of {ifname} through SIOCETHTOOL failed: {exc.strerror}") from None


def _buffer(data: bytes) -> ctypes.Array:
    return ctypes.create_string_buffer(data, len(data))


def stats(ifname: str) -> dict[str, int]:
    """Every ethtool statistic of ``ifname`` by name (``ethtool -S``), taken in one read."""
    if not ifname or len(ifname.encode()) >= IFNAMSIZ or "/" in ifname:
        raise HardwareError(f"{ifname!r} is not a network interface name")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        info = _buffer(struct.pack("<IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_STATS, 0))
        _ioctl(sock, ifname, info, "the statistics count")
        _, _, mask, count = struct.unpack("<IIQI", info.raw)
        if not mask & (1 << ETH_SS_STATS) or count == 0:
            raise HardwareError(f"{ifname}'s driver has no ethtool statistics")
        if count > MAX_STATS:
            raise HardwareError(f"{ifname}'s driver reports {count} statistics, more than romlab reads")
        names = _buffer(struct.pack("<III", ETHTOOL_GSTRINGS, ETH_SS_STATS, count) + bytes(count * ETH_GSTRING_LEN))
        _ioctl(sock, ifname, names, "the statistics names")
        values = _buffer(struct.pack("<II", ETHTOOL_GSTATS, count) + bytes(count * 8))
        _ioctl(sock, ifname, values, "the statistics")
    n_names = min(count, struct.unpack_from("<I", names.raw, 8)[0])
    n_values = min(count, struct.unpack_from("<I", values.raw, 4)[0])
    out = {}
    for i in range(min(n_names, n_values)):
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
