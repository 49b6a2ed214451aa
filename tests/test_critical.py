import pytest
import torch

from critkl import task
from critkl.config import ModelConfig
from critkl.critical import (certainty_delta, critical_probabilities, locate, measure, summarize, table1,
                             teacher_forced)
from critkl.model import build_model
from critkl.plots import render_html
from critkl.tokenizer import build_tokenizer, encode


def names(cts, step=None, operand=None):
    return [(c.name, c.char) for c in cts if (step is None or c.step == step) and (operand is None or c.operand == operand)]


def test_both_operands_long():
    # 3395+1791 at level 3, the regime notes' example
    cts = locate(3395, 1791, 3)
    text = task.full_text(3395, 1791)
    assert names(cts, 1, 1) == [("n+1_comma", ","), ("n+1_digit", "5")]
    assert names(cts, 1, 2) == [("n+1_comma", ","), ("n+1_digit", "1")]
    assert names(cts, 2, 1) == [("n+1_comma", ","), ("n+1_digit", "9")]  # [3,3,9] on line 2
    assert names(cts, 3, 2) == [("n+1_comma", ","), ("n+1_digit", "7")]  # [1,7] on line 3
    first = [c for c in cts if c.step == 1 and c.operand == 1]
    # the comma right after the N-th digit of the first list: "[3,3,9" then ","
    assert text[:first[0].index] == "Input:\n3395+1791\nTarget:\n<scratch>\n[3,3,9"
    assert all(text[c.index] == c.char for c in cts)


def test_one_long_operand_two_extra_digits():
    cts = locate(12345, 6, 3)
    assert {c.operand for c in cts} == {1}
    assert names(cts, 1) == [("n+1_comma", ","), ("n+1_digit", "4"), ("n+2_comma", ","), ("n+2_digit", "5")]
    assert names(cts, 2) == [("n+1_comma", ","), ("n+1_digit", "3"), ("n+2_comma", ","), ("n+2_digit", "4")]
    assert len(names(cts, 3)) == 4


def test_list_with_no_seen_digit_has_no_comma():
    # level 2, 789 on line 3 is [7]: longest list seen there is empty, so the digit itself is critical
    cts = locate(56, 789, 2)
    assert names(cts, 3, 2) == [("n+1_digit", "7")]
    assert locate(12, 34, 2) == []  # nothing beyond the comfort zone
    assert len({c.step for c in locate(123456, 1, 2, steps=5)}) == 5
    with pytest.raises(ValueError):
        locate(1, 2, 0)


@pytest.fixture(scope="module")
def tiny():
    tok = build_tokenizer()
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=1024), tok).eval(), tok


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
    s = summarize(df)
    assert set(s.critical) == {True, False}


def test_certainty_delta_and_tracking(tiny):
    model, tok = tiny
    per_gen = certainty_delta(model, tok, level=2, k=1, n_generations=4, seed=0)
    assert len(per_gen) == 4 and (per_gen.n_critical >= 0).all()
    t1 = table1(per_gen)
    assert list(t1.tokens) == ["critical", "non-critical"]
    cp = critical_probabilities(model, tok, [(123, 4)], level=2)
    assert list(cp.name.unique())[:1] == ["n+1_comma"] and cp.p_correct.between(0, 1).all()


def test_render_html_escapes():
    html = render_html("<script>&x", [0.1, 0.9, None, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0], critical=[0])
    assert "<script>" not in html and "&lt;" in html and "&amp;" in html
    assert "outline" in html
    with pytest.raises(ValueError, match="values"):
        render_html("abc", [0.1])
    assert "&lt;b&gt;" in render_html("x", title="<b>")
