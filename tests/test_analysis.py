import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from critkl import analysis
from critkl.analysis import auc, episodes_to_threshold, mean_ci, paired_gap, summarize, t_quantile


def test_t_quantile_is_the_exact_t():
    assert t_quantile(0.95, 3) == pytest.approx(3.182446, abs=1e-6)
    assert t_quantile(0.95, 1) == pytest.approx(12.706205, abs=1e-6)
    assert t_quantile(0.90, 3) == pytest.approx(2.353363, abs=1e-6)
    assert t_quantile(0.95, 1000) == pytest.approx(1.962339, abs=1e-6)  # not 1.96: no normal fallback
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.95, 0)


def test_mean_ci_hand_computed():
    # x = [1, 2, 3, 4]: mean 2.5; sd = sqrt((1.5^2 + 0.5^2 + 0.5^2 + 1.5^2) / 3) = sqrt(5/3) = 1.290994;
    # se = sd / sqrt(4) = 0.645497; t(0.975, 3) = 3.182446 -> half width 3.182446 * 0.645497 = 2.054260
    mean, half, n = mean_ci([1, 2, 3, 4])
    assert (mean, n) == (2.5, 4) and half == pytest.approx(2.054260, abs=1e-6)
    # 90 %: t(0.95, 3) = 2.353363 -> 2.353363 * 0.645497 = 1.519090
    assert mean_ci([1, 2, 3, 4], 0.90)[1] == pytest.approx(1.519090, abs=1e-6)
    # NaN dropped: [1, 3]: mean 2, sd sqrt(2), se 1, t(0.975, 1) = 12.706205
    mean, half, n = mean_ci([1.0, np.nan, 3.0])
    assert (mean, n) == (2.0, 2) and half == pytest.approx(12.706205, abs=1e-6)
    mean, half, n = mean_ci([5.0, np.nan])
    assert (mean, n) == (5.0, 1) and math.isnan(half)
    mean, half, n = mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)


def test_summarize_hand_computed():
    df = pd.DataFrame(dict(g=["x"] * 4 + ["y"], v=[1.0, 2.0, 3.0, 4.0, 10.0]))
    s = summarize(df, "g", "v")
    assert list(s.columns) == ["g", "n", "mean", "ci_low", "ci_high", "half_width"]
    x, y = s.iloc[0], s.iloc[1]
    # group x = [1, 2, 3, 4]: 2.5 +/- 2.054260 (see test_mean_ci_hand_computed)
    assert (x.g, x.n, x["mean"]) == ("x", 4, 2.5)
    assert (x.ci_low, x.ci_high) == (pytest.approx(0.445740, abs=1e-6), pytest.approx(4.554260, abs=1e-6))
    assert (y.n, y["mean"]) == (1, 10.0) and math.isnan(y.half_width)
    two = summarize(df.assign(h=[0, 0, 1, 1, 0]), ["g", "h"], "v")
    # (x, 0) = [1, 2]: mean 1.5, sd 0.707107, se 0.5, t(0.975, 1) 12.706205 -> 6.353102
    assert list(two.n) == [2, 2, 1] and two.half_width.iloc[0] == pytest.approx(6.353102, abs=1e-6)
    whole = summarize(df, [], "v")
    assert whole.n.tolist() == [5] and whole["mean"].iloc[0] == 4.0  # (1 + 2 + 3 + 4 + 10) / 5


def test_paired_gap_hand_computed():
    # seeds 0-2 in both variants, seed 3 only in a, seed 4 only in b (left out):
    # a - b = 0.5 - 0.3, 0.6 - 0.5, 0.4 - 0.4 = 0.2, 0.1, 0.0 -> mean 0.1; sd 0.1; se 0.1 / sqrt(3) = 0.057735;
    # t(0.975, 2) = 4.302653 -> half width 0.248414
    df = pd.DataFrame(dict(seed=[0, 1, 2, 3, 0, 1, 2, 4], kl=["a"] * 4 + ["b"] * 4,
                           acc=[0.5, 0.6, 0.4, 0.7, 0.3, 0.5, 0.4, 0.9], level=[3] * 8))
    g = paired_gap(df, "acc", "kl", "a", "b")
    assert g.n.tolist() == [3] and g["mean"].iloc[0] == pytest.approx(0.1)
    assert g.half_width.iloc[0] == pytest.approx(0.248414, abs=1e-6)
    assert g.ci_low.iloc[0] == pytest.approx(0.1 - 0.248414, abs=1e-6)
    # by a column: level 2 has one pair (0.8 - 0.6 = 0.2), no interval
    more = pd.concat([df, pd.DataFrame(dict(seed=[0, 0], kl=["a", "b"], acc=[0.8, 0.6], level=[2, 2]))])
    by = paired_gap(more, "acc", "kl", "a", "b", by=("level",))
    assert by.level.tolist() == [2, 3] and by.n.tolist() == [1, 3]
    assert by["mean"].iloc[0] == pytest.approx(0.2) and math.isnan(by.half_width.iloc[0])
    # b - a is the mirror image
    assert paired_gap(df, "acc", "kl", "b", "a")["mean"].iloc[0] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="several rows"):
        paired_gap(pd.concat([df, df]), "acc", "kl", "a", "b")


