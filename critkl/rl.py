"""RL fine-tuning with the standard or the prioritized KL penalty (the paper's Section 5 set-up).

Each round: collect ``episodes_per_collect`` plus-k episodes (critkl.rollout), one pass over their
tokens in minibatches of ``minibatch_tokens`` (A2C, PPO, or GRPO: group-relative advantages over
``group_size`` samples of each problem), then evaluate. The loss is
``critkl.losses.total_loss``: policy term + value term - entropy bonus + beta * w(s) * KL, with
w(s) = 1 (standard), J(s)^alpha (prioritized) or 0 (none). Runs are cached by config and resumable.

The paper's set-up is A2C: ternary reward, a critic, GAE lambda 0.95 (``--preset paper``). The ``cpu``
preset reinforces successes only (binary reward, ``baseline="none"``, lambda 1): on a 1M-parameter model
the negative advantages of failed episodes wreck the policy (results/format1/README.md, "RL dynamics").

Beside the loss terms each round logs CleanRL's diagnostics of the update: ``approx_kl`` (how far the
update moved the policy from the one that sampled), ``clipfrac`` (PPO, GRPO) and ``explained_variance`` (critic).
"""
from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from . import task
from .config import RLConfig, check_episode_fit, cache_dict, cache_key, critkl_home, rl_config
from .critical import APPENDIX_B_NAME
from .losses import (approx_kl, clipped, entropy, entropy_weighted_advantages, explained_variance, gae, kl_estimate,
                     kl_weight, masked_mean, pg_loss_a2c, pg_loss_ppo, token_weights, top_entropy_mask, total_loss,
                     value_loss)
from .measure import critical_probabilities, tracking_problems  # the evaluation's Fig.-7 tracking, not the update
from .model import CheckpointError, load_checkpoint, read_info, save_checkpoint, select_device
from .runs import RunFolder, rng_state, set_rng_state
from .fileio import sha256
from .rollout import Batch, accuracy, collect, draw_problems, exact_success
from .sampling import Generation, completion_logits, token_logprobs

VALUE_HEAD_FILE = "value_head.safetensors"


