"""hw.sysfs's error lines and hw.signals' Ctrl-C hold, on their own.

The hold is checked with a second thread present, as in any process that has a reader
thread: the kernel may hand a process-directed signal to whichever thread does not block
it, and CPython then runs the Python handler in the main thread. ``signal.pthread_kill``
aims the signal at the second thread so that case is the one tested, every time; the
signal's wakeup fd (written by CPython's C-level handler) says when it has arrived.
"""
from __future__ import annotations

import os
import select
import signal
import threading

import pytest

from hw import signals, sysfs
from hw.errors import RomlabError


def test_defect8_sysfs_errors_name_the_operation(tmp_path):
    d = tmp_path / "attr"
    d.mkdir()           # a directory where an attribute should be: open(2) says EISDIR
    with pytest.raises(RomlabError) as exc:
        sysfs.write_text(d, "1")
    assert str(exc.value) == f"cannot write {d}: Is a directory"
    with pytest.raises(RomlabError) as exc:
        sysfs.read_text(d)
    assert str(exc.value) == f"cannot read {d}: Is a directory"


class Term(Exception):
    pass


def _raise_term(signum, frame):
    raise Term


@pytest.fixture
def second_thread():
    """A thread that leaves SIGINT/SIGTERM unblocked and waits; the signal's wakeup fd."""
    ready, stop = threading.Event(), threading.Event()

    def idle():
        ready.set()
        stop.wait(60)
    t = threading.Thread(target=idle, name="second")
    t.start()
    assert ready.wait(10)
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w)
    old_term = signal.signal(signal.SIGTERM, _raise_term)
    try:
        yield t, r
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.set_wakeup_fd(old_fd)
        os.close(r)
        os.close(w)
        stop.set()
        t.join(10)


def _spin(n: int = 10000) -> int:
    """Plain bytecode: the main thread runs pending signal handlers between instructions."""
    total = 0
    for i in range(n):
        total += i
    return total


@pytest.mark.parametrize("sig,exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Term)])
def test_defect8_hold_covers_a_signal_given_to_another_thread(second_thread, sig, exc):
    thread, wakeup = second_thread
    inside = []
    with pytest.raises(exc):
        with signals.held():
            try:
                signal.pthread_kill(thread.ident, sig)
                assert select.select([wakeup], [], [], 10)[0], "the signal never arrived"
                assert os.read(wakeup, 16) == bytes([sig])
                _spin()
                _spin()
            except exc:
                inside.append(sig)
                raise
            inside.append("block done")
    # Delivered once the block was complete, not inside it.
    assert inside == ["block done"]


def test_nested_holds_deliver_once_at_the_outermost_end():
    before = signal.getsignal(signal.SIGINT)
    order = []
    with pytest.raises(KeyboardInterrupt):
        with signals.held():
            with signals.held():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
                _spin()
                order.append("inner done")
            _spin()
            order.append("outer done")
    assert order == ["inner done", "outer done"]
    assert signal.getsignal(signal.SIGINT) is before


def test_an_error_in_the_block_still_puts_the_handlers_back():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(ValueError):
        with signals.held():
            raise ValueError("inside")
    assert signal.getsignal(signal.SIGINT) is before
    with signals.held():
        pass                       # nothing pending: nothing raised


def test_a_hold_outside_the_main_thread_is_refused():
    got = []

    def worker():
        try:
            with signals.held():
                got.append("entered")
        except RuntimeError as exc:
            got.append(str(exc))
    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert len(got) == 1 and "main thread" in got[0]


def test_sigterm_default_action_comes_after_the_block():
    """SIGTERM with no handler of its own ends the process, once the block is done."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import os, signal\n"
            "from hw import signals\n"
            "with signals.held():\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    print('block done', flush=True)\n"
            "print('after the block', flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == -signal.SIGTERM and r.stdout == "block done\n", r


def test_review5_two_pending_signals_are_both_delivered_at_the_end_of_the_hold():
    """SIGINT and SIGTERM both held: the KeyboardInterrupt of the first must not leave the second
    noted, to go off at some later, unrelated hold."""
    seen = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals.held():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGTERM)
        assert seen == [signal.SIGTERM]
        assert signals.pending() == ()
        with signals.held():
            pass                    # a later hold: nothing left over to deliver
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_pending_names_the_signals_a_hold_has_noted():
    assert signals.pending() == ()
    with pytest.raises(KeyboardInterrupt):
        with signals.held():
            signal.raise_signal(signal.SIGINT)
            assert signals.pending() == (signal.SIGINT,)
    assert signals.pending() == ()
