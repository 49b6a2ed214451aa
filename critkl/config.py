"""Typed configs, one dataclass per stage (TRL style), their presets and their cache keys.

Each field carries a help string (``metadata["help"]``) that the CLI shows; papermill parameters and the
on-disk cache key are derived from the same dataclass, so the three cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ARCHS = ("llama", "gpt2")
AUX_TASKS = ("none", "modsum")
VALUE_INITS = ("random", "mean_return")
DEVICES = ("auto", "cpu", "cuda")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _positive(cfg, names, strict=True) -> None:
    for n in names:
        v = getattr(cfg, n)
        if v is None or (v <= 0 if strict else v < 0):
            raise ValueError(f"{n}={v!r} must be {'> 0' if strict else '>= 0'}")


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
        _choice("arch", self.arch, ARCHS)
        _positive(self, ["n_layer", "n_embd", "n_head", "n_positions"])
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")


MODEL_PRESETS: dict[str, dict] = {
    "tiny": dict(arch="llama", n_layer=2, n_embd=32, n_head=2, n_positions=1024),
    "cpu": dict(arch="llama", n_layer=4, n_embd=128, n_head=4, n_positions=2048),
    # GPT-2 small's shape with a character vocabulary, as the paper's reference models.
    # 2048 positions: a 13-digit scratchpad is 1,224 characters, plus2 episodes up to ~1,450 + 100.
    "paper": dict(arch="gpt2", n_layer=12, n_embd=768, n_head=12, n_positions=2048),
}


# -------------------------------------------------------------------------------------------------
@dataclass
class PretrainConfig:
    """Supervised pre-training on prompts + scratchpads with operands of 1..level digits."""

    level: int = _f(3, "pre-training level N: operands have 1..N digits (paper: 7, 9, 11, 13)")
    preset: str = _f("cpu-modsum", "preset that filled the defaults: tiny, cpu-modsum or paper")
    arch: str = _f("llama", "see ModelConfig.arch", choices=ARCHS)
    n_layer: int = _f(4, "transformer blocks")
    n_embd: int = _f(128, "hidden width")
    n_head: int = _f(4, "attention heads")
    n_positions: int = _f(2048, "maximum sequence length")
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
    weight_decay: float = _f(0.01, "AdamW weight decay")
    grad_clip: float = _f(1.0, "gradient-norm clipping")
    eval_every: int = _f(250, "steps between evaluations (and at the end)")
    eval_samples: int = _f(64, "problems per digit length at each evaluation")
    eval_extra_digits: int = _f(2, "also evaluate lengths N+1..N+extra (out of distribution)")
    ckpt_every: int = _f(100, "steps between resumable checkpoints")
    device: str = _f("auto", "auto (CUDA with bf16 autocast when present, else CPU), cpu or cuda",
                     choices=DEVICES, cache_key=False)

    def __post_init__(self):
        if isinstance(self.level, bool) or not isinstance(self.level, int) or self.level < 1:
            raise ValueError(f"level={self.level!r} must be an integer >= 1")
        self.preset = resolve_preset(type(self), self.preset)
        _choice("preset", self.preset, tuple(PRETRAIN_PRESETS) + ("custom",))
        _choice("device", self.device, DEVICES)
        self.model_config()  # validates the architecture fields
        _positive(self, ["batch_size", "lr", "max_steps", "eval_every", "eval_samples", "ckpt_every"])
        _positive(self, ["warmup_steps", "weight_decay", "grad_clip", "eval_extra_digits"], strict=False)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        from .task import max_text_length
        longest = max_text_length(self.level + self.eval_extra_digits) + 1
        if self.arch == "gpt2" and longest > self.n_positions:
            raise ValueError(f"n_positions={self.n_positions} is too short for level={self.level} "
                             f"(+{self.eval_extra_digits} evaluated): texts reach {longest} tokens")
        _choice("aux_task", self.aux_task, AUX_TASKS)
        if not 0 <= self.aux_fraction < 1 or (self.aux_task == "none") != (self.aux_fraction == 0):
            raise ValueError(f"aux_fraction={self.aux_fraction} must be in (0, 1) with an aux_task and 0 "
                             f"without one (aux_task={self.aux_task!r})")
        _positive(self, ["aux_max_digits"])
        if self.aux_task == "none":  # irrelevant without an aux task: keep it out of the cache key
            self.aux_max_digits = type(self).__dataclass_fields__["aux_max_digits"].default

    def model_config(self) -> ModelConfig:
        return ModelConfig(arch=self.arch, n_layer=self.n_layer, n_embd=self.n_embd,
                           n_head=self.n_head, n_positions=self.n_positions)

    @property
    def name(self) -> str:
        aux = f"-{self.aux_task}{self.aux_max_digits}x{self.aux_fraction:g}" if self.aux_task != "none" else ""
        return f"N{self.level}-{self.arch}{aux}-{self.preset}-s{self.seed}"


PRETRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(**MODEL_PRESETS["tiny"], batch_size=8, max_steps=20, warmup_steps=2, eval_every=20,
                 eval_samples=4, ckpt_every=5, eval_extra_digits=1),
    # The CPU regime (results/regime_search.csv): the 4 x 128 Llama, 30 % of each batch modsum problems
    # with operands of up to 6 digits (N + 3 for the default N = 3; pass --aux-max-digits for other N).
    "cpu-modsum": dict(**MODEL_PRESETS["cpu"], aux_task="modsum", aux_fraction=0.3, aux_max_digits=6),
    "paper": dict(**MODEL_PRESETS["paper"], batch_size=64, lr=3e-4, max_steps=20000, warmup_steps=500,
                  eval_every=1000, eval_samples=128, ckpt_every=500),
}


def pretrain_config(preset: str = "cpu-modsum", **overrides) -> PretrainConfig:
    """A ``PretrainConfig`` from a named preset plus overrides (``None`` values are ignored)."""
    return _from_preset(PretrainConfig, PRETRAIN_PRESETS, preset, overrides)


# -------------------------------------------------------------------------------------------------
# Old preset names, kept as deprecated aliases: "cpu" did not say that it mixes modsum into pre-training
# and switches RL to binary-reward REINFORCE.
PRESET_ALIASES = {"PretrainConfig": {"cpu": "cpu-modsum"}, "RLConfig": {"cpu": "cpu-reinforce"}}


def resolve_preset(cls, preset: str) -> str:
    """The current name of ``preset`` for ``cls``; an old alias warns (FutureWarning) and maps to it."""
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


def critkl_home() -> Path:
    """Root of critkl's on-disk cache: ``$CRITKL_HOME`` or ``~/.cache/critkl``."""
    return Path(os.environ.get("CRITKL_HOME", Path.home() / ".cache" / "critkl")).expanduser()


