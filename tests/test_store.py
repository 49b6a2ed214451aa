"""Precision by CPU capability, the shipped model store, and re-training a shipped model from its config."""
import json
from pathlib import Path

import pytest
import torch

from critkl import model as model_mod
from critkl import store
from critkl.config import PretrainConfig, cache_key, pretrain_config
from critkl.model import load_checkpoint, machine_line, resolve_precision
from critkl.pretrain import accuracy_by_digits, find_finished, pretrain, resolve
from critkl.tokenizer import build_tokenizer

CPU = torch.device("cpu")
REPO_STORE = Path(__file__).resolve().parent.parent / "models"


def _cpu(monkeypatch, capability: str, bf16: bool, amx: bool = False):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("capability,bf16,amx,expected", [
    ("AVX2", False, False, "fp32"),      # the AVX2-only EPYC: bf16 would be emulated
    ("AVX512", False, False, "fp32"),    # AVX-512 without its BF16 extension
    ("AVX512", True, False, "bf16"),
    ("AVX512", False, True, "bf16"),     # AMX tiles
    ("AVX2", True, True, "fp32"),        # torch dispatching as AVX2 (ATEN_CPU_CAPABILITY=avx2) wins
])
def test_auto_precision_follows_the_cpu(monkeypatch, capability, bf16, amx, expected):
    _cpu(monkeypatch, capability, bf16, amx)
    got, why = resolve_precision("auto", CPU)
    assert got == expected and capability in why
    assert resolve_precision("bf16", CPU)[0] == "bf16" and resolve_precision("fp32", CPU)[0] == "fp32"


def test_resolved_precision_is_trained_recorded_and_keyed(monkeypatch, tmp_path, capsys):
    _cpu(monkeypatch, "AVX2", False)
    path = pretrain(preset="tiny", level=2, home=tmp_path, progress=True)
    assert "in fp32 (auto: CPU capability AVX2" in capsys.readouterr().err
    info = json.loads((path / "critkl.json").read_text())
    assert info["precision"] == "fp32" and info["config"]["precision"] == "fp32"
    assert info["weights_sha256"] == store.sha256(path / "model.safetensors")
    cfg = pretrain_config("tiny", level=2)
    keys = {p: cache_key(PretrainConfig(**{**info["config"], "precision": p})) for p in ("bf16", "fp32")}
    assert info["cache_key"] == keys["fp32"] != keys["bf16"]
    # on a bf16 CPU, auto accepts the fp32 model already there instead of training a bf16 one
    _cpu(monkeypatch, "AVX512", True)
    assert resolve(cfg)[0].precision == "bf16"
    assert find_finished(cfg, tmp_path) == path
    assert find_finished(pretrain_config("tiny", level=2, precision="bf16"), tmp_path) is None


def test_store_serves_a_shipped_model_without_training(monkeypatch, tmp_path):
    trained = pretrain(preset="tiny", level=2, home=tmp_path / "a", progress=False, precision="fp32")
    monkeypatch.setenv("CRITKL_MODELS", str(tmp_path / "models"))
    shipped = store.ship(trained)
    assert shipped.parent == tmp_path / "models" and shipped.name == trained.name
    assert store.find(json.loads((trained / "critkl.json").read_text())["cache_key"]) == shipped
    steps = []
    got = pretrain(preset="tiny", level=2, home=tmp_path / "b", progress=False, on_step=steps.append)
    assert got == shipped and steps == []           # auto accepts the shipped fp32 model
    assert not (tmp_path / "b" / "pretrain").exists()
    with pytest.raises(ValueError, match="rl"):
        bad = tmp_path / "rl-run"
        bad.mkdir()
        (bad / "critkl.json").write_text(json.dumps({"kind": "rl"}))
        store.ship(bad)


def test_verify_detects_changed_weights(tmp_path):
    trained = pretrain(preset="tiny", level=2, home=tmp_path, progress=False)
    shipped = store.ship(trained, tmp_path / "models")
    store.verify(shipped)
    w = shipped / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        store.verify(shipped)


def _shipped():
    return sorted(store.index(REPO_STORE).values()) if REPO_STORE.is_dir() else []


def test_store_is_small_and_every_shipped_model_is_intact():
    folders = _shipped()
    assert folders, "the repository ships no model under models/"
    total = sum(f.stat().st_size for f in REPO_STORE.rglob("*") if f.is_file())
    assert total <= 100 * 2**20, f"models/ holds {total / 2**20:.1f} MiB; the limit is 100 MiB"
    for folder in folders:
        info = store.verify(folder)
        assert folder.name.endswith(info["cache_key"])
        assert cache_key(PretrainConfig(**info["config"])) == info["cache_key"]  # its config names it
        assert info["config"]["precision"] in ("bf16", "fp32") and info["format"] >= 2
        load_checkpoint(folder)


