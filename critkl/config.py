"""Typed configs, one dataclass per stage (TRL style), their presets and their cache keys.

Each field carries a help string (``metadata["help"]``) that the CLI shows, and the on-disk cache key is
derived from the same dataclass, so the two cannot drift apart. The chapters' papermill parameters cells are
written by hand (papermill needs literals); ``tests/test_chapters.py`` checks that each default there equals
the value of the preset the chapter names.

One concept read top to bottom (each stage's dataclass, its validation and its presets, then the cache key), so
it stays one module although it is longer than the others.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ARCHS = ("llama", "gpt2")
AUX_TASKS = ("none", "modsum")
VALUE_INITS = ("random", "mean_return")
DEVICES = ("auto", "cpu", "cuda")
BATCHINGS = ("bucketed", "padded")
PRECISIONS = ("auto", "bf16", "fp32")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


# -------------------------------------------------------------------------------------------------
# Validation. Every config checks every field in ``__post_init__`` (so the Python API and the CLI alike
# fail before anything is written) and raises ValueError in one form, the field, the value and what is
# allowed: ``weight_decay=nan is not allowed: must be a finite number >= 0``. Wrong Python types are
# ValueErrors too (not TypeError), so the CLI maps every bad value to exit status 2.
MAX_DIGITS = 40             # operands of at most 40 digits (texts of ~7k characters; the paper: 13 + 2)
MAX_BATCH = 4096            # any count that becomes one batch (batch_size, episodes, evaluation problems)
MAX_EVAL_SAMPLES = 100_000  # problems per digit length in pre-training evaluations (run in batches of 64)
MAX_VALUE_HIDDEN = 16_384   # critic width (its H x H layer: 1 GiB with Adam)
MAX_POSITIONS = 65_536      # 40-digit texts need ~7k
MAX_COUNT = 10**9           # steps, rounds, epochs and other plain counts
MAX_SEED = 2**32 - 1
MIN_TEMPERATURE = 1e-3      # softmax(logits / T) overflows float32 near T = 1e-37; 0.001 is ample room
MAX_TRAIN_BYTES = 16 * 2**30         # parameters x 4 bytes x 4 (weights, gradients, two Adam moments)
MAX_ACTIVATION_BYTES = 256 * 2**30   # rough pre-training activation estimate (see PretrainConfig)
VOCAB_BOUND = 64            # >= the character vocabulary (critkl.tokenizer: 44 tokens)


def _bad(name: str, value, rule: str, note: str = "") -> ValueError:
    return ValueError(f"{name}={value!r} is not allowed: must be {rule}{note}")


def _choice(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise _bad(name, value, "one of: " + ", ".join(map(str, allowed)))


def _check_types(cfg) -> None:
    """Every field against its annotation: ``int`` fields take an integer but not a bool, ``float``
    fields an int or a float (not a bool), ``str`` fields a str. NumPy scalars become Python ones (the
    cache key is JSON). Finiteness and ranges are checked afterwards, per field."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        v, t = getattr(cfg, f.name), hints.get(f.name)
        got = f" (got {type(v).__name__})"
        if t is int:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise _bad(f.name, v, "an integer", got)
            if type(v) is not int:
                setattr(cfg, f.name, int(v))
        elif t is float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise _bad(f.name, v, "a finite number", got)
            if type(v) not in (int, float):
                setattr(cfg, f.name, float(v))
        elif t is str and not isinstance(v, str):
            raise _bad(f.name, v, "a string", got)


