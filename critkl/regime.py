"""Probing a pre-trained checkpoint for the paper's regime (the paper's Section 4 / Appendix D.1, Tables 4-5:
what its pre-trained models can do before RL).

The paper's pre-trained models solve 49-89 % of N+1 problems and fail at critical tokens (Section 3); a
from-scratch model may solve none. ``probe`` measures, for one checkpoint, what decides whether RL has
anything to work with: in-distribution and out-of-distribution accuracy, plus-1 success at the sampling
temperatures, and how the model treats the critical tokens. ``record`` appends the numbers (with a note and
the command that trained the checkpoint) to a CSV of every configuration tried, ``results/regime_search.csv``
(``probe_and_record`` does both). ``premise_summary``, ``seed_spread`` and ``training_summary`` read such a
table and the shipped checkpoints' pre-training evaluations for the book.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import task
from .config import config_name, pretrain_config, recorded_config  # the regime table's configuration column
from .measure import certainty_delta, failure_row, measure, table1, tracking_problems
from .fileio import atomic_file
from .model import load_checkpoint
from .pretrain import accuracy_by_digits
from .rollout import accuracy
from .sampling import generate


# The premise (the regime issue): a configuration holds it when, on at least 2 of its 3 pre-training seeds,
# every criterion holds. (column, comparison, threshold)
PREMISE = (("greedy_min_1toN", ">=", 0.97), ("plus1_T1", ">=", 0.15), ("plus1_T1", "<=", 0.60),
           ("fail_at_critical", ">=", 0.5), ("p_first_comma_mean", "<=", 0.8))


def premise_holds(row: dict) -> bool:
    """Whether one probed checkpoint meets every criterion of ``PREMISE``."""
    return not missed_criteria(row)


def missed_criteria(row: dict) -> list[str]:
    """The criteria of ``PREMISE`` that one probed checkpoint misses, in words with its value:
    ``['fail_at_critical 0.40, not >= 0.5']`` (empty when the premise holds)."""
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    return [f"{col} {row[col]:.2f}, not {op} {bound:g}" for col, op, bound in PREMISE if not ops[op](row[col], bound)]


@torch.no_grad()
def probe(path, n: int = 256, n_greedy: int = 128, n_table1: int = 50, seed: int = 0) -> dict:
    """Numbers that say whether a checkpoint is in the paper's regime (see module docstring):

    - ``greedy_min_1toN``: worst greedy exact match over operand lengths 1..N (``n_greedy`` problems each,
      both operands of that length), and ``greedy_N+1``, ``greedy_N+2``;
    - ``plus1_T1``, ``plus2_T1``, ``comfort_T1``: success of one sample at temperature 1 on ``n`` problems;
    - ``fail_at_critical``: of the failed plus-1 samples, the share whose first wrong character is at a
      critical site (the paper's commas and digits, or the Appendix-B copy site);
    - ``p_first_comma_mean``, ``p_critical_mean``: teacher-forced probability of the right character at the
      first critical comma and at every critical character (``n`` true plus-1 texts, temperature 1);
    - ``dJ_critical_<form>_T<t>``: Table 1's Delta-J at critical tokens (``n_table1`` generations), both
      certainty forms, reference temperature 1 and the paper's 4; ``premise``: ``premise_holds``.
    """
    model, tok, info = load_checkpoint(path)
    cfg = recorded_config(info["config"])
    N = int(cfg["level"])
    out = dict(format=info.get("format", task.FORMAT_VERSION), config=config_name(cfg), pretrain_seed=cfg["seed"],
               checkpoint=Path(path).name, arch=cfg["arch"], n_layer=cfg["n_layer"], n_embd=cfg["n_embd"], level=N,
               aux_task=cfg.get("aux_task", "none"), aux_fraction=cfg.get("aux_fraction", 0.0),
               aux_max_digits=cfg.get("aux_max_digits", ""), precision=cfg.get("precision", ""),
               steps=info["steps"], minutes=round(info["seconds"] / 60, 1), n_params=info["n_params"],
               trained_on=info.get("cpu_capability", ""))
    greedy = accuracy_by_digits(model, tok, range(1, N + 3), n_greedy, seed=seed + 7)
    acc = dict(zip(greedy.digits, greedy.accuracy))
    out["greedy_min_1toN"] = min(acc[d] for d in range(1, N + 1))
    out["greedy_N+1"], out["greedy_N+2"] = acc[N + 1], acc[N + 2]
    rng = np.random.default_rng([seed, 3])
    plus1 = task.Split("plus", N, 1).sample(n, rng)
    gen = generate(model, tok, [task.prompt(a, b) for a, b in plus1], task.episode_limit(N, 1), 1.0,
                   torch.Generator().manual_seed(seed))
    rows = pd.DataFrame([failure_row(t, a, b, N) for t, (a, b) in zip(gen.texts, plus1)])
    failed = rows[~rows.correct.astype(bool)]
    out["plus1_T1"] = float(rows.correct.mean())
    out["fail_at_critical"] = float((failed.site.str.startswith("critical:") | (failed.site == "appendix_b")).mean()
                                    if len(failed) else float("nan"))
    out["comfort_T1"] = accuracy(model, tok, task.Split("comfort", N).sample(n, rng), N, 0, 1.0,
                                 torch.Generator().manual_seed(seed))
    out["plus2_T1"] = accuracy(model, tok, task.Split("plus", N, 2).sample(n, rng), N, 2, 1.0,
                               torch.Generator().manual_seed(seed))
    df = measure(model, tok, tracking_problems(N, 1, n, seed), N, temperature=1.0, ref_temperature=1.0, alpha=1.0)
    crit, other = df[df.critical], df[~df.critical]
    first = crit[(crit.step == 1) & (crit.name == "n+1_comma")]
    out.update(p_first_comma_mean=first.p_correct.mean(), p_first_comma_median=first.p_correct.median(),
               p_critical_mean=crit.p_correct.mean(), p_critical_median=crit.p_correct.median(),
               p_other_mean=other.p_correct.mean())
    for ref_t in (1.0, 4.0):
        t1 = table1(certainty_delta(model, tok, N, 1, n_table1, 1.0, ref_t, seed=seed))
        for r in t1[t1.tokens == "critical"].itertuples():
            out[f"dJ_critical_{r.certainty_kind}_T{ref_t:g}"] = r.mean
    out["premise"] = premise_holds(out)
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


def probe_and_record(dirs, csv="results/regime_search.csv", note: str = "", command: str = "", n: int = 256) -> pd.DataFrame:
    """``probe`` every checkpoint folder of ``dirs`` and ``record`` it in ``csv``; returns the probed rows."""
    rows = []
    for d in dirs:
        rows.append(probe(d, n=n))
        record(rows[-1], csv, note, command)
    return pd.DataFrame(rows)


def probed(path, csv="results/regime_search.csv", **probe_kw) -> dict:
    """The committed probe of checkpoint ``path`` (its row of ``csv``, matched by folder name), so every
    chapter that shows a checkpoint's regime shows the same numbers; probed here (``probe(path,
    **probe_kw)``) when the table has no row for it, with ``source`` saying which."""
    csv = Path(csv)
    if csv.is_file():
        rows = pd.read_csv(csv)
        rows = rows[rows.checkpoint == Path(path).name]
        if len(rows):
            return {**rows.iloc[-1].dropna().to_dict(), "source": str(csv)}
    return {**probe(path, **probe_kw), "source": "probed now"}


def recipe_rows(rows: pd.DataFrame, preset: str, levels) -> pd.DataFrame:
    """The probes of one pre-training recipe (``preset``, e.g. ``cpu-modsum``) at each of ``levels``: the rows of
    a regime table whose ``config`` is that preset's at the level, one per checkpoint (its latest probe, the one
    ``probed`` returns). Every chapter that shows a recipe's seeds reads them here."""
    names = {config_name(dataclasses.asdict(pretrain_config(preset, level=int(n)))) for n in levels}
    return _latest(rows[rows.config.isin(names)] if "config" in rows else rows.iloc[:0]).reset_index(drop=True)


