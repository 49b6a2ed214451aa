"""Experiment (b), one or more seeds: no KL vs standard KL vs prioritized KL from one checkpoint.

    python benchmarks/kl_experiment.py --model DIR --seeds 0 1 2 [--beta B --alpha A --ref-temperature T ...]

Writes every run's metrics (one row per evaluation, config columns included) to --out/metrics.csv and
critical-token tracking to --out/critical.csv, then prints the accuracy gap prioritized - standard at the
final episode budget (mean and 95 % CI over seeds, t-interval). Options left out take the ``cpu`` RL preset's
values.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from critkl import finetune, rl_config
from critkl.rl import run_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=["none", "standard", "prioritized"])
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--ref-temperature", type=float, default=None)
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--k", type=int, default=1, help="train and evaluate on plus-k problems")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--minibatch-episodes", type=int, default=None)
    p.add_argument("--episodes-per-collect", type=int, default=None)
    p.add_argument("--out", default="results/kl_experiment")
    args = p.parse_args()
    metrics, crits = [], []
    for seed in args.seeds:
        for kl in args.variants:
            cfg = rl_config("cpu", model_dir=args.model, kl=kl, seed=seed, k=args.k, temperature=args.temperature,
                            alpha=args.alpha, ref_temperature=args.ref_temperature, beta=args.beta,
                            rounds=args.rounds, lr=args.lr, minibatch_episodes=args.minibatch_episodes,
                            episodes_per_collect=args.episodes_per_collect)
            t = time.perf_counter()
            df = finetune(cfg, progress=False)
            print(f"seed {seed} {kl:12s} acc_plus {df.acc_plus.iloc[0]:.3f} -> {df.acc_plus.iloc[-1]:.3f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
            metrics.append(df)
            crit = run_dir(cfg) / "critical.csv"
            if crit.stat().st_size > 1:
                crits.append(pd.read_csv(crit))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    m = pd.concat(metrics, ignore_index=True)
    m.to_csv(out / "metrics.csv", index=False)
    if crits:
        pd.concat(crits, ignore_index=True).to_csv(out / "critical.csv", index=False)
    last = m[m["round"] == m["round"].max()].pivot(index="seed", columns="kl", values="acc_plus")
    print(last.to_string())
    if {"standard", "prioritized"} <= set(last):
        gap = (last["prioritized"] - last["standard"]).to_numpy()
        n = len(gap)
        half = (np.std(gap, ddof=1) / np.sqrt(n) * _t975(n - 1)) if n > 1 else float("nan")
        print(f"accuracy gap prioritized - standard at {int(m.episodes.max())} episodes: "
              f"{gap.mean():+.3f} (95% CI +/- {half:.3f}, {n} seeds)")


def _t975(df: int) -> float:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    return table.get(df, 1.96)


if __name__ == "__main__":
    main()
