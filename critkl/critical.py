"""Critical tokens: where a model pre-trained up to N digits must go beyond the lengths it has seen.

On scratchpad line ``step`` an operand list holds ``L - step + 1`` digits, while the longest list seen at
that line in pre-training holds ``N - step + 1``. Every digit past that, and the comma before it, is a
critical character: the model must write ``,`` and a digit where it was trained to close ``]``. Names follow
the reference implementation: from the bracket backwards ``n+g_digit``, ``n+g_comma``, ..., ``n+1_digit``,
``n+1_comma`` (a list with no digit seen at all starts with ``n+1_digit``, which has no comma).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import task
from .losses import certainty, kl_weight
from .sampling import completion_logits, forward, generate, left_pad
from .tokenizer import encode


@dataclass(frozen=True)
class CriticalToken:
    step: int      # scratchpad line, 1 = first
    operand: int   # 1 (left list) or 2 (right list)
    name: str      # e.g. "n+1_comma"
    index: int     # character (= token) offset into prompt(a, b) + scratchpad(a, b)
    char: str      # the correct character there


def locate(a: int, b: int, level: int, steps: int = 3) -> list[CriticalToken]:
    """Critical characters of ``(a, b)`` for a model pre-trained up to ``level`` digits, on the first
    ``steps`` scratchpad lines (the reference code tracks three)."""
    task._check_level(level)
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    text = task.full_text(a, b)
    lines_start = text.index("<scratch>\n") + len("<scratch>\n")
    body = text[lines_start:].split("\n")
    out, offset = [], lines_start
    digits = (len(str(a)), len(str(b)))
    for step, line in enumerate(body[:steps], start=1):
        if not line.startswith("["):
            break
        left_end = line.index("]")
        right_start = line.index("[", left_end)
        for operand, open_pos in ((1, 0), (2, right_start)):
            m = max(digits[operand - 1] - step + 1, 0)          # digits in this list
            seen = max(level - step + 1, 0)                      # longest list seen here in pre-training
            for j in range(seen + 1, m + 1):                     # 1-based digit number in the list
                g = j - seen
                digit_pos = offset + open_pos + 1 + 2 * (j - 1)
                if j > 1:
                    out.append(CriticalToken(step, operand, f"n+{g}_comma", digit_pos - 1, ","))
                out.append(CriticalToken(step, operand, f"n+{g}_digit", digit_pos, text[digit_pos]))
        offset += len(line) + 1
    assert all(text[c.index] == c.char for c in out)
    return out


# -------------------------------------------------------------------------------------------------
@torch.no_grad()
def teacher_forced(model, tok, problems, temperature: float = 1.0, ref_temperature: float = 1.0,
                   batch_size: int = 32):
    """Per text: ``(ids, logits)`` of a full forward over the true prompt + scratchpad. Position ``i`` of
    the returned logits predicts character ``i`` (so index 0 is never predicted)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(problems), batch_size):
        chunk = problems[s:s + batch_size]
        seqs = [encode(tok, task.full_text(a, b)) for a, b in chunk]
        ids, mask = left_pad(seqs, tok.pad_token_id, device)
        logits, _, _, _ = forward(model, ids, mask)
        for i, seq in enumerate(seqs):
            pad = ids.shape[1] - len(seq)
            lg = logits[i, pad:pad + len(seq)]
            out.append((torch.tensor(seq), torch.cat([torch.full_like(lg[:1], float("nan")), lg[:-1]])))
    return out


def measure(model, tok, problems, level: int, temperature: float = 1.0, ref_temperature: float = 1.0,
            alpha: float = 1.0, steps: int = 3) -> pd.DataFrame:
    """One row per target character of each problem, teacher-forced on the true text: the probability
    of the correct character (at ``temperature``), the certainty J(s) (at ``ref_temperature``), the
    prioritized weight J^alpha, and whether the position is critical (with its name)."""
    rows = []
    for p, ((a, b), (ids, logits)) in enumerate(zip(problems, teacher_forced(model, tok, problems))):
        crit = {c.index: c for c in locate(a, b, level, steps)}
        start = len(task.prompt(a, b))
        lg = logits[start:]
        tgt = ids[start:]
        p_ok = torch.softmax(lg / temperature, -1).gather(-1, tgt[:, None]).squeeze(-1)
        cert = certainty(lg, ref_temperature)
        w = kl_weight("prioritized", cert, alpha)
        for t in range(len(tgt)):
            i = start + t
            c = crit.get(i)
            rows.append(dict(problem=p, a=a, b=b, index=i, char=tok.convert_ids_to_tokens(int(tgt[t])),
                             p_correct=float(p_ok[t]), certainty=float(cert[t]), weight=float(w[t]),
                             critical=c is not None, name=c.name if c else "", step=c.step if c else 0,
                             operand=c.operand if c else 0))
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (and median) of the per-position quantities at critical vs other positions."""
    g = df.groupby("critical")[["p_correct", "certainty", "weight"]]
    s = g.agg(["mean", "median"])
    s.columns = [f"{a}_{b}" for a, b in s.columns]
    s.insert(0, "n", df.groupby("critical").size())
    return s.reset_index()


# -------------------------------------------------------------------------------------------------
def _critical_states(gen_ids: torch.Tensor, mask: torch.Tensor, truth: list[int], crit_idx: list[int]):
    """Completion positions t whose state s_t (the prefix before t) is a critical state of the true
    scratchpad: t is a critical index and the generation matched the truth on all of [0, t)."""
    n = int(mask.sum())
    gen = gen_ids[:n].tolist()
    first_diff = next((i for i, (x, y) in enumerate(zip(gen, truth)) if x != y), min(n, len(truth)))
    return [t for t in crit_idx if t <= first_diff and t < n]


def critical_mask(gen, tok, problems, level: int, steps: int = 3) -> torch.Tensor:
    """``(B, L)`` 0/1 mask over a generation's completion tokens: 1 at the states of the true
    scratchpad's critical positions that the episode reached while still matching the truth."""
    crit = torch.zeros_like(gen.completion_mask)
    for i, (a, b) in enumerate(problems):
        P = len(task.prompt(a, b))
        idx = [c.index - P for c in locate(a, b, level, steps)]
        truth = encode(tok, task.scratchpad(a, b))
        for t in _critical_states(gen.completion_ids[i], gen.completion_mask[i], truth, idx):
            crit[i, t] = 1
    return crit


