"""Atomic writes, file locks and the file hash: a file or a folder appears complete or not at all (a kill
leaves no half-written result), one process at a time works on what a lock guards, and a weights file has one
sha256 (written into a checkpoint's critkl.json, checked by the model store, part of an RL run's cache key).

The writes go into a temporary name in the destination's folder (same file system), then rename. The lock is
``flock``'s: the kernel releases it when its holder ends, however it ends (SIGKILL too), so a killed process
never leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable


def _tmp_name(path: Path) -> Path:
    # per process: two processes writing the same path do not share a temporary
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_file(path: Path, tmp: Path | None = None):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename. ``tmp``: a fixed
    temporary name, for a writer that holds a lock on ``path`` (a killed write's leftover is then overwritten
    by the next write, instead of one leftover per process)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp) if tmp is not None else _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: Path, tmp: Path | None = None):
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path`` (replacing an older
    one) in one rename. ``tmp``: a fixed temporary name, as for :func:`atomic_file`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp) if tmp is not None else _tmp_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_lock(path: Path, wait: bool = True, on_wait: Callable[[], None] | None = None):
    """Take the exclusive lock of ``path`` (created empty if missing, never written) and return it, held until
    it is closed: ``with file_lock(p): ...``. When another process holds it, ``wait`` blocks until that one
    lets go (calling ``on_wait()`` first, to say so), else BlockingIOError is raised at once. Errors come from
    this call, before the ``with`` body, so a caller can tell "busy" from its own errors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
    except BaseException:
        lock.close()
        raise
    return lock


def sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
