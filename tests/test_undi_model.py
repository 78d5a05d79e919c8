"""drivers.intel_model as a device: the MAC from its EEPROM, EERD in both formats, the transmit and
receive rings walked through a memory the test owns, and the interrupt causes and mask.
Descriptor layouts and register bits are the 8254x/8257x manuals' (legacy descriptors)."""
from __future__ import annotations

import struct

from drivers import intel_model as I

MAC = bytes.fromhex("02a1b2c3d4e5")


def model(pcie: bool = False):
    ram = bytearray(0x10000)
    m = I.IntelModel(device_id=0x10D3 if pcie else 0x100E, pcie=pcie, mac=MAC,
                     memory_at=lambda a, n: memoryview(ram)[a:a + n])
    return m, ram


def test_mac_is_loaded_from_the_eeprom_on_reset():
    m, _ = model()
    assert m.reg(I.RAL0) == 0xC3B2A102 and m.reg(I.RAH0) == 0x8000E5D4  # bytes 0-3, 4-5, Address Valid
    m.set(I.RAL0, 0)
    m.on_write(I.CTRL, I.CTRL_RST)
    assert m.reg(I.RAL0) == 0xC3B2A102 and m.resets == 1
    assert sum(m.eeprom[:0x40]) & 0xFFFF == 0xBABA  # the manuals' EEPROM checksum


def test_eerd_small_and_large_formats():
    m, _ = model(pcie=False)
    m.on_write(I.EERD, 1 << 8 | 1)  # word 1, address at bit 8
    assert m.on_read(I.EERD) == 0xC3B2 << 16 | 1 << 4
    m, _ = model(pcie=True)
    m.on_write(I.EERD, 2 << 2 | 1)  # word 2, address at bit 2
    assert m.on_read(I.EERD) == 0xE5D4 << 16 | 1 << 1


def test_transmit_ring_gathers_a_frame_and_writes_back_dd():
    m, ram = model()
    ring, a, b = 0x1000, 0x2000, 0x3000
    ram[a:a + 10] = b"0123456789"
    ram[b:b + 50] = bytes(range(50))
    struct.pack_into("<QHBBBBH", ram, ring, a, 10, 0, I.TX_CMD_RS, 0, 0, 0)
    struct.pack_into("<QHBBBBH", ram, ring + 16, b, 50, 0, I.TX_CMD_EOP | I.TX_CMD_RS, 0, 0, 0)
    m.on_write(I.TDBAL, ring)
    m.on_write(I.TDLEN, 8 * 16)  # the manuals' minimum: a multiple of 128 bytes
    m.on_write(I.TDT, 2)
    assert not m.tx_frames and m.reg(I.TDH) == 0  # TCTL.EN off: the unit does not run
    m.on_write(I.TCTL, I.TCTL_EN)
    m.on_write(I.TDT, 2)
    assert list(m.tx_frames) == [b"0123456789" + bytes(range(50))]
    assert ram[ring + 12] & I.TX_STA_DD and ram[ring + 16 + 12] & I.TX_STA_DD
    assert m.reg(I.TDH) == 2 and m.reg(I.ICR) & I.ICR_TXDW and m.reg(I.GPTC) == 1


def test_receive_ring_fills_free_descriptors_and_counts_misses():
    m, ram = model()
    ring = 0x4000
    for i in range(8):
        struct.pack_into("<Q", ram, ring + 16 * i, 0x5000 + 0x800 * i)
    m.on_write(I.RDBAL, ring)
    m.on_write(I.RDLEN, 8 * 16)
    m.on_write(I.RDT, 3)  # three descriptors given to the device
    m.on_write(I.IMS, I.ICR_RXT0)
    m.on_write(I.RCTL, I.RCTL_EN)
    frames = [bytes([i]) * (60 + i) for i in range(4)]
    for f in frames:
        m.inject(f)
    assert m.reg(I.RDH) == 3 and len(m.rx_queue) == 1
    for i in range(3):
        length, status = struct.unpack_from("<H", ram, ring + 16 * i + 8)[0], ram[ring + 16 * i + 12]
        assert (length, status) == (60 + i, I.RX_STA_DD | I.RX_STA_EOP)
        assert bytes(ram[0x5000 + 0x800 * i:0x5000 + 0x800 * i + length]) == frames[i]
    assert m.irq
    m.on_write(I.RDT, 4)  # the driver gives one more: the queued frame goes in
    assert not m.rx_queue and m.reg(I.RDH) == 4 and bytes(ram[0x6800:0x6800 + 63]) == frames[3]
    assert m.receive(b"x" * 60) is False and m.reg(I.MPC) == 1  # the ring is full again
    assert m.on_read(I.GPRC) == 4 and m.on_read(I.GPRC) == 0  # clear on read
    m.on_write(I.IMC, I.ICR_RXT0)
    assert not m.irq
    m.on_write(I.IMS, I.ICR_RXT0)
    assert m.irq
    assert m.on_read(I.ICR) & I.ICR_RXT0 and not m.irq  # reading ICR acknowledges


def test_ics_raises_a_cause():
    m, _ = model()
    m.on_write(I.IMS, I.ICR_LSC)
    m.on_write(I.ICS, I.ICR_LSC)
    assert m.irq and m.reg(I.IMS) == I.ICR_LSC


def test_ring_length_keeps_only_bits_19_to_7():
    """TDLEN is a multiple of 128 bytes in bits 19:7: a driver's wild value cannot make the model
    walk more than 65535 descriptors, and a length under 128 is no ring."""
    m, _ = model()
    m.on_write(I.TCTL, I.TCTL_EN)
    m.on_write(I.TDLEN, 0x40)
    m.on_write(I.TDT, 1)
    assert m.reg(I.TDH) == 0 and not m.tx_frames
    assert m.ring_geometry(I.TDBAL, I.TDBAH, I.TDLEN)[1] == 0
    m.on_write(I.TDLEN, 0xFFFFFFFF)
    assert m.ring_geometry(I.TDBAL, I.TDBAH, I.TDLEN)[1] == 0xFFF80 // 16
