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


# -------------------------------------------------------------------------------------------------
# The frontier (issue: KL trade-off): one row per run, then means with intervals and paired gaps
RUN = ("method", "kl", "beta", "seed", "pretrain_seed")
OUTCOMES = ("gain", "auc_gain", "comfort_change", "mean_kl", "critical_change")


def run_outcomes(metrics: pd.DataFrame, run=RUN, thresholds=(0.05, 0.10),
                 value: str = "acc_plus") -> pd.DataFrame:
    """One row per run (a group of ``run``) of a table with one row per evaluation (``round`` 0 =
    before RL):

    - ``start``, ``final``: ``value`` at round 0 and at the last round; ``gain`` = final - start;
    - ``auc_gain``: the mean height of the learning curve over the episodes (``auc``) minus start,
      so a method that learns faster has a larger one at the same final gain (the paper's "faster");
    - ``comfort_start``, ``comfort_final``, ``comfort_change``: ``acc_comfort`` first, last and last
      minus first; ``critical_change``: the same change for ``p_critical_mean`` (the right token's
      probability at the tracked critical tokens);
    - ``early_gain``, ``late_gain``: the gain over the first and over the second half of training
      (``value`` at the middle evaluation minus start; final minus that): a curve that plateaus
      gains early and not late;
    - ``mean_kl``: mean over the training rounds (round >= 1) of the per-token KL to the reference;
      ``weight_critical``, ``weight_other``: the same mean of the KL weight at the critical and at
      the other states of the collected episodes (NaN where the metrics lack them);
    - for each threshold ``t`` (e.g. 0.05): ``episodes_to_5`` (NaN when never reached) and
      ``censored_5``.
    Runs without a KL (``kl == "none"``) get ``beta`` 0. Columns of ``run`` that the table lacks are
    left out of the grouping."""
    run = [c for c in run if c in metrics]
    rows = []
    for key, g in _groups(metrics, run):
        g = g.sort_values("episodes")
        first, last = g.iloc[0], g.iloc[-1]
        if key.get("kl") == "none" and "beta" in key:
            # no penalty is a coefficient of 0, whatever beta the run's config carried
            key["beta"] = 0.0
        row = {**key, "start": float(first[value]), "final": float(last[value]),
               "gain": float(last[value] - first[value]), "episodes": float(last["episodes"])}
        row["auc_gain"] = float(auc(g, value, group=()).auc.iloc[0]) - row["start"]
        middle = float(g.iloc[len(g) // 2][value])  # 11 evaluations (rounds 0..10): round 5
        row["early_gain"], row["late_gain"] = middle - row["start"], row["final"] - middle
        for col, name in (("acc_comfort", "comfort_change"),
                          ("p_critical_mean", "critical_change")):
            row[name] = float(last[col] - first[col]) if col in g else float("nan")
        row["comfort_start"], row["comfort_final"] = (
            (float(first["acc_comfort"]), float(last["acc_comfort"]))
            if "acc_comfort" in g else (float("nan"), float("nan")))
        trained = g[g["round"] > 0] if "round" in g else g.iloc[1:]
        for col in ("mean_kl", "weight_critical", "weight_other"):
            row[col] = float(trained[col].mean()) if col in g and len(trained) else float("nan")
        for t in thresholds:
            ett = episodes_to_threshold(g, t, value, group=()).iloc[0]
            row[f"episodes_to_{round(100 * t)}"] = ett["episodes_to_threshold"]
            row[f"censored_{round(100 * t)}"] = bool(ett["censored"])
        rows.append(row)
    return pd.DataFrame(rows)


def frontier_table(outcomes: pd.DataFrame, by=("method", "kl", "beta"), values=OUTCOMES,
                   confidence: float = 0.95) -> pd.DataFrame:
    """Per group of ``by``: runs, and for each outcome of ``values`` its mean and t-interval
    (``<value>``, ``<value>_low``, ``<value>_high``); for each ``censored_<t>`` column, ``reached_<t>``
    (runs that reached the threshold) and ``median_episodes_<t>``, the median with never-reached runs
    counted as beyond any budget (NaN when fewer than half reached: the median is then not observed)."""
    by = [c for c in by if c in outcomes]
    rows = []
    for key, g in _groups(outcomes, by):
        row = {**key, "runs": len(g)}
        for v in values:
            mean, half, _ = mean_ci(g[v], confidence)
            row.update({v: mean, f"{v}_low": mean - half, f"{v}_high": mean + half})
        for c in [c for c in g if c.startswith("censored_")]:
            t = c.removeprefix("censored_")
            eps = g[f"episodes_to_{t}"].fillna(np.inf).sort_values().to_numpy()
            row[f"reached_{t}"] = int((~g[c].astype(bool)).sum())
            med = float(np.median(eps)) if len(eps) else float("nan")
            row[f"median_episodes_{t}"] = med if np.isfinite(med) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def collapsed(outcomes: pd.DataFrame, below: float = 0.5) -> pd.Series:
    """Per run of ``run_outcomes``: True where RL destroyed what pre-training taught, not merely failed to add
    to it: the comfort-zone accuracy ended below ``below`` times its start."""
    return outcomes["comfort_final"] < below * outcomes["comfort_start"]


def method_table(outcomes: pd.DataFrame, below: float = 0.5, values=OUTCOMES, confidence: float = 0.95) -> pd.DataFrame:
    """``frontier_table`` per RL method and KL variant, with ``collapsed``: how many of the runs ``collapsed``
    (comfort-zone accuracy ended below ``below`` times its start)."""
    by = [c for c in ("method", "kl", "beta") if c in outcomes]
    table = frontier_table(outcomes, by=by, values=values, confidence=confidence)
    counts = outcomes.assign(collapsed=collapsed(outcomes, below)).groupby(by, sort=False)["collapsed"].sum()
    return table.merge(counts.astype(int).reset_index(), on=by, how="left")


def frontier_gaps(outcomes: pd.DataFrame, value: str = "gain",
                  pairs=(("prioritized", "standard"), ("prioritized", "none"), ("standard", "none")),
                  pair_on=("seed", "pretrain_seed"), by=("method", "beta"), confidence: float = 0.95) -> pd.DataFrame:
    """Paired gaps ``a - b`` of ``value`` per group of ``by``, runs matched on ``pair_on``, with t-intervals.
    Runs without a KL (``kl == "none"``) have no coefficient: they are paired with the runs of every beta of
    the same method. Columns: ``by...``, a, b, n (pairs), mean, ci_low, ci_high, half_width."""
    pair_on = [c for c in pair_on if c in outcomes]
    with_kl = outcomes[outcomes.kl != "none"]
    parts = [with_kl]
    if "beta" in outcomes and (outcomes.kl == "none").any():
        none = outcomes[outcomes.kl == "none"].drop(columns="beta")
        betas = with_kl[[c for c in by if c != "beta" and c in with_kl] + ["beta"]].drop_duplicates()
        on = [c for c in by if c != "beta" and c in with_kl]
        parts.append(none.merge(betas, on=on) if on else none.merge(betas, how="cross"))
    both = pd.concat(parts, ignore_index=True)
    out = [paired_gap(both, value, "kl", a, b, pair_on=pair_on, by=[c for c in by if c in both],
                      confidence=confidence).assign(a=a, b=b) for a, b in pairs]
    cols = [c for c in by if c in both] + ["a", "b", "n", "mean", "ci_low", "ci_high", "half_width"]
    return pd.concat(out, ignore_index=True)[cols]


def variant_gaps(outcomes: pd.DataFrame, baseline: str, values=("gain", "auc_gain"), col: str = "variant",
                 pair_on=("seed", "pretrain_seed"), confidence: float = 0.95) -> pd.DataFrame:
    """Every other ``col`` value against ``baseline``: the paired gaps ``variant - baseline`` of each of
    ``values`` (runs matched on ``pair_on``) with t-intervals. Columns: a, b, value, n, mean, ci_low,
    ci_high, half_width (``a`` the variant, ``b`` the baseline, the layout ``plots.gap_verdict`` reads)."""
    pair_on = [c for c in pair_on if c in outcomes]
    if baseline not in set(outcomes[col]):
        raise ValueError(f"baseline {baseline!r} is not a {col} of the table; it has {sorted(set(outcomes[col]))}")
    rows = [{"a": a, "b": baseline, "value": v,
             **_ci_row(paired_differences(outcomes, v, col, a, baseline, pair_on), confidence)}
            for a in sorted(set(outcomes[col]) - {baseline}) for v in values]
    return pd.DataFrame(rows, columns=["a", "b", "value", "n", "mean", "ci_low", "ci_high", "half_width"])


def at_equal(table: pd.DataFrame, a: str, b: str, x: str = "mean_kl", y: str = "gain",
             log_x: bool = True, min_runs: int = 2) -> pd.DataFrame:
    """Frontier dominance, read off the means of ``frontier_table``: for each point (beta) of
    variant ``a``, variant ``b``'s ``y`` at the same ``x``, linearly interpolated between ``b``'s
    neighbouring points (on log ``x`` when ``log_x``: KL spans decades); NaN where ``a``'s ``x``
    lies outside ``b``'s range. A positive ``difference`` means ``a`` learns more at equal
    closeness. Means only: each point's own interval stays in the table. Points of fewer than
    ``min_runs`` runs (a coefficient whose sweep has just started; the table's ``runs`` column) are
    left out of both curves. Columns: beta, x, y_a, y_b, difference."""
    if "runs" in table:
        table = table[table.runs >= min_runs]
    pa = table[table.kl == a].sort_values(x)
    pb = table[table.kl == b].dropna(subset=[x, y]).sort_values(x)
    f = np.log if log_x else np.asarray
    xa, xb = f(pa[x].to_numpy(dtype=float)), f(pb[x].to_numpy(dtype=float))
    y_a, yb = pa[y].to_numpy(dtype=float), pb[y].to_numpy(dtype=float)
    inside = (xa >= xb.min()) & (xa <= xb.max()) if len(xb) >= 2 else np.zeros(len(xa), dtype=bool)
    y_b = np.where(inside, np.interp(xa, xb, yb) if len(xb) else np.nan, np.nan)
    return pd.DataFrame(dict(beta=pa["beta"].to_numpy() if "beta" in pa else np.nan,
                             x=pa[x].to_numpy(dtype=float), y_a=y_a, y_b=y_b, difference=y_a - y_b))


def with_method(metrics: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``method`` column, the unit the frontier compares: the RL preset's name without its
    ``cpu-`` prefix (``cpu-reinforce`` -> ``reinforce``, ``cpu-grpo`` -> ``grpo``, ``paper`` stays)."""
    return metrics.assign(method=metrics["preset"].astype(str).str.removeprefix("cpu-"))


def with_variant(metrics: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``variant`` column, the unit the side-by-side comparison (book/beyond) compares: the KL
    variant, the certainty form for the prioritized one, then the policy-gradient change when there is one, e.g.
    ``standard``, ``prioritized (entropy)``, ``oracle_inverse``, ``standard + forking 20 %``, ``standard + GTPO``.
    Needs ``kl``; ``certainty``, ``top_entropy_quantile`` and ``advantage_weighting`` are read where present."""
    def name(row) -> str:
        label = str(row["kl"])
        if label == "prioritized" and "certainty" in row:
            label += f" ({row['certainty']})"
        q = float(row.get("top_entropy_quantile", 1.0))
        if q < 1.0:
            label += f" + forking {100 * q:g} %"
        if str(row.get("advantage_weighting", "none")) == "entropy":
            label += " + GTPO"
        return label
    return metrics.assign(variant=metrics.apply(name, axis=1) if len(metrics) else pd.Series(dtype=str))


# -------------------------------------------------------------------------------------------------
# The ablation (the paper's Fig. 6, Appendix C): the prioritized weight's form, temperature and exponent
EXPONENT_ARM = ("certainty", "ref_temperature", "alpha")
KL_OFF = 0.01  # an arm whose mean KL weight on the states that are not critical is below this has lifted the KL
               # nearly everywhere: it is a run without a KL, not a prioritized one (J(s)^alpha underflows)


def exponent_gaps(outcomes: pd.DataFrame, value: str = "auc_gain", pair_on=("seed", "pretrain_seed"),
                  confidence: float = 0.95) -> pd.DataFrame:
    """Per prioritized arm of the ablation (certainty form, reference temperature, exponent alpha): the paired gap
    arm - standard KL of ``value`` (a ``run_outcomes`` column; runs matched on ``pair_on``) with its t-interval.
    Columns: certainty, ref_temperature, alpha, n (pairs), mean, ci_low, ci_high, half_width, and weight_other
    (the arm's mean KL weight on the states that are not critical, NaN without it: below ``KL_OFF`` the arm
    has no KL to speak of)."""
    pair_on = [c for c in pair_on if c in outcomes]
    standard = outcomes[outcomes.kl == "standard"]
    rows = [{**key, **_ci_row(paired_differences(pd.concat([g, standard]), value, "kl", "prioritized", "standard",
                                                 pair_on), confidence),
             "weight_other": float(g["weight_other"].mean()) if "weight_other" in g else float("nan")}
            for key, g in _groups(outcomes[outcomes.kl == "prioritized"], list(EXPONENT_ARM))]
    return pd.DataFrame(rows, columns=[*EXPONENT_ARM, "n", "mean", "ci_low", "ci_high", "half_width", "weight_other"])


def slope(x, y, confidence: float = 0.95) -> dict:
    """Least-squares slope of ``y`` on ``x`` (pairs with a NaN dropped) with its Student-t interval
    (df n - 2), and Pearson's r. E.g. per run, gain against the rise of the right-token probability
    at the critical tokens: does more learning come with more movement there? Keys: n, slope,
    ci_low, ci_high, r."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    nan = dict(n=n, slope=float("nan"), ci_low=float("nan"), ci_high=float("nan"), r=float("nan"))
    if n < 3 or np.ptp(x) == 0:
        return nan
    dx, dy = x - x.mean(), y - y.mean()
    b = float((dx * dy).sum() / (dx ** 2).sum())
    resid = dy - b * dx
    se = float(np.sqrt((resid ** 2).sum() / (n - 2) / (dx ** 2).sum()))
    half = t_quantile(confidence, n - 2) * se
    r = (float((dx * dy).sum() / np.sqrt((dx ** 2).sum() * (dy ** 2).sum())) if np.ptp(y) > 0
         else float("nan"))
    return dict(n=n, slope=b, ci_low=b - half, ci_high=b + half, r=r)


# -------------------------------------------------------------------------------------------------
# Detectors: how well a per-token score finds the true critical tokens
def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (Mann-Whitney: the chance that a
    random positive scores above a random negative, ties counting one half); NaN without both classes."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection(flagged, labels) -> dict:
    """Precision and recall of the boolean ``flagged`` against ``labels`` (NaN when undefined)."""
    f = np.asarray(flagged, dtype=bool)
    y = np.asarray(labels, dtype=bool)
    hit = int((f & y).sum())
    return dict(flagged=int(f.sum()), precision=hit / f.sum() if f.any() else float("nan"),
                recall=hit / y.sum() if y.any() else float("nan"))


def time_to_mastery(evals: pd.DataFrame, threshold: float = 0.99) -> pd.DataFrame:
    """Per checkpoint of ``evals`` (``critkl.store.shipped_evals``): the first evaluation step at which the greedy
    exact match reaches ``threshold`` on every operand length 1..level, and the minutes of training at that
    evaluation (its ``seconds`` column; NaN where not recorded). ``step`` and ``minutes`` are NaN for a
    checkpoint that never gets there; ``max_steps`` and ``total_minutes`` say how long it trained."""
    rows = []
    for ckpt, e in evals.groupby("checkpoint", sort=True):
        level = int(e.level.iloc[0])
        comfort = e[e.digits <= level]
        per_step = comfort.groupby("step").agg(worst=("accuracy", "min"), lengths=("digits", "nunique"))
        hit = per_step[(per_step.worst >= threshold) & (per_step.lengths == level)]
        step = float(hit.index.min()) if len(hit) else float("nan")
        seconds = (comfort.loc[comfort.step == step, "seconds"].iloc[0]
                   if len(hit) and "seconds" in comfort else float("nan"))
        rows.append(dict(checkpoint=ckpt, config=e.config.iloc[0], level=level, pretrain_seed=e.pretrain_seed.iloc[0],
                         step=step, minutes=float(seconds) / 60, max_steps=e.max_steps.iloc[0],
                         total_minutes=e.minutes.iloc[0]))
    return pd.DataFrame(rows)
