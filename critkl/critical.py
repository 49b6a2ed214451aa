"""Critical tokens (the paper's Section 3, Appendix B): where a model pre-trained up to N digits must go
beyond the lengths it has seen. Pure text: problem -> positions, and the RL mask of the critical states an
episode reached; no model. What a model does there (teacher-forced probabilities, Table 1, Fig. 7
tracking, failure sites) is ``critkl.measure``.

**The paper's set** (Section 3 and its reference implementation). On scratchpad line ``step`` an operand
list holds ``L - step + 1`` digits, while the longest list seen at that line in pre-training holds
``N - step + 1``. Every digit past that, and the comma before it, is a critical character: the model must
write ``,`` and a digit where it was trained to close ``]``. Names follow the reference implementation:
from the bracket backwards ``n+g_digit``, ``n+g_comma``, ..., ``n+1_digit``, ``n+1_comma`` (a list with no
digit seen at all starts with ``n+1_digit``, which has no comma).

**The Appendix-B site** ``n_copy`` (paper Appendix B: a model pre-trained to N = 3 "recopying the last digit
instead of the penultimate one"; critkl's failure-site count, results/format1/summary.md: 39 of 76 failures
start one digit before the paper's window). On line ``step``, for a list holding ``m`` digits with
``m > seen = N - step + 1 >= 1``, it is the ``seen``-th digit of the list: the last position a list of
pre-training length fills. In pre-training that position always holds the list's *last* digit, so a model
that keeps the habit writes the list's last digit there instead of the true one, then closes the bracket.
On line 1 of an (N+1)-digit operand the true digit is the operand's penultimate one: "recopying the last
digit instead of the penultimate one". Worked example, N = 3, ``3395+1791`` (completion offsets, i.e. into
``task.scratchpad``; add ``len(task.prompt(a, b)) = 24`` for ``CriticalToken.index``)::

    line 1  [3,3,9,5] + [1,7,9,1]   seen 3: n_copy = the 9 at 16 and the 9 at 28; a model that recopies the
                                    last digit writes "[3,3,5]" (wrong at 16: "5" for "9"), one character
                                    before the paper's n+1_comma (17) and n+1_digit (18)
    line 2  [3,3,9] + [1,7,9]       seen 2: n_copy = the second digits 3 and 7 (the wrong copy: "[3,9]")
    line 3  [3,3] + [1,7]           seen 1: n_copy = the first digits 3 and 1

Not chosen: the last digit inside the list on line 2 (``[3,3,9]`` copying 9, line 1's penultimate digit) is
already the paper's ``n+1_digit`` of step 2; the ``x`` of ``x+y+c=s`` reads the list's last digit, which is
right there, so no early-close habit can mislead it.

``locate`` and ``critical_mask`` (and ``critkl.measure``'s ``measure`` and ``certainty_delta``) use the
paper's set unless ``sites=("paper", "appendix_b")`` is passed; ``critkl.measure.critical_probabilities``
(what the trainer tracks, Fig. 7) includes ``n_copy`` rows by default.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import task
from .tokenizer import encode

SITES = ("paper", "appendix_b")
APPENDIX_B_NAME = "n_copy"


@dataclass(frozen=True)
class CriticalToken:
    step: int      # scratchpad line, 1 = first
    operand: int   # 1 (left list) or 2 (right list)
    name: str      # e.g. "n+1_comma", or "n_copy" (the Appendix-B site)
    index: int     # character (= token) offset into prompt(a, b) + scratchpad(a, b)
    char: str      # the correct character there


def _check_sites(sites) -> tuple:
    sites = (sites,) if isinstance(sites, str) else tuple(sites)
    bad = [s for s in sites if s not in SITES]
    if bad:
        raise ValueError(f"unknown critical site(s) {bad}; allowed: {', '.join(SITES)}")
    return sites


def _list_tokens(step: int, operand: int, first_digit: int, m: int, seen: int, text: str, sites) -> list:
    """Critical characters of one operand list (``m`` digits, first digit at ``first_digit``)."""
    out = []
    if "appendix_b" in sites and m > seen >= 1:
        pos = first_digit + 2 * (seen - 1)
        out.append(CriticalToken(step, operand, APPENDIX_B_NAME, pos, text[pos]))
    if "paper" in sites:
        for j in range(seen + 1, m + 1):  # 1-based digit number in the list
            g, pos = j - seen, first_digit + 2 * (j - 1)
            if j > 1:
                out.append(CriticalToken(step, operand, f"n+{g}_comma", pos - 1, ","))
            out.append(CriticalToken(step, operand, f"n+{g}_digit", pos, text[pos]))
    return out


def locate(a: int, b: int, level: int, steps: int = 3, sites=("paper",)) -> list[CriticalToken]:
    """Critical characters of ``(a, b)`` for a model pre-trained up to ``level`` digits, on the
    first ``steps`` scratchpad lines (the reference code tracks three), in text order per line and
    operand. ``sites``: ``"paper"`` (the reference implementation's set) and/or ``"appendix_b"``
    (``n_copy``, see the module docstring)."""
    task._check_level(level)
    sites = _check_sites(sites)
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    text = task.full_text(a, b)
    offset = text.index("<scratch>\n") + len("<scratch>\n")
    digits = (len(str(a)), len(str(b)))
    out = []
    for step, line in enumerate(text[offset:].split("\n")[:steps], start=1):
        if not line.startswith("["):
            break
        right_start = line.index("[", line.index("]"))
        for operand, open_pos in ((1, 0), (2, right_start)):
            m = max(digits[operand - 1] - step + 1, 0)   # digits in this list
            seen = max(level - step + 1, 0)               # longest list seen here in pre-training
            out += _list_tokens(step, operand, offset + open_pos + 1, m, seen, text, sites)
        offset += len(line) + 1
    assert all(text[c.index] == c.char for c in out)
    return out


def example_problem(level: int, a: int, b: int, seed: int = 0) -> tuple[tuple[int, int], str]:
    """The problem a chapter shows at ``level`` (the paper's Fig. 1 uses 3395+1791 at N = 3): ``(a, b)``
    when it has critical tokens at that level, else the first plus-1 problem drawn with ``seed``; and a
    line saying which, so a chapter re-executed at another level still has something to show."""
    if locate(a, b, level):
        return (a, b), f"{a}+{b} at level N = {level}"
    import numpy as np
    drawn = task.Split("plus", level, 1).sample(1, np.random.default_rng([seed, level]))[0]
    return drawn, (f"{a}+{b} has no critical token at level N = {level}; drawn instead: {drawn[0]}+{drawn[1]} "
                   f"(plus-1, seed {seed})")


def locate_appendix_b(a: int, b: int, level: int, steps: int = 3) -> list[CriticalToken]:
    """Only the Appendix-B ``n_copy`` characters of ``(a, b)`` (see the module docstring)."""
    return locate(a, b, level, steps, sites=("appendix_b",))


# -------------------------------------------------------------------------------------------------
# The RL mask: critical states an episode reached (collect_stats reports the KL weight there)
def reached_critical_states(gen_ids: torch.Tensor, mask: torch.Tensor, truth: list[int], crit_idx: list[int]):
    """Completion positions t whose state s_t (the prefix before t) is a critical state of the true
    scratchpad: t is a critical index and the generation matched the truth on all of [0, t)."""
    n = int(mask.sum())
    gen = gen_ids[:n].tolist()
    first_diff = next((i for i, (x, y) in enumerate(zip(gen, truth)) if x != y), min(n, len(truth)))
    return [t for t in crit_idx if t <= first_diff and t < n]


def critical_mask(gen, tok, problems, level: int, steps: int = 3, sites=("paper",)) -> torch.Tensor:
    """``(B, L)`` 0/1 mask over a generation's completion tokens: 1 at the states of the true
    scratchpad's critical positions that the episode reached while still matching the truth."""
    crit = torch.zeros_like(gen.completion_mask)
    for i, (a, b) in enumerate(problems):
        P = len(task.prompt(a, b))
        idx = [c.index - P for c in locate(a, b, level, steps, sites)]
        truth = encode(tok, task.scratchpad(a, b))
        for t in reached_critical_states(gen.completion_ids[i], gen.completion_mask[i], truth, idx):
            crit[i, t] = 1
    return crit
