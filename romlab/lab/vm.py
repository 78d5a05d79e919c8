"""A QEMU guest with emulated NICs behind a virtual IOMMU, for people without the cards.

The guest is q35 with an Intel vIOMMU (``aw-bits=48``), so its kernel has real IOMMU
groups, a real vfio-pci and real ROM BARs holding whatever ``romfile=`` QEMU was
given. virtme-ng boots Debian's kernel (bookworm-backports' 6.12, which set-up unpacks with its
modules into romlab's cache, never installing it on the host) on the host's own root
filesystem (read-only over 9p, the working directory behind a writable overlay), so
the romlab and virtual environment that start the guest are the ones inside it.

Each NIC sits in a PCIe root port of its own: that gives it an IOMMU group of its
own and a secondary-bus reset, which VFIO uses to reset devices that have no FLR.
KVM is used only if the lab's probe (:func:`romlab.lab.qemu.kvm_works`) shows it really
boots Linux here; otherwise TCG. virtme-run builds the kernel's command line and runs QEMU;
romlab starts it through the lab's launcher, adds the NICs' arguments, and stops the whole
process group when the time is up.
"""
from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hw.errors import LabError
from romlab.lab.process import launch, stop
from romlab.lab.qemu import NicSpec, cache_dir, choose_accel, find_qemu

# Drivers for what q35 and the CPU bring along that no NIC work needs: the watchdogs, the PC
# speaker, the CD-ROM, nested KVM, CPU crypto. udev would load each one from the 9p root at boot,
# which under TCG costs seconds apiece. Blacklisting keeps udev from loading them by alias;
# `modprobe NAME` still loads one on purpose. The ICH9 functions keep their drivers (ahci,
# lpc_ich, i801_smbus): they are the guest's example of an IOMMU group a NIC must not share.
UNNEEDED_MODULES = ("kvm", "kvm_amd", "kvm_intel", "i6300esb", "iTCO_wdt", "iTCO_vendor_support", "pcspkr",
                    "sr_mod", "powernow_k8", "aesni_intel", "ghash_clmulni_intel", "crc32_pclmul", "crc32c_intel",
                    "serio_raw", "psmouse", "joydev")
GUEST_CMDLINE = ("intel_iommu=on", "modprobe.blacklist=" + ",".join(UNNEEDED_MODULES))
DEFAULT_TIMEOUT = 600.0
STOP_GRACE = 5.0  # seconds virtme-run gets to take its QEMU down after SIGTERM
# Host-bound variables that mean nothing (or something wrong) inside the guest.
ENV_DROP = {"PWD", "OLDPWD", "SHLVL", "_", "HOSTNAME", "TMPDIR", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
            "SSH_AUTH_SOCK", "DISPLAY", "WAYLAND_DISPLAY", "TERM", "COLUMNS", "LINES"}


def nic_args(nics: list[NicSpec]) -> list[str]:
    """QEMU arguments for the guest's NICs, each in a PCIe root port of its own.

    A NIC without ``link=`` gets a hub of its own (numbered by its place, 0..n-1), so QEMU
    has a back end to attach it to; NICs naming the same link share one hub. Link hubs are
    numbered from n upward in the order their names first appear, so two names never share
    a hub and no link hub is a lone NIC's.
    """
    links: dict[str, int] = {}
    for nic in nics:
        if nic.link and nic.link not in links:
            links[nic.link] = len(nics) + len(links)
    args: list[str] = []
    for n, nic in enumerate(nics):
        port, netdev = f"romlab_port{n}", f"romlab_net{n}"
        hub = links[nic.link] if nic.link else n
        args += ["-device", f"pcie-root-port,id={port},chassis={n + 1},slot={n + 1}",
                 "-netdev", f"hubport,id={netdev},hubid={hub}",
                 "-device", nic.device(netdev=netdev, bus=port),
                 *nic.capture_args(netdev, f"romlab_dump{n}")]
    return args


def kernel_cache() -> Path:
    """Where set-up unpacks guest kernels: one ``linux-image-VERSION-amd64/`` tree each, holding
    ``boot/vmlinuz-VERSION`` and ``lib/modules/VERSION`` as the package lays them out."""
    return cache_dir() / "kernel"


