import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from critkl import plots  # noqa: E402


def test_learning_curves_and_table1_draw():
    m = pd.DataFrame(dict(episodes=[0, 32, 0, 32], acc_plus=[0.0, 0.1, 0.0, 0.3], kl=["standard"] * 2 + ["prioritized"] * 2))
    ax = plots.plot_learning_curves(m)
    assert ax.get_xlabel() == "training episodes" and len(ax.get_lines()) >= 2
    # accuracies are fractions, drawn on a percent axis (the unit of the book's tables)
    assert isinstance(ax.yaxis.get_major_formatter(), matplotlib.ticker.PercentFormatter)
    assert ax.yaxis.get_major_formatter()(0.25) == "25%"
    other = plots.plot_learning_curves(m.rename(columns={"acc_plus": "mean_kl"}), y="mean_kl", ax=plt.figure().gca())
    assert not isinstance(other.yaxis.get_major_formatter(), matplotlib.ticker.PercentFormatter)
    t = pd.DataFrame(dict(delta_critical=[-0.3, -0.2], delta_noncritical=[0.01, 0.0]))
    ax = plots.plot_table1(t, ax=plt.figure().gca())
    # 2 generations x (critical, non-critical) = 4 points, at y = the deltas
    ys = sorted(y for c in ax.collections for _, y in c.get_offsets())
    assert ys == pytest.approx([-0.3, -0.2, 0.0, 0.01])
    # one row per generation per certainty kind (measure.certainty_delta): 2 x 2 x 2 = 8 points, 2 colours
    both = pd.concat([t.assign(certainty_kind="max_prob"), t.assign(certainty_kind="entropy", delta_critical=[-0.5, -0.4])])
    ax = plots.plot_table1(both, ax=plt.figure().gca())
    assert sum(len(c.get_offsets()) for c in ax.collections) == 8
    assert len({tuple(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets())}) == 2


def test_render_measured():
    from critkl import task
    text = task.full_text(12, 345)
    df = pd.DataFrame([dict(problem=0, a=12, b=345, index=i, p_correct=0.5, critical=i == 30)
                       for i in range(len(task.prompt(12, 345)), len(text))])
    html = plots.render_measured(df, 0)
    assert "outline" in html and "12+345" in html


def test_render_html_escapes():
    html = plots.render_html("<script>&x", [0.1, 0.9, None, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0], critical=[0])
    assert "<script>" not in html and "&lt;" in html and "&amp;" in html
    assert "outline" in html
    with pytest.raises(ValueError, match="values"):
        plots.render_html("abc", [0.1])
    assert "&lt;b&gt;" in plots.render_html("x", title="<b>")


def test_render_html_text_stays_readable_on_the_dark_ends():
    html = plots.render_html("abc", [0.0, 0.5, 1.0])
    spans = html.split("<span")[1:]
    assert "color:#fff" in spans[0] and "color:#fff" in spans[2]  # dark red, dark green: white text
    assert "color:#fff" not in spans[1]  # yellow: the default dark text
    assert all(s.count("background:") == 1 for s in spans)


def test_markdown_tables_hand_computed():
    rows = []
    # 2 seeds; at 32 episodes prioritized 0.5 / 0.4, standard 0.3 / 0.3: gap 0.2, 0.1 -> mean +15.0 points;
    # sd 0.070711, se 0.05, t(0.975, 1) = 12.706205 -> half width 0.635310 = 63.5 points
    for seed, (p, s) in enumerate([(0.5, 0.3), (0.4, 0.3)]):
        for kl, end in (("prioritized", p), ("standard", s)):
            rows += [dict(kl=kl, seed=seed, round=0, episodes=0, acc_plus=0.3),
                     dict(kl=kl, seed=seed, round=1, episodes=32, acc_plus=end)]
    m = pd.DataFrame(rows)
    assert plots.gap_line(m) == ("gap prioritized - standard at 32 episodes: +15.0 points (95 % CI ± 63.5, 2 seeds; "
                                 "per seed +20.0, +10.0)")
    assert plots.gap_line(m[m.kl == "standard"]) == ""
    # prioritized at 32: [0.5, 0.4] -> 45.0 ± 63.5 %; at 0 both seeds 0.3 (sd 0)
    assert plots.curves_table(m, "kl").splitlines() == [
        "| kl | 0 | 32 |", "|---|---|---|",
        "| prioritized | 30.0 ± 0.0 % | 45.0 ± 63.5 % |", "| standard | 30.0 ± 0.0 % | 30.0 ± 0.0 % |"]
    # seeds gaining 10 points: prioritized seed 0 (+0.2) and seed 1 (+0.1); standard none (censored: "-")
    t = plots.threshold_table(m, "kl", 0.1)
    assert "| prioritized | 2/2 | 32, 32 |" in t and "| standard | 0/2 | -, - |" in t


