"""A C header's declarations in the form cffi's ``cdef`` takes, so each header is the one place
its structures, functions and constants are declared (for the compiler and for cffi alike).

cffi parses plain declarations but no preprocessor lines: a ``#define NAME value`` becomes
``#define NAME ...`` (cffi then reads the value from the compiled C), other directives
(include guards, includes) are dropped. Comments are left for cffi's own parser to strip.
"""
from __future__ import annotations

import re
from pathlib import Path

_CONSTANT = re.compile(r"\s*#\s*define\s+([A-Za-z_]\w*)\s+\S")


def cdef_from_header(path: Path) -> str:
    out = []
    for line in Path(path).read_text().splitlines():
        m = _CONSTANT.match(line)
        if m:
            out.append(f"#define {m.group(1)} ...")
        elif not line.lstrip().startswith("#"):
            out.append(line)
    return "\n".join(out)
