"""drivers.mempool: carving the one DMA region."""
from __future__ import annotations

import pytest

from drivers.mempool import Mempool
from hw.errors import HardwareError


class Dma:
    def __init__(self, size):
        self.mem, self.size, self.iova = bytearray(size), size, 0x100000


class Vfio:
    def dma_alloc(self, size, align, hugepages):
        return Dma(size)

    def dma_free(self, dma):
        pass


def test_carve_past_the_pool_is_a_hardware_error():
    pool = Mempool(Vfio(), 8192)
    first = pool.carve(4000, align=4096)
    assert first.iova == 0x100000 and first.size == 4000
    with pytest.raises(HardwareError) as exc:
        pool.carve(4097, align=4096)  # 4096 + 4097 > 8192
    msg = str(exc.value)
    assert "\n" not in msg and "8192" in msg and "4097" in msg
    second = pool.carve(4096, align=4096)  # the refusal took nothing
    assert second.iova == 0x100000 + 4096
    pool.free()
