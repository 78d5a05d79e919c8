"""The pieces of `romlab undi`'s VFIO backend that a host without an IOMMU can check: a ROM that is not
for the device is refused before the device is touched; the emulated RAM's fixed-IOVA DMA mapping
refuses what the IOMMU would not take and takes its IOVAs out of the allocator; a BAR mapped
directly takes the ROM's stores with no Python in between; the PCI BIOS lets iPXE find a NIC on
bus 1, where `romlab vm` puts it; the missed-packet counters of both kinds count from OPEN. The
backend on a real (QEMU) device is covered by tests/test_undi_vm.py."""
from __future__ import annotations

import mmap
import os
from types import SimpleNamespace

import pytest
from conftest import IPXE_QEMU, run_romlab
from test_messages import _device
from test_undi_crafted import LOADER, crafted, listing

from drivers.intel_model import IntelModel
from drivers.undi.device import ModelDevice
from drivers.undi.loader import UndiMachine
from hw import vfio
from hw.errors import HardwareError, RomRunError

PAGE = mmap.PAGESIZE


def test_a_rom_for_another_device_is_refused_before_the_device_is_touched(tmp_path):
    env = _device(tmp_path, 0x8086, 0x10D3)  # an 82574L; pxe-e1000.rom's PCIR says 8086:100e
    r = run_romlab("undi", "info", "--pci", "03:00.0", "--rom", str(IPXE_QEMU / "pxe-e1000.rom"), env=env)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err == ("romlab undi: error: the ROM is for 8086:100e, the device is 8086:10d3; use --force-ids "
                   "to run it anyway\n")
    assert not (tmp_path / "state").exists()  # no driver record: nothing was unbound


def test_bad_arguments_are_one_line(tmp_path):
    r = run_romlab("undi", "send", "--pci", "03:00.0", "--size", "59")
    assert r.returncode == 2 and b"frame size 59 is outside 60..1514" in r.stderr
    r = run_romlab("undi", "info", "--pci", "03:00.0", "--rom", str(tmp_path / "none.rom"))
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"none.rom" in r.stderr


@pytest.mark.parametrize("action, option, value", [("info", "--watchdog", "nan"), ("info", "--watchdog", "inf"),
                                                   ("send", "--watchdog", "-0.5"), ("info", "--watchdog", "1e9"),
                                                   ("recv", "--timeout", "nan"), ("recv", "--timeout", "inf")])
def test_non_finite_or_huge_seconds_are_refused_before_the_device(tmp_path, action, option, value):
    """NaN passes a "<= 0" test: refused by the argument check, not after the NIC was taken."""
    env = _device(tmp_path, 0x8086, 0x100E)
    r = run_romlab("undi", action, "--pci", "03:00.0", option, value, env=env)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert option in err and "(0, " in err
    assert not (tmp_path / "state").exists()


def test_reserve_takes_exactly_the_range_out_of_the_free_space():
    a = vfio.IovaAllocator([(0, 0x3FFFFFF)], page=PAGE, floor=0x100000)  # free: [1 MiB, 64 MiB)
    a.reserve(0, 0x2000000)  # the emulated PC's 32 MiB, reaching below the floor
    assert a.free == [[0x2000000, 0x4000000]]
    a = vfio.IovaAllocator([(0, 0x3FFFFFF)], page=PAGE, floor=0x100000)
    a.reserve(0x200000, 0x100000)  # a hole in the middle
    assert a.free == [[0x100000, 0x200000], [0x300000, 0x4000000]]
    assert a.alloc(0x100000) == 0x100000 and a.alloc(0x100000) == 0x300000


@pytest.fixture
def dev():
    """A VfioDevice around /dev/null fds (every VFIO ioctl fails with ENOTTY) and a 64 MiB IOMMU."""
    v = vfio.VfioDevice.__new__(vfio.VfioDevice)
    v.pci = SimpleNamespace(bdf="0000:03:00.0")
    v.closed, v.backend, v.ioas_id, v.iommufd = False, "container", 0, -1
    v.dma, v.irq_fds, v._maps = {}, {}, []
    v.iova_ranges = [(0, 0x3FFFFFF)]
    v.iova = vfio.IovaAllocator(v.iova_ranges)
    for name in ("container_fd", "group_fd", "device_fd"):
        setattr(v, name, os.open("/dev/null", os.O_RDWR))
    yield v
    for name in ("container_fd", "group_fd", "device_fd"):
        os.close(getattr(v, name))


