"""Network namespaces, tap devices and interface addresses, through netlink (pyroute2).

A dnsmasq boot (:class:`romlab.lab.bootnet.DnsmasqNet`) runs in a namespace of its own, named
``romlab-PID-N`` after the romlab process that made it, holding one tap device for QEMU. If
romlab is SIGKILLed nothing can remove it; the next run sweeps namespaces whose PID is gone
(:func:`remove_stale_netns`). pyroute2 is imported only here and only when a namespace or an
address is needed: it costs a third of a second, which the verbs that never touch the network
should not pay.
"""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import socket
import threading

from hw.errors import LabError

NETNS_PREFIX = "romlab-"
CLONE_NEWNET = 0x40000000


def _pyroute2():
    try:
        import pyroute2
        import pyroute2.netns
    except ImportError:
        raise LabError("pyroute2 is missing; install romlab's dependencies (pip install pyroute2)") from None
    return pyroute2


def _why(exc: BaseException) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    text = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return text + (" (needs root)" if code in (1, 13) else "")


def netns_name(pid: int, n: int) -> str:
    """The name of the ``n``-th namespace the romlab process ``pid`` makes."""
    return f"{NETNS_PREFIX}{pid}-{n}"


def tap_name(pid: int, n: int) -> str:
    """The tap device beside :func:`netns_name` (interface names have 15 characters at most)."""
    return f"rl{pid % 100000}t{n}"[:15]


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body with this thread (only this one) inside network namespace ``name``."""
    pr = _pyroute2()
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            pr.netns.setns(name, flags=0)
        except OSError as exc:
            raise LabError(f"cannot enter network namespace {name}: {_why(exc)}") from None
        try:
            yield
        finally:
            pr.netns.setns(back, flags=0)
    finally:
        os.close(back)


def netns_list() -> list[str]:
    return list(_pyroute2().netns.listnetns())


def remove_netns(name: str) -> bool:
    """Delete namespace ``name`` (its devices go with it); whether it was there to delete."""
    try:
        _pyroute2().netns.remove(name)
    except OSError:
        return False
    return True


def remove_stale_netns() -> list[str]:
    """Delete namespaces an earlier romlab made and could not remove (it was SIGKILLed):
    ``romlab-PID-N`` whose PID is no longer running. Returns their names."""
    gone = []
    for ns in netns_list():
        m = re.fullmatch(rf"{NETNS_PREFIX}(\d+)-\d+", ns)
        if m and not os.path.exists(f"/proc/{m.group(1)}") and remove_netns(ns):
            gone.append(ns)
    return gone


def make_netns_with_tap(name: str, tap: str, address: str, prefixlen: int) -> None:
    """A new namespace ``name`` with its loopback up and a tap device ``tap`` up at ``address``.

    The work is done on a thread of its own that moves into the new namespace (a namespace is
    per thread), names it by bind-mounting its ``/proc/thread-self/ns/net`` where ``ip netns``
    looks, and configures it over netlink from inside. pyroute2's own ``netns.create`` and
    ``NetNS`` fork a helper process for this, which can deadlock in a process that already
    runs threads (a lock held by another thread at the fork).
    """
    pr = _pyroute2()
    failure: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            pr.netns.attach(name, "thread-self")
        except BaseException as exc:
            failure.append(LabError(f"cannot make network namespace {name}: {_why(exc)}"))
            return
        try:
            with pr.IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
                (index,) = ipr.link_lookup(ifname=tap)
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
                ipr.link("set", index=index, state="up")
        except BaseException as exc:
            remove_netns(name)
            failure.append(LabError(f"cannot set up tap {tap} in network namespace {name}: {_why(exc)}"))

    t = threading.Thread(target=inside, name="romlab-netns")
    t.start()
    t.join()
    if failure:
        raise failure[0]


def interface_ipv4(ifname: str) -> ipaddress.IPv4Interface:
    """The first IPv4 address (with prefix) on ``ifname`` in this thread's namespace."""
    pr = _pyroute2()
    with pr.IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise LabError(f"no interface {ifname}: Device \"{ifname}\" does not exist.")
        addrs = [(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(family=socket.AF_INET, index=found[0])]
    if not addrs:
        raise LabError(f"{ifname} has no IPv4 address; give it one (the clients fetch from it)")
    return ipaddress.IPv4Interface(f"{addrs[0][0]}/{addrs[0][1]}")
