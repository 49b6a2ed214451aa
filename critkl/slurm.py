"""SLURM for ``critkl sweep --executor slurm``: a sweep's points as one submitit job array, watched with squeue.

:func:`slurm_executor` is submitit's executor with the sweep's parameters, and :func:`sbatch_script` the
script it submits, made without SLURM (for the book to show what runs). :func:`run` submits the points and
yields each one's outcome as its job ends: :func:`submit` sends the points that an earlier, killed run of the
same sweep has not left queued (their job ids are in ``DIR/_slurm/jobs.json``), :func:`watch` yields each job
as it ends, and :func:`outcome` is the point's error, SLURM's reason (:func:`cancel_line`) when SLURM ended it
(time limit, scancel).

Jobs are watched through their result files and ``squeue``, not ``sacct`` (submitit's way): many small clusters
run without accounting, where sacct fails at every poll and a job that SLURM killed would be waited for
forever. :func:`accounting_off` says why sacct cannot answer, for the sweep to say it once.

``critkl.points`` executes a point; ``critkl.sweep`` plans the points and chooses the executor (it imports this
module, not the reverse).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

from .fileio import write_atomic
from .points import ERROR, MARKER, Point, error_line, execute

JOB_NAME = "critkl-sweep"
FOLDER = "_slurm"         # DIR/_slurm: submitit's files (scripts, logs, pickles) and JOBS
JOBS = "jobs.json"        # point id -> SLURM job id, for a resumed sweep to find the jobs still queued
SQUEUE_EVERY_S = 10       # how often a sweep asks squeue which of its jobs are still queued


class SlurmError(RuntimeError):
    """No SLURM here, or squeue cannot answer: raised before anything is submitted."""


def parameters(timeout_min: float, partition: str | None, gpus_per_job: int | None,
               array_parallelism: int | None) -> dict:
    """submitit's SlurmExecutor parameters of a sweep; None values are left out (SLURM's default).
    submitit asks SLURM for USR2 90 s before the time limit, for a checkpointable job to requeue itself. A
    point cannot: the signal would only end it up to 2.5 min early, and under a limit of a few minutes at
    once, before Python has a handler (exit status 140, no result). So the sweep asks for SIGCONT, a no-op,
    and SLURM's own SIGTERM at the limit ends a point (its reason in the job's log and the summary)."""
    params = dict(job_name=JOB_NAME, time=math.ceil(timeout_min), partition=partition,
                  gpus_per_node=gpus_per_job, array_parallelism=array_parallelism,
                  additional_parameters={"signal": "CONT@90"})
    return {k: v for k, v in params.items() if v is not None}


def slurm_executor(out, timeout_min: float = 120, partition: str | None = None,
                   gpus_per_job: int | None = None, array_parallelism: int | None = None):
    """submitit's SLURM executor for the sweep in ``out`` (one array job, its files in ``out/_slurm``; None =
    SLURM's default). Raises :class:`SlurmError` off a SLURM cluster (no ``srun``)."""
    import submitit
    try:
        executor = submitit.SlurmExecutor(folder=Path(out) / FOLDER)
    except RuntimeError as e:
        raise SlurmError(f"executor slurm: {e}") from None
    executor.update_parameters(**parameters(timeout_min, partition, gpus_per_job, array_parallelism))
    return executor


def sbatch_script(out, n_points: int, timeout_min: float = 120, partition: str | None = None,
                  gpus_per_job: int | None = None, array_parallelism: int | None = None) -> str:
    """The sbatch script that ``critkl sweep ... --out OUT --executor slurm`` submits for ``n_points``
    points, made without SLURM and without submitting anything: for the book to show what runs."""
    import shlex
    from submitit.slurm.slurm import _make_sbatch_string
    folder = Path(out).resolve() / FOLDER
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=n_points,
                               **parameters(timeout_min, partition, gpus_per_job, array_parallelism))