class ValueHead(nn.Module):
    """The paper's critic: an MLP (two hidden layers of 128) on the LM's last hidden state."""

    def __init__(self, n_embd: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embd, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def _rows(gen: Generation, rows: torch.Tensor) -> Generation:
    """The episodes ``rows`` of a generation (for a minibatch forward)."""
    pick = lambda x: x[rows] if x is not None else None  # noqa: E731
    return Generation(prompt_ids=gen.prompt_ids[rows], prompt_mask=gen.prompt_mask[rows],
                      completion_ids=gen.completion_ids[rows], completion_mask=gen.completion_mask[rows],
                      logprobs=gen.logprobs[rows], entropies=gen.entropies[rows], values=pick(gen.values),
                      texts=[gen.texts[i] for i in rows.tolist()], finished=gen.finished[rows])


def minibatches(mask: torch.Tensor, cfg: RLConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """One pass's minibatches, each a ``(n, 2)`` tensor of (episode, position) transitions: random tokens
    (the paper's minibatches of ``minibatch_tokens``), or the tokens of ``minibatch_episodes`` whole
    episodes. Never empty: every episode has at least one token."""
    idx = mask.nonzero()
    if cfg.minibatch_episodes:
        order = torch.randperm(mask.shape[0], generator=generator).tolist()
        return [idx[torch.isin(idx[:, 0], torch.tensor(order[s:s + cfg.minibatch_episodes], device=idx.device))]
                for s in range(0, len(order), cfg.minibatch_episodes)]
    mb = cfg.minibatch_tokens or len(idx)
    perm = torch.randperm(len(idx), generator=generator).to(idx.device)
    return [idx[perm[s:s + mb]] for s in range(0, len(idx), mb)]


def minibatch_loss(policy, value_head, batch: Batch, sel: torch.Tensor, weights: torch.Tensor, cfg: RLConfig):
    """The loss on the transitions ``sel`` (CleanRL's ``ppo.py``, term by term): policy term, value term,
    entropy bonus, and the KL term with its per-token weight (1, J(s)^alpha or 0) beside it. The terms
    also hold CleanRL's ``approx_kl`` and, for PPO and GRPO, ``clipfrac`` (no gradient; averaged like the terms)."""
    rows = sel[:, 0].unique()
    local = torch.searchsorted(rows, sel[:, 0].contiguous())
    sub_mask = torch.zeros((len(rows), batch.mask.shape[1]), dtype=torch.float32, device=batch.mask.device)
    sub_mask[local, sel[:, 1]] = weights[sel[:, 0], sel[:, 1]]
    gen = _rows(batch.gen, rows)
    logits, values, _ = completion_logits(policy, gen, value_head)

    per_token_logp = token_logprobs(logits, gen.completion_ids, cfg.temperature)
    per_token_entropy = entropy(logits, cfg.temperature)
    adv = batch.advantages[rows]
    if cfg.advantage_weighting == "entropy":
        adv = entropy_weighted_advantages(adv, per_token_entropy, sub_mask)
    if cfg.algo == "a2c":
        per_token_pg = pg_loss_a2c(per_token_logp, adv)
    else:
        per_token_pg = pg_loss_ppo(per_token_logp, gen.logprobs, adv, cfg.clip)
    # forking tokens: the policy term only on the minibatch's highest-entropy tokens (1.0: all of them)
    per_token_pg = per_token_pg * top_entropy_mask(per_token_entropy, sub_mask, cfg.top_entropy_quantile)
    per_token_v = value_loss(values, batch.returns[rows])
    if cfg.uses_reference:
        per_token_kl = kl_estimate(per_token_logp, batch.ref_logprobs[rows], cfg.estimator)
        oracle = batch.oracle_mask[rows] if batch.oracle_mask is not None else None
        per_token_weight = kl_weight(cfg.kl, batch.ref_certainty[rows], cfg.alpha, oracle)
    else:
        per_token_kl = torch.zeros_like(per_token_logp)
        per_token_weight = torch.zeros_like(per_token_logp)
    loss, terms = total_loss(per_token_pg, per_token_v, per_token_entropy, per_token_kl, per_token_weight, sub_mask,
                             cfg.vf_coef, cfg.ent_coef, cfg.beta)
    with torch.no_grad():
        terms["approx_kl"] = masked_mean(approx_kl(per_token_logp, gen.logprobs), sub_mask)
        if cfg.algo != "a2c":  # ppo and grpo clip
            terms["clipfrac"] = masked_mean(clipped(per_token_logp, gen.logprobs, cfg.clip).float(), sub_mask)
    return loss, terms


def update(policy, value_head, opt, batch: Batch, cfg: RLConfig, generator: torch.Generator) -> dict:
    """``update_epochs`` passes over the collected transitions; returns the mean over minibatches of each
    loss term (and of ``approx_kl``, ``clipfrac``) and, with a critic, the ``explained_variance`` of the
    returns by the values the collect recorded (CleanRL's, before the update)."""
    policy.train()
    weights = token_weights(batch.mask, cfg.loss_average)
    sums: dict[str, float] = {}
    n = 0
    for _ in range(cfg.update_epochs):
        for sel in minibatches(batch.mask, cfg, generator):
            loss, terms = minibatch_loss(policy, value_head, batch, sel, weights, cfg)
            if not torch.isfinite(loss):
                bad = {k: float(v.detach()) for k, v in terms.items()}
                raise FloatingPointError(f"RL loss is {loss.item()} (terms {bad}); lower lr={cfg.lr} or beta={cfg.beta}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.max_grad_norm)
            opt.step()
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
    out = {k: v / max(n, 1) for k, v in sums.items()}
    if cfg.baseline == "critic" and cfg.algo != "grpo":
        out["explained_variance"] = float(explained_variance(batch.gen.values, batch.returns, batch.mask))
    return out


@torch.no_grad()
def center_critic(value_head: ValueHead, batch: Batch, cfg: RLConfig) -> None:
    """Make the critic output the first collect's mean episode reward everywhere, and recompute that
    collect's advantages with it: with 70 % of episodes at -1, a random critic leaves almost every
    sampled token with a negative advantage (results/format1/README.md, "RL, standard vs prioritized")."""
    last = value_head.net[-1]
    mean_reward = batch.rewards.sum(1).mean()
    last.weight.zero_()
    last.bias.fill_(float(mean_reward))
    mask = batch.mask
    batch.gen.values = torch.full(mask.shape, float(mean_reward), device=mask.device) * mask
    batch.advantages, batch.returns = gae(batch.rewards, batch.gen.values, mask, cfg.gamma, cfg.gae_lambda)


def warm_up_critic(policy, value_head: ValueHead, batch: Batch, cfg: RLConfig, generator: torch.Generator) -> float:
    """Fit the critic alone on one collect: V(s_t) -> the episode's Monte-Carlo return (gamma = 1: its
    terminal reward), ``cfg.critic_epochs`` passes in minibatches of 8 episodes, the policy untouched.
    Returns the last pass's mean value loss."""
    with torch.no_grad():
        policy.eval()
        _, _, hidden = completion_logits(policy, batch.gen)
        hidden = hidden.float()
    mask = batch.mask.float()
    target = batch.rewards.sum(1, keepdim=True).expand_as(mask)
    opt = torch.optim.Adam(value_head.parameters(), lr=cfg.critic_lr)
    for _ in range(cfg.critic_epochs):
        order = torch.randperm(mask.shape[0], generator=generator).to(mask.device)
        losses = []
        for s in range(0, len(order), 8):
            rows = order[s:s + 8]
            loss = masked_mean(value_loss(value_head(hidden[rows]).squeeze(-1), target[rows]), mask[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


def collect_stats(batch: Batch, cfg: RLConfig) -> dict:
    """KL and weights on the collected episodes (policy before the update), critical vs other states."""
    m, c = batch.mask.float(), batch.critical_mask.float()
    other = m * (1 - c)
    out = dict(train_accuracy=float(batch.correct.float().mean()),
               episode_length=float(m.sum(1).mean()), n_critical_states=int(c.sum()))
    if batch.ref_logprobs is not None:
        kl = kl_estimate(batch.gen.logprobs, batch.ref_logprobs, cfg.estimator)
        w = kl_weight(cfg.kl, batch.ref_certainty, cfg.alpha, batch.oracle_mask)
        out.update(mean_kl=float(masked_mean(kl, m)),
                   weight_critical=float(masked_mean(w, c)) if c.sum() else float("nan"),
                   weight_other=float(masked_mean(w, other)),
                   certainty_critical=float(masked_mean(batch.ref_certainty, c)) if c.sum() else float("nan"),
                   certainty_other=float(masked_mean(batch.ref_certainty, other)))
    return out


def run_dir(cfg: RLConfig, home: Path | None = None) -> Path:
    info = read_info(cfg.model_dir)
    return Path(home or critkl_home()) / "rl" / (
        f"N{info['config']['level']}-plus{cfg.extra_digits}-{cfg.kl}-{cfg.preset}-s{cfg.seed}-{_key(cfg, info)}")


def weights_digest(model_dir) -> str:
    """Short sha256 of a checkpoint's weights file."""
    return sha256(Path(model_dir) / "model.safetensors")[:12]


def _key(cfg: RLConfig, info: dict) -> str:
    # The checkpoint is identified by its config key and its weights, not by the folder it sits in.
    ident = f"{info.get('cache_key', '')}:{weights_digest(cfg.model_dir)}"
    return cache_key(dataclasses.replace(cfg, model_dir=ident))


def merge(*parts: dict) -> dict:
    """One metrics row from several dicts; a key present in two of them is an error, not an overwrite."""
    row: dict = {}
    for part in parts:
        clash = sorted(set(row) & set(part))
        if clash:
            raise KeyError(f"metric name(s) {clash} produced twice")
        row.update(part)
    return row


def finetune(cfg: RLConfig | None = None, *, home: Path | None = None, progress: bool = True,
             on_round=None, **overrides) -> pd.DataFrame:
    """Fine-tune a pre-trained checkpoint with RL and return one row per evaluation (round 0 = before
    training). The run folder (``critkl.runs``) caches it under ``$CRITKL_HOME/rl``, resumes it after a
    kill, and makes two identical runs share one result. ``on_round(round)`` is called after each round
    (tests use it to simulate an interrupt)."""
    if cfg is None:
        cfg = rl_config(overrides.pop("preset", "cpu-reinforce"), **overrides)
    elif overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    info = check_start(cfg)  # fails early, before anything is written
    run = RunFolder(run_dir(cfg, home), marker="metrics.csv")
    if not run.done():
        device = select_device(cfg.device)
        with run.claim(quiet=not progress):
            if not run.done():
                train(cfg, info, run, device, progress, on_round)
    return pd.read_csv(run.final / "metrics.csv")


def check_start(cfg: RLConfig) -> dict:
    """The starting checkpoint's ``critkl.json``, after checking that RL can start from it."""
    if not cfg.model_dir:
        raise ValueError("model_dir is empty: give a critkl pre-trained checkpoint folder")
    info = read_info(cfg.model_dir)
    if info.get("kind") != "pretrain":
        raise CheckpointError(f"{cfg.model_dir!r} is a {info.get('kind')!r} checkpoint; RL starts from a "
                              "pre-trained one (kind 'pretrain')")
    check_episode_fit(int(info["config"]["level"]), cfg.extra_digits, int(info["config"]["n_positions"]))
    return info


def train(cfg: RLConfig, info: dict, run: RunFolder, device: torch.device, progress: bool = True,
          on_round=None):
    """The RL loop: evaluate, then per round collect -> update -> evaluate -> save the resumable
    state."""
    level = int(info["config"]["level"])
    policy, tok, _ = load_checkpoint(cfg.model_dir, device)
    ref = None
    if cfg.uses_reference:  # beta == 0 or kl == "none": no reference model at all (TRL)
        ref, _, _ = load_checkpoint(cfg.model_dir, device)
        ref.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    value_head = ValueHead(policy.config.hidden_size, cfg.value_hidden).to(device)
    opt = torch.optim.Adam(list(policy.parameters()) + list(value_head.parameters()), lr=cfg.lr)

    rng = np.random.default_rng([cfg.seed, 1])
    sample_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 1)
    evaluator = Evaluator(cfg, level, tok, device)
    train_split = task.Split("plus", level, cfg.extra_digits)

    rows, crits, start, elapsed = [], [], 0, 0.0
    st = run.load_state(device)
    if st is not None:
        policy.load_state_dict(st["policy"])
        value_head.load_state_dict(st["value_head"])
        opt.load_state_dict(st["opt"])
        set_rng_state(st["rng"], rng, sample_gen=sample_gen, shuffle_gen=shuffle_gen)
        rows, crits, start, elapsed = st["rows"], st["crits"], st["round"], st["elapsed"]
    t0 = time.perf_counter() - elapsed

    if start == 0:
        row, crit = evaluator(policy, 0)
        rows.append(merge(row, {"seconds": time.perf_counter() - t0}))
        crits.append(crit)
        for _ in tqdm(range(cfg.critic_warmup), desc="critic warm-up",
                      disable=not progress or not cfg.critic_warmup):
            batch = collect(policy, value_head, None, tok, draw_problems(train_split, cfg, rng),
                            level, cfg, sample_gen)
            rows[0]["critic_warmup_v_loss"] = warm_up_critic(policy, value_head, batch, cfg,
                                                             shuffle_gen)

    bar = tqdm(total=cfg.rounds, initial=start, desc=f"finetune {cfg.kl}", disable=not progress)
    for r in range(start, cfg.rounds):
        # ---- collect
        t_collect = time.perf_counter()
        batch = collect(policy, value_head, ref, tok, draw_problems(train_split, cfg, rng), level,
                        cfg, sample_gen)
        if r == 0 and cfg.value_init == "mean_return":
            center_critic(value_head, batch, cfg)
        # ---- update
        t_update = time.perf_counter()
        terms = update(policy, value_head, opt, batch, cfg, shuffle_gen)
        # ---- evaluate
        t_eval = time.perf_counter()
        row, crit = evaluator(policy, r + 1)
        timings = {"collect_s": t_update - t_collect, **batch.timings,
                   "update_s": t_eval - t_update, "eval_s": time.perf_counter() - t_eval,
                   "seconds": time.perf_counter() - t0}
        rows.append(merge(row, collect_stats(batch, cfg), terms, timings))
        crits.append(crit)
        bar.update(1)
        bar.set_postfix(acc_plus=f"{row['acc_plus']:.2f}",
                        train=f"{rows[-1]['train_accuracy']:.2f}")
        # ---- checkpoint
        run.save_state(dict(policy=policy.state_dict(), value_head=value_head.state_dict(),
                            opt=opt.state_dict(),
                            rng=rng_state(rng, sample_gen=sample_gen, shuffle_gen=shuffle_gen),
                            rows=rows, crits=crits, round=r + 1, elapsed=time.perf_counter() - t0))
        if on_round is not None:
            on_round(r + 1)
    bar.close()

    def write(folder: Path) -> None:
        save_checkpoint(policy, tok, folder,
                        dict(kind="rl", config=cache_dict(cfg), cache_key=_key(cfg, info),
                             format=task.FORMAT_VERSION, pretrained=info, level=level))
        save_file(value_head.state_dict(), str(folder / VALUE_HEAD_FILE))
        pd.concat([c for c in crits if len(c)] or [pd.DataFrame()]).to_csv(
            folder / "critical.csv", index=False)
        (folder / "config.rl.json").write_text(json.dumps(cache_dict(cfg), indent=2))
        pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)  # the marker: written last

    run.finish(write)


class Evaluator:
    """Accuracy on fixed plus-k and comfort-zone problems (sampled at the evaluation temperature), and the
    teacher-forced probability of the right token at the tracked critical positions."""

    def __init__(self, cfg: RLConfig, level: int, tok, device):
        self.cfg, self.level, self.tok, self.device = cfg, level, tok, device
        rng = np.random.default_rng([cfg.seed, 99])
        self.plus = task.Split("plus", level, cfg.extra_digits).sample(cfg.eval_plus, rng)
        self.comfort = task.Split("comfort", level).sample(cfg.eval_comfort, rng)
        self.tracked = tracking_problems(level, cfg.extra_digits, cfg.track_critical, cfg.seed) if cfg.track_critical else []
        self.temperature = cfg.temperature if cfg.eval_temperature == -1 else cfg.eval_temperature
        self.labels = dict(kl=cfg.kl, alpha=cfg.alpha, beta=cfg.beta, ref_temperature=cfg.ref_temperature,
                           certainty=cfg.certainty, temperature=cfg.temperature, lr=cfg.lr, seed=cfg.seed,
                           level=level, extra_digits=cfg.extra_digits, algo=cfg.algo, estimator=cfg.estimator,
                           preset=cfg.preset, top_entropy_quantile=cfg.top_entropy_quantile,
                           advantage_weighting=cfg.advantage_weighting, eval_mode=cfg.eval_mode)

    def __call__(self, policy, round_: int) -> tuple[dict, pd.DataFrame]:
        cfg, level, t = self.cfg, self.level, self.temperature
        g = torch.Generator(device=self.device).manual_seed(cfg.seed + 12345)
        if cfg.eval_mode == "exact":  # the probability of the true text, teacher-forced (no sampling noise)
            score = lambda problems, k: exact_success(policy, self.tok, problems, t)  # noqa: E731
        else:                         # one sampled episode per problem, success 0 or 1 (the paper's)
            score = lambda problems, k: accuracy(policy, self.tok, problems, level, k, t, g)  # noqa: E731
        row = dict(self.labels, round=round_, episodes=round_ * cfg.episodes_per_collect,
                   acc_plus=score(self.plus, cfg.extra_digits),
                   acc_comfort=score(self.comfort, 0) if self.comfort else float("nan"))
        crit = critical_probabilities(policy, self.tok, self.tracked, level, cfg.temperature) if self.tracked else pd.DataFrame()
        if len(crit):
            paper = crit[crit.name != APPENDIX_B_NAME]  # the paper's commas and digits (its Fig. 7)
            if len(paper):
                row["p_critical_mean"] = float(paper.p_correct.mean())
                row["p_critical_min"] = float(paper.p_correct.min())
            copy = crit[crit.name == APPENDIX_B_NAME]  # Appendix B: copying the last digit in place of the N-th
            if len(copy):
                row["p_n_copy_mean"] = float(copy.p_correct.mean())
            crit = crit.assign(round=round_, episodes=row["episodes"], **self.labels)
        return row, crit


def load_run(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(metrics, critical)`` tables of a finished RL run folder."""
    path = Path(path)
    if not (path / "metrics.csv").is_file():
        raise CheckpointError(f"{str(path)!r} is not a finished critkl RL run (no metrics.csv)")
    crit = path / "critical.csv"
    return pd.read_csv(path / "metrics.csv"), (pd.read_csv(crit) if crit.stat().st_size > 1 else pd.DataFrame())


# -------------------------------------------------------------------------------------------------
# Every finished run of the cache in one table (the folder layout of ``run_dir`` and ``train``'s ``write``)
def _config_columns(run: Path) -> dict:
    """The run's RL config (config.rl.json), fields omitted at their default filled back in."""
    cfg = json.loads((run / "config.rl.json").read_text()) if (run / "config.rl.json").is_file() else {}
    return {f: cfg.get(f, field.default) for f, field in RLConfig.__dataclass_fields__.items()}


def gather_runs(home=None, level: int | None = None, since: str | None = None) -> pd.DataFrame:
    """Every finished RL run under ``$CRITKL_HOME/rl/*/metrics.csv`` (or ``home/rl``) in one tidy frame:
    one row per evaluation, the run's config columns (those the metrics lack) and ``run`` (the folder name).
    ``level`` keeps runs from checkpoints pre-trained up to that level (folders ``N{level}-*``, see
    ``run_dir``), ``since`` (YYYY-MM-DD) runs finished on or after that date. Unfinished
    (``.partial``/``.staging``) folders are skipped."""
    root = Path(home) if home is not None else critkl_home()
    t0 = datetime.fromisoformat(since).timestamp() if since else 0.0
    frames = []
    for run in sorted((root / "rl").glob(f"N{level}-*" if level is not None else "*")):
        f = run / "metrics.csv"
        if run.suffix in (".partial", ".staging") or not f.is_file() or f.stat().st_mtime < t0:
            continue
        m = pd.read_csv(f)
        extra = {k: v for k, v in _config_columns(run).items() if k not in m}
        frames.append(m.assign(**extra, run=run.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run"])
