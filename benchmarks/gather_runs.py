"""Gather finished RL runs from the cache into one tidy table (one row per evaluation, config columns).

    python benchmarks/gather_runs.py --level 3 --out results/rl_dynamics/metrics.csv [--since 2026-11-25]

Every run folder under $CRITKL_HOME/rl holds its config (config.rl.json) and metrics (metrics.csv); this
joins them, so single-seed probes are kept on disk beside the multi-seed experiments.
"""
import argparse
import json
from datetime import datetime
from pathlib import Path

import pandas as pd

from critkl.config import RLConfig, critkl_home

CONFIG_COLUMNS = ["reward", "baseline", "gae_lambda", "critic_warmup", "loss_average", "value_init", "vf_coef",
                  "ent_coef", "beta", "lr", "minibatch_episodes", "rounds", "episodes_per_collect"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", type=int, default=3)
    p.add_argument("--since", default=None, help="only runs finished on or after this date (YYYY-MM-DD)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    since = datetime.fromisoformat(args.since).timestamp() if args.since else 0
    frames = []
    for d in sorted((critkl_home() / "rl").glob(f"N{args.level}-*")):
        f = d / "metrics.csv"
        if not f.is_file() or f.stat().st_mtime < since:
            continue
        cfg = json.loads((d / "config.rl.json").read_text())
        m = pd.read_csv(f)
        for c in CONFIG_COLUMNS:
            m[c] = cfg.get(c, RLConfig.__dataclass_fields__[c].default)  # omitted from the key at its default
        m["run"] = d.name
        frames.append(m)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(out, index=False)
    last = df.sort_values("round").groupby("run").tail(1)
    start = df[df["round"] == 0][["run", "acc_plus", "p_critical_mean"]]
    last = last.merge(start, on="run", suffixes=("", "_start"))
    cols = ["kl"] + CONFIG_COLUMNS[:11] + ["seed", "episodes", "acc_plus_start", "acc_plus", "acc_comfort",
                                           "p_critical_mean_start", "p_critical_mean"]
    print(last.sort_values(cols[:12])[cols].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
