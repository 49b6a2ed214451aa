"""Where do a pre-trained model's plus-k failures start? Counts the first character that differs from the
true completion: at one of the paper's critical tokens, or elsewhere on scratchpad line i.

    python benchmarks/failure_sites.py --model DIR [--k 1] [--n 128] [--temperature 1]
"""
import argparse
import collections

import numpy as np
import torch

from critkl import task
from critkl.critical import locate
from critkl.model import load_checkpoint
from critkl.sampling import generate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    model, tok, info = load_checkpoint(args.model, "cpu")
    level = int(info["config"]["level"])
    problems = task.Split("plus", level, args.k).sample(args.n, np.random.default_rng(args.seed))
    gen = generate(model, tok, [task.prompt(a, b) for a, b in problems], task.episode_limit(level, args.k),
                   args.temperature, torch.Generator().manual_seed(0))
    counts, examples = collections.Counter(), []
    for text, (a, b) in zip(gen.texts, problems):
        if task.is_correct(text, a, b):
            counts["correct"] += 1
            continue
        truth = task.full_text(a, b)[len(task.prompt(a, b)):]
        i = next((j for j, (x, y) in enumerate(zip(text, truth)) if x != y), min(len(text), len(truth)))
        critical = {c.index - len(task.prompt(a, b)) for c in locate(a, b, level)}
        line = truth[:i].count("\n") - 1  # the completion starts with "\n<scratch>\n": line 1 = first list line
        site = "critical token" if i in critical else f"scratchpad line {line}" if line >= 1 else "header"
        counts[site] += 1
        if len(examples) < 5:
            examples.append(f"{a}+{b}: {site}: ...{truth[max(0, i - 16):i]!r} wrote {text[i:i + 8]!r}, "
                            f"truth {truth[i:i + 8]!r}")
    print(f"{args.n} plus{args.k} problems at T={args.temperature:g}: " +
          ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    print("\n".join(examples))


if __name__ == "__main__":
    main()