def test_dma_map_at_refuses_what_the_iommu_would_not_take(dev):
    mem = mmap.mmap(-1, 16 * PAGE)
    with pytest.raises(HardwareError, match="not whole pages"):
        dev.dma_map_at(mem, 0, PAGE + 1, 0)
    with pytest.raises(HardwareError, match="not whole pages"):
        dev.dma_map_at(mem, 8 * PAGE, 16 * PAGE, 0)  # past the end of the buffer
    with pytest.raises(HardwareError, match="does not accept IOVA 0x4000000"):
        dev.dma_map_at(mem, 0, PAGE, 0x4000000)
    free = [list(r) for r in dev.iova.free]
    with pytest.raises(HardwareError, match="mapping DMA memory at IOVA 0x0 failed"):
        dev.dma_map_at(mem, 0, 4 * PAGE, 0)  # the ioctl itself fails on /dev/null
    assert dev.dma == {} and dev.iova.free == free and not mem.closed  # nothing half-done


def test_dma_map_at_records_lent_memory_and_never_closes_it(dev, monkeypatch):
    calls = []
    monkeypatch.setattr(dev, "_map_dma", lambda buf: calls.append((buf.iova, buf.size)))
    mem = mmap.mmap(-1, 16 * PAGE)
    base = vfio.DmaBuffer(mem, 0, 16 * PAGE).vaddr
    buf = dev.dma_map_at(mem, 4 * PAGE, 4 * PAGE, 0x200000)
    assert calls == [(0x200000, 4 * PAGE)] and buf.vaddr == base + 4 * PAGE and not buf.owned
    with pytest.raises(HardwareError, match="overlaps a DMA mapping"):
        dev.dma_map_at(mem, 0, 2 * PAGE, 0x200000 + 3 * PAGE)
    dev._forget_dma(buf)
    assert dev.dma == {} and not mem.closed


class _HostMemoryBar(ModelDevice):
    """The e1000 model, but BAR 0 is plain host memory handed to the machine as a VFIO BAR mmap is."""

    def __init__(self):
        super().__init__(IntelModel(device_id=0x100E))
        self.bar0 = mmap.mmap(-1, 0x20000)
        self.address = vfio.DmaBuffer(self.bar0, 0, len(self.bar0)).vaddr

    def bar_memory(self, index):
        return self.address if index == 0 else None


def test_a_directly_mapped_bar_takes_the_roms_stores_without_python():
    code = bytes.fromhex("66b80000b8fe 6766c70078563412 6766c7400812345678 cb")
    assert listing(code, LOADER) == ["mov eax, 0xfeb80000", "mov dword ptr [eax], 0x12345678",
                                     "mov dword ptr [eax + 8], 0x78563412", "retf"]
    dev = _HostMemoryBar()
    um = UndiMachine(crafted({LOADER: code}), dev)
    assert um.bar_addresses[0] == 0xFEB80000  # where the machine's BIOS put BAR 0
    um.m.far_call(0xC800, LOADER)
    assert dev.bar0[0:4] == bytes.fromhex("78563412") and dev.bar0[8:12] == bytes.fromhex("12345678")
    assert dev.access_count == 0  # no access went through bar_read/bar_write
    um.m.unmap_direct()
    with pytest.raises(RomRunError, match="write to unmapped memory at 0xfeb80000"):
        um.m.far_call(0xC800, LOADER)  # once unmapped, the BAR is gone from the emulated PC


def test_pci_bios_names_the_devices_bus_as_the_last_one():
    """A NIC behind a PCIe root port sits on bus 1 or higher; iPXE scans buses 0 to INT 1Ah B101h's
    CL, so CL must reach the device's bus."""
    code = bytes.fromhex("b801b1 cd1a cb")
    assert listing(code, LOADER) == ["mov ax, 0xb101", "int 0x1a", "retf"]
    um = UndiMachine(crafted({LOADER: code}), ModelDevice(IntelModel(device_id=0x100E), bdf=0x0300))  # 03:00.0
    um.run_init()
    um.m.far_call(0xC800, LOADER)
    assert um.m.reg("cx") & 0xFF == 3