def _latest(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint, its latest probe (a checkpoint probed twice counts once)."""
    return rows.drop_duplicates("checkpoint", keep="last") if "checkpoint" in rows else rows


def premise_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (``config``) of a regime table: how many pre-training seeds were probed, on
    how many the premise holds, the mean of each criterion, and the verdict of the regime issue:
    ``holds`` (on >= 2 of >= 3 seeds), ``fails`` (on > 1 of them, so 2 of 3 can no longer hold),
    else ``open``."""
    cols = [c for col, _, _ in PREMISE for c in [col] if c in rows]
    rows = _latest(rows)  # one seed, one vote
    g = rows.groupby("config", sort=False)
    out = g.agg(seeds=("pretrain_seed", "nunique"),
                premise_seeds=("premise", lambda x: int(x.astype(bool).sum())),
                **{c: (c, "mean") for c in dict.fromkeys(cols)}).reset_index()
    failing = out.seeds - out.premise_seeds
    out["verdict"] = ["holds" if p >= 2 and s >= 3 else "fails" if f >= 2 else "open"
                      for p, s, f in zip(out.premise_seeds, out.seeds, failing)]
    return out


def seed_spread(rows: pd.DataFrame, columns) -> tuple[pd.DataFrame, dict]:
    """How far apart the pre-training seeds of one configuration land: per configuration (``config``) and
    column, the largest value minus the smallest; and per column, the configuration where that spread is the
    widest with its smallest and largest value, ``{column: (config, low, high)}``."""
    g = rows.groupby("config", sort=False)[list(columns)]
    low, high = g.min(), g.max()
    spread = high - low
    widest = {}
    for col in columns:
        config = spread[col].idxmax()
        widest[col] = (config, float(low.at[config, col]), float(high.at[config, col]))
    return spread, widest


def training_summary(evals: pd.DataFrame, bound: float) -> dict:
    """What the pre-training evaluations of shipped checkpoints (``store.shipped_evals`` rows) say about
    mastery: how many checkpoints, how many ended with their worst greedy accuracy over lengths 1..N below
    ``bound``, how many of these were still rising at their last evaluation, the best greedy plus-1 accuracy
    at any evaluation, and the range of training minutes."""
    worst = evals[evals.digits <= evals.level].groupby(["checkpoint", "step"]).accuracy.min()
    curves = [w.to_numpy() for _, w in worst.groupby(level="checkpoint")]
    below = [w for w in curves if w[-1] < bound]
    return dict(checkpoints=int(evals.checkpoint.nunique()), below=len(below),
                rising=sum(len(w) > 1 and w[-1] > w[-2] for w in below),
                best_plus1=float(evals[evals.digits == evals.level + 1].accuracy.max()),
                minutes=(float(evals.minutes.min()), float(evals.minutes.max())))