def test_episodes_to_threshold_hand_computed():
    m = pd.DataFrame(dict(seed=[0] * 4 + [1] * 4, round=[0, 1, 2, 3] * 2, episodes=[0, 32, 64, 96] * 2,
                          acc_plus=[0.2, 0.25, 0.3, 0.5, 0.4, 0.45, 0.42, 0.48]))
    t = episodes_to_threshold(m, 0.1)
    # seed 0 gains 0, 0.05, 0.1 (0.09999999999999998 in floats), 0.3: first at 64; seed 1 gains at most 0.08,
    # so it is censored at its last observation, 96 episodes
    assert t.seed.tolist() == [0, 1] and t.start.tolist() == [0.2, 0.4]
    assert t.episodes_to_threshold.iloc[0] == 64 and math.isnan(t.episodes_to_threshold.iloc[1])
    assert t.censored.tolist() == [False, True]
    assert math.isnan(t.censored_at.iloc[0]) and t.censored_at.iloc[1] == 96
    # absolute: first acc >= 0.45 is 0.5 at 96 (seed 0) and 0.45 at 32 (seed 1)
    a = episodes_to_threshold(m, 0.45, relative_to_start=False)
    assert a.episodes_to_threshold.tolist() == [96, 32]
    # shuffled rows and a second grouping column: same answer per run
    m2 = pd.concat([m.assign(kl="x"), m.assign(kl="y", acc_plus=m.acc_plus + 0.2)]).sample(frac=1, random_state=0)
    t2 = episodes_to_threshold(m2, 0.1, group=("kl", "seed"))
    assert t2.kl.tolist() == ["x", "x", "y", "y"] and t2.episodes_to_threshold.iloc[2] == 64


def test_episodes_to_threshold_censored_at_each_runs_own_end():
    # seed 0 stops after 64 episodes without reaching +0.5, seed 1 after 128: each is censored at its own end
    m = pd.DataFrame(dict(seed=[0, 0, 0, 1, 1, 1, 1, 1], episodes=[0, 32, 64, 0, 32, 64, 96, 128],
                          acc_plus=[0.1, 0.2, 0.3, 0.1, 0.1, 0.2, 0.2, 0.3]))
    t = episodes_to_threshold(m, 0.5)
    assert t.censored.tolist() == [True, True] and t.censored_at.tolist() == [64, 128]
    assert t.episodes_to_threshold.isna().all()


