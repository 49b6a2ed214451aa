"""The policy: a small transformers causal LM (Llama/RoPE or GPT-2), device choice, save and load.

Checkpoints are ordinary ``save_pretrained`` folders (safetensors weights + tokenizer) with one extra file,
``critkl.json``, holding the config that produced them, so ``AutoModelForCausalLM.from_pretrained(dir)``
works on its own and critkl can tell its checkpoints from anything else.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, PreTrainedModel)

from transformers.utils import logging as hf_logging

from .config import DEVICES, ModelConfig
from .tokenizer import build_tokenizer

hf_logging.disable_progress_bar()  # critkl shows its own progress; weight-loading bars are noise here

CRITKL_FILE = "critkl.json"


class CheckpointError(ValueError):
    """A folder that is not a readable critkl checkpoint."""


def build_model(cfg: ModelConfig, tok) -> PreTrainedModel:
    """A freshly initialised causal LM of the given architecture over ``tok``'s vocabulary."""
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                  bos_token_id=tok.eos_token_id)
    if cfg.arch == "llama":
        hf = LlamaConfig(hidden_size=cfg.n_embd, intermediate_size=4 * cfg.n_embd,
                         num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                         num_key_value_heads=cfg.n_head, max_position_embeddings=cfg.n_positions,
                         tie_word_embeddings=True, **common)
        return LlamaForCausalLM(hf)
    if cfg.arch == "gpt2":
        # No dropout: rollouts, the reference and the update must see the same function (a KL of 0 and
        # a PPO ratio of 1 at the start), and resumed runs must be bit-identical.
        hf = GPT2Config(n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                        n_positions=cfg.n_positions, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        **common)
        return GPT2LMHeadModel(hf)
    raise ValueError(f"unknown arch {cfg.arch!r}; allowed: llama, gpt2")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_text(cfg: ModelConfig) -> str:
    """A configuration's model in words, for prose: ``'Llama, 4 layers x 128, 1.06M parameters'`` (counted on
    a freshly built model over the task's vocabulary)."""
    count = n_params(build_model(cfg, build_tokenizer()))
    arch = {"llama": "Llama", "gpt2": "GPT-2"}.get(cfg.arch, cfg.arch)
    return f"{arch}, {cfg.n_layer} layers x {cfg.n_embd}, {count / 1e6:.2f}M parameters"


# -------------------------------------------------------------------------------------------------
def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. Asking for ``cuda`` without one is an error."""
    if name not in DEVICES:
        raise ValueError(f"device={name!r} is not allowed; choose one of: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA device; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` multiplies bfloat16 matrices natively, and why (one line for the user).

    On a CPU without AVX512_BF16 or AMX, bf16 autocast is emulated: measured on an AVX2-only EPYC, 4 GFLOP/s
    against 63 in fp32 (a 3.9x slowdown of pre-training). ``ATEN_CPU_CAPABILITY=avx2`` (or lower) makes torch
    dispatch as such a CPU does, and so does this check."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"CUDA device {'supports' if ok else 'does not support'} bf16"
    cap = torch.backends.cpu.get_cpu_capability()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    ok = cap.startswith("AVX512") and (avx512_bf16 or amx)
    has = "AMX" if amx else "AVX512_BF16" if avx512_bf16 else "no native bf16 instructions"
    return ok, f"CPU capability {cap}, {has}"


def machine_line() -> str:
    """Where a timing was measured, for the first line of every benchmark: CPU model, torch's CPU
    capability, native bf16 or not, cores and threads, torch version (and the GPU when there is one)."""
    import os

    from .points import cpu_model
    name, _ = cpu_model()
    bf16, why = native_bf16(torch.device("cpu"))
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"machine: {name}; {why} ({'native' if bf16 else 'emulated'} bf16); {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads; torch {torch.__version__}{gpu}")


def cpu_line() -> str:
    """A short where-it-ran for chapter timings: torch's CPU capability, native bf16 or not, threads."""
    bf16, _ = native_bf16(torch.device("cpu"))
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    n = torch.get_num_threads()
    return (f"a CPU of capability {torch.backends.cpu.get_cpu_capability()} "
            f"({'native' if bf16 else 'no native'} bf16), {n} torch thread{'s' if n != 1 else ''}{gpu}")


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """``(bf16 | fp32, why)``: ``auto`` is bf16 autocast where ``device`` has native bf16 matmuls and fp32
    elsewhere; ``bf16`` and ``fp32`` are kept as asked."""
    if precision != "auto":
        return precision, f"precision={precision} was asked for"
    ok, why = native_bf16(device)
    return ("bf16", f"auto: {why}") if ok else ("fp32", f"auto: {why}, so fp32 (bf16 would be emulated)")


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast (weights and optimizer stay fp32) or a no-op context. ``bf16`` or ``fp32`` force it;
    ``auto`` (sampling and the RL update) is bf16 on CUDA and fp32 on any CPU, so CPU numbers do not
    depend on the CPU's bf16 support. Pre-training passes its resolved precision (``resolve_precision``)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -------------------------------------------------------------------------------------------------
