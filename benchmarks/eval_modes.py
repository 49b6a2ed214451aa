"""Does ``eval_mode="exact"`` measure what the sampled evaluation measures, for less? Side by side, per checkpoint.

    python benchmarks/eval_modes.py DIR [DIR ...] [--n 256] [--draws 4] [--threads 1]

For each checkpoint folder (pre-trained or RL; its level from its ``critkl.json``), on the same ``--n`` plus-1
and ``--n`` comfort-zone problems at temperature 1: the sampled accuracy (one episode per problem, the paper's
protocol) in ``--draws`` independent draws (mean and 95 % t-interval over draws), and ``exact_success``
(teacher-forced probability of the true text: the sampled accuracy's expectation minus episodes that reach
the right answer by another text). Prints both, their difference, and the seconds of one sampled evaluation
against one exact evaluation; the first line says which machine. Last line:
``eval modes: exact - sampled <mean> points (<min> .. <max>), exact <x>x faster``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from critkl import task
from critkl.analysis import mean_ci
from critkl.model import load_checkpoint, machine_line
from critkl.rollout import accuracy, exact_success


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(machine_line())
    gaps, ratios = [], []
    for d in a.dirs:
        info = json.loads((Path(d) / "critkl.json").read_text())
        level = int(info.get("level") or info["config"]["level"])
        model, tok, _ = load_checkpoint(d)
        for split, k in (("plus", 1), ("comfort", 0)):
            sp = task.Split("plus", level, 1) if split == "plus" else task.Split("comfort", level)
            problems = sp.sample(a.n, np.random.default_rng([7, level]))
            t0 = time.perf_counter()
            draws = [accuracy(model, tok, problems, level, k, 1.0, torch.Generator().manual_seed(s))
                     for s in range(a.draws)]
            t_sample = (time.perf_counter() - t0) / a.draws
            t0 = time.perf_counter()
            exact = exact_success(model, tok, problems, 1.0)
            t_exact = time.perf_counter() - t0
            mean, half, _ = mean_ci(draws)
            gaps.append(100 * (exact - mean))
            ratios.append(t_sample / t_exact)
            print(f"{Path(d).name} {split}: sampled {100 * mean:.1f} % [{100 * (mean - half):.1f}, "
                  f"{100 * (mean + half):.1f}] over {a.draws} draws, exact {100 * exact:.1f} %, "
                  f"exact - sampled {gaps[-1]:+.1f} points; {t_sample:.1f} s vs {t_exact:.1f} s per evaluation")
    print(f"eval modes: exact - sampled {np.mean(gaps):+.1f} points ({min(gaps):+.1f} .. {max(gaps):+.1f}), "
          f"exact {np.median(ratios):.1f}x faster")


if __name__ == "__main__":
    main()
