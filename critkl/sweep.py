"""``critkl sweep``: execute a chapter notebook over a grid of parameters, one papermill run per point.

A chapter's cell tagged ``parameters`` lists what may vary (``name = literal`` lines). ``critkl sweep``
takes the cross product of the ``--grid`` values, adds the fixed ``--set`` values, checks every name
and value against that cell *before* anything runs (an unknown name or a value that does not parse to
the type of the default exits with status 2, writing nothing), then executes each point with papermill
in its own folder::

    DIR/<point-id>/point.json   the point's parameters (its --grid and --set values)
    DIR/<point-id>/<chapter>    the executed notebook (written as *.tmp.ipynb, renamed when complete)
    DIR/<point-id>/log.txt      the kernel's stdout and stderr
    DIR/<point-id>/error.txt    a failed point's traceback; its last line is the error
    DIR/<point-id>/*.csv        the chapter's tidy tables: a chapter with a ``results_dir`` parameter
                                gets this folder there and writes them with :func:`write_metrics`
    DIR/<point-id>/done.json    the completion marker, written last: wall seconds and the CPU it ran on

**Point ids** are a readable prefix and a short hash, e.g. ``seed=0,n_samples=50-1f0c2a9e``: the prefix
lists the point's values in the order of the parameters cell (characters other than letters, digits
and ``._=,+-`` become ``_``; cut at 60 characters), the hash is of all its values. So a point's folder
depends neither on the order of the options nor on DIR, and two points never share one.

**Resuming**: a point is finished when its ``done.json`` exists. Re-running the same command skips the
finished points and runs the others again from an empty folder. Every file is written under a
temporary name and renamed, so a sweep killed at any moment (even SIGKILL) leaves only unfinished
points, never a truncated notebook or table. A failing point does not stop the others: the summary
names each failed point's notebook and the last line of its error, and the exit status is 1. Each point is
claimed by a lock (``DIR/.locks/<point-id>.lock``, held by the sweep that runs it): two sweeps in the same DIR
run side by side, each running the points the other has not claimed, and a point claimed by the other is left
to it (counted "running in another sweep"; rerun the command after it ends to have them all).

**On a laptop** (``--executor local``, the default): ``--jobs`` worker processes, each point in its own
process, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``CRITKL_TORCH_THREADS`` = cores // jobs for its kernel, or
``$CRITKL_TORCH_THREADS`` when it is set (two sweeps side by side, one job and one thread each, as
``results/campaign.sh`` runs them); a point running longer than ``--timeout-min`` is killed and counted failed::

    critkl sweep book/task.ipynb --grid seed=0,1,2 --grid n_samples=100,1000 --out sweeps/task --jobs 2
    critkl gather sweeps/task --out sweeps/task.csv

**On a SLURM cluster** (``--executor slurm``, ``critkl.slurm``; DIR must be on the shared file system): one
submitit job array (submitit's files in ``DIR/_slurm``, :func:`sbatch_script` shows its script),
``--timeout-min`` is the SLURM time limit of each point (a point killed at it is counted failed, with SLURM's
reason). The command waits for the array, watching the result files and ``squeue`` (not ``sacct``: where
accounting is off, as on many small clusters, one line says so), and prints the same summary. Run it again to
resume: a point whose job from the killed run is still queued is waited for, not submitted twice::

    critkl sweep book/task.ipynb --grid seed=0,1,2,3 --grid level=7,9 --out /shared/sweeps/task \\
        --executor slurm --slurm-partition gpu --slurm-gpus-per-job 1 --slurm-array-parallelism 8 \\
        --timeout-min 240

``--executor debug`` runs the points one after the other in this process (submitit's DebugExecutor,
for tests); there ``--timeout-min`` only bounds each cell. From Python::

    points = plan("book/task.ipynb", grid=["seed=0,1"], sets=["n_samples=100"])
    print(run_sweep("book/task.ipynb", points, "sweeps/task"))
    df = gather("sweeps/task")

This module plans and runs a sweep; ``critkl.points`` executes one point in its folder.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import slurm
from .fileio import file_lock, write_atomic
from .points import MARKER, PARAMS, RESULTS_PARAM, Point, execute, failure
from .points import write_metrics  # noqa: F401 -- the chapters import it from here
from .slurm import sbatch_script  # noqa: F401 -- the book shows the script from here

EXECUTORS = ("local", "slurm", "debug")


class SweepError(ValueError):
    """A bad sweep request (unknown name, badly typed value, no SLURM, ...), raised before anything runs."""


# ---------------------------------------------------------------------------------------- the plan

def notebook_parameters(notebook) -> dict:
    """Name -> default of the top-level ``name = literal`` (and ``a, b = 1, 2``) lines of the cell
    tagged ``parameters``, in the cell's order. Names bound to non-literals are not sweepable: left out."""
    import nbformat
    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except (OSError, ValueError) as e:
        raise SweepError(f"cannot read notebook {notebook}: {e}") from None
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise SweepError(f"{notebook} has no cell tagged 'parameters'")
    try:
        body = ast.parse(cells[0].source).body
    except SyntaxError as e:
        raise SweepError(f"cannot parse the parameters cell of {notebook}: {e}") from None
    params = {}
    for node in body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                params.update(_bind(target, node.value))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            params.update(_bind(node.target, node.value))
    return params


