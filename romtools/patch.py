"""Change fields of an option ROM in memory: PCI IDs, the PCI 3.0 device list, class, the
last-image flag, $PnP strings. Every structure is re-built through its construct
declaration; the caller decides whether to fix checksums afterwards.

The device list can grow in three ways, tried in order: into padding that follows
its terminator, into a run of padding elsewhere in the image within reach of the
16-bit offset, or into 512 bytes appended to the image (which then grows, with its
size byte and PCIR ImageLength). When none works the list cannot grow and the
patch is refused.
"""
from __future__ import annotations

from romtools import schemas as S
from romtools.errors import RomError
from romtools.walker import Image, walk


class RomPatcher:
    def __init__(self, data: bytes):
        self.buf = bytearray(data)
        self.notes: list[str] = []
        w = walk(bytes(self.buf))
        if w.stop.problem:
            raise RomError(f"the ROM does not walk cleanly ({w.stop.message}); romlab patches only clean ROMs")

    def images(self) -> list[Image]:
        return walk(bytes(self.buf)).images

    def image(self, index: int) -> Image:
        imgs = self.images()
        if not 0 <= index < len(imgs):
            raise RomError(f"image {index} does not exist: this ROM has images 0 to {len(imgs) - 1}")
        return imgs[index]

    def select(self, index: int | None) -> list[int]:
        imgs = self.images()
        if index is not None:
            self.image(index)
            return [index]
        return [i.index for i in imgs if i.pci]

    # -- PCIR ------------------------------------------------------------------------------

    def _write_pcir(self, img: Image, **changes) -> None:
        if img.pcir is None:
            raise RomError(f"image {img.index} is a non-PCI option ROM with no PCIR to change")
        schema = S.pcir_schema(img.pcir.revision)
        fields = {k: v for k, v in img.pcir.items() if not k.startswith("_") and k != "signature"}
        fields.update(changes)
        self.buf[img.pcir_offset:img.pcir_offset + schema.sizeof()] = schema.build(fields)

    def set_vendor(self, index: int, vendor: int) -> None:
        self._write_pcir(self.image(index), vendor_id=vendor)

    def set_device(self, index: int, device: int) -> None:
        img = self.image(index)
        old = img.pcir.device_id if img.pcir is not None else None
        self._write_pcir(img, device_id=device)
        img = self.image(index)
        ids = img.device_list
        if ids is None or device in ids:
            return
        try:
            self.set_device_list(index, ids + [device])
            self.notes.append(f"image {index}: 0x{device:04x} joined the device list")
        except RomError:
            if old not in ids:
                raise
            # No room to grow: the list keeps its size and names the new device instead of the old one.
            self.set_device_list(index, [device if d == old else d for d in ids])
            self.notes.append(f"image {index}: the device list has no room to grow, so 0x{device:04x} replaced "
                              f"0x{old:04x} in it")

    def set_class(self, index: int, class_code: int) -> None:
        self._write_pcir(self.image(index), class_code=class_code)

    def set_last(self, index: int, last: bool) -> None:
        img = self.image(index)
        ind = (img.pcir.indicator & ~S.LAST_IMAGE) | (S.LAST_IMAGE if last else 0)
        self._write_pcir(img, indicator=ind)

    # -- device list -------------------------------------------------------------------------

    def add_device(self, index: int, device: int) -> None:
        img = self.image(index)
        current = img.device_list or []
        if device in current:
            self.notes.append(f"image {index}: 0x{device:04x} is already in the device list")
            return
        self.set_device_list(index, current + [device])

    def remove_device(self, index: int, device: int) -> None:
        img = self.image(index)
        current = img.device_list or []
        if device not in current:
            raise RomError(f"image {index}: 0x{device:04x} is not in the device list "
                           f"({', '.join(f'0x{d:04x}' for d in current) or 'empty'})")
        self.set_device_list(index, [d for d in current if d != device])

    def set_device_list(self, index: int, ids: list[int]) -> None:
        img = self.image(index)
        if img.pcir is None or img.pcir.revision < 3:
            raise RomError(f"image {index} has a revision-{img.pcir.revision if img.pcir else 'less'} PCIR, which "
                           "has no device list; only PCI 3.0 (revision 3) images carry one")
        if 0 in ids:
            raise RomError("device ID 0 cannot be listed: it ends the PCI 3.0 device list")
        new = b"".join(S.DeviceListEntry.build(d) for d in ids) + S.DeviceListEntry.build(0)
        old_at = img.device_list_offset
        old_len = (len(img.device_list) + 1) * 2 if img.device_list is not None else 0
        if old_at is not None and len(new) <= old_len:
            self.buf[old_at:old_at + old_len] = new + bytes(old_len - len(new))
            return
        at = self._room_for_list(img, old_at, old_len, len(new))
        if old_at is not None and at != old_at:
            self.buf[old_at:old_at + old_len] = bytes(old_len)
        self.buf[at:at + len(new)] = new
        img = self.image(index)
        self._write_pcir(img, device_list_offset=at - img.pcir_offset)

    def _room_for_list(self, img: Image, old_at: int | None, old_len: int, need: int) -> int:
        end = img.offset + img.length
        reach = img.pcir_offset + 0xFFFF  # a 16-bit offset from the PCIR
        # 1. in place, into zero or 0xFF padding after the terminator.
        if old_at is not None:
            extra = bytes(self.buf[old_at + old_len:old_at + need])
            if old_at + need <= end and extra and len(set(extra)) == 1 and extra[0] in (0, 0xFF):
                return old_at
        # 2. the padding that ends the image (zeros inside it may be live data, so only the tail counts).
        tail = end
        while tail > img.pcir_offset and self.buf[tail - 1] in (0x00, 0xFF) and self.buf[tail - 1] == self.buf[end - 1]:
            tail -= 1
        pos = tail + 2 + (tail & 1)  # keep a byte of the padding, word-align
        if pos + need <= end and pos <= reach:
            return pos
        # 3. grow the image by one block.
        if end > reach:
            raise RomError(f"image {img.index}: the device list cannot grow: no padding to hold {need} bytes within "
                           f"0xFFFF of the PCIR, and the image ({img.length} bytes) is too large to append to")
        self._grow(img, S.BLOCK)
        return end

    def _grow(self, img: Image, extra: int) -> None:
        end = img.offset + img.length
        fill = b"\xff" if img.header_kind == "efi" else b"\x00"
        self.buf[end:end] = fill * extra
        blocks = (img.length + extra) // S.BLOCK
        if img.header_kind == "legacy":
            if blocks > 0xFF:
                raise RomError(f"image {img.index} would need {blocks} blocks, more than a legacy header's size "
                               "byte holds")
            self.buf[img.offset + 2] = blocks
        elif img.header_kind == "efi" and img.header.init_size * S.BLOCK == img.length:
            self.buf[img.offset + 2:img.offset + 4] = blocks.to_bytes(2, "little")
        self._write_pcir(img, image_length=blocks)
        self.notes.append(f"image {img.index} grew by {extra} bytes to hold the device list")

    # -- $PnP strings ---------------------------------------------------------------------------

    def set_pnp_string(self, index: int, which: str, text: str) -> None:
        img = self.image(index)
        if img.pnp is None:
            raise RomError(f"image {index} has no $PnP header")
        ptr = getattr(img.pnp, f"{which}_ptr")
        if not ptr:
            raise RomError(f"image {index}: the $PnP header has no {which} string to replace")
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise RomError(f"the {which} string must be plain ASCII") from None
        if b"\0" in raw:
            raise RomError(f"the {which} string cannot contain a NUL byte")
        at = img.offset + ptr
        old = img.pnp_strings.get(which) or ""
        room = len(old)
        # Trailing NULs after the old string are free room too.
        pos = at + len(old) + 1
        while pos < img.offset + img.length and self.buf[pos] == 0 and room < 255:
            room += 1
            pos += 1
        if len(raw) > room:
            raise RomError(f"the new {which} string is {len(raw)} characters; the ROM has room for {room} at "
                           f"0x{at:x}")
        self.buf[at:at + len(old) + 1] = bytes(len(old) + 1)
        self.buf[at:at + len(raw) + 1] = raw + b"\0"

    def result(self) -> bytes:
        return bytes(self.buf)
