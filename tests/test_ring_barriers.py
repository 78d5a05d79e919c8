"""Defect 7's C half: the ring's DMA barriers are the ones Linux uses on each architecture.

On arm64 Linux's dma_wmb()/dma_rmb() are "dmb oshst"/"dmb oshld" (arch/arm64/include/asm/barrier.h)
and writel() issues dma_wmb() before the store (arch/arm64/include/asm/io.h); a C11 fence compiles to
"dmb ish", which does not order against a device. This machine cannot run arm64 code, so the arm64
build is checked by compiling drivers/c/ring.c with Debian's cross compiler (set-up installs it) and
reading its disassembly.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import REPO

CROSS = "aarch64-linux-gnu-gcc"


def functions(disassembly: str) -> dict[str, str]:
    out, name = {}, None
    for line in disassembly.splitlines():
        m = re.match(r"^[0-9a-f]+ <(\w+)>:", line)
        if m:
            name = m.group(1)
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def test_aarch64_build_uses_outer_shareable_dma_barriers(tmp_path):
    # scripts/setup.sh installs the cross compiler, so its absence is a broken set-up, not a skip.
    if not (shutil.which(CROSS) and shutil.which("aarch64-linux-gnu-objdump")):
        pytest.fail(f"no {CROSS}: run scripts/setup.sh (it installs Debian's gcc-aarch64-linux-gnu)")
    # Freestanding, with the two libc functions ring.c uses declared, so no arm64 libc is needed.
    (tmp_path / "string.h").write_text("#include <stddef.h>\nvoid *memcpy(void *, const void *, size_t);\n"
                                       "void *memset(void *, int, size_t);\n")
    obj = tmp_path / "ring.o"
    subprocess.run([CROSS, "-ffreestanding", "-O2", "-std=c99", "-Wall", "-Werror", "-I", str(tmp_path),
                    "-I", str(REPO / "drivers" / "c"), "-c", str(REPO / "drivers" / "c" / "ring.c"), "-o", str(obj)],
                   check=True, capture_output=True, text=True)
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(obj)], check=True, capture_output=True,
                         text=True).stdout
    fn = functions(dis)
    assert re.search(r"dmb\s+oshst", fn["ring_dma_wmb"]) and re.search(r"dmb\s+oshld", fn["ring_dma_rmb"])
    assert not re.search(r"dmb\s+ish", dis), "an inner-shareable barrier does not order against a device"
    # the receive loop: a read barrier after the done bit, a write barrier before the tail register
    assert re.search(r"dmb\s+oshld", fn["ring_rx_batch"]) and re.search(r"dmb\s+oshst", fn["ring_rx_batch"])
    # the transmit path: a write barrier before the tail; the reclaim's read barrier after a done bit
    assert re.search(r"dmb\s+oshst", fn["ring_tx_batch"])
    assert any(re.search(r"dmb\s+oshld", body) for name, body in fn.items() if "reclaim" in name or "tx_" in name)
    strings = subprocess.run(["aarch64-linux-gnu-objdump", "-s", "-j", ".rodata.str1.8", str(obj)],
                             capture_output=True, text=True).stdout
    assert "aarch64" in strings  # ring_barrier_arch() vouches for this build


def test_this_build_names_its_barriers():
    import platform

    from drivers._ring import ffi, lib

    built = ffi.string(lib.ring_barrier_arch()).decode()
    if platform.machine() in ("x86_64", "aarch64"):
        assert built == platform.machine()
    else:
        assert built == ""
