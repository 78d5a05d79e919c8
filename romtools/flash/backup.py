"""Backups of whole chips and the journal of a write in progress.

Every write starts with a backup: the whole chip, read so that each piece was
seen identically twice, stored as ``<time>-<jedec>-<sha8>.bin`` with a JSON
record beside it (programmer, chip, JEDEC ID, size, sha256, time, the PCI IDs of
the ROM it held and of the ROM being written). The directory is
``$ROMLAB_BACKUP_DIR``, else ``$XDG_DATA_HOME/romlab/backups``, else
``~/.local/share/romlab/backups``.

The journal (``journal-<key>.jsonl`` in the same directory, one per programmer)
names the backup and the sha256 of the image being written, then gets one line
per finished block, flushed to disk. ``--resume`` reads it back.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from romtools.errors import RomError


def backup_dir() -> Path:
    env = os.environ.get("ROMLAB_BACKUP_DIR")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "romlab" / "backups"


def _ensure(d: Path) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RomError(f"cannot create backup directory {d}: {exc.strerror}; set ROMLAB_BACKUP_DIR") from None
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


def load(path: str | Path) -> tuple[bytes, dict]:
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".bin")
    try:
        data = p.read_bytes()
        record = json.loads(p.with_suffix(".json").read_text())
    except OSError as exc:
        raise RomError(f"cannot read backup {p}: {exc.strerror} (a backup is a .bin with its .json record)") from None
    except ValueError:
        raise RomError(f"backup record {p.with_suffix('.json')} is not valid JSON") from None
    if hashlib.sha256(data).hexdigest() != record.get("sha256") or len(data) != record.get("size"):
        raise RomError(f"backup {p} does not match its record (sha256/size differ); it is damaged")
    return data, record


class Journal:
    def __init__(self, programmer: str):
        key = hashlib.sha256(programmer.encode()).hexdigest()[:12]
        self.path = backup_dir() / f"journal-{key}.jsonl"
        self.programmer = programmer

    def exists(self) -> bool:
        return self.path.exists()

    def start(self, header: dict) -> None:
        _ensure(self.path.parent)
        _fsync_write(self.path, (json.dumps(dict(header, programmer=self.programmer)) + "\n").encode())
        self._fh = open(self.path, "a")

    def done(self, start: int, size: int) -> None:
        self._fh.write(json.dumps({"done": start, "size": size}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def read(self) -> tuple[dict, list[tuple[int, int]]]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            raise RomError(f"no interrupted write to resume for this programmer ({self.path} is missing)") from None
        header = json.loads(lines[0])
        done = []
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                break           # a line cut short by the interruption
            done.append((entry["done"], entry["size"]))
        return header, done

    def reopen(self) -> None:
        self._fh = open(self.path, "a")

    def finish(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh:
            fh.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh:
            fh.close()
            self._fh = None
