"""``ch341a``: a CH341A USB programmer (1a86:5512) through pyusb.

The protocol is in ``romtools.flash.ch341a``. Each SPI command is one OUT
transfer; its answers come back as one short IN packet per 31 bytes streamed.
The OUT transfer is written from a helper thread while this thread reads the
answers, as flashrom does with its queued transfers: the chip's buffers are
small, and waiting for a long OUT transfer to finish before reading could stall
both sides. Every USB call has a one-second time-out.

Hardware warning (the reason ``docs/flashing.md`` repeats it): the common black
CH341A board drives its data lines at 5 V; 1.8 V flash chips need an adapter.
"""
from __future__ import annotations

import errno
import threading

from hw.errors import FlashError, RomlabError
from romtools.flash import ch341a as proto
from romtools.flash.programmers.base import Programmer


class Ch341aError(FlashError):
    pass


class PyUsbLink:
    """Bulk endpoints of the first CH341A pyusb finds (interface 0 claimed).

    One bulk write carries a whole SPI transaction (up to about 4 KiB), which a real CH341A takes in
    a few milliseconds; the timeout only decides how soon an unresponsive programmer is reported.
    It is 5 s, not 1 s, because a programmer that is itself a program (the CH341A gadget romlab's
    tests run beside the client in a TCG guest on a loaded host) can need over a second to drain one."""

    def __init__(self, timeout_ms: int = 5000):
        try:
            import usb.core
            import usb.util
        except ImportError:
            raise Ch341aError("pyusb is not installed (pip install pyusb)") from None
        self.usb = usb
        self.timeout = timeout_ms
        self.detached = False
        try:
            self.dev = usb.core.find(idVendor=proto.VID, idProduct=proto.PID)
        except usb.core.NoBackendError:
            raise Ch341aError("no libusb backend for pyusb (Debian package libusb-1.0-0)") from None
        if self.dev is None:
            raise Ch341aError("no CH341A (USB 1a86:5512) found; check the cable and `lsusb`")
        try:
            try:
                self.dev.get_active_configuration()
            except usb.core.USBError:
                self.dev.set_configuration()
            if self.dev.is_kernel_driver_active(0):
                self.dev.detach_kernel_driver(0)
                self.detached = True
            usb.util.claim_interface(self.dev, 0)
        except usb.core.USBError as exc:
            self.close()
            raise self.error(exc, "opening") from None

    def error(self, exc, what: str) -> Ch341aError:
        code = getattr(exc, "errno", None)
        if code in (errno.EACCES, errno.EPERM):
            return Ch341aError(f"permission denied {what} the CH341A; run as root or add a udev rule for "
                               "1a86:5512")
        if code == errno.ETIMEDOUT or "timed out" in str(exc).lower():
            return Ch341aError(f"the CH341A did not answer while {what} it (USB time-out); replug it, use a "
                               "short cable")
        if code == errno.ENODEV:
            return Ch341aError(f"the CH341A went away while {what} it")
        return Ch341aError(f"USB error while {what} the CH341A: {exc}")

    def write(self, data: bytes) -> int:
        try:
            return self.dev.write(proto.EP_OUT, data, self.timeout)
        except self.usb.core.USBError as exc:
            raise self.error(exc, "writing to") from None

    def read(self, size: int) -> bytes:
        try:
            return bytes(self.dev.read(proto.EP_IN, size, self.timeout))
        except self.usb.core.USBError as exc:
            raise self.error(exc, "reading from") from None

    def describe(self) -> str:
        return f"USB bus {self.dev.bus} device {self.dev.address}"

    def close(self) -> None:
        dev, self.dev = getattr(self, "dev", None), None
        if dev is None:
            return
        try:
            self.usb.util.release_interface(dev, 0)
            if self.detached:
                dev.attach_kernel_driver(0)
        except Exception:
            pass
        try:
            self.usb.util.dispose_resources(dev)
        except Exception:
            pass


class Ch341aProgrammer(Programmer):
    name = "ch341a"
    max_read = 4096
    max_write = 4096

    def __init__(self, link=None):
        self.link = link if link is not None else PyUsbLink()
        try:
            for packet in proto.init_packets():
                self._write(packet)
        except BaseException:
            self.link.close()
            raise

    def _write(self, data: bytes) -> None:
        done = self.link.write(data)
        if done != len(data):
            raise Ch341aError(f"the CH341A took {done} of {len(data)} bytes")

    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        if self.link is None:
            raise Ch341aError("the CH341A programmer is closed")
        out = proto.transaction(mosi, nread)
        need = proto.answer_length(len(mosi), nread)
        failure: list = []

        def send():
            try:
                self._write(out)
            except BaseException as exc:        # reported by the reading side
                failure.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = bytearray()
        try:
            while len(answer) < need and not failure:
                want = -(-(need - len(answer)) // proto.PACKET) * proto.PACKET   # whole packets: no overflow
                try:
                    answer += self.link.read(want)
                except RomlabError:
                    if failure:
                        break
                    raise
        finally:
            sender.join(timeout=5)
        if failure:
            raise failure[0]
        return bytes(proto.REVERSE[b] for b in answer[len(mosi):need])

    def describe(self) -> str:
        return f"ch341a ({self.link.describe()})"

    def close(self) -> None:
        link, self.link = self.link, None
        if link is None:
            return
        try:
            link.write(proto.disable_packet())
        except RomlabError:
            pass
        finally:
            link.close()
