"""critkl.sweep: plans checked before anything runs, papermill points in their folders, resuming after a
SIGKILL, failures and time-outs counted, gather; and the same on a real one-node SLURM cluster."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import critkl.slurm
from critkl import cli, points, sweep
from critkl.fileio import file_lock
from critkl.points import THREAD_VARS

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "book" / "task.ipynb"
TASK_GRID = ["--grid", "seed=0,1", "--grid", "n_samples=50,100"]
TASK_POINTS = [{"seed": s, "n_samples": n} for s in (0, 1) for n in (50, 100)]


def tiny_notebook(path: Path, *cells: str) -> Path:
    """A chapter stand-in: the parameters cell, then ``cells``."""
    params = nbformat.v4.new_code_cell('seed = 0\nsleep = 0.0\nlog = ""    # file to append the seed to\n'
                                       'gate = ""   # file to wait for\nresults_dir = ""')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params] + [nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


METRICS_CELL = """
    import os, pathlib  # a plain write: importing critkl in every tiny kernel costs seconds
    env = [os.environ.get(k, "") for k in ("OMP_NUM_THREADS", "CRITKL_TORCH_THREADS")]
    pathlib.Path(results_dir, "metrics.csv").write_text(f"seed,threads,torch_threads\\n{seed},{env[0]},{env[1]}\\n")
"""


def run_cli(capsys, *argv):
    status = cli.main(["sweep", *map(str, argv), "--no-progress"])
    return status, capsys.readouterr()


def test_cpu_name_names_the_model_and_the_extensions_that_decide_speed_and_rounding(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert points.cpu_name(str(info)) == "Some Xeon (AVX2, AVX-512, AVX-512 BF16, AMX)"
    info.write_text("model name\t: Old Opteron\nflags\t\t: fpu sse2\n")
    assert points.cpu_name(str(info)) == "Old Opteron (no AVX2)"


def test_threads_per_point_follow_the_jobs_unless_critkl_torch_threads_is_set(tmp_path, monkeypatch, capsys):
    """cores // jobs by default; an explicit CRITKL_TORCH_THREADS wins, so that two sweeps of one job each can
    share 2 cores (a campaign once ran two 2-thread kernels on 2 cores, each at a fraction of its speed)."""
    nb = tiny_notebook(tmp_path / "tiny.ipynb", METRICS_CELL)
    monkeypatch.delenv("CRITKL_TORCH_THREADS", raising=False)
    cores = max(1, os.cpu_count() or 1)
    assert run_cli(capsys, nb, "--grid", "seed=0", "--out", tmp_path / "a")[0] == 0
    monkeypatch.setenv("CRITKL_TORCH_THREADS", "1")
    monkeypatch.setattr(os, "cpu_count", lambda: 4)  # cores // jobs would be 4
    assert run_cli(capsys, nb, "--grid", "seed=0", "--out", tmp_path / "b")[0] == 0
    a, b = sweep.gather(tmp_path / "a").iloc[0], sweep.gather(tmp_path / "b").iloc[0]
    assert a["threads"] == a["torch_threads"] == cores
    assert b["threads"] == b["torch_threads"] == 1


def test_a_relative_critkl_home_is_the_one_cache_of_every_point(tmp_path, monkeypatch, capsys):
    """Kernels run in their chapter's folder: ``CRITKL_HOME=.critkl-home critkl sweep book/x.ipynb`` must still
    mean the cache beside the command, not one under book/ (a campaign once trained into a throw-away copy)."""
    (tmp_path / "book").mkdir()
    nb = tiny_notebook(tmp_path / "book" / "tiny.ipynb", """
        import os, pathlib
        pathlib.Path(results_dir, "metrics.csv").write_text(f"home,cwd\\n{os.environ['CRITKL_HOME']},{os.getcwd()}\\n")
    """)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRITKL_HOME", ".critkl-home")
    status, io = run_cli(capsys, nb, "--grid", "seed=0", "--out", "sweep")
    assert status == 0, io
    row = sweep.gather(tmp_path / "sweep").iloc[0]
    assert row["home"] == str(tmp_path / ".critkl-home")
    assert row["cwd"] == str(tmp_path / "book")  # the kernel's own folder, where the relative path would have led


def check_finished_point(out: Path, params: dict, notebook_name: str) -> Path:
    folder = out / sweep.point_id(params)
    assert json.loads((folder / "point.json").read_text()) == params
    done = json.loads((folder / "done.json").read_text())
    assert done["seconds"] > 0 and done["cpu"] == points.cpu_name() and done["cpu"]
    nb = nbformat.read(str(folder / notebook_name), as_version=4)
    nbformat.validate(nb)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    literal = lambda v: json.dumps(v) if isinstance(v, str) else repr(v)  # papermill's Python translation
    assert len(injected) == 1 and f"results_dir = {literal(str(folder))}" in injected[0].source
    assert all(f"{k} = {literal(v)}" in injected[0].source for k, v in params.items())
    assert (folder / "log.txt").exists()
    return folder


def no_tmp_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------------------------------------ plan

def gated_notebook(tmp_path: Path):
    """``(notebook, runs log, gate)``: each point marks itself started, waits for the gate file, then appends
    its seed to the log (so a test can kill a sweep mid-point and count how often each point finished)."""
    runs, gate = tmp_path / "runs.txt", tmp_path / "gate"
    nb = tiny_notebook(tmp_path / "nap.ipynb",
                       'import pathlib, time\npathlib.Path(results_dir, "started").touch()\n'
                       'while not pathlib.Path(gate).exists():\n    time.sleep(0.05)',
                       METRICS_CELL, 'with open(log, "a") as f:\n    f.write(f"{seed}\\n")')
    return nb, runs, gate


def kill_when_both_started(command: list, out: Path, log_path: Path) -> None:
    """Run the sweep ``command`` in its own process group, wait until both of its points have written
    ``started``, then SIGKILL the whole group (the CLI and what it started)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/started"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(list(out.glob("*/started"))) == 2, log_path.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_parameters_cell_parsed_with_ast():
    assert sweep.notebook_parameters(TASK) == {"level": 3, "a": 3395, "b": 1791, "seed": 0, "n_samples": 2000,
                                               "results_dir": ""}
    points = sweep.plan(TASK, ["n_samples=50,100", "seed=0,1"], ["a=12"])
    assert points == [{"a": 12, "seed": s, "n_samples": n} for s in (0, 1) for n in (50, 100)]  # cell order
    assert list(points[0]) == ["a", "seed", "n_samples"]