# -------------------------------------------------------------------------------------------------
KL_VARIANTS = ("none", "standard", "prioritized")
KL_ESTIMATORS = ("k1", "k2", "k3")
ALGOS = ("a2c", "ppo")
LOSS_AVERAGES = ("token", "episode")
REWARDS = ("ternary", "binary")
BASELINES = ("critic", "none")


@dataclass
class RLConfig:
    """RL fine-tuning on longer operands (plus-k problems) with a KL penalty toward the pre-trained model."""

    model_dir: str = _f("", "critkl pre-trained checkpoint folder (the policy's start and the reference)")
    preset: str = _f("cpu-reinforce", "preset that filled the defaults: tiny, cpu-reinforce or paper")
    kl: str = _f("prioritized", "KL variant: none, standard (weight 1) or prioritized (weight J(s)^alpha)",
                 choices=KL_VARIANTS)
    estimator: str = _f("k2", "per-token KL estimator k1, k2 or k3 (paper: k2)", choices=KL_ESTIMATORS)
    beta: float = _f(5.0, "KL coefficient (paper: 5 in the KL experiment, 10 in the level experiment)")
    alpha: float = _f(150.0, "certainty exponent of the prioritized weight (the paper's beta = 150)")
    ref_temperature: float = _f(4.0, "temperature of the reference distribution in the certainty (paper: 4)")
    certainty: str = _f("max_prob", "certainty form J(s): max_prob (1 + log max p / log|V|, the released code's, "
                        "the one our calibration was measured with) or entropy (the paper's Eq. 2, normalized "
                        "negentropy)", choices=("max_prob", "entropy"))
    temperature: float = _f(2.0, "sampling temperature of the policy; the KL uses pi_ref at the same one (paper: 2)")
    algo: str = _f("a2c", "a2c (the paper's) or ppo (clipped)", choices=ALGOS)
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
    track_critical: int = _f(16, "plus-k problems on which critical-token probabilities are tracked")
    seed: int = _f(0, "seeds problems, sampling and the value head")
    device: str = _f("auto", "auto, cpu or cuda", choices=DEVICES, cache_key=False)

    def __post_init__(self):
        _choice("kl", self.kl, KL_VARIANTS)
        _choice("estimator", self.estimator, KL_ESTIMATORS)
        _choice("algo", self.algo, ALGOS)
        _choice("device", self.device, DEVICES)
        self.preset = resolve_preset(type(self), self.preset)
        _choice("preset", self.preset, tuple(RL_PRESETS) + ("custom",))
        _choice("value_init", self.value_init, VALUE_INITS)
        _choice("loss_average", self.loss_average, LOSS_AVERAGES)
        _choice("reward", self.reward, REWARDS)
        _choice("baseline", self.baseline, BASELINES)
        _choice("certainty", self.certainty, ("max_prob", "entropy"))
        if self.alpha < 0:
            raise ValueError(f"alpha={self.alpha} must be >= 0 (0 gives the standard KL)")
        _positive(self, ["temperature", "ref_temperature", "lr", "episodes_per_collect", "rounds",
                         "update_epochs", "value_hidden", "eval_plus", "critic_epochs", "critic_lr", "max_grad_norm", "extra_digits"])
        _positive(self, ["beta", "vf_coef", "ent_coef", "minibatch_tokens", "minibatch_episodes", "critic_warmup", "eval_comfort",
                         "track_critical", "clip"], strict=False)
        if not (self.eval_temperature == -1 or self.eval_temperature >= 0):
            raise ValueError(f"eval_temperature={self.eval_temperature} must be -1 (training temperature) or >= 0")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gamma={self.gamma} and gae_lambda={self.gae_lambda} must be in [0, 1]")

    @property
    def uses_reference(self) -> bool:
        return self.kl != "none" and self.beta > 0