def find_kernel() -> str:
    """The guest kernel: ``ROMLAB_VM_KERNEL`` if set, else the newest one unpacked in
    :func:`kernel_cache` that has its modules beside it.

    virtme-ng finds a kernel's modules from the image's path (``ROOT/boot/vmlinuz-V`` ->
    ``ROOT/lib/modules/V``) and links them into the guest's /lib/modules, so a kernel that is not
    the host's needs nothing installed on the host.
    """
    env = os.environ.get("ROMLAB_VM_KERNEL")
    if env:
        if not os.path.isfile(env):
            raise LabError(f"ROMLAB_VM_KERNEL={env} does not exist")
        return env
    found = sorted(glob.glob(str(kernel_cache() / "linux-image-*" / "boot" / "vmlinuz-*")),
                   key=_version_key, reverse=True)
    for k in found:
        root, ver = Path(k).parent.parent, k.split("vmlinuz-", 1)[1]
        if (root / "lib" / "modules" / ver / "modules.dep").is_file():
            return k
    raise LabError(f"no guest kernel with its modules under {kernel_cache()}; "
                   "run scripts/setup.sh (it unpacks bookworm-backports' linux-image-amd64 there)")


def _version_key(path: str) -> list:
    ver = path.split("vmlinuz-", 1)[1]
    return [int(x) if x.isdigit() else x for x in ver.replace("-", ".").split(".")]


def virtme_run() -> str:
    here = Path(sys.executable).parent / "virtme-run"
    if here.exists():
        return str(here)
    found = shutil.which("virtme-run")
    if not found:
        raise LabError("virtme-run is missing; install romlab's dependencies (pip install virtme-ng)")
    return found


def guest_script(command: list[str], cwd: str, env: dict[str, str]) -> str:
    """The shell script the guest runs: the host's environment and directory, then COMMAND."""
    lines = ["#!/bin/sh"]
    for k, v in sorted(env.items()):
        if k in ENV_DROP or not k.replace("_", "a").isalnum() or k[0].isdigit():
            continue
        lines.append(f"export {k}={shlex.quote(v)}")
    lines.append("export ROMLAB_IN_VM=1")
    lines.append(f"cd {shlex.quote(cwd)} || exit 125")
    lines.append(f"exec {shlex.join(command)}")
    return "\n".join(lines) + "\n"


@dataclass
class VmResult:
    returncode: int
    seconds: float
    accel: str


def management_args(port: int, mac: str) -> list[str]:
    """A management NIC: virtio-net on QEMU's user networking (the guest is 10.0.2.15, the host
    10.0.2.2), its SSH port forwarded from 127.0.0.1:``port`` on the host. It is never one of the
    NICs under test: it sits on the root complex, not in a root port, and has no ROM BAR."""
    return ["-netdev", f"user,id=romlab_mgmt,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", f"virtio-net-pci,netdev=romlab_mgmt,mac={mac},romfile="]


# One vCPU unless asked for more. Under TCG a two-vCPU guest (QEMU 10, Linux 6.12, q35 with the
# vIOMMU's interrupt remapping) now and then never finishes an RCU grace period: seen in 3 of 6 runs
# of a loop of ROM reads through VFIO, each time in a NIC driver's unbind (e1000_remove ->
# netdev_run_todo -> rcu_barrier) with the RCU stall detector's NMI backtraces in dmesg, after which
# the guest hangs, 9p included. With one vCPU there is no other CPU whose wake-up can be lost; the
# same loop ran 3 times out of 3 (33 reads) without it, and TCG on a 2-core host gains little from a
# second vCPU.
DEFAULT_CPUS = 1


def run(command: list[str], nics: list[NicSpec], *, memory: str = "1G", cpus: int = DEFAULT_CPUS,
        timeout: float = DEFAULT_TIMEOUT, accel: str = "auto", shares: list[str] = (),
        cwd: str | None = None, verbose: bool = False, stdout=None, stderr=None) -> VmResult:
    """Boot the guest, run ``command`` in it as root, return its exit status.

    The guest's stdout/stderr go to this process's (or to ``stdout``/``stderr`` file
    objects). A guest still running after ``timeout`` seconds is killed and RomlabError
    raised.
    """
    ctl = tempfile.mkdtemp(prefix="romlab-vm-")
    try:
        cmd, accel = _command(command, nics, ctl, memory=memory, cpus=cpus, accel=accel, shares=shares,
                              cwd=cwd, verbose=verbose)
        return _supervise(cmd, timeout, accel, stdout, stderr)
    finally:
        shutil.rmtree(ctl, ignore_errors=True)


