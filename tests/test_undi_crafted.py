"""Crafted ROMs in drivers/undi's emulated PC: what a misbehaving ROM meets (the watchdog, the memory
map, the port allowlist, the BIOS's checks of the buffers it is handed) and what a well-behaved one
relies on (IVT dispatch to a vector it hooked, hlt woken by the timer, a protected-mode excursion).

Each ROM is one legacy image built here from romtools' schemas with its checksums fixed by
romtools, its loader hand-assembled; capstone disassembles every snippet back so the bytes are
checked against the listing written beside them.
"""
from __future__ import annotations

import time

import pytest
from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, Cs

from drivers.intel_model import IntelModel
from drivers.undi.client import UndiClient
from drivers.undi.device import ModelDevice
from drivers.undi.loader import UndiMachine
from hw.errors import FormatError, RomRunError, UsageError
from romtools import pxe
from romtools import schemas as S
from romtools.checksums import fix_image_checksums

LOADER = 0x80


def listing(code: bytes, base: int, mode=CS_MODE_16) -> list[str]:
    return [f"{i.mnemonic} {i.op_str}".strip() for i in Cs(CS_ARCH_X86, mode).disasm(code, base)]


def crafted(code: dict[int, bytes], device_id: int = 0x100E, size: int = 1024, init: bytes = b"\xcb\x90\x90") -> bytes:
    """A legacy UNDI image: init (3 bytes at offset 3) a bare retf unless given, the loader at 0x80;
    ``code`` maps offsets to bytes."""
    rom = bytearray(size)
    rom[0:0x1C] = S.LegacyRomHeader.build(dict(init_size=size // 512, init_entry=init, checksum_adjust=0,
                                                reserved_07=bytes(9), ipxe_header_ptr=0, reserved_12=0, bofm_ptr=0,
                                                undi_rom_id_ptr=0x40, pcir_ptr=0x20, pnp_ptr=0))
    rom[0x20:0x38] = S.PcirRev0.build(dict(vendor_id=0x8086, device_id=device_id, reserved0=0, length=0x18,
                                           revision=0, class_code=0x020000, image_length=size // 512,
                                           code_revision=1, code_type=0, indicator=0x80, reserved1=0))
    rom[0x40:0x56] = S.UndiRomId.build(dict(struct_length=0x16, checksum=0, struct_revision=0, undi_revision=0,
                                            undi_minor=1, undi_major=2, loader_offset=LOADER, stack_size=0x400,
                                            data_size=0x400, code_size=0x400, bus_type="PCIR"))
    for at, data in code.items():
        rom[at:at + len(data)] = data
    assert fix_image_checksums(rom, "header") == []
    return bytes(rom)


def machine(rom: bytes, device_id: int = 0x100E, **kw) -> UndiMachine:
    um = UndiMachine(rom, ModelDevice(IntelModel(device_id=device_id, pcie=device_id != 0x100E)), **kw)
    um.run_init()
    return um


def loader_error(code: bytes, expect: list[str], timeout: float = 5.0) -> str:
    um = machine(crafted({LOADER: code}))
    with pytest.raises(RomRunError) as e:
        um.run_loader(timeout=timeout)
    message = str(e.value)
    assert "\n" not in message
    for part in expect:
        assert part in message, message
    return message


# -- what stops a ROM ---------------------------------------------------------------------------------
def test_watchdog_ends_a_loader_that_loops_for_ever():
    code = bytes.fromhex("fa ebfe")
    assert listing(code, LOADER) == ["cli", "jmp 0x81"]
    t0 = time.perf_counter()
    loader_error(code, ["UNDI loader: did not return within the watchdog's 1 s", "c800:0081"], timeout=1.0)
    assert time.perf_counter() - t0 < 10  # 1 s of emulation; the slack is for a loaded machine


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_watchdog_that_is_no_positive_finite_time_is_refused_before_the_rom_runs(timeout):
    um = machine(crafted({LOADER: b"\xcb"}))
    with pytest.raises(UsageError, match="the watchdog must be a positive, finite number of seconds"):
        um.run_loader(timeout=timeout)