def test_auc_hand_computed():
    m = pd.DataFrame(dict(seed=[0] * 4 + [1] * 4, episodes=[0, 32, 64, 96] * 2,
                          acc_plus=[0.2, 0.25, 0.3, 0.5, 0.4, 0.45, 0.42, 0.48]))
    a = auc(m)
    # seed 0: trapezoids 32 * (0.225 + 0.275 + 0.4) = 28.8, over a span of 96 episodes -> 0.3
    # seed 1: 32 * (0.425 + 0.435 + 0.45) = 41.92 -> 41.92 / 96 = 0.436667
    assert a.seed.tolist() == [0, 1] and a.n_points.tolist() == [4, 4]
    assert a.auc.tolist() == pytest.approx([0.3, 41.92 / 96])
    # uneven spacing and shuffled rows: 0 -> 1 over 10 episodes, then flat at 1 for 30: (5 + 30) / 40 = 0.875
    u = pd.DataFrame(dict(seed=[2, 2, 2], episodes=[40, 0, 10], acc_plus=[1.0, 0.0, 1.0]))
    assert auc(u).auc.iloc[0] == pytest.approx(0.875)
    # a constant curve has auc equal to the constant, whatever its length
    flat = pd.DataFrame(dict(seed=[0, 0], episodes=[0, 500], acc_plus=[0.3, 0.3]))
    assert auc(flat).auc.iloc[0] == pytest.approx(0.3)
    # NaN rows left out; one point: no area
    gap = pd.DataFrame(dict(seed=[0, 0, 0, 1], episodes=[0, 32, 64, 0], acc_plus=[0.0, np.nan, 0.4, 0.5]))
    g = auc(gap)
    assert g.auc.iloc[0] == pytest.approx(0.2) and g.n_points.tolist() == [2, 1] and math.isnan(g.auc.iloc[1])
    # by a second column: one run per (kl, seed)
    two = pd.concat([m.assign(kl="x"), m.assign(kl="y", acc_plus=m.acc_plus + 0.1)])
    assert auc(two, group=("kl", "seed")).auc.tolist() == pytest.approx([0.3, 41.92 / 96, 0.4, 41.92 / 96 + 0.1])
    with pytest.raises(ValueError, match="several rows per episodes"):
        auc(two)


# ---- the frontier: per-run outcomes, table, paired gaps (hand-computed values)
def _run(kl, beta, seed, accs, comfort=(0.9, 0.85, 0.8), kls=(float("nan"), 0.2, 0.4), method="reinforce"):
    return pd.DataFrame(dict(method=method, kl=kl, beta=beta, seed=seed, pretrain_seed=0, round=range(len(accs)),
                             episodes=[32 * r for r in range(len(accs))], acc_plus=accs, acc_comfort=comfort,
                             mean_kl=kls, p_critical_mean=[0.5, 0.6, 0.9]))


def test_run_outcomes_hand_computed():
    from critkl.analysis import run_outcomes
    m = pd.concat([_run("standard", 0.2, 0, [0.20, 0.25, 0.35]), _run("standard", 0.2, 1, [0.20, 0.22, 0.27])])
    o = run_outcomes(m).set_index("seed")
    assert o.loc[0, "gain"] == pytest.approx(0.15) and o.loc[1, "gain"] == pytest.approx(0.07)
    # trapezoids: ((0.20 + 0.25) / 2 * 32 + (0.25 + 0.35) / 2 * 32) / 64 = 0.2625, minus the start 0.20
    assert o.loc[0, "auc_gain"] == pytest.approx(0.0625)
    assert o.loc[0, "episodes_to_5"] == 32 and o.loc[0, "episodes_to_10"] == 64 and not o.loc[0, "censored_10"]
    assert np.isnan(o.loc[1, "episodes_to_10"]) and o.loc[1, "censored_10"] and o.loc[1, "episodes_to_5"] == 64
    assert o.loc[0, "comfort_change"] == pytest.approx(-0.1) and o.loc[0, "critical_change"] == pytest.approx(0.4)
    assert o.loc[0, "mean_kl"] == pytest.approx(0.3)  # rounds 1 and 2 only: round 0 is before training
    assert np.isnan(o.loc[0, "weight_other"])  # these metrics have no weight columns
    w = run_outcomes(m.assign(weight_other=[1.0, 0.2, 0.4] * 2, weight_critical=[1.0, 0.0, 0.1] * 2)).iloc[0]
    assert w.weight_other == pytest.approx(0.3) and w.weight_critical == pytest.approx(0.05)  # rounds 1 and 2
    # halves around the middle evaluation (round 1 of 0..2): 0.25 - 0.20, then 0.35 - 0.25
    assert o.loc[0, "early_gain"] == pytest.approx(0.05) and o.loc[0, "late_gain"] == pytest.approx(0.10)
    # a plateau: all of the gain in the first half (middle of 5 evaluations: round 2)
    flat = run_outcomes(pd.DataFrame(dict(kl="standard", beta=0.2, seed=0, round=range(5), episodes=range(0, 160, 32),
                                          acc_plus=[0.1, 0.2, 0.3, 0.3, 0.3], acc_comfort=0.9))).iloc[0]
    assert flat.early_gain == pytest.approx(0.2) and flat.late_gain == pytest.approx(0.0)
    assert flat.early_gain + flat.late_gain == pytest.approx(flat.gain)


