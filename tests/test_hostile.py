"""Hostile inputs: every one gets an early, clear error and leaves the cache empty.

Each case states the exit status (CLI, ``critkl.cli.main``) or the exception type (Python API), a message
fragment that names the bad field or value, and that ``$CRITKL_HOME`` (a fresh empty folder per test, the
autouse ``_home`` fixture) holds no file afterwards (pure functions such as ``task.parse_answer`` touch no file,
so their cases skip that check).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from critkl import task
from critkl.cli import main as cli_main
from critkl.config import CriticalConfig, ModelConfig, critkl_home, rl_config
from critkl.model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from critkl.pretrain import pretrain
from critkl.rl import finetune
from critkl.tokenizer import build_tokenizer

NAN, INF = float("nan"), float("inf")


def assert_empty(home: Path) -> None:
    assert not home.exists() or not any(home.rglob("*")), sorted(home.rglob("*"))


# -------------------------------------------------------------------------------------------------
# Python API: pretrain(preset="tiny", level=2, **kwargs) -> ValueError naming the field and the value
PRETRAIN_CASES = [
    (dict(weight_decay=NAN), "weight_decay=nan is not allowed: must be a finite number >= 0"),
    (dict(weight_decay=INF), "weight_decay=inf is not allowed: must be a finite number >= 0"),
    (dict(lr=NAN), "lr=nan is not allowed: must be a finite number > 0"),
    (dict(lr=-INF), "lr=-inf is not allowed: must be a finite number > 0"),
    (dict(grad_clip=INF), "grad_clip=inf is not allowed"),
    (dict(min_lr_ratio=1.5), "min_lr_ratio=1.5 is not allowed: must be a finite number in [0, 1]"),
    (dict(min_lr_ratio=NAN), "min_lr_ratio=nan is not allowed"),
    (dict(aux_task="modsum", aux_fraction=NAN), "aux_fraction=nan is not allowed"),
    (dict(aux_task="modsum", aux_fraction=1.0), "aux_fraction=1.0 is not allowed: must be in (0, 1)"),
    # wrong Python types: ValueError (not TypeError) naming the field
    (dict(lr="0.1"), "lr='0.1' is not allowed: must be a finite number (got str)"),
    (dict(batch_size=3.5), "batch_size=3.5 is not allowed: must be an integer (got float)"),
    (dict(seed=True), "seed=True is not allowed: must be an integer (got bool)"),
    (dict(level="3"), "level='3' is not allowed: must be an integer (got str)"),
    (dict(weight_decay=True), "weight_decay=True is not allowed: must be a finite number (got bool)"),
    (dict(arch=3), "arch=3 is not allowed: must be a string (got int)"),
    (dict(max_steps=[20]), "max_steps=[20] is not allowed: must be an integer (got list)"),
    # out of range
    (dict(seed=-1), "seed=-1 is not allowed: must be an integer in [0, 4294967295]"),
    (dict(warmup_steps=-5), "warmup_steps=-5 is not allowed"),
    (dict(arch="rnn"), "arch='rnn' is not allowed: must be one of: llama, gpt2"),
    # absurd sizes, refused before any allocation
    (dict(level=10**9), "level=1000000000 is not allowed: must be an integer in [1, 40]"),
    (dict(eval_extra_digits=10**6), "eval_extra_digits=1000000 is not allowed: must be an integer in [0, 39]"),
    (dict(eval_extra_digits=39), "eval_extra_digits=39 is not allowed: must be <= 38 with level=2"),
    (dict(aux_task="modsum", aux_fraction=0.3, aux_max_digits=10**12),
     "aux_max_digits=1000000000000 is not allowed: must be an integer in [1, 40]"),
    (dict(batch_size=10**9), "batch_size=1000000000 is not allowed: must be an integer in [1, 4096]"),
    (dict(n_positions=10**9), "n_positions=1000000000 is not allowed: must be an integer in [1, 65536]"),
    (dict(n_embd=2**20, n_head=2), "n_embd=1048576 is not allowed: must be smaller"),
    (dict(n_layer=10**6), "n_layer=1000000 is not allowed: must be smaller"),
    (dict(eval_samples=10**9), "eval_samples=1000000000 is not allowed"),
    (dict(level=13, arch="gpt2", n_layer=12, n_embd=768, n_head=12, n_positions=2048, batch_size=4096),
     "batch_size=4096 is not allowed: must be smaller"),
    # texts must fit the positions, for both architectures
    (dict(n_positions=64), "n_positions=64 is not allowed: must be >= "),
    (dict(arch="gpt2", n_positions=64), "n_positions=64 is not allowed: must be >= "),
    (dict(n_embd=30, n_head=4), "n_embd=30 is not allowed: must be divisible by n_head=4"),
    (dict(n_embd=30, n_head=2), "n_head=2 is not allowed"),  # llama: odd head size breaks rotary positions
    (dict(preset=["tiny"]), "preset=['tiny'] is not allowed"),
]


@pytest.mark.parametrize("kwargs,message", PRETRAIN_CASES, ids=[m.split(" is")[0] for _, m in PRETRAIN_CASES])
def test_pretrain_api(kwargs, message, _home):
    kwargs = {"preset": "tiny", "level": 2, **kwargs}
    with pytest.raises(ValueError) as e:
        pretrain(progress=False, **kwargs)
    assert message in str(e.value)
    assert_empty(_home)


# Python API: finetune(preset="tiny", model_dir=<a real checkpoint>, **kwargs) -> ValueError
RL_CASES = [
    (dict(ref_temperature=INF), "ref_temperature=inf is not allowed: must be a finite number >= 0.001"),
    (dict(ref_temperature=NAN), "ref_temperature=nan is not allowed"),
    (dict(temperature=NAN), "temperature=nan is not allowed: must be a finite number >= 0.001"),
    (dict(temperature=1e-300), "temperature=1e-300 is not allowed"),
    (dict(alpha=NAN), "alpha=nan is not allowed: must be a finite number >= 0"),
    (dict(alpha=INF), "alpha=inf is not allowed"),
    (dict(beta=INF), "beta=inf is not allowed"),
    (dict(gamma=1.5), "gamma=1.5 is not allowed: must be a finite number in [0, 1]"),
    (dict(gae_lambda=NAN), "gae_lambda=nan is not allowed"),
    (dict(lr="1e-3"), "lr='1e-3' is not allowed: must be a finite number (got str)"),
    (dict(lr=0.0), "lr=0.0 is not allowed: must be a finite number > 0"),
    (dict(critic_lr=NAN), "critic_lr=nan is not allowed"),
    (dict(vf_coef=-INF), "vf_coef=-inf is not allowed"),
    (dict(episodes_per_collect=2.0), "episodes_per_collect=2.0 is not allowed: must be an integer (got float)"),
    (dict(extra_digits=10**6), "extra_digits=1000000 is not allowed: must be an integer in [1, 39]"),
    (dict(value_hidden=10**6), "value_hidden=1000000 is not allowed: must be an integer in [1, 16384]"),
    (dict(eval_plus=10**7), "eval_plus=10000000 is not allowed: must be an integer in [1, 4096]"),
    (dict(eval_temperature=1e-9), "eval_temperature=1e-09 is not allowed: must be -1"),
    (dict(eval_temperature=NAN), "eval_temperature=nan is not allowed"),
    (dict(seed=2**40), "seed=1099511627776 is not allowed"),
    (dict(clip=-0.1), "clip=-0.1 is not allowed: must be a finite number >= 0"),
    (dict(update_epochs=True), "update_epochs=True is not allowed: must be an integer (got bool)"),
    (dict(kl=None, estimator="k9"), "estimator='k9' is not allowed: must be one of: k1, k2, k3"),
]


@pytest.mark.parametrize("kwargs,message", RL_CASES, ids=[m.split(" is")[0] for _, m in RL_CASES])
def test_finetune_api(kwargs, message, tiny_checkpoint, _home):
    with pytest.raises(ValueError) as e:
        finetune(preset="tiny", model_dir=str(tiny_checkpoint), progress=False, **kwargs)
    assert message in str(e.value)
    assert_empty(_home)


CONFIG_CASES = [
    (lambda: rl_config("tiny", model_dir=5), "model_dir=5 is not allowed: must be a string (got int)"),
    (lambda: ModelConfig(n_layer=0), "n_layer=0 is not allowed: must be an integer in [1, 1000000000]"),
    (lambda: ModelConfig(n_head=2.0), "n_head=2.0 is not allowed: must be an integer (got float)"),
    (lambda: CriticalConfig(model_dir="m", n=0), "n=0 is not allowed: must be an integer in [1, 4096]"),
    (lambda: CriticalConfig(model_dir="m", temperature=0.0), "temperature=0.0 is not allowed"),
    (lambda: CriticalConfig(model_dir="m", alpha=NAN), "alpha=nan is not allowed: must be a finite number >= 0"),
    (lambda: CriticalConfig(model_dir="m", certainty="gini"), "certainty='gini' is not allowed"),
    (lambda: CriticalConfig(model_dir=""), "model_dir='' is not allowed"),
    (lambda: CriticalConfig(model_dir="m", extra_digits="2"), "extra_digits='2' is not allowed"),
]


@pytest.mark.parametrize("make,message", CONFIG_CASES, ids=[m.split(" is")[0] for _, m in CONFIG_CASES])
def test_config_api(make, message, _home):
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value)
    assert_empty(_home)


def test_critical_defaults_are_the_cpu_reinforce_calibration():
    cfg, rl = CriticalConfig(model_dir="m"), rl_config("cpu-reinforce")
    assert (cfg.temperature, cfg.ref_temperature, cfg.alpha, cfg.certainty) == (
        rl.temperature, rl.ref_temperature, rl.alpha, rl.certainty) == (1.0, 1.0, 1000.0, "max_prob")


# -------------------------------------------------------------------------------------------------
# CLI: critkl.cli.main(argv) -> exit status 2 and "critkl <cmd>: error: <message>" on stderr
MODEL = "<model>"  # replaced by the tiny checkpoint's folder
MISSING = "<missing>"  # replaced by a folder that does not exist
CLI_CASES = [
    (["pretrain", "--preset", "tiny", "--weight-decay", "nan"], "weight_decay=nan is not allowed"),
    (["pretrain", "--preset", "tiny", "--lr", "inf"], "lr=inf is not allowed"),
    (["pretrain", "--preset", "tiny", "--level", "1000000"], "level=1000000 is not allowed"),
    (["pretrain", "--preset", "tiny", "--n-embd", "1048576", "--n-head", "2"], "n_embd=1048576 is not allowed"),
    (["pretrain", "--preset", "tiny", "--aux-task", "modsum", "--aux-fraction", "1.5"], "aux_fraction=1.5"),
    (["finetune", "--model", MODEL, "--preset", "tiny", "--ref-temperature", "inf"], "ref_temperature=inf"),
    (["finetune", "--model", MODEL, "--preset", "tiny", "--temperature", "nan"], "temperature=nan"),
    (["finetune", "--model", MODEL, "--episodes-per-collect", "100000"], "episodes_per_collect=100000"),
    (["finetune", "--model", MISSING, "--preset", "tiny"], "does not exist"),
    (["critical", "--model", MODEL, "--temperature", "0"], "temperature=0.0 is not allowed"),
    (["critical", "--model", MODEL, "--alpha", "nan"], "alpha=nan is not allowed"),
    (["critical", "--model", MODEL, "--n", "0"], "n=0 is not allowed"),
    (["critical", "--model", MODEL, "--seed=-1"], "seed=-1 is not allowed"),
    (["critical", "--model", MODEL, "--ref-temperature=-inf"], "ref_temperature=-inf is not allowed"),
    (["critical", "--model", MISSING], "does not exist"),
    # the tiny checkpoint (level 2, 1024 positions) cannot hold plus-30 episodes
    (["critical", "--model", MODEL, "--extra-digits", "30"], "extra_digits=30 is not allowed: must be an integer in [1, "),
]


@pytest.mark.parametrize("argv,message", CLI_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI_CASES])
def test_cli(argv, message, tiny_checkpoint, tmp_path, capsys, _home):
    missing = str(tmp_path / "no-such-folder")
    argv = [str(tiny_checkpoint) if a == MODEL else missing if a == MISSING else a for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"critkl {argv[0]}: error: ") and message in err and "Traceback" not in err
    if MISSING in argv or missing in argv:
        assert missing in err  # the message names the path
    assert_empty(_home)


@pytest.mark.parametrize("argv,message", [
    (["pretrain", "--batch-size", "3.5"], "invalid int value: '3.5'"),
    (["critical", "--model", "x", "--certainty", "gini"], "invalid choice: 'gini'"),
    (["critical", "--n", "5"], "the following arguments are required: --model"),
])
def test_cli_argparse_errors(argv, message, capsys, _home):
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert_empty(_home)


@pytest.mark.parametrize("command,expected", [
    ("pretrain", ["usage: critkl pretrain", "--weight-decay", "under the operator %)", "tiny:"]),
    ("finetune", ["usage: critkl finetune", "--ref-temperature", "--model", "cpu-reinforce:"]),
    ("critical", ["usage: critkl critical", "--extra-digits", "--certainty", "CriticalConfig default: 1000.0"]),
])
def test_help(command, expected, capsys, _home):
    with pytest.raises(SystemExit) as e:
        cli_main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(x in out for x in expected), out
    assert_empty(_home)


# -------------------------------------------------------------------------------------------------
# Checkpoints: one CheckpointError naming the file, from the Python API and from `critkl critical`
def _copy(ckpt, dst: Path) -> Path:
    shutil.copytree(ckpt, dst)
    return dst


def _json(text):
    def make(ckpt, dst):
        d = _copy(ckpt, dst)
        (d / "critkl.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        return d
    return make


def _no_weights(ckpt, dst):
    d = _copy(ckpt, dst)
    (d / "model.safetensors").unlink()
    return d


def _nan_weight(ckpt, dst):
    from safetensors.torch import load_file, save_file
    d = _copy(ckpt, dst)
    w = load_file(str(d / "model.safetensors"))
    name = sorted(w)[0]
    w[name].view(-1)[0] = float("nan")
    save_file(w, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d


CKPT_CASES = [
    ("no-config", _json('{"kind": "pretrain"}'), "critkl.json", "config=None is not allowed"),
    ("json-list", _json("[1, 2, 3]"), "critkl.json", "it holds a list"),
    ("invalid-json", _json("{not json"), "critkl.json", "is corrupt"),
    ("empty-file", _json(""), "critkl.json", "is corrupt"),
    ("non-utf8", _json(b"\xff\xfe{\x00"), "critkl.json", "is corrupt"),
    ("bad-kind", _json('{"kind": "bogus", "config": {"level": 2}}'), "critkl.json", "kind='bogus' is not allowed"),
    ("level-str", _json('{"kind": "pretrain", "config": {"level": "2"}}'), "critkl.json",
     "config.level='2' is not allowed"),
    ("level-huge", _json('{"kind": "pretrain", "config": {"level": 1000000000}}'), "critkl.json",
     "config.level=1000000000 is not allowed"),
    ("rl-no-level", _json('{"kind": "rl", "config": {}}'), "critkl.json", "level=None is not allowed"),
    ("missing-weights", _no_weights, "model.safetensors", "is missing"),
    ("nan-weight", _nan_weight, "model.safetensors", "hold nan or inf in tensor"),
]


@pytest.mark.parametrize("via", ["api", "cli"])
@pytest.mark.parametrize("name,make,file,message", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_bad_checkpoint(via, name, make, file, message, tiny_checkpoint, tmp_path, capsys, _home):
    d = make(tiny_checkpoint, tmp_path / "ck")
    if via == "api":
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(d)
        msg = str(e.value)
    else:
        assert cli_main(["critical", "--model", str(d), "--n", "2"]) == 2
        msg = capsys.readouterr().err
        assert msg.startswith("critkl critical: error: ") and "Traceback" not in msg
    assert message in msg and str(d / file) in msg  # names the file
    assert_empty(_home)


def test_finetune_refuses_missing_weights(tiny_checkpoint, tmp_path, capsys, _home):
    d = _no_weights(tiny_checkpoint, tmp_path / "ck")
    assert cli_main(["finetune", "--model", str(d), "--preset", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is missing" in err and str(d / "model.safetensors") in err and "Traceback" not in err
    assert_empty(_home)


def test_finetune_refuses_nan_weights(tiny_checkpoint, tmp_path, _home):
    d = _nan_weight(tiny_checkpoint, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="hold nan or inf in tensor"):
        finetune(preset="tiny", model_dir=str(d), progress=False)
    # finetune takes the run's lock (critkl.runs) before it loads the weights: only that may remain
    left = [p for p in _home.rglob("*") if p.is_file()] if _home.exists() else []
    assert all(p.parent.name == ".locks" for p in left), left


def _tiny_model():
    tok = build_tokenizer()
    return build_model(ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=256), tok), tok


def test_save_refuses_nonfinite_weights(tmp_path):
    model, tok = _tiny_model()
    name, p = next(iter(model.named_parameters()))
    with torch.no_grad():
        p.view(-1)[3] = float("inf")
    with pytest.raises(FloatingPointError) as e:
        save_checkpoint(model, tok, tmp_path / "ck", {"kind": "pretrain", "config": {"level": 2}})
    assert f"tensor {name!r} holds nan or inf" in str(e.value)
    assert not (tmp_path / "ck").exists()  # checked before anything is written


def test_save_refuses_unreadable_info(tmp_path):
    model, tok = _tiny_model()
    with pytest.raises(CheckpointError, match="config=None is not allowed"):
        save_checkpoint(model, tok, tmp_path / "ck", {"kind": "pretrain"})
    assert not (tmp_path / "ck").exists()


# -------------------------------------------------------------------------------------------------
# CRITKL_HOME: empty, a file, under a file, read-only
def _file_home(tmp_path):
    f = tmp_path / "home-file"
    f.write_text("not a folder")
    return str(f)


HOME_CASES = [
    ("empty", lambda tmp: "", "CRITKL_HOME='' is not allowed: must be a folder path"),
    ("blank", lambda tmp: "  ", "CRITKL_HOME='  ' is not allowed"),
    ("file", _file_home, "is a file, not a folder"),
    ("under-file", lambda tmp: _file_home(tmp) + "/sub", "is a file, not a folder"),
]


@pytest.mark.parametrize("via", ["api", "cli"])
@pytest.mark.parametrize("name,value,message", HOME_CASES, ids=[c[0] for c in HOME_CASES])
def test_bad_home(via, name, value, message, tmp_path, monkeypatch, capsys):
    home = value(tmp_path)
    monkeypatch.setenv("CRITKL_HOME", home)
    before = sorted(p.name for p in tmp_path.iterdir())
    if via == "api":
        with pytest.raises(ValueError) as e:
            critkl_home()
        msg = str(e.value)
    else:
        assert cli_main(["pretrain", "--preset", "tiny", "--level", "2", "--no-progress"]) == 2
        msg = capsys.readouterr().err
    assert message in msg and "CRITKL_HOME=" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere
    if name in ("file", "under-file"):
        assert Path(home.removesuffix("/sub")).read_text() == "not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write read-only folders")
def test_read_only_home(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("CRITKL_HOME", str(ro / "cache"))
    try:
        with pytest.raises(ValueError, match="is read-only"):
            critkl_home()
    finally:
        ro.chmod(0o755)


def test_unset_home_is_the_default(monkeypatch):
    monkeypatch.delenv("CRITKL_HOME")
    assert critkl_home() == Path.home() / ".cache" / "critkl"


# -------------------------------------------------------------------------------------------------
# parse_answer: only ASCII digits, exactly one answer line right after the FIRST </scratch>, and the
# text ends there (the sampler stops at that newline)
PARSE_CASES = [
    ("second-scratch", "</scratch>\nxx\n</scratch>\n3 4\n"),
    ("arabic-indic", "</scratch>\n\u0663\n"),
    ("fullwidth", "</scratch>\n\uff13 \uff14\n"),
    ("math-bold", "</scratch>\n\U0001d7d1\n"),
    ("superscript", "</scratch>\n\u00b3\n"),
    ("two-answers", "</scratch>\n3 4\n5 6\n"),
    ("trailing-garbage", "</scratch>\n3 4\ngarbage"),
    ("trailing-newline", "</scratch>\n3 4\n\n"),
    ("answer-then-scratch", "</scratch>\n3 4\n</scratch>\n5\n"),
    ("nbsp", "</scratch>\n3\u00a04\n"),
    ("crlf", "</scratch>\n3 4\r\n"),
    ("nul", "</scratch>\n3 4\n\x00"),
    ("huge", "</scratch>\n" + " ".join("9" * 5000) + "\n"),
]


@pytest.mark.parametrize("name,text", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_answer_hostile(name, text):
    # none is a valid answer line, though most read as 34 (= 3 + 31) to a lenient parser
    assert task.parse_answer(text) is None
    assert not task.is_correct(text, 3, 31)


def test_parse_answer_still_reads_valid_texts():
    assert task.parse_answer(task.full_text(56, 789)) == 845
    assert task.parse_answer(task.scratchpad(99, 1)) == 100
    assert task.parse_answer("junk </scratch>\n3 4\n") == 34
    assert task.is_correct("</scratch>\n3 4\n", 3, 31)  # the clean form of the hostile texts above


# -------------------------------------------------------------------------------------------------
# Controls: the validated `critical` subcommand still measures a good checkpoint
def test_critical_cli_runs(tiny_checkpoint, capsys, _home):
    assert cli_main(["critical", "--model", str(tiny_checkpoint), "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "p_correct_mean" in out and "non-critical" in out
    assert_empty(_home)


def test_critical_cli_certainty_form(tiny_checkpoint, capsys):
    """--certainty picks the form of J(s): Table 1's rows name it, and the certainties it prints change."""
    out = {}
    for form in ("max_prob", "entropy"):
        assert cli_main(["critical", "--model", str(tiny_checkpoint), "--n", "2", "--certainty", form]) == 0
        out[form] = capsys.readouterr().out
    kinds = {form: {line.split()[0] for line in text.splitlines() if line.split()[:1] in (["max_prob"], ["entropy"])}
             for form, text in out.items()}
    assert kinds == {"max_prob": {"max_prob"}, "entropy": {"entropy"}}
    summary = {form: text.splitlines()[:3] for form, text in out.items()}  # teacher-forced: header + 2 rows
    assert summary["max_prob"][0] == summary["entropy"][0] and summary["max_prob"] != summary["entropy"]


def test_python_dash_m_critkl_exits_with_the_commands_status(tmp_path):
    """``python -m critkl`` is the ``critkl`` command: a bad request exits 2 (scripts and sweeps of sweeps
    rely on the status), not 0."""
    import subprocess
    import sys
    env = {**os.environ, "CRITKL_HOME": str(tmp_path)}
    bad = subprocess.run([sys.executable, "-m", "critkl", "pretrain", "--level", "0"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "level=0" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "critkl", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0
