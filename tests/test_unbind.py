"""`--unbind` on flash, nvm and restore: the driver is detached and given back the way `romlab vfio` does it.

A crafted sysfs tree (ROMLAB_SYSFS) stands in for the kernel: ``FakeKernel`` takes the
writes romlab makes to ``unbind``, ``bind``, ``driver_override`` and ``drivers_probe`` and
moves the device's ``driver`` link as Linux does, so the driver romlab sees afterwards is the
one the writes left. BAR0 is the register double, as in test_flash_pci.py.

What must hold for every verb: while the driver is away, a record of it is in the state
directory (ROMLAB_STATE_DIR), so a crash leaves something to restore from; a Ctrl-C that
lands while the driver is being detached or given back waits until that step is complete.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from test_flash_pci import BDF, card, double, one_line, run

from hw import sysfs
from hw.errors import HardwareError
from romtools.flash import backup as backupmod
from romtools.flash import chips

STATE = "state"
NVM = [0x1111] * 63 + [(0xBABA - 63 * 0x1111) & 0xFFFF]      # words that sum to 0xBABA


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMLAB_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path / "sys"))
    monkeypatch.setenv("ROMLAB_STATE_DIR", str(tmp_path / STATE))
    # The crafted tree needs no root; the root checks are exercised in the VM (test_flash_vm.py).
    monkeypatch.setattr(os, "geteuid", lambda: 0)


class FakeKernel:
    """The kernel's half of driver binding, on the crafted tree.

    ``on_write(path, phase)`` is called before ("before") and after ("after") each write,
    so a test can send itself a signal at the moment a real kernel would be mid-change.
    """

    def __init__(self, tmp_path: Path, monkeypatch, native: str):
        self.sys = tmp_path / "sys"
        self.native = native
        self.writes: list[tuple[str, str]] = []
        self.on_write = lambda path, phase: None
        self.real_write = sysfs.write_text
        monkeypatch.setattr(sysfs, "write_text", self.write)

    def dev(self, bdf: str) -> Path:
        return self.sys / "bus" / "pci" / "devices" / bdf

    def driver(self, bdf: str = BDF) -> str | None:
        link = self.dev(bdf) / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def _bind(self, bdf: str, name: str) -> None:
        drv = self.sys / "bus" / "pci" / "drivers" / name
        drv.mkdir(parents=True, exist_ok=True)
        for f in ("bind", "unbind"):
            if not (drv / f).exists():
                (drv / f).write_text("")
        (self.dev(bdf) / "driver").symlink_to(drv)

    def write(self, path, value: str) -> None:
        path = Path(path)
        self.on_write(path, "before")
        name = path.name
        bdf = value.strip()
        self.writes.append((name, bdf))
        if name == "driver_override":
            path.write_text(value.strip() + "\n" if value.strip() else "(null)\n")
        elif name == "unbind":
            self.real_write(path, value)
            (self.dev(bdf) / "driver").unlink()
        elif name == "bind":
            self.real_write(path, value)
            self._bind(bdf, path.parent.name)
        elif name == "type":                  # an attribute's store replaces what it shows
            group = path.parent / "devices"
            if any(self.driver(b) for b in os.listdir(group)):
                raise HardwareError(f"cannot write {path}: Operation not permitted")   # the kernel's EPERM
            path.write_text(value.strip() + "\n")
        elif name == "drivers_probe":
            if self.driver(bdf) is None:
                over = (self.dev(bdf) / "driver_override")
                text = over.read_text().strip() if over.exists() else "(null)"
                self._bind(bdf, self.native if text in ("", "(null)") else text)
        else:
            self.real_write(path, value)
        self.on_write(path, "after")


def test_unbind_detaches_the_driver_and_binds_it_back(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    drv = tmp_path / "sys" / "bus" / "pci" / "drivers" / "e1000e"
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536)
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, "--unbind", "--read", tmp_path / "r.bin")
    assert code == 0, err
    assert err == ""                                   # no "bound to a driver" warning: it was unbound
    assert (drv / "unbind").read_text() == BDF and (drv / "bind").read_text() == BDF
    assert kernel.writes == [("unbind", BDF), ("bind", BDF)] and kernel.driver() == "e1000e"
    # A failure after the unbind still binds the driver back.
    kernel.writes.clear()
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, grant_after=None)
    code, out, err = run(monkeypatch, capsys, dbl, "flash", "--pci", BDF, "--unbind", "--read", tmp_path / "r2.bin")
    assert code == 2 and "FLA.GNT" in one_line(err)
    assert kernel.writes == [("unbind", BDF), ("bind", BDF)] and kernel.driver() == "e1000e"
    assert _records(tmp_path) == {}


def _records(tmp_path) -> dict:
    d = tmp_path / STATE
    return {p.name: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))} if d.is_dir() else {}


def _spy_first_access(dbl, seen: list, fn):
    """Call ``fn`` once, at the first register access of the run (the driver is away by then)."""
    real = dbl.read32

    def read32(offset):
        if not seen:
            seen.append(fn())
        return real(offset)
    dbl.read32 = read32


def _argv(verb, tmp_path):
    if verb == "flash":
        return ["flash", "--pci", BDF, "--unbind", "--read", tmp_path / "read.bin"]
    if verb == "nvm":
        return ["nvm", "--pci", BDF, "--unbind", "show"]
    # restore: a backup of this card's (blank) chip, as `romlab flash` records one.
    backup = backupmod.save(b"\xff" * 65536, {"chip": "W25X05", "jedec": chips.by_name("W25X05").jedec_hex,
                                              "pci": BDF, "card_pci_ids": "8086:10d3"})
    return ["restore", backup, "--pci", BDF, "--unbind"]


@pytest.mark.parametrize("verb", ["flash", "nvm", "restore"])
def test_defect2_unbind_keeps_a_record_while_the_driver_is_away(tmp_path, monkeypatch, capsys, verb):
    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    argv = _argv(verb, tmp_path)
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
    seen: list = []
    _spy_first_access(dbl, seen, lambda: (kernel.driver(), _records(tmp_path)))
    code, out, err = run(monkeypatch, capsys, dbl, *argv)
    assert code in (0, 1), err
    driver_during, records = seen[0]
    assert driver_during is None
    assert list(records) == [f"{BDF}.json"]
    assert records[f"{BDF}.json"]["driver"] == "e1000e" and records[f"{BDF}.json"]["bdf"] == BDF
    # Given back, and the record is gone with the debt.
    assert kernel.driver() == "e1000e" and _records(tmp_path) == {}


@pytest.mark.parametrize("verb", ["flash", "nvm"])          # restore opens the card as flash does
@pytest.mark.parametrize("when", [("unbind", "after"), ("bind", "before")])
def test_defect2_ctrl_c_while_the_driver_moves_waits_for_the_move(tmp_path, monkeypatch, capsys, verb, when):
    """Ctrl-C just after the unbind write, or just before the write that binds the driver back."""
    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    argv = _argv(verb, tmp_path)
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
    sent = []

    def on_write(path, phase):
        if (path.name, phase) == when and not sent:
            sent.append(path.name)
            signal.raise_signal(signal.SIGINT)
    kernel.on_write = on_write
    code, out, err = run(monkeypatch, capsys, dbl, *argv)
    assert sent == [when[0]]
    assert code == 130, err
    assert kernel.driver() == "e1000e", kernel.writes
    assert _records(tmp_path) == {}


@pytest.mark.parametrize("verb", ["flash", "nvm", "restore"])
def test_defect2_unbind_refuses_a_device_another_process_holds_through_vfio(tmp_path, monkeypatch, capsys, verb):
    """The kernel's unbind from vfio-pci waits for every holder, uninterruptibly: refuse instead."""
    from hw import vfio

    card(tmp_path, 0x8086, 0x10D3, driver="vfio-pci")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    argv = _argv(verb, tmp_path)
    monkeypatch.setattr(vfio, "holders", lambda dev: ["4242 (qemu-system-x86)"])
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
    code, out, err = run(monkeypatch, capsys, dbl, *argv)
    assert code == 2
    assert err.count("\n") == 1 and "is open through VFIO in process 4242 (qemu-system-x86)" in err, err
    assert kernel.writes == [] and kernel.driver() == "vfio-pci"


