"""Backups of whole chips and the journal of a write in progress.

Every write starts with a backup: the whole chip, read so that each piece was
seen identically twice, stored as ``<time>-<jedec>-<sha8>.bin`` with a JSON
record beside it (programmer, chip, JEDEC ID, size, sha256, time, the PCI IDs of
the ROM it held and of the ROM being written). The directory is
``$ROMLAB_BACKUP_DIR``, else ``$XDG_DATA_HOME/romlab/backups``, else
``~/.local/share/romlab/backups``.

A write in progress keeps a journal in the same directory: ``journal-<time>-<jedec>.jsonl``
(a header naming the chip, the backup and the sha256 of the image being written, then one line
per finished block, each flushed to disk) and the image itself beside it (``.target``). A journal
belongs to a chip, never to the way the chip is reached (a serial port, a TCP port, a PCI
address): it matches a chip when the JEDEC ID and size agree and every sector of the chip holds
either the backup's bytes or the new image's, or is on its way from one to the other (erased,
or partly programmed towards the image). Every record read back is checked against the shape
it must have before anything in it is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from hw.errors import FlashError, RomlabError


def backup_dir() -> Path:
    """Absolute, so a journal names its backup the same way from whatever directory romlab runs in."""
    env = os.environ.get("ROMLAB_BACKUP_DIR")
    if env:
        return Path(env).resolve()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return (Path(data) / "romlab" / "backups").resolve()


# Records, journals and layout files are small; a chip image is at most this large.
MAX_RECORD = 1 << 20
MAX_IMAGE = 64 << 20


def read_file(path: Path, what: str, limit: int = MAX_RECORD) -> bytes:
    """A regular file of at most ``limit`` bytes; a FIFO, device or larger file is refused in one line."""
    import stat

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise FlashError(f"{what} {path} is not a regular file (a FIFO or device would block or never end)")
        if st.st_size > limit:
            raise FlashError(f"{what} {path} is {st.st_size} bytes, more than a {what} can be; it is damaged")
        with open(path, "rb") as fh:
            return fh.read(limit + 1)[:limit]
    except OSError as exc:
        raise FlashError(f"cannot read {what} {path}: {exc.strerror}") from None


def _ensure(d: Path) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlashError(f"cannot create backup directory {d}: {exc.strerror}; set ROMLAB_BACKUP_DIR") from None
    return d


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save(data: bytes, record: dict) -> Path:
    d = _ensure(backup_dir())
    sha = hashlib.sha256(data).hexdigest()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = f"{stamp}-{record.get('jedec', 'unknown')}-{sha[:8]}"
    path = d / f"{base}.bin"
    n = 1
    while path.exists():
        path = d / f"{base}-{n}.bin"
        n += 1
    rec = dict(record, size=len(data), sha256=sha, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               file=path.name)
    _fsync_write(path, data)
    _fsync_write(path.with_suffix(".json"), (json.dumps(rec, indent=2) + "\n").encode())
    return path


BACKUP_RECORD = {"chip": str, "jedec": str, "size": int, "sha256": str}
JOURNAL_HEADER = {"chip": str, "jedec": str, "size": int, "target_sha256": str, "backup": str, "layout": str,
                  "region": list}
JOURNAL_LINE = {"done": int, "size": int}


def check_record(record, shape: dict, what: str) -> dict:
    """``record`` if it is a JSON object with every key of ``shape`` of the right type; else one line."""
    if not isinstance(record, dict):
        raise FlashError(f"{what} is not a JSON object; it is not a romlab record")
    for key, kind in shape.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FlashError(f"{what} has no valid {key!r} ({kind.__name__} expected); it is not a romlab record "
                           "or it is damaged")
    return record


def _read_json(path: Path, what: str):
    raw = read_file(path, what)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FlashError(f"{what} {path} is not valid JSON; it is not a romlab record or it is damaged") from None


def load(path: str | Path) -> tuple[bytes, dict]:
    """A backup's bytes and record, checked against each other."""
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".bin")
    record_path = p.with_suffix(".json")
    if not record_path.exists():
        raise FlashError(f"{record_path} is missing: a backup is a .bin with its .json record beside it, and "
                       f"{p.name} has none" + ("" if p.exists() else f" ({p} does not exist either)"))
    record = check_record(_read_json(record_path, "backup record"), BACKUP_RECORD, f"backup record {record_path}")
    try:
        if not p.is_file() or p.stat().st_size != record["size"]:
            raise FlashError(f"backup {p} is not a file of the {record['size']} bytes its record gives; it is damaged "
                           "or not a romlab backup")
        data = p.read_bytes()
    except OSError as exc:
        raise FlashError(f"cannot read backup {p}: {exc.strerror} (a backup is a .bin with its .json record)") from None
    if hashlib.sha256(data).hexdigest() != record["sha256"] or len(data) != record["size"]:
        raise FlashError(f"backup {p} does not match its record (sha256/size differ); it is damaged")
    return data, record


