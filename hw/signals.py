"""Holding Ctrl-C (SIGINT) and SIGTERM back while hardware state is half changed.

A rebind between drivers, or a VFIO open that has fds but has not recorded them yet, must not
be cut in the middle: the signal waits until the block is done and is delivered then.
"""
from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def held():
    """Defer SIGINT/SIGTERM until the ``with`` block is complete."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
