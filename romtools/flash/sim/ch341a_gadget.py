"""A CH341A that the kernel sees as a real USB device, through a gadget controller and GadgetFS.

On a machine with a USB device controller (a UDC: a board's OTG port, or the
``dummy_hcd`` module, which joins a virtual controller to a virtual host port
on the same machine), this makes a USB device with the CH341A's descriptors
(1a86:5512, class 0xff, vendor-specific interface 0 with bulk IN 0x82, bulk
OUT 0x02 and interrupt IN 0x81, 32-byte bulk packets at full speed) whose
protocol end is ``sim.ch341a.Ch341aDevice`` and whose flash is the chip model
(``sim.chip.SimChip``) over an image file. Unmodified hosts, flashrom's
``-p ch341a_spi`` included, drive it through libusb.

GadgetFS rather than FunctionFS: the host must see endpoints 0x82 and 0x02,
which flashrom hard-codes. FunctionFS lets the controller pick endpoints (on
dummy_udc the first bulk IN is number 1) and its FUNCTIONFS_VIRTUAL_ADDR
remapping fails in Linux 6.1 when the numbers differ (config_ep_by_speed
compares them), so the device never gets configured. GadgetFS opens the
controller's endpoints by name (``ep2in-bulk``, ``ep2out-bulk``) and serves
our descriptors unchanged.

The OUT endpoint is read one USB packet at a time (a read the size of the
endpoint's max packet completes with each packet, so a transfer that ends on a
packet boundary cannot leave data waiting); each packet is cut into the 32-byte
CH341A packets it carries (one at full speed, up to sixteen at high speed) and
handled as the chip handles them. Answers are queued to a writer thread so a
host that writes a long command before reading (or reads while writing, as
flashrom does) never stalls the emulator.

Speed: the real CH341A is a full-speed device, and so is this one on a
full-speed controller. On dummy_hcd under an emulated CPU, full speed is too
slow for flashrom: dummy_hcd moves one packet per queued request per timer
tick (4 ms at HZ=250), and a 4 KiB read is 135 packets, past flashrom's 1 s USB
time-out. At high speed (dummy_hcd's default) each packet carries up to sixteen
CH341A packets; the descriptors then say 512-byte bulk packets, everything else
is the same.

Run (root, ``modprobe dummy_hcd; modprobe gadgetfs``):
``python -m romtools.flash.sim.ch341a_gadget --image chip.bin [--chip W25X10]
[--stats FILE]``; it serves until SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from hw.errors import FlashError, RomlabError
from romtools.flash import ch341a as proto
from romtools.flash import chips as chipdb
from romtools.flash.sim.ch341a import Ch341aDevice
from romtools.flash.sim.chip import SimChip

GADGETFS = Path("/dev/gadget")
# linux/usb/gadgetfs.h: struct usb_gadgetfs_event is 8 bytes of union + a 4-byte type
EVENT_SIZE = 12
EV_NOP, EV_CONNECT, EV_DISCONNECT, EV_SETUP, EV_SUSPEND = range(5)
REQ_SET_CONFIGURATION, REQ_SET_INTERFACE = 9, 11
EP_IN_NAME, EP_OUT_NAME = "ep2in-bulk", "ep2out-bulk"


def _endpoint(addr: int, attrs: int, size: int, interval: int) -> bytes:
    return struct.pack("<BBBBHB", 7, 5, addr, attrs, size, interval)


def config_descriptor(high_speed: bool) -> bytes:
    """Configuration 1 of a CH341A: one vendor-specific interface, three endpoints."""
    bulk = 512 if high_speed else 32
    body = (struct.pack("<9B", 9, 4, 0, 0, 3, 0xFF, 0x01, 0x02, 0)
            + _endpoint(proto.EP_IN, 2, bulk, 0) + _endpoint(proto.EP_OUT, 2, bulk, 0)
            + _endpoint(0x81, 3, 8, 4 if high_speed else 1))
    return struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0x80, 0x30) + body


def device_descriptor() -> bytes:
    return struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0110, 0xFF, 0, 0, 8, proto.VID, proto.PID, 0x0304,
                       0, 0, 0, 1)


def gadget_setup() -> bytes:
    """What GadgetFS takes on the controller file: tag 0, FS config, HS config, device descriptor."""
    return struct.pack("<I", 0) + config_descriptor(False) + config_descriptor(True) + device_descriptor()


def endpoint_setup(addr: int) -> bytes:
    """Tag 1, the full-speed then the high-speed descriptor of one bulk endpoint."""
    return struct.pack("<I", 1) + _endpoint(addr, 2, 32, 0) + _endpoint(addr, 2, 512, 0)


class Emulator:
    """Serves a CH341A over GadgetFS until closed."""

    def __init__(self, image: str, chip_name: str | None):
        fd = os.open(image, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            part = chipdb.by_name(chip_name) if chip_name else chipdb.default_for_size(size)
            if part is None or part.size != size:
                raise FlashError(f"{image} is {size} bytes; give a chip image of a known size or --chip")
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.sim = SimChip(part, self.map, timing="fast")
        self.device = Ch341aDevice(self.sim)
        self.stop = threading.Event()
        self.answers: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self.mounted = False
        self.io_started = False
        self.read_size = 32
        self.events: list[str] = []

    def start(self) -> None:
        if not GADGETFS.is_dir():
            GADGETFS.mkdir()
        if not any(GADGETFS.iterdir()):
            m = subprocess.run(["mount", "-t", "gadgetfs", "gadgetfs", str(GADGETFS)], capture_output=True,
                               text=True)
            if m.returncode != 0:
                raise FlashError(f"mounting GadgetFS failed: {m.stderr.strip()} (modprobe gadgetfs)")
            self.mounted = True
        controllers = [p for p in GADGETFS.iterdir() if not p.name.startswith("ep")]
        if not controllers:
            raise FlashError("GadgetFS shows no USB device controller: load dummy_hcd (modprobe dummy_hcd) "
                           "or use a board with a device port")
        self.controller = controllers[0].name
        self.ep0 = os.open(controllers[0], os.O_RDWR)
        os.write(self.ep0, gadget_setup())
        threading.Thread(target=self._events, daemon=True).start()

    def _configure(self) -> None:
        if self.io_started:
            return
        self.ep_in = os.open(GADGETFS / EP_IN_NAME, os.O_RDWR)
        os.write(self.ep_in, endpoint_setup(proto.EP_IN))
        self.ep_out = os.open(GADGETFS / EP_OUT_NAME, os.O_RDWR)
        os.write(self.ep_out, endpoint_setup(proto.EP_OUT))
        for fn in (self._reader, self._writer):
            threading.Thread(target=fn, daemon=True).start()
        self.io_started = True

    def _events(self) -> None:
        """ep0: enumeration is answered by the kernel; SET_CONFIGURATION and strays come here."""
        while not self.stop.is_set():
            try:
                ev = os.read(self.ep0, EVENT_SIZE)
            except OSError:
                time.sleep(0.05)
                continue
            if len(ev) < EVENT_SIZE:
                continue
            kind = struct.unpack_from("<I", ev, 8)[0]
            self.events.append(str(kind))
            if kind == EV_CONNECT:
                speed = struct.unpack_from("<I", ev, 0)[0]     # enum usb_device_speed: 2 full, 3 high
                self.read_size = 512 if speed >= 3 else 32
                self.speed = speed
            if kind != EV_SETUP:
                continue
            req_type, req = ev[0], ev[1]
            value = struct.unpack_from("<H", ev, 2)[0]
            try:
                if req_type == 0x00 and req == REQ_SET_CONFIGURATION:
                    if value == 1:
                        self._configure()
                    os.read(self.ep0, 0)                  # acknowledge
                elif req_type == 0x01 and req == REQ_SET_INTERFACE and value == 0:
                    os.read(self.ep0, 0)
                elif req_type & 0x80:
                    os.read(self.ep0, 0)                  # stall an IN request
                else:
                    os.write(self.ep0, b"")               # stall an OUT request
            except OSError as exc:
                if exc.errno != 51:                      # EL2HLT: the stall was delivered
                    self.errors.append(f"ep0: {exc}")
            except Exception as exc:
                self.errors.append(f"ep0: {exc!r}")

    def _reader(self) -> None:
        while not self.stop.is_set():
            try:
                packet = os.read(self.ep_out, self.read_size)
            except OSError:
                time.sleep(0.01)            # the host went away or reconfigured
                continue
            try:
                for answer in self.device.packets(packet):
                    self.answers.put(answer)
            except Exception as exc:         # a bug: note it and keep the device alive
                self.errors.append(repr(exc))

    def _writer(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.answers.get(timeout=0.2)
            except queue.Empty:
                continue
            while not self.stop.is_set():
                try:
                    os.write(self.ep_in, answer)
                    break
                except OSError:
                    time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        for fd in ("ep_in", "ep_out", "ep0"):
            if hasattr(self, fd):
                try:
                    os.close(getattr(self, fd))
                except OSError:
                    pass
        if self.mounted:
            subprocess.run(["umount", str(GADGETFS)], capture_output=True)
        self.map.flush()

    def snapshot(self) -> dict:
        return {"device": dict(self.device.stats), "chip": self.sim.snapshot(), "errors": list(self.errors),
                "events": self.events, "speed": getattr(self, "speed", None)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m romtools.flash.sim.ch341a_gadget",
                                 description="serve a CH341A (1a86:5512) over a USB gadget controller")
    ap.add_argument("--image", required=True)
    ap.add_argument("--chip")
    ap.add_argument("--stats")
    args = ap.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: done.set())
    try:
        emu = Emulator(args.image, args.chip)
        try:
            emu.start()
            print(f"ch341a gadget on {emu.controller}: {emu.sim.chip.name}", flush=True)
            done.wait()
        finally:
            emu.close()
            if args.stats:
                Path(args.stats).write_text(json.dumps(emu.snapshot(), indent=1))
    except RomlabError as exc:
        print(f"ch341a gadget: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
