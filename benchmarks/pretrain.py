"""Pre-training benchmark: today's default path against the path before issue 13, side by side.

    python benchmarks/pretrain.py --compare [--steps 32] [--level 3] [--threads 2]
    python benchmarks/pretrain.py --report DIR   # a finished checkpoint: wall time to >= 99 % and more

``--compare`` builds two fresh models with the same seed and runs ``--steps`` optimizer steps of each on the
same examples (``critkl.pretrain.batch_pool``: the padded path takes a pool's batches in draw order, the
bucketed one the same examples sorted by length), alternating one step of each so that both see the same
machine load. It prints useful (non-padding) tokens per second, the share of padding, and the model-FLOP
utilization (MFU) of each against this CPU's matmul limit, at the model's shapes, of the precision it runs in
(``benchmarks/cpu_limit.py``); its last line is ``speedup: <x>x`` (useful tokens/s, new over old).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import torch

from critkl import pretrain_config
from critkl.model import build_model
from critkl.model import machine_line
from critkl.pretrain import batch_pool, lm_loss, make_batch, resolve
from critkl.tokenizer import build_tokenizer


def flops_per_token(cfg, vocab: int, seq: float) -> float:
    """6 x matmul parameters (q,k,v,o: 4 d^2, MLP: 12 d^2 per layer; LM head d |V|) + causal attention
    (6 n_layer d seq: QK^T and AV, forward and backward, over half the context on average)."""
    d = cfg.n_embd
    return 6 * (cfg.n_layer * 16 * d * d + d * vocab) + 6 * cfg.n_layer * d * seq


class TrainingPath:
    """One training path: its own model and optimizer, its own counters."""

    def __init__(self, cfg, tok):
        torch.manual_seed(cfg.seed)
        self.cfg, self.tok = cfg, tok
        self.model = build_model(cfg.model_config(), tok)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.95))
        self.seconds, self.useful, self.total, self.flops, self.losses = 0.0, 0, 0, 0.0, []

    def step(self, problems, aux, vocab: int):
        ids, mask, labels = make_batch(self.tok, problems, aux=aux)
        t0 = time.perf_counter()
        loss = lm_loss(self.model, ids, mask, labels, self.cfg.precision)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.seconds += time.perf_counter() - t0
        n = int(mask.sum())
        self.useful += n
        self.total += ids.numel()
        self.flops += n * flops_per_token(self.cfg, vocab, float(mask.sum(1).float().mean()) / 2)
        self.losses.append(loss.item())


def compare(args) -> None:
    from cpu_limit import limit
    torch.set_num_threads(args.threads)
    print(machine_line())
    new_cfg, why = resolve(pretrain_config(args.preset, level=args.level, seed=args.seed,
                                           precision=args.precision))
    print(f"default path: {new_cfg.batching} batches, {new_cfg.precision} ({why})")
    old_cfg = dataclasses.replace(new_cfg, batching="padded", precision="fp32")
    tok = build_tokenizer()
    vocab = len(tok)
    paths = {"old (padded, fp32)": TrainingPath(old_cfg, tok), f"new ({new_cfg.batching}, {new_cfg.precision})": TrainingPath(new_cfg, tok)}
    pools: dict[str, list] = {}
    for step in range(args.steps):
        for name, p in paths.items():
            pool = pools.setdefault(name + str(step // p.cfg.bucket_pool), batch_pool(p.cfg, step // p.cfg.bucket_pool))
            problems, aux = pool[step % p.cfg.bucket_pool]
            p.step(problems, aux, vocab)
    rows = max(p.useful for p in paths.values()) // args.steps
    lim_bf16, _ = limit(new_cfg.n_embd, new_cfg.n_layer, vocab, rows, torch.bfloat16, args.threads)
    lim_fp32, _ = limit(new_cfg.n_embd, new_cfg.n_layer, vocab, rows, torch.float32, args.threads)
    print(f"{args.steps} steps each, level {args.level}, batch {new_cfg.batch_size}, {args.threads} thread(s); "
          f"matmul limit at the model's shapes: bf16 {lim_bf16:.0f} GFLOP/s, fp32 {lim_fp32:.0f} GFLOP/s")
    tps = {}
    for name, p in paths.items():
        tps[name] = p.useful / p.seconds
        gflops = p.flops / p.seconds / 1e9
        own = lim_bf16 if p.cfg.precision == "bf16" else lim_fp32  # the limit of the precision this path runs in
        print(f"{name}: {tps[name]:,.0f} useful tokens/s, padding {1 - p.useful / p.total:.0%} of tokens, "
              f"{gflops:.1f} model GFLOP/s = MFU {gflops / own:.0%} of the {p.cfg.precision} limit; mean loss of the last {min(8, len(p.losses))} steps {sum(p.losses[-8:]) / len(p.losses[-8:]):.3f}")
    old, new = tps.values()
    print(f"speedup: {new / old:.2f}x")


def report(path: Path) -> None:
    """Wall time to >= 99 % greedy exact match on every length 1..N, from a finished checkpoint."""
    info = json.loads((path / "critkl.json").read_text())
    ev = pd.read_csv(path / "eval.csv")
    level = info["config"]["level"]
    print(f"{path.name}: trained on {info.get('cpu_capability', '?')} in {info['config'].get('precision', '?')}; "
          f"{info['steps']} steps, {info['seconds'] / 60:.1f} min, {info['tokens_per_second']:,} useful "
          f"tokens/s, {info.get('torch_threads', '?')} thread(s)")
    ind = ev[ev.digits <= level].groupby("step").accuracy.min()
    hit = ind[ind >= 0.99]
    if len(hit):
        s = int(hit.index[0])
        secs = ev.loc[ev.step == s, "seconds"].iloc[0] if "seconds" in ev else float("nan")
        print(f"first evaluation with >= 99 % greedy exact match on every length 1..{level}: step {s}, "
              f"{secs / 60:.1f} min")
    else:
        print(f"never reached >= 99 % on every length 1..{level} (best min accuracy {ind.max():.2f})")
    print(ev.pivot(index="step", columns="digits", values="accuracy").to_string(float_format=lambda x: f"{x:.2f}"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", action="store_true")
    p.add_argument("--report", type=Path, help="a finished pre-training checkpoint folder")
    p.add_argument("--preset", default="cpu-modsum")
    p.add_argument("--level", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=32, help="a multiple of bucket_pool (16): same examples")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="the new path's precision (auto: what this CPU runs natively)")
    args = p.parse_args()
    if args.report:
        report(args.report)
    if args.compare or not args.report:
        compare(args)


if __name__ == "__main__":
    main()