def _check_ranges(cfg, ranges: dict) -> None:
    """``ranges``: field -> ``(lo, hi)`` or ``(lo, hi, "open")`` (lo excluded); None = unbounded. Fields
    absent from the dataclass are skipped. Every float must also be finite, every int <= MAX_COUNT."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for name, spec in ranges.items():
        if name not in names:
            continue
        lo, hi, lo_open = spec[0], spec[1], len(spec) > 2
        v = getattr(cfg, name)
        kind = "an integer" if hints[name] is int else "a finite number"
        if math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi):
            continue
        if lo is not None and hi is not None:
            rule = f"{kind} in {'(' if lo_open else '['}{lo}, {hi}]"
        elif lo is not None:
            rule = f"{kind} {'>' if lo_open else '>='} {lo}"
        else:
            rule = f"{kind} <= {hi}"
        raise _bad(name, v, rule)
    for f in dataclasses.fields(cfg):  # fields without a rule above: finite, and no absurd counts
        if f.name in ranges:
            continue
        v, t = getattr(cfg, f.name), hints.get(f.name)
        if t is float and not math.isfinite(v):
            raise _bad(f.name, v, "a finite number")
        if t is int and abs(v) > MAX_COUNT:
            raise _bad(f.name, v, f"an integer in [-{MAX_COUNT}, {MAX_COUNT}]")


def check_episode_fit(level: int, extra_digits: int, n_positions: int, name: str = "extra_digits") -> None:
    """Plus-k episodes (prompt + the paper's episode limit) of a model pre-trained up to ``level`` digits
    must fit its ``n_positions`` (learned positions end there; rotary ones were never trained beyond)
    and operands stay within MAX_DIGITS. ValueError naming ``name`` (the extra-digits field) otherwise."""
    from .task import episode_limit, prompt

    if not 1 <= level <= MAX_DIGITS:
        raise _bad("level", level, f"an integer in [1, {MAX_DIGITS}]")

    def length(k):
        big = 10 ** (level + k) - 1
        return len(prompt(big, big)) + episode_limit(level, k)

    if 1 <= extra_digits <= MAX_DIGITS - level and length(extra_digits) <= n_positions:
        return
    top = next((k for k in range(min(extra_digits - 1, MAX_DIGITS - level), 0, -1) if length(k) <= n_positions), 0)
    where = f"for a checkpoint of level={level} and n_positions={n_positions}"
    rule = f"an integer in [1, {top}] {where}" if top else f"one whose episodes fit, and none does {where}"
    note = (f"; plus{extra_digits} episodes reach {length(extra_digits)} tokens"
            if 1 <= extra_digits <= MAX_DIGITS - level else f"; operands have at most {MAX_DIGITS} digits")
    raise _bad(name, extra_digits, rule, note)


# -------------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    """Architecture of the policy LM (a transformers model, built from scratch)."""

    arch: str = _f("llama", "llama (rotary positions) or gpt2 (learned absolute positions). Regime "
                   "notes: from scratch, rotary positions learn the task far faster on CPU.", choices=ARCHS)
    n_layer: int = _f(4, "transformer blocks")
    n_embd: int = _f(128, "hidden width")
    n_head: int = _f(4, "attention heads")
    n_positions: int = _f(2048, "maximum sequence length (gpt2: learned positions)")

    def __post_init__(self):
        _check_types(self)
        _choice("arch", self.arch, ARCHS)
        _check_ranges(self, dict(n_layer=(1, MAX_COUNT), n_embd=(1, MAX_COUNT), n_head=(1, MAX_COUNT),
                                 n_positions=(1, MAX_POSITIONS)))
        if self.n_embd % self.n_head:
            raise _bad("n_embd", self.n_embd, f"divisible by n_head={self.n_head}")
        if self.arch == "llama" and (self.n_embd // self.n_head) % 2:
            raise _bad("n_head", self.n_head, f"a divisor of n_embd={self.n_embd} that leaves an even head size "
                       "(rotary positions rotate pairs of dimensions)")
        gib = self.training_bytes() / 2**30
        if gib > MAX_TRAIN_BYTES / 2**30:
            E, L, P = self.n_embd, self.n_layer, self.n_positions
            name = "n_positions" if P * E > 16 * L * E * E else "n_layer" if L > E else "n_embd"
            raise _bad(name, getattr(self, name), f"smaller: n_layer={L}, n_embd={E}, n_positions={P} give "
                       f"~{self.n_params_bound():.3g} parameters, ~{gib:.3g} GiB to train (fp32 weights, "
                       f"gradients and two Adam moments); the limit is {MAX_TRAIN_BYTES / 2**30:g} GiB")

    def n_params_bound(self) -> int:
        """An upper bound on the parameter count: 16 E^2 per block (attention 4 E^2, MLP 8-12 E^2) plus
        token and (gpt2) position embeddings."""
        E = self.n_embd
        return 16 * self.n_layer * E * E + (VOCAB_BOUND + self.n_positions) * E

    def training_bytes(self) -> int:
        return 16 * self.n_params_bound()


MODEL_PRESETS: dict[str, dict] = {
    "tiny": dict(arch="llama", n_layer=2, n_embd=32, n_head=2, n_positions=1024),
    "cpu": dict(arch="llama", n_layer=4, n_embd=128, n_head=4, n_positions=2048),
    # GPT-2 small's shape with a character vocabulary, as the paper's reference models.
    # 2048 positions: a 13-digit scratchpad is 1,224 characters, plus2 episodes up to ~1,450 + 100.
    "paper": dict(arch="gpt2", n_layer=12, n_embd=768, n_head=12, n_positions=2048),
}


# -------------------------------------------------------------------------------------------------
@dataclass
class PretrainConfig(ModelConfig):
    """Supervised pre-training on prompts + scratchpads with operands of 1..level digits (the architecture
    fields are ``ModelConfig``'s)."""

    level: int = _f(3, "pre-training level N: operands have 1..N digits (paper: 7, 9, 11, 13)")
    preset: str = _f("cpu-modsum", "preset that filled the defaults: tiny, cpu-modsum or paper")
    aux_task: str = _f("none", "auxiliary 'general' task mixed into pre-training: none, or modsum (digit-wise "
                       "sum mod 10 in the same scratchpad format under the operator %)", choices=AUX_TASKS, omit_default=True)
    aux_fraction: float = _f(0.0, "fraction of each batch drawn from the auxiliary task", omit_default=True)
    aux_max_digits: int = _f(8, "auxiliary operands have 1..aux_max_digits digits", omit_default=True)
    seed: int = _f(0, "seeds data, initialisation and evaluation sampling")
    batch_size: int = _f(32, "sequences per optimizer step")
    lr: float = _f(1e-3, "peak AdamW learning rate")
    min_lr_ratio: float = _f(0.1, "final learning rate as a fraction of lr (cosine decay)")
    warmup_steps: int = _f(50, "linear warm-up steps")
    max_steps: int = _f(1500, "optimizer steps in total")
    stop_at: float = _f(0.0, "training to mastery: stop at the first evaluation whose worst greedy accuracy over "
                        "lengths 1..N reaches this (0: run all max_steps; the learning-rate schedule still spans "
                        "max_steps)", omit_default=True)
    weight_decay: float = _f(0.01, "AdamW weight decay")
    grad_clip: float = _f(1.0, "gradient-norm clipping")
    eval_every: int = _f(250, "steps between evaluations (and at the end)")
    eval_samples: int = _f(64, "problems per digit length at each evaluation")
    eval_extra_digits: int = _f(2, "also evaluate lengths N+1..N+extra (out of distribution)")
    ckpt_every: int = _f(100, "steps between resumable checkpoints")
    batching: str = _f("bucketed", "bucketed (each pool of bucket_pool batches sorted by length, so a batch "
                       "holds texts of similar length: ~2x fewer padding tokens) or padded (batches in draw "
                       "order, padded to their longest text: the path before issue 13)", choices=BATCHINGS)
    bucket_pool: int = _f(16, "batches drawn together and sorted by length when batching=bucketed")
    precision: str = _f("auto", "auto (bf16 autocast where the device has native bf16 matmuls: CUDA, or a CPU "
                        "with AVX512_BF16 or AMX; fp32 elsewhere, where bf16 is emulated and ~4x slower), bf16 "
                        "or fp32. The trained model records the resolved value, and the cache key holds it; a "
                        "config left at auto accepts a cached or shipped model of either precision",
                        choices=PRECISIONS)
    device: str = _f("auto", "auto (CUDA when present, else CPU), cpu or cuda", choices=DEVICES, cache_key=False)

    def __post_init__(self):
        _check_types(self)
        _choice("batching", self.batching, BATCHINGS)
        _choice("precision", self.precision, PRECISIONS)
        self.preset = resolve_preset(type(self), self.preset)
        _choice("preset", self.preset, tuple(PRETRAIN_PRESETS) + ("custom",))
        _choice("device", self.device, DEVICES)
        _choice("aux_task", self.aux_task, AUX_TASKS)
        _check_ranges(self, dict(
            level=(1, MAX_DIGITS), eval_extra_digits=(0, MAX_DIGITS - 1), aux_max_digits=(1, MAX_DIGITS),
            seed=(0, MAX_SEED), batch_size=(1, MAX_BATCH), lr=(0, None, "open"), min_lr_ratio=(0, 1),
            warmup_steps=(0, MAX_COUNT), max_steps=(1, MAX_COUNT), weight_decay=(0, None), grad_clip=(0, None),
            eval_every=(1, MAX_COUNT), eval_samples=(1, MAX_EVAL_SAMPLES), ckpt_every=(1, MAX_COUNT),
            bucket_pool=(1, MAX_BATCH), aux_fraction=(0, 1), stop_at=(0, 1)))
        if self.level + self.eval_extra_digits > MAX_DIGITS:
            raise _bad("eval_extra_digits", self.eval_extra_digits, f"<= {MAX_DIGITS - self.level} with "
                       f"level={self.level} (operands have at most {MAX_DIGITS} digits)")
        if not self.aux_fraction < 1 or (self.aux_task == "none") != (self.aux_fraction == 0):
            raise _bad("aux_fraction", self.aux_fraction, "in (0, 1) with an aux_task and 0 without one",
                       f" (aux_task={self.aux_task!r})")
        self.model_config()  # validates the architecture fields
        # Every text must fit the positions (learned ones end at n_positions; rotary ones were never
        # trained beyond): evaluation generates up to the longest scratchpad + 20 characters after the
        # prompt at level + eval_extra_digits digits; training texts (+ end token) at level or aux digits.
        from .task import max_text_length
        longest = max_text_length(self.level + self.eval_extra_digits) + 20
        train_digits = max(self.level, self.aux_max_digits if self.aux_task != "none" else 0)
        if longest > self.n_positions or max_text_length(train_digits) + 1 > self.n_positions:
            why = (f" (aux operands of {self.aux_max_digits} digits)" if train_digits > self.level + self.eval_extra_digits
                   else f" (level={self.level}, +{self.eval_extra_digits} evaluated digits)")
            raise _bad("n_positions", self.n_positions, f">= {max(longest, max_text_length(train_digits) + 1)}: "
                       f"texts reach that many tokens{why}")
        act = self.batch_size * (max_text_length(train_digits) + 1) * (
            self.n_layer * 20 * self.n_embd + 3 * VOCAB_BOUND) * 4
        if act > MAX_ACTIVATION_BYTES:
            raise _bad("batch_size", self.batch_size, f"smaller: with n_layer={self.n_layer}, n_embd={self.n_embd} "
                       f"and texts of up to {max_text_length(train_digits) + 1} tokens a batch needs roughly "
                       f"{act / 2**30:.3g} GiB of activations (limit {MAX_ACTIVATION_BYTES / 2**30:g} GiB)")
        if self.aux_task == "none":  # irrelevant without an aux task: keep it out of the cache key
            self.aux_max_digits = type(self).__dataclass_fields__["aux_max_digits"].default

    def model_config(self) -> ModelConfig:
        return ModelConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)})

    @property
    def name(self) -> str:
        aux = f"-{self.aux_task}{self.aux_max_digits}x{self.aux_fraction:g}" if self.aux_task != "none" else ""
        return f"N{self.level}-{self.arch}{aux}-{self.preset}-s{self.seed}"


PRETRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(**MODEL_PRESETS["tiny"], batch_size=8, max_steps=20, warmup_steps=2, eval_every=20,
                 eval_samples=4, ckpt_every=5, eval_extra_digits=1),
    # The CPU regime (results/regime_search.csv): the 4 x 128 Llama, 30 % of each batch modsum problems
    # with operands of up to N + 3 digits (6 at the default N = 3; AUX_DIGITS_ABOVE_LEVEL).
    # fp32, not auto: trained in fp32 the recipe meets the paper's premise (seed 0: 99 % greedy on 1..3
    # digits, 23 % plus-1 at T = 1, 89 % of failures at critical sites), in bf16 autocast it does not (95 %,
    # 27 %, 23 %), and bf16 kernels differ from CPU to CPU, so the default model would too. fp32 runs at
    # native speed on every CPU.
    "cpu-modsum": dict(**MODEL_PRESETS["cpu"], aux_task="modsum", aux_fraction=0.3, aux_max_digits=6,
                       precision="fp32"),
    "paper": dict(**MODEL_PRESETS["paper"], batch_size=64, lr=3e-4, max_steps=20000, warmup_steps=500,
                  eval_every=1000, eval_samples=128, ckpt_every=500),
}


# Presets whose auxiliary operands scale with the level: up to level + this many digits (N + 3: 6 at N = 3).
AUX_DIGITS_ABOVE_LEVEL = {"cpu-modsum": 3}


