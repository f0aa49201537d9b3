"""Crash-safe file operations: write to a temp name beside the target, fsync, then rename.

A rename inside one directory is atomic on POSIX filesystems, so a reader (or a resumed writer)
sees either the old file or the complete new one, never a torn write. Temp names carry the
writer's pid so that two writers never share one and a resumed run can tell which leftovers
belong to a dead process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

TMP_MARK = ".tmp-"
_TMP_NAME = re.compile(r"^(?P<final>.+)\.tmp-(?P<pid>\d+)$")


def tmp_path(final: Path) -> Path:
    """The temp name under which ``final`` is built by this process."""
    return final.with_name(f"{final.name}{TMP_MARK}{os.getpid()}")


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (the renames into it), not only the files' contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Name ``path`` in an OSError raised without a file name (a failed ``write()`` names none)."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old or the new file, never half."""
    tmp = tmp_path(path)
    try:
        with naming(tmp), open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk must not keep the half-written temp
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())


def fsync_tree(directory: Path) -> None:
    """fsync every file in ``directory`` and the directory itself, before it is renamed."""
    for child in directory.iterdir():
        fd = os.open(child, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(directory)


def commit_dir(tmp: Path, final: Path) -> None:
    """Rename a fully written ``tmp`` directory to ``final`` so it appears all at once.

    A leftover ``final`` (recorded by a run that died before committing it to the manifest) is
    removed first: ``os.replace`` cannot replace a non-empty directory.
    """
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files/dirs left in ``directory`` by writers that are no longer running.

    Temps of live processes are kept: an orphaned worker of a killed run may still be finishing
    a shard, and its rename must not find its directory gone.
    """
    removed = []
    for child in directory.iterdir():
        match = _TMP_NAME.match(child.name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _pid_alive(pid):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child)
    return removed
