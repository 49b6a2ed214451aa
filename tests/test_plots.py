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
    # one row per generation per certainty kind (critical.certainty_delta): 2 x 2 x 2 = 8 points, 2 colours
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