RL_PRESETS: dict[str, dict] = {
    "paper": dict(),
    # What runs in ~1 minute on 2 CPU cores: minibatches of whole episodes (8 steps per collect) with a
    # learning rate raised to match; sampling at T = 1 (at the paper's T = 2 a 1M-parameter model fails
    # even in-distribution) and a certainty calibration measured on such a model (results/README.md):
    # reference T = 1, alpha = 1000 keeps weight ~1 on ordinary tokens and ~0 at uncertain critical ones.
    # RL dynamics measured on the 1M-parameter model (results/summary.md): the paper's A2C with a ternary
    # reward makes every tested variant collapse (negative advantages on long failed episodes generalise
    # into "push everything down"); REINFORCE on successes (binary reward, no baseline, lambda 1) learns.
    # beta 0.2: any tested beta (0.05..5) stops that learning (k2 is unbounded on explored tokens).
    "cpu-reinforce": dict(lr=3e-5, episodes_per_collect=32, rounds=10, minibatch_tokens=0, minibatch_episodes=4,
                eval_plus=64, eval_comfort=16, temperature=1.0, alpha=1000.0, ref_temperature=1.0,
                reward="binary", baseline="none", gae_lambda=1.0, beta=0.2),
    "tiny": dict(lr=1e-3, episodes_per_collect=4, rounds=2, minibatch_tokens=0, eval_plus=4, eval_comfort=2,
                 track_critical=2, alpha=10.0, ref_temperature=1.0),
}


def rl_config(preset: str = "cpu-reinforce", **overrides) -> RLConfig:
    """An ``RLConfig`` from a named preset plus overrides (``None`` values are ignored)."""
    return _from_preset(RLConfig, RL_PRESETS, preset, overrides)
