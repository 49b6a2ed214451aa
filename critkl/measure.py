"""Measuring a model at its critical tokens (the paper's Section 3, Table 1, Appendix B, Figs. 1, 5 and 7).

``critkl.critical`` says where the critical characters are; this module says what a model does there:
teacher-forced probabilities and certainties at every position (``measure``), the paper's Table 1 Delta-J
(``certainty_delta``, ``table1``), the prioritized weight under several calibrations (``calibrations``) and
as a detector of critical states (``detector``), the probabilities the trainer tracks during RL
(``critical_probabilities``, Fig. 7), where sampled failures start (``failure_sites``) and one sampled output
with a certainty per character (``sampled_example``, Figs. 1 and 5; ``critkl.plots.render_html`` draws it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import task
from .analysis import auroc, detection, mean_ci
from .critical import APPENDIX_B_NAME, SITES, locate, reached_critical_states
from .config import CERTAINTIES
from .losses import kl_weight
from .losses import certainty as certainty_of
from .sampling import completion_logits, generate, teacher_forced
from .tokenizer import decode, encode


# -------------------------------------------------------------------------------------------------
# Teacher-forced probabilities and certainties at every position
def measure(model, tok, problems, level: int, temperature: float = 1.0, ref_temperature: float = 1.0,
            alpha: float = 1.0, steps: int = 3, sites=("paper",), certainty: str = "max_prob") -> pd.DataFrame:
    """One row per target character of each problem, teacher-forced on the true text: the probability
    of the correct character (at ``temperature``), the certainty J(s) (at ``ref_temperature``, in the form
    ``certainty``: max_prob or entropy, see ``losses.certainty``), the prioritized weight J^alpha, and
    whether the position is critical (with its name)."""
    kind = certainty
    rows = []
    for p, ((a, b), (ids, logits)) in enumerate(zip(problems, teacher_forced(model, tok, problems))):
        crit = {c.index: c for c in locate(a, b, level, steps, sites)}
        start = len(task.prompt(a, b))
        lg = logits[start:]
        tgt = ids[start:]
        p_ok = torch.softmax(lg / temperature, -1).gather(-1, tgt[:, None]).squeeze(-1)
        cert = certainty_of(lg, ref_temperature, kind)
        w = kl_weight("prioritized", cert, alpha)
        for t in range(len(tgt)):
            i = start + t
            c = crit.get(i)
            rows.append(dict(problem=p, a=a, b=b, index=i, char=tok.convert_ids_to_tokens(int(tgt[t])),
                             p_correct=float(p_ok[t]), certainty=float(cert[t]), weight=float(w[t]),
                             critical=c is not None, name=c.name if c else "", step=c.step if c else 0,
                             operand=c.operand if c else 0))
    return pd.DataFrame(rows)


@torch.no_grad()
def detector(model, tok, level: int, extra_digits: int = 1, n: int = 128, seed: int = 0,
             alphas=(150.0, 1000.0), ref_temperatures=(1.0, 4.0), certainty=CERTAINTIES,
             steps: int = 3, sites=SITES) -> pd.DataFrame:
    """The paper's bet as a detector: does the prioritized weight J(s)^alpha fall below 0.5 exactly
    at the critical states? On the true texts of ``n`` plus-k problems (teacher-forced, so every
    state is on the path to a correct answer), per certainty form x reference temperature x alpha:
    precision and recall of "weight < 0.5" against the states the locator marks critical (``sites``:
    the paper's commas and digits and the Appendix-B site), and the AUROC of 1 - J(s) (the same for
    every alpha: the weight is a monotone function of J). One row each, with the certainty below
    which the weight is under 0.5."""
    problems = task.Split("plus", level, extra_digits).sample(
        n, np.random.default_rng([seed, 5, level, extra_digits]))
    logits, critical = [], []
    for (a, b), (ids, lg) in zip(problems, teacher_forced(model, tok, problems)):
        start = len(task.prompt(a, b))
        is_c = torch.zeros(len(ids), dtype=torch.bool)
        is_c[[c.index for c in locate(a, b, level, steps, sites)]] = True
        logits.append(lg[start:])
        critical.append(is_c[start:])
    logits, critical = torch.cat(logits), torch.cat(critical).numpy()
    rows = []
    for kind in ((certainty,) if isinstance(certainty, str) else certainty):
        for t in ref_temperatures:
            cert = certainty_of(logits, t, kind)
            area = auroc(-cert.numpy(), critical)
            for alpha in alphas:
                w = kl_weight("prioritized", cert, alpha).numpy()
                rows.append(dict(certainty=kind, ref_temperature=t, alpha=alpha,
                                 threshold=0.5 ** (1 / alpha), tokens=len(w),
                                 critical=int(critical.sum()), **detection(w < 0.5, critical),
                                 auroc=area, weight_critical=float(w[critical].mean()),
                                 weight_other=float(w[~critical].mean())))
    return pd.DataFrame(rows)


def detector_summary(det: pd.DataFrame, by=("level", "certainty", "ref_temperature", "alpha")) -> pd.DataFrame:
    """``detector`` rows of several checkpoints (a ``checkpoint`` column) averaged per ``by``: how many
    checkpoints, mean precision, recall and AUROC (and the worst AUROC), mean weight at critical and other
    states."""
    return (det.groupby(list(by))
            .agg(checkpoints=("checkpoint", "nunique"), precision=("precision", "mean"), recall=("recall", "mean"),
                 auroc=("auroc", "mean"), auroc_min=("auroc", "min"), weight_critical=("weight_critical", "mean"),
                 weight_other=("weight_other", "mean")).reset_index())


def calibrations(model, tok, problems, level: int, calibrations: dict, certainty=CERTAINTIES) -> pd.DataFrame:
    """``measure`` under several calibrations of the prioritized weight, ``{name: (ref_temperature, alpha)}``,
    and both certainty forms: the rows of each, with columns ``calibration``, ``certainty_kind`` and
    ``tokens`` (critical or other)."""
    frames = [measure(model, tok, problems, level, temperature=1.0, ref_temperature=t, alpha=alpha, certainty=kind)
              .assign(calibration=name, certainty_kind=kind)
              for name, (t, alpha) in calibrations.items() for kind in certainty]
    m = pd.concat(frames, ignore_index=True)
    return m.assign(tokens=m.critical.map({True: "critical", False: "other"}))


def calibration_summary(m: pd.DataFrame) -> pd.DataFrame:
    """Per calibration, certainty form and token kind (``calibrations`` rows): how many states, the median
    certainty, the median and mean prioritized weight."""
    return m.groupby(["calibration", "certainty_kind", "tokens"]).agg(
        n=("weight", "size"), certainty_median=("certainty", "median"), weight_median=("weight", "median"),
        weight_mean=("weight", "mean")).reset_index()


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (and median) of the per-position quantities at critical vs other positions."""
    g = df.groupby("critical")[["p_correct", "certainty", "weight"]]
    s = g.agg(["mean", "median"])
    s.columns = [f"{a}_{b}" for a, b in s.columns]
    s.insert(0, "n", df.groupby("critical").size())
    return s.reset_index()


