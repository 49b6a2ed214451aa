"""Measurements at the critical tokens: teacher-forced probabilities, Table 1, Fig.-7 tracking, failure
sites, Figs. 1/5 samples."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from critkl import task
from critkl.config import ModelConfig
from critkl.critical import SITES, locate
from critkl.losses import certainty
from critkl.measure import (certainty_delta, classify_site, critical_probabilities, delta_certainty, failure_row,
                            failure_site_counts, failure_sites, first_divergence, generation_deltas, measure,
                            sampled_example, summarize, table1, teacher_forced, tracking_problems)
from critkl.model import build_model, load_checkpoint
from critkl.plots import render_html
from critkl.tokenizer import build_tokenizer, encode


@pytest.fixture(scope="module")
def tiny():
    tok = build_tokenizer()
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=1024), tok).eval(), tok


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_teacher_forced_rows_of_any_length_compute_what_they_would_alone(arch):
    """Right padding without a mask: each text of a batch of mixed lengths (not in length order) gets the
    logits of its own forward, in the order given, whatever the architecture's positions."""
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, n_layer=2, n_embd=32, n_head=2, n_positions=1024), tok).eval()
    problems = [(3395, 1791), (12, 5), (99999, 1), (7, 8), (12, 5)]
    for batch_size in (2, 64):
        tf = teacher_forced(model, tok, problems, batch_size=batch_size)
        assert len(tf) == len(problems)
        for (a, b), (ids, logits) in zip(problems, tf):
            full = torch.tensor([encode(tok, task.full_text(a, b))])
            with torch.no_grad():
                ref = model(input_ids=full).logits[0]
            assert ids.tolist() == full[0].tolist()
            assert torch.isnan(logits[0]).all()
            assert torch.allclose(logits[1:], ref[:-1], atol=1e-4)


def test_teacher_forced_equals_full_forward(tiny):
    model, tok = tiny
    problems = [(3395, 1791), (12, 5)]
    tf = teacher_forced(model, tok, problems)
    for (a, b), (ids, logits) in zip(problems, tf):
        full = torch.tensor([encode(tok, task.full_text(a, b))])
        with torch.no_grad():
            ref = model(input_ids=full).logits[0]
        assert torch.allclose(logits[1:], ref[:-1], atol=1e-4)
    df = measure(model, tok, problems, level=3, alpha=2.0)
    row = df[(df.problem == 0) & df.critical].iloc[0]
    _, lg = tf[0]
    p = torch.softmax(lg[row["index"]], -1)[encode(tok, row["char"])[0]].item()
    assert row["p_correct"] == pytest.approx(p, rel=1e-5)
    assert row["weight"] == pytest.approx(row["certainty"] ** 2, rel=1e-5)
    ent = measure(model, tok, problems, level=3, alpha=2.0, certainty="entropy")
    i = int(row["index"])
    assert ent.loc[row.name, "certainty"] == pytest.approx(certainty(lg[i:i + 1], 1.0, "entropy").item(), rel=1e-5)
    assert ent.loc[row.name, "certainty"] != pytest.approx(row["certainty"])
    s = summarize(df)
    assert set(s.critical) == {True, False}


# ---------------------------------------------------------------------------------------------------
# Failure sites
def test_first_divergence():
    assert first_divergence("abc", "abc") == -1
    assert first_divergence("abx", "abc") == 2
    assert first_divergence("ab", "abc") == 2     # stopped early
    assert first_divergence("abcd", "abc") == 3   # wrote past the end
    assert first_divergence("", "abc") == 0


