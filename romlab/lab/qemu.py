"""The one QEMU launcher: every QEMU romlab starts is started, watched and stopped here.

Three kinds of guest use it: the firmware boots of ``romlab boot`` and ``romlab bench
firmware`` (:class:`Qemu`: a ``pc`` machine, its serial console read on a thread into a
:class:`romlab.lab.console.Console`, the NIC's PCI IDs asked over QMP), the Linux guests of
``romlab vm`` (started through virtme-run, which builds the kernel's command line and execs
QEMU) and the register relay (:mod:`romlab.lab.regrelay`). They share:

* :class:`NicSpec`: the one parser of ``--nic MODEL[,KEY=VALUE...]``. Models and their
  properties are checked against what the installed QEMU says it has (``-device help``), so
  a typo is a one-line error before anything boots, on any QEMU version;
* :func:`kvm_works`: the one KVM probe (does KVM boot a Linux kernel here, cached);
* :func:`romlab.lab.process.launch` and :func:`~romlab.lab.process.stop`: a process that
  dies with romlab, however romlab dies, and is always reaped.

TCG is the default for firmware boots: nested KVM on the machines romlab targets dies in the
mode-switch code option ROMs are made of.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hw.errors import LabError
from romlab.lab.console import Console
from romlab.lab.process import launch, stop

QEMU = "qemu-system-x86_64"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"
FIRMWARES = ("seabios", "ovmf")

# Names romlab accepts for --nic beyond QEMU's own device names. Debian's virtio ROMs
# carry the modern virtio-net ID 1af4:1041, which QEMU gives the device only without
# its legacy (transitional) interface.
NIC_ALIASES = {
    "virtio-net": ("virtio-net-pci", {"disable-legacy": "on"}),
    "virtio": ("virtio-net-pci", {"disable-legacy": "on"}),
}
# romlab's own NIC options; every other KEY=VALUE is a property of the QEMU device.
LAB_KEYS = ("capture", "link")
# Device properties romlab sets itself to wire the NIC into its machine.
OWN_PROPERTIES = ("netdev", "bus", "id")

KVM_PROBE_TIMEOUT = 15.0
KVM_DEVICE = "/dev/kvm"


def find_qemu() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise LabError(f"{QEMU} is not installed; install Debian's qemu-system-x86 (scripts/setup.sh does)")
    return path


def machine_args(qemu: str, *, accel: str, machine: str, memory: str | int) -> list[str]:
    """The start of every QEMU command line romlab builds (firmware boots, the KVM probe, the register
    relay): the accelerator, the machine, its memory, no default devices, and the first serial port on
    stdio. What each machine adds (a NIC, firmware, a kernel, QMP) follows it."""
    return [qemu, "-accel", accel, "-machine", machine, "-m", str(memory), "-nodefaults", "-serial", "stdio"]


def cache_dir() -> Path:
    """Where romlab keeps what it can reuse between runs (the KVM probe, the relay's program)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "romlab"


# -- what this QEMU has ------------------------------------------------------------------

def _qemu_output(qemu: str, *args: str) -> str:
    try:
        r = subprocess.run([qemu, *args], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"cannot ask {qemu} what it emulates: {exc}") from None
    return r.stdout + r.stderr


@functools.lru_cache(maxsize=None)
def qemu_version(qemu: str) -> str:
    """``10.0.2`` from ``QEMU emulator version 10.0.2 (Debian ...)``."""
    m = re.search(r"version (\S+)", _qemu_output(qemu, "--version"))
    return m.group(1) if m else "?"


@functools.lru_cache(maxsize=None)
def qemu_nics(qemu: str) -> dict[str, str]:
    """The PCI network devices this QEMU emulates: each name and alias -> the device name.

    Read from the "Network devices:" section of ``-device help``, whose lines read
    ``name "e1000", bus PCI, alias "e1000-82540em", desc "..."``.
    """
    out: dict[str, str] = {}
    section = False
    for line in _qemu_output(qemu, "-device", "help").splitlines():
        if line.endswith(":"):
            section = line.strip() == "Network devices:"
            continue
        m = re.match(r'name "([^"]+)", bus PCI(?:, alias "([^"]+)")?', line.strip()) if section else None
        if m:
            out[m.group(1)] = m.group(1)
            if m.group(2):
                out.setdefault(m.group(2), m.group(1))
    return out


@functools.lru_cache(maxsize=None)
def device_properties(qemu: str, model: str) -> frozenset[str]:
    """The properties ``-device MODEL,help`` lists (``  mac=<str> - ...``)."""
    text = _qemu_output(qemu, "-device", f"{model},help")
    return frozenset(m.group(1) for m in re.finditer(r"^\s+([\w.-]+)=<", text, re.M))


# -- the NIC spec ----------------------------------------------------------------------------

def _check_mac(value: str) -> str:
    parts = value.split(":")
    if len(parts) != 6 or not all(len(x) == 2 and all(c in "0123456789abcdefABCDEF" for c in x) for x in parts):
        raise LabError(f"bad MAC address {value!r}; write it as 52:54:00:12:34:56")
    return value.lower()


@dataclass
class NicSpec:
    """One ``--nic MODEL[,KEY=VALUE...]``: a QEMU NIC model, its device properties, romlab's options.

    ``romfile=`` (empty: no ROM BAR) and ``mac=`` are checked here, the other properties
    against the device's own list; ``capture=PCAP`` writes the NIC's traffic to a file,
    ``link=NAME`` (``romlab vm``) joins the NICs sharing that name on one virtual hub.
    """

    text: str
    model: str
    props: dict[str, str] = field(default_factory=dict)
    capture: str | None = None
    link: str | None = None

    @property
    def romfile(self) -> str | None:
        return self.props.get("romfile")

    @property
    def mac(self) -> str | None:
        return self.props.get("mac")

    @classmethod
    def parse(cls, text: str, qemu: str | None = None) -> "NicSpec":
        model, *opts = text.split(",")
        model = model.strip()
        if not model:
            raise LabError(f"--nic {text!r}: give a QEMU NIC model such as e1000, e1000e, rtl8139 or virtio-net")
        qemu = qemu or find_qemu()
        props: dict[str, str] = {}
        if model in NIC_ALIASES:
            model, base = NIC_ALIASES[model]
            props.update(base)
        known = qemu_nics(qemu)
        if model not in known:
            raise LabError(f"unknown NIC model {model!r}; this QEMU ({qemu_version(qemu)}) emulates "
                           f"{', '.join(sorted(set(known.values())))}")
        model = known[model]
        spec = cls(text, model, props)
        for opt in opts:
            key, sep, value = opt.partition("=")
            if not sep:
                raise LabError(f"bad NIC option {opt!r} in {text!r}; write KEY=VALUE")
            if key == "capture":
                p = Path(value).resolve()
                if not p.parent.is_dir():
                    raise LabError(f"capture directory {p.parent} does not exist")
                spec.capture = str(p)
            elif key == "link":
                if not value.isalnum():
                    raise LabError(f"bad link name {value!r}; use letters and digits")
                spec.link = value
            elif key in OWN_PROPERTIES:
                raise LabError(f"bad NIC option {opt!r} in {text!r}: romlab sets {key}= itself")
            elif key not in device_properties(qemu, model):
                raise LabError(f"bad NIC option {opt!r} in {text!r}; {model} has no property {key!r} "
                               f"(`{QEMU} -device {model},help` lists them) and romlab's own are "
                               f"{'=, '.join(LAB_KEYS)}=")
            elif key == "romfile":
                if value:
                    p = Path(value).resolve()
                    if not p.is_file():
                        raise LabError(f"romfile {value} does not exist")
                    value = str(p)
                props[key] = value
            elif key == "mac":
                props[key] = _check_mac(value)
            else:
                props[key] = value
        return spec

    def device(self, *, netdev: str | None, ident: str | None = None, bus: str | None = None) -> str:
        """The ``-device`` value: the model, romlab's wiring, then the properties as given."""
        parts = [self.model]
        if ident:
            parts.append(f"id={ident}")
        if netdev:
            parts.append(f"netdev={netdev}")
        if bus:
            parts.append(f"bus={bus}")
        parts += [f"{k}={v}" for k, v in self.props.items()]
        return ",".join(parts)

    def capture_args(self, netdev: str, ident: str) -> list[str]:
        """QEMU's filter-dump on the NIC's back end: every frame both ways, as pcap."""
        if not self.capture:
            return []
        return ["-object", f"filter-dump,id={ident},netdev={netdev},file={self.capture}"]


def nic_device(spec: str) -> tuple[str, dict[str, str]]:
    """``MODEL[,prop=value...]`` -> QEMU device name and properties, through :meth:`NicSpec.parse`."""
    nic = NicSpec.parse(spec)
    return nic.model, dict(nic.props)


# -- the KVM probe -----------------------------------------------------------------------

def kvm_works(kernel: str, log=None, *, device: str | None = None, qemu: str | None = None,
              timeout: float = KVM_PROBE_TIMEOUT) -> bool:
    """Whether KVM boots ``kernel`` here with the CPU model virtme-ng asks for (``-cpu host``).

    Some hosts expose /dev/kvm yet fail ``-cpu host`` outright or hang the guest early
    (nested KVM above all); the probe boots the kernel with no root file system and waits
    at most ``timeout`` seconds for the "VFS: Unable to mount root" panic a working KVM
    reaches in a second or two. The answer is cached per kernel, QEMU and host kernel.
    ``log`` is told the decision and whether it came from the cache.
    """
    say = log or (lambda msg: None)
    device = device or KVM_DEVICE
    if not os.access(device, os.R_OK | os.W_OK):
        say(f"KVM probe: {device} is not usable here; using TCG")
        return False
    qemu = qemu or find_qemu()
    key = f"{kernel}|{os.stat(kernel).st_mtime_ns}|{qemu}|{os.stat(qemu).st_mtime_ns}|{os.uname().release}"
    cache = cache_dir() / "kvm-probe.json"
    try:
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            ok = bool(data["kvm"])
            say(f"KVM probe (cached): {'boots' if ok else 'does not boot Linux here'}; "
                f"using {'KVM' if ok else 'TCG'}")
            return ok
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cmd = [*machine_args(qemu, accel="kvm", machine="q35", memory=256), "-cpu", "host", "-display", "none",
           "-monitor", "none", "-no-reboot", "-kernel", kernel, "-append", "console=ttyS0 panic=-1 loglevel=4"]
    proc = launch(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ok = False
    try:
        out, _ = proc.communicate(timeout=timeout)
        ok = b"Unable to mount root" in out or b"Kernel panic" in out
        why = "" if ok else " (it stopped without reaching the kernel's panic)"
    except subprocess.TimeoutExpired:
        why = f" (no answer in {timeout:g} s)"
    finally:
        stop(proc)
        if proc.stdout:
            proc.stdout.close()
    say(f"KVM probe: {'boots' if ok else 'does not boot Linux here' + why}; using {'KVM' if ok else 'TCG'}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "kvm": ok}))
    except OSError:
        pass
    return ok


def choose_accel(accel: str, kernel: str, log=None) -> str:
    """``kvm`` or ``tcg`` for ``--accel auto|kvm|tcg``: auto asks the probe."""
    if accel not in ("auto", "kvm", "tcg"):
        raise LabError(f"unknown accelerator {accel!r}; use auto, kvm or tcg")
    if accel == "auto":
        return "kvm" if kvm_works(kernel, log) else "tcg"
    return accel


# -- QMP -----------------------------------------------------------------------------------

class Qmp:
    """QEMU's monitor on its unix socket, through the QEMU project's own client (``qemu.qmp``).

    The socket is connected here, retrying until QEMU has made it (or died, or the deadline
    passed); the client then reads the greeting and negotiates capabilities.
    """

    def __init__(self, path: str, deadline: float, alive=lambda: True):
        from qemu.qmp.legacy import QEMUMonitorProtocol

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline or not alive():
                    sock.close()
                    raise TimeoutError("QEMU did not open its QMP socket") from None
                time.sleep(0.05)
        self.monitor = QEMUMonitorProtocol(sock)
        try:
            self.monitor.connect()
        except BaseException:
            self.close()
            raise
        self.monitor.settimeout(max(1.0, deadline - time.monotonic()))

    def command(self, name: str, **arguments) -> object:
        return self.monitor.cmd(name, **arguments)

    def close(self) -> None:
        try:
            self.monitor.close()
        except Exception:  # the socket is gone with QEMU: nothing left to close
            pass


# -- a firmware boot ---------------------------------------------------------------------------

@dataclass
class Netdev:
    """The NIC's back end: QEMU's user-mode network (slirp) or a tap device.

    For slirp, ``bootfile`` and ``tftp`` are what its built-in DHCP and TFTP hand out;
    the host is 10.0.2.2 from the guest, mapped to the host's 127.0.0.1.
    For a tap, ``netns`` names the network namespace QEMU must run in to see it.
    """
    kind: str = "user"
    bootfile: str | None = None
    tftp: str | None = None
    ifname: str | None = None
    netns: str | None = None

    def arg(self, ident: str) -> str:
        if self.kind == "user":
            parts = [f"user,id={ident}"]
            if self.tftp:
                parts.append(f"tftp={self.tftp}")
            if self.bootfile:
                parts.append(f"bootfile={self.bootfile}")
            return ",".join(parts)
        if self.kind == "tap":
            return f"tap,id={ident},ifname={self.ifname},script=no,downscript=no"
        raise ValueError(self.kind)


@dataclass
class Machine:
    nic: str | NicSpec
    rom: str | None
    firmware: str = "seabios"
    netdev: Netdev = field(default_factory=Netdev)
    accel: str = "tcg"
    memory: int = 256
    mac: str | None = None


class Qemu:
    """One firmware boot: a ``pc`` machine with one NIC. Use as a context manager; leaving it always stops QEMU."""

    def __init__(self, machine: Machine, *, workdir: str | None = None):
        self.machine = machine
        self.console = Console()
        self.proc: subprocess.Popen | None = None
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="romlab-qemu-")
        self.qmp_path = os.path.join(self.workdir, "qmp.sock")
        self.stderr_path = os.path.join(self.workdir, "qemu.stderr")
        self._reader: threading.Thread | None = None
        self.nic_ids: tuple[int, int] | None = None
        self.started = 0.0
        self.exit_code: int | None = None
        self.stderr_text = ""

    # -- command line ---------------------------------------------------
    def command_line(self) -> list[str]:
        m = self.machine
        if m.firmware not in FIRMWARES:
            raise LabError(f"--firmware {m.firmware!r}: choose one of {', '.join(FIRMWARES)}")
        if m.accel not in ("tcg", "kvm"):
            raise LabError(f"--accel {m.accel!r}: choose tcg or kvm")
        qemu = find_qemu()
        spec = m.nic if isinstance(m.nic, NicSpec) else NicSpec.parse(m.nic, qemu)
        if spec.link:
            raise LabError(f"--nic {spec.text!r}: link= joins the NICs of one `romlab vm` guest; "
                           "a firmware boot has one NIC")
        spec = NicSpec(spec.text, spec.model, dict(spec.props), spec.capture)
        if m.rom is not None:
            spec.props["romfile"] = m.rom
        if m.mac:
            spec.props["mac"] = _check_mac(m.mac)
        cmd = [*machine_args(qemu, accel=m.accel, machine="pc", memory=m.memory), "-nographic", "-no-reboot",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
               "-device", spec.device(netdev="n0", ident="nic0"), "-netdev", m.netdev.arg("n0"),
               *spec.capture_args("n0", "dump0"), "-boot", "n"]
        if m.firmware == "ovmf":
            for path in (OVMF_CODE, OVMF_VARS):
                if not os.path.exists(path):
                    raise LabError(f"{path} is missing; install Debian's ovmf package (scripts/setup.sh does)")
            vars_copy = os.path.join(self.workdir, "OVMF_VARS.fd")
            shutil.copyfile(OVMF_VARS, vars_copy)
            cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        else:
            cmd += ["-vga", "none"]
        if m.netdev.netns:
            cmd = ["ip", "netns", "exec", m.netdev.netns, *cmd]
        return cmd

    # -- life cycle -----------------------------------------------------
    def start(self) -> "Qemu":
        if self.machine.rom and not os.path.isfile(self.machine.rom):
            raise LabError(f"{self.machine.rom}: no such ROM file")
        cmd = self.command_line()
        with open(self.stderr_path, "wb") as err:
            self.proc = launch(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=self.workdir)
        self.started = time.monotonic()
        self.console.started = self.started
        self._reader = threading.Thread(target=self._read_console, name="qemu-console", daemon=True)
        self._reader.start()
        return self

    def _read_console(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.console.feed(chunk)
        self.console.close()

    def query_nic_ids(self, timeout: float = 20.0) -> tuple[int, int] | None:
        """(vendor, device) QEMU gave the NIC, read over QMP; None if QEMU is already gone."""
        from qemu.qmp import QMPError

        deadline = time.monotonic() + timeout
        try:
            q = Qmp(self.qmp_path, deadline, self.alive)
        except (TimeoutError, OSError, EOFError, QMPError):
            return None
        try:
            for bus in q.command("query-pci"):
                for dev in bus.get("devices", []):
                    if dev.get("qdev_id") == "nic0":
                        self.nic_ids = (dev["id"]["vendor"], dev["id"]["device"])
                        return self.nic_ids
        except (TimeoutError, OSError, EOFError, QMPError, ValueError, KeyError):
            return None
        finally:
            q.close()
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read_stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                self.stderr_text = f.read().decode(errors="replace").strip()
        except OSError:
            pass
        return self.stderr_text

    def qemu_error(self) -> str:
        """QEMU's own complaint (its last stderr line), if it wrote one."""
        text = self._read_stderr() if os.path.exists(self.stderr_path) else self.stderr_text
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def stop(self) -> None:
        """Stop QEMU (SIGKILL: nothing in the guest needs a clean shutdown) and reap it."""
        p = self.proc
        if p is not None:
            self.exit_code = stop(p)
            if self._reader is not None:
                self._reader.join(timeout=5)
            if p.stdout:
                p.stdout.close()
            self._read_stderr()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Qemu":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def terminate_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so every ``with Qemu(...)`` unwinds and cleans up."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
