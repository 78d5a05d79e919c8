"""Processes the lab starts (QEMU, virtme-run, dnsmasq): they never outlive romlab.

Each is started with PR_SET_PDEATHSIG, so the kernel SIGKILLs it when romlab goes away,
however romlab goes (SIGKILL included), and in a process group of its own, so that stopping
it takes its children along (virtme-run's QEMU). :func:`stop` always reaps what it stopped.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess

from hw.errors import LabError

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when romlab goes away, however it goes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def launch(cmd: list[str], *, what: str = "QEMU", **popen) -> subprocess.Popen:
    """Start ``cmd`` so that it dies with romlab and leads a process group of its own."""
    try:
        return subprocess.Popen(cmd, preexec_fn=die_with_parent, start_new_session=True, **popen)
    except OSError as exc:
        raise LabError(f"cannot start {what}: {exc.strerror or exc}") from None


def stop(proc: subprocess.Popen, *, grace: float = 0.0) -> int | None:
    """Stop ``proc`` and everything in its process group, and reap it; its exit status.

    With ``grace``, SIGTERM first and SIGKILL only if it is still there after that many
    seconds (virtme-run then cleans up after its QEMU); without, SIGKILL at once (nothing
    in a firmware boot needs a clean shutdown).
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if sig == signal.SIGTERM and not grace:
            continue
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while others of its group live on: take them too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.returncode
