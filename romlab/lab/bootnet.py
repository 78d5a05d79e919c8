"""Where a booting NIC finds its DHCP, TFTP and HTTP servers.

Two set-ups, one interface (:meth:`netdev` for QEMU, :meth:`http_socket` for
:class:`romlab.lab.http.LabHttp`, :attr:`guest_host` for URLs):

* :class:`SlirpNet`: QEMU's user-mode network. Its DHCP hands every request the same boot
  file, so it can only break the chainload loop for a ROM that is iPXE itself (the boot file
  is then an HTTP script and the script server decides what each stage does next).
* :class:`DnsmasqNet`: Debian's dnsmasq on a tap device in a network namespace romlab creates
  and removes. dnsmasq tells clients apart by DHCP user class: a client without "iPXE" (a
  ROM's own PXE stack) gets the stage's NBP over TFTP, a client with it gets romlab's script.
  The HTTP server is bound to the tap's address inside the namespace.

Everything made here is removed on exit, and processes are started so that they die with
romlab if romlab itself is killed.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile

from hw.errors import LabError
from romlab.lab.dnsmasq import Dnsmasq
from romlab.lab.http import bind_socket
from romlab.lab.netns import (
    make_netns_with_tap,
    netns_name,
    remove_netns,
    remove_stale_netns,
    tap_name,
)
from romlab.lab.qemu import Netdev

_counter = itertools.count()


class SlirpNet:
    """QEMU's user-mode network: the guest reaches this host's 127.0.0.1 as 10.0.2.2."""

    kind = "slirp"
    guest_host = "10.0.2.2"

    def __enter__(self) -> "SlirpNet":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def http_socket(self) -> socket.socket:
        return bind_socket("127.0.0.1")

    def configure(self, *, ipxe_url: str | None, nbp: str | None, tftp_dir: str | None,
                  ipxe_rom: bool) -> None:
        self._bootfile = ipxe_url if (ipxe_rom and ipxe_url) or not nbp else nbp
        self._tftp = tftp_dir

    def netdev(self) -> Netdev:
        return Netdev("user", bootfile=self._bootfile, tftp=self._tftp)

    def dhcp_log(self) -> list[str]:
        return []


class DnsmasqNet:
    """A network namespace holding a tap device for QEMU, dnsmasq on it, and room for an HTTP server."""

    kind = "dnsmasq"

    def __init__(self, subnet: str = "192.168.240"):
        if os.geteuid() != 0:
            raise LabError("the dnsmasq set-up needs root (it creates a network namespace and a tap device); "
                           "run as root or use --dhcp slirp with an iPXE ROM")
        n = next(_counter)
        self.netns = netns_name(os.getpid(), n)
        self.tap = tap_name(os.getpid(), n)
        self.subnet = subnet
        self.guest_host = f"{subnet}.1"
        self.workdir = tempfile.mkdtemp(prefix="romlab-dnsmasq-")
        self.dnsmasq: Dnsmasq | None = None
        self.logs: list[str] = []
        self._made = False

    def __enter__(self) -> "DnsmasqNet":
        remove_stale_netns()
        try:
            make_netns_with_tap(self.netns, self.tap, self.guest_host, 24)
            self._made = True
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop_dnsmasq()
        if self._made:
            remove_netns(self.netns)  # the tap goes with its namespace
            self._made = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def http_socket(self) -> socket.socket:
        return bind_socket(self.guest_host, 0, netns=self.netns)

    def _stop_dnsmasq(self) -> None:
        if self.dnsmasq is not None:
            self.dnsmasq.stop()
            self.logs += self.dnsmasq.lines
            self.dnsmasq = None

    def configure(self, *, ipxe_url: str | None, nbp: str | None, tftp_dir: str | None,
                  ipxe_rom: bool = True) -> None:
        """(Re)start dnsmasq: iPXE clients get ``ipxe_url``, other PXE clients ``nbp`` from ``tftp_dir``."""
        self._stop_dnsmasq()
        args = [f"--interface={self.tap}", "--bind-interfaces", "--except-interface=lo",
                f"--dhcp-range={self.subnet}.100,{self.subnet}.199,255.255.255.0,10m",
                "--dhcp-userclass=set:ipxe,iPXE"]
        if tftp_dir:
            args += ["--enable-tftp", f"--tftp-root={tftp_dir}"]
        if ipxe_url:
            args.append(f"--dhcp-boot=tag:ipxe,{ipxe_url}")
        if nbp:
            tag = "tag:!ipxe," if ipxe_url else ""
            args.append(f"--dhcp-boot={tag}{nbp},,{self.guest_host}")
        self.dnsmasq = Dnsmasq(args, self.netns, self.workdir)
        if not self.dnsmasq.wait_for(r"DHCP, IP range", 10):
            lines = self.dnsmasq.lines[-3:]
            self._stop_dnsmasq()
            raise LabError("dnsmasq did not start: " + (" / ".join(lines) or "no output"))

    def netdev(self) -> Netdev:
        return Netdev("tap", ifname=self.tap, netns=self.netns)

    def dhcp_log(self) -> list[str]:
        return self.logs + (self.dnsmasq.lines if self.dnsmasq else [])
