"""What bounds a decode step: the KV cache's bytes, not the matmuls' FLOPs.

    python benchmarks/decode_limit.py [--model DIR] [--rows 320] [--cache 150 300] [--threads 1]

A decode step of the lean sampler (``critkl.sampling.LlamaDecoder``) reads, per layer, every live row's
keys and values over the whole cache: ``rows x cache x 2 x n_embd x 4`` bytes in fp32, while its matmuls
need only ``~2 x parameters`` FLOPs per row. For each cache length this times (best of 5) one full decode
step and its attention alone, and prints the bytes read per step, the achieved GB/s beside this CPU's
measured read bandwidth (``x.sum()`` over a 512 MiB tensor), and the FLOP/s beside the matmul limit
(``cpu_limit.py``). The first line says which machine; the last line is
``decode: <x> % of the read bandwidth, <y> % of the matmul limit`` for the longest cache.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from critkl.config import pretrain_config
from critkl.model import build_model, load_checkpoint, machine_line
from critkl.sampling import LlamaDecoder, new_cache
from critkl.tokenizer import build_tokenizer


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def read_bandwidth(mib: int = 512) -> float:
    """GB/s of one pass summing a ``mib``-MiB fp32 tensor (a read stream, as attention's over the cache)."""
    x = torch.ones(mib * 2**20 // 4)
    return x.numel() * 4 / best_of(lambda: x.sum()) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a pre-trained checkpoint (default: a fresh cpu-modsum model)")
    ap.add_argument("--rows", type=int, default=320)
    ap.add_argument("--cache", type=int, nargs="+", default=[150, 300])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(machine_line())
    if a.model:
        model, tok, _ = load_checkpoint(a.model)
    else:
        tok = build_tokenizer()
        torch.manual_seed(0)
        model = build_model(pretrain_config("cpu-modsum").model_config(), tok).eval()
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    bw = read_bandwidth()
    from cpu_limit import limit  # noqa: E402  (benchmarks/ is the script's folder)
    mm, _ = limit(c.hidden_size, c.num_hidden_layers, c.vocab_size, a.rows, torch.float32, a.threads)
    print(f"model {c.num_hidden_layers} x {c.hidden_size}, {n_params / 1e6:.2f}M parameters; {a.rows} rows; "
          f"read bandwidth {bw:.1f} GB/s; fp32 matmul limit {mm:.1f} GFLOP/s ({a.threads} thread(s))")
    for t in a.cache:
        cache = new_cache(model, t + 2)
        B, H, D = a.rows, c.num_attention_heads, c.hidden_size // c.num_attention_heads
        with torch.no_grad():
            dec = LlamaDecoder(model, cache, None, t + 2)
            for layer in dec.layers:  # a cache filled up to t positions
                layer.k, layer.v = torch.randn(B, H, t + 2, D), torch.randn(B, H, t + 2, D)
            tokens, pos = torch.randint(0, c.vocab_size, (B,)), torch.full((B,), t)

            def step():
                for layer in dec.layers:
                    layer.len = t
                dec.logits(dec.step(tokens, pos))

            q = torch.randn(B, H, 1, D)
            k, v = dec.layers[0].k[:, :, :t + 1], dec.layers[0].v[:, :, :t + 1]
            attn = best_of(lambda: F.scaled_dot_product_attention(q, k, v)) * c.num_hidden_layers
            total = best_of(step)
        kv_bytes = c.num_hidden_layers * B * (t + 1) * 2 * c.hidden_size * 4
        flops = 2 * n_params * B + c.num_hidden_layers * B * (t + 1) * 4 * c.hidden_size
        print(f"cache {t}: step {1e3 * total:.1f} ms ({B / total:,.0f} tokens/s), attention {1e3 * attn:.1f} ms "
              f"({100 * attn / total:.0f} %); KV read {kv_bytes / 1e6:.0f} MB/step = {kv_bytes / total / 1e9:.1f} GB/s "
              f"({100 * kv_bytes / total / 1e9 / bw:.0f} % of read bandwidth); {flops / total / 1e9:.1f} GFLOP/s "
              f"({100 * flops / total / 1e9 / mm:.0f} % of the matmul limit)")
    print(f"decode: {100 * kv_bytes / total / 1e9 / bw:.0f} % of the read bandwidth, "
          f"{100 * flops / total / 1e9 / mm:.0f} % of the matmul limit")


if __name__ == "__main__":
    main()
