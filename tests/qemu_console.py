"""Test helpers over romlab's QEMU runner: boot until a console pattern, and look for leftovers."""
from __future__ import annotations

import glob
import os
import subprocess

from romlab.lab.qemu import Machine, Netdev, Qemu, find_qemu

# Markers romlab puts in the command lines and temporary paths of what it starts.
ROMLAB_MARKERS = ("romlab-qemu-", "romlab-boot-", "romlab-bench-", "romlab-dnsmasq-", "romlab-serve-")


def boot_until(nic: str, romfile: str, pattern: bytes, *, firmware: str = "seabios", timeout: float = 180) -> tuple[bool, bytes]:
    """Boot QEMU and return (pattern seen, console bytes). QEMU is stopped either way."""
    assert find_qemu()
    machine = Machine(nic=nic, rom=romfile, firmware=firmware, netdev=Netdev("user"),
                      memory=512 if firmware == "ovmf" else 256)
    with Qemu(machine) as q:
        q.console.wait(lambda c: pattern in c.raw, timeout)
        out = bytes(q.console.raw)
    return pattern in out, out


def romlab_processes() -> list[str]:
    """Command lines of running processes romlab started (QEMU, dnsmasq) for a boot, bench or serve."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ("qemu-system" in cmd or "dnsmasq" in cmd) and any(m in cmd for m in ROMLAB_MARKERS):
            found.append(cmd.strip())
    return found


def romlab_netns() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("romlab-")]


def romlab_taps() -> list[str]:
    """Tap devices named the way romlab names them, in the host's namespace."""
    return [n for n in os.listdir("/sys/class/net") if n.startswith("rl") and "t" in n[2:]]


def romlab_tempdirs() -> list[str]:
    tmp = os.environ.get("TMPDIR", "/tmp")
    return [p for m in ROMLAB_MARKERS for p in glob.glob(os.path.join(tmp, m + "*"))]


def leftovers() -> dict[str, list[str]]:
    """Everything romlab should have removed; empty lists when it cleaned up."""
    return {"processes": romlab_processes(), "netns": romlab_netns(), "taps": romlab_taps(),
            "tempdirs": romlab_tempdirs()}


def no_leftovers() -> bool:
    return not any(leftovers().values())
