"""The addition task with a scratchpad (the paper's Fig. 1; the format of Lee et al., 2023).

A problem is a pair of non-negative integers ``(a, b)``. The model reads ``prompt(a, b)`` and must write
``scratchpad(a, b)``: one line per digit position, each popping the last digit of both operand lists,
adding it with the carry and prepending the result digit to the accumulator ``A``, then the answer
digits separated by spaces. The text is byte-for-byte the format of the paper's reference implementation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SPLITS = ("comfort", "plus")
# The version of the scratchpad text. It enters every cache key (critkl.config.cache_key), so a model or
# run trained on another version of the text is never loaded again. 1: the final carry was written into
# the last accumulator; 2: the reference template (the carry appears only in the answer line).
FORMAT_VERSION = 2
END_SCRATCH = "</scratch>"
# What must follow the first "</scratch>", and nothing after it: the answer line of ASCII digits.
_ANSWER_RE = re.compile(r"\n([0-9](?: [0-9])*)\n")


def prompt(a: int, b: int) -> str:
    """The prompt the model is conditioned on, e.g. ``"Input:\\n56+789\\nTarget:"``."""
    _check_operands(a, b)
    return f"Input:\n{a}+{b}\nTarget:"


def _digits(x: int) -> list[int]:
    return [int(c) for c in str(x)]


def _fmt_list(ds: list[int]) -> str:
    return "[" + ",".join(str(d) for d in ds) + "]"


def scratchpad(a: int, b: int) -> str:
    """The target that follows ``prompt(a, b)``: ``\\n<scratch>\\n ... </scratch>\\n<answer digits>\\n``."""
    return _scratchpad(a, b, carry_rule=True)


def _scratchpad(a: int, b: int, carry_rule: bool) -> str:
    _check_operands(a, b)
    da, db = _digits(a), _digits(b)
    acc: list[int] = []
    carry = 0
    lines = []
    while da or db:
        x = da[-1] if da else 0
        y = db[-1] if db else 0
        s = x + y + carry
        carry_out = s // 10 if carry_rule else 0
        lines.append(
            f"{_fmt_list(da)} + {_fmt_list(db)} , A={_fmt_list(acc)} , C={carry} , "
            f"{x}+{y}+{carry}={s} , A->{s % 10} , C->{carry_out}"
        )
        acc = [s % 10] + acc
        carry = carry_out
        da, db = da[:-1], db[:-1]
    # The reference template's last line: no comma between A=[...] and C=..., and the accumulator
    # *without* the final carry, which appears only in the answer line (99+1: A=[0,0] C=1, then 1 0 0).
    lines.append(f"[] + [] , A={_fmt_list(acc)} C={carry} , END")
    answer = " ".join(str(d) for d in ([carry] if carry else []) + acc)
    return "\n<scratch>\n" + "\n".join(lines) + "\n</scratch>\n" + answer + "\n"


# ---------------------------------------------------------------------------------------------------
# An auxiliary "general" task (regime notes): digit-wise sum modulo 10 in the very same scratchpad format,
# under its own operator ``%``. Every list, accumulator and line mechanic is shared with addition; only
# the carry differs (always 0). It can be trained on long operands to stand in for the general prior
# that the paper's GPT-2 models bring, without being separable from addition by the list mechanics.


def modsum_prompt(a: int, b: int) -> str:
    """``"Input:\n{a}%{b}\nTarget:"``: the auxiliary task's prompt."""
    _check_operands(a, b)
    return f"Input:\n{a}%{b}\nTarget:"


def modsum_scratchpad(a: int, b: int) -> str:
    """Addition's scratchpad with the carry dropped: each line writes ``x+y+0=s , A->s%10 , C->0``."""
    return _scratchpad(a, b, carry_rule=False)


def modsum(a: int, b: int) -> int:
    """Digit-wise sum modulo 10 (no carries), e.g. modsum(56, 789) = 735."""
    da, db = str(a)[::-1], str(b)[::-1]
    n = max(len(da), len(db))
    ds = [(int(da[i]) if i < len(da) else 0) + (int(db[i]) if i < len(db) else 0) for i in range(n)]
    return int("".join(str(d % 10) for d in reversed(ds)))


def full_text(a: int, b: int) -> str:
    """``prompt(a, b) + scratchpad(a, b)``: the text a pre-trained model is trained on."""
    return prompt(a, b) + scratchpad(a, b)


