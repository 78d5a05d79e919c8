"""Where a booting NIC finds its DHCP, TFTP and HTTP servers.

Two set-ups, one interface (:meth:`netdev` for QEMU, :meth:`http_socket` for
:class:`romlab.labhttp.LabHttp`, :meth:`guest_host` for URLs):

* :class:`SlirpNet`: QEMU's user-mode network. Its DHCP hands every request the same boot
  file, so it can only break the chainload loop for a ROM that is iPXE itself (the boot file
  is then an HTTP script and the script server decides what each stage does next).
* :class:`DnsmasqNet`: Debian's dnsmasq on a tap device in a network namespace romlab creates
  and removes. dnsmasq tells clients apart by DHCP user class: a client without "iPXE" (a
  ROM's own PXE stack) gets the stage's NBP over TFTP, a client with it gets romlab's script.
  The HTTP server is bound to the tap's address inside the namespace.

Everything made here is removed on exit, and processes are started so that they die with
romlab (PR_SET_PDEATHSIG) if romlab itself is killed.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from romlab.lab.qemu import Netdev, _die_with_parent
from romtools.errors import RomError

CLONE_NEWNET = 0x40000000
NETNS_PREFIX = "romlab-"
_counter = itertools.count()


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body with this thread inside network namespace ``name`` (as `ip netns` made it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except OSError as exc:
        os.close(back)
        raise RomError(f"network namespace {name}: {exc.strerror}") from None
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise RomError(f"cannot enter network namespace {name}: {os.strerror(err)} (needs root)")
        try:
            yield
        finally:
            libc.setns(back, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(back)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    ip = shutil.which("ip")
    if not ip:
        raise RomError("the ip command is missing; install Debian's iproute2")
    r = subprocess.run([ip, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RomError(f"ip {' '.join(args)}: {r.stderr.strip() or 'failed'}")
    return r


def netns_list() -> list[str]:
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def remove_stale_netns() -> list[str]:
    """Delete namespaces an earlier romlab made and could not remove (it was SIGKILLed):
    ``romlab-PID-N`` whose PID is no longer running. Returns their names."""
    gone = []
    for ns in netns_list():
        m = re.fullmatch(rf"{NETNS_PREFIX}(\d+)-\d+", ns)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            if _ip("netns", "del", ns, check=False).returncode == 0:
                gone.append(ns)
    return gone


class SlirpNet:
    """QEMU's user-mode network: the guest reaches this host's 127.0.0.1 as 10.0.2.2."""

    kind = "slirp"
    guest_host = "10.0.2.2"

    def __enter__(self) -> "SlirpNet":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def http_socket(self) -> socket.socket:
        from romlab.lab.http import bind_socket

        return bind_socket("127.0.0.1")

    def configure(self, *, ipxe_url: str | None, nbp: str | None, tftp_dir: str | None,
                  ipxe_rom: bool) -> None:
        self._bootfile = ipxe_url if (ipxe_rom and ipxe_url) or not nbp else nbp
        self._tftp = tftp_dir

    def netdev(self) -> Netdev:
        return Netdev("user", bootfile=self._bootfile, tftp=self._tftp)

    def dhcp_log(self) -> list[str]:
        return []


class Dnsmasq:
    """One dnsmasq process (DHCP + TFTP, no DNS), its log read on a thread."""

    def __init__(self, args: list[str], netns: str | None, workdir: str):
        exe = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
        if not exe:
            raise RomError("dnsmasq is not installed; install Debian's dnsmasq-base (scripts/setup.sh does)")
        cmd = [exe, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
               "--user=root", "--group=root", "--log-facility=-", "--log-dhcp",
               f"--dhcp-leasefile={os.path.join(workdir, 'leases')}", "--pid-file=", *args]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, preexec_fn=_die_with_parent, text=True)
        except OSError as exc:
            raise RomError(f"cannot start dnsmasq: {exc.strerror or exc}") from None
        self._t = threading.Thread(target=self._read, daemon=True, name="dnsmasq-log")
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> bool:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(rx.search(x) for x in self.lines):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return any(rx.search(x) for x in self.lines)
                self._cond.wait(min(left, 0.2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(timeout=2)
        self.proc.stderr.close()


class DnsmasqNet:
    """A network namespace holding a tap device for QEMU, dnsmasq on it, and room for an HTTP server."""

    kind = "dnsmasq"

    def __init__(self, subnet: str = "192.168.240"):
        if os.geteuid() != 0:
            raise RomError("the dnsmasq set-up needs root (it creates a network namespace and a tap device); "
                           "run as root or use --dhcp slirp with an iPXE ROM")
        n = next(_counter)
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{n}"
        self.tap = f"rl{os.getpid() % 100000}t{n}"[:15]
        self.subnet = subnet
        self.guest_host = f"{subnet}.1"
        self.workdir = tempfile.mkdtemp(prefix="romlab-dnsmasq-")
        self.dnsmasq: Dnsmasq | None = None
        self.logs: list[str] = []
        self._made = False

    def __enter__(self) -> "DnsmasqNet":
        remove_stale_netns()
        try:
            _ip("netns", "add", self.netns)
            self._made = True
            _ip("-n", self.netns, "link", "set", "lo", "up")
            _ip("-n", self.netns, "tuntap", "add", "dev", self.tap, "mode", "tap")
            _ip("-n", self.netns, "addr", "add", f"{self.guest_host}/24", "dev", self.tap)
            _ip("-n", self.netns, "link", "set", self.tap, "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop_dnsmasq()
        if self._made:
            _ip("-n", self.netns, "link", "del", self.tap, check=False)
            _ip("netns", "del", self.netns, check=False)
            self._made = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def http_socket(self) -> socket.socket:
        from romlab.lab.http import bind_socket

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
            raise RomError("dnsmasq did not start: " + (" / ".join(lines) or "no output"))

    def netdev(self) -> Netdev:
        return Netdev("tap", ifname=self.tap, netns=self.netns)

    def dhcp_log(self) -> list[str]:
        return self.logs + (self.dnsmasq.lines if self.dnsmasq else [])