PREMISE = (("greedy_min_1toN", ">=", 0.97), ("plus1_T1", ">=", 0.15), ("plus1_T1", "<=", 0.60),
           ("fail_at_critical", ">=", 0.5))


def _regime_rows():
    # 2 configurations x 3 seeds; one failure share not measured (NaN: no failed sample)
    a, b = "N3-llama4x128-1500steps-fp32", "N3-llama4x128-2500steps-fp32"
    return pd.DataFrame(dict(config=[a] * 3 + [b] * 3, pretrain_seed=[0, 1, 2] * 2,
                             greedy_min_1toN=[0.99, 0.9, 1.0, 1.0, 1.0, 0.98],
                             plus1_T1=[0.23, 0.02, 0.1, 0.3, 0.4, 0.7],
                             fail_at_critical=[0.9, 0.6, float("nan"), 0.7, 0.8, 0.2]))


def _dashed(ax):
    return sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--")


def test_short_labels_keep_only_what_differs():
    assert plots.short_labels(["N3-a-1500steps-fp32", "N3-a-2500steps-fp32", "N3-a-2500steps-bf16"]) == {
        "N3-a-1500steps-fp32": "1500steps-fp32", "N3-a-2500steps-fp32": "2500steps-fp32",
        "N3-a-2500steps-bf16": "2500steps-bf16"}
    assert plots.short_labels(["N3-a-fp32"]) == {"N3-a-fp32": "N3-a-fp32"}  # alone: its full name
    assert plots.short_labels(["a-b", "b-a"]) == {"a-b": "a-b", "b-a": "b-a"}  # nothing tells them apart


def test_plot_premise_one_panel_per_criterion_with_its_bounds():
    rows = _regime_rows()
    axes = plots.plot_premise(rows, PREMISE)
    # one panel per criterion column (plus1_T1 has two bounds but one panel)
    assert [ax.get_xlabel() for ax in axes] == ["greedy_min_1toN", "plus1_T1", "fail_at_critical"]
    assert [_dashed(ax) for ax in axes] == [[0.97], [0.15, 0.6], [0.5]]
    # one point per probed checkpoint with a value: 6, 6 and 5 (the NaN is not drawn), at the right x
    xs = [sorted(x for c in ax.collections for x, _ in c.get_offsets()) for ax in axes]
    assert [len(x) for x in xs] == [6, 6, 5]
    assert xs[1] == pytest.approx(sorted(rows.plus1_T1))
    assert xs[2] == pytest.approx([0.2, 0.6, 0.7, 0.8, 0.9])
    # points sit on their configuration's row (y = 0 for the first, 1 for the second, +/- a seed offset)
    ys = [y for c in axes[0].collections for x, y in c.get_offsets() if x == 0.9]
    assert len(ys) == 1 and abs(ys[0]) < 0.5
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["1500steps", "2500steps"]
    # the legend names every seed once
    assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["seed 0", "seed 1", "seed 2"]


def test_plot_training_curves_worst_of_comfort_zone_and_plus1():
    rows = []
    for ckpt, seed in (("c0", 0), ("c1", 1)):
        for step in (100, 200):
            for digits, acc in ((1, 1.0), (2, 0.5 + step / 1000), (3, 0.9), (4, 0.01 * seed)):
                rows.append(dict(checkpoint=ckpt, label=f"seed {seed}", level=3, step=step, digits=digits, accuracy=acc))
    evals = pd.DataFrame(rows)
    axes = plots.plot_training_curves(evals, threshold=0.97)
    assert len(axes) == 2 and [ax.get_title() for ax in axes] == ["seed 0", "seed 1"]
    for ax, seed in zip(axes, (0, 1)):
        lines = {line.get_label(): line for line in ax.get_lines()}
        # worst of lengths 1..3 at each step: the 2-digit accuracy 0.6, 0.7; N+1 = the 4-digit line
        assert list(lines["worst of 1..N digits"].get_ydata()) == pytest.approx([0.6, 0.7])
        assert list(lines["N+1 digits"].get_ydata()) == pytest.approx([0.01 * seed] * 2)
        assert list(lines["worst of 1..N digits"].get_xdata()) == [100, 200]
        dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert len(dotted) == 1 and dotted[0].get_ydata()[0] == 0.97
    assert len(ax.figure.axes) == 2  # no empty panels
    assert not [line for line in plots.plot_training_curves(evals)[0].get_lines() if line.get_linestyle() == ":"]