class Journal:
    """One interrupted-or-running write: the header, the finished blocks, and the image being written."""

    def __init__(self, path: Path):
        self.path = path
        self.target_path = path.with_suffix(".target")
        self._fh = None

    @classmethod
    def new(cls, jedec: str) -> "Journal":
        d = _ensure(backup_dir())
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path, n = d / f"journal-{stamp}-{jedec}.jsonl", 1
        while path.exists():
            path, n = d / f"journal-{stamp}-{jedec}-{n}.jsonl", n + 1
        return cls(path)

    @classmethod
    def all(cls) -> list["Journal"]:
        d = backup_dir()
        return [cls(p) for p in sorted(d.glob("journal-*.jsonl"))] if d.is_dir() else []

    def start(self, header: dict, target: bytes) -> None:
        _ensure(self.path.parent)
        _fsync_write(self.target_path, target)
        _fsync_write(self.path, (json.dumps(header) + "\n").encode())
        self._fh = open(self.path, "a")

    def done(self, start: int, size: int) -> None:
        self._fh.write(json.dumps({"done": start, "size": size}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def read(self) -> tuple[dict, list[tuple[int, int]]]:
        """The checked header and the finished blocks (a last line cut short by a crash is ignored)."""
        try:
            lines = read_file(self.path, "journal").decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise FlashError(f"journal {self.path} is not text; it is damaged") from None
        if not lines:
            raise FlashError(f"journal {self.path} is empty; it is damaged")
        try:
            header = json.loads(lines[0])
        except ValueError:
            raise FlashError(f"journal {self.path} does not start with a JSON header; it is damaged") from None
        check_record(header, JOURNAL_HEADER, f"journal {self.path}")
        region = header["region"]
        if len(region) != 2 or not all(isinstance(x, int) for x in region) or not 0 <= region[0] <= region[1] \
                <= header["size"]:
            raise FlashError(f"journal {self.path} has a region that does not fit its chip; it is damaged")
        done = []
        for line in lines[1:]:
            try:
                entry = check_record(json.loads(line), JOURNAL_LINE, "journal line")
            except (ValueError, RomlabError):
                break           # a line cut short by the interruption
            done.append((entry["done"], entry["size"]))
        return header, done

    def target(self, header: dict) -> bytes:
        """The image this journal was writing, checked against its header."""
        data = read_file(self.target_path, "journal image", MAX_IMAGE)
        if len(data) != header["size"] or hashlib.sha256(data).hexdigest() != header["target_sha256"]:
            raise FlashError(f"{self.target_path} does not match its journal; it is damaged")
        return data

    def matches(self, jedec: str, size: int, current: bytes, sector: int, block: int = 65536) -> bool:
        """True when the chip holds this journal's write: same part, and sector by sector

        - every block the journal logged as done holds the new image;
        - every other sector holds the backup or the new image, except one run of at most ``block``
          bytes that the write stopped in, whose bytes may only be on their way from the backup to the
          image: partly erased (bits of the backup set to 1) or partly programmed (the image's 1 bits
          still set). A blank chip or a twin of the backed-up chip of the same part therefore does not
          match once the write had finished a block.

        Raises when this journal cannot be checked (its backup or image is gone or damaged).
        """
        header, done = self.read()
        if header["jedec"] != jedec or header["size"] != size or len(current) != size:
            return False
        original, _ = load(header["backup"])
        target = self.target(header)
        if len(original) != size:
            return False
        done_sectors = {s for start, length in done for s in range(start // sector, (start + length + sector - 1) // sector)}
        stopped_in = []
        for i, at in enumerate(range(0, size, sector)):
            piece, new, old = current[at:at + sector], target[at:at + sector], original[at:at + sector]
            if i in done_sectors:
                if piece != new:
                    return False
                continue
            if piece == new or piece == old:
                continue
            if any((b & t) != t and (b | o) != b for b, t, o in zip(piece, new, old)):
                return False
            stopped_in.append(i)
        if stopped_in and ((stopped_in[-1] - stopped_in[0] + 1) * sector > block
                           or len(stopped_in) != stopped_in[-1] - stopped_in[0] + 1):
            return False
        return True

    def reopen(self) -> None:
        self._fh = open(self.path, "a")

    def finish(self) -> None:
        """The write is over (done, or moot): the journal and its image go."""
        self.close()
        for p in (self.path, self.target_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


def pending_for(jedec: str, size: int, current: bytes, sector: int) -> tuple[Journal | None, list[str]]:
    """The journal whose write this chip holds, if any; and, one line each, the journals that could not
    be checked (unreadable, or naming a backup or image that is gone): a plain write must not go on
    while one of those might be this chip's."""
    unchecked = []
    for j in Journal.all():
        try:
            if j.matches(jedec, size, current, sector):
                return j, unchecked
        except FlashError as exc:
            unchecked.append(f"{j.path}: {exc}")
    return None, unchecked
