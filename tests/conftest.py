"""Shared test set-up.

Tests marked ``vm``, ``root`` or ``qemu`` need real parts (a QEMU guest, root, a
namespace). Under CI (``CI`` set) or with ``ROMLAB_REQUIRE_ALL=1`` a skip of such a
test is turned into a failure, so a green run means they really ran.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IPXE_QEMU = Path("/usr/lib/ipxe/qemu")
SEABIOS = Path("/usr/share/seabios")
QEMU_SHARE = Path("/usr/share/qemu")
REAL_PART_MARKERS = ("vm", "root", "qemu")


def _require_all() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("ROMLAB_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _require_all():
        marks = [m for m in REAL_PART_MARKERS if item.get_closest_marker(m)]
        if marks:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"test needing {'/'.join(marks)} was skipped under CI: {reason}"


def run_romlab(*args: str, input: bytes | None = None, timeout: float = 120, env=None,
               user: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI in a fresh process, as a user would."""
    cmd = [sys.executable, "-m", "romlab", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, input=input, timeout=timeout, env=env, text=False)


@pytest.fixture
def romlab():
    return run_romlab


def corpus(path: str | Path) -> Path:
    """A ROM shipped by a Debian package; a missing package fails the test, it is not skipped."""
    p = Path(path)
    if not p.exists():
        pytest.fail(f"{p} is missing: run scripts/setup.sh to install the Debian ROM packages")
    return p
