"""The RL loss, term by term (CleanRL style), with the paper's equations in the docstrings.

Notation: ``logp`` = log pi_theta(a_t | s_t) and ``ref_logp`` = log pi_ref(a_t | s_t), both at the sampling
temperature, for the sampled token a_t; every ``per_token_*`` tensor is ``(B, L)`` and masked once by the
completion mask. The paper calls the certainty exponent beta; critkl calls it ``alpha`` and keeps ``beta``
for the KL coefficient, as TRL does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import CERTAINTIES, KL_ESTIMATORS, KL_VARIANTS, LOSS_AVERAGES


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log pi(a) - log pi_ref(a)   (unbiased, can be negative)."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = 1/2 (log pi_ref(a) - log pi(a))^2   (the paper's choice)."""
    return 0.5 * (ref_logp - logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = (r - 1) - log r,  r = pi_ref(a) / pi(a)   (unbiased and >= 0)."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


KL_FUNCTIONS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(logp, ref_logp, estimator: str = "k2") -> torch.Tensor:
    if estimator not in KL_FUNCTIONS:
        raise ValueError(f"unknown KL estimator {estimator!r}; allowed: {', '.join(KL_ESTIMATORS)}")
    return KL_FUNCTIONS[estimator](logp, ref_logp)


def certainty(ref_logits: torch.Tensor, temperature: float, kind: str = "max_prob") -> torch.Tensor:
    """J(s), the reference model's certainty at state s, in [0, 1]: 1 for a one-hot distribution, 0
    for a uniform one. ``temperature`` is the reference temperature T (4 in the paper), applied as
    softmax(logits / T); |V| is the vocabulary size.

    - ``kind="max_prob"`` (the released code): J(s) = 1 + log max_v pi_ref^T(v | s) / log |V|.
    - ``kind="entropy"`` (the paper's Eq. 2, normalized negentropy):
      J(s) = (H_max - H(pi_ref^T(. | s))) / H_max, with H the Shannon entropy and H_max = log |V|.
    """
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"reference temperature={temperature} must be a finite number > 0")
    if kind not in CERTAINTIES:
        raise ValueError(f"certainty kind={kind!r} is not allowed; "
                         f"choose one of: {', '.join(CERTAINTIES)}")
    logp = F.log_softmax(ref_logits.float() / temperature, dim=-1)
    h_max = math.log(ref_logits.shape[-1])
    if kind == "max_prob":
        return 1.0 + logp.max(dim=-1).values / h_max
    per_state_entropy = -(logp.exp() * logp).sum(-1)
    return (h_max - per_state_entropy) / h_max


def prioritized_weight(cert: torch.Tensor, alpha: float) -> torch.Tensor:
    """w(s) = J(s) ** alpha: near 1 where the reference is certain, near 0 where it hesitates.

    ``alpha = 0`` gives weight 1 everywhere, i.e. the standard KL. No gradient flows through w.
    """
    if alpha < 0:
        raise ValueError(f"alpha={alpha} must be >= 0")
    return cert.detach().clamp(0.0, 1.0) ** alpha


