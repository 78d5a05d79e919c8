"""Shared test set-up.

Tests marked ``vm``, ``root``, ``qemu`` or ``pci`` need real parts (a QEMU guest, root, a
namespace, the machine's own PCI devices). Under CI (``CI`` set) or with ``ROMLAB_REQUIRE_ALL=1`` a skip of such a
test is turned into a failure, so a green run means they really ran.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IPXE_QEMU = Path("/usr/lib/ipxe/qemu")
SEABIOS = Path("/usr/share/seabios")
QEMU_SHARE = Path("/usr/share/qemu")
REAL_PART_MARKERS = ("vm", "root", "qemu", "pci")


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


# What this test run starts, so that leftover checks (tests/qemu_console.py) look only at it and
# not at other romlab runs on the same machine: every process started from here gets TMPDIR below
# (romlab's temporary directories, and so the paths in its QEMU and dnsmasq command lines, are
# under it), and the romlab processes run_romlab starts are remembered by PID (romlab names its
# network namespaces after its PID).
RUN_TMPDIR = ""
ROMLAB_PIDS: list[int] = []


def pytest_configure(config):
    global RUN_TMPDIR
    tempfile.gettempdir()  # pytest's own temporary files stay where they were
    RUN_TMPDIR = tempfile.mkdtemp(prefix="romlab-testrun-")
    os.chmod(RUN_TMPDIR, 0o1777)  # some checks run romlab as another user
    os.environ["TMPDIR"] = RUN_TMPDIR


def pytest_unconfigure(config):
    if RUN_TMPDIR:
        shutil.rmtree(RUN_TMPDIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _romlab_pids():
    """Each test's leftover check covers the romlab processes that test started."""
    ROMLAB_PIDS.clear()
    yield


def run_romlab(*args: str, input: bytes | None = None, timeout: float = 120, env=None,
               user: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI in a fresh process, as a user would."""
    cmd = [sys.executable, "-m", "romlab", *map(str, args)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as p:
        ROMLAB_PIDS.append(p.pid)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.fixture
def backups(tmp_path, monkeypatch):
    """A backup directory of the test's own (flash backups and write journals go there)."""
    d = tmp_path / "backups"
    monkeypatch.setenv("ROMLAB_BACKUP_DIR", str(d))
    return d


@pytest.fixture
def romlab():
    return run_romlab


def corpus(path: str | Path) -> Path:
    """A ROM shipped by a Debian package; a missing package fails the test, it is not skipped."""
    p = Path(path)
    if not p.exists():
        pytest.fail(f"{p} is missing: run scripts/setup.sh to install the Debian ROM packages")
    return p