def test_values_take_the_type_of_the_default():
    assert sweep.parse_value("x", "3", 1.5) == 3.0 and isinstance(sweep.parse_value("x", "3", 1.5), float)
    assert sweep.parse_value("x", "False", True) is False
    assert sweep.parse_value("x", "true", False) is True
    assert sweep.parse_value("x", "07", 1) == 7
    assert sweep.parse_value("x", "1e-3", 0.1) == 0.001
    assert sweep.parse_value("x", "abc", "") == "abc"
    assert sweep.parse_value("x", "[1, 2]", None) == [1, 2] and sweep.parse_value("x", "abc", None) == "abc"
    assert sweep.parse_value("x", "(1, 2)", (0,)) == (1, 2)
    for text, default in [("1.5", 1), ("yes", True), ("1", True), ("abc", 0.5), ("[1]", (0,))]:
        with pytest.raises(sweep.SweepError, match=re.escape(f"bad value {text!r} for x")):
            sweep.parse_value("x", text, default)


def test_point_ids_are_readable_stable_and_distinct():
    pid = sweep.point_id({"seed": 0, "beta": 0.2})
    assert pid.startswith("seed=0,beta=0.2-") and len(pid) == len("seed=0,beta=0.2-") + 8
    assert pid == sweep.point_id({"seed": 0, "beta": 0.2})
    assert sweep.point_id({"seed": 0, "beta": 0.2})[-8:] == sweep.point_id({"beta": 0.2, "seed": 0})[-8:]
    assert sweep.point_id({"p": "a/b"}) != sweep.point_id({"p": "a_b"})
    assert sweep.point_id({"p": "a/b c"}).startswith("p=a_b_c-")
    assert sweep.point_id({}).startswith("defaults-")


