"""Statistics over seeds: the numbers behind the paper's figures (Section 5: Figs. 3, 4 and 6).

Learning curves with 95 % confidence intervals over seeds (``summarize``), the gap prioritized - standard KL
at a training budget with seeds paired (``paired_gap``), the area under each run's learning curve (``auc``)
and the episodes each run needs to reach an accuracy, censored when it never does
(``episodes_to_threshold``). Every interval is a Student-t interval with the exact t quantile
(``scipy.stats.t``), never a normal approximation. Plain data in, DataFrames out: this module imports no
other critkl module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

_EPS = 1e-9  # float tolerance of threshold comparisons (0.3 - 0.2 < 0.1 in floating point)


# -------------------------------------------------------------------------------------------------
# Intervals
def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student-t quantile: ``t.ppf((1 + confidence) / 2, df)`` (3.182446 for 0.95, df 3)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1)")
    if df < 1:
        raise ValueError(f"df={df} must be >= 1")
    return float(stats.t.ppf((1 + confidence) / 2, df))


def mean_ci(x, confidence: float = 0.95) -> tuple[float, float, int]:
    """``(mean, half_width, n)`` of the Student-t interval mean +/- t * sd / sqrt(n), NaNs dropped.

    ``n < 2`` gives half_width NaN (and ``n == 0`` mean NaN)."""
    x = np.asarray(x, dtype=float).ravel()
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(x[0]), float("nan"), 1
    half = t_quantile(confidence, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return float(x.mean()), float(half), n


def _ci_row(x, confidence: float) -> dict:
    mean, half, n = mean_ci(x, confidence)
    return dict(n=n, mean=mean, ci_low=mean - half, ci_high=mean + half, half_width=half)


def _groups(df: pd.DataFrame, by):
    """``(key dict, sub-frame)`` per group of ``by`` (one group, the whole frame, if ``by`` is empty)."""
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        yield {}, df
        return
    for key, g in df.groupby(by, sort=True):
        yield dict(zip(by, key)), g


def summarize(df: pd.DataFrame, by, value: str, confidence: float = 0.95) -> pd.DataFrame:
    """One row per group of ``by``: columns ``by...``, n, mean, ci_low, ci_high, half_width of ``value``."""
    rows = [{**key, **_ci_row(g[value], confidence)} for key, g in _groups(df, by)]
    cols = ([by] if isinstance(by, str) else list(by)) + ["n", "mean", "ci_low", "ci_high", "half_width"]
    return pd.DataFrame(rows, columns=cols)


def paired_differences(df: pd.DataFrame, value: str, variant_col: str, a, b, pair_on=("seed",)) -> pd.Series:
    """``a - b`` of ``value``, one entry per ``pair_on`` key present (non-NaN) in both variants."""
    pair_on = list(pair_on)
    d = df[df[variant_col].isin([a, b])]
    if d.duplicated(pair_on + [variant_col]).any():
        raise ValueError(f"several rows per {pair_on + [variant_col]}: filter (e.g. the last episode) or add "
                         "the extra column to `by`")
    wide = d.pivot(index=pair_on, columns=variant_col, values=value)
    if a not in wide or b not in wide:
        return pd.Series(dtype=float)
    return (wide[a] - wide[b]).dropna()


def paired_gap(df: pd.DataFrame, value: str, variant_col: str, a, b, pair_on=("seed",), by=(),
               confidence: float = 0.95) -> pd.DataFrame:
    """Per group of ``by``: the paired differences ``a - b`` of ``value`` (pairs matched on ``pair_on``,
    only pairs present in both), their mean and t-interval; ``n`` is the number of pairs."""
    rows = [{**key, **_ci_row(paired_differences(g, value, variant_col, a, b, pair_on), confidence)}
            for key, g in _groups(df, by)]
    cols = ([by] if isinstance(by, str) else list(by)) + ["n", "mean", "ci_low", "ci_high", "half_width"]
    return pd.DataFrame(rows, columns=cols)


# -------------------------------------------------------------------------------------------------
# One number per run: episodes to a threshold (censored), area under the learning curve
def episodes_to_threshold(metrics: pd.DataFrame, threshold: float, value: str = "acc_plus", x: str = "episodes",
                          relative_to_start: bool = True, group=("seed",)) -> pd.DataFrame:
    """Per run (one group of ``group``): the first ``x`` where ``value`` (minus its round-0 value if
    ``relative_to_start``) reaches ``threshold``. Round 0 is the row with ``round == 0`` if that column
    exists, else the row of smallest ``x``.

    A run that never reaches it is right-censored: ``f"{x}_to_threshold"`` is NaN, ``censored`` is True and
    ``censored_at`` is the last ``x`` it was observed at (its true value lies beyond). Averaging only the
    runs that got there biases the mean low; count the censored ones beside it. Columns: ``group...``,
    start, ``f"{x}_to_threshold"``, censored, censored_at."""
    rows = []
    for key, g in _groups(metrics, group):
        g = g.sort_values(x)
        first = g[g["round"] == 0] if "round" in g else g.iloc[:1]
        start = float(first[value].iloc[0]) if len(first) else float("nan")
        gain = g[value] - (start if relative_to_start else 0.0)
        hit = g[x][gain >= threshold - _EPS]
        rows.append({**key, "start": start, f"{x}_to_threshold": float(hit.iloc[0]) if len(hit) else float("nan"),
                     "censored": not len(hit), "censored_at": float("nan") if len(hit) else float(g[x].max())})
    return pd.DataFrame(rows)


def auc(metrics: pd.DataFrame, value: str = "acc_plus", x: str = "episodes", group=("seed",)) -> pd.DataFrame:
    """Per run (one group of ``group``): the area under its learning curve ``value`` against ``x`` by the
    trapezoid rule, divided by the span of ``x``, i.e. the curve's mean height (a run at 0.3 throughout has
    auc 0.3), so runs of different lengths compare. Rows where ``value`` is NaN are left out; a run with
    fewer than two points has auc NaN. Columns: ``group...``, auc, n_points."""
    rows = []
    for key, g in _groups(metrics, group):
        g = g.dropna(subset=[value]).sort_values(x)
        if g[x].duplicated().any():
            raise ValueError(f"several rows per {x} in run {key}: add the column that tells them apart to `group`")
        xs, ys = g[x].to_numpy(dtype=float), g[value].to_numpy(dtype=float)
        span = xs[-1] - xs[0] if len(xs) > 1 else 0.0
        area = float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)))
        rows.append({**key, "auc": area / span if span > 0 else float("nan"), "n_points": len(xs)})
    return pd.DataFrame(rows)