@torch.no_grad()
def certainty_delta(model, tok, level: int, extra_digits: int = 1, n_generations: int = 50, temperature: float = 1.0,
                    ref_temperature: float = 1.0, seed: int = 0, steps: int = 3) -> pd.DataFrame:
    """The paper's Table 1 quantity, in critkl's reading: Delta-J(s) = J(s) - mean_{s' in g} J(s').

    ``n_generations`` plus-k problems (k = ``extra_digits``) are sampled from the model (KV cache, one batch); J is the
    certainty of the model (at ``ref_temperature``) at each visited state. For each generation it
    averages Delta-J over the critical states it visited (states of the true scratchpad at a critical
    index, reached while the generation still matched the truth) and over all other states. Returns one
    row per generation; see ``table1`` for the mean and standard error.
    """
    rng = np.random.default_rng([seed, level, extra_digits])
    problems = task.Split("plus", level, extra_digits).sample(n_generations, rng)
    device = next(model.parameters()).device
    gen_rng = torch.Generator(device=device).manual_seed(seed)
    max_new = task.episode_limit(level, extra_digits)
    gen = generate(model, tok, [task.prompt(a, b) for a, b in problems], max_new, temperature, gen_rng)
    logits, _, _ = completion_logits(model, gen)
    cert = certainty(logits, ref_temperature)
    rows = []
    for i, (a, b) in enumerate(problems):
        P = len(task.prompt(a, b))
        truth = encode(tok, task.scratchpad(a, b))
        crit = [c.index - P for c in locate(a, b, level, steps)]
        m = gen.completion_mask[i].bool()
        c = cert[i][m]
        delta = c - c.mean()
        cs = _critical_states(gen.completion_ids[i], gen.completion_mask[i], truth, crit)
        is_c = torch.zeros_like(m[m]); is_c[cs] = True
        rows.append(dict(generation=i, a=a, b=b, correct=task.is_correct(gen.texts[i], a, b),
                         n_critical=len(cs), delta_critical=float(delta[is_c].mean()) if cs else float("nan"),
                         delta_noncritical=float(delta[~is_c].mean()),
                         delta_noncritical_min=float(delta[~is_c].min()),
                         certainty_critical=float(c[is_c].mean()) if cs else float("nan"),
                         certainty_noncritical=float(c[~is_c].mean())))
    return pd.DataFrame(rows)


def table1(per_generation: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over generations of Delta-J at critical and non-critical states."""
    out = []
    for col, label in (("delta_critical", "critical"), ("delta_noncritical", "non-critical")):
        x = per_generation[col].dropna()
        out.append(dict(tokens=label, mean=x.mean(), se=x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan,
                        n_generations=len(x)))
    return pd.DataFrame(out)


# -------------------------------------------------------------------------------------------------
def tracking_problems(level: int, extra_digits: int = 1, n: int = 16, seed: int = 0):
    """A fixed set of plus-k problems on which critical-token probabilities are tracked during RL."""
    return task.Split("plus", level, extra_digits).sample(n, np.random.default_rng([seed, 7, level, extra_digits]))


def critical_probabilities(model, tok, problems, level: int, temperature: float = 1.0,
                           steps: int = 3) -> pd.DataFrame:
    """Teacher-forced probability of the correct character at every critical position, one row each
    (``step``, ``operand``, ``name``), averaged over ``problems``."""
    df = measure(model, tok, problems, level, temperature=temperature, steps=steps)
    df = df[df.critical]
    return (df.groupby(["step", "operand", "name"], as_index=False)["p_correct"].mean()
            if len(df) else pd.DataFrame(columns=["step", "operand", "name", "p_correct"]))