def _crash_while_detached(tmp_path, monkeypatch):
    """A process that dies (no finally, no atexit) while the driver is away: what is left on disk."""
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    pid = os.fork()
    if pid == 0:
        try:
            with vfio_bind.detached(PciDevice.open(BDF)):
                os._exit(0)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert kernel.driver() is None
    assert _records(tmp_path)[f"{BDF}.json"]["driver"] == "e1000e"
    return kernel


def test_after_a_crash_vfio_unbind_gives_the_driver_back_from_the_record(tmp_path, monkeypatch, capsys):
    kernel = _crash_while_detached(tmp_path, monkeypatch)
    code, out, err = run(monkeypatch, capsys, None, "vfio", "unbind", BDF)
    assert code == 0, err
    assert err == f"{BDF}: no driver -> e1000e\n"
    assert kernel.driver() == "e1000e" and _records(tmp_path) == {}


def test_after_a_crash_the_next_unbind_run_settles_the_record(tmp_path, monkeypatch, capsys):
    kernel = _crash_while_detached(tmp_path, monkeypatch)
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "--unbind", "show")
    assert code == 0, err
    assert kernel.driver() == "e1000e" and _records(tmp_path) == {}
    assert ("unbind", BDF) not in kernel.writes        # nothing was bound to unbind


