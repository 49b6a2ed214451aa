"""Supervised pre-training "up to N digits" (nanoGPT-style straight loop), cached by config.

batch -> loss on the target tokens only -> backward -> clip -> AdamW step, with a warm-up + cosine
learning rate, greedy exact-match evaluation per digit length every ``eval_every`` steps, and a resumable
checkpoint every ``ckpt_every`` steps. The finished model is cached under a key derived from the full
config, so a second call with the same config loads it instead of training.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import task
from .config import PretrainConfig, cache_dict, cache_key, critkl_home, pretrain_config
from . import store
from .model import (CRITKL_FILE, autocast, build_model, load_checkpoint, machine_line, n_params, resolve_precision,
                    save_checkpoint, select_device)
from .runs import RunFolder, rng_state, set_rng_state
from .sampling import generate
from .tokenizer import build_tokenizer, encode

IGNORE = -100


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def make_batch(tok, problems: list[tuple[int, int]], device=None, aux: list[bool] | None = None):
    """``(input_ids, attention_mask, labels)``: prompt + scratchpad + eos, right-padded, labels only on
    the target (the scratchpad and eos), -100 elsewhere. ``aux[i]`` makes example i a modsum one."""
    rows, labels = [], []
    for i, (a, b) in enumerate(problems):
        is_aux = aux is not None and aux[i]
        p = encode(tok, (task.modsum_prompt if is_aux else task.prompt)(a, b))
        t = encode(tok, (task.modsum_scratchpad if is_aux else task.scratchpad)(a, b)) + [tok.eos_token_id]
        rows.append(p + t)
        labels.append([IGNORE] * len(p) + t)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        ids[i, :len(r)] = torch.tensor(r)
        lab[i, :len(l)] = torch.tensor(l)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device), lab.to(device)


def lm_loss(model, ids, mask, labels, precision: str = "auto") -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (target) tokens (``precision``: see
    ``critkl.model.autocast``)."""
    with autocast(ids.device, precision):
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE)


LENGTHS = {"same": task.sample_same_length, "different": task.sample_different_length}


@torch.no_grad()
def accuracy_by_digits(model, tok, digit_lengths, n: int, seed: int, temperature: float = 0.0,
                       batch_size: int = 64, lengths: str = "same") -> pd.DataFrame:
    """Exact-match accuracy on ``n`` problems per length ``d``: both operands of ``d`` digits (``lengths="same"``,
    the paper's Table 4), or one of ``d`` and the other shorter (``"different"``, its Table 5; ``d >= 2``).
    Greedy when ``temperature == 0``; problems and sampling are seeded. Columns: digits, accuracy, n,
    temperature, lengths."""
    if lengths not in LENGTHS:
        raise ValueError(f"lengths={lengths!r} is not allowed: one of {', '.join(LENGTHS)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for d in digit_lengths:
        rng = np.random.default_rng([seed, d])
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + d)
        problems = [LENGTHS[lengths](d, rng) for _ in range(n)]
        max_new = task.max_scratchpad_length(d) + 20
        correct = 0
        for i in range(0, n, batch_size):
            chunk = problems[i:i + batch_size]
            g = generate(model, tok, [task.prompt(a, b) for a, b in chunk], max_new, temperature, gen)
            correct += sum(task.is_correct(t, a, b) for t, (a, b) in zip(g.texts, chunk))
        rows.append(dict(digits=d, accuracy=correct / n, n=n, temperature=temperature, lengths=lengths))
    model.train(was_training)
    return pd.DataFrame(rows)


def sample_batch(cfg: PretrainConfig, rng: np.random.Generator):
    """``(problems, aux_flags)`` of one batch drawn in order: comfort-zone additions, and with probability
    ``aux_fraction`` per example an auxiliary problem with operands of 1..aux_max_digits digits."""
    if cfg.aux_task == "none":
        return [task.sample_comfort(cfg.level, rng) for _ in range(cfg.batch_size)], None
    flags = list(rng.random(cfg.batch_size) < cfg.aux_fraction)
    return [task.sample_comfort(cfg.aux_max_digits if f else cfg.level, rng) for f in flags], flags


