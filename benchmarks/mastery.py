"""Time to mastery of the shipped pre-trainings: steps and minutes until greedy exact match reaches 99 % on every
operand length 1..N, read from each checkpoint's own evaluations (``eval.csv``: every ``eval_every`` steps, its
``n`` problems per length), with the CPU each trained on.

    python benchmarks/mastery.py [--threshold 0.99] [--models models]

Nothing is trained: the minutes are those recorded when the checkpoint was pre-trained (``critkl.json``), on the
CPU and threads printed beside them (``?`` where the checkpoint predates recording them), so rows from different
CPUs are not a side-by-side comparison. Last line: ``mastery: <k> of <n> checkpoints reach <threshold>``.
"""
from __future__ import annotations

import argparse

import pandas as pd

from critkl.analysis import time_to_mastery
from critkl.store import shipped_evals


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--models", default=None, help="the model store (default: the package's models/)")
    a = p.parse_args()
    evals = shipped_evals(a.models)
    t = time_to_mastery(evals, a.threshold)
    first = evals.groupby("checkpoint").first()
    cpu = first.cpu_capability.replace("", "?") + " x" + first.torch_threads.astype(str).replace("0", "?")
    t = t.assign(problems_per_length=t.checkpoint.map(first.n), cpu=t.checkpoint.map(cpu))
    cols = ["config", "pretrain_seed", "step", "minutes", "max_steps", "total_minutes", "problems_per_length", "cpu"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(t[cols].round(1).to_string(index=False))
    print(f"mastery: {int(t.step.notna().sum())} of {len(t)} checkpoints reach {a.threshold:g}")


if __name__ == "__main__":
    main()
