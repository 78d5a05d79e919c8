"""A QEMU guest with emulated NICs behind a virtual IOMMU, for people without the cards.

The guest is q35 with an Intel vIOMMU (``aw-bits=48``), so its kernel has real IOMMU
groups, a real vfio-pci and real ROM BARs holding whatever ``romfile=`` QEMU was
given. virtme-ng boots Debian's ``linux-image-amd64`` kernel on the host's own root
filesystem (read-only over 9p, the working directory behind a writable overlay), so
the romlab and virtual environment that start the guest are the ones inside it.

Each NIC sits in a PCIe root port of its own: that gives it an IOMMU group of its
own and a secondary-bus reset, which VFIO uses to reset devices that have no FLR.
KVM is used only if a probe shows it really boots Linux here; otherwise TCG.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from romtools.errors import RomError

NIC_MODELS = ("e1000", "e1000-82544gc", "e1000-82545em", "e1000e", "rtl8139", "pcnet", "ne2k_pci",
              "i82550", "i82551", "i82557b", "i82557c", "i82558a", "i82558b", "i82559a", "i82559b",
              "i82559c", "i82559er", "i82562", "i82801", "vmxnet3", "virtio-net-pci", "tulip")
NIC_KEYS = ("romfile", "mac", "capture", "romsize", "rombar", "link")
GUEST_CMDLINE = ("intel_iommu=on",)
DEFAULT_TIMEOUT = 600.0
KVM_PROBE_TIMEOUT = 15.0
# Host-bound variables that mean nothing (or something wrong) inside the guest.
ENV_DROP = {"PWD", "OLDPWD", "SHLVL", "_", "HOSTNAME", "TMPDIR", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
            "SSH_AUTH_SOCK", "DISPLAY", "WAYLAND_DISPLAY", "TERM", "COLUMNS", "LINES"}


@dataclass
class Nic:
    """One ``--nic MODEL[,romfile=PATH][,mac=..][,capture=PCAP][,romsize=N][,rombar=0|1]``."""

    model: str
    romfile: str | None = None
    mac: str | None = None
    capture: str | None = None
    link: str | None = None  # NICs with the same link name share a QEMU hub instead of user networking
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "Nic":
        model, *opts = spec.split(",")
        if model not in NIC_MODELS:
            raise RomError(f"unknown NIC model {model!r}; QEMU 7.2 emulates {', '.join(NIC_MODELS)}")
        nic = cls(model)
        for opt in opts:
            key, sep, value = opt.partition("=")
            if not sep or key not in NIC_KEYS:
                raise RomError(f"bad NIC option {opt!r} in {spec!r}; use {'=, '.join(NIC_KEYS)}=")
            if key == "romfile":
                if value:
                    p = Path(value).resolve()
                    if not p.is_file():
                        raise RomError(f"romfile {value} does not exist")
                    value = str(p)
                nic.romfile = value
            elif key == "mac":
                parts = value.split(":")
                if len(parts) != 6 or not all(len(x) == 2 and all(c in "0123456789abcdefABCDEF" for c in x)
                                              for x in parts):
                    raise RomError(f"bad MAC address {value!r}; write it as 52:54:00:12:34:56")
                nic.mac = value.lower()
            elif key == "link":
                if not value.isalnum():
                    raise RomError(f"bad link name {value!r}; use letters and digits")
                nic.link = value
            elif key == "capture":
                p = Path(value).resolve()
                if not p.parent.is_dir():
                    raise RomError(f"capture directory {p.parent} does not exist")
                nic.capture = str(p)
            else:
                nic.extra[key] = value
        return nic

    def qemu_args(self, n: int) -> list[str]:
        port, netdev = f"romlab_port{n}", f"romlab_net{n}"
        dev = [self.model, f"netdev={netdev}", f"bus={port}"]
        if self.mac:
            dev.append(f"mac={self.mac}")
        if self.romfile is not None:
            dev.append(f"romfile={self.romfile}")
        dev += [f"{k}={v}" for k, v in self.extra.items()]
        args = ["-device", f"pcie-root-port,id={port},chassis={n + 1},slot={n + 1}",
                "-netdev", f"hubport,id={netdev},hubid={_hub_id(self.link) if self.link else n}",
                "-device", ",".join(dev)]
        if self.capture:
            args += ["-object", f"filter-dump,id=romlab_dump{n},netdev={netdev},file={self.capture}"]
        return args


def _hub_id(link: str) -> int:
    """A stable QEMU hub number for a link name, clear of the per-NIC hubs 0..99."""
    return 100 + int.from_bytes(link.encode()[:3].ljust(3, b"\0"), "big") % 100000


def find_kernel() -> str:
    """Debian's packaged kernel (linux-image-amd64), newest first."""
    env = os.environ.get("ROMLAB_VM_KERNEL")
    if env:
        if not os.path.isfile(env):
            raise RomError(f"ROMLAB_VM_KERNEL={env} does not exist")
        return env
    found = sorted(glob.glob("/boot/vmlinuz-*"), key=_version_key, reverse=True)
    for k in found:
        ver = k.split("vmlinuz-", 1)[1]
        if os.path.isdir(f"/lib/modules/{ver}"):
            return k
    raise RomError("no kernel with modules under /boot; install linux-image-amd64 (scripts/setup.sh does)")