def pretrain_config(preset: str = "cpu-modsum", **overrides) -> PretrainConfig:
    """A ``PretrainConfig`` from a named preset plus overrides (``None`` values are ignored). For a preset of
    ``AUX_DIGITS_ABOVE_LEVEL``, ``aux_max_digits`` follows the level unless it is given."""
    cfg = _from_preset(PretrainConfig, PRETRAIN_PRESETS, preset, overrides)
    above = AUX_DIGITS_ABOVE_LEVEL.get(cfg.preset)
    if above is not None and overrides.get("aux_max_digits") is None and cfg.aux_max_digits != cfg.level + above:
        cfg = dataclasses.replace(cfg, aux_max_digits=min(cfg.level + above, MAX_DIGITS))
    return cfg


# -------------------------------------------------------------------------------------------------
# Old preset names, kept as deprecated aliases: "cpu" did not say that it mixes modsum into pre-training
# and switches RL to binary-reward REINFORCE.
PRESET_ALIASES = {"PretrainConfig": {"cpu": "cpu-modsum"}, "RLConfig": {"cpu": "cpu-reinforce"}}


def resolve_preset(cls, preset: str) -> str:
    """The current name of ``preset`` for ``cls``; an old alias warns (FutureWarning) and maps to it."""
    if not isinstance(preset, str):
        raise _bad("preset", preset, "a preset name (a string)", f" (got {type(preset).__name__})")
    new = PRESET_ALIASES.get(cls.__name__, {}).get(preset)
    if new is not None:
        warnings.warn(f"preset {preset!r} is deprecated; it is now called {new!r}", FutureWarning, stacklevel=3)
        return new
    return preset


