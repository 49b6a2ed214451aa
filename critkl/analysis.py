"""Statistics and gathering of results: the numbers behind the paper's figures and tables.

Serves the paper's Section 5 results (paper-notes section 4): Fig. 3/4/6 learning curves with 95 %
confidence intervals over seeds, the gap prioritized - standard KL at a training budget, the episodes each
variant needs to reach an accuracy, and ``results/summary.md``'s tables. Every interval is a Student-t
interval with the exact t quantile (``scipy.stats.t``), never a normal approximation.

Also the RL-dynamics diagnosis (``advantage_diagnosis``): which sign of the advantage moves the critical
tokens (paper Section 3, critical tokens; results/README.md, "RL dynamics").
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

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


def episodes_to_threshold(metrics: pd.DataFrame, threshold: float, value: str = "acc_plus", x: str = "episodes",
                          relative_to_start: bool = True, group=("seed",)) -> pd.DataFrame:
    """Per run (one group of ``group``): the first ``x`` where ``value`` (minus its round-0 value if
    ``relative_to_start``) reaches ``threshold``; NaN if it never does. Round 0 is the row with
    ``round == 0`` if that column exists, else the row of smallest ``x``. Columns: ``group...``, start,
    ``f"{x}_to_threshold"``."""
    rows = []
    for key, g in _groups(metrics, group):
        g = g.sort_values(x)
        first = g[g["round"] == 0] if "round" in g else g.iloc[:1]
        start = float(first[value].iloc[0]) if len(first) else float("nan")
        gain = g[value] - (start if relative_to_start else 0.0)
        hit = g[x][gain >= threshold - _EPS]
        rows.append({**key, "start": start, f"{x}_to_threshold": float(hit.iloc[0]) if len(hit) else float("nan")})
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------------
# Gathering finished runs
def _config_columns(run: Path) -> dict:
    """The run's RL config (config.rl.json), fields omitted at their default filled back in."""
    from .config import RLConfig
    cfg = json.loads((run / "config.rl.json").read_text()) if (run / "config.rl.json").is_file() else {}
    return {f: cfg.get(f, field.default) for f, field in RLConfig.__dataclass_fields__.items()}


