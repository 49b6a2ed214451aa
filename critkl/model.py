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


def autocast(device: torch.device):
    """bf16 autocast on CUDA (weights and optimizer stay fp32); a no-op context on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -------------------------------------------------------------------------------------------------
def save_checkpoint(model: PreTrainedModel, tok, path: Path, info: dict) -> None:
    """Write model, tokenizer and ``critkl.json`` into the (new or empty) folder ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    (path / CRITKL_FILE).write_text(json.dumps(info, indent=2, default=str))


def read_info(path: Path) -> dict:
    """The ``critkl.json`` of a checkpoint folder, or CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {str(path)!r} does not exist or is not a folder")
    f = path / CRITKL_FILE
    if not f.is_file():
        raise CheckpointError(f"{str(path)!r} is not a critkl checkpoint: it has no {CRITKL_FILE} "
                              "(make one with `critkl pretrain` or critkl.pretrain(...))")
    try:
        return json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(f)!r} is corrupt: {e}") from e


def load_checkpoint(path: Path, device: torch.device | str = "cpu"):
    """``(model, tokenizer, info)`` from a critkl checkpoint folder, the model in eval mode."""
    info = read_info(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except Exception as e:  # corrupt weights, missing files, bad json: one clear message
        raise CheckpointError(f"could not load the checkpoint in {str(path)!r}: {type(e).__name__}: {e}") from e
    return model.to(device).eval(), tok, info
