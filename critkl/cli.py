"""``critkl`` command line, generated from the config dataclasses (one source for help and defaults)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from .runs import RunFolderError
from .config import (PRETRAIN_PRESETS, RL_PRESETS, CriticalConfig, PretrainConfig, RLConfig, pretrain_config,
                     rl_config)

def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip=("preset",)) -> None:
    """One ``--field-name`` option per dataclass field, default None (= the preset's value)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ = hints[f.name]
        note = "; the chosen --preset may set another, see below" if "preset" in cls.__dataclass_fields__ else ""
        text = f"{f.metadata.get('help', '')} [{cls.__name__} default: {f.default!r}{note}]"
        kw = dict(default=None, help=text.replace("%", "%%"))  # argparse %-formats help strings
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
    pc.add_argument("--model", dest="model_dir", required=True, help="critkl checkpoint folder (pre-trained or RL)")
    add_dataclass_args(pc, CriticalConfig, skip=("model_dir",))

    pr = sub.add_parser("probe", help="the regime (premise) metrics of pre-trained checkpoints, appended to a CSV")
    pr.add_argument("runs", nargs="+", help="pre-trained checkpoint folders")
    pr.add_argument("--csv", default="results/regime_search.csv", help="table to append to [%(default)s]")
    pr.add_argument("--note", default="", help="free text stored with each row")

    ps = sub.add_parser("ship", help="copy finished pre-training checkpoints into the model store (models/)")
    ps.add_argument("runs", nargs="+", help="finished checkpoint folders (e.g. $CRITKL_HOME/pretrain/N3-...)")

    from . import sweep
    sweep.add_arguments(sub.add_parser("sweep", help="execute a chapter notebook over a grid of parameters",
                                       description=sweep.__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter))
    sweep.add_gather_arguments(sub.add_parser("gather", help="one CSV of the tidy tables of a sweep's points"))

    args = p.parse_args(argv)
    if args.command in ("sweep", "gather"):
        return sweep.main(args) if args.command == "sweep" else sweep.gather_main(args)
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
        elif args.command == "probe":
            from .model import read_info
            from .regime import probe_and_record
            for run in args.runs:
                read_info(run)  # every folder checked before the first (minutes-long) probe
            command = "critkl probe " + " ".join(args.runs)
            rows = probe_and_record(args.runs, args.csv, note=args.note, command=command)
            print(rows.to_string(index=False))
        elif args.command == "ship":
            from .model import read_info
            from .store import ship
            for run in args.runs:
                read_info(run)  # a critkl checkpoint, with its weights
                print(ship(run))
        elif args.command == "critical":
            critical(CriticalConfig(**_overrides(args, CriticalConfig)))
    except (ValueError, TypeError, FloatingPointError, RunFolderError) as e:  # CheckpointError is a ValueError
        print(f"critkl {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def critical(cfg: CriticalConfig) -> None:
    """``critkl critical``: print the teacher-forced summary (critical vs other positions) and Table 1."""
    from . import measure as C
    from .config import check_episode_fit
    from .model import checkpoint_level, load_checkpoint, read_info, select_device

    info = read_info(cfg.model_dir)  # the folder and its critkl.json first: one clear error, nothing loaded
    level = checkpoint_level(info)
    device = select_device(cfg.device)
    model, tok, info = load_checkpoint(cfg.model_dir, device)
    n_positions = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    check_episode_fit(level, cfg.extra_digits, int(n_positions))
    probs = C.tracking_problems(level, cfg.extra_digits, cfg.n, cfg.seed)
    print(C.summarize(C.measure(model, tok, probs, level, cfg.temperature, cfg.ref_temperature, cfg.alpha,
                                certainty=cfg.certainty)).to_string(index=False))
    print(C.table1(C.certainty_delta(model, tok, level, cfg.extra_digits, cfg.n, cfg.temperature,
                                     cfg.ref_temperature, cfg.seed, certainty=cfg.certainty)).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
