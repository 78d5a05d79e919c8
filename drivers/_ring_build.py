"""cffi build for the descriptor-ring hot paths (``drivers._ring``).

The C side walks rings and copies packets for a whole batch per call, so Python
is crossed once per batch; ``drivers.ring`` keeps the Python API and a pure-Python
twin of the same logic. ``setup.py`` lists this module in CFFI_MODULES.
"""
import sys
from pathlib import Path

from cffi import FFI

# cffi runs this file by path from setup.py: the project root is not always on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from romtools.cheader import cdef_from_header  # noqa: E402

_C_DIR = Path(__file__).resolve().parent / "c"

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header(_C_DIR / "ring.h"))
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
