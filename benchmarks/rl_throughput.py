"""RL throughput: the critkl engine vs a per-token baseline written the way the official code works.

(a) critkl: one batched, KV-cached generation of all episodes, one batched reference forward, one update
    pass in minibatches of ``--minibatch-tokens`` (the ``cpu-reinforce`` RL preset: minibatches of whole episodes).
(b) baseline: two environments stepped together; every generated token re-runs the policy on the whole
    sequence (no cache); the update walks the transitions in minibatches of 2, each re-running the policy
    (with grad) and the reference (no grad) on the states of its transitions, as the paper's set-up does.

(c) the sampler alone, side by side: ``critkl.sampling.generate`` against the one it replaced (issue 20; the
    old file is read from git, commit ``OLD_SAMPLER``), alternating old/new on the same ``--decode-batch``
    plus-k prompts at temperature 1: decode tokens/s (tokens inside the completion masks) and their share of
    this CPU's fp32 matmul limit (``cpu_limit.py``, forward FLOPs of the linear layers per token); then both
    once greedy, which must give the same texts.

Same model, same machine, one run. Prints episodes/s of collect+update for both, their ratio, and the
fraction of critkl's wall time in sampling, reference forward and update. Last line: ``speedup: <x>x``.
``--profile`` only profiles one decode step (old and new, 4 x 128 and 8 x 256) with torch.profiler (use
``--threads 1``: the Python/dispatch share is the wall time the operators' CPU time does not cover).

    python benchmarks/rl_throughput.py [--model DIR] [--episodes 32] [--baseline-episodes 4] [--decode-batch 320]
    python benchmarks/rl_throughput.py --profile --threads 1
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from critkl import sampling, task
from critkl.config import ModelConfig, pretrain_config, rl_config
from critkl.losses import certainty, entropy, kl_k2, kl_weight, pg_loss_a2c, value_loss
from critkl.model import build_model, load_checkpoint, machine_line
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


OLD_SAMPLER = "00d7389"  # the last commit with the sampler before issue 20 (transformers step, full batch)


def old_sampler():
    """``critkl/sampling.py`` as of ``OLD_SAMPLER`` (read with git), as the module ``critkl._old_sampling``."""
    src = subprocess.run(["git", "show", f"{OLD_SAMPLER}:critkl/sampling.py"], cwd=Path(__file__).resolve().parents[1],
                         check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType("critkl._old_sampling")
    mod.__package__ = "critkl"  # its relative imports (.model, .tokenizer) resolve to today's package
    sys.modules[mod.__name__] = mod  # (dataclasses look their module up there)
    exec(compile(src, f"{OLD_SAMPLER}:critkl/sampling.py", "exec"), mod.__dict__)
    return mod


def load_line() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings are shared with other work)"


def decode_flops(model) -> float:
    """Forward FLOPs per generated token in the linear layers (what the matmul limit measures)."""
    c = model.config
    return 2.0 * (c.num_hidden_layers * 12 * c.hidden_size ** 2 + c.hidden_size * c.vocab_size)


def matmul_limit(model, threads: int) -> float:
    """This CPU's fp32 GFLOP/s for the model's matmul mix (``cpu_limit.limit`` at its default 6400 rows)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_limit import limit
    c = model.config
    return limit(c.hidden_size, c.num_hidden_layers, c.vocab_size, 6400, torch.float32, threads, repeats=10)[0]


def decode_side_by_side(model, tok, problems, max_new: int, limit_gflops: float, repeats: int) -> float:
    """tokens/s of the old and the new ``generate`` on the same prompts (T = 1), alternating; returns new/old."""
    old = old_sampler()
    prompts = [task.prompt(a, b) for a, b in problems]
    rates = {"old": [], "new": []}
    for r in range(repeats):
        for name, gen_fn in (("old", old.generate), ("new", sampling.generate)):
            t0 = time.perf_counter()
            g = gen_fn(model, tok, prompts, max_new, 1.0, torch.Generator().manual_seed(r))
            dt = time.perf_counter() - t0
            rates[name].append(int(g.completion_mask.sum()) / dt)
            print(f"    {name} generate, repeat {r}: {int(g.completion_mask.sum())} tokens "
                  f"(L={g.completion_ids.shape[1]}) in {dt:.2f} s -> {rates[name][-1]:,.0f} tokens/s")
    flops = decode_flops(model)
    for name, rs in rates.items():
        best = max(rs)
        print(f"(c) {name} sampler: {best:,.0f} tokens/s (best of {repeats}) = "
              f"{best * flops / 1e9:.1f} GFLOP/s = {best * flops / 1e9 / limit_gflops:.0%} of the fp32 matmul limit "
              f"({limit_gflops:.0f} GFLOP/s)")
    ratio = float(np.median([n / o for n, o in zip(rates["new"], rates["old"])]))
    print(f"sampler speedup (new/old tokens/s, median over side-by-side pairs): {ratio:.2f}x")
    g_old, g_new = (f(model, tok, prompts, max_new, 0.0) for f in (old.generate, sampling.generate))
    same = sum(a == b for a, b in zip(g_old.texts, g_new.texts))
    print(f"greedy: the new sampler gives the old one's text on {same}/{len(prompts)} prompts")
    return ratio