# --------------------------------------------------------------------------- vfio-pci for a read
def _with_group(tmp_path, group=5):
    """The crafted card alone in an IOMMU group, and vfio-pci loaded."""
    g = tmp_path / "sys" / "kernel" / "iommu_groups" / str(group)
    (g / "devices").mkdir(parents=True)
    dev = tmp_path / "sys" / "bus" / "pci" / "devices" / BDF
    (g / "devices" / BDF).symlink_to(dev)
    (dev / "iommu_group").symlink_to(g)
    (dev / "driver_override").write_text("(null)\n")
    vfio_drv = tmp_path / "sys" / "bus" / "pci" / "drivers" / "vfio-pci"
    vfio_drv.mkdir(parents=True)
    for f in ("bind", "unbind"):
        (vfio_drv / f).write_text("")


def test_a_bind_for_a_read_keeps_a_record_and_gives_the_driver_back(tmp_path, monkeypatch):
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    _with_group(tmp_path)
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    dev = PciDevice.open(BDF)
    with vfio_bind.bound(dev):
        assert kernel.driver() == "vfio-pci" and dev.driver_override == "vfio-pci"
        assert _records(tmp_path)[f"{BDF}.json"]["driver"] == "e1000e"
    assert kernel.driver() == "e1000e" and dev.driver_override is None
    assert _records(tmp_path) == {}


def test_ctrl_c_during_a_bind_for_a_read_still_gives_the_driver_back(tmp_path, monkeypatch):
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    _with_group(tmp_path)
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")

    def on_write(path, phase):
        if path.name == "drivers_probe" and phase == "after" and kernel.driver() == "vfio-pci":
            signal.raise_signal(signal.SIGINT)      # just as vfio-pci takes the device
    kernel.on_write = on_write
    ran = []
    with pytest.raises(KeyboardInterrupt):
        with vfio_bind.bound(PciDevice.open(BDF)):
            ran.append(True)
    assert ran == [] and kernel.driver() == "e1000e" and _records(tmp_path) == {}