def run(executor, points: list[Point]):
    """Yield (point, error or None) as the array's jobs end (see the module docstring: squeue and result files,
    not sacct); where sacct cannot answer, one line says so."""
    by_name = {Path(p.folder).name: p for p in points}
    jobs = submit(executor, by_name)
    if why := accounting_off(next(iter(jobs.values())).job_id):
        from tqdm.auto import tqdm  # one line, in place of submitit's warning at every poll
        tqdm.write(f"critkl sweep: no SLURM accounting here (sacct: {why}); job states come from the sweep's "
                   f"own files ({Path(executor.folder)}, each point's {MARKER}) and squeue", file=sys.stderr)
    for name, job in watch(jobs):
        yield by_name[name], outcome(by_name[name], job)


def submit(executor, points: dict) -> dict:
    """``name -> job`` executing ``points[name]``. A point whose job from an earlier, killed run (recorded in
    ``jobs.json``) is still queued is waited for, not submitted again (two jobs would run it in the same
    folder); the others are submitted as one array and recorded. Raises :class:`SlurmError` when squeue fails."""
    from submitit.slurm.slurm import SlurmJob
    folder = Path(executor.folder)
    record = folder / JOBS
    known = json.loads(record.read_text()) if record.exists() else {}
    still = queued()
    if still is None:
        raise SlurmError("squeue failed: cannot tell whether the jobs of an earlier run of this sweep still run")
    jobs = {name: SlurmJob(folder=folder, job_id=known[name], tasks=(0,))
            for name in points if known.get(name) in still}
    new = [name for name in points if name not in jobs]
    if new:
        jobs.update(zip(new, executor.map_array(execute, [points[name] for name in new])))
        known.update({name: jobs[name].job_id for name in new})
        write_atomic(record, json.dumps(known, indent=1) + "\n")
    return jobs


def queued() -> set[str] | None:
    """Ids (``123_4``) of this user's sweep jobs not ended yet (pending, running, completing); None when
    squeue fails (the controller is busy: ask again later)."""
    try:
        done = subprocess.run(["squeue", "--me", f"--name={JOB_NAME}", "--noheader", "--array", "--format=%i"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.split()) if done.returncode == 0 else None


def watch(jobs: dict):
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
            still, next_squeue = queued(), time.monotonic() + SQUEUE_EVERY_S
            if still is not None:  # else no news: squeue failed
                for key, job in waiting.items():
                    missed[key] = 0 if job.job_id in still else missed[key] + 1
        time.sleep(1)


def outcome(point: Point, job) -> str | None:
    """The error of an ended job (None: its point finished or failed by itself, see its error.txt). When
    SLURM ended it (slurmstepd's ``*** JOB ... CANCELLED ... DUE TO TIME LIMIT ***`` line in its log), that
    line is the point's error, also when the kernel died of SLURM's SIGTERM first and the point recorded
    that: it is appended to error.txt, whose last line the summary shows."""
    killed = cancel_line(job)
    if not job.paths.result_pickle.exists():
        return killed or f"SLURM job {job.job_id} ended without a result; its log: {job.paths.stderr}"
    error, error_file = job_error(job), Path(point.folder) / ERROR
    if killed and error_file.exists() and not (Path(point.folder) / MARKER).exists():
        write_atomic(error_file, error_file.read_text() + killed + "\n")
    return error


def job_error(job) -> str | None:
    """The last line of a submitit job's exception, None when it returned (execute never raises: an error
    here happened outside it)."""
    try:
        job.result()
        return None
    except Exception as e:  # noqa: BLE001
        return error_line(e)


def cancel_line(job) -> str | None:
    """slurmstepd's ``*** JOB 12 (or STEP 12.0) ON node CANCELLED AT ... DUE TO TIME LIMIT ***`` in the job's
    stderr, if any."""
    try:
        lines = Path(job.paths.stderr).read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = [line.split("error: ", 1)[-1].strip() for line in lines if "slurmstepd" in line and "***" in line]
    return next((line for line in found if line.startswith("*** JOB")), found[-1] if found else None)


def accounting_off(job_id: str) -> str:
    """Why sacct cannot answer about the array of ``job_id`` (accounting off, as on many small clusters; the
    last line of its error), or "" when it can."""
    try:
        done = subprocess.run(["sacct", "--noheader", "--allocations", "--format=JobID",
                               f"--jobs={job_id.split('_')[0]}"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return (done.stderr.strip().splitlines() or [""])[-1].strip() if done.returncode else ""
