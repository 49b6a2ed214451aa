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
    DIR/<point-id>/done.json    the completion marker, written last

**Point ids** are a readable prefix and a short hash, e.g. ``seed=0,n_samples=50-1f0c2a9e``: the prefix
lists the point's values in the order of the parameters cell (characters other than letters, digits
and ``._=,+-`` become ``_``; cut at 60 characters), the hash is of all its values. So a point's folder
depends neither on the order of the options nor on DIR, and two points never share one.

**Resuming**: a point is finished when its ``done.json`` exists. Re-running the same command skips the
finished points and runs the others again from an empty folder. Every file is written under a
temporary name and renamed, so a sweep killed at any moment (even SIGKILL) leaves only unfinished
points, never a truncated notebook or table. A failing point does not stop the others: the summary
names each failed point's notebook and the last line of its error, and the exit status is 1. Two sweeps
must not run in the same DIR at once (a lock file refuses a second one on the same machine).

**On a laptop** (``--executor local``, the default): ``--jobs`` worker processes, each point in its own
process, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``CRITKL_TORCH_THREADS`` = cores // jobs for its kernel;
a point running longer than ``--timeout-min`` is killed and counted failed::

    critkl sweep book/task.ipynb --grid seed=0,1,2 --grid n_samples=100,1000 --out sweeps/task --jobs 2
    critkl gather sweeps/task --out sweeps/task.csv