def _from_preset(cls, presets: dict, preset: str, overrides: dict):
    preset = resolve_preset(cls, preset)
    _choice("preset", preset, tuple(presets))
    _known(cls, overrides)
    values = {**presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return cls(preset=preset, **values)


def _known(cls, overrides: dict) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {', '.join(sorted(names))}")


def cache_dict(cfg) -> dict:
    """The fields that define a result (device and other run-time choices excluded). Fields added after
    results were cached (``omit_default``) enter the key only when they differ from their default, so
    older cached results keep their keys."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.metadata.get("cache_key", True)
            and not (f.metadata.get("omit_default") and getattr(cfg, f.name) == f.default)}


def cache_key(cfg) -> str:
    """A short stable hash of ``cache_dict(cfg)`` and the task's text format: same config and format,
    same key, same cached result. A change of ``critkl.task.FORMAT_VERSION`` changes every key, so no
    model or run trained on another scratchpad text is ever loaded."""
    from .task import FORMAT_VERSION
    blob = json.dumps({"type": type(cfg).__name__, "format": FORMAT_VERSION, **cache_dict(cfg)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def recorded_config(cfg: dict) -> dict:
    """A checkpoint's recorded pre-training config (``cache_dict``: an ``omit_default`` field at its default is
    left out) with those fields filled in, e.g. ``aux_max_digits`` = 8 of an N = 5 model (N + 3 = the default)."""
    omitted = {f.name: f.default for f in dataclasses.fields(PretrainConfig) if f.metadata.get("omit_default")}
    return {**omitted, **cfg}


def config_name(cfg: dict) -> str:
    """A pre-training configuration without its seed (its seeds share it): level, architecture and size,
    auxiliary task, steps (and the mastery stop), precision (``critkl.regime``'s tables and
    ``critkl.store.shipped_evals`` group by it).
    ``cfg``: a checkpoint's recorded config (a dict; fields left out at their default count as that default)."""
    cfg = recorded_config(cfg)
    aux = f"-{cfg['aux_task']}{cfg['aux_max_digits']}x{cfg['aux_fraction']:g}" if cfg.get("aux_task", "none") != "none" else ""
    stop = f"-stop{cfg['stop_at']:g}" if cfg.get("stop_at", 0) else ""
    return (f"N{cfg['level']}-{cfg['arch']}{cfg['n_layer']}x{cfg['n_embd']}{aux}-{cfg['max_steps']}steps{stop}"
            f"-lr{cfg['lr']:g}-b{cfg['batch_size']}-{cfg.get('precision', 'bf16')}")


def critkl_home() -> Path:
    """Root of critkl's on-disk cache: ``$CRITKL_HOME`` or, when it is unset, ``~/.cache/critkl``.

    ValueError naming the variable when it is set but unusable: empty, a file (or under one), or a
    folder (or the nearest existing folder above it) that this process cannot write into."""
    value = os.environ.get("CRITKL_HOME")
    if value is None:
        return Path.home() / ".cache" / "critkl"
    if not value.strip():
        raise _bad("CRITKL_HOME", value, "a folder path (unset it to use ~/.cache/critkl)")
    path = Path(value).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise _bad("CRITKL_HOME", value, "a folder path", f" ({str(existing)!r} is a file, not a folder)")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise _bad("CRITKL_HOME", value, "a writable folder", f" ({str(existing)!r} is read-only)")
    return path


# -------------------------------------------------------------------------------------------------
KL_VARIANTS = ("none", "standard", "prioritized", "oracle", "oracle_inverse")
ADVANTAGE_WEIGHTINGS = ("none", "entropy")
EVAL_MODES = ("sample", "exact")
CERTAINTIES = ("max_prob", "entropy")
KL_ESTIMATORS = ("k1", "k2", "k3")
ALGOS = ("a2c", "ppo", "grpo")
GRPO_SCALES = ("std", "none")
LOSS_AVERAGES = ("token", "episode")
REWARDS = ("ternary", "binary")
BASELINES = ("critic", "none")


