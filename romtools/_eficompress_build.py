"""cffi build for the EFI compression core (``romtools._eficompress``).

The encoder has to be C: it replays the reference encoder's match search position by
position, which is far too slow in Python for 170 KiB drivers.  The decoder sits beside
it so that both directions share one set of constants.  ``setup.py`` lists this module
in CFFI_MODULES, so ``pip install -e .`` compiles it.
"""
from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).resolve().parent
_C_DIR = _HERE / "c"

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define EFIC_OK ...
    #define EFIC_ENOMEM ...
    #define EFIC_ETOOBIG ...
    #define EFIC_EINTERNAL ...
    #define EFIC_ESHORT ...
    #define EFIC_ECOMPSIZE ...
    #define EFIC_EORIGSIZE ...
    #define EFIC_EBITS ...
    #define EFIC_EBLOCK ...
    #define EFIC_ECOUNT ...
    #define EFIC_ESYMBOL ...
    #define EFIC_ELENGTH ...
    #define EFIC_ERUN ...
    #define EFIC_EINCOMPLETE ...
    #define EFIC_EOVERFULL ...
    #define EFIC_EDISTANCE ...
    #define EFIC_EOVERRUN ...
    #define EFIC_ELEFTOVER ...
    #define EFIC_MAX_INPUT ...
    #define EFIC_TABLE_NONE ...
    #define EFIC_TABLE_EXTRA ...
    #define EFIC_TABLE_CHARLEN ...
    #define EFIC_TABLE_POS ...

    struct efic_fault {
        int table;
        long long block;
        long long bit;
        long long a, b;
    };
    struct efic_stats {
        unsigned long long blocks;
        unsigned long long fixups;
    };

    int efic_compress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_len,
                      struct efic_stats *stats);
    int efic_decompress(const uint8_t *src, size_t n, size_t max_out, uint8_t **out,
                        size_t *out_len, struct efic_fault *fault);
    void efic_release(void *p);
    """
)

# Paths relative to the project root, where setuptools runs cffi_modules builds.
_SRC = _C_DIR / "eficompress.c"
try:
    _src_rel = str(_SRC.relative_to(Path.cwd()))
    _inc_rel = str(_C_DIR.relative_to(Path.cwd()))
except ValueError:
    _src_rel, _inc_rel = str(_SRC), str(_C_DIR)

ffibuilder.set_source(
    "romtools._eficompress",
    '#include "eficompress.h"',
    sources=[_src_rel],
    include_dirs=[_inc_rel],
    extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
