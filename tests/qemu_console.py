"""Run QEMU (TCG) with one NIC carrying a ROM and watch its serial console for a line."""
from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"


def boot_until(nic: str, romfile: str, pattern: bytes, *, firmware: str = "seabios", timeout: float = 180) -> tuple[bool, bytes]:
    """Boot QEMU and return (pattern seen, console bytes). QEMU is killed either way."""
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86_64 is missing: run scripts/setup.sh"
    cmd = [qemu, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
           "-device", f"{nic},romfile={romfile},netdev=n", "-netdev", "user,id=n", "-boot", "n"]
    if firmware == "ovmf":
        cmd[1:1] = ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}"]
    else:
        cmd[1:1] = ["-vga", "none"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and pattern not in out:
            if not sel.select(timeout=1):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return pattern in out, out
