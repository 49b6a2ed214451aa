"""Probing a pre-trained checkpoint for the paper's regime (the paper's Section 4 / Appendix D.1, Tables 4-5:
what its pre-trained models can do before RL).

The paper's pre-trained models solve 49-89 % of N+1 problems and fail at critical tokens (Section 3); a
from-scratch model may solve none. ``probe`` measures, for one checkpoint, what decides whether RL has
anything to work with: in-distribution and out-of-distribution accuracy, plus-1 success at the sampling
temperatures, and how the model treats the critical tokens. ``record`` appends the numbers (with a note and
the command that trained the checkpoint) to a CSV of every configuration tried, ``results/regime_search.csv``
(``probe_and_record`` does both).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import task
from .measure import measure, tracking_problems
from .fileio import atomic_file
from .model import load_checkpoint
from .pretrain import accuracy_by_digits
from .rollout import accuracy


def probe(path, n: int = 64, temperatures=(1.0, 2.0), seed: int = 0) -> dict:
    """Numbers that say whether a checkpoint is in the paper's regime (see module docstring)."""
    model, tok, info = load_checkpoint(path)
    cfg = info["config"]
    N = int(cfg["level"])
    out = dict(checkpoint=Path(path).name, arch=cfg["arch"], level=N, aux_task=cfg.get("aux_task", "none"),
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


def record(row: dict, csv: Path, note: str = "", command: str = "") -> pd.DataFrame:
    """Append ``row`` plus a free-text ``note`` and the ``command`` that trained the checkpoint to ``csv``
    and return the whole table. Every column of the old table and of ``row`` is kept (missing cells are
    empty); an old table's ``N`` column (before the rename to ``level``) is renamed. The file is written
    atomically (``critkl.fileio.atomic_file``)."""
    csv = Path(csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(csv) if csv.is_file() else pd.DataFrame()
    if "N" in old and "level" not in old:
        old = old.rename(columns={"N": "level"})
    new = pd.DataFrame([{**row, "note": note, "command": command or row.get("command", "")}])
    df = pd.concat([old, new], ignore_index=True) if len(old.columns) else new
    with atomic_file(csv) as tmp:
        df.to_csv(tmp, index=False)
    return df


def probe_and_record(dirs, csv="results/regime_search.csv", note: str = "", command: str = "", n: int = 64) -> pd.DataFrame:
    """``probe`` every checkpoint folder of ``dirs`` and ``record`` it in ``csv``; returns the probed rows."""
    rows = []
    for d in dirs:
        rows.append(probe(d, n=n))
        record(rows[-1], csv, note, command)
    return pd.DataFrame(rows)