def test_write_outside_ram_is_stopped_and_named():
    code = bytes.fromhex("b800a0 8ec0 26c606000055 cb")
    assert listing(code, LOADER) == ["mov ax, 0xa000", "mov es, ax", "mov byte ptr es:[0], 0x55", "retf"]
    loader_error(code, ["UNDI loader:", "write to unmapped memory at 0xa0000", "c800:0085"])


def test_write_to_the_bios_area_is_stopped_and_named():
    code = bytes.fromhex("b800f0 8ec0 26c606100055 cb")
    assert listing(code, LOADER) == ["mov ax, 0xf000", "mov es, ax", "mov byte ptr es:[0x10], 0x55", "retf"]
    loader_error(code, ["write to read-only memory at 0xf0010", "c800:0085"])


def test_fetch_from_nowhere_is_stopped_and_named():
    code = bytes.fromhex("ea0000 00a0")
    assert listing(code, LOADER) == ["ljmp 0xa000:0"]
    loader_error(code, ["instruction fetch from unmapped memory at 0xa0000"])


def test_port_outside_the_allowlist_is_stopped_and_named():
    code = bytes.fromhex("baf803 b041 ee cb")
    assert listing(code, LOADER) == ["mov dx, 0x3f8", "mov al, 0x41", "out dx, al", "retf"]
    loader_error(code, ["UNDI loader: write of 0x41 to I/O port 0x3f8 (1 byte)", "c800:0085", "outside the allowed ports"])


def test_port_read_outside_the_allowlist_is_stopped_and_named():
    code = bytes.fromhex("e460 cb")
    assert listing(code, LOADER) == ["in al, 0x60", "retf"]
    loader_error(code, ["read of I/O port 0x60 (1 byte)", "c800:0080"])


def test_e820_buffer_outside_ram_is_refused():
    code = bytes.fromhex("b800a0 8ec0 31ff 66b820e80000 66ba50414d53 6631db 66b914000000 cd15 cb")
    assert listing(code, LOADER) == ["mov ax, 0xa000", "mov es, ax", "xor di, di", "mov eax, 0xe820",
                                     "mov edx, 0x534d4150", "xor ebx, ebx", "mov ecx, 0x14", "int 0x15", "retf"]
    loader_error(code, ["the E820 buffer (ES:DI) at 0xa0000..0xa0013 is outside the emulated RAM"])


def test_an_interrupt_the_bios_does_not_serve_is_named():
    code = bytes.fromhex("b408 cd13 cb")
    assert listing(code, LOADER) == ["mov ah, 8", "int 0x13", "retf"]
    loader_error(code, ["INT 13h (AX=08", "not a service this emulated BIOS provides", "c800:0084"])


def test_hlt_with_interrupts_off_is_named():
    code = bytes.fromhex("fa f4 cb")
    assert listing(code, LOADER) == ["cli", "hlt", "retf"]
    loader_error(code, ["hlt with interrupts disabled at c800:0082"])


def test_protected_mode_write_outside_ram_is_stopped_and_named():
    rom = crafted(pm_excursion(0x03000000))
    um = machine(rom)
    with pytest.raises(RomRunError, match=r"write to unmapped memory at 0x3000000 .*0008:000c80a6"):
        um.m.far_call(0xC800, LOADER, timeout=5, context="excursion")