def test_classify_site_on_a_known_scratchpad():
    a, b = 3395, 1791
    truth = task.scratchpad(a, b)
    site = lambda i: classify_site(a, b, 3, i)  # noqa: E731
    assert [site(i) for i in (0, 5, 10)] == ["header"] * 3                 # "\n<scratch>\n"
    assert [site(i) for i in (11, 15, 19)] == ["line 1"] * 3               # "[", "," and "]" of [3,3,9,5]
    assert site(16) == "appendix_b" and site(28) == "appendix_b"
    assert (site(17), site(18), site(29), site(30)) == ("critical:n+1_comma", "critical:n+1_digit",
                                                        "critical:n+1_comma", "critical:n+1_digit")
    end1 = truth.index("\n", 11)
    assert site(end1) == "line 1" and site(end1 + 1) == "line 2"          # a line's newline is its own
    assert site(truth.index("[3] + [1]")) == "line 4"
    assert site(truth.index("END")) == "line 5"                             # the END line is line 5
    assert site(truth.index("</scratch>")) == "answer" and site(len(truth) - 2) == "answer"
    assert site(len(truth) + 3) == "answer"
    # line 4 has critical characters only if steps reaches it: [3] + [1] is 1 digit, seen 0 -> n+1_digit
    assert classify_site(a, b, 3, truth.index("[3] + [1]") + 1, steps=4) == "critical:n+1_digit"


def test_failure_row_on_hand_made_texts():
    a, b = 3395, 1791
    truth = task.scratchpad(a, b)
    # recopying the last digit: "[3,3,5]" instead of "[3,3,9,5]"
    r = failure_row(truth[:16] + "5] + [1,7,9] , A=[]", a, b, 3)
    assert (r["index"], r["line"], r["site"], r["correct"]) == (16, 1, "appendix_b", False)
    assert (r["wrote"], r["truth"], r["before"]) == ("5] + [1,", "9,5] + [", "\n<scratch>\n[3,3,"[-16:])
    r = failure_row(truth[:17] + "] + [1,7,9]", a, b, 3)  # closing early: the paper's critical comma
    assert (r["index"], r["site"]) == (17, "critical:n+1_comma")
    assert failure_row(truth, a, b, 3) == dict(a=a, b=b, correct=True, index=-1, line=-1, site="none",
                                               before="", wrote="", truth="")
    wrong_answer = truth[:-2] + "7\n"  # "5 1 8 6" -> "5 1 8 7"
    r = failure_row(wrong_answer, a, b, 3)
    assert (r["index"], r["site"], r["correct"]) == (len(truth) - 2, "answer", False)


def test_failure_site_counts():
    df = pd.DataFrame(dict(correct=[True, True, False, False, False],
                           site=["none", "line 2", "appendix_b", "appendix_b", "line 1"]))
    c = failure_site_counts(df)
    assert c.site.tolist() == ["correct", "appendix_b", "line 1"] and c.n.tolist() == [2, 2, 1]
    # shares of the 3 failures: 2/3 and 1/3
    assert math.isnan(c.share.iloc[0]) and c.share.iloc[1:].tolist() == pytest.approx([2 / 3, 1 / 3])


def test_failure_sites_on_a_checkpoint(tiny_checkpoint):
    model, tok, _ = load_checkpoint(tiny_checkpoint)
    df = failure_sites(model, tok, level=2, n=6, seed=5)
    problems = task.Split("plus", 2, 1).sample(6, np.random.default_rng(5))
    assert list(zip(df.a, df.b)) == problems
    for r in df.itertuples():
        if r.index >= 0:
            assert r.site == classify_site(r.a, r.b, 2, r.index)
            assert r.truth == task.scratchpad(r.a, r.b)[r.index:r.index + 8] and r.wrote != r.truth
    assert failure_site_counts(df).n.sum() == 6


# ---------------------------------------------------------------------------------------------------
# Table 1: Delta-J
def test_delta_certainty_hand_computed():
    # d_i = c_i - mean of the others: 1 - (0.5 + 0) / 2 = 0.75; 0.5 - (1 + 0) / 2 = 0; 0 - (1 + 0.5) / 2 = -0.75
    d = delta_certainty(torch.tensor([1.0, 0.5, 0.0]))
    assert isinstance(d, torch.Tensor) and d.tolist() == [0.75, 0.0, -0.75]
    n = delta_certainty(np.array([1.0, 0.5, 0.0]))
    assert isinstance(n, np.ndarray) and n.tolist() == [0.75, 0.0, -0.75]
    # not c - mean(c): [0.2, 0.4] -> 0.2 - 0.4 = -0.2 and +0.2 (c - mean would give -0.1 and +0.1)
    assert delta_certainty(np.array([0.2, 0.4])) == pytest.approx([-0.2, 0.2])
    assert np.isnan(delta_certainty(np.array([0.7]))).all() and torch.isnan(delta_certainty(torch.tensor([0.7]))).all()
    with pytest.raises(ValueError, match="empty"):
        delta_certainty(np.array([]))
    with pytest.raises(ValueError, match="1-D"):
        delta_certainty(torch.zeros(2, 3))


