"""Figures, HTML views and markdown tables for the book: plots (intervals from ``critkl.analysis``), per-character coloured scratchpads
(the paper's Figs. 1 and 5) and result tables over seeds.

One concept, how a result is shown to the reader (no statistic is computed here: ``critkl.analysis`` does that), so
one module: every chapter imports its figures and the text of its intervals and verdicts from here. Its figures
and texts share a unit rule (fractions drawn and written as percent, differences as points) and a style."""
from __future__ import annotations

import html
import re

import matplotlib
import matplotlib.colors
import matplotlib.lines
import matplotlib.ticker
import numpy as np
import pandas as pd

from . import task
from .analysis import (at_equal, episodes_to_threshold, frontier_gaps, frontier_table, mean_ci, paired_differences,
                       summarize)

CRITICAL_STYLE = "outline:2px solid #222;font-weight:bold;"


def _colour(v: float) -> str:
    """The CSS of one character coloured by ``v`` in [0, 1]: red (0) -> yellow (0.5) -> green (1), as the paper's
    Figure 5, with white text on the darkest ends (relative luminance below 0.4), where black text reads poorly."""
    v = 0.0 if not np.isfinite(v) else float(min(max(v, 0.0), 1.0))
    r, g, b, _ = matplotlib.colormaps["RdYlGn"](v)
    text = "color:#fff;" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4 else ""
    return f"background:rgb({int(r * 255)},{int(g * 255)},{int(b * 255)});{text}"


def render_html(text: str, values=None, critical=(), title: str = "") -> str:
    """``text`` as HTML, one ``<span>`` per character coloured by ``values[i]`` in [0, 1] (None = no
    colour), critical indices outlined. Every character is HTML-escaped."""
    if values is not None and len(values) != len(text):
        raise ValueError(f"values has {len(values)} entries for a text of {len(text)} characters")
    critical = set(critical)
    parts = []
    for i, ch in enumerate(text):
        if ch == "\n":
            parts.append("<br>")
            continue
        style = ""
        if values is not None and values[i] is not None and np.isfinite(values[i]):
            style += _colour(values[i])
        if i in critical:
            style += CRITICAL_STYLE
        esc = "&nbsp;" if ch == " " else html.escape(ch)
        tip = f' title="{values[i]:.3f}"' if values is not None and values[i] is not None and np.isfinite(values[i]) else ""
        parts.append(f'<span style="{style}"{tip}>{esc}</span>' if style or tip else esc)
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{head}<div style="font-family:monospace;line-height:1.6">{"".join(parts)}</div>'


def render_measured(df: pd.DataFrame, problem: int, column: str = "p_correct", title: str = "") -> str:
    """Render one problem of ``critkl.measure.measure``'s table, coloured by ``column``."""
    d = df[df.problem == problem]
    a, b = int(d.a.iloc[0]), int(d.b.iloc[0])
    text = task.full_text(a, b)
    values = [None] * len(text)
    for r in d.itertuples():
        values[r.index] = getattr(r, column)
    return render_html(text, values, d[d.critical]["index"].tolist(), title or f"{a}+{b}: {column}")


def example_rows(sampled: dict, /, **keys) -> pd.DataFrame:
    """A ``measure.sampled_example`` as data (the paper's Fig. 5): one row per character of its text with
    ``index``, ``char``, ``certainty`` (NaN on the prompt), ``critical``, ``correct``, and the ``keys``
    (e.g. level, seed, example, ref_temperature) as columns."""
    critical = set(sampled["critical"])
    return pd.DataFrame([dict(**keys, index=i, char=ch, certainty=np.nan if v is None else float(v),
                              critical=i in critical, correct=bool(sampled["correct"]))
                         for i, (ch, v) in enumerate(zip(sampled["text"], sampled["values"]))])


def render_example_rows(rows: pd.DataFrame, title: str = "") -> str:
    """``render_html`` of one example's ``example_rows``: Fig. 5 drawn again from committed data."""
    rows = rows.sort_values("index")
    values = [None if not np.isfinite(v) else v for v in rows["certainty"]]
    return render_html("".join(rows["char"]), values, rows.loc[rows["critical"], "index"].tolist(), title)


def style():
    import seaborn as sns
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


LABELS = {"acc_plus": "plus-k accuracy", "acc_comfort": "comfort-zone accuracy", "mean_kl": "mean KL to the reference",
          "p_critical_mean": "P(right token) at critical tokens"}  # axis labels of metrics.csv columns
