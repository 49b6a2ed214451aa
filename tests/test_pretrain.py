import json

import pytest
import torch
from safetensors.torch import load_file

from critkl import pretrain_config
from critkl.cli import main as cli_main
from critkl.model import CheckpointError, build_model, load_checkpoint
from critkl.pretrain import checkpoint_dir, lr_at, make_batch, pretrain, resolve
from critkl.tokenizer import build_tokenizer, decode


def test_lr_schedule():
    cfg = pretrain_config("tiny", lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half-way through the cosine: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_make_batch_labels_target_only():
    tok = build_tokenizer()
    ids, mask, labels = make_batch(tok, [(56, 789), (1, 2)])
    from critkl import task
    p = len(task.prompt(56, 789))
    assert (labels[0, :p] == -100).all()
    assert decode(tok, labels[0, p:][labels[0, p:] >= 0]) == task.scratchpad(56, 789)
    assert labels[0, mask[0].sum() - 1] == tok.eos_token_id
    assert (labels[1][mask[1] == 0] == -100).all()


def test_pretrain_trains_and_caches(_home):
    calls = []
    path = pretrain(preset="tiny", level=2, progress=False, on_step=calls.append)
    assert calls == list(range(1, 21))
    info = json.loads((path / "critkl.json").read_text())
    assert info["steps"] == 20 and set(info["final_accuracy"]) == {"1", "2", "3"}
    # parameters moved away from the seeded initialisation
    torch.manual_seed(0)
    init = build_model(pretrain_config("tiny", level=2).model_config(), build_tokenizer()).state_dict()
    trained = load_file(path / "model.safetensors")
    assert any(not torch.equal(init[k], trained[k]) for k in trained)
    # second call: cache hit, no training step
    again = []
    assert pretrain(preset="tiny", level=2, progress=False, on_step=again.append) == path
    assert again == []
    assert not path.with_name(path.name + ".partial").exists()
    model, tok, _ = load_checkpoint(path)
    assert model.config.vocab_size == len(tok)


def test_resume_after_interrupt_matches_uninterrupted(tmp_path):
    full = pretrain(preset="tiny", level=2, progress=False, home=tmp_path / "a")

    def interrupt(step):
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(preset="tiny", level=2, progress=False, home=tmp_path / "b", on_step=interrupt)
    cfg, _ = resolve(pretrain_config("tiny", level=2))
    partial = checkpoint_dir(cfg, tmp_path / "b")
    assert not partial.exists() and partial.with_name(partial.name + ".partial").is_dir()
    steps = []
    resumed = pretrain(preset="tiny", level=2, progress=False, home=tmp_path / "b", on_step=steps.append)
    assert steps[0] == 11  # resumed from the checkpoint at step 10 (ckpt_every=5), not from 0
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_resume_state_is_reported(tmp_path):
    cfg, _ = resolve(pretrain_config("tiny", level=2))
    partial = checkpoint_dir(cfg, tmp_path)
    partial = partial.with_name(partial.name + ".partial")
    partial.mkdir(parents=True)
    (partial / "state.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="delete"):
        pretrain(cfg, home=tmp_path, progress=False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(level=0), "level=0"),
    (dict(level=2, lr=-1.0), "lr=-1.0"),
    (dict(level=2, arch="rnn"), "arch='rnn'"),
    (dict(level=2, bogus=1), "bogus"),
])
def test_bad_arguments_leave_nothing(kwargs, match, _home):
    with pytest.raises(ValueError, match=match):
        pretrain(preset="tiny", progress=False, **kwargs)
    assert not _home.exists() or not any(_home.rglob("*"))


def test_unknown_preset(_home):
    with pytest.raises(ValueError, match="preset='huge'"):
        pretrain(preset="huge", level=2)
    assert not _home.exists()


def test_cli_errors(capsys, _home):
    assert cli_main(["pretrain", "--level", "0", "--preset", "tiny"]) == 2
    assert "level=0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["pretrain", "--preset", "huge"])
    assert not _home.exists()