def test_a_driver_that_does_not_come_back_is_reported_and_stays_on_record(tmp_path, monkeypatch, capsys):
    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    # A real kernel gets 10 s to bring the driver back; this one never will.
    monkeypatch.setattr("hw.vfio_bind._wait_driver", lambda dev, want, timeout=10.0: dev.driver)

    def on_write(path, phase):
        if path.name in ("bind", "drivers_probe") and phase == "before":
            raise HardwareError(f"writing '{BDF}' to {path} failed: No such device")
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
    seen: list = []
    _spy_first_access(dbl, seen, lambda: setattr(kernel, "on_write", on_write))   # once the driver is away
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "--unbind", "show")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"restoring {BDF}'s driver: writing '{BDF}' to " in err and "No such device" in err
            and f"`romlab vfio unbind {BDF}` tries again" in err), err
    assert kernel.driver() is None and _records(tmp_path)[f"{BDF}.json"]["driver"] == "e1000e"
    # Once the driver can bind again, `romlab vfio unbind` settles it from the record.
    kernel.on_write = lambda path, phase: None
    code, out, err = run(monkeypatch, capsys, None, "vfio", "unbind", BDF)
    assert code == 0 and err == f"{BDF}: no driver -> e1000e\n", err
    assert kernel.driver() == "e1000e" and _records(tmp_path) == {}


# --------------------------------------------------------------------------- the record's care
def _record(tmp_path, state) -> Path:
    d = tmp_path / STATE
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"{BDF}.json"
    f.write_text(json.dumps(state))
    return f


def test_review1_a_record_that_cannot_be_synced_leaves_the_old_one_whole(tmp_path, monkeypatch):
    """The record is written to a temporary file, synced and renamed over: a failure (or a crash)
    part-way never leaves an empty or half-written record where the driver should be."""
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    old = {"bdf": BDF, "driver": "igb", "driver_override": None}
    f = _record(tmp_path, old)                  # stale: the card is on an ordinary driver again

    def fsync(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(HardwareError, match=f"cannot record {BDF}'s driver.*Input/output error"):
        with vfio_bind.detached(PciDevice.open(BDF)):
            pass
    assert json.loads(f.read_text()) == old
    assert sorted(p.name for p in f.parent.iterdir() if not p.name.endswith(".lock")) == [f.name]
    assert kernel.writes == [] and kernel.driver() == "e1000e"


@pytest.mark.parametrize("state", [
    {"bdf": BDF, "driver": 5, "driver_override": None},
    {"bdf": BDF, "driver": "../../..", "driver_override": None},
    {"bdf": BDF, "driver": "e1000e", "driver_override": "a/b"},
    {"bdf": BDF, "driver": "e1000e", "driver_override": ["vfio-pci"]},
    {"bdf": BDF},
    {"bdf": "0000:04:00.0", "driver": "e1000e", "driver_override": None},
    ["e1000e"],
])
def test_review1_a_bad_record_is_refused_in_one_line(tmp_path, monkeypatch, capsys, state):
    card(tmp_path, 0x8086, 0x10D3, driver=None)
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    f = _record(tmp_path, state)
    code, out, err = run(monkeypatch, capsys, None, "vfio", "unbind", BDF)
    assert code == 2 and err.count("\n") == 1, err
    assert str(f) in err and "delete it" in err and "bind" in err, err
    assert kernel.writes == [] and kernel.driver() is None
    assert not (tmp_path / "sys" / "bind").exists() and not (tmp_path / "sys" / "bus" / "bind").exists()


def test_review2_a_second_process_is_refused_while_the_first_has_the_device(tmp_path, monkeypatch, capsys):
    """Two `--unbind` runs on one card: the second would give the driver back mid-flash."""
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x10D3, driver="e1000e")
    kernel = FakeKernel(tmp_path, monkeypatch, "e1000e")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            with vfio_bind.detached(PciDevice.open(BDF)):
                os.write(ready_w, b"1")
                os.read(go_r, 1)
            os._exit(0)
        finally:
            os._exit(1)
    os.close(ready_w)
    os.close(go_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        assert kernel.driver() is None
        writes = list(kernel.writes)
        sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
        code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "--unbind", "show")
        assert code == 2 and err.count("\n") == 1, err
        assert f"{BDF} is in use by romlab process {pid}" in err, err
        assert kernel.writes == writes and kernel.driver() is None     # nothing given back mid-run
        with pytest.raises(HardwareError, match=f"in use by romlab process {pid}"):
            vfio_bind.unbind(PciDevice.open(BDF))
    finally:
        os.write(go_w, b"1")
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert kernel.driver() == "e1000e" and _records(tmp_path) == {}
    # Once the first is done the device is free again.
    sim, dbl = double("8257x", "W25X05", b"\xff" * 65536, nvm=NVM)
    code, out, err = run(monkeypatch, capsys, dbl, "nvm", "--pci", BDF, "--unbind", "show")
    assert code == 0, err


