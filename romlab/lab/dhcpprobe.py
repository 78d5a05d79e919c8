"""Is there a DHCP server on this interface? Ask it, the way a client would.

``romlab serve`` runs dnsmasq as a proxy-DHCP server: it adds boot information to the
address another server hands out, and hands out none itself. Started on a network with no
DHCP server, nothing would boot, and nothing would say why; so before it starts, romlab sends
one DHCPDISCOVER (RFC 2131) from a made-up, locally administered MAC address with the
broadcast flag set, and collects the DHCPOFFERs that come back. No DHCPREQUEST follows, so no
lease is taken.
"""
from __future__ import annotations

import os
import socket
import struct
import time

from hw.errors import LabError

MAGIC = b"\x63\x82\x53\x63"
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def discover_packet(xid: int, mac: bytes) -> bytes:
    """A BOOTP/DHCP DISCOVER: op 1, Ethernet, broadcast flag, options 53 (type 1), 55, end."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4),
                       bytes(4), mac.ljust(16, b"\0"), bytes(64), bytes(128))
    opts = bytes([53, 1, 1, 55, 4, 1, 3, 6, 54, 255])
    return head + MAGIC + opts


def parse_options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(data):
            break
        n = data[i + 1]
        out[code] = data[i + 2:i + 2 + n]
        i += 2 + n
    return out


def parse_offer(packet: bytes, xid: int) -> dict | None:
    """The server and the address of a DHCPOFFER answering ``xid``; None for anything else."""
    if len(packet) < 240 or packet[0] != 2 or packet[236:240] != MAGIC:
        return None
    if struct.unpack("!I", packet[4:8])[0] != xid:
        return None
    opts = parse_options(packet[240:])
    if opts.get(53) != b"\x02":
        return None
    server = socket.inet_ntoa(opts[54]) if len(opts.get(54, b"")) == 4 else socket.inet_ntoa(packet[20:24])
    return {"server": server, "offered": socket.inet_ntoa(packet[16:20])}


def find_dhcp_servers(ifname: str, timeout: float = 4.0) -> list[dict]:
    """DHCP servers that answered a DISCOVER sent on ``ifname`` within ``timeout`` seconds."""
    mac = bytes([0x02]) + os.urandom(5)  # locally administered, unicast
    xid = int.from_bytes(os.urandom(4), "big")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode() + b"\0")
            s.bind(("0.0.0.0", 68))
        except PermissionError:
            raise LabError("looking for a DHCP server needs root (port 68 on a chosen interface)") from None
        except OSError as exc:
            raise LabError(f"cannot listen for DHCP answers on {ifname}: {exc.strerror or exc}") from None
        s.sendto(discover_packet(xid, mac), ("255.255.255.255", 67))
        found: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(4096)
            except socket.timeout:
                break
            offer = parse_offer(data, xid)
            if offer and offer not in found:
                found.append(offer)
        return found
    finally:
        s.close()
