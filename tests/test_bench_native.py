"""`romlab bench native`'s measuring helpers that need no NIC: reading an interface's carrier
through a crafted sysfs tree, and reading pktgen's own result line."""
from __future__ import annotations

import pytest


def test_carrier_is_read_under_romlab_sysfs(tmp_path, monkeypatch):
    from romlab.bench.native import _carrier

    net = tmp_path / "class" / "net"
    (net / "eth7").mkdir(parents=True)
    (net / "eth7" / "carrier").write_text("1\n")
    (net / "eth8").mkdir()
    (net / "eth8" / "carrier").write_text("0\n")
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path))
    assert _carrier("eth7") is True
    assert _carrier("eth8") is False
    assert _carrier("eth9") is False          # no such interface under the crafted root