def test_collapse_is_the_comfort_zone_lost_not_a_failure_to_learn():
    from critkl.analysis import collapsed, method_table, run_outcomes
    m = pd.concat([_run("none", 0.2, 0, [0.20, 0.05, 0.0], comfort=(0.9, 0.5, 0.44)),  # 0.44 < 0.5 * 0.9
                   _run("none", 0.2, 1, [0.20, 0.10, 0.0], comfort=(0.9, 0.6, 0.46)),  # 0.46 > 0.45: learned nothing
                   _run("none", 0.2, 2, [0.20, 0.20, 0.20], comfort=(0.9, 0.9, 0.9)),
                   _run("standard", 0.2, 0, [0.20, 0.20, 0.10], comfort=(0.8, 0.5, 0.41)),
                   _run("standard", 0.2, 0, [0.20, 0.20, 0.30], method="a2c", comfort=(0.8, 0.1, 0.0))])
    o = run_outcomes(m)
    key = list(zip(o.method, o.kl, o.seed))
    assert dict(zip(key, collapsed(o))) == {("a2c", "standard", 0): True, ("reinforce", "none", 0): True,
                                            ("reinforce", "none", 1): False, ("reinforce", "none", 2): False,
                                            ("reinforce", "standard", 0): False}
    assert dict(zip(key, o.comfort_start))[("reinforce", "none", 0)] == 0.9
    assert dict(zip(key, o.comfort_final))[("reinforce", "none", 1)] == 0.46
    assert collapsed(o, below=0.1).sum() == 1  # only the a2c run ended below a tenth of its start
    t = method_table(o).set_index(["method", "kl"])
    assert t.loc[("reinforce", "none"), "collapsed"] == 1 and t.loc[("reinforce", "none"), "runs"] == 3
    assert t.loc[("reinforce", "standard"), "collapsed"] == 0 and t.loc[("a2c", "standard"), "collapsed"] == 1
    assert t.loc[("reinforce", "none"), "gain"] == pytest.approx(np.mean([-0.2, -0.2, 0.0]))


def test_frontier_table_counts_censored_runs_and_hides_an_unobserved_median():
    from critkl.analysis import frontier_table, run_outcomes
    m = pd.concat([_run("standard", 0.2, s, a) for s, a in
                   enumerate([[0.2, 0.25, 0.35], [0.2, 0.22, 0.27], [0.2, 0.21, 0.22]])])
    t = frontier_table(run_outcomes(m)).iloc[0]
    assert t.runs == 3 and t.reached_10 == 1 and t.reached_5 == 2
    assert t.median_episodes_5 == 64 and np.isnan(t.median_episodes_10)  # 2 of 3 never reach +10
    gains = [0.15, 0.07, 0.02]
    half = stats.t.ppf(0.975, 2) * np.std(gains, ddof=1) / np.sqrt(3)
    assert t.gain == pytest.approx(np.mean(gains)) and t.gain_high - t.gain == pytest.approx(half)


def test_frontier_gaps_pair_runs_without_kl_with_every_beta():
    from critkl.analysis import frontier_gaps, run_outcomes
    parts = []
    for s in range(3):
        parts.append(_run("none", 0.2, s, [0.2, 0.3, 0.4 + 0.01 * s]))
        for beta, bump in ((0.05, 0.0), (1.0, -0.1)):
            parts.append(_run("standard", beta, s, [0.2, 0.25, 0.30 + bump]))
            parts.append(_run("prioritized", beta, s, [0.2, 0.25, 0.33 + bump + 0.01 * s]))
    outcomes = run_outcomes(pd.concat(parts))
    assert set(outcomes[outcomes.kl == "none"].beta) == {0.0}  # no KL is a coefficient of 0
    g = frontier_gaps(outcomes)
    ps = g[(g.a == "prioritized") & (g.b == "standard")].set_index("beta")
    assert ps.loc[0.05, "mean"] == pytest.approx(0.04) and ps.loc[0.05, "n"] == 3   # 0.03, 0.04, 0.05
    sn = g[(g.a == "standard") & (g.b == "none")].set_index("beta")
    assert sn.loc[1.0, "mean"] == pytest.approx(-0.21) and sn.loc[0.05, "n"] == 3   # none's runs at both betas