def test_generation_deltas_hand_computed():
    # c = [1, 0.5, 0, 0.5], sum 2: d_i = c_i - (2 - c_i) / 3 = [2/3, 0, -2/3, 0]; position 2 critical:
    # critical -2/3; others (2/3 + 0 + 0) / 3 = 2/9, min 0; certainty critical 0, others (1 + 0.5 + 0.5) / 3
    g = generation_deltas(torch.tensor([1.0, 0.5, 0.0, 0.5]), [2])
    assert (g["n_tokens"], g["n_critical"]) == (4, 1)
    assert g["delta_critical"] == pytest.approx(-2 / 3) and g["delta_noncritical"] == pytest.approx(2 / 9)
    assert g["delta_noncritical_min"] == pytest.approx(0.0) and g["certainty_critical"] == 0.0
    assert g["certainty_noncritical"] == pytest.approx(2 / 3)
    none = generation_deltas([0.2, 0.4], [])
    assert math.isnan(none["delta_critical"]) and none["delta_noncritical"] == pytest.approx(0.0)


def test_table1_hand_computed():
    per_gen = pd.DataFrame(dict(
        certainty_kind=["max_prob"] * 3 + ["entropy"] * 3,
        delta_critical=[-0.3, -0.1, np.nan, -0.2, -0.2, -0.2],
        delta_noncritical=[0.01, 0.03, 0.02, 0.0, 0.0, 0.0],
        delta_noncritical_min=[-0.01, -0.02, -0.03, 0.0, 0.0, 0.0]))
    t = table1(per_gen)
    assert list(zip(t.certainty_kind, t.tokens)) == [
        ("max_prob", "critical"), ("max_prob", "non-critical"), ("max_prob", "non-critical (min.)"),
        ("entropy", "critical"), ("entropy", "non-critical"), ("entropy", "non-critical (min.)")]
    crit, non = t.iloc[0], t.iloc[1]
    # critical, max_prob: [-0.3, -0.1] (NaN left out): mean -0.2, sd 0.141421, se 0.1,
    # t(0.975, 1) = 12.706205 -> [-1.470620, 1.070620]
    assert (crit.n_generations, crit["mean"], crit.se) == (2, pytest.approx(-0.2), pytest.approx(0.1))
    assert (crit.ci_low, crit.ci_high) == (pytest.approx(-1.470620, abs=1e-6), pytest.approx(1.070620, abs=1e-6))
    # non-critical: [0.01, 0.03, 0.02]: mean 0.02, sd 0.01, se 0.005774, t(0.975, 2) = 4.302653 -> +/- 0.024841
    assert non["mean"] == pytest.approx(0.02) and non.se == pytest.approx(0.01 / np.sqrt(3))
    assert non.ci_high - non["mean"] == pytest.approx(0.024841, abs=1e-6)
    assert t.iloc[3]["se"] == pytest.approx(0.0, abs=1e-12) and t.iloc[3]["mean"] == pytest.approx(-0.2)


