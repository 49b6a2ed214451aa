import numpy as np
import pytest

from critkl import task

PAPER_EXAMPLE = (
    "Input:\n56+789\nTarget:\n<scratch>\n"
    "[5,6] + [7,8,9] , A=[] , C=0 , 6+9+0=15 , A->5 , C->1\n"
    "[5] + [7,8] , A=[5] , C=1 , 5+8+1=14 , A->4 , C->1\n"
    "[] + [7] , A=[4,5] , C=1 , 0+7+1=8 , A->8 , C->0\n"
    "[] + [] , A=[8,4,5] C=0 , END\n"
    "</scratch>\n8 4 5\n"
)


def test_paper_example_byte_for_byte():
    assert task.prompt(56, 789) == "Input:\n56+789\nTarget:"
    assert task.full_text(56, 789) == PAPER_EXAMPLE
    assert task.scratchpad(56, 789).startswith("\n<scratch>\n")


# Final carries, hand-written from the reference template: the last line's accumulator holds the sum's
# digits *without* the final carry, which appears only in the answer line.
def test_final_carry_99_plus_1():
    assert task.scratchpad(99, 1) == ("\n<scratch>\n"
                                      "[9,9] + [1] , A=[] , C=0 , 9+1+0=10 , A->0 , C->1\n"
                                      "[9] + [] , A=[0] , C=1 , 9+0+1=10 , A->0 , C->1\n"
                                      "[] + [] , A=[0,0] C=1 , END\n"
                                      "</scratch>\n1 0 0\n")


def test_final_carry_7_plus_8():
    assert task.scratchpad(7, 8) == ("\n<scratch>\n"
                                     "[7] + [8] , A=[] , C=0 , 7+8+0=15 , A->5 , C->1\n"
                                     "[] + [] , A=[5] C=1 , END\n"
                                     "</scratch>\n1 5\n")


def test_final_carry_95_plus_5():
    assert task.scratchpad(95, 5) == ("\n<scratch>\n"
                                      "[9,5] + [5] , A=[] , C=0 , 5+5+0=10 , A->0 , C->1\n"
                                      "[9] + [] , A=[0] , C=1 , 9+0+1=10 , A->0 , C->1\n"
                                      "[] + [] , A=[0,0] C=1 , END\n"
                                      "</scratch>\n1 0 0\n")


def test_final_carry_unequal_lengths():
    assert task.scratchpad(5, 995) == ("\n<scratch>\n"
                                       "[5] + [9,9,5] , A=[] , C=0 , 5+5+0=10 , A->0 , C->1\n"
                                       "[] + [9,9] , A=[0] , C=1 , 0+9+1=10 , A->0 , C->1\n"
                                       "[] + [9] , A=[0,0] , C=1 , 0+9+1=10 , A->0 , C->1\n"
                                       "[] + [] , A=[0,0,0] C=1 , END\n"
                                       "</scratch>\n1 0 0 0\n")


def test_no_final_carry_keeps_full_accumulator():
    assert task.scratchpad(12, 34).endswith("[] + [] , A=[4,6] C=0 , END\n</scratch>\n4 6\n")


def test_carry_chain_and_unequal_lengths():
    s = task.scratchpad(5, 1995)
    lines = s.split("\n")
    assert lines[2] == "[5] + [1,9,9,5] , A=[] , C=0 , 5+5+0=10 , A->0 , C->1"
    assert lines[3] == "[] + [1,9,9] , A=[0] , C=1 , 0+9+1=10 , A->0 , C->1"
    assert lines[4] == "[] + [1,9] , A=[0,0] , C=1 , 0+9+1=10 , A->0 , C->1"
    assert lines[5] == "[] + [1] , A=[0,0,0] , C=1 , 0+1+1=2 , A->2 , C->0"
    assert lines[6] == "[] + [] , A=[2,0,0,0] C=0 , END"
    assert s.endswith("</scratch>\n2 0 0 0\n")


def test_one_digit_and_zero_operands():
    assert task.scratchpad(0, 0) == ("\n<scratch>\n[0] + [0] , A=[] , C=0 , 0+0+0=0 , A->0 , C->0\n"
                                     "[] + [] , A=[0] C=0 , END\n</scratch>\n0\n")
    assert task.scratchpad(0, 30).split("\n")[2] == "[0] + [3,0] , A=[] , C=0 , 0+0+0=0 , A->0 , C->0"


def test_format_version_changes_every_cache_key(monkeypatch):
    from critkl.config import cache_key, pretrain_config, rl_config
    cfgs = [pretrain_config("tiny", level=2), rl_config("tiny", model_dir="x")]
    before = [cache_key(c) for c in cfgs]
    monkeypatch.setattr(task, "FORMAT_VERSION", task.FORMAT_VERSION + 1)
    after = [cache_key(c) for c in cfgs]
    assert all(a != b for a, b in zip(before, after))


