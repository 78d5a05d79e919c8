"""The `romlab vm` harness without a full guest run: NIC specs, the guest script, the KVM
probe's decision, the timeout. The probe is driven against stand-in QEMUs (small shell scripts)
so that each of its outcomes is checked on every machine, with or without working KVM."""
from __future__ import annotations

import os
import stat
import subprocess
import threading

import pytest
from conftest import IPXE_QEMU, run_romlab

from hw.errors import RomlabError
from romlab.lab import qemu, vm
from romlab.lab.qemu import NicSpec


def test_nic_options_become_qemu_arguments(tmp_path):
    rom = f"{IPXE_QEMU}/efi-e1000.rom"
    nics = [NicSpec.parse("e1000e"), NicSpec.parse("rtl8139,romfile="),
            NicSpec.parse(f"e1000,mac=52:54:00:AA:bb:01,romfile={rom},rombar=1,capture={tmp_path}/c.pcap")]
    args = vm.nic_args(nics)
    assert args[12:] == [
        "-device", "pcie-root-port,id=romlab_port2,chassis=3,slot=3",
        "-netdev", "hubport,id=romlab_net2,hubid=2",
        "-device", f"e1000,netdev=romlab_net2,bus=romlab_port2,mac=52:54:00:aa:bb:01,romfile={rom},rombar=1",
        "-object", f"filter-dump,id=romlab_dump2,netdev=romlab_net2,file={tmp_path}/c.pcap",
    ]
    # an empty romfile= is QEMU's way to say "no ROM BAR"
    assert args[10] == "-device" and "romfile=" in args[11].split(",")
    # virtio-net is QEMU's virtio-net-pci without its legacy interface (ID 1af4:1041)
    assert NicSpec.parse("virtio-net").device(netdev="n") == "virtio-net-pci,netdev=n,disable-legacy=on"


def _qemu_network_devices() -> set[str]:
    """PCI network devices from `qemu-system-x86_64 -device help`, parsed here on its own."""
    out = subprocess.run(["qemu-system-x86_64", "-device", "help"], capture_output=True, text=True).stdout
    section = out.split("Network devices:", 1)[1].split("\n\n", 1)[0]
    return {ln.split('"')[1] for ln in section.splitlines() if ', bus PCI' in ln}


def test_models_and_properties_come_from_the_installed_qemu():
    devices = _qemu_network_devices()
    assert {"e1000", "e1000e", "igb", "rtl8139", "virtio-net-pci"} <= devices   # QEMU 10 has the 82576 as igb
    assert NicSpec.parse("igb,mac=52:54:00:12:34:56").device(netdev="n").startswith("igb,")
    for model in devices:
        assert NicSpec.parse(model).model == model
    with pytest.raises(RomlabError) as exc:
        NicSpec.parse("e1001")
    listed = set(str(exc.value).split(" emulates ", 1)[1].split(", "))
    assert listed == devices
    # A property QEMU lists for the device is passed on; one it does not is refused before any boot.
    assert NicSpec.parse("e1000,rombar=0,romsize=65536").props == {"rombar": "0", "romsize": "65536"}


@pytest.mark.parametrize("spec,msg", [
    ("e1001", "unknown NIC model 'e1001'"),
    ("e1000,mac=52:54:00:12:34", "bad MAC address"),
    ("e1000,romfile=/nonexistent.rom", "romfile /nonexistent.rom does not exist"),
    ("e1000,speed=10", "bad NIC option 'speed=10'"),
    ("e1000,netdev=x", "romlab sets netdev= itself"),
    ("e1000,capture=/nonexistent/dir/x.pcap", "capture directory /nonexistent/dir does not exist"),
    ("e1000,link=a-b", "bad link name 'a-b'"),
])
def test_bad_nic_options(spec, msg):
    with pytest.raises(RomlabError, match=msg):
        NicSpec.parse(spec)


def test_guest_script_carries_environment_and_directory(tmp_path):
    """The script the guest runs, run here: the child sees the host's variables and directory."""
    env = {"PATH": "/opt/x bin:/usr/bin:/bin", "VIRTUAL_ENV": "/w/.venv", "PWD": "/elsewhere",
           "WEIRD": "a'b\"c$d", "BAD-NAME": "x"}
    cwd = tmp_path / "dir with space"
    cwd.mkdir()
    child = ["sh", "-c", 'printf "%s|%s|%s|%s|%s" "$PATH" "$VIRTUAL_ENV" "$WEIRD" "$ROMLAB_IN_VM" "$(pwd)"']
    script = vm.guest_script(child, str(cwd), env)
    r = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env={})
    assert r.stdout == f"/opt/x bin:/usr/bin:/bin|/w/.venv|a'b\"c$d|1|{cwd}"
    assert "PWD=" not in script and "BAD-NAME" not in script


