"""The paper's reported numbers, as data, so that the book prints them beside ours without typing them.

Vassoyan, Beau, Plaud (2025), "Ignore the KL Penalty! Boosting Exploration on Critical Tokens to Enhance RL
Fine-Tuning", arXiv 2502.06533 (values copied from its Tables 1, 4 and 5, its Figs. 3, 4 and 6, and its model
description). The hyper-parameters of its KL experiment (Appendix D, Table 3) are the ``paper`` RL preset of
``critkl.config``.
"""
from __future__ import annotations

import pandas as pd

# Table 4 (appendix D.1): accuracy of the pre-trained models, both operands of the same length;
# mean and spread over evaluations, in percent. Level = the N the model was pre-trained up to.
TABLE4 = pd.DataFrame([
    (7, "N", 98.9, 0.7), (7, "N+1", 48.8, 3.0), (7, "N+2", 0.0, 0.0), (7, "N+3", 0.0, 0.0),
    (9, "N", 96.4, 0.6), (9, "N+1", 78.9, 2.4), (9, "N+2", 0.5, 0.5), (9, "N+3", 0.0, 0.0),
    (11, "N", 91.2, 1.3), (11, "N+1", 75.1, 2.7), (11, "N+2", 30.7, 2.4), (11, "N+3", 0.2, 0.3),
    (13, "N", 93.0, 1.6), (13, "N+1", 88.9, 2.1), (13, "N+2", 67.7, 3.1), (13, "N+3", 20.4, 2.4),
], columns=["level", "digits", "accuracy_pct", "spread_pct"])

# Table 1: Delta-J-hat at critical vs non-critical tokens, averaged over 50 generations (max-probability
# certainty of the released code is not stated there; the text defines Eq. 2, normalized negentropy).
TABLE1 = pd.DataFrame([
    (3, "critical", -0.33, 0.01), (3, "non-critical (min.)", 0.0012, 0.0001),
    (5, "critical", -0.21, 0.18), (5, "non-critical (min.)", 0.0002, 0.0001),
    (7, "critical", -0.13, 0.04), (7, "non-critical (min.)", 0.0004, 0.0001),
], columns=["level", "tokens", "delta_J", "spread"])

# Table 5 (appendix D.1): accuracy with operands of different lengths; only the N = 7 row is legible in the
# paper's text (the other rows are not transcribed here), in percent.
TABLE5 = pd.DataFrame([(7, "N", 100.0, 0.0), (7, "N+1", 69.0, 2.4), (7, "N+2", 0.0, 0.0)],
                      columns=["level", "digits", "accuracy_pct", "spread_pct"])

# Section 4 / appendix D: the paper's models, GPT-2s of about 85M parameters with a character tokenizer, trained
# from scratch on scratchpad additions balanced over operand lengths 1..N, at N = 7, 9, 11 and 13.
MODEL = dict(arch="GPT-2", params_millions=85, levels=(7, 9, 11, 13))


def words(values, last: str = "and") -> str:
    """``(7, 9, 11, 13)`` -> ``'7, 9, 11 and 13'``, for prose."""
    values = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} {last} {values[-1]}"


def model_text() -> str:
    """The paper's models in words, for prose: ``'GPT-2, ~85M parameters'``."""
    return f"{MODEL['arch']}, ~{MODEL['params_millions']}M parameters"


# Fig. 4: learning curves of the standard and prioritized KL from the N = 7 model, on plus-1 (N + 1 = 8) problems.
FIG4 = dict(level=7, extra_digits=1)

# Fig. 3: RL with the standard KL from models pre-trained up to N = 9, 11, 13, on plus-2 problems (its caption and
# released code; its text says plus-1), KL coefficient 10, 3 rounds.
FIG3 = dict(levels=(9, 11, 13), extra_digits=2, kl_coef=10, rounds=3)

# Fig. 6 and Appendix C: the ablation over the certainty exponent (the paper's beta, critkl's alpha), pass@1 over
# training with the prioritized KL at each exponent, 9 seeds. The paper reads it in words: slightly ahead of the
# standard KL from 10 to 500, best at 500, declining at 1000 and far worse at 10000.
FIG6 = dict(seeds=9, ahead_from=10, ahead_to=500, best=500, declining_at=1000, far_worse_at=10000)