def start(command: list[str], nics: list[NicSpec], ctl: str, *, memory: str = "1G", cpus: int = DEFAULT_CPUS,
          accel: str = "auto", cwd: str | None = None, overlays: list[str] = (), extra: list[str] = (),
          stdout=None, stderr=None) -> subprocess.Popen:
    """Start a long-lived guest running ``command`` (a server) and return at once.

    ``ctl`` is a directory of the caller's that holds the guest's script for as long as it runs;
    ``overlays`` are host directories the guest may write to, the writes kept in its memory;
    ``extra`` are more QEMU arguments (e.g. :func:`management_args`). The guest dies with the
    caller, like every lab process: stop it with :func:`romlab.lab.process.stop`.
    """
    cmd, _ = _command(command, nics, ctl, memory=memory, cpus=cpus, accel=accel, cwd=cwd,
                      overlays=overlays, extra=extra)
    return launch(cmd, what="virtme-run", stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)


def _command(command: list[str], nics: list[NicSpec], ctl: str, *, memory: str, cpus: int, accel: str,
             shares: list[str] = (), cwd: str | None = None, verbose: bool = False, overlays: list[str] = (),
             extra: list[str] = ()) -> tuple[list[str], str]:
    """virtme-run's command line for the guest, and the accelerator chosen."""
    if not command:
        raise LabError("no command to run in the guest; put it after --")
    if accel not in ("auto", "kvm", "tcg"):
        raise LabError(f"unknown accelerator {accel!r}; use auto, kvm or tcg")
    find_qemu()
    kernel = find_kernel()
    log = (lambda m: print(f"romlab vm: {m}", file=sys.stderr)) if verbose else None
    accel = choose_accel(accel, kernel, log)
    cwd = os.path.abspath(cwd or os.getcwd())
    shares = [os.path.abspath(s) for s in shares]
    for s in shares:
        if not os.path.isdir(s):
            raise LabError(f"shared directory {s} does not exist")

    script = Path(ctl) / "run.sh"
    script.write_text(guest_script(command, cwd, dict(os.environ)))
    cmd = [virtme_run(), "--kimg", kernel, "--mods", "auto", "--disable-microvm",
           "--memory", memory, "--cpus", str(cpus), "--cwd", cwd,
           "--rwdir", ctl, "--overlay-rwdir", cwd]
    for o in overlays:
        cmd += ["--overlay-rwdir", o]
    if accel != "kvm":
        cmd.append("--disable-kvm")
    for s in shares:
        cmd += ["--rwdir", s]
    for opt in GUEST_CMDLINE:
        cmd += ["-a", opt]
    cmd += ["--script-sh", f"sh {shlex.quote(str(script))}"]
    # Under TCG a guest of several vCPUs runs them in one host thread, in turn: with a thread per
    # vCPU, a 2-vCPU guest now and then hung for good (one vCPU spinning, the other halted, as if a
    # wake-up between them was lost).
    single = ["-accel", "tcg,thread=single"] if accel != "kvm" and cpus > 1 else []
    qemu = ["-machine", "q35,kernel-irqchip=split", *single,
            "-device", "intel-iommu,intremap=on,caching-mode=on,aw-bits=48", *nic_args(nics), *extra]
    cmd += [f"-q={a}" for a in qemu]
    if log:
        log(" ".join(shlex.quote(c) for c in cmd))
    return cmd, accel


def _supervise(cmd: list[str], timeout: float, accel: str, stdout, stderr) -> VmResult:
    start = time.monotonic()
    proc = launch(cmd, what="virtme-run", stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=STOP_GRACE)
        raise LabError(f"the guest did not finish within {timeout:.0f} s (stuck boot or hung command); "
                       "killed it", exit_code=124) from None
    except BaseException:
        stop(proc, grace=STOP_GRACE)
        raise
    return VmResult(rc, time.monotonic() - start, accel)
