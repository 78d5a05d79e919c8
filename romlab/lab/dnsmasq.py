"""One dnsmasq process (DHCP and TFTP, no DNS), its log read on a thread.

Debian's dnsmasq serves both lab set-ups: a boot's private network in a namespace
(:class:`romlab.lab.bootnet.DnsmasqNet`) and ``romlab serve`` on a real interface. It runs in
the foreground with its log on stderr, which is how romlab learns that it is ready ("DHCP, IP
range ...") and what it told each client (``--log-dhcp``: the tags, the boot file, the TFTP
transfers).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time

from hw.errors import LabError
from romlab.lab.process import launch, stop


class Dnsmasq:
    """dnsmasq with ``args``, inside network namespace ``netns`` if given; its lease file in ``workdir``."""

    def __init__(self, args: list[str], netns: str | None, workdir: str):
        exe = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
        if not exe:
            raise LabError("dnsmasq is not installed; install Debian's dnsmasq-base (scripts/setup.sh does)")
        cmd = [exe, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
               "--user=root", "--group=root", "--log-facility=-", "--log-dhcp",
               f"--dhcp-leasefile={os.path.join(workdir, 'leases')}", "--pid-file=", *args]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = launch(cmd, what="dnsmasq", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
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
        """Whether a log line matching ``pattern`` came within ``timeout`` seconds (False if dnsmasq stopped)."""
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
        """SIGTERM (dnsmasq removes nothing it needs to, but it is polite), then SIGKILL after 5 s."""
        stop(self.proc, grace=5.0)
        self._t.join(timeout=2)
        self.proc.stderr.close()
