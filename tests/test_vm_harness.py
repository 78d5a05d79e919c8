"""romlab.vm without a full guest run: NIC options, the guest script, KVM choice, the timeout."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from conftest import IPXE_QEMU, run_romlab

from romlab.lab import vm
from romtools.errors import RomError


def test_nic_options_become_qemu_arguments(tmp_path):
    nic = vm.Nic.parse(f"e1000,romfile={IPXE_QEMU}/efi-e1000.rom,mac=52:54:00:AA:bb:01,capture={tmp_path}/c.pcap")
    args = nic.qemu_args(2)
    assert args == [
        "-device", "pcie-root-port,id=romlab_port2,chassis=3,slot=3",
        "-netdev", "hubport,id=romlab_net2,hubid=2",
        "-device", f"e1000,netdev=romlab_net2,bus=romlab_port2,mac=52:54:00:aa:bb:01,"
                   f"romfile={IPXE_QEMU}/efi-e1000.rom",
        "-object", f"filter-dump,id=romlab_dump2,netdev=romlab_net2,file={tmp_path}/c.pcap",
    ]
    # an empty romfile= is QEMU's way to say "no ROM BAR"
    assert "romfile=" in vm.Nic.parse("rtl8139,romfile=").qemu_args(0)[5].split(",")


@pytest.mark.parametrize("spec,msg", [
    ("e1001", "unknown NIC model 'e1001'"),
    ("e1000,mac=52:54:00:12:34", "bad MAC address"),
    ("e1000,romfile=/nonexistent.rom", "romfile /nonexistent.rom does not exist"),
    ("e1000,speed=10", "bad NIC option 'speed=10'"),
    ("e1000,capture=/nonexistent/dir/x.pcap", "capture directory /nonexistent/dir does not exist"),
])
def test_bad_nic_options(spec, msg):
    with pytest.raises(RomError, match=msg):
        vm.Nic.parse(spec)


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


def test_kvm_probe_is_bounded_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel = vm.find_kernel()
    t0 = time.monotonic()
    first = vm.kvm_boots(kernel)
    assert time.monotonic() - t0 < vm.KVM_PROBE_TIMEOUT + 10
    assert (tmp_path / "romlab" / "kvm-probe.json").exists() or not os.access("/dev/kvm", os.R_OK | os.W_OK)
    t0 = time.monotonic()
    assert vm.kvm_boots(kernel) == first
    assert time.monotonic() - t0 < 1.0  # answered from the cache


@pytest.mark.qemu
def test_guest_that_does_not_finish_is_killed(tmp_path):
    """A 20 s limit cannot be met (a TCG boot alone takes longer): one-line message, 124, no QEMU left."""
    r = run_romlab("vm", "--accel", "tcg", "--timeout", "20", "--share", str(tmp_path), "--", "sleep", "1000",
                   timeout=120)
    err = r.stderr.decode().strip()
    assert r.returncode == 124, err
    assert err.splitlines()[-1] == ("romlab vm: error: the guest did not finish within 20 s (stuck boot or hung "
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


@pytest.mark.xfail(strict=True, reason="defect 3: link names sharing their first three bytes share one hub")
def test_defect3_distinct_link_names_never_share_a_hub():
    specs = ["e1000,link=lab1", "e1000,link=lab2", "e1000e,link=lab1", "rtl8139", "e1000,link=labx"]
    args = []
    for i, spec in enumerate(specs):
        args += vm.Nic.parse(spec).qemu_args(i)
    hubs = _hub_ids(args)
    assert len(hubs) == 5
    # Same name, same hub; different names (and a NIC of its own) never one hub.
    assert hubs[0] == hubs[2]
    assert len({hubs[0], hubs[1], hubs[3], hubs[4]}) == 4