def _stand_in_qemu(tmp_path, body: str) -> str:
    """A shell script in QEMU's place that counts its runs in ``runs`` and notes its PID in ``pid``."""
    path = tmp_path / "qemu-system-x86_64"
    path.write_text(f"#!/bin/sh\necho run >> {tmp_path}/runs\necho $$ > {tmp_path}/pid\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _runs(tmp_path) -> int:
    p = tmp_path / "runs"
    return len(p.read_text().splitlines()) if p.exists() else 0


@pytest.fixture
def probe_env(tmp_path, monkeypatch):
    """A private cache, a kernel file, and a /dev/kvm stand-in this process can open read-write."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not really a kernel")
    kvm = tmp_path / "kvm"
    kvm.write_bytes(b"")
    monkeypatch.setattr(qemu, "KVM_DEVICE", str(kvm))
    return str(kernel)


def test_kvm_probe_without_a_usable_device_chooses_tcg_and_says_so(tmp_path, probe_env, monkeypatch):
    fake = _stand_in_qemu(tmp_path, "echo 'Kernel panic - not syncing: VFS: Unable to mount root fs'")
    monkeypatch.setattr(qemu, "KVM_DEVICE", str(tmp_path / "no-kvm-here"))
    said = []
    assert qemu.choose_accel("auto", probe_env, said.append) == "tcg"
    assert said == [f"KVM probe: {tmp_path}/no-kvm-here is not usable here; using TCG"]
    assert not qemu.kvm_works(probe_env, qemu=fake)
    assert _runs(tmp_path) == 0  # no QEMU was started to find that out


def test_kvm_probe_decision_is_cached_until_the_kernel_changes(tmp_path, probe_env):
    fake = _stand_in_qemu(tmp_path, "echo 'Kernel panic - not syncing: VFS: Unable to mount root fs'")
    said = []
    assert qemu.kvm_works(probe_env, said.append, qemu=fake) is True
    assert qemu.kvm_works(probe_env, said.append, qemu=fake) is True
    assert _runs(tmp_path) == 1  # the second answer came from the cache
    assert said == ["KVM probe: boots; using KVM", "KVM probe (cached): boots; using KVM"]
    st = os.stat(probe_env)
    os.utime(probe_env, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new kernel
    assert qemu.kvm_works(probe_env, qemu=fake) is True
    assert _runs(tmp_path) == 2


def test_kvm_probe_that_hangs_is_killed_and_falls_back_to_tcg(tmp_path, probe_env):
    """A QEMU that never reaches the kernel's panic: the probe gives up after its limit, kills it,
    reports TCG, and remembers the answer."""
    fake = _stand_in_qemu(tmp_path, "exec sleep 600")
    said, result = [], []
    t = threading.Thread(target=lambda: result.append(qemu.kvm_works(probe_env, said.append, qemu=fake,
                                                                      timeout=1)))
    t.start()
    t.join(120)  # only to catch a probe that never returns
    assert not t.is_alive() and result == [False]
    assert said == ["KVM probe: does not boot Linux here (no answer in 1 s); using TCG"]
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert qemu.kvm_works(probe_env, said.append, qemu=fake) is False
    assert _runs(tmp_path) == 1 and said[-1] == "KVM probe (cached): does not boot Linux here; using TCG"


def test_kvm_probe_that_fails_at_once_falls_back_to_tcg(tmp_path, probe_env):
    fake = _stand_in_qemu(tmp_path, "echo 'qemu-system-x86_64: CPU model host requires KVM' >&2; exit 1")
    said = []
    assert qemu.kvm_works(probe_env, said.append, qemu=fake) is False
    assert said == ["KVM probe: does not boot Linux here (it stopped without reaching the kernel's panic); "
                    "using TCG"]


def test_explicit_accelerators_skip_the_probe(tmp_path, probe_env, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a probe would fail to find QEMU
    assert qemu.choose_accel("kvm", probe_env) == "kvm"
    assert qemu.choose_accel("tcg", probe_env) == "tcg"
    with pytest.raises(RomlabError, match="unknown accelerator 'hvf'"):
        qemu.choose_accel("hvf", probe_env)


@pytest.mark.qemu
def test_guest_that_does_not_finish_is_killed(tmp_path):
    """A guest that cannot finish in its limit (sleep 1000 in 8 s): one-line message, 124, no QEMU left."""
    r = run_romlab("vm", "--accel", "tcg", "--timeout", "8", "--share", str(tmp_path), "--", "sleep", "1000",
                   timeout=120)
    err = r.stderr.decode().strip()
    assert r.returncode == 124, err
    assert err.splitlines()[-1] == ("romlab vm: error: the guest did not finish within 8 s (stuck boot or hung "
                                    "command); killed it")
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert left == []


def test_vm_needs_a_command():
    r = run_romlab("vm", "--nic", "e1000")
    assert r.returncode == 2
    assert r.stderr.decode().strip() == "romlab vm: error: no command to run in the guest; put it after --"


def _hub_ids(args: list[str]) -> list[int]:
    """The hubid= of every -netdev hubport in a QEMU argument list."""
    out = []
    for flag, value in zip(args, args[1:]):
        if flag == "-netdev" and value.startswith("hubport,"):
            out.append(int(dict(kv.split("=", 1) for kv in value.split(",")[1:])["hubid"]))
    return out


def test_defect3_distinct_link_names_never_share_a_hub():
    specs = ["e1000,link=lab1", "e1000,link=lab2", "e1000e,link=lab1", "rtl8139", "e1000,link=labx"]
    hubs = _hub_ids(vm.nic_args([NicSpec.parse(s) for s in specs]))
    assert len(hubs) == 5
    # Same name, same hub; different names (and a NIC of its own) never one hub.
    assert hubs[0] == hubs[2]
    assert len({hubs[0], hubs[1], hubs[3], hubs[4]}) == 4
