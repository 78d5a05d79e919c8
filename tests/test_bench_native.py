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


# A device file after a run, as pktgen_if_show prints it, its result written from show_results'
# two format strings in net/core/pktgen.c:
#   "OK: %llu(c%llu+d%llu) usec, %llu (%dbyte,%dfrags)\n"  then  "  %llupps %lluMb/sec (%llubps) errors: %llu"
# here a 2.000512 s run (1,999,000 us busy + 1,512 us idle) of 321,000 68-byte frames, no frags.
PKTGEN_FILE = """Params: count 0  min_pkt_size: 68  max_pkt_size: 68
     frags: 0  delay: 0  clone_skb: 0  ifname: eth1
     flows: 0 flowlen: 0
     burst: 32
Current:
     pkts-sofar: 321000  errors: 0
     started: 1234567890us  stopped: 1236568402us idle: 1512us
Result: OK: 2000512(c1999000+d1512) usec, 321000 (68byte,0frags)
  160458pps 87Mb/sec (87289152bps) errors: 0
"""


def test_pktgen_result_line_gives_its_time_frames_and_size():
    from romlab.bench.native import parse_pktgen_result

    assert parse_pktgen_result(PKTGEN_FILE) == (2_000_512, 321_000, 68)


@pytest.mark.parametrize("text", ["Result: OK: pkt_size=68\n",            # a configuration command's result
                                  "Result: Idle\n", "", "Params: count 0\n"])
def test_pktgen_without_a_run_result_is_an_error(text):
    from hw.errors import LabError
    from romlab.bench.native import parse_pktgen_result

    with pytest.raises(LabError, match="pktgen gave no run result"):
        parse_pktgen_result(text)


class _Dev:
    """What bench_nic reads of a PCI device."""

    def __init__(self, bdf, driver):
        self.bdf, self.driver, self.ids, self.physfn, self.sriov_capable = bdf, driver, "8086:100e", None, False
        self.iommu_domain = None

    def net_interfaces(self):
        return ["eth1"] if self.driver not in (None, "vfio-pci") else []


def _fake_bench(monkeypatch, romlab_fails=False, kernel_dma=None):
    """bench_nic with the device, its binding, its IOMMU domain and each path's run replaced:
    returns the order the runs, bindings and domain changes were made in."""
    import contextlib

    from hw import vfio_bind
    from hw.errors import HardwareError
    from hw.pci import PciDevice
    from romlab.bench import native

    order, state = [], {"driver": "e1000", "domain": "DMA"}

    def dev(bdf):
        d = _Dev(bdf, state["driver"])
        d.iommu_domain = state["domain"]
        return d
    monkeypatch.setattr(PciDevice, "open", classmethod(lambda cls, bdf: dev(bdf)))

    @contextlib.contextmanager
    def dma_domain(d, kind):
        assert state["driver"] == "e1000"
        order.append(f"domain {kind}")
        state["domain"] = kind
        try:
            yield kind
        finally:
            state["domain"] = "DMA"
            order.append("domain back")
    monkeypatch.setattr(vfio_bind, "dma_domain", dma_domain)
    monkeypatch.setattr(vfio_bind, "refuse_pending", lambda d: order.append("checked"))
    monkeypatch.setattr(native, "_settle", lambda: None)
    monkeypatch.setattr(native, "_link_up", lambda ifname: None)

    def bind(dev):
        order.append("bind")
        state["driver"] = "vfio-pci"

    def unbind(dev):
        order.append("unbind")
        state["driver"] = "e1000"

    def romlab_tx(bdf, impl, size, batch, seconds):
        assert state["driver"] == "vfio-pci"
        if romlab_fails:
            raise HardwareError("0000:00:03.0 is not a NIC this driver supports")
        order.append(impl)
        return native.Run(10, 10, 1.0)

    def kernel_tx(ifname, size, batch, seconds):
        assert state["driver"] == "e1000" and ifname == "eth1"
        order.append(f"kernel {state['domain']}")
        return native.Run(10, 11, 1.0)

    monkeypatch.setattr(vfio_bind, "bind", bind)
    monkeypatch.setattr(vfio_bind, "unbind", unbind)
    monkeypatch.setattr(native, "romlab_tx", romlab_tx)
    monkeypatch.setattr(native, "kernel_tx", kernel_tx)
    return order, lambda: native.bench_nic(dev("0000:00:03.0"), [64], [32], 0.1, 3, kernel_dma=kernel_dma)


def test_runs_are_interleaved_in_rounds(monkeypatch):
    order, bench = _fake_bench(monkeypatch)
    res = bench()
    assert order == ["checked"] + ["kernel DMA", "bind", "c", "python", "unbind"] * 3
    assert (res.iommu_domain, res.kernel_dma) == ("DMA", "DMA")
    assert [(f.path, len(f.runs)) for f in res.figures] == [("kernel", 3), ("c", 3), ("python", 3)]
    assert res.romlab_error is None


def test_a_nic_romlab_does_not_take_keeps_its_kernel_rounds(monkeypatch):
    order, bench = _fake_bench(monkeypatch, romlab_fails=True)
    res = bench()
    assert order == ["checked", "kernel DMA", "bind", "unbind", "kernel DMA", "kernel DMA"]
    assert [(f.path, len(f.runs)) for f in res.figures] == [("kernel", 3)]
    assert res.romlab_error == "0000:00:03.0 is not a NIC this driver supports"


def test_kernel_dma_holds_for_the_kernels_runs_only(monkeypatch):
    """--kernel-dma identity: each round's kernel runs inside the domain change, romlab's runs
    through VFIO after the group's own type is back."""
    order, bench = _fake_bench(monkeypatch, kernel_dma="identity")
    res = bench()
    assert order == ["checked"] + ["domain identity", "kernel identity", "domain back", "bind", "c", "python",
                                   "unbind"] * 3
    assert (res.iommu_domain, res.kernel_dma) == ("DMA", "identity")


def test_the_result_is_read_once_pktgen_has_written_it(tmp_path, monkeypatch):
    """pktgen clears its running flag before it writes the result (pktgen_stop_device), so the
    file can still say "Starting" just after the stop returns: the run's result is waited for."""
    from romlab.bench import native

    dev = tmp_path / "eth1"
    reads = iter(["Result: Starting\n", "Result: Starting\n", PKTGEN_FILE])
    monkeypatch.setattr(type(dev), "read_text", lambda self: next(reads))
    assert native._run_result(dev) == (2_000_512, 321_000, 68)
