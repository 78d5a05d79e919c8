"""Intel NIC NVM words: what the first 64 say, the 0xBABA checksum, and edits that keep it right.

Word map (8254x SDM section 5.6, ICH8 NVM guide, I210 datasheet section 6; the
same in every generation for the words used here):

* 0x00-0x02: the Ethernet address, two bytes per word, low byte first;
* 0x05: image/NVM map version; 0x0A, 0x0F: initialization control words 1 and 2;
* 0x0B, 0x0C: subsystem ID and subsystem vendor ID; 0x0D: device ID;
* 0x30: boot agent setup (PS bits 1:0 protocol, 00 = PXE; DBS bits 4:3 default boot
  order; PT bits 7:6 prompt time);
* 0x31: boot agent customisation (SIG 15:14 = 01b when programmed, MODE 10:8,
  DFU bit 5 "disable flash update", DPS bit 2, DTM bit 1, DSM bit 0);
* 0x32: boot agent version (major 15:12, minor 11:8, build 7:0);
* 0x33: option-ROM capabilities (SIG 15:14 = 01b; I210 meaning: BC bit 0, UNDI
  bit 1, UEFI bit 3, iSCSI bit 4);
* 0x3F: checksum: words 0x00-0x3F sum to 0xBABA (16-bit, carries dropped).

Hardware does not compute the checksum; drivers refuse an NVM whose sum is
wrong ("NVM Checksum Is Not Valid"), so every edit of words 0x00-0x3E here
rewrites word 0x3F too, as ``ethtool -E`` does.
"""
from __future__ import annotations

import re

from hw.errors import FlashError

NVM_SUM = 0xBABA
CHECKSUM_WORD = 0x3F

PS = {0: "PXE", 1: "RPL"}
DBS = {0: "network, then local", 1: "local, then network", 2: "network only", 3: "local only"}
PT = {0: 2, 1: 3, 2: 5, 3: 0}
MODE = {0: "normal", 1: "force legacy", 2: "force BBS", 3: "force PnP int 18h", 4: "force PnP int 19h"}


def checksum_word(words: list[int]) -> int:
    """The value word 0x3F must hold for words 0x00-0x3E as given."""
    return (NVM_SUM - sum(words[:CHECKSUM_WORD])) & 0xFFFF


def checksum_valid(words: list[int]) -> bool:
    return sum(words[:CHECKSUM_WORD + 1]) & 0xFFFF == NVM_SUM


def mac(words: list[int]) -> str:
    return ":".join("%02x" % b for w in words[0:3] for b in (w & 0xFF, w >> 8))


def decode(words: list[int]) -> dict:
    w = words
    setup, custom, version, caps = w[0x30], w[0x31], w[0x32], w[0x33]
    out = {
        "mac": mac(w),
        "checksum": {"sum": sum(w[:64]) & 0xFFFF, "stored": w[CHECKSUM_WORD], "expected": checksum_word(w),
                     "valid": checksum_valid(w)},
        "image_version": w[0x05],
        "init_control_1": w[0x0A],
        "init_control_2": w[0x0F],
        "subsystem": "%04x:%04x" % (w[0x0C], w[0x0B]),
        "device_id": w[0x0D],
        "boot_setup": {"word": setup, "protocol": PS.get(setup & 3, "undefined"),
                       "default_boot": DBS[(setup >> 3) & 3], "prompt_seconds": PT[(setup >> 6) & 3]},
        "boot_custom": {"word": custom, "programmed": custom >> 14 == 1},
        "boot_version": {"word": version, "text": "%d.%d.%d" % (version >> 12, (version >> 8) & 0xF,
                                                                version & 0xFF)},
        "rom_capabilities": {"word": caps, "programmed": caps >> 14 == 1},
    }
    if custom >> 14 == 1:
        out["boot_custom"].update(mode=MODE.get((custom >> 8) & 7, "normal"), disable_flash_update=bool(custom & 0x20),
                                  disable_protocol_select=bool(custom & 4), disable_title=bool(custom & 2),
                                  disable_setup_menu=bool(custom & 1))
    if caps >> 14 == 1:
        out["rom_capabilities"].update(pxe_base_code=bool(caps & 1), undi=bool(caps & 2), uefi=bool(caps & 8),
                                       iscsi=bool(caps & 0x10))
    return out


