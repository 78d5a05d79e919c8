"""Build hooks that pyproject.toml cannot express: the cffi extension modules.

Each entry in CFFI_MODULES names a ``module:ffibuilder`` whose C source is
compiled into an extension when the package is installed (``pip install -e .``).
"""
from setuptools import setup

CFFI_MODULES: list[str] = [
    "romtools/_eficompress_build.py:ffibuilder",
    "drivers/_ring_build.py:ffibuilder",
]

setup(cffi_modules=CFFI_MODULES)