FRACTIONS = {"acc_plus", "acc_comfort", "p_critical_mean", "accuracy", "fraction"}  # columns in [0, 1], drawn as percent


def percent_axis(ax, axis: str = "y"):
    """Tick labels of ``axis`` as percent (the data stay fractions): the book's unit rule, the same unit as its
    tables. Returns ``ax``."""
    getattr(ax, f"{axis}axis").set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0, decimals=0))
    return ax


def plot_learning_curves(metrics: pd.DataFrame, y: str = "acc_plus", hue: str = "kl", ax=None, x: str = "episodes",
                         palette: dict | None = None, bounds: tuple | None = None):
    """``y`` against ``x`` per ``hue``: the mean over runs with its 95 % Student-t interval as a band
    (``analysis.summarize``, the intervals of the book's tables; one run draws a line without a band).
    ``palette`` maps hue values to colours (the same variant, the same colour, across panels); ``bounds``
    (low, high) clips the bands to the values ``y`` can take (an accuracy: (0, 1); few runs give wide bands)."""
    import matplotlib.pyplot as plt
    style()
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for key, g in summarize(metrics, [hue, x], y).groupby(hue, sort=True):
        g = g.sort_values(x)
        colour = (palette or {}).get(key)
        (line,) = ax.plot(g[x], g["mean"], marker="o", label=str(key), color=colour)
        low, high = (g["ci_low"], g["ci_high"]) if bounds is None else (g["ci_low"].clip(*bounds), g["ci_high"].clip(*bounds))
        ax.fill_between(g[x], low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel="training episodes" if x == "episodes" else x.replace("_", " "), ylabel=LABELS.get(y, y.replace("_", " ")))
    if y in FRACTIONS:
        percent_axis(ax)
    ax.legend(title=hue)
    return ax


def _palette(values) -> dict:
    """One colour per value (sorted), from the style's cycle: the same variant in the same colour in every panel."""
    import matplotlib.pyplot as plt
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {k: colours[i % len(colours)] for i, k in enumerate(sorted(pd.unique(values)))}