def kl_weight(variant: str, cert: torch.Tensor, alpha: float,
              critical: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token weight of the KL term: 1 (standard), J(s)^alpha (prioritized), 0 (none); with the
    true critical states (``critical``, 1 where the locator marks one): 1 - critical (oracle: the KL
    lifted exactly where the task says exploration is needed) or critical (oracle_inverse, the
    control)."""
    if variant not in KL_VARIANTS:
        raise ValueError(f"unknown KL variant {variant!r}; allowed: {', '.join(KL_VARIANTS)}")
    if variant == "prioritized":
        return prioritized_weight(cert, alpha)
    if variant in ("oracle", "oracle_inverse"):
        if critical is None:
            raise ValueError(f"kl={variant!r} needs the critical-state mask")
        c = critical.to(cert.dtype)
        return 1.0 - c if variant == "oracle" else c
    return torch.full_like(cert, 1.0 if variant == "standard" else 0.0)


def top_entropy_mask(per_token_entropy: torch.Tensor, mask: torch.Tensor,
                     quantile: float) -> torch.Tensor:
    """Forking tokens (Wang et al. 2025, arXiv 2506.01939; TRL's ``top_entropy_quantile``): 1 on the
    masked tokens whose entropy is at least the (1 - ``quantile``) quantile of the masked entropies,
    0 elsewhere; ``quantile = 1`` keeps every masked token. No gradient."""
    m = mask > 0
    if quantile >= 1.0 or not m.any():
        return m.to(per_token_entropy.dtype)
    h = per_token_entropy.detach()
    threshold = torch.quantile(h[m].float(), 1.0 - quantile)
    return (m & (h >= threshold)).to(per_token_entropy.dtype)


def entropy_weighted_advantages(adv: torch.Tensor, per_token_entropy: torch.Tensor,
                                mask: torch.Tensor) -> torch.Tensor:
    """Each token's advantage times its policy entropy over the mean entropy of the masked tokens:
    A_t H_t / mean(H), so a sequence's credit goes to its uncertain (forking) tokens, its total
    scale kept. The token-entropy weighting of GTPO (arXiv 2508.04349), simplified: GTPO's mixing
    with the sequence reward and its separate shaping of failed sequences are left out. No gradient
    through H."""
    h = per_token_entropy.detach()
    return adv * h / masked_mean(h, mask).clamp(min=1e-8)


def pg_loss_a2c(logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """A2C policy term: -A_t log pi(a_t | s_t)."""
    return -adv.detach() * logp


def pg_loss_ppo(logp, old_logp, adv, clip: float = 0.2) -> torch.Tensor:
    """PPO clipped surrogate: max(-A r_t, -A clip(r_t, 1-eps, 1+eps)), r_t = pi / pi_old."""
    ratio = torch.exp(logp - old_logp.detach())
    adv = adv.detach()
    return torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """CleanRL's ``approx_kl``: (r_t - 1) - log r_t, r_t = pi(a_t | s_t) / pi_old(a_t | s_t), the k3 estimate
    of KL(pi_old || pi) on the sampled tokens (>= 0; 0 before the first step). A diagnostic, not a loss term."""
    log_ratio = logp.detach() - old_logp.detach()
    return torch.expm1(log_ratio) - log_ratio


def clipped(logp: torch.Tensor, old_logp: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """Where PPO's clip is active, |r_t - 1| > clip (CleanRL's ``clipfrac`` is its mean)."""
    return (torch.exp(logp.detach() - old_logp.detach()) - 1).abs() > clip


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CleanRL's ``explained_variance`` over the masked tokens: 1 - Var[R - V] / Var[R] (population
    variances); 1 for a perfect critic, 0 for a constant one, < 0 for one worse than constant; NaN when
    the returns do not vary."""
    m = mask.bool()
    v, r = values.detach()[m].double(), returns.detach()[m].double()
    var_r = r.var(unbiased=False) if len(r) else torch.tensor(0.0, dtype=torch.float64)
    return (1 - (r - v).var(unbiased=False) / var_r) if var_r > 0 else torch.tensor(float("nan"))


def group_advantages(episode_rewards: torch.Tensor, group_size: int, scale: str = "std",
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantage (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2; TRL's ``GRPOTrainer``): each
    episode's reward against the other samples of the same problem,
    A_i = (R_i - mean_g R) / (std_g R + eps), with the unbiased group std as TRL computes it;
    ``scale="none"`` is Dr. GRPO's (Liu et al. 2025) R_i - mean_g R. ``episode_rewards`` is ``(B,)``
    with the G samples of a problem consecutive. A group whose samples all fail (or all succeed)
    gets advantage 0 everywhere: it pushes nothing."""
    r = episode_rewards.float().view(-1, group_size)
    adv = r - r.mean(1, keepdim=True)
    if scale == "std":
        adv = adv / (r.std(1, keepdim=True) + eps)
    return adv.reshape(-1)


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Critic term: 1/2 (V(s_t) - R_t)^2."""
    return 0.5 * (values - returns.detach()) ** 2


def entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """H(pi(. | s_t)) of the policy at the sampling temperature."""
    logp = F.log_softmax(logits / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``x`` over ``mask`` (0/1 or non-negative weights); 0 for an empty mask."""
    # where(), not x * mask: an inf at a padded position (exp of a pad log-ratio) must not become NaN.
    w = mask.to(x.dtype)
    total = w.sum()
    return torch.where(w > 0, x * w, torch.zeros_like(x)).sum() / torch.where(total > 0, total, 1.0)


def token_weights(mask: torch.Tensor, average: str = "token") -> torch.Tensor:
    """Per-token weights of the loss mean. ``token``: every token counts once (long episodes weigh more);
    ``episode``: every episode counts once, each of its tokens 1 / its length."""
    _check_average(average)
    mask = mask.float()
    if average == "token":
        return mask
    return mask / mask.sum(1, keepdim=True).clamp(min=1.0)


def _check_average(average: str) -> None:
    if average not in LOSS_AVERAGES:
        raise ValueError(f"unknown loss average {average!r}; allowed: {', '.join(LOSS_AVERAGES)}")


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation over token steps; ``(advantages, returns)``, each ``(B, L)``.

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V = 0 after the last token of an episode;
    A_t = delta_t + gamma lam A_{t+1}; returns R_t = A_t + V(s_t).
    """
    B, L = rewards.shape
    mask = mask.to(values.dtype)
    adv = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(L)):
        nxt = mask[:, t + 1] if t + 1 < L else torch.zeros_like(last)
        next_value = values[:, t + 1] * nxt if t + 1 < L else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * nxt * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def total_loss(per_token_pg, per_token_v, per_token_entropy, per_token_kl, per_token_weight, mask,
               vf_coef: float, ent_coef: float, beta: float):
    """L = mean_t [ pg_t + c_v v_t - c_H H_t + beta w_t kl_t ] over the masked tokens; also returns
    the terms for logging under the same names."""
    terms = dict(pg_loss=masked_mean(per_token_pg, mask), v_loss=masked_mean(per_token_v, mask),
                 entropy=masked_mean(per_token_entropy, mask),
                 kl_loss=masked_mean(per_token_kl, mask),
                 weighted_kl_loss=masked_mean(per_token_weight * per_token_kl, mask))
    loss = (terms["pg_loss"] + vf_coef * terms["v_loss"] - ent_coef * terms["entropy"]
            + beta * terms["weighted_kl_loss"])
    return loss, terms