# -- what a ROM may rely on ---------------------------------------------------------------------------
def pm_excursion(target: int) -> dict[int, bytes]:
    """Real mode -> 32-bit flat protected mode (write a marker at ``target``) -> 16-bit protected mode
    -> real mode -> retf, with the ROM's own GDT, as iPXE's decompressor does."""
    real = bytes.fromhex("fa 2e0f0116f001 0f20c0 6683c801 0f22c0 66eaa0800c000800")
    pm32 = bytes.fromhex("66b81000 8ed8 c705") + target.to_bytes(4, "little") + bytes.fromhex("0df00d60 eac00000001800")
    pm16 = bytes.fromhex("0f20c0 6683e0fe 0f22c0 ead00000c8")
    back = bytes.fromhex("31c0 8ed8 fb cb")
    assert listing(real, 0x80) == ["cli", "lgdt cs:[0x1f0]", "mov eax, cr0", "or eax, 1", "mov cr0, eax",
                                   "ljmp 8:0xc80a0"]
    assert listing(pm32, 0xA0, CS_MODE_32) == ["mov ax, 0x10", "mov ds, eax", f"mov dword ptr [{target:#x}], 0x600df00d",
                                               "ljmp 0x18:0xc0"]
    assert listing(pm16, 0xC0) == ["mov eax, cr0", "and eax, 0xfffffffe", "mov cr0, eax", "ljmp 0xc800:0xd0"]
    assert listing(back, 0xD0) == ["xor ax, ax", "mov ds, ax", "sti", "retf"]
    gdt = bytes(8) + bytes.fromhex("ffff0000009acf00" "ffff00000092cf00" "ffff00800c9a0000" "ffff000000920000")
    gdtr = (len(gdt) - 1).to_bytes(2, "little") + (0xC8200).to_bytes(4, "little")
    return {0x80: real, 0xA0: pm32, 0xC0: pm16, 0xD0: back, 0x1F0: gdtr, 0x200: gdt}


def test_protected_mode_excursion_and_back():
    um = machine(crafted(pm_excursion(0x00200000)))
    um.m.far_call(0xC800, LOADER, timeout=5, context="excursion")
    assert bytes(um.m.view[0x200000:0x200004]) == bytes.fromhex("0df00d60")
    assert um.m.reg("cr0") & 1 == 0


def test_a_vector_the_rom_hooked_is_dispatched_through_the_ivt():
    code = bytes.fromhex("31c0 8ed8 c7066800a000 c7066a0000c8 b83412 cd1a cb")
    handler = bytes.fromhex("050100 cf")
    assert listing(code, LOADER) == ["xor ax, ax", "mov ds, ax", "mov word ptr [0x68], 0xa0",
                                     "mov word ptr [0x6a], 0xc800", "mov ax, 0x1234", "int 0x1a", "retf"]
    assert listing(handler, 0xA0) == ["add ax, 1", "iret"]
    um = machine(crafted({LOADER: code, 0xA0: handler}))
    um.m.far_call(0xC800, LOADER, timeout=5)
    assert um.m.reg("ax") == 0x1235


def test_bios_services_answer_as_a_bios_does():
    # INT 12h: base memory in KiB below the EBDA (639); INT 1Ah B101: "PCI " in EDX, BX the
    # version, CF clear.
    code = bytes.fromhex("cd12 89c6 b801b1 cd1a 9c 58 cb")
    assert listing(code, LOADER) == ["int 0x12", "mov si, ax", "mov ax, 0xb101", "int 0x1a", "pushf", "pop ax",
                                     "retf"]
    um = machine(crafted({LOADER: code}))
    um.m.far_call(0xC800, LOADER, timeout=5)
    assert um.m.reg("si") == 639
    assert um.m.reg("edx") == int.from_bytes(b"PCI ", "little") and um.m.reg("ax") & 1 == 0
    assert um.m.reg("bx") == 0x0210  # PCI BIOS 2.10


def test_hlt_is_woken_by_the_timer():
    code = bytes.fromhex("fb f4 cb")
    assert listing(code, LOADER) == ["sti", "hlt", "retf"]
    um = machine(crafted({LOADER: code}))
    um.m.far_call(0xC800, LOADER, timeout=5)


