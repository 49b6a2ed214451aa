import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

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
    assert plots.plot_table1(t) is not None


def test_render_measured():
    from critkl import task
    text = task.full_text(12, 345)
    df = pd.DataFrame([dict(problem=0, a=12, b=345, index=i, p_correct=0.5, critical=i == 30)
                       for i in range(len(task.prompt(12, 345)), len(text))])
    html = plots.render_measured(df, 0)
    assert "outline" in html and "12+345" in html