def test_plot_certainty_ecdf_draws_both_groups_and_the_thresholds():
    from critkl.plots import plot_certainty_ecdf
    df = pd.DataFrame(dict(certainty=[0.2, 0.5, 0.9, 0.95, 0.99, 1.0], critical=[True, True, False, False, False, False]))
    ax = plot_certainty_ecdf(df, alphas=(150, 1000))
    steps = [l for l in ax.get_lines() if l.get_linestyle() == "-"]
    assert len(steps) == 2
    crit = steps[0]
    assert np.allclose(crit.get_xdata(), [0.5, 0.8]) and np.allclose(crit.get_ydata(), [1.0, 0.5])
    other = steps[1]  # certainty 1.0 is drawn at the floor of the log axis
    assert np.allclose(other.get_xdata(), [1e-7, 0.01, 0.05, 0.1]) and ax.get_xscale() == "log"
    vlines = [l.get_xdata()[0] for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert np.allclose(sorted(vlines), sorted([1 - 0.5 ** (1 / 150), 1 - 0.5 ** (1 / 1000)]))
    assert "critical states (2)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_frontier_draws_a_curve_per_variant_with_intervals():
    from critkl.analysis import frontier_table, run_outcomes
    from critkl.plots import plot_frontier
    rows = []
    for kl, betas in (("none", [0.2]), ("standard", [0.05, 1.0]), ("prioritized", [0.05, 1.0])):
        for beta in betas:
            for s in range(3):
                for r, acc in enumerate([0.2, 0.25 + 0.01 * s + (0.05 if kl == "none" else 0)]):
                    rows.append(dict(method="reinforce", kl=kl, beta=beta, seed=s, pretrain_seed=0, round=r,
                                     episodes=32 * r, acc_plus=acc, acc_comfort=0.9, mean_kl=0.1 * beta + 0.01 * s,
                                     p_critical_mean=0.5))
    table = frontier_table(run_outcomes(pd.DataFrame(rows)))
    ax = plot_frontier(table)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["none", "prioritized", "standard"]
    std = table[table.kl == "standard"].sort_values("beta")
    line = [l for l in ax.get_lines() if len(l.get_xdata()) == 2 and np.allclose(l.get_ydata(), std.gain)]
    assert line and np.allclose(line[0].get_xdata(), std.mean_kl)
    assert sorted(t.get_text() for t in ax.texts) == ["0.05", "0.05", "1", "1"]  # betas beside the KL curves
    # each variant's betas in its line's colour, on opposite sides of the points so the two sets do not overlap
    colours = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
    sides = {(t.get_color(), t.get_ha()) for t in ax.texts}
    assert sides == {(colours["prioritized"], "right"), (colours["standard"], "left")}
    # scaled: fractions drawn as points
    ax = plot_frontier(table, scale_y=100, ax=plt.figure().gca())
    line = [l for l in ax.get_lines() if len(l.get_xdata()) == 2 and np.allclose(l.get_ydata(), 100 * std.gain)]
    assert line and np.allclose(line[0].get_xdata(), std.mean_kl)


def test_learning_curves_band_is_the_t_interval():
    # two runs per variant: at 32 episodes 0.1 and 0.3 -> mean 0.2, half-width t(0.975, 1) * sd / sqrt(2)
    m = pd.DataFrame(dict(episodes=[0, 32] * 4, acc_plus=[0.0, 0.1, 0.0, 0.3, 0.0, 0.5, 0.0, 0.5],
                          kl=["standard"] * 4 + ["prioritized"] * 4, seed=[0, 0, 1, 1] * 2))
    ax = plots.plot_learning_curves(m, ax=plt.figure().gca())
    std = [l for l in ax.get_lines() if l.get_label() == "standard"][0]
    assert list(std.get_ydata()) == pytest.approx([0.0, 0.2])
    band = ax.collections[[l.get_label() for l in ax.get_lines()].index("standard")]
    ys = band.get_paths()[0].vertices[:, 1]
    half = 12.706205 * np.std([0.1, 0.3], ddof=1) / np.sqrt(2)
    assert max(ys) == pytest.approx(0.2 + half, rel=1e-5)


def test_interval_text_and_gap_verdict():
    assert plots.interval(0.031, -0.003, 0.065) == "+3.1 [-0.3, +6.5]"
    assert plots.interval(0.5, 0.4, 0.6, signed=False) == "50.0 [40.0, 60.0]"
    assert plots.interval(float("nan"), 0, 0) == "n/a" and plots.interval(0.1, float("nan"), float("nan")) == "+10.0"
    t = pd.DataFrame(dict(kl=["standard"], gain=[0.1], gain_low=[0.05], gain_high=[0.15]))
    assert plots.intervals_frame(t, {"gain": "gain (points)"}, keep=["kl"]).iloc[0].tolist() == ["standard", "+10.0 [+5.0, +15.0]"]
    assert plots.intervals_frame(t, {"gain": "g"}, signed=False, scale=1, digits=2).iloc[0].tolist() == ["0.10 [0.05, 0.15]"]
    gap = pd.Series(dict(a="prioritized", b="standard", mean=0.04, ci_low=0.01, ci_high=0.07, n=10))
    assert plots.gap_verdict(gap).endswith("10 pairs: prioritized higher")
    assert plots.gap_verdict(gap.replace({0.01: -0.01})).endswith("no difference detected")
    assert plots.gap_verdict(pd.Series(dict(a="x", b="y", mean=-0.04, ci_low=-0.07, ci_high=-0.01, n=3))).endswith("x lower")


def test_curves_by_beta_draw_a_panel_per_coefficient_with_runs_without_kl_in_each():
    rows = [dict(kl=kl, beta=b, seed=s, episodes=e, acc_plus=0.1 * e / 32 + 0.01 * s, weight_critical=0.2, weight_other=0.9)
            for kl, betas in (("none", [0.2]), ("standard", [0.05, 1.0]), ("prioritized", [0.05, 1.0]))
            for b in betas for s in range(2) for e in (0, 32)]
    fig = plots.plot_curves_by_beta(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["beta = 0.05", "beta = 1"]
    assert all(sorted(l.get_label() for l in ax.get_lines()) == ["none", "prioritized", "standard"] for ax in fig.axes)
    colour = {(i, l.get_label()): l.get_color() for i, ax in enumerate(fig.axes) for l in ax.get_lines()}
    assert all(colour[(0, k)] == colour[(1, k)] for k in ("none", "prioritized", "standard"))  # one colour per variant
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["none", "prioritized", "standard"]
    wrapped = plots.plot_curves_by_beta(pd.DataFrame(rows), ncols=1)  # one panel per row, none left empty
    assert len(wrapped.axes) == 2 and wrapped.axes[1].get_title() == "beta = 1"
    ax = plots.plot_weights(pd.DataFrame(rows), ax=plt.figure().gca())
    lines = {l.get_label(): list(l.get_ydata()) for l in ax.get_lines()}
    assert lines == {"critical": pytest.approx([0.2, 0.2]), "other": pytest.approx([0.9, 0.9])}


def test_curves_grid_draws_a_row_per_value_and_a_column_per_method():
    rows = [dict(method=m, kl=kl, seed=s, episodes=e, acc_plus=0.1 * e / 32 + 0.01 * s, acc_comfort=0.9 - 0.1 * e / 32)
            for m in ("reinforce", "a2c") for kl in ("none", "standard") if (m, kl) != ("a2c", "standard")
            for s in range(2) for e in (0, 32)]
    fig = plots.plot_curves_grid(pd.DataFrame(rows), {"acc_plus": "plus-1", "acc_comfort": "comfort"})
    assert [ax.get_title() for ax in fig.axes] == ["a2c", "reinforce", "", ""]
    assert [ax.get_ylabel() for ax in fig.axes] == ["plus-1", "", "comfort", ""]
    colour = {(i, l.get_label()): l.get_color() for i, ax in enumerate(fig.axes) for l in ax.get_lines()}
    assert colour[(0, "none")] == colour[(1, "none")] == colour[(3, "none")] != colour[(1, "standard")]
    assert sorted(l.get_label() for l in fig.axes[0].get_lines()) == ["none"]  # a2c has no standard runs here
    mean_at_32 = [y for l in fig.axes[3].get_lines() if l.get_label() == "none" for y in l.get_ydata()][-1]
    assert mean_at_32 == pytest.approx(0.8)  # reinforce / none comfort: 0.9 - 0.1, both seeds
    spread = pd.DataFrame(rows).assign(acc_plus=lambda d: d.seed.map({0: 0.0, 1: 1.0}))  # a band wider than [0, 1]
    fig = plots.plot_curves_grid(spread, {"acc_plus": "plus-1"}, bounds={"acc_plus": (0, 1)})
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == 0 and band.max() == 1
    unclipped = plots.plot_curves_grid(spread, {"acc_plus": "plus-1"}).axes[0].collections[0].get_paths()[0].vertices
    assert unclipped[:, 1].min() < 0 < 1 < unclipped[:, 1].max()


def test_level_table_is_percent_with_t_intervals_over_seeds_by_relative_length():
    acc = pd.DataFrame(dict(level=[3] * 4, seed=[0, 1, 0, 1], digits=[3, 3, 4, 4], accuracy=[1.0, 0.9, 0.2, 0.4],
                            lengths="same"))
    t = plots.level_table(acc)
    assert list(t.columns) == ["N", "N+1"] and t.index.tolist() == [(3, "same")]
    half = 12.706205 * np.std([0.2, 0.4], ddof=1) / np.sqrt(2) * 100
    assert t.loc[(3, "same"), "N+1"] == f"30.0 [{30 - half:.1f}, {30 + half:.1f}]"
    assert plots.level_table(acc.drop(columns="lengths")).index.tolist() == [(3, "same")]


def test_example_rows_round_trip_to_the_same_html():
    e = dict(text="1+2=\n3", values=[None, None, None, None, 0.25, 0.9], critical=[5], correct=True)
    rows = plots.example_rows(e, level=3, seed=0, example=1)
    assert len(rows) == 6 and rows.example.eq(1).all() and rows.critical.tolist() == [False] * 5 + [True] and rows.level.eq(3).all()
    assert np.isnan(rows.certainty[0]) and rows.certainty[5] == 0.9
    assert plots.render_example_rows(rows.sample(frac=1, random_state=0), "t") == plots.render_html(
        e["text"], e["values"], e["critical"], "t")


def test_duration_never_reads_zero_minutes():
    assert plots.duration(14.2) == "14 seconds" and plots.duration(89) == "89 seconds"
    assert plots.duration(138) == "2.3 minutes"
    assert plots.duration(1.2) == "1 second" and plots.duration(0.2) == "under a second"


def test_gap_tally_counts_signs_only_where_the_interval_excludes_zero():
    g = pd.DataFrame(dict(a="prioritized", ci_low=[0.01, -0.02, -0.05], ci_high=[0.05, 0.03, -0.01]))
    assert plots.gap_tally(g) == "prioritized higher at 1 of 3 coefficients, lower at 1, no difference detected at 1"


def test_plot_exponent_draws_alpha_zero_left_of_the_others_one_line_per_form_and_temperature():
    gaps = pd.DataFrame(dict(certainty=["max_prob"] * 3 + ["entropy"], ref_temperature=[1.0, 1.0, 1.0, 4.0],
                             alpha=[0.0, 10.0, 1000.0, 150.0], mean=[0.0, 0.02, -0.01, 0.03],
                             half_width=[0.01, 0.02, float("nan"), 0.01]))
    ax = plots.plot_exponent(gaps, ax=plt.figure().gca())
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # an errorbar's data line
    assert sorted(lines) == ["entropy, T = 4", "max_prob, T = 1"]
    xs = list(lines["max_prob, T = 1"].get_xdata())
    assert xs[0] < 10 and xs[1:] == [10, 1000]
    assert list(lines["max_prob, T = 1"].get_ydata()) == pytest.approx([0.0, 2.0, -1.0])  # points
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "10", "150", "1000"]


def test_plot_exponent_curves_draw_the_standard_runs_in_every_panel():
    rows = [dict(kl=kl, certainty=c, ref_temperature=t, alpha=a, seed=s, episodes=e, acc_plus=0.1 + 0.01 * e / 32)
            for kl, c, t, a in (("standard", "max_prob", 1.0, 1000.0), ("prioritized", "max_prob", 1.0, 10.0),
                                ("prioritized", "max_prob", 1.0, 500.0), ("prioritized", "entropy", 4.0, 10.0))
            for s in range(2) for e in (0, 32)]
    fig = plots.plot_exponent_curves(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["entropy, T = 4", "max_prob, T = 1"]
    labels = [sorted(l.get_label() for l in ax.get_lines()) for ax in fig.axes]
    assert labels == [["alpha    10", "standard"], ["alpha    10", "alpha   500", "standard"]]


def test_curves_grid_wraps_one_row_of_panels_and_keeps_the_given_colours():
    rows = [dict(panel=p, curve=c, seed=s, episodes=e, acc_plus=0.1 + 0.01 * e / 32)
            for p in "abcde" for c in ("x", "y") for s in range(2) for e in (0, 32)]
    palette = {"x": "#000000", "y": "#ff0000"}
    fig = plots.plot_curves_grid(pd.DataFrame(rows), {"acc_plus": "plus-1"}, col="panel", hue="curve",
                                 palette=palette, wrap=2)
    assert [ax.get_title() for ax in fig.axes] == list("abcde")  # 3 rows of 2, the sixth slot removed
    assert [ax.get_subplotspec().rowspan.start for ax in fig.axes] == [0, 0, 1, 1, 2]
    assert {l.get_label(): l.get_color() for l in fig.axes[4].get_lines()} == palette


def test_plot_exponent_curves_colour_alpha_in_order_on_a_sequential_scale():
    rows = [dict(kl=kl, certainty="max_prob", ref_temperature=1.0, alpha=a, seed=s, episodes=e, acc_plus=0.1)
            for kl, a in (("standard", 0.0), ("prioritized", 10.0), ("prioritized", 150.0), ("prioritized", 1000.0))
            for s in range(2) for e in (0, 32)]
    fig = plots.plot_exponent_curves(pd.DataFrame(rows))
    colour = {l.get_label(): l.get_color() for l in fig.axes[0].get_lines()}
    viridis = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, 3))
    assert [colour[f"alpha {a:>5g}"] for a in (10, 150, 1000)] == [matplotlib.colors.to_hex(c) for c in viridis]
    assert colour["standard"] not in [colour[f"alpha {a:>5g}"] for a in (10, 150, 1000)]