def test_console_keeps_its_last_64_kib_of_a_rom_that_prints_in_a_loop():
    # four INT 10h/13h calls of 65535 bytes each (ES:BP = 0000:0000, the IVT and BDA): 262140 bytes
    # printed; the console keeps the last 65536 and counts the 196604 before them.
    code = bytes.fromhex("be0400 31c0 8ec0 b80013 b9ffff 31ed cd10 4e 75f3 cb")
    assert listing(code, LOADER) == ["mov si, 4", "xor ax, ax", "mov es, ax", "mov ax, 0x1300", "mov cx, 0xffff",
                                     "xor bp, bp", "int 0x10", "dec si", "jne 0x87", "retf"]
    um = machine(crafted({LOADER: code}))
    before = len(um.bios.console) + um.bios.console_dropped
    um.m.far_call(0xC800, LOADER, timeout=30)
    assert len(um.bios.console) == 65536
    assert um.bios.console_dropped == before + 4 * 65535 - 65536
    assert bytes(um.bios.console[-16:]) == bytes(um.m.view[65535 - 16:65535])


def test_int10_13_in_attribute_mode_reads_cx_pairs_and_keeps_the_characters():
    # AL bit 1: ES:BP holds CX (char, attribute) pairs, 2*CX bytes; "Hi!" with attribute 07h each.
    code = bytes.fromhex("0e 07 bd0001 b90300 b80213 cd10 cb")
    assert listing(code, LOADER) == ["push cs", "pop es", "mov bp, 0x100", "mov cx, 3", "mov ax, 0x1302",
                                     "int 0x10", "retf"]
    um = machine(crafted({LOADER: code, 0x100: b"H\x07i\x07!\x07XY"}))
    um.m.far_call(0xC800, LOADER, timeout=5)
    assert bytes(um.bios.console).endswith(b"Hi!")


def test_post_codes_of_a_rom_writing_port_80h_in_a_loop_are_bounded():
    code = bytes.fromhex("b05a b91027 e680 e2fc cb")
    assert listing(code, LOADER) == ["mov al, 0x5a", "mov cx, 0x2710", "out 0x80, al", "loop 0x85", "retf"]
    um = machine(crafted({LOADER: code}))
    seen = um.ports.post_codes_seen
    um.m.far_call(0xC800, LOADER, timeout=30)
    assert um.ports.post_codes_seen == seen + 10000
    assert 4096 <= len(um.ports.post_codes) <= 2 * 4096 and set(um.ports.post_codes[-4096:]) == {0x5A}


def test_pmm_call_log_is_bounded():
    from drivers.undi.pmm import Pmm
    pmm = Pmm((0x10000, 0x20000), (0x100000, 0x200000))
    for handle in range(5000):
        pmm.find(handle)
    assert pmm.calls_seen == 5000
    assert 1024 <= len(pmm.calls) <= 2048 and pmm.calls[-1] == ("find", 4999)


# -- what is refused before anything runs -------------------------------------------------------------
def test_rom_for_another_device_is_refused_unless_forced():
    rom = crafted({LOADER: b"\xcb"}, device_id=0x100E)
    with pytest.raises(UsageError, match="the ROM is for 8086:100e, the device is 8086:10d3; use --force-ids"):
        UndiMachine(rom, ModelDevice(IntelModel(device_id=0x10D3, pcie=True)))
    machine(rom, device_id=0x10D3, force_ids=True)


def test_rom_with_a_bad_checksum_is_refused():
    rom = bytearray(crafted({LOADER: b"\xcb"}))
    rom[0x300] ^= 0xFF
    with pytest.raises(FormatError, match="bad checksum"):
        UndiMachine(bytes(rom), ModelDevice(IntelModel()))


def test_rom_without_undi_is_refused():
    rom = bytearray(crafted({LOADER: b"\xcb"}))
    rom[0x16:0x18] = b"\0\0"
    fix_image_checksums(rom, "header")
    with pytest.raises(FormatError, match="no legacy x86 image with an UNDI ROM ID"):
        UndiMachine(bytes(rom), ModelDevice(IntelModel()))