@dataclass
class RLConfig:
    """RL fine-tuning on longer operands (plus-k problems) with a KL penalty toward the pre-trained model."""

    model_dir: str = _f("", "critkl pre-trained checkpoint folder (the policy's start and the reference)")
    preset: str = _f("cpu-reinforce", "preset that filled the defaults: tiny, cpu-reinforce or paper")
    kl: str = _f("prioritized", "KL variant: none, standard (weight 1), prioritized (weight J(s)^alpha), oracle "
                 "(weight 0 at the states the locator marks critical on the sampled episode, 1 elsewhere) or "
                 "oracle_inverse (1 there, 0 elsewhere: the control)", choices=KL_VARIANTS)
    top_entropy_quantile: float = _f(1.0, "forking tokens (Wang et al. 2025; TRL's top_entropy_quantile): the policy "
                                     "term only on tokens whose entropy is in this top quantile of the minibatch "
                                     "(0.2 in the paper; 1.0 = every token)", omit_default=True)
    advantage_weighting: str = _f("none", "none, or entropy: each token's advantage times its policy entropy over "
                                  "the minibatch's mean entropy (the entropy weighting of GTPO, simplified)",
                                  choices=ADVANTAGE_WEIGHTINGS, omit_default=True)
    estimator: str = _f("k2", "per-token KL estimator k1, k2 or k3 (paper: k2)", choices=KL_ESTIMATORS)
    beta: float = _f(5.0, "KL coefficient (paper: 5 in the KL experiment, 10 in the level experiment)")
    alpha: float = _f(150.0, "certainty exponent of the prioritized weight (the paper's beta = 150)")
    ref_temperature: float = _f(4.0, "temperature of the reference distribution in the certainty (paper: 4)")
    certainty: str = _f("max_prob", "certainty form J(s): max_prob (1 + log max p / log|V|, the released code's, "
                        "the one our calibration was measured with) or entropy (the paper's Eq. 2, normalized "
                        "negentropy)", choices=CERTAINTIES)
    temperature: float = _f(2.0, "sampling temperature of the policy; the KL uses pi_ref at the same one (paper: 2)")
    algo: str = _f("a2c", "a2c (the paper's), ppo (clipped), or grpo (group-relative advantages over group_size "
                   "samples of each problem, PPO-clipped policy term, no critic; DeepSeekMath)", choices=ALGOS)
    group_size: int = _f(8, "grpo: samples per problem (G); episodes_per_collect must be a multiple of it",
                         omit_default=True)
    grpo_scale: str = _f("std", "grpo: advantage (R - group mean) / (group std + 1e-4) (std, GRPO's) or "
                         "R - group mean (none, Dr. GRPO's)", choices=GRPO_SCALES, omit_default=True)
    extra_digits: int = _f(1, "train on plus-k problems, k = extra_digits: one operand has level + k digits "
                           "(the paper: 1 in the KL experiment, 2 in the level experiment)")
    lr: float = _f(1e-6, "Adam learning rate (paper: 1e-6)")
    episodes_per_collect: int = _f(50, "episodes sampled per collect (paper: 50)")
    rounds: int = _f(8, "collect/update/evaluate rounds (paper: 8 = 400 episodes)")
    minibatch_tokens: int = _f(2, "transitions (tokens) per optimizer step; 0 = all of a collect (paper: 2)")
    minibatch_episodes: int = _f(0, "if > 0, minibatches are groups of this many whole episodes instead of "
                                 "random tokens (one forward per episode per pass: cheap on CPU)", omit_default=True)
    loss_average: str = _f("token", "how the loss averages over a minibatch: token (every token once, the "
                           "paper's) or episode (every episode once, its tokens weighted 1 / its length)",
                           choices=LOSS_AVERAGES, omit_default=True)
    update_epochs: int = _f(1, "passes over each collect (paper: 1)")
    gamma: float = _f(1.0, "discount (paper: 1)")
    gae_lambda: float = _f(0.95, "GAE lambda (paper: 0.95)")
    vf_coef: float = _f(0.1, "value-loss coefficient (paper: 0.1)")
    ent_coef: float = _f(0.001, "entropy-bonus coefficient (paper's released config: 0.001)")
    clip: float = _f(0.2, "PPO clip range")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping")
    value_hidden: int = _f(128, "width of the critic's two hidden layers (paper: 128)")
    value_init: str = _f("random", "critic output at the start: random (the paper's), or mean_return (its "
                         "last layer set to the first collect's mean reward, so early advantages are centred)",
                         choices=VALUE_INITS, omit_default=True)
    reward: str = _f("ternary", "terminal reward: ternary (+1 correct / -1 wrong, the paper's) or binary (1 / 0)",
                     choices=REWARDS, omit_default=True)
    baseline: str = _f("critic", "advantage baseline: critic (A2C with GAE, the paper's) or none (V = 0 in "
                       "GAE: with a binary reward and gae_lambda 1, only successful episodes are reinforced)",
                       choices=BASELINES, omit_default=True)
    critic_warmup: int = _f(0, "collects at the start that only fit the critic (policy frozen, Monte-Carlo "
                            "returns, critic_epochs passes at critic_lr), so the first policy updates get "
                            "advantages from a critic that already knows where episodes fail", omit_default=True)
    critic_epochs: int = _f(20, "passes over each warm-up collect", omit_default=True)
    critic_lr: float = _f(1e-3, "Adam learning rate of the critic during the warm-up", omit_default=True)
    eval_plus: int = _f(100, "plus-k evaluation episodes per round (paper: 100)")
    eval_comfort: int = _f(20, "comfort-zone evaluation episodes per round (paper: 20)")
    eval_temperature: float = _f(-1.0, "evaluation sampling temperature; -1 = the training temperature "
                                 "(as the released code), 0 = greedy")
    eval_mode: str = _f("sample", "how evaluation scores a problem: sample (one episode at the evaluation "
                        "temperature, success 0 or 1: the paper's) or exact (the probability that one such episode "
                        "is the true scratchpad and answer, teacher-forced: the same expectation up to correct "
                        "answers reached by another text, no sampling noise, one forward instead of a generation: "
                        "benchmarks/eval_modes.py measures both)",
                        choices=EVAL_MODES, omit_default=True)
    track_critical: int = _f(16, "plus-k problems on which critical-token probabilities are tracked")
    seed: int = _f(0, "seeds problems, sampling and the value head")
    device: str = _f("auto", "auto, cpu or cuda", choices=DEVICES, cache_key=False)

    def __post_init__(self):
        _check_types(self)
        _choice("kl", self.kl, KL_VARIANTS)
        _choice("estimator", self.estimator, KL_ESTIMATORS)
        _choice("algo", self.algo, ALGOS)
        _choice("grpo_scale", self.grpo_scale, GRPO_SCALES)
        _choice("advantage_weighting", self.advantage_weighting, ADVANTAGE_WEIGHTINGS)
        _choice("device", self.device, DEVICES)
        self.preset = resolve_preset(type(self), self.preset)
        _choice("preset", self.preset, tuple(RL_PRESETS) + ("custom",))
        _choice("value_init", self.value_init, VALUE_INITS)
        _choice("loss_average", self.loss_average, LOSS_AVERAGES)
        _choice("reward", self.reward, REWARDS)
        _choice("baseline", self.baseline, BASELINES)
        _choice("certainty", self.certainty, CERTAINTIES)
        _choice("eval_mode", self.eval_mode, EVAL_MODES)
        # model_dir: any str here (finetune says when it is empty; read_info checks the folder).
        _check_ranges(self, dict(
            beta=(0, None), alpha=(0, None), ref_temperature=(MIN_TEMPERATURE, None),
            temperature=(MIN_TEMPERATURE, None), extra_digits=(1, MAX_DIGITS - 1), lr=(0, None, "open"),
            episodes_per_collect=(1, MAX_BATCH), rounds=(1, MAX_COUNT), minibatch_tokens=(0, MAX_COUNT),
            minibatch_episodes=(0, MAX_BATCH), group_size=(1, MAX_BATCH), top_entropy_quantile=(0, 1, "open"), update_epochs=(1, MAX_COUNT), gamma=(0, 1), gae_lambda=(0, 1),
            vf_coef=(0, None), ent_coef=(0, None), clip=(0, None), max_grad_norm=(0, None, "open"),
            value_hidden=(1, MAX_VALUE_HIDDEN), critic_warmup=(0, MAX_COUNT), critic_epochs=(1, MAX_COUNT),
            critic_lr=(0, None, "open"), eval_plus=(1, MAX_BATCH), eval_comfort=(0, MAX_BATCH),
            track_critical=(0, MAX_BATCH), seed=(0, MAX_SEED)))
        if self.algo == "grpo" and (self.group_size < 2 or self.episodes_per_collect % self.group_size):
            raise _bad("group_size", self.group_size, f"an integer >= 2 that divides episodes_per_collect="
                       f"{self.episodes_per_collect} (algo='grpo' samples group_size episodes per problem)")
        t = self.eval_temperature
        if not (t == -1 or t == 0 or (math.isfinite(t) and t >= MIN_TEMPERATURE)):
            raise _bad("eval_temperature", t, f"-1 (the training temperature), 0 (greedy) or a finite number "
                       f">= {MIN_TEMPERATURE}")

    @property
    def uses_reference(self) -> bool:
        return self.kl != "none" and self.beta > 0


