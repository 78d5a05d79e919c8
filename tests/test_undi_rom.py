"""Debian's iPXE ROMs for e1000 and e1000e, run in drivers/undi's emulated PC against the e1000
register model: init as SeaBIOS runs it, the UNDI loader as iPXE's undiload calls it, then every
UNDI call of undinet's life cycle, one frame each way.

Expected values come from outside romlab: iPXE's romprefix.S banner, pxe_undi.c's answers
(DIX+802.3, 10 Mbit/s, the service flags, MTU 1500, RxBufCt/TxBufCt 1, BaseIo the first I/O BAR,
IntNumber the interrupt line), the PXE 2.1 structure sizes, and values the test itself chose (the
MAC, the frames).
"""
from __future__ import annotations

import os

import pytest

from drivers.intel_model import IntelModel
from drivers.undi import machine as M
from drivers.undi.bios import E820_RESERVED
from drivers.undi.client import UndiClient
from drivers.undi.device import ModelDevice
from drivers.undi.loader import UndiMachine
from romtools import pxe

ROMS = {"e1000": ("/usr/lib/ipxe/qemu/pxe-e1000.rom", 0x100E, False),
        "e1000e": ("/usr/lib/ipxe/qemu/pxe-e1000e.rom", 0x10D3, True)}
MAC = bytes.fromhex("02a1b2c3d4e5")  # locally administered, chosen here
PEER = bytes.fromhex("02ffeeddccbb")
BDF = 0x18  # 00:03.0


@pytest.fixture(scope="module", params=sorted(ROMS))
def undi(request):
    path, device_id, pcie = ROMS[request.param]
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed (Debian package ipxe-qemu)")
    model = IntelModel(device_id=device_id, pcie=pcie, mac=MAC)
    dev = ModelDevice(model, bdf=BDF)
    um = UndiMachine(open(path, "rb").read(), dev)
    um.init_ax = um.run_init()
    um.run_loader()
    client = UndiClient(um, irq_pending=lambda: dev.irq)
    return request.param, um, client, model


def test_init_prints_ipxe_banner_and_uses_pmm(undi):
    _, um, _, _ = undi
    console = um.bios.console.decode("latin-1")
    assert "iPXE (http://ipxe.org) 00:03.0 C800 PCI2.10 PnP PMM" in console
    assert um.bios.calls["int1a/b101"] >= 1  # PCI BIOS installation check
    blocks = um.bios.pmm.blocks
    assert blocks, "init allocated nothing through PMM"
    for addr, size, _ in blocks:
        assert any(base <= addr and addr + size <= base + length and kind == E820_RESERVED
                   for base, length, kind in um.bios.e820), f"PMM block {addr:#x} is not reserved in E820"
    assert f"PMM+{blocks[0][0]:08X}" in console  # the banner names the first block PMM gave


def test_loader_returns_pxe_and_pxenv(undi):
    _, um, _, _ = undi
    assert um.pxe.struct_length == 0x58 and um.pxe.struct_rev == 0
    assert um.pxenv.version == 0x0201 and um.pxenv.length == 0x2C
    # PXENV+ points at the same !PXE the loader returned, and both name the segments it was given.
    loader = pxe.UndiLoader.parse(um.m.read(M.SCRATCH_SEG * 16, pxe.UndiLoader.sizeof()))
    assert pxe.linear(um.pxenv.pxe_ptr) == pxe.linear(loader.pxe_ptr)
    assert (um.pxenv.undi_code_seg, um.pxenv.undi_data_seg) == (um.undi_cs, um.undi_ds)
    assert um.pxe.undi_code.physical_address == um.undi_cs * 16
    assert um.pxe.undi_data.physical_address == um.undi_ds * 16
    assert um.entry[0] == um.undi_cs
    # The base memory taken for them is gone from 40:13.
    assert um.m.u16(0x413) == um.undi_ds >> 6
    assert um.bios.calls.get("int15/e820", 0) >= 1


def pxe_check(um) -> tuple[int, bool, int]:
    """INT 1Ah AX=5650h from real-mode code: (AX, CF, linear ES:BX)."""
    code = bytes.fromhex("b85056 cd1a 9c 5a cb")  # mov ax,5650h; int 1Ah; pushf; pop dx; retf
    um.m.write(M.SCRATCH_SEG * 16 + 0x8000, code)
    um.m.far_call(M.SCRATCH_SEG, 0x8000, timeout=5)
    return um.m.reg("ax"), bool(um.m.reg("dx") & 1), (um.m.reg("es") << 4) + um.m.reg("bx")


