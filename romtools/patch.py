"""Change fields of an option ROM in memory: PCI IDs, the PCI 3.0 device list, class, the
last-image flag, $PnP strings. Every structure is re-built through its construct
declaration; the caller decides whether to fix checksums afterwards.

The device list can grow in three ways, tried in order: into zero or 0xFF padding that
follows its terminator, into the padding that ends the image if that starts within reach
of the list pointer (a 16-bit offset from the PCIR), or into 512 bytes appended to the
image (which then grows, with its size byte and PCIR ImageLength) when the image ends
within that reach. Zeros in the middle of an image may be live code or data, so no other
place is taken. When none works the list cannot grow and the patch is refused, naming
what does work: replacing an ID keeps the list's size. iPXE's legacy images are one such
case: the list sits between prefix code with no slack, the compressed payload runs to the
image's end, and the images are over 64 KiB, so their lists can only be rewritten in place.

No pointer in the ROM is trusted: an edit refuses a structure the walker found unsound (outside
its image, overlapping another, unterminated), every write is checked to stay inside the image it
edits, and ``result`` compares the new bytes with the old ones: each changed byte must lie in a
region an edit claimed (the structure itself, padding it took over, a block it appended), or the
patch is refused rather than written. The claims are in ``notes`` for the user to read.
"""
from __future__ import annotations

from hw.errors import FormatError
from romtools import schemas as S
from romtools.walker import Image, walk


class ListFull(FormatError):
    """The device list has no room to grow: no padding within the 16-bit pointer's reach, and an
    image too long for an appended block to be reached."""


