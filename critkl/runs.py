"""Run folders: one mechanism for cached, resumable, atomically finished runs (pre-training and RL).

A run is identified by its config's cache key (``critkl.config.cache_key``). Its files:

- ``<root>/<name>/``: the finished run, complete by construction (it appears in one rename).
- ``<root>/<name>.partial/state.pt``: the resumable state (weights, optimizer, every RNG state, logs),
  replaced atomically at each checkpoint, so a kill at any moment leaves the last good state.
- ``<root>/<name>.staging/``: the finished run being written, just before its rename.
- ``<root>/.locks/<name>.lock``: a lock held while a process works on the run. A second process asking for
  the same run waits for it, then reuses the result; different runs do not wait for each other.

The trainers (``critkl.pretrain``, ``critkl.rl``) only say *what* to save; this module says *how* (with the
atomic writes and the lock of ``critkl.fileio``).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .fileio import atomic_dir, atomic_file, file_lock


class RunFolderError(OSError):
    """The cache cannot be written (read-only, full, ...): the message names the path."""


def _io_error(action: str, path: Path, e: OSError) -> RunFolderError:
    hint = " (the disk is full)" if e.errno == errno.ENOSPC else ""
    return RunFolderError(e.errno or 0, f"cannot {action} {str(path)!r}: {e.strerror or e}{hint}; "
                          "the last good state is kept; set CRITKL_HOME to a writable folder")


@dataclass
class RunFolder:
    """A cached, resumable run: ``final`` is the finished folder, ``marker`` the file that only a
    finished run has."""

    final: Path
    marker: str

    @property
    def partial(self) -> Path:
        return self.final.with_name(self.final.name + ".partial")

    @property
    def staging(self) -> Path:
        return self.final.with_name(self.final.name + ".staging")

    @property
    def state_file(self) -> Path:
        return self.partial / "state.pt"

    @property
    def lock_file(self) -> Path:
        return self.final.parent / ".locks" / (self.final.name + ".lock")

    def done(self) -> bool:
        return (self.final / self.marker).is_file()

    # ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def claim(self, quiet: bool = False):
        """Hold the run's lock (waiting for another process that holds it) and clear leftovers: a stale
        ``.staging``, and a ``.partial`` left by a kill between the final rename and its removal."""
        waiting = f"critkl: another process is working on {self.final.name}; waiting for it"
        try:
            lock = file_lock(self.lock_file, on_wait=None if quiet else lambda: print(waiting, file=sys.stderr))
        except OSError as e:
            raise _io_error("create the run lock", self.lock_file, e) from e
        with lock:
            shutil.rmtree(self.staging, ignore_errors=True)
            if self.done():
                shutil.rmtree(self.partial, ignore_errors=True)
            yield self

    # ---------------------------------------------------------------------------------------------
    def load_state(self, device) -> dict | None:
        """The resumable state, or None when the run starts from scratch."""
        from .model import CheckpointError
        if not self.state_file.is_file():
            return None
        try:
            return torch.load(self.state_file, map_location=device, weights_only=False)
        except Exception as e:
            raise CheckpointError(f"resumable state {str(self.state_file)!r} is unreadable ({e}); delete "
                                  f"{str(self.partial)!r} to restart this run from scratch") from e

    def save_state(self, state: dict) -> None:
        """Replace the resumable state atomically (write a temporary file, fsync, rename)."""
        try:
            with atomic_file(self.state_file, tmp=self.partial / "state.tmp") as tmp, open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _io_error("write the resumable state", self.state_file, e) from e

    def finish(self, write: Callable[[Path], None]) -> Path:
        """Let ``write(folder)`` fill the staging folder, then move it into place in one rename and drop
        the partial state. Returns the finished folder."""
        try:
            with atomic_dir(self.final, tmp=self.staging) as staging:
                write(staging)
        except OSError as e:
            raise _io_error("write the finished run", self.final, e) from e
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.final


# -------------------------------------------------------------------------------------------------
def rng_state(numpy_rng: np.random.Generator | None = None, **generators: torch.Generator) -> dict:
    """Every RNG state a run depends on: torch's global (and CUDA's), a numpy generator, named torch
    generators."""
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                numpy=numpy_rng.bit_generator.state if numpy_rng is not None else None,
                generators={k: g.get_state() for k, g in generators.items()})


def set_rng_state(state: dict, numpy_rng: np.random.Generator | None = None, **generators: torch.Generator):
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if numpy_rng is not None:
        numpy_rng.bit_generator.state = state["numpy"]
    for k, g in generators.items():
        g.set_state(state["generators"][k])