def show_lines(info: dict, words: list[int]) -> list[str]:
    c = info["checksum"]
    lines = [f"mac: {info['mac']}",
             f"checksum: words 0x00-0x3f sum to 0x{c['sum']:04x}: "
             + ("valid (0xbaba)" if c["valid"] else
                f"NOT valid (should be 0xbaba; word 0x3f holds 0x{c['stored']:04x}, needs 0x{c['expected']:04x}; "
                "`romlab nvm ... fix-checksum`)"),
             f"device id (word 0x0d): 0x{info['device_id']:04x}, subsystem {info['subsystem']}",
             f"init control 1/2 (0x0a/0x0f): 0x{info['init_control_1']:04x} 0x{info['init_control_2']:04x}, "
             f"image version (0x05): 0x{info['image_version']:04x}"]
    b = info["boot_setup"]
    lines.append(f"boot setup (0x30): 0x{b['word']:04x}: protocol {b['protocol']}, default boot "
                 f"{b['default_boot']}, prompt {b['prompt_seconds']} s")
    bc = info["boot_custom"]
    if bc["programmed"]:
        flags = [n for n, k in (("no flash update", "disable_flash_update"), ("protocol locked",
                 "disable_protocol_select"), ("no title", "disable_title"), ("no setup menu",
                 "disable_setup_menu")) if bc[k]]
        lines.append(f"boot customisation (0x31): 0x{bc['word']:04x}: mode {bc['mode']}"
                     + (", " + ", ".join(flags) if flags else ""))
    else:
        lines.append(f"boot customisation (0x31): 0x{bc['word']:04x} (not programmed: signature is not 01b)")
    lines.append(f"boot agent version (0x32): {info['boot_version']['text']}")
    rc = info["rom_capabilities"]
    if rc["programmed"]:
        have = [n for n, k in (("PXE base code", "pxe_base_code"), ("UNDI", "undi"), ("UEFI", "uefi"),
                               ("iSCSI", "iscsi")) if rc[k]]
        lines.append(f"option-ROM capabilities (0x33): 0x{rc['word']:04x}: " + (", ".join(have) or "none"))
    else:
        lines.append(f"option-ROM capabilities (0x33): 0x{rc['word']:04x} (not programmed)")
    lines.append("words 0x00-0x3f:")
    for row in range(0, 64, 8):
        lines.append("  %02x: " % row + " ".join("%04x" % x for x in words[row:row + 8]))
    return lines


_SET_RE = re.compile(r"^(0x[0-9a-fA-F]+|\d+)=(0x[0-9a-fA-F]+|\d+)$")


def parse_sets(items: list[str], size_words: int) -> dict[int, int]:
    out = {}
    for item in items:
        m = _SET_RE.match(item.strip())
        if not m:
            raise FlashError(f"bad word assignment {item!r}; write WORD=VALUE, e.g. 0x30=0x0100")
        addr, value = int(m.group(1), 0), int(m.group(2), 0)
        if not 0 <= addr < size_words:
            raise FlashError(f"word 0x{addr:x} is outside this NVM (0x0-0x{size_words - 1:x})")
        if addr == CHECKSUM_WORD:
            raise FlashError("word 0x3f is the checksum; romlab computes it (use fix-checksum)")
        if not 0 <= value <= 0xFFFF:
            raise FlashError(f"0x{value:x} does not fit in a 16-bit word")
        out[addr] = value
    return out


def plan_changes(words: list[int], sets: dict[int, int], fix_checksum: bool) -> dict[int, tuple[int, int]]:
    """{word: (old, new)} for the words that change, checksum included when it must."""
    new = list(words)
    for addr, value in sets.items():
        while addr >= len(new):
            raise FlashError(f"word 0x{addr:x} was not read")
        new[addr] = value
    if fix_checksum or any(a < CHECKSUM_WORD for a in sets):
        new[CHECKSUM_WORD] = checksum_word(new)
    return {a: (words[a], new[a]) for a in range(len(new)) if new[a] != words[a]}