@pytest.mark.parametrize("argv, message", [
    (["--grid", "seeed=0,1"], "unknown parameter 'seeed'; names of .*: level, a, b, seed, n_samples$"),
    (["--grid", "seed=0,x"], "bad value 'x' for seed: expected int \\(its default is 0\\)"),
    (["--grid", "seed=0,1", "--set", "n_samples=1.5"], "bad value '1.5' for n_samples"),
    (["--set", "results_dir=/tmp/x"], "results_dir is set by the sweep"),
    (["--grid", "seed"], "expected NAME=V1,V2,..., got 'seed'"),
    (["--grid", "seed=0", "--set", "seed=1"], "parameter 'seed' given twice"),
])
def test_bad_request_exits_2_before_anything_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    status, io = run_cli(capsys, TASK, *argv, "--out", out)
    assert status == 2
    assert not out.exists()
    assert re.search(message, io.err.strip().splitlines()[-1]), io.err


def test_slurm_off_cluster_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    status, io = run_cli(capsys, TASK, "--grid", "seed=0", "--out", tmp_path / "sweep", "--executor", "slurm")
    assert status == 2 and "srun" in io.err and not (tmp_path / "sweep").exists()


def test_points_claimed_by_another_sweep_are_left_to_it(tmp_path, capsys):
    nb = tiny_notebook(tmp_path / "tiny.ipynb", METRICS_CELL)
    out = tmp_path / "sweep"
    claimed = sweep.point_id({"seed": 1})
    with file_lock(out / ".locks" / f"{claimed}.lock"):  # as a sweep running that point in the same DIR holds it
        status, io = run_cli(capsys, nb, "--grid", "seed=0,1,2", "--out", out)
    assert status == 0, io.err
    assert "3 points in" in io.out and \
        "2 finished, 0 skipped (finished before), 1 running in another sweep, 0 failed" in io.out
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        sorted(sweep.point_id({"seed": s}) for s in (0, 2))
    status, io = run_cli(capsys, nb, "--grid", "seed=0,1,2", "--out", out)  # the other sweep has ended
    assert status == 0 and "1 finished, 2 skipped (finished before), 0 failed" in io.out
    assert (out / claimed / "done.json").exists()


def test_a_local_worker_inherits_its_points_lock(tmp_path, capsys, monkeypatch):
    """The worker holds its point's lock too, so a sweep killed first cannot hand a running point to another."""
    nb = tiny_notebook(tmp_path / "tiny.ipynb", METRICS_CELL)
    out = tmp_path / "sweep"
    real, seen = sweep.subprocess.Popen, []

    def popen(argv, **kw):
        seen.append([os.readlink(f"/proc/self/fd/{fd}") for fd in kw.get("pass_fds", ())])
        return real(argv, **kw)
    monkeypatch.setattr(sweep.subprocess, "Popen", popen)
    status, io = run_cli(capsys, nb, "--grid", "seed=0,1", "--out", out)
    assert status == 0, io.err
    assert sorted(seen) == sorted([[str(out / ".locks" / f"{sweep.point_id({'seed': s})}.lock")] for s in (0, 1)])


# --------------------------------------------------------------------------- book/task.ipynb 2 x 2

@pytest.fixture(scope="module")
def task_sweep(tmp_path_factory):
    """The 2 x 2 sweep of book/task.ipynb on the local executor (2 workers), run once for the module."""
    out = tmp_path_factory.mktemp("task") / "sweep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRITKL_HOME", str(out.parent / "home"))
        status = cli.main(["sweep", str(TASK), *TASK_GRID, "--out", str(out), "--jobs", "2", "--no-progress"])
    return status, out


def test_local_sweep_of_task_chapter(task_sweep):
    status, out = task_sweep
    assert status == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".locks") == \
        sorted(map(sweep.point_id, TASK_POINTS))
    for params in TASK_POINTS:
        folder = check_finished_point(out, params, "task.ipynb")
        assert sorted(p.name for p in folder.iterdir()) == ["done.json", "log.txt", "metrics.csv", "point.json",
                                                            "task.ipynb"]
    assert no_tmp_files(out)

    df = sweep.gather(out)
    assert list(df.columns) == ["point", "seed", "n_samples", "split", "digits", "fraction"]
    assert df.groupby(["seed", "n_samples"]).ngroups == 4
    assert set(df["split"]) == {"comfort", "plus1"}
    assert sorted(df.loc[df["split"] == "comfort", "digits"].unique()) == [1, 2, 3]  # level 3
    assert df.loc[df["split"] == "plus1", "digits"].max() == 4
    sums = df.groupby(["point", "split"])["fraction"].sum()
    assert len(sums) == 8 and (sums - 1).abs().max() < 1e-9