def _version_key(path: str) -> list:
    ver = path.split("vmlinuz-", 1)[1]
    return [int(x) if x.isdigit() else x for x in ver.replace("-", ".").split(".")]


def _virtme_run() -> str:
    here = Path(sys.executable).parent / "virtme-run"
    if here.exists():
        return str(here)
    found = shutil.which("virtme-run")
    if not found:
        raise RomError("virtme-run is missing; install romlab's dependencies (pip install virtme-ng)")
    return found


def _qemu() -> str:
    q = shutil.which("qemu-system-x86_64")
    if not q:
        raise RomError("qemu-system-x86_64 is missing; install qemu-system-x86")
    return q


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "romlab"


def kvm_boots(kernel: str, log=None) -> bool:
    """Whether KVM boots ``kernel`` with the CPU model virtme-ng asks for (``-cpu host``).

    Some hosts expose /dev/kvm yet fail ``-cpu host`` outright or hang the guest
    early; the probe boots the kernel with no root file system and waits for the
    "VFS: Unable to mount root" panic a working KVM reaches in a second or two.
    The answer is cached per kernel, QEMU and host kernel.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    qemu = _qemu()
    key = f"{kernel}|{os.stat(kernel).st_mtime_ns}|{os.stat(qemu).st_mtime_ns}|{os.uname().release}"
    cache = _cache_dir() / "kvm-probe.json"
    try:
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return bool(data["kvm"])
    except (OSError, ValueError, KeyError):
        pass
    cmd = [qemu, "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "256", "-display", "none",
           "-serial", "stdio", "-monitor", "none", "-no-reboot", "-kernel", kernel,
           "-append", "console=ttyS0 panic=-1 loglevel=4"]
    ok = False
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=KVM_PROBE_TIMEOUT)
        ok = b"Unable to mount root" in out or b"Kernel panic" in out
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    if log:
        log(f"KVM probe: {'boots' if ok else 'does not boot Linux here'}; using {'KVM' if ok else 'TCG'}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "kvm": ok}))
    except OSError:
        pass
    return ok


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


def run(command: list[str], nics: list[Nic], *, memory: str = "1G", cpus: int = 2,
        timeout: float = DEFAULT_TIMEOUT, accel: str = "auto", shares: list[str] = (),
        cwd: str | None = None, verbose: bool = False, stdout=None, stderr=None) -> VmResult:
    """Boot the guest, run ``command`` in it as root, return its exit status.

    The guest's stdout/stderr go to this process's (or to ``stdout``/``stderr`` file
    objects). A guest still running after ``timeout`` seconds is killed and RomError
    raised.
    """
    if not command:
        raise RomError("no command to run in the guest; put it after --")
    if accel not in ("auto", "kvm", "tcg"):
        raise RomError(f"unknown accelerator {accel!r}; use auto, kvm or tcg")
    kernel = find_kernel()
    log = (lambda m: print(f"romlab vm: {m}", file=sys.stderr)) if verbose else None
    use_kvm = accel == "kvm" or (accel == "auto" and kvm_boots(kernel, log))
    cwd = os.path.abspath(cwd or os.getcwd())
    shares = [os.path.abspath(s) for s in shares]
    for s in shares:
        if not os.path.isdir(s):
            raise RomError(f"shared directory {s} does not exist")

    ctl = tempfile.mkdtemp(prefix="romlab-vm-")
    try:
        script = Path(ctl) / "run.sh"
        script.write_text(guest_script(command, cwd, dict(os.environ)))
        cmd = [_virtme_run(), "--kimg", kernel, "--mods", "auto", "--disable-microvm",
               "--memory", memory, "--cpus", str(cpus), "--cwd", cwd,
               "--rwdir", ctl, "--overlay-rwdir", cwd]
        if not use_kvm:
            cmd.append("--disable-kvm")
        for s in shares:
            cmd += ["--rwdir", s]
        for opt in GUEST_CMDLINE:
            cmd += ["-a", opt]
        cmd += ["--script-sh", f"sh {shlex.quote(str(script))}"]
        qemu = ["-machine", "q35,kernel-irqchip=split",
                "-device", "intel-iommu,intremap=on,caching-mode=on,aw-bits=48"]
        for i, nic in enumerate(nics):
            qemu += nic.qemu_args(i)
        cmd += [f"-q={a}" for a in qemu]
        if log:
            log(" ".join(shlex.quote(c) for c in cmd))
        return _supervise(cmd, timeout, "kvm" if use_kvm else "tcg", stdout, stderr)
    finally:
        shutil.rmtree(ctl, ignore_errors=True)


def _supervise(cmd: list[str], timeout: float, accel: str, stdout, stderr) -> VmResult:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise RomError(f"the guest did not finish within {timeout:.0f} s (stuck boot or hung command); "
                       "killed it", exit_code=124) from None
    except BaseException:
        _kill_group(proc)
        raise
    return VmResult(rc, time.monotonic() - start, accel)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def inside_vm() -> bool:
    return os.environ.get("ROMLAB_IN_VM") == "1"