def batch_pool(cfg: PretrainConfig, pool: int) -> list[tuple[list, list | None]]:
    """The ``bucket_pool`` batches that start at step ``pool * bucket_pool``, a pure function of the config
    and the pool index (so a resumed run sees the same data without saving a data-loader state).

    ``padded``: batches in draw order. ``bucketed``: the same examples sorted by text length before they
    are cut into batches, whose order is then shuffled: each batch holds texts of similar length, so
    little of its compute is padding, and over a pool the model sees exactly the same examples."""
    rng = np.random.default_rng([cfg.seed, 17, pool])
    drawn = [sample_batch(cfg, rng) for _ in range(cfg.bucket_pool)]
    if cfg.batching == "padded":
        return drawn
    examples = [(p, f) for ps, fs in drawn for p, f in zip(ps, fs or [None] * len(ps))]
    examples.sort(key=lambda e: len(task.full_text(*e[0])))  # modsum texts are as long as additions' (+-1)
    batches = [examples[i:i + cfg.batch_size] for i in range(0, len(examples), cfg.batch_size)]
    aux = cfg.aux_task != "none"
    return [([p for p, _ in batches[j]], [f for _, f in batches[j]] if aux else None)
            for j in rng.permutation(len(batches))]


def checkpoint_dir(cfg: PretrainConfig, home: Path | None = None) -> Path:
    """Where the finished checkpoint of ``cfg`` lives in the cache (whether or not it exists yet);
    ``cfg.precision`` must be resolved (bf16 or fp32: see ``resolve``)."""
    if cfg.precision == "auto":
        raise ValueError("precision='auto' names no single model: resolve it first (critkl.pretrain.resolve)")
    return Path(home or critkl_home()) / "pretrain" / f"{cfg.name}-{cache_key(cfg)}"


def resolve(cfg: PretrainConfig, device: torch.device | None = None) -> tuple[PretrainConfig, str]:
    """``(cfg with precision bf16 or fp32, why)``: ``auto`` becomes what ``device`` runs natively."""
    precision, why = resolve_precision(cfg.precision, device or select_device(cfg.device))
    return dataclasses.replace(cfg, precision=precision), why


def find_finished(cfg: PretrainConfig, home: Path | None = None, shipped: bool = True) -> Path | None:
    """A finished checkpoint of ``cfg``: in the cache, else (``shipped``) in the model store (``critkl.store``). With
    ``precision="auto"`` a model of either precision will do, this machine's native one first, so a
    shipped model serves every CPU."""
    resolved, _ = resolve(cfg)
    precisions = [resolved.precision] + ([p for p in ("bf16", "fp32") if p != resolved.precision]
                                         if cfg.precision == "auto" else [])
    for p in precisions:
        c = dataclasses.replace(cfg, precision=p)
        if RunFolder(checkpoint_dir(c, home), marker=CRITKL_FILE).done():
            return checkpoint_dir(c, home)
        found = store.find(cache_key(c)) if shipped else None
        if found is not None:
            return found
    return None


def pretrain(cfg: PretrainConfig | None = None, *, home: Path | None = None, progress: bool = True,
             on_step=None, shipped: bool = True, **overrides) -> Path:
    """Pre-train (or load) the model of ``cfg`` and return its checkpoint folder.

    ``cfg`` defaults to ``pretrain_config(preset, **overrides)``. A finished model is taken from the cache
    or (``shipped``) the model store (``find_finished``); otherwise it is trained in the resolved precision
    (``shipped=False`` trains even a model that ships, e.g. to check that it re-trains identically). The run
    folder (``critkl.runs``) makes training cached, resumable after a kill, and safe when two identical
    runs start together. ``on_step(step)`` is called after each optimizer step (tests use it to simulate
    an interrupt).
    """
    if cfg is None:
        cfg = pretrain_config(overrides.pop("preset", "cpu-modsum"), **overrides)
    elif overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    found = find_finished(cfg, home, shipped)
    if found is not None:
        return found
    device = select_device(cfg.device)
    cfg, why = resolve(cfg, device)
    if progress:
        print(f"critkl: pre-training {cfg.name} in {cfg.precision} ({why})", file=sys.stderr)
    run = RunFolder(checkpoint_dir(cfg, home), marker=CRITKL_FILE)
    with run.claim(quiet=not progress):
        if run.done():  # finished by another process while this one waited
            return run.final
        return train(cfg, run, device, progress, on_step)