def test_rerun_skips_every_finished_point(task_sweep, capsys):
    status, out = task_sweep
    assert status == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent.name != ".locks"}
    status, io = run_cli(capsys, TASK, *TASK_GRID, "--out", out, "--jobs", "2")
    assert status == 0
    assert "4 points in" in io.out and "0 finished, 4 skipped (finished before), 0 failed" in io.out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_gather_command(task_sweep, tmp_path, capsys):
    _, out = task_sweep
    csv = tmp_path / "all" / "task.csv"
    assert cli.main(["gather", str(out), "--out", str(csv)]) == 0
    assert "rows from 4 points" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(csv), sweep.gather(out))
    assert no_tmp_files(csv.parent)
    assert cli.main(["gather", str(out), "--table", "other.csv"]) == 2
    assert "tables there: metrics.csv" in capsys.readouterr().err


def test_debug_executor_sweep_of_task_chapter(tmp_path, capsys):
    out = tmp_path / "sweep"
    status, io = run_cli(capsys, TASK, *TASK_GRID, "--out", out, "--executor", "debug")
    assert status == 0, io.out + io.err
    assert "4 finished, 0 skipped (finished before), 0 failed" in io.out
    for params in TASK_POINTS:
        check_finished_point(out, params, "task.ipynb")
    df = sweep.gather(out)
    assert len(df) == len(df.drop_duplicates(["point", "split", "digits"])) and df["point"].nunique() == 4
    assert (out / "_debug").is_dir()


# ---------------------------------------------------------------------------- tiny notebooks

