"""Test helpers over romlab's QEMU launcher: boot until a console pattern, and look for leftovers.

The leftover checks look only at what this test run started, never at the whole machine (other
romlab runs may be working beside it): processes and temporary directories under the run's
TMPDIR (conftest.RUN_TMPDIR, which every romlab the tests start inherits, and which therefore
appears in its QEMU and dnsmasq command lines), and the network namespaces and taps named after
the PIDs of the romlab processes the current test started (conftest.ROMLAB_PIDS, plus any a test
passes itself).
"""
from __future__ import annotations

import glob
import os

import conftest

from romlab.lab.netns import netns_list, netns_name, tap_name
from romlab.lab.qemu import Machine, Netdev, Qemu, find_qemu

# Prefixes of the temporary directories romlab makes for what it starts.
ROMLAB_MARKERS = ("romlab-qemu-", "romlab-boot-", "romlab-bench-", "romlab-dnsmasq-", "romlab-serve-", "romlab-vm-")


def boot_until(nic: str, romfile: str, pattern: bytes, *, firmware: str = "seabios", timeout: float = 180) -> tuple[bool, bytes]:
    """Boot QEMU and return (pattern seen, console bytes). QEMU is stopped either way."""
    assert find_qemu()
    machine = Machine(nic=nic, rom=romfile, firmware=firmware, netdev=Netdev("user"),
                      memory=512 if firmware == "ovmf" else 256)
    with Qemu(machine) as q:
        q.console.wait(lambda c: pattern in c.raw, timeout)
        out = bytes(q.console.raw)
    return pattern in out, out


def track(pid: int) -> int:
    """Count a romlab process a test started itself (not through run_romlab) as the test's own."""
    conftest.ROMLAB_PIDS.append(pid)
    return pid


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def romlab_processes() -> list[str]:
    """Command lines of running QEMU and dnsmasq processes that a romlab of this test run started."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        cmd = _cmdline(path.split("/")[2])
        if ("qemu-system" in cmd or "dnsmasq" in cmd) and conftest.RUN_TMPDIR in cmd:
            found.append(cmd)
    return found


def _own_prefixes(pids) -> list[str]:
    return [netns_name(pid, 0)[:-1] for pid in pids]


def romlab_netns(pids=None) -> list[str]:
    """Network namespaces made by the romlab processes of the current test (or of ``pids``)."""
    prefixes = _own_prefixes(conftest.ROMLAB_PIDS if pids is None else pids)
    return [ns for ns in netns_list() if any(ns.startswith(p) for p in prefixes)]


def romlab_taps(pids=None) -> list[str]:
    """Tap devices those processes would have made, if any is in the host's namespace."""
    prefixes = [tap_name(pid, 0)[:-1] for pid in (conftest.ROMLAB_PIDS if pids is None else pids)]
    return [n for n in os.listdir("/sys/class/net") if any(n.startswith(p) for p in prefixes)]


def romlab_tempdirs() -> list[str]:
    return [p for m in ROMLAB_MARKERS for p in glob.glob(os.path.join(conftest.RUN_TMPDIR, m + "*"))]


def leftovers() -> dict[str, list[str]]:
    """Everything the romlab processes of this test should have removed; empty lists when they did."""
    return {"processes": romlab_processes(), "netns": romlab_netns(), "taps": romlab_taps(),
            "tempdirs": romlab_tempdirs()}


def no_leftovers() -> bool:
    return not any(leftovers().values())


def seabios_version() -> str:
    """The version SeaBIOS prints in its banner, read from the bios-256k.bin QEMU loads.

    QEMU looks for it in the directories ``-L help`` lists; the version is the C string that
    SeaBIOS's "SeaBIOS (version %s)" is given (``1.16.2-debian-1.16.2-1`` on Debian 12,
    ``rel-1.16.3-0-g...`` in an upstream build).
    """
    import re
    import subprocess

    dirs = subprocess.run([find_qemu(), "-L", "help"], capture_output=True, text=True).stdout.split()
    for d in dirs:
        path = os.path.join(d, "bios-256k.bin")
        if os.path.exists(path):
            with open(path, "rb") as f:
                found = re.findall(rb"\x00((?:rel-)?\d+\.\d+\.\d+[\w.~+-]*)\x00", f.read())
            assert len(found) == 1, (path, found)
            return found[0].decode()
    raise AssertionError(f"no bios-256k.bin in QEMU's data directories {dirs}")