def _figure_legend(fig, palette: dict, title: str) -> float:
    """One legend for a figure of panels, above them, from a ``_palette``, in as many rows as the figure's width
    needs (about 1.6 inch an entry); returns the inches it takes at the top."""
    handles = [matplotlib.lines.Line2D([], [], color=c, marker="o", label=k) for k, c in palette.items()]
    ncol = max(1, min(len(handles), int(fig.get_figwidth() // 1.6)))
    fig.legend(handles=handles, title=title, loc="upper center", ncol=ncol, bbox_to_anchor=(0.5, 1.0))
    return 0.35 + 0.25 * -(-len(handles) // ncol)


def plot_curves_by_beta(metrics: pd.DataFrame, y: str = "acc_plus", hue: str = "kl", ylabel: str | None = None,
                        ncols: int = 4):
    """One panel per KL coefficient (``ncols`` to a row): ``y`` against episodes per ``hue`` with t-interval
    bands (``plot_learning_curves``), each ``hue`` value in one colour throughout and one legend for the
    figure; runs without a KL (``kl == "none"``) appear in every panel. Returns the figure."""
    import matplotlib.pyplot as plt
    style()
    none = metrics["kl"] == "none"
    betas = sorted(metrics.loc[~none, "beta"].unique())
    palette = _palette(metrics[hue])
    n = max(1, len(betas))
    cols = min(n, ncols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows + 0.4), sharey=True, squeeze=False)
    flat = axes.ravel()
    for ax, b in zip(flat, betas):
        plot_learning_curves(metrics[(metrics["beta"] == b) | none], y=y, hue=hue, ax=ax, palette=palette)
        ax.set(title=f"beta = {b:g}", ylabel=ylabel or LABELS.get(y, y.replace("_", " ")))
        ax.get_legend().remove()
    for ax in flat[len(betas):]:
        fig.delaxes(ax)
    top = _figure_legend(fig, palette, hue)
    fig.tight_layout(rect=(0, 0, 1, 1 - top / fig.get_figheight()))
    return fig


def plot_curves_grid(metrics: pd.DataFrame, rows: dict, col: str = "method", hue: str = "kl", bounds: dict | None = None,
                     palette: dict | None = None, wrap: int | None = None):
    """A grid of learning curves: one row per ``rows`` item ``column: label`` (e.g. ``{"acc_plus": "plus-1
    accuracy"}``), one column per value of ``col``, each panel ``plot_learning_curves`` per ``hue`` (t-interval
    bands, clipped to ``bounds[column]`` where given), each ``hue`` value in one colour throughout (``palette``,
    hue value -> colour; the style's cycle by default) and one legend for the figure. With one row, ``wrap``
    puts at most that many panels to a row (a 2 x 2 grid instead of 1 x 4). Returns the figure."""
    import matplotlib.pyplot as plt
    style()
    cols = sorted(metrics[col].unique())
    palette = palette or _palette(metrics[hue])
    per_row = min(wrap, len(cols)) if wrap and len(rows) == 1 else len(cols)
    panels = [(y, label, value) for y, label in rows.items() for value in cols]  # row-major, one ``rows`` item a row
    n_rows = -(-len(panels) // per_row)
    fig, axes = plt.subplots(n_rows, per_row, figsize=(3.6 * per_row, 3.0 * n_rows + 0.4),
                             sharey="row" if len(rows) > 1 else True, sharex=True, squeeze=False)
    for i, (y, label, value) in enumerate(panels):
        r, c = divmod(i, per_row)
        ax = axes[r, c]
        plot_learning_curves(metrics[metrics[col] == value], y=y, hue=hue, ax=ax, palette=palette,
                             bounds=(bounds or {}).get(y))
        ax.get_legend().remove()
        ax.set(title=str(value) if r == 0 or len(rows) == 1 else "", ylabel=label if c == 0 else "",
               xlabel="training episodes" if r == n_rows - 1 else "")
    for ax in axes.ravel()[len(panels):]:
        fig.delaxes(ax)
    top = _figure_legend(fig, palette, hue)
    fig.tight_layout(rect=(0, 0, 1, 1 - top / fig.get_figheight()))
    return fig


def plot_weights(metrics: pd.DataFrame, ax=None):
    """The mean prioritized weight at the critical and at the other states of the collected episodes, against
    training episodes, with t-interval bands over runs (``weight_critical``/``weight_other`` of the RL metrics)."""
    keep = [c for c in ("episodes", "seed", "pretrain_seed", "beta") if c in metrics]
    w = (metrics.dropna(subset=["weight_critical"])
         .melt(id_vars=keep, value_vars=["weight_critical", "weight_other"], var_name="states", value_name="weight"))
    w["states"] = w["states"].str.removeprefix("weight_")
    ax = plot_learning_curves(w, y="weight", hue="states", ax=ax)
    ax.set(ylabel="mean prioritized weight", ylim=(-0.02, 1.02))
    return ax


def plot_table1(per_generation: pd.DataFrame, ax=None):
    """Delta-J at critical vs non-critical states, one point per generation (``measure.certainty_delta``);
    coloured by ``certainty_kind`` when the frame holds several certainty forms."""
    import seaborn as sns
    style()
    hue = "certainty_kind" if "certainty_kind" in per_generation else None
    d = per_generation.melt(id_vars=[hue] if hue else None, value_vars=["delta_critical", "delta_noncritical"],
                            var_name="tokens", value_name="delta_J")
    ax = sns.stripplot(data=d, x="tokens", y="delta_J", hue=hue, dodge=hue is not None, alpha=0.5, ax=ax)
    ax.axhline(0, color="k", lw=0.8)
    return ax


def plot_pretraining_curve(evals: pd.DataFrame, ax=None):
    """Greedy exact match vs pre-training step, one line per operand length (``eval.csv`` of a checkpoint)."""
    import seaborn as sns
    style()
    d = evals.assign(length=evals["digits"].astype(int).astype(str) + " digits")
    ax = sns.lineplot(data=d, x="step", y="accuracy", hue="length", marker="o", errorbar=None, ax=ax)
    ax.set(ylim=(-0.02, 1.02), xlabel="pre-training step", ylabel="greedy exact match")
    return percent_axis(ax)


def plot_means(frame: pd.DataFrame, x: str, y: str, hue: str, ax=None):
    """Grouped bars: the mean of ``y`` per ``x`` and ``hue`` over the rows of each group, with its 95 % Student-t
    interval as a whisker (``analysis.summarize``; a group of one row has none). Fractions (``FRACTIONS``) on a
    percent axis. Returns the axes."""
    import matplotlib.pyplot as plt
    style()
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    s = summarize(frame, [x, hue], y)
    xs, hues = sorted(s[x].unique()), sorted(s[hue].unique())
    width = 0.8 / len(hues)
    for i, h in enumerate(hues):
        g = s[s[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) - 0.4 + width * (i + 0.5)
        half = g["half_width"].fillna(0).to_numpy()
        ax.bar(pos, g["mean"], width, yerr=half, capsize=3, label=str(h))
    ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
    ax.set(xlabel=x.replace("_", " "), ylabel=LABELS.get(y, y.replace("_", " ")))
    if y in FRACTIONS:
        percent_axis(ax)
    ax.legend(title=hue)
    return ax


# -------------------------------------------------------------------------------------------------
# Markdown tables of RL results over seeds (``critkl.analysis`` computes the numbers)
def table_html(frame: pd.DataFrame, index: bool = False) -> str:
    """A frame as the book's HTML table (class ``critkl-table``, styled by ``book/_static/critkl.css``): its
    cells wrap to the page's width, where a printed table of many interval columns runs off it. Deterministic
    (no random ids), so nbval can check it. Floats keep the frame's own rounding; a column name's underscores
    become spaces and an interval's own spaces no-break spaces, so a cell breaks between its mean and its
    interval."""
    def cell(v):  # an interval breaks before its bracket, never inside it
        return re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", "\u00a0"), v) if isinstance(v, str) else v
    shown = frame.rename(columns=lambda c: str(c).replace("_", " "))  # a header may wrap between its words
    shown = shown.map(cell)
    return shown.to_html(index=index, border=0, classes="critkl-table", na_rep="", justify="right")


def show_table(frame: pd.DataFrame, index: bool = False):
    """Display ``frame`` in the notebook as ``table_html`` (the printed form, ``to_string``, is what a terminal
    gets)."""
    from IPython.display import HTML, display
    display(HTML(table_html(frame, index=index)))


def _pct(x, half=float("nan")) -> str:
    return f"{100 * x:.1f} %" if not np.isfinite(half) else f"{100 * x:.1f} ± {100 * half:.1f} %"


def _budgets(m: pd.DataFrame, columns: int) -> list:
    eps = sorted(m.episodes.unique())
    picked = eps[:: max(1, len(eps) // columns)]
    return picked + ([eps[-1]] if eps[-1] not in picked else [])


def duration(seconds: float) -> str:
    """A measured wall time in words: ``"14 seconds"`` under 90 s (``"1 second"``, ``"under a second"``), else
    ``"2.3 minutes"`` (never "0.0 minutes")."""
    if seconds >= 90:
        return f"{seconds / 60:.1f} minutes"
    return "under a second" if seconds < 0.5 else "1 second" if seconds < 1.5 else f"{seconds:.0f} seconds"


def interval(mean: float, low: float, high: float, scale: float = 100.0, signed: bool = True, digits: int = 1) -> str:
    """``mean [low, high]`` scaled (100: fractions as percent or points), e.g. ``+3.1 [-0.3, +6.5]``; n/a if NaN."""
    if not np.isfinite(mean):
        return "n/a"
    f = ("{:+.%df}" if signed else "{:.%df}") % digits
    if not (np.isfinite(low) and np.isfinite(high)):
        return f.format(scale * mean)
    return f"{f.format(scale * mean)} [{f.format(scale * low)}, {f.format(scale * high)}]"


def intervals_frame(table: pd.DataFrame, values: dict, keep=(), scale: float = 100.0, digits: int = 1,
                    signed: bool = True) -> pd.DataFrame:
    """A table to print: the ``keep`` columns as they are, then per ``values`` item ``column: label`` the text
    ``interval`` of ``column``, ``column_low``, ``column_high`` (``analysis.frontier_table``'s layout);
    ``signed=False`` for quantities that are never negative (a KL, an accuracy)."""
    out = table[list(keep)].copy()
    for col, label in values.items():
        out[label] = [interval(r[col], r[f"{col}_low"], r[f"{col}_high"], scale, signed, digits)
                      for _, r in table.iterrows()]
    return out


def gap_verdict(gap: pd.Series, unit: str = "points", scale: float = 100.0) -> str:
    """One paired gap (a row of ``analysis.frontier_gaps``/``paired_gap``) in words: its sign only where the
    95 % interval excludes 0, e.g. ``+4.2 points [+1.0, +7.4], 10 pairs: prioritized higher``."""
    words = (f"{gap['a']} higher" if gap["ci_low"] > 0 else f"{gap['a']} lower" if gap["ci_high"] < 0
             else "no difference detected")
    return f"{interval(gap['mean'], gap['ci_low'], gap['ci_high'], scale)} {unit}, {int(gap['n'])} pairs: {words}"


def gap_tally(gaps: pd.DataFrame, what: str = "coefficients") -> str:
    """Paired gaps ``a - b`` over several coefficients (rows of ``analysis.frontier_gaps`` for one pair; ``what``
    names the rows) in words: at how many ``a`` is higher, lower, or not detectably different (the 95 % interval
    contains 0)."""
    a = gaps["a"].iloc[0] if len(gaps) and "a" in gaps else "a"
    higher, lower = int((gaps["ci_low"] > 0).sum()), int((gaps["ci_high"] < 0).sum())
    count = lambda k: "none" if k == 0 else str(k)  # noqa: E731  ("lower at 0" would read as a coefficient of 0)
    return (f"{a} higher at {count(higher)} of {len(gaps)} {what}, lower at {count(lower)}, no difference detected "
            f"at {count(len(gaps) - higher - lower)}")


def level_table(acc: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """The paper's Tables 4-5 at our scale: greedy exact match in percent, mean [95 % t-interval] over
    pre-training seeds, one row per level and ``lengths`` (same / different), one column per operand length
    relative to the level (``N-1``, ``N``, ``N+1``, ...). ``acc``: rows of ``pretrain.accuracy_by_digits`` with
    ``level`` (and ``seed``) columns; a table without ``lengths`` is all same-length."""
    d = acc.assign(lengths=acc["lengths"] if "lengths" in acc else "same", rel=acc["digits"] - acc["level"])
    s = summarize(d, ["level", "lengths", "rel"], "accuracy", confidence)
    s["text"] = [interval(m, lo, hi, signed=False) for m, lo, hi in zip(s["mean"], s["ci_low"], s["ci_high"])]
    t = s.pivot(index=["level", "lengths"], columns="rel", values="text").sort_index(axis=1).fillna("")
    return t.rename(columns=lambda r: "N" if r == 0 else f"N{r:+d}").rename_axis(columns="column")


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
    """Markdown: per ``by``, the seeds gaining ``gain`` over their start accuracy and the episodes each needs
    ("-" for a censored run, one that never got there)."""
    t = episodes_to_threshold(m, gain, group=(by, "seed"))
    lines = [f"| {by} | seeds gaining {100 * gain:.0f} points | episodes to get there (per seed) |", "|---|---|---|"]
    for key, g in t.groupby(by, sort=True):
        e = g["episodes_to_threshold"]
        lines.append(f"| {key} | {int(e.notna().sum())}/{len(e)} | "
                     f"{', '.join('-' if np.isnan(v) else str(int(v)) for v in e)} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------
# The regime search (``critkl.regime``): the premise's criteria per configuration and seed, training curves
def short_labels(names) -> dict:
    """``name -> label`` for configuration names (``critkl.regime.config_name``): each name less the
    dash-separated parts that every name shares, so panels over several configurations stay readable. A single
    name, or names that would lose what tells them apart, keep their full name."""
    names = list(dict.fromkeys(names))
    parts = [n.split("-") for n in names]
    common = set.intersection(*(set(p) for p in parts)) if len(names) > 1 else set()
    labels = {n: "-".join(x for x in p if x not in common) or n for n, p in zip(names, parts)}
    return labels if len(set(labels.values())) == len(names) else {n: n for n in names}


def plot_premise(rows: pd.DataFrame, premise, axes=None):
    """One panel per criterion column of ``premise`` (``critkl.regime.PREMISE``: ``(column, op, bound)``
    tuples): each probed checkpoint of ``rows`` (``results/regime_search.csv``) as a point at its value, one
    line of points per configuration (``config``, labelled by ``short_labels``), coloured by
    ``pretrain_seed``; every bound of that column as a dashed line, its failing side shaded. Missing values
    (a criterion that could not be measured) are not drawn. Returns the axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    style()
    columns = list(dict.fromkeys(col for col, _, _ in premise))
    configs = list(dict.fromkeys(rows["config"]))
    labels = short_labels(configs)
    seeds = sorted(rows["pretrain_seed"].unique())
    colours = dict(zip(seeds, sns.color_palette("colorblind", len(seeds))))
    offset = {s: 0.25 * (i - (len(seeds) - 1) / 2) / max(len(seeds) - 1, 1) for i, s in enumerate(seeds)}
    if axes is None:
        _, axes = plt.subplots(1, len(columns), sharey=True, squeeze=False,
                               figsize=(3.3 * len(columns), 1.6 + 0.55 * len(configs)))
        axes = axes[0]
    y = {c: i for i, c in enumerate(configs)}
    for ax, col in zip(axes, columns):
        d = rows[rows[col].notna()] if col in rows else rows.iloc[:0]
        for seed, g in d.groupby("pretrain_seed", sort=True):
            ax.scatter(g[col], [y[c] + offset[seed] for c in g["config"]], color=colours[seed], s=45,
                       edgecolor="k", linewidth=0.5, zorder=3)
        bounds = [(op, bound) for c, op, bound in premise if c == col]
        values = (list(d[col]) if col in d else []) + [b for _, b in bounds]
        lo, hi = min([0.0] + values), max([1.0] + values)
        pad = 0.04 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)
        for op, bound in bounds:
            ax.axvline(bound, color="k", ls="--", lw=1)
            failing = (lo - pad, bound) if op == ">=" else (bound, hi + pad)
            ax.axvspan(*failing, color="0.88", zorder=0)
        ax.set_title(" and ".join(f"{op} {bound:g}" for op, bound in bounds), fontsize="medium")
        ax.set_xlabel(col)
    axes[0].set_yticks(range(len(configs)), [labels[c] for c in configs])
    axes[0].set_ylim(len(configs) - 0.5, -0.5)  # first configuration on top
    if seeds:
        from matplotlib.lines import Line2D
        handles = [Line2D([], [], ls="", marker="o", markerfacecolor=colours[s], markeredgecolor="k", markersize=7)
                   for s in seeds]
        axes[-1].legend(handles, [f"seed {s}" for s in seeds], loc="center left", bbox_to_anchor=(1.02, 0.5),
                        title="pre-training")
    return axes


def plot_training_curves(evals: pd.DataFrame, threshold: float | None = None, ncols: int = 3):
    """One panel per checkpoint of ``evals`` (``critkl.store.shipped_evals``, panels titled by its ``label``
    column when it has one, else ``checkpoint``): greedy exact match over pre-training steps, the worst over
    operand lengths 1..N (the comfort zone, N = ``level``) and on N+1 digits; ``threshold`` (e.g. the premise's
    bound on the worst of 1..N) as a dotted line. Returns the axes that hold a panel."""
    import matplotlib.pyplot as plt
    style()
    title = "label" if "label" in evals else "checkpoint"
    panels = list(dict.fromkeys(evals["checkpoint"]))
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    _, axes = plt.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False,
                           figsize=(3.6 * ncols, 0.6 + 2.6 * nrows))
    axes = axes.ravel()
    for ax, name in zip(axes, panels):
        e = evals[evals["checkpoint"] == name]
        N = int(e["level"].iloc[0])
        comfort = e[e["digits"].between(1, N)].groupby("step")["accuracy"].min()
        plus1 = e[e["digits"] == N + 1].groupby("step")["accuracy"].mean()
        ax.plot(comfort.index, comfort.values, marker="o", color="C0", label="worst of 1..N digits")
        ax.plot(plus1.index, plus1.values, marker="s", color="C1", label="N+1 digits")
        if threshold is not None:
            ax.axhline(threshold, color="k", ls=":", lw=1)
        ax.set_title(str(e[title].iloc[0]), fontsize="small")
        ax.set_ylim(-0.03, 1.03)
        percent_axis(ax)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes[:len(panels)]):
        if i + ncols >= len(panels):  # no panel below it
            ax.set_xlabel("pre-training step")
        if i % ncols == 0:
            ax.set_ylabel("greedy exact match")
    if panels:
        axes[0].figure.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2,
                              bbox_to_anchor=(0.5, 0.0), frameon=False)
    return axes[:len(panels)]


def plot_certainty_ecdf(df: pd.DataFrame, alphas=(), ax=None, floor: float = 1e-7):
    """How uncertain critical and other states are: for each x, the share of states whose uncertainty
    1 - J(s) is at least x (``measure`` rows: ``certainty``, ``critical``; log scale, values below ``floor``
    drawn at it). A dashed line at each alpha's 1 - 0.5 ** (1 / alpha): right of it the prioritized weight
    J ** alpha is below 0.5, so where a curve crosses the line is the share of its states whose KL is lifted
    (for the critical states, the detector's recall)."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for crit, label in ((True, "critical states"), (False, "other states")):
        u = np.sort(np.maximum(1 - df.loc[df.critical == crit, "certainty"].to_numpy(), floor))
        if len(u):
            ax.step(u, 1 - np.arange(len(u)) / len(u), where="post", label=f"{label} ({len(u)})")
    for alpha in alphas:
        x = 1 - 0.5 ** (1 / alpha)
        ax.axvline(x, ls="--", color="grey", lw=1)
        ax.annotate(f"alpha {alpha:g}", (x, 0.98), rotation=90, fontsize=8, ha="right", va="top")
    ax.set(xscale="log", xlabel="uncertainty 1 - J(s)", ylabel="share of states with 1 - J >= x")
    ax.legend(loc="lower left")
    return ax


def plot_frontier(table: pd.DataFrame, x: str = "mean_kl", y: str = "gain", ax=None, scale_x: float = 1.0,
                  scale_y: float = 1.0, log_x: bool = False):
    """One method's trade-off (``analysis.frontier_table`` rows: ``kl``, ``beta``, ``<x>``, ``<y>`` and their
    ``_low``/``_high`` t-interval bounds): one curve per KL variant across beta, each point with both
    intervals as error bars and its beta written beside it; runs without a KL are one point. ``scale_x`` and
    ``scale_y`` multiply the coordinates (100: fractions drawn as percent or points); ``log_x`` draws x on a log
    scale with its decades labelled (KL coefficients span decades), and the 2s and 5s between them where the axis
    spans about one decade."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for kl, g in table.groupby("kl", sort=False):
        g = g.sort_values("beta") if "beta" in g else g
        xs, ys = scale_x * g[x], scale_y * g[y]
        err = lambda c, k: [k * (g[c] - g[f"{c}_low"]).to_numpy(), k * (g[f"{c}_high"] - g[c]).to_numpy()]  # noqa: E731
        line = ax.errorbar(xs, ys, xerr=err(x, scale_x), yerr=err(y, scale_y), marker="o", capsize=3,
                           ls="-" if kl != "none" else "none", label=kl)
        if kl != "none" and "beta" in g:  # each variant's betas on its own side of its points, in its colour
            above = kl == "prioritized"
            for bx, by, beta in zip(xs, ys, g["beta"]):
                ax.annotate(f"{beta:g}", (bx, by), textcoords="offset points", xytext=(-5, 5) if above else (5, -5),
                            ha="right" if above else "left", va="bottom" if above else "top", fontsize=8,
                            color=line[0].get_color(), fontweight="bold")
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "))
    if log_x:
        ax.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        low, high = ax.get_xlim()
        if high > 15 * low:  # more than a decade: the 2s and 5s of every decade would run into each other
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(  # label 2 and 5 of the decade, plainly
                lambda v, _: f"{v:g}" if v > 0 and f"{v:.0e}"[0] in "25" else ""))
    ax.legend(title="KL")
    return ax


def plot_frontier_by_method(outcomes: pd.DataFrame, y: str = "gain", confidence: float = 0.95):
    """Every RL method's frontier side by side: one panel per ``method`` of ``outcomes`` (``analysis.run_outcomes``
    of a frontier sweep, with ``with_method``'s column), ``y`` (points) against the mean KL to the reference (log
    scale), one curve per KL variant across beta (``plot_frontier``; runs without KL record no KL, so they are
    not drawn here). Returns the figure."""
    import matplotlib.pyplot as plt
    style()
    methods = sorted(outcomes["method"].unique())
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        o = outcomes[(outcomes.method == method) & (outcomes.kl != "none")]
        plot_frontier(frontier_table(o, confidence=confidence), x="mean_kl", y=y, ax=ax, scale_y=100, log_x=True)
        ax.set(title=f"{method} ({o.seed.nunique()} RL seeds)", xlabel="mean KL (nats per token)",
               ylabel=f"{y.replace('_', ' ')} (points)" if ax is axes[0, 0] else "")
    fig.tight_layout()
    return fig


def method_verdicts(outcomes: pd.DataFrame, confidence: float = 0.95,
                    min_pairs: int = 2) -> pd.DataFrame:
    """The frontier's verdict per RL method, in words (one row per ``method`` of ``outcomes``, as
    ``plot_frontier_by_method`` reads them): runs; the prioritized - standard paired gaps of the
    final and of the AUC gain at each coefficient with at least ``min_pairs`` pairs, tallied
    (``gap_tally``); the largest final-gain gap; and where the prioritized points lie at equal mean
    KL to the reference, against the standard curve interpolated between its coefficients
    (``analysis.at_equal``, means only)."""
    rows = []
    for method, o in outcomes.groupby("method", sort=True):
        row = {"method": method, "runs": len(o)}
        for value, label in (("gain", "final gain"), ("auc_gain", "AUC gain")):
            g = frontier_gaps(o, value, pairs=(("prioritized", "standard"),), confidence=confidence)
            g = g[g.n >= min_pairs]
            row[f"{label}, prioritized - standard"] = (gap_tally(g) if len(g)
                                                        else f"fewer than {min_pairs} pairs")
            if value == "gain" and len(g):
                best = g.sort_values("mean").iloc[-1]
                row["largest final-gain gap"] = f"beta {best['beta']:g}: {gap_verdict(best)}"
        d = at_equal(frontier_table(o[o.kl != "none"], confidence=confidence), "prioritized",
                     "standard", x="mean_kl", y="gain")
        row["at equal mean KL (final gain)"] = equal_span(d)
        rows.append(row)
    return pd.DataFrame(rows)


def equal_span(d: pd.DataFrame) -> str:
    """``analysis.at_equal`` rows in words, the one phrasing of the book: the range of the differences (in
    points) and at how many of the coefficients inside the other curve's range the first curve lies above it."""
    d = d.dropna(subset=["difference"])
    if not len(d):
        return "outside the standard curve's range (no coefficient to compare)"
    return (f"{100 * d.difference.min():+.1f} to {100 * d.difference.max():+.1f} points from the standard curve; "
            f"above it at {int((d.difference > 0).sum())} of the {len(d)} coefficients inside its range")


def plot_exponent(gaps: pd.DataFrame, ax=None, scale: float = 100.0, ylabel: str = "gap to the standard KL (points)"):
    """The ablation over the certainty exponent (the paper's Fig. 6 as one number per run): ``analysis.exponent_gaps``
    rows, the paired gap to the standard KL against alpha on a log axis (alpha = 0, the standard KL by construction,
    drawn at the axis' left end), one line per certainty form and reference temperature, 95 % t-interval bars."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6.5, 4))[1]
    positive = gaps.loc[gaps.alpha > 0, "alpha"]
    zero_at = positive.min() / 3 if len(positive) else 1.0  # where alpha = 0 is drawn on the log axis
    for (form, t), g in gaps.groupby(["certainty", "ref_temperature"], sort=True):
        g = g.sort_values("alpha")
        xs = g.alpha.where(g.alpha > 0, zero_at)
        half = (scale * g.half_width).fillna(0)
        ax.errorbar(xs, scale * g["mean"], yerr=half, marker="o", capsize=3, label=f"{form}, T = {t:g}")
    ax.axhline(0, color="grey", lw=1)
    ax.set_xscale("log")
    ticks = sorted({zero_at, *positive})
    ax.set_xticks(ticks, ["0" if v == zero_at else f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.tick_params(axis="x", labelrotation=45)  # 500 and 1000 sit close on the log axis
    ax.set(xlabel="certainty exponent alpha (the paper's beta; 0: the standard KL)", ylabel=ylabel)
    ax.legend(title="certainty, reference T", loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)  # below: off the bars
    return ax


def plot_exponent_curves(metrics: pd.DataFrame, y: str = "acc_plus", label: str = "plus-1 accuracy"):
    """The paper's Fig. 6 itself: ``y`` against training episodes, one panel per certainty form and reference
    temperature, one curve per exponent alpha (t-interval bands, ``plot_curves_grid``), the standard KL's runs
    drawn in every panel. Needs ``kl``, ``certainty``, ``ref_temperature``, ``alpha``. Returns the figure."""
    prioritized = metrics[metrics.kl == "prioritized"]
    panels = (prioritized.certainty + ", T = " + prioritized.ref_temperature.map("{:g}".format)).rename("panel")
    standard = metrics[metrics.kl == "standard"]
    parts = [prioritized.assign(panel=panels, curve=prioritized.alpha.map(lambda a: f"alpha {a:>5g}"))]
    parts += [standard.assign(panel=p, curve="standard") for p in sorted(panels.unique())]
    curves = pd.concat(parts, ignore_index=True)
    alphas = sorted(prioritized.alpha.unique())  # a sequential palette: alpha's order reads from the colour
    shades = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(alphas))) if alphas else []
    palette = {f"alpha {a:>5g}": matplotlib.colors.to_hex(c) for a, c in zip(alphas, shades)} | {"standard": "#d62728"}
    return plot_curves_grid(curves, {y: label}, col="panel", hue="curve", palette=palette, wrap=2,
                            bounds={y: (0, 1)} if y.startswith("acc_") else None)