def _bind(target: ast.expr, value: ast.expr) -> dict:
    if isinstance(target, ast.Name):
        try:
            return {target.id: ast.literal_eval(value)}
        except (ValueError, TypeError, SyntaxError):
            return {}
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        return {k: v for t, e in zip(target.elts, value.elts) for k, v in _bind(t, e).items()}
    return {}


def parse_value(name: str, text: str, default):
    """``text`` as the type of ``default``: int, float (ints allowed), bool (true/false), str; a None
    default takes a Python literal or else the string; other literals must keep their type."""
    try:
        if isinstance(default, bool):
            if text.strip().lower() in ("true", "false"):
                return text.strip().lower() == "true"
        elif isinstance(default, int):
            return int(text)
        elif isinstance(default, float):
            return float(text)
        elif isinstance(default, str):
            return text
        elif default is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError):
                return text
        elif type(value := ast.literal_eval(text)) is type(default):
            return value
    except (ValueError, TypeError, SyntaxError):
        pass
    kind = "true or false" if isinstance(default, bool) else type(default).__name__
    raise SweepError(f"bad value {text!r} for {name}: expected {kind} (its default is {default!r})")


def plan(notebook, grid=(), sets=()) -> list[dict]:
    """The points of a sweep: the cross product of ``grid`` ("NAME=V1,V2,...") with the fixed ``sets``
    ("NAME=V"), names checked against the notebook's parameters cell, values parsed to the type of the
    defaults. Each point is a dict in the cell's order. Raises :class:`SweepError`."""
    defaults = notebook_parameters(notebook)
    allowed = ", ".join(n for n in defaults if n != RESULTS_PARAM)
    axes: dict[str, list] = {}
    for spec, many in [(g, True) for g in grid] + [(s, False) for s in sets]:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SweepError(f"expected NAME={'V1,V2,...' if many else 'V'}, got {spec!r}; "
                             f"names of {notebook}: {allowed}")
        if name == RESULTS_PARAM:
            raise SweepError(f"{RESULTS_PARAM} is set by the sweep (each point's folder); "
                             f"names of {notebook}: {allowed}")
        if name not in defaults:
            raise SweepError(f"unknown parameter {name!r}; names of {notebook}: {allowed}")
        if name in axes:
            raise SweepError(f"parameter {name!r} given twice")
        texts = text.split(",") if many else [text]
        axes[name] = list(dict.fromkeys(parse_value(name, t, defaults[name]) for t in texts))
    names = [n for n in defaults if n in axes]
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def point_id(params: dict) -> str:
    """Readable, stable folder name of a point: ``seed=0,beta=0.2-<8 hex digits of its values' hash>``."""
    prefix = ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    prefix = re.sub(r"[^A-Za-z0-9._=,+-]", "_", prefix)[:60]
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=repr).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"


# ------------------------------------------------------------------------------------- executors

def _run_submitit(executor, points: list[Point], locks: dict | None = None):
    """Yield (point, error or None) as the jobs of ``executor.map_array`` complete (the debug executor)."""
    import submitit
    jobs = executor.map_array(execute, points)
    point_of = {id(job): point for job, point in zip(jobs, points)}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=2):
        yield point_of[id(job)], slurm.job_error(job)


def _run_slurm(executor, points: list[Point], locks: dict | None = None):
    """:func:`critkl.slurm.run`, its refusal (squeue cannot answer) as a :class:`SweepError`."""
    try:
        yield from slurm.run(executor, points)
    except slurm.SlurmError as e:
        raise SweepError(str(e)) from None


# A local worker imports critkl.points without the package's __init__ (an empty stand-in for the package):
# papermill is all a point needs, and importing the package (torch, transformers) would cost each point
# seconds and hundreds of MB.
_WORKER = ("import json, sys, types\n"
           "sys.modules['critkl'] = types.ModuleType('critkl')\n"
           "sys.modules['critkl'].__path__ = [sys.argv[1]]\n"
           "from critkl.points import Point, execute\n"
           "execute(Point(**json.loads(sys.argv[2])), own_process=True)\n")


