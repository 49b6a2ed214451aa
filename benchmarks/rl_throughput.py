"""RL throughput: the critkl engine vs a per-token baseline written the way the official code works.

(a) critkl: one batched, KV-cached generation of all episodes, one batched reference forward, one update
    pass in minibatches of ``--minibatch-tokens`` (the ``cpu-reinforce`` RL preset: minibatches of whole episodes).
(b) baseline: two environments stepped together; every generated token re-runs the policy on the whole
    sequence (no cache); the update walks the transitions in minibatches of 2, each re-running the policy
    (with grad) and the reference (no grad) on the states of its transitions, as the paper's set-up does.

Same model, same machine, one run. Prints episodes/s of collect+update for both, their ratio, and the
fraction of critkl's wall time in sampling, reference forward and update. Last line: ``speedup: <x>x``.

    python benchmarks/rl_throughput.py [--model DIR] [--episodes 32] [--baseline-episodes 4]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from critkl import task
from critkl.config import rl_config, pretrain_config
from critkl.losses import certainty, entropy, kl_k2, kl_weight, pg_loss_a2c, value_loss
from critkl.model import build_model, load_checkpoint
from critkl.pretrain import checkpoint_dir
from critkl.rl import ValueHead, update
from critkl.rollout import collect, terminal_rewards
from critkl.losses import gae
from critkl.tokenizer import build_tokenizer, decode, encode


def load(model_dir):
    if model_dir is None:
        cand = checkpoint_dir(pretrain_config("cpu-modsum", level=3))
        if (cand / "critkl.json").is_file():
            model_dir = cand
    if model_dir is not None:
        policy, tok, info = load_checkpoint(model_dir)
        ref, _, _ = load_checkpoint(model_dir)
        return policy, ref, tok, int(info["config"]["level"]), str(model_dir)
    tok = build_tokenizer()
    torch.manual_seed(0)
    policy = build_model(pretrain_config("cpu-modsum").model_config(), tok)
    ref = build_model(pretrain_config("cpu-modsum").model_config(), tok)
    ref.load_state_dict(policy.state_dict())
    return policy, ref, tok, 3, "untrained cpu-preset model (episodes run to the length limit)"


def baseline(policy, ref, value_head, tok, problems, level, k, cfg, opt):
    """Two environments at a time, full forward per token, minibatches of 2 transitions."""
    T = cfg.temperature
    eos = tok.eos_token_id
    limit = task.episode_limit(level, k)
    g = torch.Generator().manual_seed(0)
    transitions = []  # (prefix ids, action, advantage, return)
    t0 = time.perf_counter()
    for i in range(0, len(problems), 2):
        envs = problems[i:i + 2]
        seqs = [encode(tok, task.prompt(a, b)) for a, b in envs]
        plen = [len(s) for s in seqs]
        done = [False] * len(envs)
        vals = [[] for _ in envs]
        for _ in range(limit):
            for j, s in enumerate(seqs):  # the official env steps each environment's full sequence
                if done[j]:
                    continue
                with torch.no_grad():
                    out = policy.base_model(input_ids=torch.tensor([s]))
                    h = out.last_hidden_state[0, -1]
                    logits = policy.lm_head(h)
                    vals[j].append(value_head(h).item())
                a = torch.multinomial(F.softmax(logits / T, -1), 1, generator=g).item()
                s.append(a)
                text = decode(tok, s[plen[j]:])
                after = text.split("</scratch>\n", 1)
                if a == eos or (len(after) == 2 and "\n" in after[1]):  # end of the answer line
                    done[j] = True
            if all(done):
                break
        for j, (a, b) in enumerate(envs):
            comp = seqs[j][plen[j]:]
            mask = torch.ones(1, len(comp))
            r = terminal_rewards(mask, torch.tensor([task.is_correct(decode(tok, comp), a, b)]))
            adv, ret = gae(r, torch.tensor([vals[j]]), mask, cfg.gamma, cfg.gae_lambda)
            for t in range(len(comp)):
                transitions.append((seqs[j][:plen[j] + t], comp[t], adv[0, t].item(), ret[0, t].item()))
    t_collect = time.perf_counter() - t0
    perm = np.random.default_rng(0).permutation(len(transitions))
    for s in range(0, len(perm), 2):
        loss = 0.0
        for idx in perm[s:s + 2]:
            prefix, a, adv, ret = transitions[idx]
            x = torch.tensor([prefix])
            h = policy.base_model(input_ids=x).last_hidden_state[0, -1]
            logits = policy.lm_head(h)
            with torch.no_grad():
                ref_logits = ref(input_ids=x).logits[0, -1]
            logp = F.log_softmax(logits / T, -1)[a]
            ref_logp = F.log_softmax(ref_logits / T, -1)[a]
            w = kl_weight("prioritized", certainty(ref_logits, cfg.ref_temperature), cfg.alpha)
            loss = loss + (pg_loss_a2c(logp, torch.tensor(adv)) + cfg.vf_coef * value_loss(value_head(h)[0], torch.tensor(ret))
                           - cfg.ent_coef * entropy(logits, T) + cfg.beta * w * kl_k2(logp, ref_logp))
        opt.zero_grad()
        (loss / 2).backward()
        opt.step()
    return t_collect, time.perf_counter() - t0 - t_collect, len(transitions)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="pre-trained checkpoint (default: the cached cpu N=3 one)")
    p.add_argument("--episodes", type=int, default=None, help="critkl episodes per collect (default: the cpu preset's)")
    p.add_argument("--baseline-episodes", type=int, default=4)
    p.add_argument("--minibatch-tokens", type=int, default=0)
    p.add_argument("--k", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(0)
    policy, ref, tok, level, what = load(args.model)
    ref.requires_grad_(False)
    cfg = rl_config("cpu-reinforce", model_dir="-", episodes_per_collect=args.episodes,
                    minibatch_tokens=args.minibatch_tokens, extra_digits=args.k)
    args.episodes = cfg.episodes_per_collect
    print(f"model: {what}; level N={level}; plus{args.k}; threads={torch.get_num_threads()}")
    problems = task.Split("plus", level, args.k).sample(max(args.episodes, args.baseline_episodes),
                                                         np.random.default_rng(0))

    # (a) critkl engine, in steady state: one untimed collect + update of the same size first (allocator,
    # kernels), as every round after the first of a real run; then the timed one from the same weights.
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    vh = ValueHead(policy.config.hidden_size, cfg.value_hidden)
    vh_state = {k: v.clone() for k, v in vh.state_dict().items()}
    opt = torch.optim.Adam(list(policy.parameters()) + list(vh.parameters()), lr=cfg.lr)
    warm = collect(policy, vh, ref, tok, problems[:args.episodes], level, cfg, torch.Generator().manual_seed(1))
    update(policy, vh, opt, warm, cfg, torch.Generator().manual_seed(1))
    policy.load_state_dict(state)
    vh.load_state_dict(vh_state)
    opt = torch.optim.Adam(list(policy.parameters()) + list(vh.parameters()), lr=cfg.lr)
    t0 = time.perf_counter()
    batch = collect(policy, vh, ref, tok, problems[:args.episodes], level, cfg, torch.Generator().manual_seed(0))
    t1 = time.perf_counter()
    update(policy, vh, opt, batch, cfg, torch.Generator().manual_seed(0))
    t2 = time.perf_counter()
    wall_a = t2 - t0
    n_tok = int(batch.mask.sum())
    eps_a = args.episodes / wall_a
    samp, refs, upd = batch.timings["sample_s"], batch.timings["ref_s"], t2 - t1
    print(f"(a) critkl:   {args.episodes} episodes, {n_tok} tokens, {wall_a:.2f} s -> {eps_a:.3f} episodes/s")
    print(f"    breakdown: sampling {samp / wall_a:.0%}, reference forward {refs / wall_a:.0%}, "
          f"update {upd / wall_a:.0%}, other {(wall_a - samp - refs - upd) / wall_a:.0%}")

    # (b) per-token baseline, same starting weights
    policy.load_state_dict(state)
    vh_b = ValueHead(policy.config.hidden_size, cfg.value_hidden)
    opt_b = torch.optim.Adam(list(policy.parameters()) + list(vh_b.parameters()), lr=cfg.lr)
    tc, tu, nt = baseline(policy, ref, vh_b, tok, problems[:args.baseline_episodes], level, args.k, cfg, opt_b)
    eps_b = args.baseline_episodes / (tc + tu)
    print(f"(b) baseline: {args.baseline_episodes} episodes, {nt} tokens, {tc + tu:.2f} s (collect {tc:.2f} s, "
          f"update {tu:.2f} s) -> {eps_b:.4f} episodes/s")
    print(f"tokens per episode: critkl {n_tok / args.episodes:.0f}, baseline {nt / args.baseline_episodes:.0f}")
    print(f"tokens/s: critkl {n_tok / wall_a:,.0f}, baseline {nt / (tc + tu):,.0f} "
          f"(ratio {(n_tok / wall_a) / (nt / (tc + tu)):.1f}x)")
    print(f"speedup: {eps_a / eps_b:.1f}x")


if __name__ == "__main__":
    main()