def first_nonfinite(model: nn.Module) -> str | None:
    """Name of the first floating-point tensor of ``model``'s state dict holding a NaN or an inf, or None."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def save_checkpoint(model: PreTrainedModel, tok, path: Path, info: dict) -> None:
    """Write model, tokenizer and ``critkl.json`` into the (new or empty) folder ``path``.

    Checked before anything is written: a model with a NaN or inf weight raises FloatingPointError
    naming the tensor, and an ``info`` that ``read_info`` would refuse raises CheckpointError."""
    path = Path(path)
    bad = first_nonfinite(model)
    if bad is not None:
        raise FloatingPointError(f"refusing to save a model with non-finite weights to {str(path)!r}: tensor "
                                 f"{bad!r} holds nan or inf")
    validate_info(info, path / CRITKL_FILE)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    from .fileio import sha256  # the store checks shipped weights against it
    info = {**info, "torch_version": torch.__version__, "weights_sha256": sha256(path / WEIGHTS_FILES[0])}
    (path / CRITKL_FILE).write_text(json.dumps(info, indent=2, default=str))


CHECKPOINT_KINDS = ("pretrain", "rl")
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")


def _json_type(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def validate_info(info, path) -> dict:
    """``info`` (the parsed ``critkl.json`` at ``path``) if it describes a critkl checkpoint, else one
    CheckpointError naming the file and the key: a JSON object with ``kind`` pretrain or rl and a
    ``config`` object; the level (``config.level`` for pretrain, ``level`` for rl checkpoints) an
    integer in [1, MAX_DIGITS]; ``config.arch`` and ``config.n_positions``, where present, valid."""
    from .config import ARCHS, MAX_DIGITS, MAX_POSITIONS

    def bad(key, value, rule):
        return CheckpointError(f"{str(path)!r} is not a valid critkl checkpoint description: {key}={value!r} "
                               f"is not allowed: must be {rule}")

    if not isinstance(info, dict):
        raise CheckpointError(f"{str(path)!r} is not a valid critkl checkpoint description: it holds "
                              f"{_json_type(info)}, not an object with 'kind' and 'config'")
    kind = info.get("kind")
    if not isinstance(kind, str) or kind not in CHECKPOINT_KINDS:
        raise bad("kind", kind, "one of: " + ", ".join(CHECKPOINT_KINDS))
    cfg = info.get("config")
    if not isinstance(cfg, dict):
        raise bad("config", cfg, "an object (the config that produced the checkpoint)")
    key, level = ("config.level", cfg.get("level")) if kind == "pretrain" else ("level", info.get("level"))
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= MAX_DIGITS:
        raise bad(key, level, f"an integer in [1, {MAX_DIGITS}]")
    if "arch" in cfg and cfg["arch"] not in ARCHS:
        raise bad("config.arch", cfg["arch"], "one of: " + ", ".join(ARCHS))
    n_pos = cfg.get("n_positions", 1)
    if "n_positions" in cfg and (isinstance(n_pos, bool) or not isinstance(n_pos, int)
                                 or not 1 <= n_pos <= MAX_POSITIONS):
        raise bad("config.n_positions", n_pos, f"an integer in [1, {MAX_POSITIONS}]")
    return info


def checkpoint_level(info: dict) -> int:
    """The pre-training level N of a checkpoint (pre-trained or RL) from its validated ``info``."""
    return int(info["config"]["level"] if info["kind"] == "pretrain" else info["level"])


def read_info(path: Path) -> dict:
    """The validated ``critkl.json`` of a checkpoint folder, or CheckpointError saying what is wrong (also
    when the folder has no weights file: everything that reads the info goes on to the weights)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {str(path)!r} does not exist or is not a folder")
    f = path / CRITKL_FILE
    if not f.is_file():
        raise CheckpointError(f"{str(path)!r} is not a critkl checkpoint: it has no {CRITKL_FILE} "
                              "(make one with `critkl pretrain` or critkl.pretrain(...))")
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(f)!r} is corrupt: {e}") from e
    except (OSError, RecursionError) as e:
        raise CheckpointError(f"{str(f)!r} cannot be read: {type(e).__name__}: {e}") from e
    validate_info(info, f)
    if not any((path / w).is_file() for w in WEIGHTS_FILES):
        raise CheckpointError(f"could not load the checkpoint in {str(path)!r}: its weights file "
                              f"{str(path / WEIGHTS_FILES[0])!r} is missing")
    return info


def load_checkpoint(path: Path, device: torch.device | str = "cpu"):
    """``(model, tokenizer, info)`` from a critkl checkpoint folder, the model in eval mode.

    One CheckpointError naming the file for: a missing, malformed or partial ``critkl.json``, missing or
    corrupt weights, and weights holding a NaN or an inf."""
    info = read_info(path)  # also checks that a weights file is there
    path = Path(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except Exception as e:  # corrupt weights, missing files, bad json: one clear message
        raise CheckpointError(f"could not load the checkpoint in {str(path)!r}: {type(e).__name__}: {e}") from e
    bad = first_nonfinite(model)
    if bad is not None:
        raise CheckpointError(f"could not load the checkpoint in {str(path)!r}: its weights "
                              f"({str(path / WEIGHTS_FILES[0])!r}) hold nan or inf in tensor {bad!r}")
    return model.to(device).eval(), tok, info