def test_retraining_the_cheapest_shipped_model_reproduces_it(tmp_path, monkeypatch):
    """Re-train the cheapest shipped model from its recorded config and compare with the shipped weights.
    Bit-identical only on the machine it was trained on: same CPU model, capability, native bf16, cores,
    torch threads and torch version (``critkl.model.machine_line``, recorded as ``machine``). A CPU that
    torch calls by the same capability name may still take another kernel path (CI found a 6e-5 relative
    difference on another "AVX512" Xeon), so elsewhere the greedy answers on 64 problems per length must
    agree within 5 points and the weights within 5 % relative norm. The test says which case it checked."""
    folders = _shipped()
    assert folders
    infos = {f: json.loads((f / "critkl.json").read_text()) for f in folders}
    cheapest = min(folders, key=lambda f: infos[f]["seconds"])
    info = infos[cheapest]
    monkeypatch.setenv("CRITKL_MODELS", str(tmp_path / "none"))
    cfg = PretrainConfig(**info["config"])
    retrained = pretrain(cfg, home=tmp_path, progress=False)
    assert retrained.name == cheapest.name
    diff = store.compare_weights(cheapest, retrained)
    if info.get("machine") == machine_line():
        print(f"{cheapest.name}: bit-identical re-training checked on {info['machine']}")
        assert diff["identical"], diff
        return
    m1, tok, _ = load_checkpoint(cheapest)
    m2, _, _ = load_checkpoint(retrained)
    lengths = range(1, cfg.level + 1)
    acc1 = accuracy_by_digits(m1, tok, lengths, 64, seed=11)
    acc2 = accuracy_by_digits(m2, tok, lengths, 64, seed=11)
    print(f"{cheapest.name}: trained on {info.get('machine', info.get('cpu_capability'))}, re-trained on "
          f"{machine_line()}: identical={diff['identical']}, relative weight difference "
          f"{diff['relative_difference']:.2e}, greedy accuracy {acc1.accuracy.tolist()} vs {acc2.accuracy.tolist()}")
    assert diff["relative_difference"] < 0.05
    assert (acc1.accuracy - acc2.accuracy).abs().max() <= 0.05


def test_compare_weights_and_shipped_false(monkeypatch, tmp_path):
    a = pretrain(preset="tiny", level=2, home=tmp_path / "a", progress=False, precision="fp32")
    monkeypatch.setenv("CRITKL_MODELS", str(tmp_path / "models"))
    store.ship(a)
    steps = []
    b = pretrain(preset="tiny", level=2, home=tmp_path / "b", progress=False, precision="fp32", shipped=False,
                 on_step=steps.append)
    assert steps and b.parent == tmp_path / "b" / "pretrain"  # trained although a shipped copy exists
    assert store.compare_weights(a, b) == dict(identical=True, relative_difference=0.0)
    c = pretrain(preset="tiny", level=2, seed=1, home=tmp_path / "b", progress=False, precision="fp32")
    d = store.compare_weights(a, c)
    assert not d["identical"] and d["relative_difference"] > 0.01


def test_shipped_evals_gathers_every_eval_csv_with_its_config(tmp_path):
    cfg = dict(level=3, arch="llama", n_layer=4, n_embd=128, aux_task="none", max_steps=1500, lr=1e-3, batch_size=32,
               precision="fp32")
    for name, seed, evals in (("a", 0, "digits,accuracy,n,temperature,step\n1,1.0,8,0,10\n4,0.0,8,0,10\n"),
                              ("b", 1, "digits,accuracy,n,temperature,step\n1,0.5,8,0,10\n"), ("no-eval", 2, None)):
        (tmp_path / name).mkdir()
        info = dict(cache_key=name, seconds=120, config={**cfg, "seed": seed}, cpu_capability="AVX2", torch_threads=2)
        (tmp_path / name / "critkl.json").write_text(json.dumps(info))
        if evals:
            (tmp_path / name / "eval.csv").write_text(evals)
    d = store.shipped_evals(tmp_path)
    assert list(d.checkpoint) == ["a", "a", "b"] and list(d.pretrain_seed) == [0, 0, 1]
    assert list(d.accuracy) == [1.0, 0.0, 0.5] and set(d.minutes) == {2.0} and set(d.level) == {3}
    assert set(d.config) == {"N3-llama4x128-1500steps-lr0.001-b32-fp32"}  # critkl.regime.config_name: no seed
    assert set(d.cpu_capability) == {"AVX2"} and set(d.torch_threads) == {2}
    assert store.shipped_evals(tmp_path / "empty").empty
