"""Boot one NIC with one option ROM and say how far it got.

A boot has a *goal*: the ROM ran (the firmware passed the boot to it), an NBP was
downloaded and started, or an iPXE script ran to its end. :func:`boot` starts QEMU,
feeds the serial console into a :class:`romlab.lab.console.Console`, and watches for the goal
or for the end of hope: the firmware giving up ("No bootable device"), an NBP that could
not be fetched or run, QEMU dying, or the time limit. A ROM the firmware never ran is
checked against the PCI IDs QEMU reports for the device (SeaBIOS runs a legacy image only
when its PCIR vendor/device match the device), so a skip is named with both ID pairs.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from hw.errors import LabError
from romlab.lab.bootnet import DnsmasqNet, SlirpNet
from romlab.lab.console import Console
from romlab.lab.http import LabHttp, ScriptRequest
from romlab.lab.qemu import Machine, Qemu

GOALS = ("rom", "nbp", "script")
CODE_TYPE_FOR = {"seabios": 0, "ovmf": 3}
NBP_QUIET_SECONDS = 5.0


@dataclass
class RomImage:
    index: int
    offset: int
    code_type: int | None
    vendor: int | None
    device: int | None
    ipxe: bool

    def as_dict(self) -> dict:
        from romlab.conventions import hexid, pci_id

        return {"index": self.index, "offset": self.offset, "code_type": hexid(self.code_type, 2),
                "id": pci_id(self.vendor, self.device), "ipxe": self.ipxe}


def rom_images(path: str) -> list[RomImage]:
    from romtools.walker import read_input, walk

    w = walk(read_input(path))
    out = []
    for img in w.images:
        pcir = img.pcir
        out.append(RomImage(img.index, img.offset, img.code_type, pcir.vendor_id if pcir is not None else None,
                            pcir.device_id if pcir is not None else None, img.ipxe is not None))
    if not out:
        raise LabError(f"{path}: no option ROM image found (no 55 AA signature at 0)")
    return out


def is_ipxe(images: list[RomImage]) -> bool:
    return any(i.ipxe for i in images)


def skip_reason(images: list[RomImage], ids: tuple[int, int] | None, firmware: str) -> str | None:
    """Why the firmware would not run any image of this ROM on a device with ``ids``; None if one fits."""
    want = CODE_TYPE_FOR[firmware]
    kind = "x86 legacy (code type 0)" if want == 0 else "EFI (code type 3)"
    typed = [i for i in images if i.code_type == want]
    if not typed:
        return f"the ROM has no {kind} image for {'SeaBIOS' if want == 0 else 'OVMF'} to run"
    if ids is None:
        return None
    if any((i.vendor, i.device) == ids for i in typed):
        return None
    pcirs = ", ".join(sorted({f"{i.vendor:04x}:{i.device:04x}" for i in typed}))
    return (f"the firmware skipped the ROM: its {kind} image's PCIR says {pcirs} but the device is "
            f"{ids[0]:04x}:{ids[1]:04x}")


@dataclass
class BootResult:
    goal: str
    reached: bool
    state: str  # reached, skipped, failed, hung, stopped
    message: str
    seconds: float
    device_ids: tuple[int, int] | None
    images: list[RomImage]
    events: list = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    console: str = ""
    dhcp_log: list[str] = field(default_factory=list)
    http: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        from romlab.conventions import pci_id

        return {"goal": self.goal, "reached": self.reached, "state": self.state, "message": self.message,
                "elapsed_s": round(self.seconds, 3),
                "id": None if self.device_ids is None else pci_id(*self.device_ids),
                "rom_images": [i.as_dict() for i in self.images],
                "events": [e.as_dict() for e in self.events], "console_tail": self.tail,
                "dhcp_log": self.dhcp_log, "http": self.http}


def script_wrapper(req: ScriptRequest) -> str:
    """Run the user's script, then tell the server how it ended (the script's own exit status)."""
    return ("#!ipxe\n"
            "chain user.ipxe && goto romlab_ok || goto romlab_fail\n"
            ":romlab_ok\n"
            "imgfetch status/ok ||\n"
            "exit 0\n"
            ":romlab_fail\n"
            "imgfetch status/failed?errno=${errno} ||\n"
            "exit 1\n").replace("user.ipxe", f"{req.base}/file/user.ipxe").replace(
                "status/", f"{req.base}/status/")


class _Watch:
    """Decides, from the console and the HTTP server, whether the boot is over and how."""

    def __init__(self, goal: str, firmware: str, nbp_name: str | None, expect: str | None,
                 http: LabHttp | None):
        self.goal, self.firmware, self.nbp_name, self.expect, self.http = goal, firmware, nbp_name, expect, http
        self.nbp_fetched_at: float | None = None  # console line count when the NBP arrived
        self.nbp_fetched_t: float | None = None
        self.rom_ran_t: float | None = None
        self.verdict: tuple[str, str] | None = None  # (state, message)

    def _rom_ran(self, c: Console) -> bool:
        if self.firmware == "seabios":
            banner = c.first("rom_banner")
            entry = [e for e in c.find("boot_entry") if banner is None or e.t >= banner.t]
            return bool(c.find("ipxe_start") or (banner is not None and entry))
        return bool(c.find("ipxe_init") or c.find("ipxe_version") or c.find("pxe_start"))

    def check(self, c: Console) -> bool:
        if self.verdict:
            return True
        expect_ok = self.expect is None or self.expect in c.text()
        if self.goal == "rom":
            if self._rom_ran(c) and self.rom_ran_t is None:
                self.rom_ran_t = time.monotonic()
            if self.rom_ran_t is not None and expect_ok:
                # Give the ROM a moment to show its network progress before calling it done.
                dhcp_failed = [e for e in c.find("dhcp") if not e.facts.get("result", "").startswith("ok")]
                settled = dhcp_failed or c.find("address") or c.find("pxe_station") or c.find("pxe_error") \
                    or c.find("no_boot") or time.monotonic() - self.rom_ran_t > 20
                if settled:
                    self.verdict = ("reached", "the firmware ran the ROM" + self._net_summary(c))
                    return True
        elif self.goal == "nbp":
            if self.nbp_fetched_at is None:
                for e in c.find("fetch"):
                    if e.facts.get("uri", "").rsplit("/", 1)[-1] == self.nbp_name:
                        if e.facts.get("result", "").startswith("ok"):
                            self.nbp_fetched_at = len(c.lines)
                            self.nbp_fetched_t = time.monotonic()
                        else:
                            self.verdict = ("failed", f"the NBP {self.nbp_name} could not be fetched: "
                                            f"{e.facts.get('result')}")
                            return True
                if c.find("pxe_nbp_ok"):
                    self.nbp_fetched_at, self.nbp_fetched_t = len(c.lines), time.monotonic()
            if self.nbp_fetched_at is not None:
                after = [t for _, t in c.lines[self.nbp_fetched_at:]]
                for line in after:
                    if "Could not boot" in line or "Exec format error" in line:
                        self.verdict = ("failed", f"the NBP {self.nbp_name} was fetched but did not run: {line.strip()}")
                        return True
                if self.expect is not None:
                    if self.expect in "\n".join(after):
                        self.verdict = ("reached", f"the NBP {self.nbp_name} ran and printed {self.expect!r}")
                        return True
                elif [x for x in after if not x.startswith(f"{self.nbp_name} :")]:
                    self.verdict = ("reached", f"the NBP {self.nbp_name} was fetched and started")
                    return True
                elif time.monotonic() - self.nbp_fetched_t > NBP_QUIET_SECONDS:
                    self.verdict = ("reached", f"the NBP {self.nbp_name} was fetched and started "
                                    f"(it printed nothing in {NBP_QUIET_SECONDS:g} s)")
                    return True
        elif self.goal == "script" and self.http is not None:
            if self.http.requested("/status/ok") and expect_ok:
                self.verdict = ("reached", "the script ran to its end")
                return True
            failed = self.http.requested("/status/failed")
            if failed:
                errno = failed[0].query.get("errno", "?").removeprefix("0x")
                self.verdict = ("failed", f"the script failed with iPXE error {errno} "
                                f"(https://ipxe.org/{errno})")
                return True
        nb = c.find("no_boot")
        if nb:
            self.verdict = ("no_boot", nb[0].line.strip())
            return True
        return False

    @staticmethod
    def _net_summary(c: Console) -> str:
        parts = []
        nd = c.find("netdev")
        if nd:
            parts.append(f"{nd[-1].facts['ifname']} uses driver {nd[-1].facts['chip']}")
        addr = c.find("address") or c.find("pxe_station")
        if addr:
            parts.append(f"got {addr[-1].facts['ip']} by DHCP")
        return ": " + ", ".join(parts) if parts else ""


def boot(*, nic: str, rom: str | None, firmware: str = "seabios", nbp: str | None = None,
         script: str | None = None, timeout: float = 120.0, accel: str = "tcg", dhcp: str = "auto",
         expect: str | None = None, memory: int | None = None, on_event=None) -> BootResult:
    """Boot and return what happened. Raises RomlabError only for unusable input (exit 2)."""
    if nbp and script:
        raise LabError("give --nbp or --script, not both")
    if rom and not os.path.isfile(rom):
        raise LabError(f"{rom}: no such ROM file")
    if nbp and not os.path.isfile(nbp):
        raise LabError(f"{nbp}: no such NBP file (the file to hand out over TFTP)")
    if script and not os.path.isfile(script):
        raise LabError(f"{script}: no such iPXE script")
    if firmware not in CODE_TYPE_FOR:
        raise LabError(f"--firmware {firmware!r}: choose seabios or ovmf")
    images = rom_images(rom) if rom else []
    ipxe_rom = is_ipxe(images)
    goal = "script" if script else "nbp" if nbp else "rom"
    if dhcp == "auto":
        dhcp = "dnsmasq" if script and not ipxe_rom else "slirp"
    if dhcp == "slirp" and script and not ipxe_rom:
        raise LabError("this ROM is not iPXE, so it cannot fetch an iPXE script from QEMU's built-in DHCP; "
                       "use --dhcp dnsmasq (as root), which hands it undionly.kpxe first")

    with contextlib.ExitStack() as stack:
        work = tempfile.mkdtemp(prefix="romlab-boot-")
        stack.callback(shutil.rmtree, work, True)
        net = stack.enter_context(DnsmasqNet() if dhcp == "dnsmasq" else SlirpNet())
        http = None
        tftp_dir = None
        nbp_name = None
        if nbp:
            tftp_dir = os.path.join(work, "tftp")
            os.mkdir(tftp_dir)
            nbp_name = os.path.basename(nbp)
            shutil.copyfile(nbp, os.path.join(tftp_dir, nbp_name))
        ipxe_url = None
        if script:
            files = {"user.ipxe": script}
            if not ipxe_rom:
                # A PXE client that is not iPXE first gets iPXE that uses the firmware's own
                # network interface (UNDI under BIOS, SNP under UEFI), then the script.
                tftp_dir = os.path.join(work, "tftp")
                os.mkdir(tftp_dir)
                chain = UNDIONLY if firmware == "seabios" else SNPONLY
                nbp_name = os.path.basename(chain)
                shutil.copyfile(chain, os.path.join(tftp_dir, nbp_name))
            http = LabHttp(net.http_socket(), files=files, planner=script_wrapper)
            stack.enter_context(http)
            ipxe_url = f"http://{net.guest_host}:{http.address[1]}/boot.ipxe"
        net.configure(ipxe_url=ipxe_url, nbp=nbp_name, tftp_dir=tftp_dir, ipxe_rom=ipxe_rom)
        machine = Machine(nic=nic, rom=rom, firmware=firmware, netdev=net.netdev(), accel=accel,
                          memory=memory or (512 if firmware == "ovmf" else 256))
        qemu = Qemu(machine, workdir=os.path.join(work, "qemu"))
        os.mkdir(qemu.workdir)
        stack.callback(qemu.stop)
        qemu.start()
        if http is not None:
            http.on_hit = lambda hit: qemu.console.notify()
        ids = qemu.query_nic_ids()
        if ids is None:
            with contextlib.suppress(Exception):
                qemu.proc.wait(timeout=2)
        if ids is None and not qemu.alive():
            qemu.stop()
            raise LabError(f"QEMU did not start: {qemu.qemu_error() or 'it exited at once'}")
        watch = _Watch(goal, firmware, nbp_name, expect, http)
        t0 = time.monotonic()
        reported = 0
        while True:
            qemu.console.wait(watch.check, min(1.0, max(0.0, t0 + timeout - time.monotonic())))
            if on_event:
                evs = qemu.console.events
                for e in evs[reported:]:
                    on_event(e)
                reported = len(evs)
            if watch.verdict or not qemu.alive() or time.monotonic() - t0 >= timeout:
                break
        elapsed = time.monotonic() - t0
        c = qemu.console
        if watch.verdict and watch.verdict[0] == "reached":
            state, message = watch.verdict
        else:
            state, message = _failure(watch, qemu, c, images, ids, firmware, timeout, elapsed)
        qemu.stop()
        if on_event:
            for e in c.events[reported:]:
                on_event(e)
        return BootResult(goal=goal, reached=state == "reached", state=state, message=message, seconds=elapsed,
                          device_ids=ids, images=images, events=list(c.events), tail=c.tail(10),
                          console=c.text(), dhcp_log=net.dhcp_log(),
                          http=[{"path": h.path, "query": h.query, "status": h.status} for h in http.hits]
                          if http else [])


def _failure(watch: _Watch, qemu: Qemu, c: Console, images, ids, firmware: str, timeout: float,
             elapsed: float) -> tuple[str, str]:
    ran = watch._rom_ran(c) or bool(c.find("rom_banner"))
    if watch.verdict and watch.verdict[0] != "no_boot":
        return watch.verdict
    if not ran and images:
        why = skip_reason(images, ids, firmware)
        if why and (watch.verdict or not qemu.alive() or elapsed >= timeout):
            return "skipped", why
    if watch.verdict:  # the firmware or the ROM gave up
        what = {"rom": "the ROM ran", "nbp": "an NBP ran", "script": "the script ran"}[watch.goal]
        if not ran:
            return "failed", f"the firmware never ran the ROM and gave up: {watch.verdict[1]}"
        return "failed", f"the boot ended before {what}: {watch.verdict[1]}"
    if not qemu.alive():
        err = qemu.qemu_error()
        if qemu.proc.returncode not in (0, None) and err:
            return "stopped", f"QEMU failed: {err}"
        return "stopped", "QEMU stopped (the guest reset or powered off) before the goal was reached"
    last = c.tail(1)
    where = f"; last console line: {last[0].strip()!r}" if last else "; the console stayed silent"
    return "hung", f"no result after {timeout:g} s, {hang_stage(c)}{where}"


def hang_stage(c: Console) -> str:
    """How far a boot that hung got, from the last milestone its console showed (shared with the bench)."""
    if c.find("fetch") or c.find("pxe_nbp"):
        return "stuck after a transfer"
    if c.find("netdev") or c.find("dhcp") or c.find("pxe_start"):
        return "stuck in the ROM's network boot"
    if c.find("boot_entry") or c.find("ipxe_start"):
        return "stuck after the firmware passed the boot to the ROM"
    if c.find("rom_banner"):
        return "stuck after the ROM's banner, before the boot entry"
    if c.find("firmware"):
        return "stuck after the firmware started, before any ROM output (a ROM init that never returns?)"
    return "nothing on the console"


UNDIONLY = "/usr/lib/ipxe/undionly.kpxe"
SNPONLY = "/usr/lib/ipxe/snponly.efi"
