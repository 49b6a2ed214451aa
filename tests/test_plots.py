import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from critkl import plots  # noqa: E402


def test_learning_curves_and_tracking_draw():
    m = pd.DataFrame(dict(episodes=[0, 32, 0, 32], acc_plus=[0.0, 0.1, 0.0, 0.3], kl=["standard"] * 2 + ["prioritized"] * 2))
    ax = plots.plot_learning_curves(m)
    assert ax.get_xlabel() == "training episodes" and len(ax.get_lines()) >= 2
    c = pd.DataFrame(dict(episodes=[0, 32] * 2, p_correct=[0.1, 0.2, 0.1, 0.5], kl=["standard"] * 2 + ["prioritized"] * 2,
                          step=1, operand=1, name="n+1_comma"))
    g = plots.plot_critical_tracking(c)
    assert len(g.axes) == 1
    d = pd.DataFrame(dict(digits=[1, 2, 3], accuracy=[1.0, 0.5, 0.0]))
    assert plots.plot_accuracy_by_digits(d).get_ylabel() == "exact match"
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