def _run_local(points: list[Point], locks: dict | None = None, *, jobs: int, timeout_min: float):
    """Yield (point, error or None) as they complete: at most ``jobs`` worker processes at once, one per
    point, each killed after ``timeout_min`` (its kernel then exits by itself: it watches its parent).
    ``locks``: folder -> the point's open lock file; its worker inherits it, so the point stays claimed while
    the worker runs even if this sweep is killed first."""
    waiting, running = list(points), {}
    while waiting or running:
        while waiting and len(running) < jobs:
            point = waiting.pop(0)
            argv = [sys.executable, "-c", _WORKER, str(Path(__file__).parent), json.dumps(dataclasses.asdict(point))]
            held = (locks[point.folder].fileno(),) if locks and point.folder in locks else ()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=held)
            running[proc] = (point, time.monotonic() + timeout_min * 60)
        for proc, (point, deadline) in list(running.items()):
            if proc.poll() is None and time.monotonic() < deadline:
                continue
            error = None
            if proc.poll() is None:
                proc.kill()
                error = f"timed out after {timeout_min:g} min"
            if proc.wait() and error is None:
                error = f"worker process exited with status {proc.returncode}"
            del running[proc]
            yield point, error
        time.sleep(0.1)


def _runner(executor: str, out: Path, jobs: int, timeout_min: float, slurm_kw: dict):
    """points -> iterator of (point, error); built before anything is written (SLURM may be missing)."""
    if executor == "local":
        return functools.partial(_run_local, jobs=jobs, timeout_min=timeout_min)
    if executor == "debug":
        import submitit
        return functools.partial(_run_submitit, submitit.DebugExecutor(folder=out / "_debug"))
    if executor == "slurm":
        try:
            cluster = slurm.slurm_executor(out, timeout_min, **slurm_kw)
        except slurm.SlurmError as e:
            raise SweepError(str(e)) from None
        return functools.partial(_run_slurm, cluster)
    raise SweepError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")


# ----------------------------------------------------------------------------------------- sweep

@dataclasses.dataclass
class Summary:
    """What a sweep did: point ids finished now, skipped (finished before), busy (claimed by another sweep
    running in the same folder), failed (id -> (notebook, error))."""
    out: Path
    finished: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)
    busy: list = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        n = len(self.finished) + len(self.skipped) + len(self.failed) + len(self.busy)
        busy = f", {len(self.busy)} running in another sweep" if self.busy else ""
        lines = [f"critkl sweep: {n} points in {self.out}: {len(self.finished)} finished, "
                 f"{len(self.skipped)} skipped (finished before){busy}, {len(self.failed)} failed"]
        for notebook, error in self.failed.values():
            lines += [f"FAILED {notebook}", f"    {error}"]
        return "\n".join(lines)