def train(cfg: PretrainConfig, run: RunFolder, device: torch.device, progress: bool = True,
          on_step=None) -> Path:
    """The training loop (nanoGPT's ``train.py``): batch -> loss -> backward -> clip -> step,
    evaluate every ``eval_every`` steps (and stop there once the comfort zone is mastered, with
    ``stop_at``), save the resumable state every ``ckpt_every`` steps."""
    tok = build_tokenizer()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model_config(), tok).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    step, elapsed, tokens, padded, evals, log = 0, 0.0, 0, 0, [], []
    st = run.load_state(device)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        set_rng_state(st["rng"])
        step, elapsed, tokens, padded, evals, log = (st["step"], st["elapsed"], st["tokens"],
                                                     st.get("padded", 0), st["evals"], st["log"])
    lengths = range(1, cfg.level + cfg.eval_extra_digits + 1)

    model.train()
    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"pretrain {cfg.name}", disable=not progress)
    t0 = time.perf_counter() - elapsed
    pool_index, pool = -1, []
    while step < cfg.max_steps:
        # ---- batch
        if step // cfg.bucket_pool != pool_index:
            pool_index = step // cfg.bucket_pool
            pool = batch_pool(cfg, pool_index)
        problems, aux = pool[step % cfg.bucket_pool]
        ids, mask, labels = make_batch(tok, problems, device, aux)
        # ---- loss, backward, clip, step
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = lm_loss(model, ids, mask, labels, cfg.precision)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pre-training loss became {loss.item()} at step {step}; "
                                     f"lower lr (now {cfg.lr}) or raise warmup_steps")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        tokens += int(mask.sum())
        padded += ids.numel()
        elapsed = time.perf_counter() - t0
        log.append(dict(step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"], tokens=tokens,
                        padded_tokens=padded, seconds=elapsed))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        # ---- evaluate, checkpoint
        mastered = False
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            df = accuracy_by_digits(model, tok, lengths, cfg.eval_samples, seed=cfg.seed + 1)
            evals.extend(df.assign(step=step, seconds=time.perf_counter() - t0).to_dict("records"))
            if progress:
                bar.write(f"step {step}: " + " ".join(f"{int(r.digits)}d={r.accuracy:.2f}"
                                                      for r in df.itertuples()))
            mastered = cfg.stop_at > 0 and df[df.digits <= cfg.level].accuracy.min() >= cfg.stop_at
        if step % cfg.ckpt_every == 0 and step < cfg.max_steps and not mastered:
            run.save_state(dict(model=model.state_dict(), opt=opt.state_dict(), rng=rng_state(),
                                step=step, elapsed=elapsed, tokens=tokens, padded=padded,
                                evals=evals, log=log))
        if on_step is not None:
            on_step(step)
        if mastered:
            break  # training to mastery: the comfort zone is mastered, stop here
    bar.close()

    last = pd.DataFrame(evals).query("step == @step")
    info = dict(kind="pretrain", config=cache_dict(cfg), cache_key=cache_key(cfg),
                format=task.FORMAT_VERSION, steps=step, seconds=round(elapsed, 1), tokens=tokens,
                padded_tokens=padded, tokens_per_second=round(tokens / max(elapsed, 1e-9)),
                n_params=n_params(model), precision=cfg.precision, device=str(device),
                torch_threads=torch.get_num_threads(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(), machine=machine_line(),
                final_accuracy={int(r.digits): r.accuracy for r in last.itertuples()})

    def write(folder: Path) -> None:
        save_checkpoint(model, tok, folder, info)
        pd.DataFrame(evals).to_csv(folder / "eval.csv", index=False)
        pd.DataFrame(log).to_csv(folder / "train_log.csv", index=False)

    return run.finish(write)


def load_pretrained(cfg_or_dir, device="cpu"):
    """``(model, tok, info)`` for a checkpoint folder or a ``PretrainConfig`` (cached, shipped or trained)."""
    path = pretrain(cfg_or_dir, progress=True) if isinstance(cfg_or_dir, PretrainConfig) else cfg_or_dir
    return load_checkpoint(path, device)