def test_device_dma_outside_ram_is_stopped_and_named():
    """The ROM points the model's transmit ring at the VGA hole and rings the doorbell: the device's
    DMA reaches only emulated RAM, so the run stops naming the address (through BAR0 at 0xfeb80000,
    reached with 32-bit addressing from real mode, as iPXE's drivers do)."""
    code = bytes.fromhex("31c0 8ed8 66be0000b8fe 66b802000000 6766898600040000 66b800000a00 6766898600380000"
                         "66b880000000 6766898608380000 66b801000000 6766898618380000 cb")
    assert listing(code, LOADER) == [
        "xor ax, ax", "mov ds, ax", "mov esi, 0xfeb80000",
        "mov eax, 2", "mov dword ptr [esi + 0x400], eax",  # TCTL.EN
        "mov eax, 0xa0000", "mov dword ptr [esi + 0x3800], eax",  # TDBAL
        "mov eax, 0x80", "mov dword ptr [esi + 0x3808], eax",  # TDLEN: 8 descriptors
        "mov eax, 1", "mov dword ptr [esi + 0x3818], eax",  # TDT
        "retf"]
    loader_error(code, ["device write at 0xfeb83818 failed", "DMA address 0xa0000 (16 bytes), outside the emulated RAM"])


def test_init_that_destroys_its_undi_rom_id_is_named():
    init = bytes.fromhex("e9fa00")  # jmp 0x100
    code = bytes.fromhex("2ec606400000 cb")
    assert listing(init, 3) == ["jmp 0x100"]
    assert listing(code, 0x100) == ["mov byte ptr cs:[0x40], 0", "retf"]
    um = machine(crafted({0x100: code}, init=init))
    with pytest.raises(RomRunError, match=r"C800:0040 \(word 0x16 of the ROM\) holds no UNDI ROM ID"):
        um.run_loader()


def with_checksum(raw: bytes, at: int) -> bytes:
    raw = bytearray(raw)
    raw[at] = -sum(raw) & 0xFF
    return bytes(raw)


def pxe_rom(spoil_pxe_checksum: bool = False, pxe_length: int = 0x58) -> bytes:
    """A loader that fills s_UNDI_LOADER with a !PXE and a PXENV+ built from romtools.pxe, whose
    entry point (C800:03A0) loops for ever."""
    loader = bytes.fromhex("55 89e5 c47e06 26c745100003 26c7451200c8 26c745146003 26c7451600c8 26c7050000"
                           "31c0 5d cb")
    assert listing(loader, LOADER) == [
        "push bp", "mov bp, sp", "les di, ptr [bp + 6]",  # the far pointer the caller pushed
        "mov word ptr es:[di + 0x10], 0x300", "mov word ptr es:[di + 0x12], 0xc800",  # PXEptr
        "mov word ptr es:[di + 0x14], 0x360", "mov word ptr es:[di + 0x16], 0xc800",  # PXENVptr
        "mov word ptr es:[di], 0", "xor ax, ax", "pop bp", "retf"]
    zero = dict(offset=0, segment=0)
    desc = dict(segment_address=0, physical_address=0, seg_size=0)
    bang_pxe = with_checksum(pxe.Pxe.build(dict(
        struct_length=pxe_length, struct_cksum=0, struct_rev=0, reserved_1=0, undi_rom_id=dict(offset=0x40, segment=0xC800),
        base_rom_id=zero, entry_point_sp=dict(offset=0x3A0, segment=0xC800), entry_point_esp=zero,
        status_callout=zero, reserved_2=0, seg_desc_cnt=7, first_selector=0, stack=desc, undi_data=desc,
        undi_code=desc, undi_code_write=desc, bc_data=desc, bc_code=desc, bc_code_write=desc)), 5)
    pxenv = with_checksum(pxe.Pxenv.build(dict(
        version=0x0201, length=0x2C, checksum=0, rm_entry=dict(offset=0x3A0, segment=0xC800), pm_offset=0,
        pm_selector=0, stack_seg=0, stack_size=0, bc_code_seg=0, bc_code_size=0, bc_data_seg=0, bc_data_size=0,
        undi_data_seg=0, undi_data_size=0, undi_code_seg=0xC800, undi_code_size=0x400,
        pxe_ptr=dict(offset=0x300, segment=0xC800))), 9)
    loop = bytes.fromhex("ebfe")
    assert listing(loop, 0x3A0) == ["jmp 0x3a0"]
    if spoil_pxe_checksum:
        bang_pxe = bang_pxe[:5] + bytes([bang_pxe[5] ^ 1]) + bang_pxe[6:]
    return crafted({LOADER: loader, 0x300: bang_pxe, 0x360: pxenv, 0x3A0: loop})


