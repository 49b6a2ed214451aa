"""Markdown tables for results/summary.md, computed from the saved metrics (nothing typed in by hand).

    python benchmarks/summarize_results.py [--results results]

Experiment (b): accuracy on plus1 vs episodes per KL variant (mean and 95 % t-interval over seeds), the gap
prioritized - standard at the final budget, and the episodes each variant needs to first reach a fixed
accuracy. Ablations: final accuracy per setting. Experiment (a): accuracy vs episodes per level N.
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from kl_experiment import _t975  # same directory: one t-table for both scripts


def ci(x) -> str:
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return f"{100 * x.mean():.1f} %"
    half = x.std(ddof=1) / np.sqrt(len(x)) * _t975(len(x) - 1)
    return f"{100 * x.mean():.1f} ± {100 * half:.1f} %"


def curves(m: pd.DataFrame, by: str) -> str:
    eps = sorted(m.episodes.unique())
    eps = eps[:: max(1, len(eps) // 5)] + ([eps[-1]] if eps[-1] not in eps[:: max(1, len(eps) // 5)] else [])
    lines = [f"| {by} | " + " | ".join(f"{e}" for e in eps) + " |", "|---" * (len(eps) + 1) + "|"]
    for key, g in m.groupby(by):
        cells = [ci(g[g.episodes == e].acc_plus) for e in eps]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def episodes_to(m: pd.DataFrame, by: str, gain: float) -> str:
    """Episodes each seed needs to first reach its own start accuracy + ``gain``."""
    lines = [f"| {by} | seeds gaining {100 * gain:.0f} points | episodes to get there (per seed) |", "|---|---|---|"]
    for key, g in m.groupby(by):
        firsts = []
        for _, s in g.groupby("seed"):
            s = s.sort_values("episodes")
            hit = s[s.acc_plus >= s.acc_plus.iloc[0] + gain - 1e-9]
            firsts.append(int(hit.episodes.min()) if len(hit) else None)
        n = sum(f is not None for f in firsts)
        lines.append(f"| {key} | {n}/{len(firsts)} | {', '.join('-' if f is None else str(f) for f in firsts)} |")
    return "\n".join(lines)


def gap(m: pd.DataFrame) -> str:
    last = m[m.episodes == m.episodes.max()].pivot(index="seed", columns="kl", values="acc_plus")
    if not {"standard", "prioritized"} <= set(last):
        return ""
    d = (last.prioritized - last.standard).to_numpy()
    half = d.std(ddof=1) / np.sqrt(len(d)) * _t975(len(d) - 1) if len(d) > 1 else float("nan")
    return (f"gap prioritized - standard at {int(m.episodes.max())} episodes: {100 * d.mean():+.1f} points "
            f"(95 % CI ± {100 * half:.1f}, {len(d)} seeds; per seed {', '.join(f'{100 * x:+.1f}' for x in d)})")


def experiment_b(m: pd.DataFrame, title: str, details: bool) -> None:
    print(f"## {title}\n")
    print(curves(m, "kl"), "\n")
    print(gap(m), "\n")
    print(episodes_to(m, "kl", 0.1), "\n")
    if details:
        last = m[m.episodes == m.episodes.max()]
        print("comfort zone at the end:", ", ".join(f"{k} {ci(g.acc_comfort)}" for k, g in last.groupby("kl")), "\n")
        if "p_critical_mean" in m:
            print("P(correct) at tracked critical tokens, start -> end:", ", ".join(
                f"{k} {g[g.episodes == 0].p_critical_mean.mean():.3f} -> "
                f"{g[g.episodes == g.episodes.max()].p_critical_mean.mean():.3f}" for k, g in m.groupby("kl")), "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results")
    r = Path(p.parse_args().results)
    for folder, title in [("kl_N3_seeds5", "Experiment (b)"),
                          ("kl_N3_seeds10", "Experiment (b), standard vs prioritized, all seeds")]:
        if (r / folder / "metrics.csv").is_file():
            experiment_b(pd.read_csv(r / folder / "metrics.csv"), title, details=folder == "kl_N3_seeds5")
    abl = sorted((r / "ablation").glob("*/metrics.csv"))
    if abl:
        print("## Ablation (seed 0, prioritized)\n\n| setting | alpha | ref T | plus1 start | plus1 end | weight critical | weight other |\n|---|---|---|---|---|---|---|")
        for f in abl:
            m = pd.read_csv(f)
            e = m[m.episodes == m.episodes.max()]
            print(f"| {f.parent.name} | {m.alpha.iloc[0]:g} | {m.ref_temperature.iloc[0]:g} | "
                  f"{100 * m.acc_plus.iloc[0]:.1f} % | {100 * e.acc_plus.mean():.1f} % | "
                  f"{m.weight_critical.iloc[1:].mean():.3f} | {m.weight_other.iloc[1:].mean():.3f} |")
        print()
    lv = sorted((r / "levels").glob("*/metrics.csv"))
    if lv:
        m = pd.concat([pd.read_csv(f) for f in lv], ignore_index=True)
        print("## Experiment (a): level N, RL on N+1, standard KL\n")
        print(curves(m, "level"), "\n")


if __name__ == "__main__":
    main()
