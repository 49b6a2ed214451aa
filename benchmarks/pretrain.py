"""Pre-training benchmark: throughput (tokens/s) and, for a full run, wall time and accuracy per length.

    python benchmarks/pretrain.py --preset cpu --level 3 [--throughput-steps 20] [--no-full]

The throughput is measured on a fresh model for ``--throughput-steps`` optimizer steps (after 3 warm-up
steps). The full run is ``critkl.pretrain`` with the same config: loaded from the cache if it exists
(its recorded figures are printed), else trained now.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch

from critkl import pretrain, pretrain_config
from critkl.model import build_model, n_params
from critkl.pretrain import lm_loss, make_batch, sample_batch
from critkl.tokenizer import build_tokenizer


def throughput(cfg, steps: int) -> float:
    tok = build_tokenizer()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model_config(), tok)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    tokens, t0 = 0, None
    for i in range(steps + 3):
        if i == 3:
            t0, tokens = time.perf_counter(), 0
        problems, aux = sample_batch(cfg, rng)
        ids, mask, labels = make_batch(tok, problems, aux=aux)
        loss = lm_loss(model, ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tokens += int(mask.sum())
    return tokens / (time.perf_counter() - t0), n_params(model)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--level", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--throughput-steps", type=int, default=20)
    p.add_argument("--no-full", action="store_true", help="only measure throughput")
    args = p.parse_args()
    cfg = pretrain_config(args.preset, level=args.level, seed=args.seed)
    tps, n = throughput(cfg, args.throughput_steps)
    print(f"preset={args.preset} arch={cfg.arch} params={n:,} batch={cfg.batch_size} threads={torch.get_num_threads()}")
    print(f"throughput: {tps:,.0f} tokens/s ({args.throughput_steps} steps, fresh model)")
    if args.no_full:
        return
    path = pretrain(cfg)
    info = json.loads((path / "critkl.json").read_text())
    ev = pd.read_csv(path / "eval.csv")
    log = pd.read_csv(path / "train_log.csv")
    print(f"full run: {info['steps']} steps, {info['seconds'] / 60:.1f} min, {info['tokens_per_second']:,} tokens/s "
          f"(recorded in {path.name})")
    ind = ev[ev.digits <= cfg.level].groupby("step").accuracy.min()
    hit = ind[ind >= 0.99]
    if len(hit):
        s = int(hit.index[0])
        print(f"first evaluation with >= 99% greedy exact match on every length 1..{cfg.level}: step {s}, "
              f"{log.loc[log.step == s, 'seconds'].iloc[0] / 60:.1f} min")
    else:
        print(f"never reached >= 99% on every length 1..{cfg.level} (best min accuracy {ind.max():.2f})")
    print("accuracy by evaluation step (greedy exact match, both operands of that length):")
    print(ev.pivot(index="step", columns="digits", values="accuracy").to_string(float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
