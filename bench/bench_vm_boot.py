"""How long `romlab vm` takes to boot a guest and run a command, against bare virtme-run.

Both boot the same kernel with the same q35 + Intel vIOMMU + e1000 QEMU options under
the same accelerator and run `true`; the ratio shows what romlab's harness adds
(environment script, supervision). The KVM probe is timed on its own with an empty
cache, since it runs once per host and is cached after.

Usage: python bench/bench_vm_boot.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from romlab.bench.render import text_table  # noqa: E402
from romlab.lab import vm  # noqa: E402
from romlab.lab.qemu import NicSpec, kvm_works  # noqa: E402


def timed(cmd: list[str], env=None) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=900)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    return dt


def main() -> None:
    kernel = vm.find_kernel()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        t0 = time.monotonic()
        kvm = kvm_works(kernel)
        probe = time.monotonic() - t0
    accel = "kvm" if kvm else "tcg"
    print(f"KVM probe: {probe:.1f} s, KVM {'boots Linux' if kvm else 'does not boot Linux here'}; using {accel.upper()}")

    nic = NicSpec.parse("e1000")
    ours = timed([sys.executable, "-m", "romlab", "vm", "--accel", accel, "--nic", "e1000", "--", "true"])

    qemu = ["-machine", "q35,kernel-irqchip=split",
            "-device", "intel-iommu,intremap=on,caching-mode=on,aw-bits=48", *vm.nic_args([nic])]
    bare = [vm.virtme_run(), "--kimg", kernel, "--mods", "auto", "--disable-microvm", "--memory", "1G",
            "--cpus", "2", "-a", "intel_iommu=on", "--script-sh", "true"]
    if not kvm:
        bare.append("--disable-kvm")
    bare += [f"-q={a}" for a in qemu]
    ref = timed(bare)

    print(text_table([("", "left"), ("seconds", "right")],
                     [["romlab vm -- true", f"{ours:.1f}"], ["virtme-run (reference)", f"{ref:.1f}"]]))
    print(f"ratio romlab/reference: {ours / ref:.2f}")


if __name__ == "__main__":
    main()