@pytest.mark.skipif(not (IPXE_QEMU / "pxe-e1000.rom").exists(), reason="Debian's ipxe-qemu is not installed")
def test_ipxe_finds_its_nic_on_bus_1():
    """What `romlab vm` gives: the e1000 at 01:00.0. START_UNDI fails with status 0x63
    (UNDI_CANNOT_INITIALIZE_NIC) when iPXE's bus scan does not reach it."""
    from drivers.undi.client import UndiClient

    dev = ModelDevice(IntelModel(device_id=0x100E, mac=bytes.fromhex("020000000101")), bdf=0x0100)
    um = UndiMachine((IPXE_QEMU / "pxe-e1000.rom").read_bytes(), dev)
    um.run_init()
    um.run_loader()
    client = UndiClient(um, irq_pending=lambda: dev.irq)
    client.probe()
    assert client.mac == bytes.fromhex("020000000101")
    client.remove()


@pytest.mark.parametrize("ids,reads,counts", [
    ((0x8086, 0x100E), [3, 4], [3, 4]),                   # Intel MPC: reading clears it
    ((0x10EC, 0x8139), [7, 7, 12], [0, 0, 5]),            # RTL8139 RxMissed: a count kept across runs
    ((0x10EC, 0x8139), [0xFFFFFE, 0x000001], [0, 3]),     # ... 24 bits wide, wrapping
])
def test_missed_packets_counts_from_the_first_read(ids, reads, counts):
    from drivers.undi.vfio_device import VfioNic

    nic = VfioNic.__new__(VfioNic)
    nic.ids = ids
    values = iter(reads)
    nic.bar_read = lambda index, offset, size: next(values)
    assert [nic.missed_packets() for _ in reads] == counts


def test_a_bar_smaller_than_a_page_is_never_mapped_in():
    """A mapping is whole pages, so RTL8139's 256-byte memory BAR mapped in would let the ROM reach
    past its end; such a BAR goes through the callbacks, which bound every access. A page-sized
    one is mapped."""
    from drivers.undi.device import Bar
    from drivers.undi.vfio_device import VfioNic

    mapped = []
    nic = VfioNic.__new__(VfioNic)
    nic.direct = True
    nic.regions = {0: SimpleNamespace(mmappable=True), 1: SimpleNamespace(mmappable=True)}
    nic.bars = [Bar(0, False, 0x100), Bar(1, False, 0x20000)]
    nic._mapped = {}
    buf = mmap.mmap(-1, 0x20000)
    nic.v = SimpleNamespace(map_bar=lambda index: mapped.append(index) or SimpleNamespace(mm=buf))
    assert nic.bar_memory(0) is None and mapped == []
    assert nic.bar_memory(1) == vfio.DmaBuffer(buf, 0, len(buf)).vaddr and mapped == [1]
    # asked again (a trace turned off once more): the same mapping, no second mmap
    assert nic.bar_memory(1) == vfio.DmaBuffer(buf, 0, len(buf)).vaddr and mapped == [1]


def _fake_backend(monkeypatch, events, reset_why, unmap_fails):
    """drivers.undi.vfio_device with the PCI, VFIO, bind and ROM steps stood in for by recorders."""
    import contextlib

    from drivers.undi import vfio_device as vd

    @contextlib.contextmanager
    def bound(dev):
        events.append("bind")
        try:
            yield
        finally:
            events.append("give back")

    @contextlib.contextmanager
    def vfio_device(dev):
        events.append("open")
        try:
            yield SimpleNamespace()
        finally:
            events.append("close")

    class Nic:
        def __init__(self, v, direct):
            self.resets = iter(reset_why)

        def reset(self):
            events.append("reset")
            return next(self.resets)

    class Machine:
        def __init__(self, image, nic, force_ids):
            def unmap():
                events.append("unmap")
                if unmap_fails:
                    raise OSError("munmap failed")
            self.m = SimpleNamespace(unmap_direct=unmap)

        def run_init(self, timeout):
            pass

        run_loader = run_init

    class Client:
        def __init__(self, um, irq_pending, timeout):
            pass

        def probe(self):
            events.append("probe")

    monkeypatch.setattr(vd, "PciDevice", SimpleNamespace(open=lambda bdf: SimpleNamespace(vendor_id=0x8086,
                                                                                         device_id=0x100E)))
    monkeypatch.setattr(vd, "vfio_bind", SimpleNamespace(bound=bound))
    monkeypatch.setattr(vd, "vfio", SimpleNamespace(VfioDevice=vfio_device))
    monkeypatch.setattr(vd, "VfioNic", Nic)
    monkeypatch.setattr(vd, "UndiMachine", Machine)
    monkeypatch.setattr(vd, "UndiClient", Client)
    return vd


