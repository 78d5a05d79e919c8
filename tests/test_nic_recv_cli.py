"""`romlab nic recv` around the device: what it reports and which files it refuses to replace.
The NIC is a stand-in object (romlab.cli.nic._open replaced): no VFIO, no VM."""
from __future__ import annotations

import romlab.cli.nic as nic_cli
from romlab.cli import main


class FakeNic:
    bdf, interrupts, link_up = "0000:00:04.0", 0, True

    class part:
        name = "82540EM"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def rx_wait_batch(self, out, timeout, mode):
        return 0, []

    def stats(self):
        return {"rx_good": 5, "tx_good": 0, "rx_missed": 2, "rx_dropped": 3, "rx_ring": 0, "tx_ring": 0}


def test_recv_text_output_shows_rx_dropped(monkeypatch, capsys):
    monkeypatch.setattr(nic_cli, "_open", lambda args: FakeNic())
    rc = main(["nic", "recv", "--pci", "0000:00:04.0", "--timeout", "0"])
    out = capsys.readouterr().out
    assert rc == 1  # no frame came
    assert "dropped 3" in out and "missed 2" in out


def test_recv_pcap_refuses_an_existing_file_before_opening_the_device(monkeypatch, capsys, tmp_path):
    opened = []
    monkeypatch.setattr(nic_cli, "_open", lambda args: (opened.append(args), FakeNic())[1])
    path = tmp_path / "rx.pcap"
    path.write_bytes(b"keep me")
    rc = main(["nic", "recv", "--pci", "0000:00:04.0", "--timeout", "0", "--pcap", str(path)])
    err = capsys.readouterr().err
    assert rc != 0 and "already exists" in err and "--overwrite" in err
    assert path.read_bytes() == b"keep me" and not opened
    rc = main(["nic", "recv", "--pci", "0000:00:04.0", "--timeout", "0", "--pcap", str(path), "--overwrite"])
    assert rc == 1 and opened and path.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")  # a fresh pcap header
