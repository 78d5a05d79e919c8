"""A NIC's own UNDI driver, run from its option ROM in a small real-mode PC emulated in user space.

machine.py holds the emulated PC (memory, interrupts, calls into ROM code, the watchdog), bios.py
the BIOS services a ROM calls, ports.py the legacy I/O ports it may touch, pmm.py the POST Memory
Manager, device.py the interface to the NIC behind it, loader.py the way a BIOS and a PXE client
bring a ROM's UNDI up, and client.py the UNDI API as iPXE's undinet speaks it.
"""