def test_learning_curves_label_the_metric_in_words():
    rows = [dict(kl="standard", seed=s, episodes=e, acc_plus=0.1, some_metric=0.2) for s in range(2) for e in (0, 32)]
    assert plots.plot_learning_curves(pd.DataFrame(rows), ax=plt.figure().gca()).get_ylabel() == "plus-k accuracy"
    ax = plots.plot_learning_curves(pd.DataFrame(rows), y="some_metric", ax=plt.figure().gca())
    assert ax.get_ylabel() == "some metric"


def test_plot_means_draws_t_intervals():
    from scipy import stats
    f = pd.DataFrame(dict(digits=[1, 1, 1, 2, 2, 2, 1], fraction=[0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.9],
                          split=["a"] * 6 + ["b"]))
    ax = plots.plot_means(f, x="digits", y="fraction", hue="split", ax=plt.figure().gca())
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() == p.get_height())
    assert heights == [0.3, 0.5, 0.9]  # two groups of a, one of b (b has no digits = 2 bar)
    # the whisker of (1, a): mean 0.3, sd 0.1, n 3 -> half-width t(0.975, 2) * 0.1 / sqrt(3)
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    segments = [seg for c in ax.collections for seg in c.get_segments() if len(seg) == 2]
    spans = sorted(round(float(seg[1][1] - seg[0][1]), 6) for seg in segments)
    assert round(2 * half, 6) in spans and 0.0 in spans  # (2, a) has sd 0: a zero-length whisker
    assert isinstance(ax.yaxis.get_major_formatter(), matplotlib.ticker.PercentFormatter)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]