def run_sweep(notebook, points: list[dict], out, executor: str = "local", jobs: int = 1,
              timeout_min: float = 120, slurm: dict | None = None, progress: bool = True) -> Summary:
    """Execute ``notebook`` at every point (from :func:`plan`) not yet finished in ``out``. A relative
    ``$CRITKL_HOME`` is made absolute (against this process's folder) before any point starts, so that every
    point shares the one cache whatever folder its kernel runs in.
    ``slurm``: keyword arguments of :func:`critkl.slurm.slurm_executor` (partition, gpus_per_job,
    array_parallelism)."""
    from tqdm.auto import tqdm
    notebook, out = Path(notebook).resolve(), Path(out).resolve()
    home = os.environ.get("CRITKL_HOME", "")
    if home.strip() and not Path(home).expanduser().is_absolute():
        # a point's kernel runs in its chapter's folder: a relative cache would land there, one per folder
        os.environ["CRITKL_HOME"] = str(Path(home).expanduser().resolve())
    run = _runner(executor, out, jobs, timeout_min, slurm or {})
    cpus = os.cpu_count() or 1
    asked = os.environ.get("CRITKL_TORCH_THREADS", "").strip()
    local = int(asked) if asked.isdigit() and int(asked) > 0 else max(1, cpus // jobs)
    threads = {"local": local, "debug": cpus}.get(executor)
    has_results = RESULTS_PARAM in notebook_parameters(notebook)
    cell_timeout_s = None if executor == "slurm" else timeout_min * 60  # SLURM's own time limit ends a point there
    every = [Point(str(notebook), str(out / point_id(p)), p, has_results, threads, cell_timeout_s) for p in points]
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(out)
    with contextlib.ExitStack() as claims:
        todo, locks = [], {}
        for p in every:
            name, done = Path(p.folder).name, (Path(p.folder) / MARKER).exists
            if not done() and not (lock := _claim(claims, out, name)):
                summary.busy.append(name)
            elif done():  # finished before, or by another sweep that held its lock until then
                summary.skipped.append(name)
            else:
                todo.append(p)
                locks[p.folder] = lock
        with tqdm(total=len(every), initial=len(every) - len(todo), desc="sweep", unit="point",
                  disable=not progress) as bar:
            for point, error in (run(todo, locks) if todo else ()):
                if (Path(point.folder) / MARKER).exists():
                    summary.finished.append(Path(point.folder).name)
                else:
                    summary.failed[Path(point.folder).name] = failure(point, error)
                bar.update()
    return summary


def _claim(claims: contextlib.ExitStack, out: Path, name: str):
    """The lock of point ``name``, taken for the rest of the sweep (``claims`` releases it), or None when another
    sweep holds it. flock: a sweep killed in any way lets go of its points (a local worker it started keeps its
    point's until it ends)."""
    try:
        return claims.enter_context(file_lock(out / ".locks" / f"{name}.lock", wait=False))
    except BlockingIOError:
        return None


# ---------------------------------------------------------------------------------------- gather

def gather(out, table: str = "metrics.csv"):
    """One DataFrame of the ``table`` CSV of every finished point in ``out``, with a ``point`` column (its
    id) and its parameters as columns (a parameter named like a metrics column becomes ``param_<name>``)."""
    import pandas as pd
    folders = sorted(marker.parent for marker in Path(out).glob(f"*/{MARKER}"))
    frames = [_with_params(pd.read_csv(f / table), {"point": f.name, **json.loads((f / PARAMS).read_text())})
              for f in folders if (f / table).exists()]
    if not frames:
        names = sorted({p.name for f in folders for p in f.glob("*.csv")})
        raise SweepError(f"no finished point in {out} has a table {table!r}"
                         + (f"; tables there: {', '.join(names)}" if names else ""))
    return pd.concat(frames, ignore_index=True)


def _with_params(metrics, params: dict):
    df = metrics.copy()
    for i, (k, v) in enumerate(params.items()):
        df.insert(i, f"param_{k}" if k in metrics.columns else k, [v] * len(df))
    return df


# ------------------------------------------------------------------------------------ command line

def _positive(cast):
    def parse(text):
        value = cast(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``critkl sweep``."""
    parser.add_argument("notebook", help="chapter notebook with a cell tagged 'parameters'")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="values of one parameter (repeat: the points are the cross product)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=V", help="a fixed parameter value")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep folder: one sub-folder per point")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: worker processes; slurm: a submitit job array; debug: in this process")
    parser.add_argument("--jobs", type=_positive(int), default=1, help="local: points at once [1]")
    parser.add_argument("--timeout-min", type=_positive(float), default=120,
                        help="time limit per point, minutes (slurm: rounded up) [120]")
    parser.add_argument("--slurm-partition", help="slurm: partition")
    parser.add_argument("--slurm-gpus-per-job", type=_positive(int), help="slurm: GPUs per point")
    parser.add_argument("--slurm-array-parallelism", type=_positive(int), help="slurm: points running at once")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    """``critkl sweep``: 0 all finished, 1 some point failed, 2 bad request (nothing run)."""
    try:
        points = plan(args.notebook, args.grid, args.set)
        summary = run_sweep(args.notebook, points, args.out, args.executor, args.jobs, args.timeout_min,
                            dict(partition=args.slurm_partition, gpus_per_job=args.slurm_gpus_per_job,
                                 array_parallelism=args.slurm_array_parallelism), progress=not args.no_progress)
    except SweepError as e:
        print(f"critkl sweep: error: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 1 if summary.failed else 0


def add_gather_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``critkl gather``."""
    parser.add_argument("dir", metavar="DIR", help="a sweep folder")
    parser.add_argument("--table", default="metrics.csv", help="which CSV of each point [metrics.csv]")
    parser.add_argument("--out", metavar="FILE", help="write the CSV there (atomically) instead of stdout")


def gather_main(args: argparse.Namespace) -> int:
    """``critkl gather``: 0, or 2 when no finished point has the table."""
    try:
        df = gather(args.dir, args.table)
    except SweepError as e:
        print(f"critkl gather: error: {e}", file=sys.stderr)
        return 2
    if args.out:
        write_atomic(Path(args.out), df.to_csv(index=False))
        print(f"{len(df)} rows from {df['point'].nunique()} points -> {args.out}")
    else:
        df.to_csv(sys.stdout, index=False)
    return 0
