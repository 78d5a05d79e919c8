"""cffi build for the EFI compression core (``romtools._eficompress``).

The encoder has to be C: it replays the reference encoder's match search position by
position, which is far too slow in Python for 170 KiB drivers.  The decoder sits beside
it so that both directions share one set of constants.  ``setup.py`` lists this module
in CFFI_MODULES, so ``pip install -e .`` compiles it.
"""
import sys
from pathlib import Path

from cffi import FFI

# cffi runs this file by path from setup.py: the project root is not always on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from romtools.cheader import cdef_from_header  # noqa: E402

_HERE = Path(__file__).resolve().parent
_C_DIR = _HERE / "c"

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header(_C_DIR / "eficompress.h"))

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