def test_the_reset_after_the_run_is_recorded_in_its_notes(monkeypatch):
    events = []
    vd = _fake_backend(monkeypatch, events, [None, "no FLR or PM reset on this device"], unmap_fails=False)
    with vd.undi_on_device("03:00.0", crafted({LOADER: b"\xcb"})) as run:
        assert run.notes == []
    assert run.notes == ["no reset after the run: no FLR or PM reset on this device (the kernel driver's probe "
                         "resets it)"]
    assert events == ["bind", "open", "reset", "probe", "unmap", "reset", "close", "give back"]
    events.clear()
    vd = _fake_backend(monkeypatch, events, ["busy", None], unmap_fails=False)
    with vd.undi_on_device("03:00.0", crafted({LOADER: b"\xcb"})) as run:
        pass
    assert run.notes == ["no reset before the ROM ran: busy",
                         "reset after the run (bus mastering off, VFIO device reset)"]


def test_a_failing_clean_up_step_skips_none_of_the_next(monkeypatch):
    """unmap_direct failing: the device is still reset, closed and given back, in that order."""
    events = []
    vd = _fake_backend(monkeypatch, events, [None, None], unmap_fails=True)
    with pytest.raises(OSError, match="munmap failed"):
        with vd.undi_on_device("03:00.0", crafted({LOADER: b"\xcb"})):
            raise RomRunError("the ROM faulted")
    assert events == ["bind", "open", "reset", "probe", "unmap", "reset", "close", "give back"]


def _fake_run(polls, ids=(0x8086, 0x100E)):
    """What undi_on_device yields, stood in for: a client whose polls return ``polls`` in turn."""
    from construct import Container

    batches = iter(polls)
    client = SimpleNamespace(mac=bytes.fromhex("525400123456"), rx_errors=0, open=lambda: None,
                             poll=lambda: next(batches, []), close=lambda: None, remove=lambda: None,
                             get_statistics=lambda: Container(rcv_good_frames=9, xmt_good_frames=0))
    nic = SimpleNamespace(v=SimpleNamespace(pci=SimpleNamespace(bdf="0000:03:00.0")), ids=ids,
                          missed_packets=lambda: 0, accesses=0)
    machine = SimpleNamespace(image=SimpleNamespace(pcir=SimpleNamespace(vendor_id=ids[0], device_id=ids[1])),
                              timings=SimpleNamespace(init=0.1, loader=0.2, calls={}))
    return SimpleNamespace(nic=nic, machine=machine, client=client, rom_source="rom-bar", notes=["reset after the run"])


def test_recv_counts_a_duplicated_frame_once(monkeypatch, capsys):
    import contextlib
    import json

    from drivers import frames
    from romlab.cli import main
    from romlab.cli import undi as cli_undi

    src, dst = bytes.fromhex("525400aaaaaa"), bytes.fromhex("525400123456")
    f = [frames.frame(src, dst, 7, seq, 64) for seq in range(3)]
    run = _fake_run([[f[0], f[0], f[1], f[0]], [f[2]], [f[1]]])
    monkeypatch.setattr(cli_undi, "_session", lambda args, rom: contextlib.nullcontext(run))
    rc = main(["undi", "recv", "--pci", "03:00.0", "--count", "3", "--seed", "7", "--timeout", "30", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert (doc["received"], doc["verified"], doc["duplicates"]) == (5, 3, 2)
    assert doc["sequences"] == [0, 0, 1, 0, 2] and doc["notes"] == ["reset after the run"]


def test_get_nic_type_bus_dev_func_is_spelled_as_a_bdf():
    """PXENV_UNDI_GET_NIC_TYPE's BusDevFunc is the PCI BIOS word bus << 8 | device << 3 | function:
    0x0311 is bus 03, device 02, function 1."""
    from construct import Container

    from romlab.cli.undi import _nic_type

    info = Container(vendor_id=0x8086, dev_id=0x100E, base_class=2, sub_class=0, prog_intf=0, rev=3,
                     bus_dev_func=0x0311, sub_vendor_id=0x1AF4, sub_device_id=0x1100)
    doc = _nic_type(Container(status=0, nic_type=2, info=info), 0)
    assert doc["bus_dev_func"] == "0000:03:02.1" and doc["id"] == "8086:100e" and doc["class"] == "020000"
    assert _nic_type(Container(status=0, nic_type=2, info=info), 1)["bus_dev_func"] == "0001:03:02.1"