RL_PRESETS: dict[str, dict] = {
    "paper": dict(),
    # What runs in ~1 minute on 2 CPU cores: minibatches of whole episodes (8 steps per collect) with a
    # learning rate raised to match; sampling at T = 1 (at the paper's T = 2 a 1M-parameter model fails
    # even in-distribution) and a certainty calibration measured on such a model (results/format1/README.md, "Certainty calibration"):
    # reference T = 1, alpha = 1000 keeps weight ~1 on ordinary tokens and ~0 at uncertain critical ones.
    # RL dynamics measured on the 1M-parameter model (results/format1/README.md, "RL dynamics"): the paper's A2C with a ternary
    # reward makes every tested variant collapse (negative advantages on long failed episodes generalise
    # into "push everything down"); REINFORCE on successes (binary reward, no baseline, lambda 1) learns.
    # beta 0.2: any tested beta (0.05..5) stops that learning (k2 is unbounded on explored tokens).
    "cpu-reinforce": dict(lr=3e-5, episodes_per_collect=32, rounds=10, minibatch_tokens=0, minibatch_episodes=4,
                eval_plus=256, eval_comfort=64, temperature=1.0, alpha=1000.0, ref_temperature=1.0,
                reward="binary", baseline="none", gae_lambda=1.0, beta=0.2),
    "tiny": dict(lr=1e-3, episodes_per_collect=4, rounds=2, minibatch_tokens=0, eval_plus=4, eval_comfort=2,
                 track_critical=2, alpha=10.0, ref_temperature=1.0),
}
# The frontier's other two methods on the cpu-reinforce budget: the paper's A2C (ternary reward, critic,
# GAE 0.95), and GRPO as practitioners run it (4 problems x 8 samples per collect, binary reward, k3 KL).
RL_PRESETS["cpu-a2c"] = dict(RL_PRESETS["cpu-reinforce"], reward="ternary", baseline="critic", gae_lambda=0.95)
RL_PRESETS["cpu-grpo"] = dict(RL_PRESETS["cpu-reinforce"], algo="grpo", group_size=8, estimator="k3", vf_coef=0.0)


