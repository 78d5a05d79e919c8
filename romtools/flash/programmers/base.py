"""What every programmer offers the SPI NOR layer: chip-select cycles.

A programmer (serprog, a flash image file, later CH341A or a NIC's own SPI
registers) only has to run half-duplex transactions: clock some bytes in, then
clock some out. ``transfer_many`` lets a transport that can pipeline (serprog
over TCP or a fast UART) send several transactions before it waits for the
answers; the default runs them one by one.
"""
from __future__ import annotations


class Programmer:
    name = "programmer"
    on_close: list = []         # callbacks run after the programmer closes (set per instance)
    # Largest MOSI / MISO byte counts one transaction may carry.
    max_write = 1 << 24
    max_read = 1 << 24

    def transfer(self, mosi: bytes, nread: int = 0) -> bytes:
        raise NotImplementedError

    def transfer_many(self, ops: list[tuple[bytes, int]]) -> list[bytes]:
        return [self.transfer(m, n) for m, n in ops]

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