def gather_runs(home=None, level: int | None = None, since: str | None = None) -> pd.DataFrame:
    """Every finished RL run under ``$CRITKL_HOME/rl/*/metrics.csv`` (or ``home/rl``) in one tidy frame:
    one row per evaluation, the run's config columns (those the metrics lack) and ``run`` (the folder name).
    ``level`` keeps runs from checkpoints pre-trained up to that level (folders ``N{level}-*``), ``since``
    (YYYY-MM-DD) runs finished on or after that date. Unfinished (``.partial``/``.staging``) folders are
    skipped."""
    from .config import critkl_home
    root = Path(home) if home is not None else critkl_home()
    t0 = datetime.fromisoformat(since).timestamp() if since else 0.0
    frames = []
    for run in sorted((root / "rl").glob(f"N{level}-*" if level is not None else "*")):
        f = run / "metrics.csv"
        if run.suffix in (".partial", ".staging") or not f.is_file() or f.stat().st_mtime < t0:
            continue
        m = pd.read_csv(f)
        extra = {k: v for k, v in _config_columns(run).items() if k not in m}
        frames.append(m.assign(**extra, run=run.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run"])


# -------------------------------------------------------------------------------------------------
# Markdown tables of results/summary.md (formerly benchmarks/summarize_results.py)
def _pct(x, half=float("nan")) -> str:
    return f"{100 * x:.1f} %" if not np.isfinite(half) else f"{100 * x:.1f} ± {100 * half:.1f} %"


def _budgets(m: pd.DataFrame, columns: int) -> list:
    eps = sorted(m.episodes.unique())
    picked = eps[:: max(1, len(eps) // columns)]
    return picked + ([eps[-1]] if eps[-1] not in picked else [])


def curves_table(m: pd.DataFrame, by: str, value: str = "acc_plus", columns: int = 5) -> str:
    """Markdown: ``value`` (mean ± 95 % t half-width over seeds) at about ``columns`` episode budgets."""
    eps = _budgets(m, columns)
    s = summarize(m[m.episodes.isin(eps)], [by, "episodes"], value)
    lines = [f"| {by} | " + " | ".join(str(e) for e in eps) + " |", "|---" * (len(eps) + 1) + "|"]
    for key, g in s.groupby(by, sort=True):
        cell = {r.episodes: _pct(r.mean, r.half_width) for r in g.itertuples()}
        lines.append(f"| {key} | " + " | ".join(cell.get(e, "") for e in eps) + " |")
    return "\n".join(lines)


def gap_line(m: pd.DataFrame, a: str = "prioritized", b: str = "standard", value: str = "acc_plus") -> str:
    """The paired gap ``a - b`` of ``value`` over seeds at the final episode budget, in points."""
    last = m[m.episodes == m.episodes.max()]
    d = paired_differences(last, value, "kl", a, b)
    if d.empty:
        return ""
    mean, half, n = mean_ci(d)
    return (f"gap {a} - {b} at {int(m.episodes.max())} episodes: {100 * mean:+.1f} points (95 % CI ± "
            f"{100 * half:.1f}, {n} seeds; per seed {', '.join(f'{100 * x:+.1f}' for x in d)})")


def threshold_table(m: pd.DataFrame, by: str = "kl", gain: float = 0.1) -> str:
    """Markdown: per ``by``, the seeds gaining ``gain`` over their start accuracy and the episodes each needs."""
    t = episodes_to_threshold(m, gain, group=(by, "seed"))
    lines = [f"| {by} | seeds gaining {100 * gain:.0f} points | episodes to get there (per seed) |", "|---|---|---|"]
    for key, g in t.groupby(by, sort=True):
        e = g["episodes_to_threshold"]
        lines.append(f"| {key} | {int(e.notna().sum())}/{len(e)} | "
                     f"{', '.join('-' if np.isnan(v) else str(int(v)) for v in e)} |")
    return "\n".join(lines)


def _details(m: pd.DataFrame) -> str:
    last = m[m.episodes == m.episodes.max()]
    out = "comfort zone at the end: " + ", ".join(
        f"{k} {_pct(*mean_ci(g.acc_comfort)[:2])}" for k, g in last.groupby("kl")) + " \n"
    if "p_critical_mean" in m:
        out += "\nP(correct) at tracked critical tokens, start -> end: " + ", ".join(
            f"{k} {g[g.episodes == 0].p_critical_mean.mean():.3f} -> "
            f"{g[g.episodes == g.episodes.max()].p_critical_mean.mean():.3f}" for k, g in m.groupby("kl")) + " \n"
    return out


def experiment_b_section(m: pd.DataFrame, title: str, details: bool = False) -> str:
    """Experiment (b): curves per KL variant, the final gap, episodes to +10 points (and end-of-run details)."""
    parts = [f"## {title}\n", curves_table(m, "kl") + " \n", gap_line(m) + " \n", threshold_table(m, "kl", 0.1) + " \n"]
    return "\n".join(parts + ([_details(m)] if details else []))


def ablation_section(files) -> str:
    """Final accuracy and mean KL weights per ablation setting (one metrics.csv per setting)."""
    lines = ["## Ablation (seed 0, prioritized)\n",
             "| setting | alpha | ref T | plus1 start | plus1 end | weight critical | weight other |",
             "|---|---|---|---|---|---|---|"]
    for f in files:
        m = pd.read_csv(f)
        end = m[m.episodes == m.episodes.max()]
        lines.append(f"| {Path(f).parent.name} | {m.alpha.iloc[0]:g} | {m.ref_temperature.iloc[0]:g} | "
                     f"{_pct(m.acc_plus.iloc[0])} | {_pct(end.acc_plus.mean())} | "
                     f"{m.weight_critical.iloc[1:].mean():.3f} | {m.weight_other.iloc[1:].mean():.3f} |")
    return "\n".join(lines) + "\n"


def summary_tables(results="results") -> str:
    """The markdown tables of ``results/summary.md``, computed from the saved metrics under ``results``:
    experiment (b) (``kl_N3_seeds5``, ``kl_N3_seeds10``), the ablation (``ablation/*``) and experiment (a)
    (``levels/*``). Sections whose files are missing are left out."""
    r = Path(results)
    out = []
    for folder, title, details in [("kl_N3_seeds5", "Experiment (b)", True),
                                   ("kl_N3_seeds10", "Experiment (b), standard vs prioritized, all seeds", False)]:
        if (r / folder / "metrics.csv").is_file():
            out.append(experiment_b_section(pd.read_csv(r / folder / "metrics.csv"), title, details))
    abl = sorted((r / "ablation").glob("*/metrics.csv"))
    if abl:
        out.append(ablation_section(abl))
    lv = sorted((r / "levels").glob("*/metrics.csv"))
    if lv:
        m = pd.concat([pd.read_csv(f) for f in lv], ignore_index=True)
        out.append("## Experiment (a): level N, RL on N+1, standard KL\n\n" + curves_table(m, "level") + " \n")
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------
# Experiment (b) driver (formerly benchmarks/kl_experiment.py)
def kl_experiment(model_dir, seeds=(0,), variants=("none", "standard", "prioritized"), preset: str = "cpu-reinforce",
                  out=None, progress: bool = False, **overrides) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Experiment (b): RL from one checkpoint per seed and KL variant (``critkl.finetune``, cached runs).
    Returns ``(metrics, critical)`` of all runs; with ``out``, also writes ``out/metrics.csv`` and
    ``out/critical.csv``. ``overrides`` are RLConfig fields (``None`` keeps the preset's value). The gap
    prioritized - standard is ``paired_gap(metrics[last episodes], "acc_plus", "kl", "prioritized",
    "standard")``."""
    from .config import rl_config
    from .rl import finetune, load_run, run_dir
    metrics, crits = [], []
    for seed in seeds:
        for kl in variants:
            cfg = rl_config(preset, model_dir=str(model_dir), kl=kl, seed=seed, **overrides)
            metrics.append(finetune(cfg, progress=progress))
            crits.append(load_run(run_dir(cfg))[1])
    m = pd.concat(metrics, ignore_index=True)
    c = pd.concat([x for x in crits if len(x)] or [pd.DataFrame()], ignore_index=True)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        m.to_csv(Path(out) / "metrics.csv", index=False)
        c.to_csv(Path(out) / "critical.csv", index=False)
    return m, c


# -------------------------------------------------------------------------------------------------
# RL-dynamics diagnosis (formerly benchmarks/advantage_diagnosis.py)
ADVANTAGE_MODES = ("successes", "failures", "centred")


def diagnosis_advantages(mask, correct, mode: str):
    """Per-token advantages replacing A2C's: ``successes`` A = 1 on successful episodes, 0 on failed ones;
    ``failures`` A = -1 on failed ones, 0 on successes; ``centred`` A = R - mean(R) with the ternary reward
    R = +1 / -1 (a perfect constant baseline)."""
    ok, m = correct.float()[:, None], mask.float()
    r = 2 * ok - 1
    table = {"successes": lambda: m * ok, "failures": lambda: -m * (1 - ok), "centred": lambda: m * (r - r.mean())}
    if mode not in table:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(ADVANTAGE_MODES)}")
    return table[mode]()


def _p_critical(policy, tok, tracked, level: int) -> dict:
    from .critical import critical_probabilities
    cp = critical_probabilities(policy, tok, tracked, level, 1.0, sites=("paper", "appendix_b"))
    paper = cp[cp.name != "n_copy"]
    return dict(p_critical=float(paper.p_correct.mean()), p_n_copy=float(cp[cp.name == "n_copy"].p_correct.mean()))


def advantage_diagnosis(model_dir, modes=ADVANTAGE_MODES, passes: int = 3, lr: float = 3e-5, optimizer: str = "adam",
                        algo: str = "a2c", n_episodes: int = 32, n_tracked: int = 16) -> pd.DataFrame:
    """Which part of the policy gradient moves the critical tokens? For each mode of
    ``diagnosis_advantages``: one collect of ``n_episodes`` plus1 episodes at T = 1 from the checkpoint,
    then ``passes`` update passes (minibatches of 4 episodes, no value, entropy or KL term) with the
    advantages replaced. One row per mode and pass (pass 0 = before any update): ``p_critical`` is the
    mean teacher-forced probability of the right token at the paper's tracked critical positions on
    ``n_tracked`` other plus1 problems, ``p_n_copy`` the same at the Appendix-B site."""
    import torch
    from . import task
    from .config import rl_config
    from .critical import tracking_problems
    from .model import load_checkpoint
    from .rl import ValueHead, update
    from .rollout import collect
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer={optimizer!r} must be adam or sgd")
    rows = []
    for mode in modes:
        torch.manual_seed(0)
        policy, tok, info = load_checkpoint(model_dir, "cpu")
        level = int(info["config"]["level"])
        cfg = rl_config("cpu-reinforce", model_dir=str(model_dir), kl="none", vf_coef=0.0, ent_coef=0.0, algo=algo,
                        gae_lambda=1.0, lr=lr, temperature=1.0, extra_digits=1, minibatch_episodes=4, update_epochs=1)
        vh = ValueHead(getattr(policy.config, "hidden_size", None) or policy.config.n_embd)
        params = list(policy.parameters()) + list(vh.parameters())
        opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
        tracked = tracking_problems(level, 1, n_tracked, 0)
        problems = task.Split("plus", level, 1).sample(n_episodes, np.random.default_rng(1))
        batch = collect(policy, vh, None, tok, problems, level, cfg, torch.Generator().manual_seed(0))
        batch.advantages = diagnosis_advantages(batch.mask, batch.correct, mode)
        base = dict(mode=mode, optimizer=optimizer, lr=lr, algo=algo, successes=int(batch.correct.sum()),
                    episodes=n_episodes)
        g = torch.Generator().manual_seed(1)
        for p in range(passes + 1):
            if p:
                update(policy, vh, opt, batch, cfg, g)
            rows.append({**base, "pass": p, **_p_critical(policy, tok, tracked, level)})
    return pd.DataFrame(rows)