def test_certainty_delta_on_a_checkpoint(tiny_checkpoint):
    model, tok, _ = load_checkpoint(tiny_checkpoint)
    per_gen = certainty_delta(model, tok, level=2, extra_digits=1, n_generations=4, seed=0)
    assert len(per_gen) == 8 and per_gen.certainty_kind.tolist() == ["max_prob"] * 4 + ["entropy"] * 4
    assert per_gen.generation.tolist() == [0, 1, 2, 3] * 2
    # Delta-J sums to 0 over a generation (sum_i c_i - (n S - S) / (n - 1) = 0), so
    # n_critical * delta_critical + (n_tokens - n_critical) * delta_noncritical = 0
    for r in per_gen.itertuples():
        crit = r.n_critical * r.delta_critical if r.n_critical else 0.0
        assert crit + (r.n_tokens - r.n_critical) * r.delta_noncritical == pytest.approx(0.0, abs=1e-9)
        assert math.isnan(r.delta_critical) == (r.n_critical == 0)
    mp, ent = per_gen.iloc[:4], per_gen.iloc[4:]
    assert mp.n_critical.tolist() == ent.n_critical.tolist() and mp.n_tokens.tolist() == ent.n_tokens.tolist()
    assert not np.allclose(mp.certainty_noncritical, ent.certainty_noncritical)  # two different forms
    # one form only (critkl critical --certainty entropy): the same generations, the entropy rows
    only = certainty_delta(model, tok, level=2, extra_digits=1, n_generations=4, seed=0, certainty="entropy")
    pd.testing.assert_frame_equal(only, ent.reset_index(drop=True))
    t1 = table1(per_gen)
    assert t1.tokens.tolist() == ["critical", "non-critical", "non-critical (min.)"] * 2
    assert t1[t1.tokens == "non-critical"].n_generations.tolist() == [4, 4]


def test_critical_probabilities_rows(tiny):
    model, tok = tiny
    # 123+4 at level 2: line 1 "[1,2,3] + [4]" (seen 2): n_copy "2", n+1_comma, n+1_digit "3";
    # line 2 "[1,2] + []" (seen 1): n_copy "1", n+1_comma, n+1_digit "2"; line 3 "[1]" (seen 0): n+1_digit "1"
    cp = critical_probabilities(model, tok, [(123, 4)], level=2)
    assert list(zip(cp.step, cp.operand, cp.name)) == [
        (1, 1, "n+1_comma"), (1, 1, "n+1_digit"), (1, 1, "n_copy"), (2, 1, "n+1_comma"), (2, 1, "n+1_digit"),
        (2, 1, "n_copy"), (3, 1, "n+1_digit")]
    paper = critical_probabilities(model, tok, [(123, 4)], level=2, sites=("paper",))
    assert "n_copy" not in set(paper.name) and len(paper) == 5
    pd.testing.assert_frame_equal(paper, cp[cp.name != "n_copy"].reset_index(drop=True))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_critical_probabilities_are_teacher_forced_means(tiny, temperature):
    """Each row is the mean over the problems of softmax(logits / T) of the right character at that critical
    position, with the logits of one full forward over the true text."""
    model, tok = tiny
    problems = [(123, 4), (567, 8)]  # the same critical positions, different characters
    expected = {}
    for (a, b), (ids, logits) in zip(problems, teacher_forced(model, tok, problems)):
        for c in locate(a, b, 2, sites=SITES):
            p = torch.softmax(logits[c.index] / temperature, -1)[encode(tok, c.char)[0]].item()
            expected.setdefault((c.step, c.operand, c.name), []).append(p)
    cp = critical_probabilities(model, tok, problems, level=2, temperature=temperature)
    got = {(r.step, r.operand, r.name): r.p_correct for r in cp.itertuples()}
    assert got == pytest.approx({k: float(np.mean(v)) for k, v in expected.items()}, rel=1e-5)
    assert all(len(v) == 2 for v in expected.values()) and len(got) == 7


def test_sampled_example_aligns_values_with_the_text(tiny_checkpoint):
    """Figs. 1/5: one value per character (None on the prompt, a certainty in [0, 1] on the completion),
    critical indices inside the completion, and the same sample for the same seed."""
    model, tok, _ = load_checkpoint(tiny_checkpoint)
    ex = sampled_example(model, tok, 123, 45, level=2, seed=3)
    P = len(task.prompt(123, 45))
    assert ex["text"].startswith(task.prompt(123, 45)) and len(ex["values"]) == len(ex["text"])
    assert ex["values"][:P] == [None] * P
    assert all(0.0 <= v <= 1.0 for v in ex["values"][P:])
    assert all(P <= i < len(ex["text"]) for i in ex["critical"])
    assert ex == sampled_example(model, tok, 123, 45, level=2, seed=3)
    assert "<span" in render_html(**{k: ex[k] for k in ("text", "values", "critical")})