# -------------------------------------------------------------------------------------------------
# Table 1: Delta-J at critical vs non-critical states (the paper's Section 3.3)
def delta_certainty(certainties):
    """The paper's Section 3.3 Delta-J: each token's certainty minus the mean certainty over the
    *other* tokens of the same generation,
    d_i = c_i - (sum_j c_j - c_i) / (n - 1) = n / (n - 1) (c_i - mean c).

    A 1-D ``torch.Tensor`` or ``np.ndarray`` in, the same type out (float). ``n == 1``: NaN (no
    other token); empty: ValueError. Example: [1.0, 0.5, 0.0] -> [0.75, 0.0, -0.75]."""
    is_torch = isinstance(certainties, torch.Tensor)
    x = (certainties if certainties.is_floating_point() else certainties.double()) if is_torch \
        else np.asarray(certainties, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"delta_certainty takes the certainties of one generation (1-D), "
                         f"got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("delta_certainty of an empty generation")
    if n == 1:
        return x * float("nan")
    return x - (x.sum() - x) / (n - 1)


def generation_deltas(cert, critical_positions) -> dict:
    """Table-1 numbers of one generation from its per-token certainties and its critical positions: mean
    Delta-J (``delta_certainty``) over the critical positions and over the others, the others' minimum,
    and the mean certainty of each group (NaN for an empty group)."""
    c = torch.as_tensor(cert, dtype=torch.float64)
    d = delta_certainty(c)
    is_c = torch.zeros(len(c), dtype=torch.bool)
    is_c[list(critical_positions)] = True
    mean = lambda x: float(x.mean()) if len(x) else float("nan")  # noqa: E731
    return dict(n_tokens=len(c), n_critical=int(is_c.sum()), delta_critical=mean(d[is_c]),
                delta_noncritical=mean(d[~is_c]), delta_noncritical_min=float(d[~is_c].min()) if (~is_c).any()
                else float("nan"), certainty_critical=mean(c[is_c]), certainty_noncritical=mean(c[~is_c]))


@torch.no_grad()
def certainty_delta(model, tok, level: int, extra_digits: int = 1, n_generations: int = 50, temperature: float = 1.0,
                    ref_temperature: float = 1.0, seed: int = 0, steps: int = 3, certainty=CERTAINTIES,
                    sites=("paper",)) -> pd.DataFrame:
    """The paper's Table 1 quantity: Delta-J(s) (``delta_certainty``) at critical vs non-critical states.

    ``n_generations`` plus-k problems (k = ``extra_digits``) are sampled from the model (KV cache, one
    batch); J is the model's certainty (at ``ref_temperature``) at each visited state, in each form of
    ``kinds`` (``losses.certainty``: ``max_prob``, the released code's; ``entropy``, the paper's Eq. 2).
    Critical states are states of the true scratchpad at a critical index, reached while the generation
    still matched the truth. Returns one row per generation per certainty kind (``generation_deltas``
    columns plus generation, a, b, correct, certainty_kind); ``table1`` gives the means."""
    rng = np.random.default_rng([seed, level, extra_digits])
    problems = task.Split("plus", level, extra_digits).sample(n_generations, rng)
    device = next(model.parameters()).device
    gen_rng = torch.Generator(device=device).manual_seed(seed)
    gen = generate(model, tok, [task.prompt(a, b) for a, b in problems], task.episode_limit(level, extra_digits),
                   temperature, gen_rng)
    logits, _, _ = completion_logits(model, gen)
    states = []
    for i, (a, b) in enumerate(problems):
        crit = [c.index - len(task.prompt(a, b)) for c in locate(a, b, level, steps, sites)]
        states.append(reached_critical_states(gen.completion_ids[i], gen.completion_mask[i],
                                              encode(tok, task.scratchpad(a, b)), crit))
    rows = []
    for kind in ((certainty,) if isinstance(certainty, str) else certainty):
        cert = certainty_of(logits, ref_temperature, kind).cpu()
        for i, (a, b) in enumerate(problems):
            m = gen.completion_mask[i].bool().cpu()
            rows.append(dict(generation=i, a=a, b=b, correct=task.is_correct(gen.texts[i], a, b), certainty_kind=kind,
                             **generation_deltas(cert[i][m], states[i])))
    return pd.DataFrame(rows)


TABLE1_COLUMNS = (("delta_critical", "critical"), ("delta_noncritical", "non-critical"),
                  ("delta_noncritical_min", "non-critical (min.)"))


def table1(per_generation: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per certainty kind x (critical, non-critical, non-critical minimum): mean over generations of
    ``certainty_delta``'s columns, its standard error and its ``confidence`` t-interval
    (``critkl.analysis.mean_ci``); generations that visited no critical state are left out of ``critical``."""
    kinds = (per_generation.groupby("certainty_kind", sort=False) if "certainty_kind" in per_generation
             else [("max_prob", per_generation)])
    out = []
    for kind, g in kinds:
        for col, label in TABLE1_COLUMNS:
            if col not in g:
                continue
            x = g[col].dropna().to_numpy(dtype=float)
            mean, half, n = mean_ci(x, confidence)
            out.append(dict(certainty_kind=kind, tokens=label, mean=mean,
                            se=x.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan,
                            ci_low=mean - half, ci_high=mean + half, n_generations=n))
    return pd.DataFrame(out)


# -------------------------------------------------------------------------------------------------
# Fig. 7: tracking during RL
def tracking_problems(level: int, extra_digits: int = 1, n: int = 16, seed: int = 0):
    """A fixed set of plus-k problems on which critical-token probabilities are tracked during RL."""
    return task.Split("plus", level, extra_digits).sample(n, np.random.default_rng([seed, 7, level, extra_digits]))


def critical_probabilities(model, tok, problems, level: int, temperature: float = 1.0,
                           steps: int = 3, sites=SITES) -> pd.DataFrame:
    """Teacher-forced probability of the correct character at every critical position, one row each
    (``step``, ``operand``, ``name``), averaged over ``problems``. By default both the paper's set and
    the Appendix-B ``n_copy`` site (rows named ``n_copy``)."""
    df = measure(model, tok, problems, level, temperature=temperature, steps=steps, sites=sites)
    df = df[df.critical]
    return (df.groupby(["step", "operand", "name"], as_index=False)["p_correct"].mean()
            if len(df) else pd.DataFrame(columns=["step", "operand", "name", "p_correct"]))


# -------------------------------------------------------------------------------------------------
# Where failures start (the paper's Section 3: failures at critical tokens; Appendix B)
def first_divergence(text: str, truth: str) -> int:
    """Index of the first character where ``text`` differs from ``truth``; if one is a prefix of the
    other, the length of the shorter; -1 if they are equal."""
    if text == truth:
        return -1
    return next((i for i, (x, y) in enumerate(zip(text, truth)) if x != y), min(len(text), len(truth)))


def _line_of(truth: str, index: int) -> int:
    """Scratchpad line of completion offset ``index`` (1 = first list line, 0 = the ``<scratch>`` header;
    a line's closing newline belongs to it)."""
    return max(truth[:index].count("\n") - 1, 0)


def classify_site(a: int, b: int, level: int, index: int, steps: int = 3) -> str:
    """What sits at completion offset ``index`` (into ``task.scratchpad(a, b)``) for a model pre-trained
    up to ``level``: ``"critical:<name>"`` at one of the paper's critical characters, ``"appendix_b"`` at
    the ``n_copy`` site, else ``"header"`` (``\\n<scratch>\\n``), ``"line <i>"`` (scratchpad line i, the
    ``END`` line included) or ``"answer"`` (``</scratch>``, the answer line, or past the end)."""
    P = len(task.prompt(a, b))
    crit = {c.index - P: c.name for c in locate(a, b, level, steps, SITES)}
    if index in crit:
        return "appendix_b" if crit[index] == APPENDIX_B_NAME else f"critical:{crit[index]}"
    truth = task.scratchpad(a, b)
    line = _line_of(truth, index)
    n_lines = max(len(str(a)), len(str(b))) + 1
    if index >= len(truth) or line > n_lines:
        return "answer"
    return "header" if line == 0 else f"line {line}"


def failure_row(text: str, a: int, b: int, level: int, steps: int = 3) -> dict:
    """One completion's first wrong character: ``index`` (completion offset, -1 if none), ``line``,
    ``site`` (``classify_site``, "none" if the text is the truth), ``before`` (16 true characters before
    it), ``wrote`` and ``truth`` (8 characters from it)."""
    truth = task.scratchpad(a, b)
    i = first_divergence(text, truth)
    if i < 0:
        return dict(a=a, b=b, correct=True, index=-1, line=-1, site="none", before="", wrote="", truth="")
    return dict(a=a, b=b, correct=task.is_correct(text, a, b), index=i, line=_line_of(truth, i),
                site=classify_site(a, b, level, i, steps), before=truth[max(0, i - 16):i], wrote=text[i:i + 8],
                truth=truth[i:i + 8])


@torch.no_grad()
def failure_sites(model, tok, level: int, extra_digits: int = 1, n: int = 128, temperature: float = 1.0,
                  seed: int = 5, steps: int = 3) -> pd.DataFrame:
    """Where do a model's plus-k failures start? ``n`` plus-k problems (``np.random.default_rng(seed)``),
    one completion each sampled at ``temperature`` (torch generator seed 0); one ``failure_row`` per
    problem. ``failure_site_counts`` tallies them."""
    problems = task.Split("plus", level, extra_digits).sample(n, np.random.default_rng(seed))
    device = next(model.parameters()).device
    gen = generate(model, tok, [task.prompt(a, b) for a, b in problems], task.episode_limit(level, extra_digits),
                   temperature, torch.Generator(device=device).manual_seed(0))
    return pd.DataFrame([failure_row(t, a, b, level, steps) for t, (a, b) in zip(gen.texts, problems)])


def failure_site_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Counts of ``failure_sites`` rows per site: correct problems count as ``"correct"`` (wherever their
    scratchpad first differs), the rest by the site of their first wrong character; ``share`` is the
    fraction of the failures (NaN for ``correct``). Sorted by count."""
    site = df["site"].where(~df["correct"].astype(bool), "correct")
    c = site.value_counts().rename_axis("site").reset_index(name="n")
    n_fail = int((~df["correct"].astype(bool)).sum())
    c["share"] = np.where(c.site == "correct", np.nan, c.n / max(n_fail, 1))
    return c


# -------------------------------------------------------------------------------------------------
# Figs. 1 and 5: one real output, each character coloured by the model's certainty
@torch.no_grad()
def sampled_example(model, tok, a: int, b: int, level: int, temperature: float = 1.0, ref_temperature: float = 1.0,
                    certainty: str = "max_prob", seed: int = 0) -> dict:
    """Sample the model's completion of ``a+b`` and return ``text`` (prompt + completion), ``values`` (per
    character of ``text``: the model's certainty J at the state that produced it, None on the prompt),
    ``critical`` (indices of the true scratchpad's critical characters that the sample reached while still
    matching the truth) and ``correct``. ``critkl.plots.render_html(**...)`` draws it."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    gen = generate(model, tok, [task.prompt(a, b)], task.episode_limit(level, max(1, len(str(max(a, b))) - level)),
                   temperature, g)
    logits, _, _ = completion_logits(model, gen)
    n = int(gen.completion_mask[0].sum())
    cert = certainty_of(logits[0, :n], ref_temperature, certainty).tolist()
    prompt = task.prompt(a, b)
    P = len(prompt)
    truth = encode(tok, task.scratchpad(a, b))
    reached = reached_critical_states(gen.completion_ids[0], gen.completion_mask[0], truth,
                                      [c.index - P for c in locate(a, b, level)])
    completion = decode(tok, gen.completion_ids[0, :n])
    return dict(text=prompt + completion, values=[None] * P + cert[:len(completion)],
                critical=[P + t for t in reached], correct=task.is_correct(completion, a, b))
