import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from critkl import analysis
from critkl.analysis import (diagnosis_advantages, episodes_to_threshold, gather_runs, mean_ci, paired_gap,
                             summarize, summary_tables, t_quantile)


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
    # seed 0 gains 0, 0.05, 0.1 (0.09999999999999998 in floats), 0.3: first at 64; seed 1 gains at most 0.08
    assert t.seed.tolist() == [0, 1] and t.start.tolist() == [0.2, 0.4]
    assert t.episodes_to_threshold.iloc[0] == 64 and math.isnan(t.episodes_to_threshold.iloc[1])
    # absolute: first acc >= 0.45 is 0.5 at 96 (seed 0) and 0.45 at 32 (seed 1)
    a = episodes_to_threshold(m, 0.45, relative_to_start=False)
    assert a.episodes_to_threshold.tolist() == [96, 32]
    # shuffled rows and a second grouping column: same answer per run
    m2 = pd.concat([m.assign(kl="x"), m.assign(kl="y", acc_plus=m.acc_plus + 0.2)]).sample(frac=1, random_state=0)
    t2 = episodes_to_threshold(m2, 0.1, group=("kl", "seed"))
    assert t2.kl.tolist() == ["x", "x", "y", "y"] and t2.episodes_to_threshold.iloc[2] == 64


def _fake_run(home, name, cfg: dict, rows: list[dict]):
    d = home / "rl" / name
    d.mkdir(parents=True)
    (d / "config.rl.json").write_text(json.dumps(cfg))
    pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)


def test_gather_runs(tmp_path):
    home = tmp_path / "h"
    _fake_run(home, "N3-plus1-standard-tiny-s0-aaa", dict(kl="standard", lr=0.5, reward="binary"),
              [dict(round=0, episodes=0, acc_plus=0.1, kl="standard"), dict(round=1, episodes=4, acc_plus=0.2, kl="standard")])
    _fake_run(home, "N2-plus1-none-tiny-s1-bbb", dict(kl="none"), [dict(round=0, episodes=0, acc_plus=0.3, kl="none")])
    _fake_run(home, "N3-plus1-none-tiny-s0-ccc.partial", dict(kl="none"), [dict(round=0, acc_plus=0.0)])
    (home / "rl" / "N3-empty").mkdir()
    df = gather_runs(home)
    assert sorted(df.run.unique()) == ["N2-plus1-none-tiny-s1-bbb", "N3-plus1-standard-tiny-s0-aaa"]
    assert len(df) == 3
    std = df[df.run.str.startswith("N3")]
    assert std.lr.tolist() == [0.5, 0.5] and std.reward.tolist() == ["binary"] * 2
    assert df[df.run.str.startswith("N2")].reward.tolist() == ["ternary"]  # omitted field -> its default
    assert gather_runs(home, level=3).run.unique().tolist() == ["N3-plus1-standard-tiny-s0-aaa"]
    assert gather_runs(home, since="2999-01-01").empty
    assert gather_runs(tmp_path / "nothing").empty


def test_gather_runs_default_home(_home):
    _fake_run(_home, "N3-x", dict(kl="none"), [dict(round=0, acc_plus=0.5)])
    assert gather_runs().run.tolist() == ["N3-x"]


def test_summary_tables_from_metrics(tmp_path):
    rows = []
    # 2 seeds; at 32 episodes prioritized 0.5 / 0.4, standard 0.3 / 0.3: gap 0.2, 0.1 -> mean +15.0 points;
    # sd 0.070711, se 0.05, t(0.975, 1) = 12.706205 -> half width 0.635310 = 63.5 points
    for seed, (p, s) in enumerate([(0.5, 0.3), (0.4, 0.3)]):
        for kl, end in (("prioritized", p), ("standard", s)):
            rows += [dict(kl=kl, seed=seed, round=0, episodes=0, acc_plus=0.3, acc_comfort=1.0, p_critical_mean=0.9),
                     dict(kl=kl, seed=seed, round=1, episodes=32, acc_plus=end, acc_comfort=1.0, p_critical_mean=0.95)]
    (tmp_path / "kl_N3_seeds5").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "kl_N3_seeds5" / "metrics.csv", index=False)
    md = summary_tables(tmp_path)
    assert "gap prioritized - standard at 32 episodes: +15.0 points (95 % CI ± 63.5, 2 seeds; per seed +20.0, +10.0)" in md
    # prioritized at 32: [0.5, 0.4] -> 45.0 ± 63.5 %; seeds gaining 10 points: seed 0 (+0.2) and seed 1 (+0.1)
    assert "| prioritized | 30.0 ± 0.0 % | 45.0 ± 63.5 % |" in md
    assert "| prioritized | 2/2 | 32, 32 |" in md and "| standard | 0/2 | -, - |" in md
    assert "P(correct) at tracked critical tokens, start -> end: prioritized 0.900 -> 0.950" in md
    assert summary_tables(tmp_path / "missing") == ""


def test_diagnosis_advantages_hand_computed():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    correct = torch.tensor([True, False, False, False])
    assert diagnosis_advantages(mask, correct, "successes").tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert diagnosis_advantages(mask, correct, "failures").tolist() == [[0, 0, 0], [-1, -1, -1], [-1, 0, 0], [-1, -1, 0]]
    # ternary R = +1, -1, -1, -1: mean -0.5 -> R - mean = 1.5, -0.5, -0.5, -0.5 on each episode's tokens
    assert diagnosis_advantages(mask, correct, "centred").tolist() == [[1.5, 1.5, 0], [-0.5, -0.5, -0.5],
                                                                       [-0.5, 0, 0], [-0.5, -0.5, 0]]
    with pytest.raises(ValueError, match="mode"):
        diagnosis_advantages(mask, correct, "all")


def test_advantage_diagnosis_runs(tiny_checkpoint):
    df = analysis.advantage_diagnosis(tiny_checkpoint, modes=("failures",), passes=1, lr=1e-2, n_episodes=4,
                                      n_tracked=2)
    assert df["pass"].tolist() == [0, 1] and df["mode"].tolist() == ["failures"] * 2
    assert df.p_critical.between(0, 1).all() and df.p_n_copy.between(0, 1).all()
    if df.successes.iloc[0] < 4:  # some failed episode was pushed down at lr 1e-2: the model moved
        assert df.p_critical.iloc[1] != df.p_critical.iloc[0]


def test_kl_experiment_writes_all_runs(tiny_checkpoint, tmp_path):
    small = dict(rounds=1, eval_plus=2, eval_comfort=0, track_critical=1)
    m, c = analysis.kl_experiment(tiny_checkpoint, seeds=(0,), variants=("none", "prioritized"), preset="tiny",
                                  out=tmp_path / "out", **small)
    # 2 variants x (round 0 + 1 round)
    assert list(zip(m.kl, m["round"])) == [("none", 0), ("none", 1), ("prioritized", 0), ("prioritized", 1)]
    assert pd.read_csv(tmp_path / "out" / "metrics.csv").shape == m.shape
    assert set(c.kl) == {"none", "prioritized"} and "n_copy" in set(c.name)  # the trainer tracks the Appendix-B site
    assert pd.read_csv(tmp_path / "out" / "critical.csv").shape == c.shape
    again, _ = analysis.kl_experiment(tiny_checkpoint, seeds=(0,), variants=("none",), preset="tiny", **small)
    none = m[m.kl == "none"].dropna(axis=1, how="all").reset_index(drop=True)
    pd.testing.assert_frame_equal(again.dropna(axis=1, how="all"), none)  # the cached run, same numbers
