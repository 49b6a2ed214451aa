"""Sweep points: a chapter executed by papermill with one point's parameters, in the point's own folder.

:func:`execute` fills the folder that ``critkl.sweep``'s docstring lists (``point.json``, the executed notebook,
``log.txt``, a failed point's ``error.txt``, the chapter's tables) and writes ``done.json`` last. Every file is
written under a temporary name and renamed (``critkl.fileio``), so a point killed at any moment (even SIGKILL)
is unfinished, never half-written; :func:`failure` records why an unfinished point failed. ``critkl.sweep``
plans the points and runs them (``critkl.slurm`` on a cluster); a local worker process imports this module
without the package (papermill is all a point needs; torch would cost each point seconds).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import traceback
from pathlib import Path

from .fileio import write_atomic

MARKER, PARAMS, LOG, ERROR = "done.json", "point.json", "log.txt", "error.txt"
RESULTS_PARAM = "results_dir"  # set by the sweep to each point's folder, never swept
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CRITKL_TORCH_THREADS")


@dataclasses.dataclass(frozen=True)
class Point:
    """One unit of work, picklable: what :func:`execute` needs, wherever it runs."""
    notebook: str                   # absolute path of the chapter
    folder: str                     # absolute path of DIR/<point-id>
    params: dict                    # the swept values (point.json)
    results_dir: bool = False       # the chapter has a results_dir parameter: give it the folder
    threads: int | None = None      # OMP/MKL/CRITKL_TORCH threads of the kernel; None = inherit
    cell_timeout_s: float | None = None  # papermill's limit per cell


def execute(point: Point, own_process: bool = False) -> bool:
    """Run one point from an empty folder; True when finished (``done.json`` written last). Never
    raises: a failure leaves the executed notebook (if any) and ``error.txt``. ``own_process``: this
    process is the point's alone, so its file descriptors 1 and 2 (inherited by the kernel) go to the log."""
    folder = Path(point.folder)
    if (folder / MARKER).exists():
        return True
    nb_path = folder / Path(point.notebook).name
    tmp = _tmp_notebook(nb_path)
    start = time.time()
    try:
        if folder.exists():
            shutil.rmtree(folder)  # what an interrupted or failed attempt left
        folder.mkdir(parents=True)
        write_atomic(folder / PARAMS, json.dumps(point.params, indent=1, default=repr) + "\n")
        _papermill(point, tmp, own_process)
    except Exception as e:  # noqa: BLE001 -- a point's failure is data, not a crash of the sweep
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            os.replace(tmp, nb_path)  # papermill finished writing it before raising
        write_atomic(folder / ERROR, traceback.format_exc() + error_line(e) + "\n")
        return False
    os.replace(tmp, nb_path)
    write_atomic(folder / MARKER, json.dumps({"seconds": round(time.time() - start, 3), "cpu": cpu_name()}) + "\n")
    return True


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, set]:
    """The CPU's model name (``platform``'s when ``cpuinfo`` has none) and its flags, from ``/proc/cpuinfo``."""
    import platform
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return name, flags
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), name)
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return name, flags


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """Where a point ran, for its ``done.json``: the CPU's model name and its vector extensions that decide speed
    and rounding (AVX2, AVX-512, native bf16 and AMX), read from ``/proc/cpuinfo`` (no torch import here)."""
    name, flags = cpu_model(cpuinfo)
    ext = [e for e, f in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX-512 BF16", "avx512_bf16"),
                          ("AMX", "amx_bf16")) if f in flags]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def _papermill(point: Point, output: Path, own_process: bool) -> None:
    """Execute the chapter with the point's parameters into ``output``, the kernel's streams in the log."""
    import papermill
    folder = Path(point.folder)
    parameters = {**point.params, **({RESULTS_PARAM: str(folder)} if point.results_dir else {})}
    with open(folder / LOG, "w") as log, _thread_env(point.threads):
        if own_process:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        papermill.execute_notebook(point.notebook, str(output), parameters=parameters, kernel_name="python3",
                                   cwd=str(Path(point.notebook).parent), progress_bar=False,
                                   stdout_file=log, stderr_file=log, execution_timeout=point.cell_timeout_s)


@contextlib.contextmanager
def _thread_env(threads: int | None):
    """Set the thread variables the kernel inherits (restored afterwards: the debug executor is in-process)."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    if threads:
        os.environ.update({k: str(threads) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tmp_notebook(path: Path) -> Path:
    # papermill writes the notebook itself, cell by cell, so not through critkl.fileio: renamed when complete,
    # and a failed or killed point's partial notebook is kept where readable (see failure)
    return path.with_suffix(".tmp.ipynb")  # papermill wants the .ipynb extension


def error_line(e: BaseException) -> str:
    """The last line of an error: the chapter's own exception for papermill's, else this one's."""
    if hasattr(e, "ename"):  # papermill's PapermillExecutionError: the chapter's own exception
        return f"{e.ename}: {e.evalue}"
    return _last_line("".join(traceback.format_exception_only(type(e), e)))


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def write_metrics(df, results_dir, name: str = "metrics.csv") -> Path:
    """Write a chapter's tidy table into a sweep point's folder (``results_dir``), atomically."""
    if not results_dir:
        raise ValueError("results_dir is empty: nothing to write to")
    return write_atomic(Path(results_dir) / name, df.to_csv(index=False))


def failure(point: Point, error: str | None) -> tuple[str, str]:
    """(notebook path, last line of the error) of an unfinished point. ``error`` comes from the executor
    (time-out, killed worker); it is recorded in error.txt, and a readable partial notebook is kept."""
    folder = Path(point.folder)
    nb_path = folder / Path(point.notebook).name
    if error is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _salvage(_tmp_notebook(nb_path), nb_path)
        if not (folder / ERROR).exists():
            write_atomic(folder / ERROR, error + "\n")
    text = (folder / ERROR).read_text() if (folder / ERROR).exists() else ""
    return str(nb_path), _last_line(text) or "no completion marker"


def _salvage(tmp: Path, path: Path) -> None:
    """A killed point's partial notebook: renamed into place if readable, else removed."""
    import nbformat
    if not tmp.exists():
        return
    try:
        nbformat.read(str(tmp), as_version=4)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 -- truncated mid-write
        tmp.unlink()
