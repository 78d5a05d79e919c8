"""SR-IOV through sysfs without a VM: `romlab nic vfs` and the PF guard of `romlab vfio bind`.

A crafted sysfs tree (ROMLAB_SYSFS) stands in for the kernel. ``FakeIov`` takes the writes
romlab makes to ``sriov_numvfs`` and answers them as Linux's sriov_numvfs_store does
(drivers/pci/iov.c): a count above sriov_totalvfs is ERANGE; the count already enabled is
accepted without a change; no PF driver, or a driver without sriov_configure, is ENOENT; a
non-zero count while VFs are enabled is EBUSY; otherwise the PF's driver makes the VFs, which
appear as ``virtfnN`` links on the PF and a ``physfn`` link on each VF. VF addresses follow the
82576's SR-IOV capability as QEMU's igb model sets it (First VF Offset 0x80, VF Stride 2), so
the VFs of 0000:01:00.0 are 0000:01:10.0, 0000:01:10.2, ...
The real kernel path (an igb PF in a QEMU 10 guest) is the VM tier's.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from hw import pci, sysfs
from romlab import cli

PF = "0000:01:00.0"
VF_OFFSET, VF_STRIDE = 0x80, 2
SRIOV_DRIVERS = {"igb"}     # drivers here that have sriov_configure; e1000e has none


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMLAB_SYSFS", str(tmp_path / "sys"))
    monkeypatch.setenv("ROMLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def _dev(sys: Path, bdf: str, vendor: int, device: int, driver: str | None) -> Path:
    d = sys / "bus" / "pci" / "devices" / bdf
    d.mkdir(parents=True)
    for name, value in (("vendor", vendor), ("device", device), ("subsystem_vendor", vendor),
                        ("subsystem_device", 0), ("class", 0x020000)):
        (d / name).write_text(f"0x{value:04x}\n")
    if driver:
        drv = sys / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        for f in ("bind", "unbind"):
            (drv / f).touch()
        (d / "driver").symlink_to(drv)
    return d


class FakeIov:
    """The kernel's sriov_numvfs_store on the crafted tree; ``writes`` is every value written."""

    def __init__(self, tmp_path: Path, monkeypatch, driver: str | None = "igb", total: int = 7,
                 numvfs: int = 0, vf_driver: str | None = "igbvf"):
        self.sys = tmp_path / "sys"
        self.pf = _dev(self.sys, PF, 0x8086, 0x10C9, driver)
        (self.pf / "sriov_totalvfs").write_text(f"{total}\n")
        (self.pf / "sriov_numvfs").write_text("0\n")
        self.vf_driver = vf_driver
        self.writes: list[str] = []
        self.macs: dict[str, str] = {}
        self._make(numvfs)
        self.real_write = sysfs.write_text
        monkeypatch.setattr(sysfs, "write_text", self.write)

    def vf_bdf(self, i: int) -> str:
        devfn = VF_OFFSET + VF_STRIDE * i       # PF is device 0 function 0 on bus 1
        return f"0000:01:{devfn >> 3:02x}.{devfn & 7:x}"

    def _make(self, n: int) -> None:
        for link in list(self.pf.glob("virtfn*")):
            vf = self.sys / "bus" / "pci" / "devices" / os.readlink(link).rsplit("/", 1)[-1]
            link.unlink()
            for p in sorted(vf.rglob("*"), reverse=True):
                p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
            vf.rmdir()
        for i in range(n):
            bdf = self.vf_bdf(i)
            vf = _dev(self.sys, bdf, 0x8086, 0x10CA, self.vf_driver)
            (vf / "physfn").symlink_to(f"../{PF}")
            (self.pf / f"virtfn{i}").symlink_to(f"../{bdf}")
            if self.vf_driver:
                net = vf / "net" / f"enp1s16f{2 * i}"
                net.mkdir(parents=True)
                mac = f"52:54:00:aa:00:{i:02x}"
                (net / "address").write_text(mac + "\n")
                self.macs[bdf] = mac
        (self.pf / "sriov_numvfs").write_text(f"{n}\n")

    def write(self, path, value: str, *, raw: bool = False) -> None:
        path = Path(path)
        if path != self.pf / "sriov_numvfs":
            return self.real_write(path, value, raw=raw)
        assert raw, "sriov_numvfs was written without its errno kept for the message"
        self.writes.append(value.strip())
        n = int(value.strip())
        total = int((self.pf / "sriov_totalvfs").read_text())
        now = int((self.pf / "sriov_numvfs").read_text())
        if n > total:
            raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
        if n == now:
            return
        drv = (self.pf / "driver")
        if not drv.is_symlink():
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if os.path.basename(os.readlink(drv)) not in SRIOV_DRIVERS:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if n and now:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self._make(n)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err, verb="nic"):
    assert err.startswith(f"romlab {verb}: error: ") and err.count("\n") == 1, err
    return err