def parse_answer(text: str) -> int | None:
    """The integer a model answered in ``text`` (a completion or prompt + completion), or None.

    The answer is the line right after the *first* ``</scratch>``: ASCII digits 0-9 separated by single
    spaces and ended by a newline, and that newline must end ``text``. The sampler stops an episode at
    exactly that newline, so anything after it (a second answer line, another ``</scratch>``, garbage) is
    malformed, as are no scratchpad end, an empty line, letters, Unicode digits, double spaces and an
    unfinished line: all give None. (An answer longer than Python's int-from-string limit, 4300 digits
    by default, gives None too.) A non-str ``text`` raises TypeError.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_answer expects a str, got {type(text).__name__}")
    end = text.find(END_SCRATCH)
    if end < 0:
        return None
    m = _ANSWER_RE.fullmatch(text, end + len(END_SCRATCH))
    if m is None:
        return None
    try:
        return int(m.group(1).replace(" ", ""))
    except ValueError:  # beyond sys.get_int_max_str_digits()
        return None


def is_correct(text: str, a: int, b: int) -> bool:
    """Binary reward: the answer line equals the digits of ``a + b``."""
    return parse_answer(text) == a + b


def _check_operands(a: int, b: int) -> None:
    for name, v in (("a", a), ("b", b)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"operand {name}={v!r} must be a non-negative integer")


# ---------------------------------------------------------------------------------------------------
# Operand sampling (as the paper's reference implementation draws them)


def sample_number(n_digits: int, rng: np.random.Generator) -> int:
    """A number uniform among those with exactly ``n_digits`` digits (1-digit numbers include 0)."""
    if n_digits < 1:
        raise ValueError(f"n_digits={n_digits} must be >= 1")
    if n_digits == 1:
        return int(rng.integers(0, 10))
    lo = 10 ** (n_digits - 1)
    # Python ints: avoids int64 overflow for long operands.
    return lo + int(rng.integers(0, 9 * lo)) if n_digits <= 18 else int(
        "".join([str(rng.integers(1, 10))] + [str(d) for d in rng.integers(0, 10, n_digits - 1)])
    )


def sample_comfort(level: int, rng: np.random.Generator) -> tuple[int, int]:
    """A comfort-zone problem: each operand's digit count uniform in 1..level."""
    _check_level(level)
    return (sample_number(int(rng.integers(1, level + 1)), rng),
            sample_number(int(rng.integers(1, level + 1)), rng))


def sample_plus(level: int, extra_digits: int, rng: np.random.Generator) -> tuple[int, int]:
    """A "plus-k" problem (k = ``extra_digits``): one operand (50/50 which) has level+k digits; the other
    has, with probability 1/2, a digit count uniform in 1..level, else uniform in level+1..level+k."""
    _check_level(level)
    if extra_digits < 1:
        raise ValueError(f"extra_digits={extra_digits} must be >= 1 (plus1, plus2, ...)")
    long_ = sample_number(level + extra_digits, rng)
    if rng.random() < 0.5:
        other_len = int(rng.integers(1, level + 1))
    else:
        other_len = int(rng.integers(level + 1, level + extra_digits + 1))
    other = sample_number(other_len, rng)
    return (long_, other) if rng.random() < 0.5 else (other, long_)


def sample_same_length(n_digits: int, rng: np.random.Generator) -> tuple[int, int]:
    """Both operands with exactly ``n_digits`` digits (the paper's Table 4 evaluation)."""
    return sample_number(n_digits, rng), sample_number(n_digits, rng)


def sample_different_length(n_digits: int, rng: np.random.Generator) -> tuple[int, int]:
    """One operand (50/50 which) with exactly ``n_digits`` digits, the other with a digit count uniform in
    1..n_digits-1 (the paper's Table 5 evaluation: operands of different lengths)."""
    if n_digits < 2:
        raise ValueError(f"n_digits={n_digits} must be >= 2: operands of different lengths need a shorter one")
    long_ = sample_number(n_digits, rng)
    other = sample_number(int(rng.integers(1, n_digits)), rng)
    return (long_, other) if rng.random() < 0.5 else (other, long_)


@dataclass(frozen=True)
class Split:
    """A named problem distribution: ``comfort`` (1..level digits) or ``plus`` with its ``extra_digits``."""

    kind: str
    level: int
    extra_digits: int = 0

    def __post_init__(self):
        if self.kind not in SPLITS:
            raise ValueError(f"unknown split kind {self.kind!r}; allowed: {', '.join(SPLITS)}")
        _check_level(self.level)
        if self.kind == "plus" and self.extra_digits < 1:
            raise ValueError(f"plus split needs extra_digits >= 1, got extra_digits={self.extra_digits}")

    @property
    def name(self) -> str:
        return "comfort" if self.kind == "comfort" else f"plus{self.extra_digits}"

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        f = (lambda: sample_comfort(self.level, rng)) if self.kind == "comfort" else (
            lambda: sample_plus(self.level, self.extra_digits, rng))
        return [f() for _ in range(n)]


def max_scratchpad_length(n_digits: int) -> int:
    """Characters in the longest scratchpad (target) with operands of at most ``n_digits`` digits."""
    big = 10**n_digits - 1
    return len(scratchpad(big, big))


def episode_limit(level: int, extra_digits: int) -> int:
    """The paper's episode limit in generated characters: the longest possible scratchpad with operands
    of level+extra_digits digits, plus 100."""
    return max_scratchpad_length(level + extra_digits) + 100


def max_text_length(n_digits: int) -> int:
    """Characters in the longest prompt + scratchpad with operands of at most ``n_digits`` digits."""
    big = 10**n_digits - 1
    return len(full_text(big, big))


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"level (max digits) = {level!r} must be an integer >= 1")