def _group(tmp_path, members, kind="DMA", number=7):
    """IOMMU group ``number`` of the crafted tree holding ``members``, its default domain ``kind``."""
    grp = tmp_path / "sys" / "kernel" / "iommu_groups" / str(number)
    (grp / "devices").mkdir(parents=True)
    for bdf in members:
        (grp / "devices" / bdf).mkdir()
        (tmp_path / "sys" / "bus" / "pci" / "devices" / bdf / "iommu_group").symlink_to(grp)
    (grp / "type").write_text(kind + "\n")
    return grp


def test_a_kernel_dma_domain_is_set_with_no_driver_on_the_group_and_put_back(tmp_path, monkeypatch):
    """`bench native --kernel-dma identity`: the kernel takes a new group type only while no driver
    holds the group, so the driver goes, the type is written, the driver comes back; on the way out
    the same in reverse; and the driver is on record whenever it is away."""
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x100E, driver="e1000")
    grp = _group(tmp_path, [BDF])
    k = FakeKernel(tmp_path, monkeypatch, "e1000")
    record = tmp_path / STATE / f"{BDF}.json"

    def on_write(path, phase):
        if path.name == "type" and phase == "before":
            assert json.loads(record.read_text()) == {"bdf": BDF, "driver": "e1000", "driver_override": None,
                                                      "iommu_domain": "DMA"}
    k.on_write = on_write
    with vfio_bind.dma_domain(PciDevice.open(BDF), "identity") as now:
        assert now == "identity"
        assert (grp / "type").read_text().strip() == "identity" and k.driver() == "e1000"
    assert (grp / "type").read_text().strip() == "DMA" and k.driver() == "e1000"
    assert k.writes == [("unbind", BDF), ("type", "identity"), ("bind", BDF),
                        ("unbind", BDF), ("type", "DMA"), ("bind", BDF)]
    assert not record.exists()


def test_a_kernel_dma_domain_is_refused_before_any_write(tmp_path, monkeypatch):
    """A group of two devices, a device on vfio-pci and a device without an IOMMU group are refused
    in one line each, with nothing written; a group already of the type asked for is left alone."""
    from hw import vfio_bind
    from hw.pci import PciDevice

    other = "0000:03:00.1"
    card(tmp_path, 0x8086, 0x100E, driver="e1000")
    card(tmp_path, 0x8086, 0x100E, driver="vfio-pci", bdf=other)
    k = FakeKernel(tmp_path, monkeypatch, "e1000")
    with pytest.raises(HardwareError, match="has no IOMMU group"):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            pass
    _group(tmp_path, [BDF, other])
    with pytest.raises(HardwareError, match="holds 2 devices"):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            pass
    with pytest.raises(HardwareError, match="bound to vfio-pci"):
        with vfio_bind.dma_domain(PciDevice.open(other), "identity"):
            pass
    with vfio_bind.dma_domain(PciDevice.open(BDF), "DMA") as found:
        assert found == "DMA"
    with pytest.raises(HardwareError, match="choose one of DMA, DMA-FQ, identity"):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "blocked"):
            pass
    # a group type the kernel would not take back
    grp = tmp_path / "sys" / "kernel" / "iommu_groups" / "7"
    (grp / "devices" / other).rmdir()
    (grp / "type").write_text("unmanaged\n")
    with pytest.raises(HardwareError, match="has domain type unmanaged, which the kernel would not take back"):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            pass
    (grp / "type").write_text("DMA\n")
    # an SR-IOV PF with VFs: taking its driver away would tear them down
    (tmp_path / "sys" / "bus" / "pci" / "devices" / BDF / "sriov_totalvfs").write_text("7\n")
    (tmp_path / "sys" / "bus" / "pci" / "devices" / BDF / "sriov_numvfs").write_text("2\n")
    with pytest.raises(HardwareError, match="SR-IOV PF with 2 VF"):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            pass
    (tmp_path / "sys" / "bus" / "pci" / "devices" / BDF / "sriov_numvfs").write_text("0\n")
    # a record an earlier run left: its type is the original, not the one found now
    (tmp_path / STATE).mkdir(exist_ok=True)
    (tmp_path / STATE / f"{BDF}.json").write_text(json.dumps(
        {"bdf": BDF, "driver": "e1000", "driver_override": None, "iommu_domain": "DMA-FQ"}))
    with pytest.raises(HardwareError, match=f"run `romlab vfio unbind {BDF}` first"):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            pass
    assert k.writes == [] and k.driver() == "e1000"
    # and a record whose type is none the kernel takes is refused as a record
    (tmp_path / STATE / f"{BDF}.json").write_text(json.dumps(
        {"bdf": BDF, "driver": "e1000", "driver_override": None, "iommu_domain": "../x"}))
    with pytest.raises(HardwareError, match="holds iommu_domain '../x'"):
        vfio_bind.unbind(PciDevice.open(BDF))


