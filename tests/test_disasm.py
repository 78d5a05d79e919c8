"""romlab disasm against a peer: binutils objdump in 8086 mode, at the same offsets."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab

PXE = IPXE_QEMU / "pxe-e1000.rom"


def objdump(path, start: int, stop: int) -> dict[int, tuple[bytes, str]]:
    out = subprocess.run(["objdump", "-D", "-b", "binary", "-mi8086", "-M", "intel",
                          f"--start-address={start}", f"--stop-address={stop}", str(path)],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)\s*(\S+)", line)
        if m:
            found[int(m.group(1), 16)] = (bytes.fromhex(m.group(2)), m.group(3))
    return found


def _mn(m: str) -> str:
    # objdump and capstone name a few 16-bit forms differently.
    return {"pushaw": "pusha", "popaw": "popa", "pushal": "pushad", "popal": "popad", "retw": "ret",
            "lret": "retf", "lretw": "retf", "call": "call", "jmp": "jmp"}.get(m, m)


@pytest.mark.parametrize("entry,target", [("init", 0xA8), ("undi-loader", 0x4A4)])
def test_instructions_match_objdump(entry, target):
    r = run_romlab("disasm", "--json", "--entry", entry, "--count", "24", corpus(PXE))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ins = doc["instructions"]
    if entry == "init":
        assert doc["followed"] == {"from": 3, "to": target}
        assert ins[0]["offset"] == 3 and ins[0]["bytes"] == "e9a200"
        ins = ins[1:]
    assert ins[0]["offset"] == target
    peer = objdump(corpus(PXE), target, ins[-1]["offset"] + 16)
    assert len(ins) >= 10
    for i in ins:
        assert i["offset"] in peer, f"objdump has no instruction at 0x{i['offset']:x}"
        raw, mnemonic = peer[i["offset"]]
        assert bytes.fromhex(i["bytes"]) == raw
        assert _mn(i["mnemonic"].split()[-1]) == _mn(mnemonic.split()[-1])


def test_bad_disasm_requests():
    r = run_romlab("disasm", "--image", "5", corpus(PXE))
    assert r.returncode == 2 and b"image 5 does not exist" in r.stderr
    r = run_romlab("disasm", "--image", "1", corpus(IPXE_QEMU / "efi-e1000.rom"))
    assert r.returncode == 2 and b"not x86 real-mode code" in r.stderr
    r = run_romlab("disasm", "--entry", "bcv", corpus(PXE))
    assert r.returncode == 2 and b"no bcv entry" in r.stderr