class RomPatcher:
    def __init__(self, data: bytes):
        self.original = bytes(data)
        self.buf = bytearray(data)
        self.notes: list[str] = []
        # Regions edits may change, in current offsets: (start, end, what).
        self.claims: list[tuple[int, int, str]] = []
        # Blocks inserted into the buffer: (offset in the current buffer, length).
        self.inserted: list[tuple[int, int]] = []
        w = walk(bytes(self.buf))
        if w.stop.problem:
            raise FormatError(f"the ROM does not walk cleanly ({w.stop.message}); romlab patches only clean ROMs")
        self._findings = w.findings

    # -- guarded writes ---------------------------------------------------------------------

    def _sound(self, img: Image, *names: str) -> None:
        """Refuse to edit a structure the walker found outside its image or overlapping another."""
        for name in names:
            if name in img.unsound:
                why = next((f.message for f in self._findings if f.image == img.index and name in f.message), None)
                raise FormatError(f"image {img.index}: romlab will not edit the {name}: "
                               + (why.split(": ", 1)[-1] if why else "it is not sound")
                               + " (see 'romlab lint'); repair the pointer first")

    def _put(self, img: Image, at: int, data: bytes, what: str) -> None:
        """Write ``data`` at ``at``, which must lie inside ``img``; the region is claimed as ``what``."""
        end = img.offset + img.length
        if at < img.offset or at + len(data) > end:
            raise FormatError(f"image {img.index}: writing the {what} at 0x{at:x}-0x{at + len(data) - 1:x} would "
                           f"leave the image (0x{img.offset:x}-0x{end - 1:x}); nothing written")
        self.buf[at:at + len(data)] = data
        self.claims.append((at, at + len(data), what))

    def _free(self, img: Image, start: int, end: int, own: str) -> bool:
        """True when [start, end) is inside ``img`` and touches no structure but ``own``."""
        if start < img.offset or end > img.offset + img.length:
            return False
        return not any(name != own and a < end and start < b for name, a, b in img.spans)

    def _check_changes(self) -> None:
        """Every byte that differs from the input lies in a claimed region, or nothing is written."""
        new = self.buf
        # The input as it would look with the inserted blocks and nothing else changed.
        expected = bytearray(self.original)
        for at, n in sorted(self.inserted):
            expected[at:at] = new[at:at + n]
        if len(expected) != len(new):
            raise FormatError("the patch changed the ROM's size by more than the blocks it appended; nothing written")
        claims = sorted(self.claims)
        diff = []
        for c in range(0, len(new), 4096):  # compare by chunk, byte by byte only where a chunk differs
            if new[c:c + 4096] != expected[c:c + 4096]:
                diff += [i for i in range(c, min(c + 4096, len(new))) if new[i] != expected[i]]
        for i in diff:
            if not any(a <= i < b for a, b, _ in claims):
                raise FormatError(f"the patch would change byte 0x{i:x}, which belongs to no structure it edits; "
                               "nothing written (the ROM's pointers are probably inconsistent: see 'romlab lint')")

    def images(self) -> list[Image]:
        return walk(bytes(self.buf)).images

    def image(self, index: int) -> Image:
        imgs = self.images()
        if not 0 <= index < len(imgs):
            raise FormatError(f"image {index} does not exist: this ROM has images 0 to {len(imgs) - 1}")
        return imgs[index]

    def select(self, index: int | None) -> list[int]:
        imgs = self.images()
        if index is not None:
            self.image(index)
            return [index]
        # Every image: a non-PCI one still has $PnP strings to edit, and refuses PCIR edits by name.
        return [i.index for i in imgs]

    # -- PCIR ------------------------------------------------------------------------------

    def _write_pcir(self, img: Image, **changes) -> None:
        if img.pcir is None:
            raise FormatError(f"image {img.index} is a non-PCI option ROM with no PCIR to change")
        self._sound(img, "PCIR")
        schema = S.pcir_schema(img.pcir.revision)
        fields = {k: v for k, v in img.pcir.items() if not k.startswith("_") and k != "signature"}
        fields.update(changes)
        self._put(img, img.pcir_offset, schema.build(fields), "PCIR")

    def set_vendor(self, index: int, vendor: int) -> None:
        self._write_pcir(self.image(index), vendor_id=vendor)

    def set_device(self, index: int, device: int) -> None:
        img = self.image(index)
        old = img.pcir.device_id if img.pcir is not None else None
        self._write_pcir(img, device_id=device)
        img = self.image(index)
        ids = img.device_list
        if ids is None:
            return
        self._sound(img, "device list")
        if not ids or device in ids:
            return  # an empty list: the PCIR device ID alone names the device
        try:
            self.set_device_list(index, ids + [device])
            self.notes.append(f"image {index}: 0x{device:04x} joined the device list")
        except ListFull:
            if old not in ids:
                raise
            # No room to grow: the list keeps its size and names the new device instead of the old one
            # (the change lines say so: "device list: 100e -> 10c9").
            self.set_device_list(index, [device if d == old else d for d in ids])

    def set_class(self, index: int, class_code: int) -> None:
        self._write_pcir(self.image(index), class_code=class_code)

    def set_last(self, index: int, last: bool) -> None:
        img = self.image(index)
        if img.pcir is None:
            raise FormatError(f"image {index} is a non-PCI option ROM: it has no PCIR, so no last-image flag")
        ind = (img.pcir.indicator & ~S.LAST_IMAGE) | (S.LAST_IMAGE if last else 0)
        self._write_pcir(img, indicator=ind)

    # -- device list -------------------------------------------------------------------------

    def add_device(self, index: int, device: int) -> None:
        img = self.image(index)
        current = img.device_list or []
        if device in current:
            self.notes.append(f"image {index}: 0x{device:04x} is already in the device list")
            return
        try:
            self.set_device_list(index, current + [device])
        except ListFull as exc:
            pcir_dev = img.pcir.device_id
            way = (f"--device {device:04x} makes it the PCIR device and puts it in the list in place of "
                   f"{pcir_dev:04x}" if pcir_dev in current else
                   f"--remove-device {current[-1]:04x} --add-device {device:04x} swaps it for a listed ID"
                   if current else f"--device {device:04x} makes it the PCIR device")
            build = (f", or build a ROM that lists it (iPXE: make bin/{img.pcir.vendor_id:04x}{device:04x}.rom)"
                     if img.ipxe is not None and img.pcir.vendor_id else "")
            raise ListFull(f"{exc}; {way} (the list keeps its size){build}") from None

    def remove_device(self, index: int, device: int) -> None:
        img = self.image(index)
        current = img.device_list or []
        if device not in current:
            raise FormatError(f"image {index}: 0x{device:04x} is not in the device list "
                           f"({', '.join(f'0x{d:04x}' for d in current) or 'empty'})")
        self.set_device_list(index, [d for d in current if d != device])

    def set_device_list(self, index: int, ids: list[int]) -> None:
        img = self.image(index)
        if img.pcir is None or img.pcir.revision < 3:
            raise FormatError(f"image {index} has a revision-{img.pcir.revision if img.pcir else 'less'} PCIR, which "
                           "has no device list; only PCI 3.0 (revision 3) images carry one")
        if 0 in ids:
            raise FormatError("device ID 0 cannot be listed: it ends the PCI 3.0 device list")
        self._sound(img, "PCIR", "device list")
        new = b"".join(S.DeviceListEntry.build(d) for d in ids) + S.DeviceListEntry.build(0)
        old_at = img.device_list_offset if img.pcir.device_list_offset else None
        old_len = (len(img.device_list) + 1) * 2 if old_at is not None and img.device_list is not None else 0
        if old_at is not None and len(new) <= old_len:
            self._put(img, old_at, new + bytes(old_len - len(new)), "device list")
            return
        at = self._room_for_list(img, old_at, old_len, len(new))
        img = self.image(index)
        if old_at is not None and at != old_at:
            self._put(img, old_at, bytes(old_len), "device list (old place, cleared)")
        self._put(img, at, new, "device list")
        if at != old_at:
            img = self.image(index)
            self._write_pcir(img, device_list_offset=at - img.pcir_offset)

    def _room_for_list(self, img: Image, old_at: int | None, old_len: int, need: int) -> int:
        end = img.offset + img.length
        reach = img.pcir_offset + 0xFFFF  # a 16-bit offset from the PCIR
        # 1. in place, into zero or 0xFF padding after the terminator.
        if old_at is not None:
            extra = bytes(self.buf[old_at + old_len:old_at + need])
            if old_at + need <= end and extra and len(set(extra)) == 1 and extra[0] in (0, 0xFF) \
                    and self._free(img, old_at + old_len, old_at + need, "device list"):
                self.notes.append(f"image {img.index}: the device list took {need - old_len} bytes of padding after "
                                  f"it (0x{old_at + old_len:x}-0x{old_at + need - 1:x})")
                return old_at
        # 2. the padding that ends the image (zeros inside it may be live data, so only the tail counts).
        tail = end
        while tail > img.pcir_offset and self.buf[tail - 1] in (0x00, 0xFF) and self.buf[tail - 1] == self.buf[end - 1]:
            tail -= 1
        pos = tail + 2 + (tail & 1)  # keep a byte of the padding, word-align
        # ... and never the image's last byte, where --checksum-byte last puts the legacy checksum.
        if pos + need <= end - 1 and pos <= reach and self._free(img, pos, pos + need, "device list"):
            self.notes.append(f"image {img.index}: the device list moved into the padding at the image's end "
                              f"(0x{pos:x}-0x{pos + need - 1:x})")
            return pos
        # 3. grow the image by one block: only when the block's start is within the pointer's reach.
        if end > reach:
            where = f"at 0x{old_at:x} " if old_at is not None else ""
            raise ListFull(f"image {img.index}: the device list {where}cannot grow to {need} bytes: no padding follows "
                           "it, none ends the image within reach, and a block appended at the image's end "
                           f"(0x{end:x}) would be past the 16-bit list pointer's reach (PCIR 0x{img.pcir_offset:x} "
                           "+ 0xFFFF)")
        self._sound(img, "ROM header")
        self._grow(img, S.BLOCK)
        return end

    def _grow(self, img: Image, extra: int) -> None:
        end = img.offset + img.length
        fill = b"\xff" if img.header_kind == "efi" else b"\x00"
        self.buf[end:end] = fill * extra
        self.claims = [(a + extra if a >= end else a, b + extra if b > end else b, w) for a, b, w in self.claims]
        self.inserted = [(a + extra if a >= end else a, n) for a, n in self.inserted] + [(end, extra)]
        self.claims.append((end, end + extra, "appended block"))
        blocks = (img.length + extra) // S.BLOCK
        if img.header_kind == "legacy":
            if blocks > 0xFF:
                raise FormatError(f"image {img.index} would need {blocks} blocks, more than a legacy header's size "
                               "byte holds")
            self.buf[img.offset + 2] = blocks
            self.claims.append((img.offset + 2, img.offset + 3, "size byte"))
        elif img.header_kind == "efi" and img.header.init_size * S.BLOCK == img.length:
            self.buf[img.offset + 2:img.offset + 4] = blocks.to_bytes(2, "little")
            self.claims.append((img.offset + 2, img.offset + 4, "initialization size"))
        img.length += extra
        self._write_pcir(img, image_length=blocks)
        self.notes.append(f"image {img.index} grew by {extra} bytes to hold the device list "
                          f"(a block appended at 0x{end:x})")

    # -- $PnP strings ---------------------------------------------------------------------------

    def set_pnp_string(self, index: int, which: str, text: str) -> None:
        img = self.image(index)
        if img.pnp is None:
            raise FormatError(f"image {index} has no $PnP header")
        ptr = getattr(img.pnp, f"{which}_ptr")
        if not ptr:
            raise FormatError(f"image {index}: the $PnP header has no {which} string to replace")
        name = f"$PnP {which} string"
        self._sound(img, "$PnP header", name)
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise FormatError(f"the {which} string must be plain ASCII") from None
        if b"\0" in raw:
            raise FormatError(f"the {which} string cannot contain a NUL byte")
        at = img.offset + ptr
        old = img.pnp_strings.get(which) or ""
        room = len(old)
        # Trailing NULs after the old string are free room too, up to the next structure.
        pos = at + len(old) + 1
        while pos < img.offset + img.length and self.buf[pos] == 0 and room < 255 \
                and self._free(img, pos, pos + 1, name):
            room += 1
            pos += 1
        if len(raw) > room:
            raise FormatError(f"the new {which} string is {len(raw)} characters; the ROM has room for {room} at "
                           f"0x{at:x}")
        new = (raw + b"\0").ljust(len(old) + 1, b"\0")
        self._put(img, at, new, name)
        if len(raw) > len(old):
            self.notes.append(f"image {index}: the {which} string took {len(raw) - len(old)} bytes of the NUL "
                              f"padding after it (to 0x{at + len(raw):x})")

    def result(self) -> bytes:
        """The patched ROM, once every change is shown to lie where an edit claimed it."""
        self._check_changes()
        return bytes(self.buf)
