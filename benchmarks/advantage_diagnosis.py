"""Which part of the policy gradient moves the critical tokens? One collect, three passes, four advantages.

    python benchmarks/advantage_diagnosis.py --model DIR [--lr 3e-5] [--optimizer adam|sgd]

Collects 32 plus1 episodes from a pre-trained checkpoint, then runs ``update_epochs`` passes of the A2C
update (minibatches of 4 episodes, no value, entropy or KL term) with the advantages replaced by:
  successes  A = 1 on successful episodes, 0 on failed ones (binary reward, no baseline)
  failures   A = -1 on failed episodes, 0 on successful ones
  centred    A = R - mean(R) with the ternary reward (a perfect constant baseline)
and prints the mean probability of the right token at the tracked critical positions (teacher-forced on 16
other plus1 problems) after each pass. Also ``--algo ppo`` for the clipped objective.
"""
import argparse
import dataclasses

import numpy as np
import torch

from critkl import rl_config, task
from critkl.critical import critical_probabilities, tracking_problems
from critkl.model import load_checkpoint
from critkl.rl import ValueHead, update
from critkl.rollout import collect


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--algo", choices=["a2c", "ppo"], default="a2c")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=["successes", "failures", "centred"])
    args = p.parse_args()
    for mode in args.modes:
        torch.manual_seed(0)
        policy, tok, info = load_checkpoint(args.model, "cpu")
        level = int(info["config"]["level"])
        cfg = dataclasses.replace(rl_config("cpu", model_dir=args.model), kl="none", vf_coef=0.0, ent_coef=0.0,
                                  algo=args.algo, gae_lambda=1.0)
        vh = ValueHead(policy.config.hidden_size)
        params = list(policy.parameters()) + list(vh.parameters())
        opt = (torch.optim.SGD(params, lr=args.lr) if args.optimizer == "sgd"
               else torch.optim.Adam(params, lr=args.lr))
        tracked = tracking_problems(level, 1, 16, 0)
        problems = task.Split("plus", level, 1).sample(32, np.random.default_rng(1))
        b = collect(policy, vh, None, tok, problems, level, 1, 1.0, 1.0, 1.0, 1.0, torch.Generator().manual_seed(0),
                    need_ref=False)
        ok, m = b.correct.float()[:, None], b.mask.float()
        b.advantages = {"successes": m * ok, "failures": -m * (1 - ok),
                        "centred": m * (2 * ok - 1 - (2 * ok - 1).mean())}[mode]
        p_crit = [critical_probabilities(policy, tok, tracked, level, 1.0).p_correct.mean()]
        g = torch.Generator().manual_seed(1)
        for _ in range(args.passes):
            update(policy, vh, opt, b, cfg, g)
            p_crit.append(critical_probabilities(policy, tok, tracked, level, 1.0).p_correct.mean())
        print(f"{mode:10s} {args.optimizer} lr {args.lr:g} {args.algo}: {int(b.correct.sum())}/32 successes; "
              f"P(right critical token) per pass: {' -> '.join(f'{x:.3f}' for x in p_crit)}", flush=True)


if __name__ == "__main__":
    main()
