"""Probing a pre-trained checkpoint for the paper's regime (issue: the phenomenon at CPU scale).

The paper's pre-trained models solve 49-89 % of N+1 problems and fail at critical tokens; a from-scratch
model may solve none. ``probe`` measures, for one checkpoint, what decides whether RL has anything to
work with: in-distribution and out-of-distribution accuracy, plus-1 success at the sampling temperatures,
and how the model treats the critical tokens. ``record`` appends the numbers to a CSV of every
configuration tried.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import task
from .critical import measure, tracking_problems
from .model import load_checkpoint
from .pretrain import accuracy_by_digits
from .rollout import accuracy


def probe(path, n: int = 64, temperatures=(1.0, 2.0), seed: int = 0) -> dict:
    """Numbers that say whether a checkpoint is in the paper's regime (see module docstring)."""
    model, tok, info = load_checkpoint(path)
    cfg = info["config"]
    N = int(cfg["level"])
    out = dict(checkpoint=Path(path).name, arch=cfg["arch"], N=N, aux_task=cfg.get("aux_task", "none"),
               aux_fraction=cfg.get("aux_fraction", 0.0), aux_max_digits=cfg.get("aux_max_digits", ""),
               steps=info["steps"], minutes=round(info["seconds"] / 60, 1), n_params=info["n_params"])
    greedy = accuracy_by_digits(model, tok, range(1, N + 3), n, seed=seed + 7)
    acc = dict(zip(greedy.digits, greedy.accuracy))
    out["greedy_min_1toN"] = min(acc[d] for d in range(1, N + 1))
    out["greedy_N+1"], out["greedy_N+2"] = acc[N + 1], acc[N + 2]
    rng = np.random.default_rng([seed, 3])
    plus1 = task.Split("plus", N, 1).sample(n, rng)
    comfort = task.Split("comfort", N).sample(n, rng)
    for t in temperatures:
        g = torch.Generator().manual_seed(seed)
        out[f"plus1_T{t:g}"] = accuracy(model, tok, plus1, N, 1, t, g)
        out[f"comfort_T{t:g}"] = accuracy(model, tok, comfort, N, 0, t, g)
    plus2 = task.Split("plus", N, 2).sample(n, rng)
    out["plus2_T1"] = accuracy(model, tok, plus2, N, 2, 1.0, torch.Generator().manual_seed(seed))
    df = measure(model, tok, tracking_problems(N, 1, n, seed), N, temperature=1.0, ref_temperature=1.0, alpha=1.0)
    crit, other = df[df.critical], df[~df.critical]
    first = crit[(crit.step == 1) & (crit.name == "n+1_comma")]
    out.update(p_first_comma_mean=first.p_correct.mean(), p_first_comma_median=first.p_correct.median(),
               p_critical_mean=crit.p_correct.mean(), p_critical_median=crit.p_correct.median(),
               p_other_mean=other.p_correct.mean(),
               certainty_critical_median=crit.certainty.median(), certainty_other_median=other.certainty.median())
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def record(row: dict, csv: Path, note: str = "") -> pd.DataFrame:
    """Append ``row`` (plus a free-text note) to ``csv`` and return the whole table."""
    csv = Path(csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(csv) if csv.is_file() else pd.DataFrame()
    df = pd.concat([old, pd.DataFrame([{**row, "note": note}])], ignore_index=True)
    df.to_csv(csv, index=False)
    return df
