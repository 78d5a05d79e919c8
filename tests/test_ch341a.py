"""CH341A: the wire format, and romlab's client against the device end through an in-memory link.

The byte values are worked out by hand from the protocol facts (flashrom's
ch341a_spi and the reference notes): 0x80|0x37 = 0xB7 (CS# high), 0x80|0x36 = 0xB6
(CS# low), 0x40|0x3F = 0x7F (pins out), RDID 0x9F bit-reversed = 0xF9. The
client and the device end meet over a real USB bus, with Debian's flashrom as
the independent host, in tests/test_flash_vm.py; here the link between them
is a queue, to check the framing and the flash semantics quickly.
"""
from __future__ import annotations

import queue
import random

from conftest import run_romlab

from romtools.flash import ch341a as proto
from romtools.flash import chips, writer
from romtools.flash.programmers.ch341a import Ch341aError, Ch341aProgrammer
from romtools.flash.sim.ch341a import Ch341aDevice
from romtools.flash.sim.chip import SimChip
from romtools.flash.spinor import SpiNor


def test_wire_format():
    assert proto.init_packets() == [bytes.fromhex("aa6100"), bytes.fromhex("abb77f20")]
    assert proto.disable_packet() == bytes.fromhex("abb74020")
    out = proto.transaction(b"\x9f", 3)
    assert out == bytes.fromhex("abb7b7b7b620") + bytes(26) + bytes.fromhex("a8f9ffffff")
    # 40 command bytes + 5 to read: 45 streamed bytes = one full A8 packet (31) and one of 14.
    out = proto.transaction(bytes(range(40)), 5)
    assert len(out) == 32 + 32 + 15
    assert out[32] == 0xA8 and out[33] == 0x00 and out[34] == 0x80 and out[35] == 0x40   # 0, 1, 2 reversed
    assert out[64] == 0xA8 and out[-5:] == b"\xff" * 5
    assert proto.REVERSE[0x01] == 0x80 and proto.REVERSE[0xF0] == 0x0F


class QueueLink:
    """OUT transfers go to the device end packet by packet; its answers wait in a queue."""

    def __init__(self, device):
        self.device = device
        self.answers: queue.Queue = queue.Queue()
        self.transfers = []

    def write(self, data: bytes) -> int:
        self.transfers.append(bytes(data))
        for answer in self.device.packets(bytes(data)):
            self.answers.put(answer)
        return len(data)

    def read(self, size: int) -> bytes:
        assert size % 32 == 0                 # whole packets only
        try:
            return self.answers.get(timeout=2)
        except queue.Empty:
            raise Ch341aError("time-out") from None

    def describe(self) -> str:
        return "queue"

    def close(self) -> None:
        self.closed = True


def test_client_and_device_end_flash_a_chip():
    part = chips.by_name("W25X10")
    old = random.Random(1).randbytes(part.size)
    sim = SimChip(part, bytearray(old))
    dev = Ch341aDevice(sim)
    link = QueueLink(dev)
    prog = Ch341aProgrammer(link)
    assert link.transfers[:2] == proto.init_packets()
    nor = SpiNor(prog)
    assert nor.identify().jedec_hex == "ef3011"
    assert writer.stable_read(nor, 0, part.size) == old
    new = bytearray(old)
    new[0x3000:0x4000] = random.Random(2).randbytes(4096)
    writer.write(nor, old, bytes(new))
    assert writer.verify(nor, bytes(new)) == [] and bytes(sim.mem) == bytes(new)
    # An erase starts when CS# rises, i.e. at the next command's pluck, as on the real chip.
    erases = sim.stats["erases"]
    prog.transfer(b"\x06")
    prog.transfer(b"\x20\x00\x00\x00")
    assert sim.stats["erases"] == erases
    prog.transfer(b"\x05", 1)
    assert sim.stats["erases"] == erases + 1
    prog.close()
    assert link.transfers[-1] == proto.disable_packet() and not dev.cs_selected and link.closed


def test_no_ch341a_is_a_one_line_error(tmp_path):
    # This machine has no CH341A on its USB buses: pyusb finds none.
    r = run_romlab("flash", "--programmer", "ch341a", "--read", str(tmp_path / "x.bin"))
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1
    assert err.startswith("romlab flash: error: ") and "no CH341A (USB 1a86:5512)" in err
    assert not (tmp_path / "x.bin").exists()