def test_a_kernel_dma_domain_goes_back_after_ctrl_c_in_the_block(tmp_path, monkeypatch):
    from hw import vfio_bind
    from hw.pci import PciDevice

    card(tmp_path, 0x8086, 0x100E, driver="e1000")
    grp = _group(tmp_path, [BDF])
    k = FakeKernel(tmp_path, monkeypatch, "e1000")
    with pytest.raises(KeyboardInterrupt):
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            raise KeyboardInterrupt
    assert (grp / "type").read_text().strip() == "DMA" and k.driver() == "e1000"
    assert not (tmp_path / STATE / f"{BDF}.json").exists()


def test_a_kernel_dma_domain_the_kernel_will_not_take_back_stays_on_record(tmp_path, monkeypatch, capsys):
    """The type write on the way out is refused: the error says where the group was left, the
    record keeps the type found, and `romlab vfio unbind` puts type and driver back later."""
    from hw import vfio_bind
    from hw.pci import PciDevice
    from romlab import cli

    card(tmp_path, 0x8086, 0x100E, driver="e1000")
    grp = _group(tmp_path, [BDF])
    k = FakeKernel(tmp_path, monkeypatch, "e1000")
    refuse = {"on": False}

    def on_write(path, phase):
        if path.name == "type" and phase == "before" and refuse["on"]:
            raise HardwareError(f"cannot write {path}: Invalid argument")
    k.on_write = on_write
    with pytest.raises(KeyboardInterrupt) as intr:    # a failed restore does not hide what stopped the block
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            refuse["on"] = True
            raise KeyboardInterrupt
    assert any("the kernel refused IOMMU domain type DMA" in n for n in intr.value.__notes__)
    with pytest.raises(HardwareError, match="earlier romlab run"):    # and the record stops a new run
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            pass
    refuse["on"] = False
    assert cli.main(["vfio", "unbind", BDF]) == 0
    with pytest.raises(HardwareError) as exc:
        with vfio_bind.dma_domain(PciDevice.open(BDF), "identity"):
            refuse["on"] = True
    assert f"restoring {BDF}'s driver: the kernel refused IOMMU domain type DMA for group 7" in str(exc.value)
    assert f"romlab vfio unbind {BDF}" in str(exc.value)
    assert (grp / "type").read_text().strip() == "identity"
    record = json.loads((tmp_path / STATE / f"{BDF}.json").read_text())
    assert record["iommu_domain"] == "DMA" and record["driver"] == "e1000"
    refuse["on"] = False
    assert cli.main(["vfio", "unbind", BDF]) == 0
    assert (grp / "type").read_text().strip() == "DMA" and k.driver() == "e1000"
    assert "(IOMMU domain back to DMA)" in capsys.readouterr().err
    assert not (tmp_path / STATE / f"{BDF}.json").exists()
