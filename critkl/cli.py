"""``critkl`` command line, generated from the config dataclasses (one source for help and defaults)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from .config import PRETRAIN_PRESETS, RL_PRESETS, PretrainConfig, RLConfig, pretrain_config, rl_config

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip=("preset",)) -> None:
    """One ``--field-name`` option per dataclass field, default None (= the preset's value)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ = hints[f.name]
        kw = dict(default=None, help=f"{f.metadata.get('help', '')} [{cls.__name__} default: {f.default!r}; "
                                      "the chosen --preset may set another, see below]")
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        parser.add_argument("--" + f.name.replace("_", "-"), type=typ, **kw)


def _overrides(args, cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and k != "preset" and v is not None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="critkl", description="Prioritized KL penalty on critical tokens: "
                                "pre-train, fine-tune with RL, measure critical tokens.")
    sub = p.add_subparsers(dest="command", required=True)

    def presets_epilog(presets):
        return "presets (values they set over the defaults):\n" + "\n".join(
            f"  {name}: {', '.join(f'{k}={v}' for k, v in vals.items()) or '(the defaults)'}"
            for name, vals in presets.items())

    pp = sub.add_parser("pretrain", help="pre-train (or load from the cache) a model up to N digits",
                        epilog=presets_epilog(PRETRAIN_PRESETS), formatter_class=argparse.RawDescriptionHelpFormatter)
    pp.add_argument("--preset", default="cpu-modsum", choices=tuple(PRETRAIN_PRESETS) + ("cpu",))
    add_dataclass_args(pp, PretrainConfig)
    pp.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    pf = sub.add_parser("finetune", help="RL fine-tuning with no / standard / prioritized KL",
                        epilog=presets_epilog(RL_PRESETS), formatter_class=argparse.RawDescriptionHelpFormatter)
    pf.add_argument("--preset", default="cpu-reinforce", choices=tuple(RL_PRESETS) + ("cpu",))
    pf.add_argument("--model", dest="model_dir", required=True, help="pre-trained checkpoint folder")
    add_dataclass_args(pf, RLConfig, skip=("preset", "model_dir"))
    pf.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    pc = sub.add_parser("critical", help="critical-token statistics of a checkpoint (Table 1)")
    pc.add_argument("--model", required=True, help="checkpoint folder")
    pc.add_argument("--k", type=int, default=1, help="plus-k problems")
    pc.add_argument("--n", type=int, default=50, help="generations / problems")
    pc.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    pc.add_argument("--ref-temperature", type=float, default=1.0, help="certainty temperature")
    pc.add_argument("--alpha", type=float, default=10.0, help="certainty exponent")
    pc.add_argument("--seed", type=int, default=0)

    args = p.parse_args(argv)
    try:
        if args.command == "pretrain":
            from .pretrain import pretrain
            cfg = pretrain_config(args.preset, **_overrides(args, PretrainConfig))
            path = pretrain(cfg, progress=not args.no_progress)
            print(path)
            print(json.dumps(json.loads((path / "critkl.json").read_text())["final_accuracy"]))
        elif args.command == "finetune":
            from .rl import finetune, run_dir
            cfg = rl_config(args.preset, **_overrides(args, RLConfig))
            df = finetune(cfg, progress=not args.no_progress)
            print(run_dir(cfg))
            cols = [c for c in ("round", "episodes", "acc_plus", "acc_comfort", "mean_kl", "weight_critical",
                                "weight_other", "p_critical_mean") if c in df]
            print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        elif args.command == "critical":
            from .critical import certainty_delta, measure, summarize, table1, tracking_problems
            from .model import load_checkpoint
            from .model import select_device
            model, tok, info = load_checkpoint(args.model, select_device("auto"))
            level = int(info["config"]["level"])
            probs = tracking_problems(level, args.k, args.n, args.seed)
            print(summarize(measure(model, tok, probs, level, args.temperature, args.ref_temperature,
                                    args.alpha)).to_string(index=False))
            print(table1(certainty_delta(model, tok, level, args.k, args.n, args.temperature,
                                         args.ref_temperature, args.seed)).to_string(index=False))
    except (ValueError, FloatingPointError) as e:
        print(f"critkl {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