@pytest.mark.parametrize("a,b", [(0, 0), (9, 9), (56, 789), (123456789, 987654321), (5, 10**15)])
def test_parse_roundtrip(a, b):
    assert task.parse_answer(task.full_text(a, b)) == a + b
    assert task.is_correct(task.scratchpad(a, b), a, b)
    assert not task.is_correct(task.scratchpad(a, b), a, b + 1)


@pytest.mark.parametrize("text", [
    "", "8 4 5\n", "</scratch>\n", "</scratch>\n\n", "</scratch>\n8 4 5",  # unfinished line
    "</scratch>\n8  4 5\n", "</scratch>\n8 4 5 \n", "</scratch>\nA 4 5\n", "</scratch>\n 8 4 5\n",
    "</scratch>\n8,4,5\n",
])
def test_parse_malformed(text):
    assert task.parse_answer(text) is None


def test_parse_type_error():
    with pytest.raises(TypeError):
        task.parse_answer(845)


@pytest.mark.parametrize("a,b", [(-1, 2), (1.5, 2), ("3", 4), (True, 1)])
def test_bad_operands(a, b):
    with pytest.raises(ValueError, match="operand"):
        task.prompt(a, b)


def test_comfort_sampling_digit_counts():
    rng = np.random.default_rng(0)
    lens = [len(str(x)) for _ in range(2000) for x in task.sample_comfort(3, rng)]
    counts = np.bincount(lens)[1:]
    assert set(lens) == {1, 2, 3}
    assert counts.min() / counts.max() > 0.85  # uniform digit counts, not uniform numbers


def test_plus_sampling_rules():
    rng = np.random.default_rng(1)
    probs = [task.sample_plus(3, 2, rng) for _ in range(4000)]
    long_first = 0
    other_in_comfort = 0
    for a, b in probs:
        la, lb = len(str(a)), len(str(b))
        assert max(la, lb) == 5  # one operand has N+k digits
        other = lb if la == 5 else la
        long_first += la == 5
        assert 1 <= other <= 5
        other_in_comfort += other <= 3
    # P(first is long) = 1/2 + 1/2 * P(other also has N+k digits) = 1/2 + 1/2 * 1/2 * 1/2
    assert 0.59 < long_first / len(probs) < 0.66
    assert 0.45 < other_in_comfort / len(probs) < 0.55


def test_sample_number_exact_digits_and_zero():
    rng = np.random.default_rng(2)
    ones = {task.sample_number(1, rng) for _ in range(300)}
    assert ones == set(range(10))
    for d in (2, 7, 19, 25):
        assert all(len(str(task.sample_number(d, rng))) == d for _ in range(50))


def test_split_validation_and_determinism():
    with pytest.raises(ValueError, match="unknown split"):
        task.Split("bogus", 3)
    with pytest.raises(ValueError, match="level"):
        task.Split("comfort", 0)
    with pytest.raises(ValueError, match="extra_digits >= 1"):
        task.Split("plus", 3, 0)
    s = task.Split("plus", 3, 1)
    assert s.name == "plus1"
    assert s.sample(5, np.random.default_rng(3)) == s.sample(5, np.random.default_rng(3))


def test_max_text_length():
    assert task.max_text_length(2) == len(task.full_text(99, 99))


def test_modsum_auxiliary_task():
    assert task.modsum(56, 789) == 735 and task.modsum(99, 1) == 90 and task.modsum(0, 0) == 0
    assert task.modsum_prompt(56, 789) == "Input:\n56%789\nTarget:"
    s = task.modsum_scratchpad(56, 789)
    assert s.split("\n")[2] == "[5,6] + [7,8,9] , A=[] , C=0 , 6+9+0=15 , A->5 , C->0"
    assert s.endswith("[] + [] , A=[7,3,5] C=0 , END\n</scratch>\n7 3 5\n")
    assert task.parse_answer(s) == task.modsum(56, 789)
    # addition is untouched by the shared code path
    assert task.scratchpad(56, 789) == PAPER_EXAMPLE[len(task.prompt(56, 789)):]


def test_sample_different_length_has_one_operand_of_that_length_and_a_shorter_one():
    rng = np.random.default_rng(0)
    pairs = [task.sample_different_length(4, rng) for _ in range(400)]
    lens = [sorted((len(str(a)), len(str(b)))) for a, b in pairs]
    assert all(hi == 4 and 1 <= lo <= 3 for lo, hi in lens)
    assert {lo for lo, _ in lens} == {1, 2, 3}
    firsts = sum(len(str(a)) == 4 for a, _ in pairs)
    assert 150 < firsts < 250  # the long operand comes first about half the time
    with pytest.raises(ValueError, match="n_digits=1 must be >= 2"):
        task.sample_different_length(1, rng)