def test_vfs_are_made_listed_changed_and_removed(tmp_path, monkeypatch, capsys):
    iov = FakeIov(tmp_path, monkeypatch)
    code, out, err = run(capsys, "nic", "vfs", "--pci", "01:00.0", "--count", "2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert iov.writes == ["2"]
    assert doc["schema"] == "romlab.nic-vfs/1" and doc["input"] == f"pci:{PF}"
    assert doc["id"] == "8086:10c9" and doc["driver"] == "igb"
    assert doc["total_vfs"] == 7 and doc["num_vfs"] == 2
    assert [v["bdf"] for v in doc["vfs"]] == ["0000:01:10.0", "0000:01:10.2"]
    assert [v["vf"] for v in doc["vfs"]] == [0, 1]
    assert all(v["id"] == "8086:10ca" and v["driver"] == "igbvf" for v in doc["vfs"])
    assert doc["vfs"][1]["interfaces"] == [{"name": "enp1s16f2", "mac": "52:54:00:aa:00:01"}]
    assert "2 VF(s)" in err                                  # the change is remarked on stderr

    # 2 -> 3: the kernel takes no non-zero count over another, so 0 goes first.
    code, out, err = run(capsys, "nic", "vfs", "--pci", PF, "--count", "3")
    assert code == 0, err
    assert iov.writes == ["2", "0", "3"]
    assert f"{PF} (8086:10c9, driver igb): 3 of 7 VFs enabled" in out
    assert "0000:01:10.4" in out and "52:54:00:aa:00:02" in out

    # The same count again writes nothing; listing writes nothing.
    assert run(capsys, "nic", "vfs", "--pci", PF, "--count", "3")[0] == 0
    assert run(capsys, "nic", "vfs", "--pci", PF)[0] == 0
    assert iov.writes == ["2", "0", "3"]

    code, out, err = run(capsys, "nic", "vfs", "--pci", PF, "--count", "0", "-q")
    assert code == 0 and err == ""
    assert iov.writes == ["2", "0", "3", "0"] and "0 of 7 VFs enabled" in out
    assert not list(iov.pf.glob("virtfn*"))


def test_a_vf_knows_its_pf(tmp_path, monkeypatch, capsys):
    FakeIov(tmp_path, monkeypatch, numvfs=2)
    vf = pci.PciDevice.open("01:10.2")
    assert str(vf.physfn) == PF and not vf.sriov_capable
    assert pci.PciDevice.open(PF).physfn is None
    assert [str(b) for b in pci.PciDevice.open(PF).virtfns()] == ["0000:01:10.0", "0000:01:10.2"]
    code, _out, err = run(capsys, "nic", "vfs", "--pci", "01:10.2", "--count", "1")
    assert code == 2 and "is itself a VF (of 0000:01:00.0)" in one_line(err)


def test_virtfn_links_are_ordered_by_vf_number(tmp_path, monkeypatch):
    """virtfn10 comes after virtfn9, not after virtfn1 (names sort as text otherwise)."""
    FakeIov(tmp_path, monkeypatch, numvfs=7)
    pf = pci.PciDevice.open(PF)
    for i in range(7, 11):
        bdf = f"0000:01:{(VF_OFFSET + VF_STRIDE * i) >> 3:02x}.{(VF_OFFSET + VF_STRIDE * i) & 7:x}"
        _dev(tmp_path / "sys", bdf, 0x8086, 0x10CA, None)
        (pf.path / f"virtfn{i}").symlink_to(f"../{bdf}")
    got = [str(b) for b in pf.virtfns()]
    assert got[8:11] == ["0000:01:12.0", "0000:01:12.2", "0000:01:12.4"]    # devfn 0x90, 0x92, 0x94
    assert len(got) == 11 and got == [f"0000:01:{(0x80 + 2 * i) >> 3:02x}.{(0x80 + 2 * i) & 7:x}" for i in range(11)]


@pytest.mark.parametrize("driver,count,total,message", [
    ("igb", 8, 7, "offers 7 VFs; the VF count must be 0..7, not 8"),
    ("igb", -1, 7, "the VF count must be 0..7, not -1"),
    (None, 2, 7, "has no driver: the kernel makes VFs through the PF's driver"),
    ("e1000e", 2, 7, "driver e1000e does not support SR-IOV"),
    ("vfio-pci", 2, 7, "bound to vfio-pci, which makes no VFs unless loaded with enable_sriov=1"),
])
def test_refusals_are_one_line_and_change_nothing(tmp_path, monkeypatch, capsys, driver, count, total, message):
    iov = FakeIov(tmp_path, monkeypatch, driver=driver, total=total)
    code, out, err = run(capsys, "nic", "vfs", "--pci", PF, "--count", count)
    assert code == 2 and out == ""
    assert message in one_line(err)
    assert (iov.pf / "sriov_numvfs").read_text() == "0\n" and not list(iov.pf.glob("virtfn*"))
    # A count beyond the total is refused before the kernel is asked; the driver ones by the kernel.
    assert iov.writes == ([] if count > total or count < 0 else [str(count)])


def test_the_kernels_erange_is_mapped_when_the_total_changed_under_romlab(tmp_path, monkeypatch, capsys):
    """sriov_totalvfs read as 7, but the kernel's limit is lower by the time of the write."""
    iov = FakeIov(tmp_path, monkeypatch)
    real = iov.write

    def lower_first(path, value, raw=False):
        (iov.pf / "sriov_totalvfs").write_text("1\n")
        real(path, value, raw=raw)
    monkeypatch.setattr(sysfs, "write_text", lower_first)
    code, _out, err = run(capsys, "nic", "vfs", "--pci", PF, "--count", "4")
    assert code == 2 and "offers 1 VFs; 4 is more than that" in one_line(err)


def test_a_change_that_fails_after_the_zero_says_the_old_vfs_are_gone(tmp_path, monkeypatch, capsys):
    """2 -> 4 is written as 0 then 4; the 0 removes the two VFs, and if the kernel then refuses 4 (its
    limit lowered meanwhile) the message must say the two are gone, not only that 4 failed."""
    iov = FakeIov(tmp_path, monkeypatch, numvfs=2)
    real = iov.write

    def lower_after_zero(path, value, raw=False):
        if value.strip() != "0":
            (iov.pf / "sriov_totalvfs").write_text("1\n")
        real(path, value, raw=raw)
    monkeypatch.setattr(sysfs, "write_text", lower_after_zero)
    code, _out, err = run(capsys, "nic", "vfs", "--pci", PF, "--count", "4")
    assert code == 2 and iov.writes == ["0", "4"]
    assert "offers 1 VFs; 4 is more than that" in one_line(err)
    assert f"the 2 VFs {PF} had before were removed" in err and f"--count 2` makes them again" in err
    assert (iov.pf / "sriov_numvfs").read_text() == "0\n"


def test_a_device_without_sr_iov_is_refused(tmp_path, monkeypatch, capsys):
    _dev(tmp_path / "sys", "0000:02:00.0", 0x8086, 0x10D3, "e1000e")
    monkeypatch.setattr(sysfs, "write_text", lambda *a, **k: pytest.fail("nothing may be written"))
    for argv in (("--count", "2"), ()):
        code, _out, err = run(capsys, "nic", "vfs", "--pci", "02:00.0", *argv)
        assert code == 2 and "0000:02:00.0 (8086:10d3) is not SR-IOV capable" in one_line(err)
    code, _out, err = run(capsys, "nic", "vfs", "--pci", "05:00.0")
    assert code == 2 and "no PCI device 0000:05:00.0" in one_line(err)


def test_vfio_bind_refuses_a_pf_with_vfs(tmp_path, monkeypatch, capsys):
    iov = FakeIov(tmp_path, monkeypatch, numvfs=2)
    writes = []
    monkeypatch.setattr(sysfs, "write_text", lambda path, value: writes.append((path, value)))
    code, _out, err = run(capsys, "vfio", "bind", PF)
    assert code == 2
    assert (f"{PF} is an SR-IOV PF with 2 VF(s) enabled" in one_line(err, "vfio")
            and f"`romlab nic vfs --pci {PF} --count 0` first" in err)
    assert writes == [] and os.readlink(iov.pf / "driver").endswith("/igb")
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").glob("*.json"))


def test_vfio_bind_passes_the_vf_guard_once_the_vfs_are_gone(tmp_path, monkeypatch, capsys):
    """With no VFs the PF is judged as any device (here: refused for its missing IOMMU group, the
    next check, so nothing is bound)."""
    FakeIov(tmp_path, monkeypatch, numvfs=0)
    code, _out, err = run(capsys, "vfio", "bind", PF)
    assert code == 2 and "has no IOMMU group" in one_line(err, "vfio")


def test_write_text_keeps_the_errno_only_when_asked(tmp_path):
    """The one sysfs writer: one line a user can act on by default, the kernel's OSError as it is with
    raw=True (the SR-IOV messages depend on its errno)."""
    from hw.errors import HardwareError

    missing = tmp_path / "sriov_numvfs"
    with pytest.raises(OSError) as exc:
        sysfs.write_text(missing, "2\n", raw=True)
    assert exc.value.errno == errno.ENOENT and not isinstance(exc.value, HardwareError)
    with pytest.raises(HardwareError) as exc:
        sysfs.write_text(missing, "2\n")
    assert str(exc.value) == f"{missing} does not exist"
    (tmp_path / "attr").write_text("")
    sysfs.write_text(tmp_path / "attr", "1\n", raw=True)
    assert (tmp_path / "attr").read_text() == "1\n"