def test_slope_matches_hand_computed_least_squares_and_t_interval():
    # y = 1 + 2x + residuals (+0.1, -0.1, -0.1, +0.1): slope 2 exactly by symmetry of the residuals.
    x = [0.0, 1.0, 2.0, 3.0]
    y = [1.1, 2.9, 4.9, 7.1]
    out = analysis.slope(x, y)
    sxx = 5.0                      # sum (x - 1.5)^2
    b = (-1.5 * -2.9 + -0.5 * -1.1 + 0.5 * 0.9 + 1.5 * 3.1) / sxx
    resid = [yi - (4.0 + b * (xi - 1.5)) for xi, yi in zip(x, y)]
    se = (sum(r * r for r in resid) / 2 / sxx) ** 0.5
    assert out["n"] == 4 and out["slope"] == pytest.approx(b)
    assert out["ci_high"] - out["slope"] == pytest.approx(4.302653 * se, rel=1e-5)  # t quantile, df 2
    assert 0.99 < out["r"] <= 1.0
    # NaN pairs are dropped; fewer than 3 pairs or a constant x give NaN
    assert analysis.slope(x + [float("nan")], y + [1.0])["n"] == 4
    assert np.isnan(analysis.slope([1.0, 2.0], [1.0, 2.0])["slope"])
    assert np.isnan(analysis.slope([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["slope"])


def test_with_method_names_the_rl_preset_without_cpu_prefix():
    m = pd.DataFrame(dict(preset=["cpu-reinforce", "cpu-grpo", "paper"]))
    assert analysis.with_method(m).method.tolist() == ["reinforce", "grpo", "paper"]


def test_at_equal_interpolates_the_other_curve_on_log_x():
    t = pd.DataFrame(dict(kl=["standard"] * 2 + ["prioritized"] * 2, beta=[1.0, 0.01, 1.0, 0.01],
                          mean_kl=[0.001, 0.1, 0.01, 1.0], gain=[0.0, 0.2, 0.15, 0.3]))
    d = analysis.at_equal(t, "prioritized", "standard").set_index("beta")
    # x = 0.01 is halfway between 0.001 and 0.1 on a log scale: standard's gain there is 0.1
    assert d.loc[1.0, "y_b"] == pytest.approx(0.1) and d.loc[1.0, "difference"] == pytest.approx(0.05)
    assert np.isnan(d.loc[0.01, "y_b"])  # outside standard's range
    lin = analysis.at_equal(t, "prioritized", "standard", log_x=False).set_index("beta")
    assert lin.loc[1.0, "y_b"] == pytest.approx(0.2 * 0.009 / 0.099)
    # a one-run point (a coefficient whose sweep has just started) is not part of either curve
    runs = t.assign(runs=[10, 10, 10, 10])
    one = pd.concat([runs, pd.DataFrame(dict(kl=["standard"], beta=[0.001], mean_kl=[2.0], gain=[0.5], runs=[1]))])
    pd.testing.assert_frame_equal(analysis.at_equal(one, "prioritized", "standard"),
                                  analysis.at_equal(runs, "prioritized", "standard"))
    assert not np.isnan(analysis.at_equal(one, "prioritized", "standard", min_runs=1).set_index("beta").loc[0.01, "y_b"])


def test_with_variant_names_the_kl_the_certainty_and_the_policy_gradient_change():
    m = pd.DataFrame(dict(kl=["standard", "prioritized", "prioritized", "oracle", "standard", "standard", "none"],
                          certainty=["max_prob", "max_prob", "entropy", "max_prob", "max_prob", "max_prob", "entropy"],
                          top_entropy_quantile=[1.0, 1.0, 1.0, 1.0, 0.2, 1.0, 1.0],
                          advantage_weighting=["none"] * 5 + ["entropy", "none"]))
    assert analysis.with_variant(m).variant.tolist() == [
        "standard", "prioritized (max_prob)", "prioritized (entropy)", "oracle", "standard + forking 20 %",
        "standard + GTPO", "none"]
    assert analysis.with_variant(pd.DataFrame(dict(kl=["prioritized"]))).variant.tolist() == ["prioritized"]
    assert analysis.with_variant(m.iloc[:0]).variant.tolist() == []


def test_variant_gaps_pairs_every_variant_with_the_baseline_by_seed():
    o = pd.DataFrame(dict(variant=["standard"] * 3 + ["oracle"] * 3 + ["none"] * 2,
                          seed=[0, 1, 2, 0, 1, 2, 0, 2], pretrain_seed=[0, 1, 2, 0, 1, 2, 0, 2],
                          gain=[0.1, 0.2, 0.3, 0.2, 0.4, 0.3, 0.0, 0.1]))
    g = analysis.variant_gaps(o, "standard", values=("gain",))
    assert g.a.tolist() == ["none", "oracle"] and set(g.b) == {"standard"} and g.n.tolist() == [2, 3]
    none, oracle = g.iloc[0], g.iloc[1]
    assert none["mean"] == pytest.approx(-0.15)            # pairs (0: -0.1), (2: -0.2)
    d = np.array([0.1, 0.2, 0.0])                          # oracle - standard by seed
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert oracle["mean"] == pytest.approx(0.1) and oracle["half_width"] == pytest.approx(half)
    with pytest.raises(ValueError, match="baseline 'prioritized'"):
        analysis.variant_gaps(o, "prioritized")


def test_exponent_gaps_pair_each_prioritized_arm_with_the_standard_runs():
    from critkl.analysis import exponent_gaps
    rows = [dict(kl="standard", certainty="max_prob", ref_temperature=1.0, alpha=1000.0, seed=s, pretrain_seed=s % 3,
                 auc_gain=0.01 * s) for s in range(3)]
    rows += [dict(kl="prioritized", certainty=c, ref_temperature=t, alpha=a, seed=s, pretrain_seed=s % 3,
                  auc_gain=0.01 * s + bump) for c, t, a, bump in (("max_prob", 1.0, 150.0, 0.05),
                                                                   ("entropy", 4.0, 10.0, -0.02))
             for s in range(3) if not (c == "entropy" and s == 2)]  # the entropy arm lacks seed 2: 2 pairs
    g = exponent_gaps(pd.DataFrame(rows)).set_index("certainty")
    assert list(g.columns) == ["ref_temperature", "alpha", "n", "mean", "ci_low", "ci_high", "half_width", "weight_other"]
    assert g.weight_other.isna().all()  # these outcomes carry no weights
    assert g.loc["max_prob", "n"] == 3 and g.loc["max_prob", "mean"] == pytest.approx(0.05)
    assert g.loc["max_prob", "half_width"] == pytest.approx(0)  # the same gap on every seed
    assert g.loc["entropy", "n"] == 2 and g.loc["entropy", "mean"] == pytest.approx(-0.02)
    assert g.loc["entropy", "alpha"] == 10.0 and g.loc["entropy", "ref_temperature"] == 4.0
    # with weights: the arm's mean weight on the other states (0.5 and 0.0 per run -> 0.25)
    w = pd.DataFrame(rows).assign(weight_other=[1.0] * 3 + [0.5, 0.0, 0.5] + [0.0, 0.0])
    g = exponent_gaps(w).set_index("certainty")
    assert g.loc["max_prob", "weight_other"] == pytest.approx(1 / 3) and g.loc["entropy", "weight_other"] == 0.0


def test_time_to_mastery_is_the_first_step_with_every_comfort_length_at_the_threshold():
    from critkl.analysis import time_to_mastery

    def ev(ckpt, level, rows):  # rows: (step, seconds, accuracies of lengths 1..level+1)
        return pd.DataFrame([dict(checkpoint=ckpt, config="c", level=level, pretrain_seed=0, max_steps=30, minutes=9.0,
                                  step=s, seconds=sec, digits=d + 1, accuracy=a)
                             for s, sec, accs in rows for d, a in enumerate(accs)])
    evals = pd.concat([
        # length 3 of level 2 (N+1) never counts; step 20 has both comfort lengths >= 0.99 first
        ev("a", 2, [(10, 60.0, [1.0, 0.98, 0.0]), (20, 120.0, [0.99, 1.0, 0.0]), (30, 180.0, [1.0, 1.0, 0.5])]),
        ev("b", 2, [(10, 60.0, [1.0, 0.5, 0.0]), (30, 180.0, [0.9, 1.0, 0.0])]),   # never
    ], ignore_index=True)
    t = time_to_mastery(evals).set_index("checkpoint")
    assert t.loc["a", "step"] == 20 and t.loc["a", "minutes"] == pytest.approx(2.0)
    assert np.isnan(t.loc["b", "step"]) and np.isnan(t.loc["b", "minutes"])
    assert time_to_mastery(evals, threshold=0.98).loc[0, "step"] == 10
    assert set(t.total_minutes) == {9.0} and set(t.max_steps) == {30}
