"""Collecting episodes for RL: sample from the policy, score them, query the frozen reference once.

One collect = one batched, KV-cached generation of ``n`` episodes (the policy's log-probs, entropies and
values are recorded as it samples), the ternary terminal reward, one batched no-grad forward of the
reference model over all episodes (its log-probs at the sampling temperature and its certainty at the
reference temperature), and GAE advantages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import task
from .config import REWARDS, RLConfig
from .critical import SITES, critical_mask
from .losses import certainty, gae, group_advantages
from .sampling import Generation, completion_logits, generate, teacher_forced, token_logprobs


@dataclass
class Batch:
    """Everything the update needs, per token ``(B, L)`` unless said otherwise."""

    gen: Generation
    problems: list[tuple[int, int]]
    correct: torch.Tensor        # (B,) bool
    rewards: torch.Tensor        # +1 / -1 at the last token of each episode, 0 elsewhere
    advantages: torch.Tensor
    returns: torch.Tensor
    ref_logprobs: torch.Tensor | None   # log pi_ref(a_t | s_t) at the sampling temperature
    ref_certainty: torch.Tensor | None  # J(s_t) at the reference temperature
    critical_mask: torch.Tensor  # 1 at states of the true scratchpad's critical positions (if visited)
    timings: dict                # seconds spent sampling and in the reference forward
    oracle_mask: torch.Tensor | None = None  # critical_mask with the Appendix-B site too (kl oracle variants)

    @property
    def mask(self) -> torch.Tensor:
        return self.gen.completion_mask


def terminal_rewards(mask: torch.Tensor, correct: torch.Tensor,
                     kind: str = "ternary") -> torch.Tensor:
    """On each episode's last token, 0 elsewhere: ternary (the paper's) +1 correct / -1 wrong, or
    binary 1 / 0."""
    if kind not in REWARDS:
        raise ValueError(f"unknown reward {kind!r}; allowed: {', '.join(REWARDS)}")
    rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    last = (mask.long().sum(1) - 1).clamp(min=0)
    rewards[torch.arange(len(last), device=mask.device), last] = (
        correct.float() * 2 - 1 if kind == "ternary" else correct.float())
    return rewards


def draw_problems(split: task.Split, cfg: RLConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The problems of one collect: ``episodes_per_collect`` draws, or for GRPO ``episodes_per_collect /
    group_size`` draws, each repeated ``group_size`` times in a row (one group of samples per problem)."""
    if cfg.algo != "grpo":
        return split.sample(cfg.episodes_per_collect, rng)
    return [p for p in split.sample(cfg.episodes_per_collect // cfg.group_size, rng) for _ in range(cfg.group_size)]


@torch.no_grad()
def collect(policy, value_head, ref_model, tok, problems, level: int, cfg: RLConfig,
            generator: torch.Generator) -> Batch:
    """Sample one episode per problem and prepare the update (see module docstring).

    ``ref_model=None`` skips the reference forward (no KL term: beta == 0 or kl == "none", as TRL does).
    ``cfg.baseline == "none"`` computes the advantages with V = 0 (REINFORCE without a baseline when
    ``cfg.gae_lambda == 1``)."""
    policy.eval()
    t0 = time.perf_counter()
    gen = generate(policy, tok, [task.prompt(a, b) for a, b in problems],
                   task.episode_limit(level, cfg.extra_digits), cfg.temperature, generator, value_head=value_head)
    t1 = time.perf_counter()
    device = gen.completion_ids.device
    correct = torch.tensor([task.is_correct(t, a, b) for t, (a, b) in zip(gen.texts, problems)], device=device)
    mask = gen.completion_mask
    rewards = terminal_rewards(mask, correct, cfg.reward)
    if cfg.algo == "grpo":  # one advantage per episode, on every one of its tokens; no critic
        advantages = group_advantages(rewards.sum(1), cfg.group_size, cfg.grpo_scale)[:, None] * mask
        returns = rewards.sum(1, keepdim=True) * mask
    else:
        values = gen.values if cfg.baseline == "critic" else torch.zeros_like(gen.values)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.gae_lambda)
    ref_logprobs = ref_cert = None
    if ref_model is not None:
        ref_logits, _, _ = completion_logits(ref_model, gen)
        ref_logprobs = token_logprobs(ref_logits, gen.completion_ids, cfg.temperature)
        ref_cert = certainty(ref_logits, cfg.ref_temperature, cfg.certainty)
    t2 = time.perf_counter()  # (t2 - t1 is ~0 when the reference is skipped)
    crit = critical_mask(gen, tok, problems, level)
    oracle = critical_mask(gen, tok, problems, level, sites=SITES) if cfg.kl.startswith("oracle") else None
    return Batch(gen=gen, problems=problems, correct=correct, rewards=rewards, advantages=advantages,
                 returns=returns, ref_logprobs=ref_logprobs, ref_certainty=ref_cert, critical_mask=crit, oracle_mask=oracle,
                 timings=dict(sample_s=t1 - t0, ref_s=t2 - t1))


@torch.no_grad()
@torch.no_grad()
def exact_success(policy, tok, problems, temperature: float, batch_size: int = 64) -> float:
    """Mean over ``problems`` of the probability that one episode sampled at ``temperature`` is exactly the
    true completion (scratchpad and answer line), from one teacher-forced forward: exp of the summed
    log-probs of its characters (greedy, ``temperature == 0``: 1 if every character is the argmax, else 0).
    Its expectation is the sampled accuracy's minus the episodes that reach the right answer by another
    text; it has no sampling noise, so on fixed problems two evaluations differ only if the model did."""
    scores = []
    for (a, b), (ids, lg) in zip(problems, teacher_forced(policy, tok, problems, batch_size)):
        start = len(task.prompt(a, b))  # logits[t] predicts character t: the completion is ids[start:]
        lg, tgt = lg[start:], ids[start:].to(lg.device)
        if temperature == 0:
            scores.append(float((lg.argmax(-1) == tgt).all()))
        else:
            scores.append(float(token_logprobs(lg, tgt, temperature).sum().exp()))
    return float(np.mean(scores))


def accuracy(policy, tok, problems, level: int, extra_digits: int, temperature: float, generator) -> float:
    """Binary reward (accuracy) of one sampled episode per problem; greedy when temperature == 0."""
    policy.eval()
    gen = generate(policy, tok, [task.prompt(a, b) for a, b in problems], task.episode_limit(level, extra_digits),
                   temperature, generator)
    return float(np.mean([task.is_correct(t, a, b) for t, (a, b) in zip(gen.texts, problems)]))
