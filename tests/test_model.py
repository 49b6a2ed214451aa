import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from critkl.config import MODEL_PRESETS, ModelConfig
from critkl.model import (CheckpointError, autocast, build_model, load_checkpoint, n_params, save_checkpoint,
                          select_device)
from critkl.tokenizer import build_tokenizer


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_build_save_load(arch, tmp_path):
    tok = build_tokenizer()
    model = build_model(ModelConfig(arch=arch, n_layer=1, n_embd=16, n_head=2, n_positions=256), tok)
    save_checkpoint(model, tok, tmp_path / "ck", {"kind": "pretrain", "config": {"level": 2}})
    assert (tmp_path / "ck" / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ck")  # works without critkl
    m2, tok2, info = load_checkpoint(tmp_path / "ck")
    x = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        ref = model.eval()(input_ids=x).logits
        assert torch.allclose(m2(input_ids=x).logits, ref, atol=1e-6)
        assert torch.allclose(plain(input_ids=x).logits, ref, atol=1e-6)
    assert info["config"]["level"] == 2 and len(tok2) == len(tok)


def test_model_config_validation():
    with pytest.raises(ValueError, match="arch='bert'"):
        ModelConfig(arch="bert")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(n_embd=30, n_head=4)


@pytest.mark.parametrize("preset,cls,layers,width,params", [
    ("tiny", "LlamaForCausalLM", 2, 32, 34_336),
    ("cpu", "LlamaForCausalLM", 4, 128, 1_055_360),      # README: Llama (RoPE), 4 layers x 128, ~1.06M parameters
    ("paper", "GPT2LMHeadModel", 12, 768, 86_662_656),   # the paper's GPT-2 shape, 12 x 768 (~85M parameters)
])
def test_model_presets_build_the_documented_models(preset, cls, layers, width, params):
    with torch.device("meta"):  # shapes only, no memory
        model = build_model(ModelConfig(**MODEL_PRESETS[preset]), build_tokenizer())
    assert type(model).__name__ == cls
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (layers, width)
    assert n_params(model) == params


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="not a critkl checkpoint"):
        load_checkpoint(tmp_path / "plain")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "critkl.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    (noweights / "critkl.json").write_text(json.dumps({"kind": "pretrain", "config": {"level": 2}}))
    with pytest.raises(CheckpointError, match="could not load"):
        load_checkpoint(noweights)


def test_corrupt_weights(tmp_path):
    tok = build_tokenizer()
    model = build_model(ModelConfig(**MODEL_PRESETS["tiny"]), tok)
    save_checkpoint(model, tok, tmp_path / "ck", {"kind": "pretrain", "config": {"level": 2}})
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="could not load"):
        load_checkpoint(tmp_path / "ck")


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            select_device("cuda")


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_cpu_is_fp32_and_cuda_is_bf16():
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    ctx = autocast(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