def test_table_html_is_deterministic_and_wraps_nothing_away():
    f = pd.DataFrame(dict(kl=["standard", "prioritized"], gain=["+1.0 [-0.5, +2.5]", "+3.0 [+1.0, +5.0]"], n=[3, 3]))
    html = plots.table_html(f)
    assert html == plots.table_html(f.copy())  # no random ids: nbval compares it
    assert 'class="dataframe critkl-table"' in html and "<th>0</th>" not in html  # no index column
    assert "<th>0</th>" in plots.table_html(f, index=True)
    assert html.count("<tr") == 3 and "+3.0 [+1.0,\u00a0+5.0]" in html


def _two_method_outcomes():
    """reinforce: prioritized 5 points above standard at both betas (3 seeds, a spread of 1 point); grpo: equal."""
    from critkl.analysis import run_outcomes
    rows = []
    for method, lift in (("reinforce", 0.05), ("grpo", 0.0)):
        for kl, betas in (("none", [0.0]), ("standard", [0.05, 1.0]), ("prioritized", [0.05, 1.0])):
            for beta in betas:
                for s in range(3):
                    final = 0.3 + 0.01 * s + (lift if kl == "prioritized" else 0) - (0.1 if beta == 1.0 else 0)
                    for r, acc in enumerate([0.2, final]):
                        rows.append(dict(method=method, kl=kl, beta=beta, seed=s, pretrain_seed=0, round=r,
                                         episodes=32 * r, acc_plus=acc, acc_comfort=0.9, p_critical_mean=0.5,
                                         mean_kl=np.nan if kl == "none" else (0.01 if beta == 1.0 else 0.04) * (s + 1)))
    return run_outcomes(pd.DataFrame(rows))


