"""Measurements of drivers, each against a reference taken in the same run.

``native``: transmit throughput of romlab's user-space driver (C and pure-Python paths) against
the kernel's driver on one NIC. ``firmware``: HTTP downloads through a ROM's UNDI against native
iPXE drivers under QEMU. ``render``: how both are shown (text tables, PNG plots, HTML).
Nothing is imported here, so ``romlab bench`` pays only for the bench it runs.
"""
