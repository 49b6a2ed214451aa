"""This CPU's own matmul limit at the model's shapes: fp32 and bf16 GFLOP/s on 1 and 2 threads.

    python benchmarks/cpu_limit.py [--preset cpu-modsum] [--tokens 6400] [--repeats 20]

A training step of the pre-training model is, in FLOPs, almost only the matmuls of its linear layers:
per layer q, k, v, o (d x d), the MLP's gate, up (d x 4d) and down (4d x d), and the LM head (d x |V|).
For each dtype and thread count this times those matmuls on ``--tokens`` rows (a batch of 32 texts of
~200 characters) and prints the GFLOP/s of each shape and of the whole set (total FLOPs / total time):
the throughput a perfect implementation of the model could reach on this machine. ``limit(...)`` is
imported by ``benchmarks/pretrain.py --compare`` to report model-FLOP utilization against it.
"""
from __future__ import annotations

import argparse
import time

import torch


def model_shapes(n_embd: int, vocab: int) -> list[tuple[str, int, int, int]]:
    """``(name, k, n, count)``: the (rows x k) @ (k x n) matmuls of one layer (and the LM head)."""
    return [("attn q,k,v,o", n_embd, n_embd, 4), ("mlp gate,up", n_embd, 4 * n_embd, 2),
            ("mlp down", 4 * n_embd, n_embd, 1), ("lm head", n_embd, vocab, 1)]


def matmul_gflops(rows: int, k: int, n: int, dtype: torch.dtype, repeats: int = 20) -> float:
    """Forward + both backward matmuls (3 x 2 rows k n FLOPs), as in a training step."""
    a = torch.randn(rows, k, dtype=dtype)
    w = torch.randn(k, n, dtype=dtype)
    g = torch.randn(rows, n, dtype=dtype)
    for _ in range(3):
        a @ w, g @ w.T, a.T @ g
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ w, g @ w.T, a.T @ g
    dt = (time.perf_counter() - t0) / repeats
    return 6 * rows * k * n / dt / 1e9


def limit(n_embd: int, n_layer: int, vocab: int, rows: int, dtype: torch.dtype, threads: int,
          repeats: int = 20) -> tuple[float, dict]:
    """GFLOP/s of the model's matmul mix (total FLOPs / total time) and of each shape."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        per_shape, flops, seconds = {}, 0.0, 0.0
        for name, k, n, count in model_shapes(n_embd, vocab):
            rate = matmul_gflops(rows, k, n, dtype, repeats)
            mult = count * (n_layer if name != "lm head" else 1)
            f = 6 * rows * k * n * mult / 1e9
            per_shape[name] = rate
            flops += f
            seconds += f / rate
        return flops / seconds, per_shape
    finally:
        torch.set_num_threads(old)


def main():
    from critkl import pretrain_config
    from critkl.tokenizer import build_tokenizer
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-modsum")
    p.add_argument("--tokens", type=int, default=6400, help="rows of each matmul (batch x sequence)")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    from critkl.model import machine_line
    print(machine_line())
    cfg = pretrain_config(args.preset)
    vocab = len(build_tokenizer())
    print(f"model: {cfg.n_layer} layers x {cfg.n_embd}, vocabulary {vocab}; matmuls of {args.tokens} rows")
    for threads in (1, 2):
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            total, per = limit(cfg.n_embd, cfg.n_layer, vocab, args.tokens, dtype, threads, args.repeats)
            shapes = ", ".join(f"{k} {v:.0f}" for k, v in per.items())
            print(f"{name} {threads} thread(s): {total:.0f} GFLOP/s for the model's mix ({shapes})")


if __name__ == "__main__":
    main()