def test_method_verdicts_tally_the_paired_gaps_per_method():
    v = plots.method_verdicts(_two_method_outcomes()).set_index("method")
    assert list(v.index) == ["grpo", "reinforce"] and v.loc["reinforce", "runs"] == 15
    # reinforce: +5.0 points at both betas, every pair the same: both intervals exclude 0
    assert v.loc["reinforce", "final gain, prioritized - standard"] == \
        "prioritized higher at 2 of 2 coefficients, lower at none, no difference detected at none"
    assert v.loc["reinforce", "largest final-gain gap"].startswith("beta ") and "+5.0" in v.loc["reinforce", "largest final-gain gap"]
    # grpo: a zero gap at every pair (a zero-width interval at 0 is no difference)
    assert v.loc["grpo", "final gain, prioritized - standard"].endswith("lower at none, no difference detected at 2")
    # at equal mean KL: the prioritized points sit exactly on the standard curve's x values, 5 points above it
    assert v.loc["reinforce", "at equal mean KL (final gain)"] == (
        "+5.0 to +5.0 points from the standard curve; above it at 2 of the 2 coefficients inside its range")
    few = plots.method_verdicts(_two_method_outcomes(), min_pairs=4)
    assert (few["final gain, prioritized - standard"] == "fewer than 4 pairs").all()


