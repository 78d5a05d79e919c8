"""Holding Ctrl-C (SIGINT) and SIGTERM back while hardware state is half changed.

A rebind between drivers, or a VFIO open that has fds but has not recorded them yet, must not
be cut in the middle: the signal waits until the block is done and is delivered then.

The hold is for the whole process. CPython runs every Python-level signal handler in the main
thread, whichever thread the kernel gave the signal to, so blocking the signal in one thread
(``pthread_sigmask``) holds nothing: the kernel hands it to another thread and the main thread
runs the handler at once. Instead, while a hold is in place, the handlers of SIGINT and SIGTERM
are swapped for one that only notes the signal; when the outermost hold ends the old handlers
come back and each noted signal is raised again, so it is handled exactly as it would have been
(KeyboardInterrupt, the program's own handler, or death by SIGTERM's default action). The noted
list is emptied before the first is raised, and every one is raised even when an earlier one's
handler raised, so none is left over to go off at some later, unrelated hold.

A long hold (the NIC flash programmer holds for a whole session) asks ``pending()`` between
steps and ends its hold early to let a signal through.

Only the main thread may change signal handlers, so a hold must be taken there.
"""
from __future__ import annotations

import contextlib
import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM)

_depth = 0
_saved: dict[int, object] = {}
_pending: list[int] = []


def _note(signum, frame) -> None:
    if signum not in _pending:
        _pending.append(signum)


@contextlib.contextmanager
def held():
    """Defer SIGINT/SIGTERM until the ``with`` block is complete, then deliver them."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("hw.signals.held() must be entered from the main thread: only there can "
                           "SIGINT and SIGTERM be held for the whole process")
    if _depth == 0:
        for sig in HELD:
            # None: a handler installed outside Python, which could not be put back; leave it.
            if signal.getsignal(sig) is not None:
                _saved[sig] = signal.signal(sig, _note)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _release()


def pending() -> tuple[int, ...]:
    """The signals noted by the hold in place, oldest first; empty when none came (or no hold)."""
    return tuple(_pending)


def _release() -> None:
    for sig, handler in list(_saved.items()):
        signal.signal(sig, handler)
        del _saved[sig]
    noted = _pending[:]
    _pending.clear()
    _deliver(noted)


def _deliver(sigs: list[int]) -> None:
    """Raise each signal in turn; one whose handler raises (KeyboardInterrupt) does not stop the rest."""
    if not sigs:
        return
    try:
        signal.raise_signal(sigs[0])
    finally:
        _deliver(sigs[1:])

