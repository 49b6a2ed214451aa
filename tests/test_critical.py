"""The pure locator: problem -> critical positions (the paper's set and the Appendix-B site), and the RL mask."""
from types import SimpleNamespace

import pytest
import torch

from critkl import task
from critkl.critical import SITES, critical_mask, locate, locate_appendix_b, reached_critical_states
from critkl.tokenizer import build_tokenizer, encode


def names(cts, step=None, operand=None):
    return [(c.name, c.char) for c in cts if (step is None or c.step == step) and (operand is None or c.operand == operand)]


def test_both_operands_long():
    # 3395+1791 at level 3, the module docstring's worked example
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
    with pytest.raises(ValueError, match="site"):
        locate(12, 345, 2, sites=("paper", "fig7"))


# ---------------------------------------------------------------------------------------------------
# The Appendix-B site n_copy
def test_appendix_b_site_hand_checked():
    # 3395+1791, level 3. Completion offsets into scratchpad(): "\n<scratch>\n" is 11 characters, so line 1
    # "[3,3,9,5] + [1,7,9,1]" starts at 11: "[" 11, "3" 12, "," 13, "3" 14, "," 15, "9" 16, "," 17, "5" 18,
    # "]" 19, " + " 20-22, "[" 23, "1" 24, "," 25, "7" 26, "," 27, "9" 28, "," 29, "1" 30.
    # Line 1 (seen 3): the 3rd digits, 9 and 9. Line 2 "[3,3,9] + [1,7,9]" (seen 2): the 2nd digits, 3 and 7.
    # Line 3 "[3,3] + [1,7]" (seen 1): the first digits, 3 and 1.
    a, b, P = 3395, 1791, len(task.prompt(3395, 1791))
    truth = task.scratchpad(a, b)
    l2, l3 = truth.index("[3,3,9] + [1,7,9]"), truth.index("[3,3] + [1,7]")
    cts = locate_appendix_b(a, b, 3)
    assert [(c.step, c.operand, c.name, c.char, c.index - P) for c in cts] == [
        (1, 1, "n_copy", "9", 16), (1, 2, "n_copy", "9", 28),
        (2, 1, "n_copy", "3", l2 + 3), (2, 2, "n_copy", "7", l2 + 13),
        (3, 1, "n_copy", "3", l3 + 1), (3, 2, "n_copy", "1", l3 + 9)]
    assert truth[:16].endswith("<scratch>\n[3,3,") and truth[l2 + 13] == "7"
    # one character before the paper's window: n+1_comma at 17
    paper = locate(a, b, 3)
    assert min(c.index - P for c in paper) == 17 and all(c.name != "n_copy" for c in paper)
    both = locate(a, b, 3, sites=SITES)
    assert len(both) == len(paper) + len(cts)
    assert [c.name for c in both if c.step == 1 and c.operand == 1] == ["n_copy", "n+1_comma", "n+1_digit"]


def test_appendix_b_site_short_lists():
    # level 1, 23+4: line 1 "[2,3] + [4]": seen 1, the left list (2 digits) has n_copy "2"; the right one
    # (1 digit) has none; line 2 (seen 0) has none.
    assert [(c.step, c.operand, c.char) for c in locate_appendix_b(23, 4, 1)] == [(1, 1, "2")]
    # level 2, 56+789: line 1 "[5,6] + [7,8,9]": "8"; line 2 "[5] + [7,8]" (seen 1): "7"; line 3: none
    assert [(c.step, c.operand, c.char) for c in locate_appendix_b(56, 789, 2)] == [(1, 2, "8"), (2, 2, "7")]
    assert locate_appendix_b(12, 34, 2) == []


# ---------------------------------------------------------------------------------------------------
# Critical mask on a known scratchpad
def test_critical_mask_on_a_known_scratchpad():
    tok = build_tokenizer()
    a, b = 3395, 1791
    truth = encode(tok, task.scratchpad(a, b))
    L, close = len(truth), encode(tok, "]")[0]
    diverge = lambda i: truth[:i] + [close] + truth[i + 1:]  # noqa: E731  (truth[25] and truth[29] are ",")
    rows = [diverge(25), diverge(29), truth, truth]
    lengths = [L, L, 18, L]
    gen = SimpleNamespace(completion_ids=torch.tensor(rows),
                          completion_mask=torch.tensor([[1] * n + [0] * (L - n) for n in lengths]))
    problems = [(a, b)] * 4
    on = lambda m: [set(torch.nonzero(r).flatten().tolist()) for r in m]  # noqa: E731
    # paper set (completion offsets, see test_appendix_b_site_hand_checked): line 1 at 17, 18 (left list)
    # and 29, 30 (right list). A state counts if the text matched the truth on all positions before it.
    # Row 0 diverges at 25: {17, 18}. Row 1 diverges at 29 (s_29 was reached, its token was wrong):
    # {17, 18, 29}. Row 2 stops after 18 tokens: {17}. Row 3 is the whole truth: all 12 positions.
    all12 = {c.index - len(task.prompt(a, b)) for c in locate(a, b, 3)}
    assert len(all12) == 12 and {17, 18, 29, 30} < all12
    assert on(critical_mask(gen, tok, problems, 3)) == [{17, 18}, {17, 18, 29}, {17}, all12]
    # with the Appendix-B site: also 16 (left n_copy) and 28 (right n_copy, reached only by row 1 and 3)
    both = on(critical_mask(gen, tok, problems, 3, sites=SITES))
    assert both[:3] == [{16, 17, 18}, {16, 17, 18, 28, 29}, {16, 17}] and len(both[3]) == 18


def test_reached_critical_states_hand_computed():
    # the truth is 1 2 3 4 5; the generation wrote 1 2 9 ...: it diverged at 2, so s_2 (its prefix 1 2 matched)
    # was reached and s_3 was not; a state past the episode's length never counts
    truth, gen = [1, 2, 3, 4, 5], torch.tensor([1, 2, 9, 4, 5, 0])
    assert reached_critical_states(gen, torch.tensor([1, 1, 1, 1, 1, 0]), truth, [0, 2, 3]) == [0, 2]
    # the whole truth, stopped after 3 tokens: states 0..2 exist; 4 is past the end
    assert reached_critical_states(torch.tensor([1, 2, 3, 0, 0, 0]), torch.tensor([1, 1, 1, 0, 0, 0]), truth,
                                   [1, 2, 4]) == [1, 2]



def test_example_problem_keeps_a_problem_with_critical_tokens_else_draws_one():
    from critkl.critical import example_problem
    (a, b), line = example_problem(3, 3395, 1791)
    assert (a, b) == (3395, 1791) and "3395+1791" in line
    (a, b), line = example_problem(6, 3395, 1791, seed=2)
    assert locate(a, b, 6) and max(len(str(a)), len(str(b))) == 7 and "no critical token" in line
    assert example_problem(6, 3395, 1791, seed=2)[0] == (a, b)  # seeded