def test_cli_pretrain(capsys, _home):
    assert cli_main(["pretrain", "--preset", "tiny", "--level", "1", "--max-steps", "4",
                     "--eval-every", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "N1-llama-tiny-s0" in out


def test_aux_task_config_and_batches():
    import numpy as np
    from critkl.config import cache_key
    from critkl.pretrain import sample_batch
    base = pretrain_config("cpu-modsum", level=3, aux_task="none", aux_fraction=0.0)
    aux = pretrain_config("cpu-modsum", level=3, aux_fraction=0.5)
    assert cache_key(base) != cache_key(aux) and "modsum6x0.5" in aux.name
    assert pretrain_config("cpu-modsum").aux_task == "modsum"  # the chosen regime is the default
    # fields added later leave the keys of older configs unchanged when at their default; without an
    # aux task, aux_max_digits (set by the preset) does not enter the key either
    assert {"aux_task", "aux_max_digits"}.isdisjoint(
        __import__("critkl.config", fromlist=["cache_dict"]).cache_dict(base))
    problems, flags = sample_batch(dataclasses_replace(aux, batch_size=400), np.random.default_rng(0))
    assert 0.4 < np.mean(flags) < 0.6
    assert max(len(str(x)) for (p, f) in zip(problems, flags) if f for x in p) == 6
    assert max(len(str(x)) for (p, f) in zip(problems, flags) if not f for x in p) == 3
    tok = build_tokenizer()
    ids, mask, labels = make_batch(tok, [(12, 34), (12, 34)], aux=[False, True])
    assert decode(tok, ids[1][mask[1].bool()]).startswith("Input:\n12%34")
    with pytest.raises(ValueError, match="aux_fraction"):
        pretrain_config("cpu-modsum", aux_task="modsum", aux_fraction=0.0)
    with pytest.warns(FutureWarning, match="'cpu' is deprecated; it is now called 'cpu-modsum'"):
        assert pretrain_config("cpu", level=3) == pretrain_config("cpu-modsum", level=3)
    with pytest.raises(ValueError, match="aux_task='copy'"):
        pretrain_config("cpu-modsum", aux_task="copy", aux_fraction=0.5)


def dataclasses_replace(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def test_nan_pretraining_loss_stops(monkeypatch, _home):
    import importlib
    pt = importlib.import_module("critkl.pretrain")  # (critkl.pretrain is also the function)
    monkeypatch.setattr(pt, "lm_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        pretrain(preset="tiny", level=2, progress=False)
    # nothing but the (empty) lock file: no checkpoint, no partial state, no staging folder
    assert [p.relative_to(_home).as_posix() for p in _home.rglob("*") if p.is_file()] == [
        next((_home / "pretrain" / ".locks").iterdir()).relative_to(_home).as_posix()]


def test_cuda_request_without_cuda(_home):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA"):
        pretrain(preset="tiny", level=2, device="cuda", progress=False)
    assert not _home.exists()


def test_pretrain_with_aux_task_runs(_home):
    path = pretrain(preset="tiny", level=2, aux_task="modsum", aux_fraction=0.5, aux_max_digits=3,
                    max_steps=3, eval_every=3, progress=False)
    assert "modsum3x0.5" in path.name and (path / "critkl.json").is_file()


def test_gpt2_positions_must_fit_the_texts(_home):
    with pytest.raises(ValueError, match="n_positions=64 is not allowed"):
        pretrain(preset="tiny", level=2, arch="gpt2", n_positions=64, progress=False)
    assert not _home.exists()


def test_two_identical_runs_at_once_share_one_checkpoint(_home):
    """Two identical `critkl pretrain` processes on one cache: both exit 0, print the same folder, and
    leave exactly one intact checkpoint and no .partial/.staging/.tmp leftovers."""
    import os
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "critkl.cli", "pretrain", "--preset", "tiny", "--level", "1", "--max-steps", "6",
           "--eval-every", "6", "--ckpt-every", "2", "--no-progress"]
    env = {**os.environ, "CRITKL_HOME": str(_home), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    folders = [[line for line in out.splitlines() if "/pretrain/" in line] for out, _ in outs]
    assert len(folders[0]) == 1 and folders[0] == folders[1]
    runs = [p for p in (_home / "pretrain").iterdir() if p.name != ".locks"]
    assert len(runs) == 1 and (runs[0] / "critkl.json").is_file() and (runs[0] / "model.safetensors").is_file()
    assert not [p for p in _home.rglob("*") if p.suffix in (".partial", ".staging", ".tmp")]


def test_bucketed_pool_holds_the_padded_pools_examples():
    """Bucketing reorders a pool's examples by length; it neither adds nor drops one, and it cuts padding."""
    import dataclasses
    from critkl.pretrain import batch_pool
    new = pretrain_config("cpu-modsum", level=3, bucket_pool=8)
    old = dataclasses.replace(new, batching="padded")
    flat = lambda pool: sorted((p, f) for ps, fs in pool for p, f in zip(ps, fs))  # noqa: E731
    assert flat(batch_pool(new, 0)) == flat(batch_pool(old, 0))
    assert batch_pool(new, 0) == batch_pool(new, 0) and batch_pool(new, 1) != batch_pool(new, 0)
    tok = build_tokenizer()

    def padding(pool):
        masks = [make_batch(tok, ps, aux=fs)[1] for ps, fs in pool]
        return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert padding(batch_pool(new, 0)) < 0.5 * padding(batch_pool(old, 0))


def test_training_to_mastery_stops_at_the_first_mastered_evaluation(monkeypatch, _home):
    import sys

    import pandas as pd
    pt = sys.modules["critkl.pretrain"]  # the module (the package's `pretrain` name is the function)
    calls = []

    def fake_accuracy(model, tok, lengths, n, seed=0):  # mastered 1..N from the second evaluation on
        calls.append(None)
        good = len(calls) >= 2
        return pd.DataFrame(dict(digits=list(lengths), accuracy=[1.0 if good and d <= 2 else 0.5 for d in lengths]))

    monkeypatch.setattr(pt, "accuracy_by_digits", fake_accuracy)
    steps = []
    path = pretrain(preset="tiny", level=2, eval_every=5, stop_at=1.0, progress=False, on_step=steps.append)
    info = json.loads((path / "critkl.json").read_text())
    assert info["steps"] == 10 and steps == list(range(1, 11))  # stopped at the step-10 evaluation
    assert info["config"]["stop_at"] == 1.0 and info["final_accuracy"] == {"1": 1.0, "2": 1.0, "3": 0.5}
    from critkl.config import config_name
    assert config_name(info["config"]).startswith("N2-llama2x32-20steps-stop1-")
    with pytest.raises(ValueError, match="stop_at"):
        pretrain_config("tiny", stop_at=1.5)