# -------------------------------------------------------------------------------------------------
# --profile: one decode step, old (the transformers model per step) vs new (the lean step)
CATEGORIES = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
              "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                            "aten::_scaled_dot_product_attention_math", "aten::_softmax")}


def profile_step(n_layer: int, n_embd: int, batch: int = 320, length: int = 150, steps: int = 10, table: bool = True):
    """Profile ``steps`` decode steps (one token per row, the cache holding ``length`` positions) of an
    untrained Llama of this shape, old and new, and print where the time goes. Python/dispatch is the wall
    time (unprofiled, best of 3) that the operators' CPU time (profiled) does not cover: a lower bound, the
    profiler's own overhead is in the operators' times; at ``batch=1`` the whole step is that overhead."""
    from torch.profiler import profile
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="llama", n_layer=n_layer, n_embd=n_embd, n_head=4, n_positions=2048),
                        tok).eval()
    ids = torch.randint(5, len(tok), (batch, length))
    mask = torch.ones_like(ids)
    a, pos = torch.randint(5, len(tok), (batch,)), torch.full((batch,), length)
    cache = sampling.new_cache(model, length + steps + 8)
    with torch.no_grad():
        sampling.forward(model, ids, mask, None, cache)
        paths = {"old: transformers step": sampling.HFDecoder(model, cache, mask, length + steps + 8),
                 "new: lean step": sampling.LlamaDecoder(model, cache, None, length + steps + 8)}

        def run(dec):
            for layer in cache.layers:
                layer.len = length
            t0 = time.perf_counter()
            for _ in range(steps):
                dec.logits(dec.step(a, pos))
            return (time.perf_counter() - t0) / steps

        walls = {name: [] for name in paths}
        for _ in range(3):  # alternate, keep the best: the machine is shared
            for name, dec in paths.items():
                walls[name].append(run(dec))
        for name, dec in paths.items():
            with profile() as prof:
                run(dec)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events) / steps / 1e3
            wall = min(walls[name]) * 1e3
            parts = {k: sum(e.self_cpu_time_total for e in events if e.key in ops) / steps / 1e3
                     for k, ops in CATEGORIES.items()}
            parts["norms/RoPE/SiLU/adds/copies"] = total - sum(parts.values())
            parts["Python/dispatch"] = max(wall - total, 0.0)
            print(f"== {name}, {n_layer} x {n_embd}, B={batch}, cache {length}: {wall:.2f} ms/step (best of 3) = "
                  + ", ".join(f"{k} {v:.2f} ms ({v / max(wall, total):.0%})" for k, v in parts.items()))
            if table:
                print(events.table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=48))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="pre-trained checkpoint (default: the cached cpu N=3 one)")
    p.add_argument("--episodes", type=int, default=None, help="critkl episodes per collect (default: the cpu preset's)")
    p.add_argument("--baseline-episodes", type=int, default=4)
    p.add_argument("--minibatch-tokens", type=int, default=0)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--decode-batch", type=int, default=320, help="prompts of the side-by-side sampler timing (0: skip)")
    p.add_argument("--repeats", type=int, default=2, help="side-by-side repeats of each sampler")
    p.add_argument("--profile", action="store_true", help="only profile one decode step (see above)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_line()}; {load_line()}")
    if args.profile:
        for shape in ((4, 128), (8, 256)):
            profile_step(*shape)
            profile_step(*shape, batch=32, table=False)  # an RL collect's batch
            profile_step(*shape, batch=1, length=8, table=False)  # the fixed cost of a step
        return
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

    if args.decode_batch:
        policy.load_state_dict(state)
        policy.eval()
        lim = matmul_limit(policy, torch.get_num_threads())
        problems_c = task.Split("plus", level, args.k).sample(args.decode_batch, np.random.default_rng(1))
        print(f"(c) sampler side by side: {args.decode_batch} plus{args.k} prompts, T=1, {args.repeats} repeats each")
        decode_side_by_side(policy, tok, problems_c, task.episode_limit(level, args.k), lim, args.repeats)
    print(f"speedup: {eps_a / eps_b:.1f}x")


if __name__ == "__main__":
    main()