def test_plot_frontier_by_method_draws_one_panel_per_method():
    fig = plots.plot_frontier_by_method(_two_method_outcomes())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["grpo (3 RL seeds)", "reinforce (3 RL seeds)"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    for ax in fig.axes:  # minor labels (2 and 5 of a decade) only where the axis spans about one decade
        low, high = ax.get_xlim()
        minor = isinstance(ax.xaxis.get_minor_formatter(), matplotlib.ticker.NullFormatter)
        assert minor == (high > 15 * low)
    assert all(sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["prioritized", "standard"] for ax in fig.axes)


def test_table_html_breaks_between_mean_and_interval_only():
    f = pd.DataFrame({"final_gain": ["+1.0 [-0.5, +2.5]"], "runs": [3]})
    html = plots.table_html(f)
    assert "<th>final gain</th>" in html and "+1.0 [-0.5,\u00a0+2.5]" in html


def test_equal_span_in_words():
    from critkl.plots import equal_span
    d = pd.DataFrame(dict(difference=[0.02, -0.01, float("nan")]))
    assert equal_span(d) == "-1.0 to +2.0 points from the standard curve; above it at 1 of the 2 coefficients inside its range"
    assert equal_span(d.iloc[2:]) == "outside the standard curve's range (no coefficient to compare)"