**On a SLURM cluster** (``--executor slurm``; DIR must be on the shared file system): one submitit job
array (submitit's files in ``DIR/_slurm``, :func:`sbatch_script` shows its script), ``--timeout-min`` is
the SLURM time limit of each point (a point killed at it is counted failed, with SLURM's reason). The
command waits for the array, watching the result files and ``squeue`` (not ``sacct``: where accounting is
off, as on many small clusters, one line says so), and prints the same summary. Run it again to resume:
a point whose job from the killed run is still queued is waited for, not submitted twice::

    critkl sweep book/task.ipynb --grid seed=0,1,2,3 --grid level=7,9 --out /shared/sweeps/task \\
        --executor slurm --slurm-partition gpu --slurm-gpus-per-job 1 --slurm-array-parallelism 8 \\
        --timeout-min 240

``--executor debug`` runs the points one after the other in this process (submitit's DebugExecutor,
for tests); there ``--timeout-min`` only bounds each cell. From Python::

    points = plan("book/task.ipynb", grid=["seed=0,1"], sets=["n_samples=100"])
    print(run_sweep("book/task.ipynb", points, "sweeps/task"))
    df = gather("sweeps/task")
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
import math
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

MARKER, PARAMS, LOG, ERROR = "done.json", "point.json", "log.txt", "error.txt"
RESULTS_PARAM = "results_dir"  # set by the sweep to each point's folder, never swept
EXECUTORS = ("local", "slurm", "debug")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CRITKL_TORCH_THREADS")


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


# ------------------------------------------------------------------------------------- one point

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
        _write_atomic(folder / PARAMS, json.dumps(point.params, indent=1, default=repr) + "\n")
        _papermill(point, tmp, own_process)
    except Exception as e:  # noqa: BLE001 -- a point's failure is data, not a crash of the sweep
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            os.replace(tmp, nb_path)  # papermill finished writing it before raising
        _write_atomic(folder / ERROR, traceback.format_exc() + _error_line(e) + "\n")
        return False
    os.replace(tmp, nb_path)
    _write_atomic(folder / MARKER, json.dumps({"seconds": round(time.time() - start, 3)}) + "\n")
    return True


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


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _tmp_notebook(path: Path) -> Path:
    return path.with_suffix(".tmp.ipynb")  # papermill wants the .ipynb extension


def _write_atomic(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def _error_line(e: BaseException) -> str:
    if hasattr(e, "ename"):  # papermill's PapermillExecutionError: the chapter's own exception
        return f"{e.ename}: {e.evalue}"
    return _last_line("".join(traceback.format_exception_only(type(e), e)))


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def write_metrics(df, results_dir, name: str = "metrics.csv") -> Path:
    """Write a chapter's tidy table into a sweep point's folder (``results_dir``), atomically."""
    if not results_dir:
        raise ValueError("results_dir is empty: nothing to write to")
    path = Path(results_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, df.to_csv(index=False))
    return path


# ------------------------------------------------------------------------------------- executors

SLURM_JOB_NAME = "critkl-sweep"
SQUEUE_EVERY_S = 10      # how often a SLURM sweep asks squeue which of its jobs are still queued
SLURM_JOBS = "jobs.json"  # DIR/_slurm/jobs.json: point id -> SLURM job id, for a resumed sweep to find them


def _slurm_parameters(timeout_min: float, partition: str | None, gpus_per_job: int | None,
                      array_parallelism: int | None) -> dict:
    """submitit's SlurmExecutor parameters of a sweep; None values are left out (SLURM's default).
    submitit asks SLURM for USR2 90 s before the time limit, for a checkpointable job to requeue itself. A
    point cannot: the signal would only end it up to 2.5 min early, and under a limit of a few minutes at
    once, before Python has a handler (exit status 140, no result). So the sweep asks for SIGCONT, a no-op,
    and SLURM's own SIGTERM at the limit ends a point (its reason in the job's log and the summary)."""
    params = dict(job_name=SLURM_JOB_NAME, time=math.ceil(timeout_min), partition=partition,
                  gpus_per_node=gpus_per_job, array_parallelism=array_parallelism,
                  additional_parameters={"signal": "CONT@90"})
    return {k: v for k, v in params.items() if v is not None}


def slurm_executor(folder, timeout_min: float = 120, partition: str | None = None,
                   gpus_per_job: int | None = None, array_parallelism: int | None = None):
    """submitit's SLURM executor for a sweep (one array job; None = SLURM's default). Raises
    :class:`SweepError` off a SLURM cluster (no ``srun``)."""
    import submitit
    try:
        executor = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as e:
        raise SweepError(f"executor slurm: {e}") from None
    executor.update_parameters(**_slurm_parameters(timeout_min, partition, gpus_per_job, array_parallelism))
    return executor


def sbatch_script(out, n_points: int, timeout_min: float = 120, partition: str | None = None,
                  gpus_per_job: int | None = None, array_parallelism: int | None = None) -> str:
    """The sbatch script that ``critkl sweep ... --out OUT --executor slurm`` submits for ``n_points``
    points, made without SLURM and without submitting anything: for the book to show what runs."""
    import shlex
    from submitit.slurm.slurm import _make_sbatch_string
    folder = Path(out).resolve() / "_slurm"
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=n_points,
                               **_slurm_parameters(timeout_min, partition, gpus_per_job, array_parallelism))


def _run_submitit(executor, points: list[Point]):
    """Yield (point, error or None) as the jobs of ``executor.map_array`` complete (the debug executor)."""
    import submitit
    jobs = executor.map_array(execute, points)
    point_of = {id(job): point for job, point in zip(jobs, points)}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=2):
        yield point_of[id(job)], _job_error(job)


def _job_error(job) -> str | None:
    try:
        job.result()
        return None
    except Exception as e:  # noqa: BLE001 -- the job failed outside execute (which never raises)
        return _error_line(e)


def _run_slurm(executor, points: list[Point]):
    """Yield (point, error or None) as the array's jobs end. The jobs are watched with squeue and their
    result files, not with sacct (submitit's way): many small clusters run without accounting, where sacct
    fails on every poll and a job killed by SLURM (time limit, scancel) would be waited for forever.
    A point whose job from an earlier, killed ``critkl sweep`` is still queued is waited for, not submitted
    again (two jobs would run it in the same folder)."""
    from submitit.slurm.slurm import SlurmJob
    folder = Path(executor.folder)
    record = folder / SLURM_JOBS
    known = json.loads(record.read_text()) if record.exists() else {}
    queued = _queued()
    if queued is None:
        raise SweepError("squeue failed: cannot tell whether the jobs of an earlier run of this sweep still run")
    jobs = {i: SlurmJob(folder=folder, job_id=known[Path(p.folder).name], tasks=(0,))
            for i, p in enumerate(points) if known.get(Path(p.folder).name) in queued}
    new = [i for i in range(len(points)) if i not in jobs]
    if new:
        jobs.update(zip(new, executor.map_array(execute, [points[i] for i in new])))
        known.update({Path(points[i].folder).name: jobs[i].job_id for i in new})
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(record, json.dumps(known, indent=1) + "\n")
    _accounting_notice(next(iter(jobs.values())).job_id.split("_")[0], folder)
    for i, job in _watch(jobs):
        yield points[i], _slurm_outcome(points[i], job)


def _queued() -> set[str] | None:
    """Ids (``123_4``) of this user's sweep jobs not ended yet (pending, running, completing); None when
    squeue fails (the controller is busy: ask again later)."""
    try:
        done = subprocess.run(["squeue", "--me", f"--name={SLURM_JOB_NAME}", "--noheader", "--array", "--format=%i"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.split()) if done.returncode == 0 else None


def _watch(jobs: dict):
    """Yield (key, job) of ``jobs`` as each ends: its result file appears, or squeue has lost it twice in a
    row (the second time gives a slow shared file system a moment to show a result file written at the end)."""
    waiting, missed, next_squeue = dict(jobs), dict.fromkeys(jobs, 0), time.monotonic() + SQUEUE_EVERY_S
    while True:
        for key, job in list(waiting.items()):
            if job.paths.result_pickle.exists() or missed[key] >= 2:
                del waiting[key]
                yield key, job
        if not waiting:
            return
        if time.monotonic() >= next_squeue:
            queued, next_squeue = _queued(), time.monotonic() + SQUEUE_EVERY_S
            if queued is not None:  # else no news: squeue failed
                for key, job in waiting.items():
                    missed[key] = 0 if job.job_id in queued else missed[key] + 1
        time.sleep(1)


def _slurm_outcome(point: Point, job) -> str | None:
    """The error of an ended job (None: its point finished or failed by itself, see its error.txt). When
    SLURM ended it (slurmstepd's ``*** JOB ... CANCELLED ... DUE TO TIME LIMIT ***`` line in its log), that
    line is the point's error, also when the kernel died of SLURM's SIGTERM first and the point recorded
    that: it is appended to error.txt, whose last line the summary shows."""
    killed = _slurm_cancel_line(job)
    if not job.paths.result_pickle.exists():
        return killed or f"SLURM job {job.job_id} ended without a result; its log: {job.paths.stderr}"
    error, error_file = _job_error(job), Path(point.folder) / ERROR
    if killed and error_file.exists() and not (Path(point.folder) / MARKER).exists():
        _write_atomic(error_file, error_file.read_text() + killed + "\n")
    return error


def _slurm_cancel_line(job) -> str | None:
    """slurmstepd's ``*** JOB 12 (or STEP 12.0) ON node CANCELLED AT ... DUE TO TIME LIMIT ***`` in the job's
    stderr, if any."""
    try:
        lines = Path(job.paths.stderr).read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = [line.split("error: ", 1)[-1].strip() for line in lines if "slurmstepd" in line and "***" in line]
    return next((line for line in found if line.startswith("*** JOB")), found[-1] if found else None)


def _accounting_notice(job_id: str, folder: Path) -> None:
    """One line where sacct cannot answer (accounting off, as on many small clusters), in place of submitit's
    warning at every poll: the sweep does not need sacct."""
    try:
        done = subprocess.run(["sacct", "--noheader", "--allocations", "--format=JobID", f"--jobs={job_id}"],
                              capture_output=True, text=True, timeout=60)
        why = _last_line(done.stderr) if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    if why:
        from tqdm.auto import tqdm
        tqdm.write(f"critkl sweep: no SLURM accounting here (sacct: {why}); job states come from the sweep's "
                   f"own files ({folder}, each point's {MARKER}) and squeue", file=sys.stderr)


# A local worker loads this file alone, not the critkl package: papermill is all it needs, and importing
# the package (torch, transformers) would cost each point seconds and hundreds of MB.
_WORKER = ("import importlib.util, json, sys\n"
           "spec = importlib.util.spec_from_file_location('critkl_sweep_worker', sys.argv[1])\n"
           "sweep = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
           "spec.loader.exec_module(sweep)\n"
           "sweep.execute(sweep.Point(**json.loads(sys.argv[2])), own_process=True)\n")


def _run_local(points: list[Point], jobs: int, timeout_min: float):
    """Yield (point, error or None) as they complete: at most ``jobs`` worker processes at once, one per
    point, each killed after ``timeout_min`` (its kernel then exits by itself: it watches its parent)."""
    waiting, running = list(points), {}
    while waiting or running:
        while waiting and len(running) < jobs:
            point = waiting.pop(0)
            argv = [sys.executable, "-c", _WORKER, __file__, json.dumps(dataclasses.asdict(point))]
            running[subprocess.Popen(argv, stdin=subprocess.DEVNULL)] = (point, time.monotonic() + timeout_min * 60)
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


def _runner(executor: str, out: Path, jobs: int, timeout_min: float, slurm: dict):
    """points -> iterator of (point, error); built before anything is written (SLURM may be missing)."""
    if executor == "local":
        return functools.partial(_run_local, jobs=jobs, timeout_min=timeout_min)
    if executor == "debug":
        import submitit
        return functools.partial(_run_submitit, submitit.DebugExecutor(folder=out / "_debug"))
    if executor == "slurm":
        return functools.partial(_run_slurm, slurm_executor(out / "_slurm", timeout_min, **slurm))
    raise SweepError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")


# ----------------------------------------------------------------------------------------- sweep

@dataclasses.dataclass
class Summary:
    """What a sweep did: point ids finished now, skipped (finished before), failed (id -> (notebook, error))."""
    out: Path
    finished: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        n = len(self.finished) + len(self.skipped) + len(self.failed)
        lines = [f"critkl sweep: {n} points in {self.out}: {len(self.finished)} finished, "
                 f"{len(self.skipped)} skipped (finished before), {len(self.failed)} failed"]
        for notebook, error in self.failed.values():
            lines += [f"FAILED {notebook}", f"    {error}"]
        return "\n".join(lines)


def run_sweep(notebook, points: list[dict], out, executor: str = "local", jobs: int = 1,
              timeout_min: float = 120, slurm: dict | None = None, progress: bool = True) -> Summary:
    """Execute ``notebook`` at every point (from :func:`plan`) not yet finished in ``out``.
    ``slurm``: keyword arguments of :func:`slurm_executor` (partition, gpus_per_job, array_parallelism)."""
    from tqdm.auto import tqdm
    notebook, out = Path(notebook).resolve(), Path(out).resolve()
    run = _runner(executor, out, jobs, timeout_min, slurm or {})
    cpus = os.cpu_count() or 1
    threads = {"local": max(1, cpus // jobs), "debug": cpus}.get(executor)
    has_results = RESULTS_PARAM in notebook_parameters(notebook)
    cell_timeout_s = None if executor == "slurm" else timeout_min * 60  # SLURM's own time limit ends a point there
    every = [Point(str(notebook), str(out / point_id(p)), p, has_results, threads, cell_timeout_s) for p in points]
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(out)
    with _locked(out):
        done_before = {p.folder for p in every if (Path(p.folder) / MARKER).exists()}
        todo = [p for p in every if p.folder not in done_before]
        summary.skipped = [Path(p.folder).name for p in every if p.folder in done_before]
        with tqdm(total=len(every), initial=len(summary.skipped), desc="sweep", unit="point",
                  disable=not progress) as bar:
            for point, error in (run(todo) if todo else ()):
                if (Path(point.folder) / MARKER).exists():
                    summary.finished.append(Path(point.folder).name)
                else:
                    summary.failed[Path(point.folder).name] = _failure(point, error)
                bar.update()
    return summary


@contextlib.contextmanager
def _locked(out: Path):
    import fcntl
    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another sweep is running in {out}") from None
        yield


def _failure(point: Point, error: str | None) -> tuple[str, str]:
    """(notebook path, last line of the error) of an unfinished point. ``error`` comes from the executor
    (time-out, killed worker); it is recorded in error.txt, and a readable partial notebook is kept."""
    folder = Path(point.folder)
    nb_path = folder / Path(point.notebook).name
    if error is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _salvage(_tmp_notebook(nb_path), nb_path)
        if not (folder / ERROR).exists():
            _write_atomic(folder / ERROR, error + "\n")
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
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(Path(args.out), df.to_csv(index=False))
        print(f"{len(df)} rows from {df['point'].nunique()} points -> {args.out}")
    else:
        df.to_csv(sys.stdout, index=False)
    return 0