@pytest.mark.parametrize("kib, expect", [(0xFFFF, "is 65535 KiB, more than the 640 KiB of conventional memory"),
                                         (641, "is 641 KiB, more than the 640 KiB"),
                                         (100, "more than is free below 100 KiB")])
def test_base_memory_size_the_init_left_out_of_range_is_refused(kib, expect):
    # init writes 40:13h (the base memory size in KiB) and returns; the loader must not place UNDI by it.
    init_code = bytes.fromhex("b8") + kib.to_bytes(2, "little") + bytes.fromhex("31db 8edb a31304 cb")
    assert listing(init_code, 0x100) == [f"mov ax, {kib:#x}", "xor bx, bx", "mov ds, bx", "mov word ptr [0x413], ax",
                                         "retf"]
    jmp = bytes.fromhex("e9fa00")
    assert listing(jmp, 3) == ["jmp 0x100"]
    um = machine(crafted({0x100: init_code, LOADER: b"\xcb"}, init=jmp))
    assert um.m.u16(0x413) == kib
    with pytest.raises(RomRunError, match=expect) as e:
        um.run_loader(timeout=5)
    assert "\n" not in str(e.value)


def test_loader_result_with_a_bad_pxe_checksum_is_refused():
    um = machine(pxe_rom(spoil_pxe_checksum=True))
    with pytest.raises(RomRunError, match=r"the !PXE structure at c800:0300 has a bad checksum"):
        um.run_loader()


def test_loader_result_whose_pxe_length_is_zero_is_refused():
    """A length of 0 sums no bytes, so any !PXE would pass its checksum: the length must cover
    the structure's 0x58 bytes (PXE 2.1)."""
    um = machine(pxe_rom(pxe_length=0))
    with pytest.raises(RomRunError, match=r"the !PXE structure at c800:0300 says it is 0 bytes long, less than "
                                          r"the 88 of its fields"):
        um.run_loader()


def test_watchdog_names_the_undi_call_that_hangs():
    um = machine(pxe_rom())
    um.run_loader()
    assert um.entry == (0xC800, 0x3A0) and um.pxenv.version == 0x0201
    t0 = time.perf_counter()
    with pytest.raises(RomRunError, match=r"^START_UNDI: did not return within the watchdog's 0.5 s "
                                          r"\(stopped at c800:03a0\)$"):
        UndiClient(um, timeout=0.5).start_undi()
    assert time.perf_counter() - t0 < 10


def test_an_isr_that_answers_transmit_for_ever_ends_the_poll():
    """undinet loops on ISR GET_NEXT until DONE; a ROM that answers TRANSMIT on every call would
    hold that loop for ever, each call inside its own watchdog. The poll stops and says so."""
    from types import SimpleNamespace

    from drivers.undi.client import ISR_CALLS_PER_POLL

    client = UndiClient.__new__(UndiClient)        # the loop alone: no ROM needed to answer
    client.isr_processing, client.irq_pending, client.rx_errors = False, None, 0
    answered = []

    def isr(flag):
        answered.append(flag)
        return SimpleNamespace(func_flag=pxe.ISR_OUT_TRANSMIT)

    client.isr = isr
    with pytest.raises(RomRunError, match=r"^UNDI_ISR: 256 PROCESS/GET_NEXT calls in one poll without DONE"):
        client.poll()
    assert ISR_CALLS_PER_POLL == 256 and len(answered) == 256
    assert answered[0] == pxe.ISR_IN_PROCESS and set(answered[1:]) == {pxe.ISR_IN_GET_NEXT}