def test_failing_point_leaves_the_others_finished(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CRITKL_TORCH_THREADS", raising=False)  # threads from cores // jobs
    nb = tiny_notebook(tmp_path / "tiny.ipynb", METRICS_CELL,
                       'if seed == 1:\n    raise ValueError(f"boom at seed {seed}")')
    out = tmp_path / "sweep"
    status, io = run_cli(capsys, nb, "--grid", "seed=0,1,2", "--out", out, "--jobs", "2")
    assert status == 1
    assert "3 points in" in io.out and "2 finished, 0 skipped (finished before), 1 failed" in io.out
    failed = out / sweep.point_id({"seed": 1})
    assert f"FAILED {failed / 'tiny.ipynb'}\n    ValueError: boom at seed 1" in io.out
    assert not (failed / "done.json").exists() and (failed / "error.txt").exists()
    nbformat.validate(nbformat.read(str(failed / "tiny.ipynb"), as_version=4))  # kept, complete
    for seed in (0, 2):
        check_finished_point(out, {"seed": seed}, "tiny.ipynb")
    df = sweep.gather(out)  # the failed point wrote metrics.csv before raising, but is not finished
    assert list(df.columns) == ["point", "param_seed", "seed", "threads", "torch_threads"]
    assert df["seed"].tolist() == [0, 2] and df["param_seed"].tolist() == [0, 2]
    threads = max(1, (os.cpu_count() or 1) // 2)  # jobs x threads <= cores
    assert df["threads"].tolist() == [threads] * 2 and df["torch_threads"].tolist() == [threads] * 2

    status, io = run_cli(capsys, nb, "--grid", "seed=0,1,2", "--out", out)  # only the failed point re-runs
    assert status == 1 and "0 finished, 2 skipped (finished before), 1 failed" in io.out


def test_point_over_the_time_limit_is_killed(tmp_path, capsys):
    nb = tiny_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(sleep)")
    out = tmp_path / "sweep"
    start = time.monotonic()
    status, io = run_cli(capsys, nb, "--set", "sleep=120", "--out", out, "--timeout-min", "0.05")
    assert status == 1 and time.monotonic() - start < 60
    assert "0 finished, 0 skipped (finished before), 1 failed" in io.out
    assert "timed out after 0.05 min" in io.out
    assert not (out / sweep.point_id({"sleep": 120.0}) / "done.json").exists()
    assert no_tmp_files(out)


def test_sigkilled_sweep_resumes_every_point_once(tmp_path, capsys):
    """The CLI's process group is SIGKILLed while both points run; the same command then finishes each once."""
    nb, runs, gate = gated_notebook(tmp_path)
    out = tmp_path / "sweep"
    argv = [str(nb), "--grid", "seed=0,1", "--set", f"gate={gate}", "--set", f"log={runs}", "--out", str(out),
            "--jobs", "2"]
    kill_when_both_started([sys.executable, "-m", "critkl.cli", "sweep", *argv, "--no-progress"], out,
                           tmp_path / "killed.log")
    assert not list(out.glob("*/done.json")) and list(out.glob("*/*.tmp.ipynb"))  # killed mid-point
    time.sleep(2)  # the orphaned kernels notice their parent's death (ipykernel polls every second) and exit
    gate.touch()

    status, io = run_cli(capsys, *argv)
    assert status == 0, io.out + io.err
    assert "2 finished, 0 skipped (finished before), 0 failed" in io.out
    # each point finished exactly once (a killed kernel that outlived its parent would have appended too)
    assert sorted(runs.read_text().split()) == ["0", "1"]
    for seed in (0, 1):
        check_finished_point(out, {"seed": seed, "log": str(runs), "gate": str(gate)}, "nap.ipynb")
    assert no_tmp_files(out) and not list(out.glob("*/error.txt"))
    assert sweep.gather(out)["seed"].tolist() == [0, 1]


def test_write_metrics_is_atomic(tmp_path):
    path = sweep.write_metrics(pd.DataFrame({"x": [1, 2]}), tmp_path / "point", name="t.csv")
    assert path == tmp_path / "point" / "t.csv" and pd.read_csv(path)["x"].tolist() == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]
    with pytest.raises(ValueError, match="results_dir is empty"):
        sweep.write_metrics(pd.DataFrame(), "")


# ------------------------------------------------------------------------------------------ SLURM

def test_sbatch_script_without_slurm(tmp_path, monkeypatch):
    """The script of a submission, made where SLURM is missing (for the book); a real cluster runs it below."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    script = sweep.sbatch_script(tmp_path / "sweep", 4, timeout_min=89.5, partition="gpu", gpus_per_job=1,
                                 array_parallelism=2)
    lines = script.splitlines()
    for line in ["#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=90", "#SBATCH --job-name=critkl-sweep", "#SBATCH --signal=CONT@90",
                 f"#SBATCH --output={tmp_path}/sweep/_slurm/%A_%a_0_log.out"]:
        assert line in lines, script
    assert lines[-1].endswith(f"-u -m submitit.core._submit {tmp_path}/sweep/_slurm")


# A real one-node cluster (the slurm_cluster fixture, tests/slurm_cluster.py), accounting off as on many small
# clusters. Each point is one job of one core; the node has this machine's cores.

@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    """SLURM's clients see the one-node cluster; the sweep asks squeue every second (not 10: tests wait less)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster))
    monkeypatch.setattr(critkl.slurm, "SQUEUE_EVERY_S", 1)
    return slurm_cluster


def slurm_cli(*argv) -> list[str]:
    return [sys.executable, "-m", "critkl.cli", "sweep", *map(str, argv), "--executor", "slurm",
            "--slurm-partition", "cpu", "--no-progress"]


def test_slurm_sweep_of_task_chapter(slurm, tmp_path):
    """The issue's command as a user runs it: both points finish, one line (not one per poll) says that
    accounting is off, and the submitted script is the one :func:`sweep.sbatch_script` shows."""
    out = tmp_path / "sweep"
    done = subprocess.run(slurm_cli(TASK, "--grid", "level=2,3", "--set", "n_samples=50", "--out", out,
                                    "--timeout-min", 10), cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 finished, 0 skipped (finished before), 0 failed" in done.stdout
    assert [line for line in output.splitlines() if "accounting" in line] == [
        "critkl sweep: no SLURM accounting here (sacct: Slurm accounting storage is disabled); job states come "
        f"from the sweep's own files ({out}/_slurm, each point's done.json) and squeue"], output
    assert "Bypassing" not in output and "sacct error" not in output
    for level in (2, 3):
        check_finished_point(out, {"level": level, "n_samples": 50}, "task.ipynb")
    df = sweep.gather(out)
    assert df.groupby("level")["digits"].max().to_dict() == {2: 3, 3: 4}  # the plus-1 split of each level
    (submitted,) = (out / "_slurm").glob("*_submission.sh")
    assert submitted.read_text() == sweep.sbatch_script(out, 2, timeout_min=10, partition="cpu")


def test_killed_slurm_sweep_resumes_without_submitting_twice(slurm, tmp_path, capsys, monkeypatch):
    """The command is SIGKILLed while both jobs run; they go on in SLURM. Run again, it waits for them (a
    second submission would run each point twice, in the same folder) and finishes each point once."""
    nb, runs, gate = gated_notebook(tmp_path)
    out = tmp_path / "sweep"
    argv = [nb, "--grid", "seed=0,1", "--set", f"gate={gate}", "--set", f"log={runs}", "--out", out]
    kill_when_both_started(slurm_cli(*argv), out, tmp_path / "killed.log")
    jobs = json.loads((out / "_slurm" / "jobs.json").read_text())
    assert set(jobs.values()) <= critkl.slurm.queued()  # still running without the command

    def queued_then_open_the_gate():  # the resumed sweep has seen the earlier jobs queued: let them finish
        queued = real_queued()
        gate.touch()
        return queued
    real_queued = critkl.slurm.queued
    monkeypatch.setattr(critkl.slurm, "queued", queued_then_open_the_gate)
    status, io = run_cli(capsys, *argv, "--executor", "slurm", "--slurm-partition", "cpu")
    assert status == 0, io.out + io.err
    assert "2 finished, 0 skipped (finished before), 0 failed" in io.out
    assert sorted(runs.read_text().split()) == ["0", "1"]  # each point ran once
    assert len(list((out / "_slurm").glob("*_submission.sh"))) == 1  # one array, submitted by the killed run
    assert json.loads((out / "_slurm" / "jobs.json").read_text()) == jobs
    for seed in (0, 1):
        check_finished_point(out, {"seed": seed, "log": str(runs), "gate": str(gate)}, "nap.ipynb")
    assert no_tmp_files(out) and not list(out.glob("*/error.txt"))


def test_slurm_points_failing_and_over_the_time_limit(slurm, tmp_path, capsys, monkeypatch):
    """seed 0 raises, seed 1 outlives its 1-minute SLURM time limit (SLURM kills it: no result file, and
    sacct cannot say why), seed 2 finishes. The sweep ends, with each failure's reason in the summary."""
    for var in THREAD_VARS:  # as on a cluster node: SLURM, not the submitting shell, sets them
        monkeypatch.delenv(var, raising=False)
    nb = tiny_notebook(tmp_path / "tiny.ipynb", 'if seed == 0:\n    raise ValueError("boom at seed 0")',
                       "import time\nif seed == 1:\n    time.sleep(600)", METRICS_CELL)
    out = tmp_path / "sweep"
    start = time.monotonic()
    status, io = run_cli(capsys, nb, "--grid", "seed=0,1,2", "--out", out, "--executor", "slurm",
                         "--slurm-partition", "cpu", "--timeout-min", "1")
    assert status == 1, io.out + io.err
    assert time.monotonic() - start < 180  # killed at 1 to 1.5 min (SLURM checks time limits every 30 s)
    assert "3 points in" in io.out and "1 finished, 0 skipped (finished before), 2 failed" in io.out
    failed = {seed: out / sweep.point_id({"seed": seed}) for seed in (0, 1)}
    assert f"FAILED {failed[0] / 'tiny.ipynb'}\n    ValueError: boom at seed 0" in io.out
    cancelled = r"\*\*\* (JOB|STEP) \S+ ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT \*\*\*"  # slurmstepd's line
    assert re.search(re.escape(f"FAILED {failed[1] / 'tiny.ipynb'}\n    ") + cancelled, io.out), io.out
    for folder in failed.values():
        assert not (folder / "done.json").exists() and (folder / "error.txt").exists()
    nbformat.validate(nbformat.read(str(failed[0] / "tiny.ipynb"), as_version=4))
    assert no_tmp_files(out)
    check_finished_point(out, {"seed": 2}, "tiny.ipynb")
    assert sweep.gather(out)["threads"].isna().all()  # SLURM decides the threads (cpus-per-task)


def test_gather_prefixes_colliding_parameters(tmp_path):
    for seed in (0, 1):
        folder = tmp_path / sweep.point_id({"seed": seed, "beta": 0.5})
        sweep.write_metrics(pd.DataFrame({"beta": [9.0], "acc": [seed / 2]}), folder)
        (folder / "point.json").write_text(json.dumps({"seed": seed, "beta": 0.5}))
        if seed == 0:
            (folder / "done.json").write_text("{}")  # seed 1 unfinished: left out
    df = sweep.gather(tmp_path)
    assert df.to_dict("records") == [{"point": sweep.point_id({"seed": 0, "beta": 0.5}), "seed": 0,
                                      "param_beta": 0.5, "beta": 9.0, "acc": 0.0}]
