"""sha256 checks of stored files that stay cheap on large datasets.

Every file a training stage reads is checked against the sha256 its manifest records, but hashing a
multi-GB dataset on every run would cost more than many short runs train. So each file is hashed at
most once per process, and a result is reused across runs while the file's stamp, (size, mtime_ns,
ctime_ns), is unchanged: any write through the filesystem moves mtime and ctime, and ctime cannot be
set back, so a file rewritten in place and then given its old mtime (``touch -d``, ``cp -p``,
``rsync -t``) is hashed again, and so is every file of a copied dataset.

The results live beside the manifest they serve, in ``.verified.json`` (names relative to that
folder), rewritten atomically when a run learns something new. Where the folder is read-only the
file is not written, and each run hashes again. A result is remembered across runs only for a file
whose stamps were at least ``SETTLED_NS`` old when it was hashed: filesystems stamp times at a
coarse tick (milliseconds; whole seconds on some), so a file rewritten within the tick after it was
hashed could keep its stamps (git calls such an entry "racily clean").
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from worldsim.data.atomic import sha256_file, write_json_atomic

VERIFIED_NAME = ".verified.json"
VERIFIED_FORMAT = "worldsim-verified"
SETTLED_NS = 2_000_000_000  # a stamp this old cannot be repeated by a later write (2 s covers FAT's tick)

Stamp = tuple[int, int, int]  # size, mtime_ns, ctime_ns

#: This process's results, (absolute path, stamp) -> sha256: a file is hashed at most once per run.
_hashed: dict[tuple[str, Stamp], str] = {}


def _stamp(path: Path) -> Stamp:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _read_records(path: Path) -> dict[str, list[Any]]:
    """The remembered results in ``path``: name -> [size, mtime_ns, ctime_ns, sha256]; {} if unreadable."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict) or content.get("format") != VERIFIED_FORMAT:
        return {}
    files = content.get("files")
    if not isinstance(files, dict):
        return {}
    return {name: record for name, record in files.items() if isinstance(record, list) and len(record) == 4}


class ChecksumCache:
    """sha256 of the files under ``directory``, hashed only when their stamp is new.

    Call :meth:`save` after a batch of :meth:`sha256` calls to remember the results across runs.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._records = _read_records(self.directory / VERIFIED_NAME)
        self._learned: dict[str, list[Any]] = {}

    def sha256(self, path: Path) -> str:
        path = Path(path)
        stamp = _stamp(path)
        key = (os.path.abspath(path), stamp)
        if key in _hashed:
            return _hashed[key]
        name = os.path.relpath(path, self.directory)
        record = self._records.get(name)
        if record is not None and tuple(record[:3]) == stamp:
            _hashed[key] = record[3]
            return record[3]
        started = time.time_ns()
        digest = sha256_file(path)
        if _stamp(path) != stamp:  # written while we read it: the digest describes no version of it
            return digest
        _hashed[key] = digest
        if started - max(stamp[1], stamp[2]) >= SETTLED_NS:
            self._learned[name] = [*stamp, digest]
        return digest

    def save(self) -> None:
        """Remember this run's new results in ``.verified.json``; skipped where the folder is read-only."""
        if not self._learned:
            return
        path = self.directory / VERIFIED_NAME
        # Merge with what other processes (DDP ranks, another run) wrote since we read it.
        records = {**_read_records(path), **self._learned}
        try:
            write_json_atomic(path, {"format": VERIFIED_FORMAT, "files": records})
        except OSError:  # read-only or full: verification still happened, only its memory is lost
            return
        self._records, self._learned = records, {}


def first_mismatch(directory: Path, expected: Iterable[tuple[Path, str]]) -> Optional[Path]:
    """The first of ``expected``'s (path under ``directory``, sha256) pairs whose file differs, or None."""
    cache = ChecksumCache(directory)
    try:
        for path, sha256 in expected:
            if cache.sha256(path) != sha256:
                return Path(path)
        return None
    finally:
        cache.save()