def rl_config(preset: str = "cpu-reinforce", **overrides) -> RLConfig:
    """An ``RLConfig`` from a named preset plus overrides (``None`` values are ignored)."""
    return _from_preset(RLConfig, RL_PRESETS, preset, overrides)


def preset_table(kind: str, presets, differing: bool = True):
    """The presets of ``kind`` (``"pretrain"`` or ``"rl"``) side by side: one row per config field,
    one column per preset, then the field's meaning (its help text's first clause); with
    ``differing``, only the fields on which the presets disagree. The ``paper`` presets hold the
    paper's values (its Tables 2-3), so this is the book's hyper-parameter table, derived from the
    configs that the runs use (a pandas DataFrame)."""
    import pandas as pd
    make = {"pretrain": pretrain_config, "rl": rl_config}.get(kind)
    if make is None:
        raise ValueError(f"kind={kind!r} is not allowed; choose pretrain or rl")
    cfgs = {p: make(p) for p in presets}
    fields = [f for f in dataclasses.fields(next(iter(cfgs.values())))
              if f.name not in ("preset", "model_dir")]
    def meaning(text: str, width: int = 70) -> str:
        text = text.split(". ")[0]
        return text if len(text) <= width else text[:width - 1].rsplit(" ", 1)[0] + " ..."
    rows = [{"field": f.name, **{p: getattr(c, f.name) for p, c in cfgs.items()},
             "meaning": meaning(f.metadata.get("help", ""))}
            for f in fields]  # the values first: a narrow page shows them
    out = pd.DataFrame(rows)
    if differing:
        out = out[out[list(cfgs)].astype(str).nunique(axis=1) > 1]
    return out.reset_index(drop=True)


# -------------------------------------------------------------------------------------------------
_CPU_RL = {**{f.name: f.default for f in dataclasses.fields(RLConfig)}, **RL_PRESETS["cpu-reinforce"]}


@dataclass
class CriticalConfig:
    """``critkl critical``: critical-token statistics of a checkpoint (the paper's Table 1). The
    certainty defaults are the ``cpu-reinforce`` RL preset's calibration."""

    model_dir: str = field(metadata={"help": "critkl checkpoint folder (pre-trained or RL)"})
    extra_digits: int = _f(1, "plus-k problems, k = extra_digits: one operand has level + k digits")
    n: int = _f(50, "generations (and teacher-forced problems)")
    temperature: float = _f(_CPU_RL["temperature"], "sampling temperature")
    ref_temperature: float = _f(_CPU_RL["ref_temperature"], "temperature of the certainty J(s)")
    alpha: float = _f(_CPU_RL["alpha"], "certainty exponent of the prioritized weight J(s)^alpha")
    certainty: str = _f(_CPU_RL["certainty"], "certainty form J(s): max_prob or entropy (see RLConfig.certainty)",
                        choices=CERTAINTIES)
    seed: int = _f(0, "seeds the problems and the sampling")
    device: str = _f("auto", "auto, cpu or cuda", choices=DEVICES)

    def __post_init__(self):
        _check_types(self)
        if not self.model_dir.strip():
            raise _bad("model_dir", self.model_dir, "a critkl checkpoint folder (--model)")
        _choice("certainty", self.certainty, CERTAINTIES)
        _choice("device", self.device, DEVICES)
        _check_ranges(self, dict(extra_digits=(1, MAX_DIGITS - 1), n=(1, MAX_BATCH),
                                 temperature=(MIN_TEMPERATURE, None), ref_temperature=(MIN_TEMPERATURE, None),
                                 alpha=(0, None), seed=(0, MAX_SEED)))