def pxenv_at(um) -> int:
    loader = pxe.UndiLoader.parse(um.m.read(M.SCRATCH_SEG * 16, pxe.UndiLoader.sizeof()))
    return pxe.linear(loader.pxenv_ptr)


def test_no_pxe_is_installed_until_start_undi(undi):
    """The emulated BIOS has no PXE stack: 5650h comes back unchanged with CF set."""
    ax, cf, _ = pxe_check(undi[1])
    assert (ax, cf) == (0x5650, True)


def test_undi_life_cycle(undi):
    name, um, c, model = undi
    _, device_id, _ = ROMS[name]
    assert c.start_undi().status == 0
    # START_UNDI activates the stack, which hooks INT 1Ah: 5650h is answered 564Eh, ES:BX at
    # PXENV+ (PXE 2.1; iPXE's pxe_activate), through the IVT vector the ROM changed.
    ax, cf, at = pxe_check(um)
    assert (ax, cf, at) == (0x564E, False, pxenv_at(um)) and um.m.read(at, 6) == b"PXENV+"
    assert c.startup().status == 0
    assert c.initialize().status == 0

    info = c.get_information()
    assert info.status == 0
    assert bytes(info.current_node_address[:6]) == MAC and bytes(info.perm_node_address[:6]) == MAC
    assert (info.hw_type, info.hw_addr_len, info.max_tran_unit) == (pxe.ETHER_TYPE, 6, 1500)
    assert info.base_io == um.bar_addresses[2 if ROMS[name][2] else 1]
    assert info.int_number == 11
    assert (info.rx_buf_ct, info.tx_buf_ct) == (1, 1)

    iface = c.get_iface_info()
    assert iface.status == 0
    assert iface.iface_type.rstrip(b"\0") == b"DIX+802.3" and iface.link_speed == 10_000_000
    base = (pxe.SUPPORTED_BROADCAST | pxe.SUPPORTED_MULTICAST | pxe.SUPPORTED_SET_STATION_ADDRESS
            | pxe.SUPPORTED_RESET | pxe.SUPPORTED_OPEN_CLOSE)
    assert iface.service_flags & base == base

    nic = c.get_nic_type()
    assert nic.status == 0 and nic.nic_type == pxe.PCI_NIC
    assert (nic.info.vendor_id, nic.info.dev_id, nic.info.bus_dev_func) == (0x8086, device_id, BDF)
    assert (nic.info.base_class, nic.info.sub_class, nic.info.prog_intf) == (0x02, 0x00, 0x00)

    assert c.set_station_address(MAC, check=True).status == 0
    assert c.call(pxe.UNDI_OPEN, pkt_filter=7).status == 0

    # One IP frame out: undinet strips the header, the UNDI rebuilds it with its own MAC as source.
    payload = bytes((i * 7 + 3) & 0xFF for i in range(100))
    frame = PEER + MAC + b"\x08\x00" + payload
    assert c.transmit(frame).status == 0
    assert list(model.tx_frames) == [frame]
    # A short frame of an unknown protocol, sent whole (P_UNKNOWN) and gathered from the immediate
    # buffer and one DATABLK: padded to 60 bytes on the wire.
    short = PEER + MAC + b"\x88\xb5" + b"romlab-datablk-test" + bytes(range(20))
    assert c.transmit(short, data_block=True).status == 0
    assert model.tx_frames[1] == short.ljust(60, b"\0")
    c.poll()  # the transmit completions

    # One frame in, addressed to us.
    incoming = MAC + PEER + b"\x88\xb5" + bytes((i * 13 + 1) & 0xFF for i in range(200))
    model.inject(incoming)
    assert c.poll() == [incoming]
    assert c.poll() == [] and c.rx_errors == 0

    stats = c.get_statistics()
    assert stats.status == 0 and (stats.xmt_good_frames, stats.rcv_good_frames) == (2, 1)

    assert c.reset_adapter().status == 0
    assert c.close().status == 0
    assert c.shutdown().status == 0
    assert c.cleanup().status == 0
    assert c.stop_undi().status == 0
    assert pxe_check(um)[:2] == (0x5650, True)  # STOP_UNDI unhooked INT 1Ah again
    for call, times in um.timings.calls.items():
        assert all(t > 0 for t in times), call
