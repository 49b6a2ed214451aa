"""The default RL fine-tuning run, timed as a user runs it, and where its time goes.

    python benchmarks/rl_run.py [--model DIR] [--standin-steps 300] [--threads N] [--sampler new|old]
                                [--eval-mode sample|exact|both]

Runs ``critkl.finetune(preset="cpu-reinforce", model_dir=DIR, kl="prioritized", seed=0)`` in a fresh temporary
``CRITKL_HOME`` (nothing comes from the cache) and prints:

- the breakdown of the run from the timing columns of its metrics (``sample_s``, ``ref_s``, the rest of
  ``collect_s``, ``update_s``, ``eval_s``; round 0's ``seconds`` is the first evaluation) and what is left
  (loading, checkpoints);
- decode tokens/s of the run's ``generate`` calls (RL collects and evaluations apart, counted by wrapping
  ``critkl.rollout.generate``) and their share of this CPU's fp32 matmul limit (``cpu_limit.py``);
- last line: ``rl run: <seconds> s``.

``--eval-mode exact`` evaluates with ``RLConfig.eval_mode="exact"`` (teacher-forced probability of the true
text instead of one sampled episode per problem); ``both`` runs the sampled then the exact run side by side and
prints their wall-time ratio before the last line (``rl run`` is then the exact run's).

Without ``--model`` a short stand-in is pre-trained first (the ``cpu-modsum`` preset cut to
``--standin-steps`` steps, not timed, kept in a temporary folder for the next run) and the output says so:
its episodes have roughly the lengths of a trained model's, its accuracy does not. ``--sampler old`` runs the
same with the sampler before issue 20 (``rl_throughput.OLD_SAMPLER``), for a before/after of the whole run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import critkl
import critkl.rollout
from critkl.model import load_checkpoint, machine_line
from rl_throughput import decode_flops, load_line, matmul_limit, old_sampler


def counting(generate, stats: dict):
    """``generate`` that also adds each call's tokens and seconds to ``stats`` (collect vs evaluation:
    collects pass the value head)."""
    def wrapped(*args, **kwargs):
        t0 = time.perf_counter()
        gen = generate(*args, **kwargs)
        kind = "collect" if kwargs.get("value_head") is not None else "evaluation"
        s = stats.setdefault(kind, dict(calls=0, rows=0, tokens=0, seconds=0.0))
        s["calls"] += 1
        s["rows"] += len(gen.texts)
        s["tokens"] += int(gen.completion_mask.sum())
        s["seconds"] += time.perf_counter() - t0
        return gen
    return wrapped


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="pre-trained checkpoint folder (default: a short stand-in)")
    p.add_argument("--standin-steps", type=int, default=300, help="pre-training steps of the stand-in model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, as a user runs it)")
    p.add_argument("--sampler", choices=("new", "old"), default="new")
    p.add_argument("--eval-mode", choices=("sample", "exact", "both"), default="sample")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_line()}; {load_line()}")
    model_dir = args.model
    if model_dir is None:
        home = Path(tempfile.gettempdir()) / "critkl-rl-run-standin"
        print(f"no --model: pre-training a stand-in (cpu-modsum, level 3, {args.standin_steps} steps instead of "
              f"1,500) into {home}; RL timings are representative, accuracies are not")
        model_dir = critkl.pretrain(preset="cpu-modsum", level=3, seed=0, max_steps=args.standin_steps,
                                    eval_every=args.standin_steps, home=home, progress=False)
    print(f"model: {model_dir}")

    generate = old_sampler().generate if args.sampler == "old" else critkl.rollout.generate
    walls = {}
    for mode in (("sample", "exact") if args.eval_mode == "both" else (args.eval_mode,)):
        walls[mode] = one_run(model_dir, mode, generate, args.sampler)
    if len(walls) == 2:
        print(f"exact / sample evaluation, side by side: {walls['sample'] / walls['exact']:.2f}x faster")
    print(f"rl run: {walls[mode]:.1f} s")


def one_run(model_dir, eval_mode: str, generate, sampler: str) -> float:
    stats: dict = {}
    critkl.rollout.generate = counting(generate, stats)  # collect() and accuracy() call it by this name
    with tempfile.TemporaryDirectory() as home:
        t0 = time.perf_counter()
        df = critkl.finetune(preset="cpu-reinforce", model_dir=str(model_dir), kl="prioritized", seed=0,
                             eval_mode=eval_mode, home=Path(home), progress=False)
        wall = time.perf_counter() - t0

    rounds = df.iloc[1:]
    parts = {"sampling (collect)": rounds.sample_s.sum(), "reference forward": rounds.ref_s.sum(),
             "rest of collect": (rounds.collect_s - rounds.sample_s - rounds.ref_s).sum(),
             "update": rounds.update_s.sum(), "evaluation": rounds.eval_s.sum() + df.seconds.iloc[0]}
    parts["other (loading, checkpoints)"] = wall - sum(parts.values())
    print(f"{sampler} sampler, eval_mode={eval_mode}, {len(rounds)} rounds, threads={torch.get_num_threads()}, "
          f"acc_plus {df.acc_plus.iloc[0]:.3f} -> {df.acc_plus.iloc[-1]:.3f}, wall {wall:.1f} s")
    for name, sec in parts.items():
        print(f"  {name:30s} {sec:8.1f} s  {sec / wall:6.1%}")

    model, _, _ = load_checkpoint(model_dir)
    lim = matmul_limit(model, torch.get_num_threads())
    flops = decode_flops(model)
    for kind, s in stats.items():
        rate = s["tokens"] / s["seconds"]
        print(f"decode, {kind}: {s['calls']} calls, {s['rows']} episodes, {s['tokens']:,} tokens in {s['seconds']:.1f} s "
              f"-> {rate:,.0f} tokens/s = {rate * flops / 1e9:.1f} GFLOP/s = {rate * flops / 1e9 / lim:.0%} of the "
              f"fp32 matmul limit ({lim:.0f} GFLOP/s)")
    return wall


if __name__ == "__main__":
    main()
