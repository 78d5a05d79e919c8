"""cffi build for the descriptor-ring hot paths (``drivers._ring``).

The C side walks rings and copies packets for a whole batch per call, so Python
is crossed once per batch; ``drivers.ring`` keeps the Python API and a pure-Python
twin of the same logic. ``setup.py`` lists this module in CFFI_MODULES.
"""
from pathlib import Path

from cffi import FFI

_C_DIR = Path(__file__).resolve().parent / "c"

ffibuilder = FFI()
ffibuilder.cdef(
    """
    struct ring {
        uint8_t *bar;
        uint32_t tail_reg;
        uint8_t *desc;
        uint8_t *buf;
        uint64_t buf_iova;
        uint32_t buf_size;
        uint32_t count;
        uint32_t next;
        uint32_t clean;
        uint64_t packets;
        uint64_t dropped;
    };
    void ring_init_rx(struct ring *r);
    void ring_init_tx(struct ring *r);
    uint32_t ring_tx_batch(struct ring *r, const uint8_t *pkts, const uint16_t *lens, uint32_t n);
    uint32_t ring_tx_pending(struct ring *r);
    uint32_t ring_rx_batch(struct ring *r, uint8_t *out, uint32_t out_size, uint16_t *lens, uint32_t max);
    """
)
# Paths relative to the project root, where setuptools runs cffi_modules builds.
try:
    _src, _inc = str((_C_DIR / "ring.c").relative_to(Path.cwd())), str(_C_DIR.relative_to(Path.cwd()))
except ValueError:
    _src, _inc = str(_C_DIR / "ring.c"), str(_C_DIR)

ffibuilder.set_source(
    "drivers._ring",
    '#include "ring.h"',
    sources=[_src],
    include_dirs=[_inc],
    extra_compile_args=["-O2", "-std=c99"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
