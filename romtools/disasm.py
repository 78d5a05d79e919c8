"""Real-mode disassembly of option-ROM entry points with capstone.

Code in a legacy image runs with CS at the image's first byte, so instructions
are decoded with image-relative addresses (near jumps then land where the CPU
would) and shown as ROM file offsets. The listing follows the first
unconditional jump, because an init or BEV entry is almost always a jump to
the real routine, and stops at a return or after ``count`` instructions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hw.errors import FormatError
from romtools.walker import Walk

_JUMPS = {"jmp"}
_ENDS = {"ret", "retf", "iret", "retn", "hlt", "lret", "ljmp"}


@dataclass
class Instruction:
    offset: int  # ROM file offset
    raw: bytes
    mnemonic: str
    op_str: str

    def as_dict(self):
        return {"offset": self.offset, "bytes": self.raw.hex(), "mnemonic": self.mnemonic, "op_str": self.op_str}


@dataclass
class Listing:
    image: int
    entry: str
    start: int
    instructions: list[Instruction] = field(default_factory=list)
    followed: tuple[int, int] | None = None  # (jump offset, target offset)

    def as_dict(self):
        return {"image": self.image, "entry": self.entry, "start": self.start,
                "followed": None if self.followed is None else {"from": self.followed[0], "to": self.followed[1]},
                "instructions": [i.as_dict() for i in self.instructions]}


def _capstone():
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    return md


def disassemble(code: bytes, image_offset: int, start: int, count: int, follow: bool = True) -> Listing:
    """Disassemble ``code`` (one image) from image-relative ``start``; offsets reported are file offsets."""
    md = _capstone()
    listing = Listing(-1, "", image_offset + start)
    pc = start
    jumped = not follow
    while len(listing.instructions) < count and 0 <= pc < len(code):
        ins = next(md.disasm(code[pc:pc + 16], pc, 1), None)
        if ins is None:
            listing.instructions.append(Instruction(image_offset + pc, code[pc:pc + 1], "(bad)", ""))
            break
        listing.instructions.append(Instruction(image_offset + pc, bytes(ins.bytes), ins.mnemonic, ins.op_str))
        if ins.mnemonic in _ENDS:
            break
        if not jumped and ins.mnemonic in _JUMPS and ins.op_str.startswith("0x"):
            target = int(ins.op_str, 16) & 0xFFFF
            listing.followed = (image_offset + pc, image_offset + target)
            jumped = True
            pc = target
            continue
        if ins.mnemonic in _JUMPS:
            break
        pc += ins.size
    return listing


def disassemble_entry(walk: Walk, data: bytes, image: int, entry: str, count: int = 32) -> Listing:
    if count <= 0:
        raise FormatError("--count must be a positive number of instructions")
    if not 0 <= image < len(walk.images):
        raise FormatError(f"image {image} does not exist: this ROM has images 0 to {len(walk.images) - 1}")
    img = walk.images[image]
    if img.header_kind != "legacy":
        raise FormatError(f"image {image} is {img.kind}, not x86 real-mode code; disasm works on legacy images")
    found = next((e for e in img.entries if e.name == entry), None)
    if found is None:
        have = ", ".join(e.name for e in img.entries if e.target is not None) or "none"
        raise FormatError(f"image {image} has no {entry} entry point (it has: {have})")
    code = bytes(data[img.offset:img.offset + img.available])
    start = (found.pointer_offset if entry == "init" else found.target) - img.offset
    if not 0 <= start < len(code):
        raise FormatError(f"the {entry} entry 0x{start:x} lies outside image {image}")
    listing = disassemble(code, img.offset, start, count)
    listing.image, listing.entry = image, entry
    return listing
