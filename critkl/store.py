"""The model store: pre-trained checkpoints shipped with the repository, found by cache key.

The paper ships its pre-trained checkpoints; critkl ships the ones its chapters and committed results use,
under ``models/<name>-<key>/`` at the repository root (``$CRITKL_MODELS`` points elsewhere). Each is an
ordinary critkl checkpoint folder (safetensors weights, tokenizer, ``critkl.json`` with the full config,
the scratchpad format version, the precision it was trained in, the torch version, the CPU it ran on and
the sha256 of its weights) plus its ``eval.csv`` and ``train_log.csv``. ``critkl.pretrain`` looks here by
cache key before it trains anything, so chapters, tests and CI load these models on any CPU.

Nothing is downloaded: every model in the store was trained by this package (``ship`` copies a finished
run from the cache into the store).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .fileio import atomic_dir, sha256

STORE_ENV = "CRITKL_MODELS"
SHIPPED_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "critkl.json", "eval.csv", "train_log.csv")


def store_dir() -> Path:
    """``$CRITKL_MODELS`` when set, else ``models/`` beside the ``critkl`` package (the repository root)."""
    value = os.environ.get(STORE_ENV)
    return Path(value).expanduser() if value else Path(__file__).resolve().parent.parent / "models"


def index(store: Path | None = None) -> dict[str, Path]:
    """``cache_key -> folder`` of every checkpoint in the store (folders without ``critkl.json`` skipped)."""
    store = Path(store or store_dir())
    out = {}
    for info_file in sorted(store.glob("*/critkl.json")):
        key = json.loads(info_file.read_text()).get("cache_key")
        if key:
            out[key] = info_file.parent
    return out


def shipped_evals(store: Path | None = None):
    """Every shipped checkpoint's ``eval.csv`` (greedy exact match per operand length at each evaluation during
    pre-training) in one table, one row per checkpoint, step and length, with the checkpoint's folder name
    (``checkpoint``), ``level``, ``pretrain_seed``, ``precision``, ``max_steps``, training ``minutes``, the CPU it
    trained on (``cpu_capability``, ``torch_threads``; empty and 0 where not recorded) and its
    configuration without the seed (``config``, as ``critkl.config.config_name`` names it in
    ``results/regime_search.csv``). Checkpoints without an ``eval.csv`` are left out."""
    import pandas as pd

    from .config import config_name
    frames = []
    for folder in index(store).values():
        if not (folder / "eval.csv").is_file():
            continue
        info = json.loads((folder / "critkl.json").read_text())
        cfg = info["config"]
        frames.append(pd.read_csv(folder / "eval.csv").assign(
            checkpoint=folder.name, config=config_name(cfg), level=int(cfg["level"]), pretrain_seed=cfg["seed"],
            precision=cfg.get("precision", ""), max_steps=cfg["max_steps"], minutes=round(info["seconds"] / 60, 1),
            cpu_capability=info.get("cpu_capability", ""), torch_threads=info.get("torch_threads", 0)))
    columns = ["checkpoint", "config", "level", "pretrain_seed", "precision", "max_steps", "minutes", "cpu_capability",
               "torch_threads", "step", "digits", "accuracy"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def find(key: str, store: Path | None = None) -> Path | None:
    """The shipped checkpoint whose cache key is ``key``, or None."""
    return index(store).get(key)


def verify(folder: Path) -> dict:
    """The ``critkl.json`` of a shipped checkpoint after checking its weights against the recorded sha256;
    ValueError naming the folder when they differ (a truncated or replaced file)."""
    info = json.loads((Path(folder) / "critkl.json").read_text())
    got = sha256(Path(folder) / "model.safetensors")
    if got != info.get("weights_sha256"):
        raise ValueError(f"shipped checkpoint {str(folder)!r}: weights sha256 {got[:12]} does not match the "
                         f"recorded {str(info.get('weights_sha256'))[:12]}")
    return info


def ship(run: Path, store: Path | None = None) -> Path:
    """Copy the finished pre-training checkpoint ``run`` into the store (atomically) and return its folder
    there. The folder keeps its cache name, so ``find`` returns it for the same config."""
    run, store = Path(run), Path(store or store_dir())
    info = json.loads((run / "critkl.json").read_text())
    if info.get("kind") != "pretrain":
        raise ValueError(f"{str(run)!r} is a {info.get('kind')!r} checkpoint; the store holds pre-trained ones")
    if "weights_sha256" in info:
        verify(run)
    else:  # checkpoints saved before the store existed: record the digest now
        info["weights_sha256"] = sha256(run / "model.safetensors")
    with atomic_dir(store / run.name) as tmp:
        for name in SHIPPED_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, tmp / name)
        (tmp / "critkl.json").write_text(json.dumps(info, indent=2, default=str))
    return store / run.name


def compare_weights(a: Path, b: Path) -> dict:
    """How two checkpoints' weights differ: ``identical`` (every tensor bit for bit) and
    ``relative_difference`` (||a - b|| / ||a|| over all tensors)."""
    from safetensors.torch import load_file
    wa, wb = load_file(str(Path(a) / "model.safetensors")), load_file(str(Path(b) / "model.safetensors"))
    if wa.keys() != wb.keys():
        raise ValueError(f"{str(a)!r} and {str(b)!r} hold different tensors")
    diff = sum(float((wa[k].double() - wb[k].double()).norm() ** 2) for k in wa) ** 0.5
    norm = sum(float(wa[k].double().norm() ** 2) for k in wa) ** 0.5
    return dict(identical=all(bool((wa[k] == wb[k]).all()) for k in wa), relative_difference=diff / max(norm, 1e-30))