def test_auroc_and_detection_hand_computed():
    from critkl.analysis import auroc, detection
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of the 4 pairs ordered right
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # a tie counts one half
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    d = detection([True, True, False, False], [True, False, True, False])
    assert d == dict(flagged=2, precision=0.5, recall=0.5)
    assert math.isnan(detection([False, False], [True, False])["precision"])


def test_detector_counts_the_locators_states_and_follows_the_threshold(tiny):
    from critkl.measure import detector
    model, tok = tiny
    # alpha 1e-9: weight 0.5 only below certainty 0.5 ** 1e9 = 0: nothing flagged; alpha 1e9: certainty
    # < 1 everywhere, so every state is flagged and precision is the critical share
    d = detector(model, tok, level=2, n=6, alphas=(1e-9, 1e9), ref_temperatures=(1.0,))
    assert len(d) == 2 * 2 and d.auroc.between(0, 1).all()
    problems = task.Split("plus", 2, 1).sample(6, np.random.default_rng([0, 5, 2, 1]))
    n_crit = sum(len(locate(a, b, 2, 3, SITES)) for a, b in problems)
    n_tok = sum(len(task.full_text(a, b)) - len(task.prompt(a, b)) for a, b in problems)  # one character, one token
    assert (d.critical == n_crit).all()
    low, high = d[d.alpha == 1e-9], d[d.alpha == 1e9]
    assert (low.flagged == 0).all() and (low.recall == 0).all()
    assert (high.recall == 1).all() and np.allclose(high.precision, n_crit / high.tokens)
    assert d.groupby("certainty").auroc.nunique().eq(1).all()  # the weight is monotone in J: one AUROC
    assert (d.tokens == n_tok).all()


def test_detector_summary_averages_checkpoints_per_setting():
    from critkl.measure import detector_summary
    det = pd.DataFrame(dict(checkpoint=["a", "b", "a", "b"], level=3, certainty="max_prob", ref_temperature=1.0,
                            alpha=[150.0, 150.0, 1000.0, 1000.0], precision=[0.2, 0.4, 0.5, 0.5],
                            recall=[1.0, 0.0, 0.5, 0.7], auroc=[0.9, 0.7, 0.9, 0.7], weight_critical=[0.1, 0.3, 0, 0],
                            weight_other=[0.9, 0.7, 0.5, 0.5]))
    s = detector_summary(det).set_index("alpha")
    assert list(s.checkpoints) == [2, 2]
    assert s.loc[150.0, "precision"] == pytest.approx(0.3) and s.loc[150.0, "recall"] == pytest.approx(0.5)
    assert s.loc[150.0, "auroc"] == pytest.approx(0.8) and s.loc[150.0, "auroc_min"] == pytest.approx(0.7)
    assert s.loc[150.0, "weight_critical"] == pytest.approx(0.2) and s.loc[1000.0, "recall"] == pytest.approx(0.6)


def test_calibrations_measure_each_calibration_and_form(tiny):
    from critkl.measure import calibration_summary, calibrations
    model, tok = tiny
    problems = tracking_problems(2, 1, 3, 0)
    m = calibrations(model, tok, problems, 2, {"paper": (4.0, 150.0), "ours": (1.0, 1000.0)})
    alone = measure(model, tok, problems, 2, ref_temperature=4.0, alpha=150.0, certainty="entropy")
    mine = m[(m.calibration == "paper") & (m.certainty_kind == "entropy")].reset_index(drop=True)
    assert np.allclose(mine.weight, alone.weight) and len(m) == 4 * len(alone)
    assert set(m.tokens) <= {"critical", "other"} and (m.tokens == "critical").sum() == 4 * alone.critical.sum()
    s = calibration_summary(m)
    assert len(s) == 2 * 2 * m.tokens.nunique() and s.n.sum() == len(m)
    row = s[(s.calibration == "paper") & (s.certainty_kind == "entropy") & (s.tokens == "other")].iloc[0]
    assert row.weight_median == pytest.approx(alone[~alone.critical].weight.median())
