"""Run QEMU with one NIC carrying an option ROM, and watch its serial console.

This is the runner behind ``romlab boot`` and ``romlab bench firmware``. It starts
``qemu-system-x86_64`` (TCG unless asked otherwise: nested KVM on the machines romlab
targets dies in the mode-switch code option ROMs are made of), reads the serial
console on a thread into a :class:`romlab.console.Console`, asks QEMU over QMP for the
PCI IDs it really gave the NIC, and makes sure no QEMU outlives the run: the child
gets SIGKILL when romlab dies (PR_SET_PDEATHSIG) and :meth:`Qemu.stop` always reaps it.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from romlab.lab.console import Console
from romtools.errors import RomError

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

PR_SET_PDEATHSIG = 1


def find_qemu() -> str:
    path = shutil.which("qemu-system-x86_64")
    if not path:
        raise RomError("qemu-system-x86_64 is not installed; install Debian's qemu-system-x86 "
                       "(scripts/setup.sh does)")
    return path


def nic_device(spec: str) -> tuple[str, dict[str, str]]:
    """``MODEL[,prop=value...]`` -> QEMU device name and properties (aliases resolved)."""
    model, *rest = spec.split(",")
    model = model.strip()
    if not model:
        raise RomError(f"--nic {spec!r}: give a QEMU NIC model such as e1000, e1000e, rtl8139 or virtio-net")
    props: dict[str, str] = {}
    if model in NIC_ALIASES:
        model, base = NIC_ALIASES[model]
        props.update(base)
    for item in rest:
        if "=" not in item:
            raise RomError(f"--nic {spec!r}: {item!r} is not prop=value")
        k, v = item.split("=", 1)
        props[k] = v
    return model, props


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when romlab goes away, however it goes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def kvm_usable() -> bool:
    """Whether /dev/kvm can be opened; it says nothing about KVM running ROM code well."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


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
    nic: str
    rom: str | None
    firmware: str = "seabios"
    netdev: Netdev = field(default_factory=Netdev)
    accel: str = "tcg"
    memory: int = 256
    mac: str | None = None


class Qmp:
    """The few QMP commands romlab needs, over QEMU's unix socket."""

    def __init__(self, path: str, deadline: float, alive=lambda: True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline or not alive():
                    self.sock.close()
                    raise TimeoutError("QEMU did not open its QMP socket") from None
                time.sleep(0.05)
        self.sock.settimeout(max(1.0, deadline - time.monotonic()))
        self.buf = b""
        self._read()  # greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QEMU closed its QMP socket")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name: str, **arguments) -> object:
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error'].get('desc')}")
            return reply.get("return")

    def close(self) -> None:
        self.sock.close()


class Qemu:
    """One QEMU process. Use as a context manager; leaving it always stops QEMU."""

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
            raise RomError(f"--firmware {m.firmware!r}: choose one of {', '.join(FIRMWARES)}")
        model, props = nic_device(m.nic)
        dev = [model, "id=nic0", "netdev=n0"]
        if m.rom is not None:
            dev.append(f"romfile={m.rom}")
        if m.mac:
            dev.append(f"mac={m.mac}")
        dev += [f"{k}={v}" for k, v in props.items()]
        if m.accel not in ("tcg", "kvm"):
            raise RomError(f"--accel {m.accel!r}: choose tcg or kvm")
        cmd = [find_qemu(), "-accel", m.accel, "-machine", "pc", "-m", str(m.memory),
               "-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
               "-device", ",".join(dev), "-netdev", m.netdev.arg("n0"), "-boot", "n"]
        if m.firmware == "ovmf":
            for path in (OVMF_CODE, OVMF_VARS):
                if not os.path.exists(path):
                    raise RomError(f"{path} is missing; install Debian's ovmf package (scripts/setup.sh does)")
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
        cmd = self.command_line()
        if self.machine.rom and not os.path.isfile(self.machine.rom):
            raise RomError(f"{self.machine.rom}: no such ROM file")
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                         preexec_fn=_die_with_parent, cwd=self.workdir)
        except OSError as exc:
            raise RomError(f"cannot start QEMU: {exc.strerror or exc}") from None
        finally:
            err.close()
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
        deadline = time.monotonic() + timeout
        try:
            q = Qmp(self.qmp_path, deadline, self.alive)
        except (TimeoutError, OSError, ConnectionError):
            return None
        try:
            for bus in q.command("query-pci"):
                for dev in bus.get("devices", []):
                    if dev.get("qdev_id") == "nic0":
                        self.nic_ids = (dev["id"]["vendor"], dev["id"]["device"])
                        return self.nic_ids
        except (OSError, ConnectionError, RuntimeError, ValueError):
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
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.exit_code = p.returncode
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
