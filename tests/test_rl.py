import json
import math

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from critkl import rl_config
from critkl.cli import main as cli_main
from critkl.model import CheckpointError
from critkl.rl import finetune, gather_runs, load_run, minibatches, run_dir
from critkl.rollout import terminal_rewards


def test_terminal_rewards():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    r = terminal_rewards(mask, torch.tensor([True, False]))
    assert r.tolist() == [[0, 0, 1, 0], [0, 0, 0, -1]]
    r = terminal_rewards(mask, torch.tensor([True, False]), "binary")
    assert r.tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="'unary'"):
        terminal_rewards(mask, torch.tensor([True, False]), "unary")


@pytest.mark.parametrize("kwargs,match", [
    (dict(kl="forward"), "kl='forward'"),
    (dict(alpha=-1.0), "alpha=-1.0"),
    (dict(temperature=0.0), "temperature=0.0"),
    (dict(ref_temperature=-2.0), "ref_temperature=-2.0"),
    (dict(estimator="k9"), "estimator='k9'"),
    (dict(algo="sac"), "algo='sac'"),
    (dict(reward="dense"), "reward='dense'"),
    (dict(baseline="mean"), "baseline='mean'"),
    (dict(loss_average="batch"), "loss_average='batch'"),
    (dict(critic_warmup=-1), "critic_warmup=-1"),
])
def test_bad_config_fails_early(kwargs, match, tiny_checkpoint, _home):
    with pytest.raises(ValueError, match=match):
        finetune(preset="tiny", model_dir=str(tiny_checkpoint), progress=False, **kwargs)
    assert not _home.exists()


def test_not_a_checkpoint(tmp_path, _home):
    with pytest.raises(CheckpointError, match="not a critkl checkpoint"):
        finetune(preset="tiny", model_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="model_dir is empty"):
        finetune(preset="tiny", progress=False)
    assert not _home.exists()


@pytest.mark.parametrize("kl", ["standard", "prioritized", "none"])
def test_finetune_smoke(kl, tiny_checkpoint):
    df = finetune(preset="tiny", model_dir=str(tiny_checkpoint), kl=kl, progress=False)
    assert list(df["round"]) == [0, 1, 2] and list(df["episodes"]) == [0, 4, 8]
    assert (df["kl"] == kl).all()  # the variant column is not overwritten by a loss term
    for col in ("acc_plus", "acc_comfort", "pg_loss", "v_loss", "entropy", "train_accuracy", "p_critical_mean"):
        assert col in df and df[col].notna().any(), col
    if kl != "none":
        assert df["mean_kl"].iloc[1:].notna().all() and df["weight_other"].iloc[1:].notna().all()
    if kl == "standard":
        assert (df["weight_other"].iloc[1:] == 1.0).all()
    # CleanRL's update diagnostics (A2C with a critic: no clipping, so no clipfrac); round 0 has no update
    assert df["approx_kl"].iloc[1:].map(math.isfinite).all() and (df["approx_kl"].iloc[1:] >= -1e-12).all()
    assert df["explained_variance"].iloc[1:].map(math.isfinite).all() and (df["explained_variance"].iloc[1:] <= 1).all()
    assert df[["approx_kl", "explained_variance"]].iloc[0].isna().all() and "clipfrac" not in df
    cfg = rl_config("tiny", model_dir=str(tiny_checkpoint), kl=kl)
    path = run_dir(cfg)
    before, after = load_file(tiny_checkpoint / "model.safetensors"), load_file(path / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the policy moved
    metrics, crit = load_run(path)
    assert len(metrics) == 3 and {"step", "operand", "name", "p_correct", "round"} <= set(crit)
    assert json.loads((path / "critkl.json").read_text())["kind"] == "rl"
    # cache hit: same frame, nothing retrained
    again = finetune(cfg, progress=False, on_round=lambda r: pytest.fail("retrained a cached run"))
    pd.testing.assert_frame_equal(again, metrics)


def test_resume_matches_uninterrupted(tiny_checkpoint, tmp_path):
    kw = dict(preset="tiny", model_dir=str(tiny_checkpoint), kl="prioritized", rounds=3, progress=False)
    full = finetune(home=tmp_path / "a", **kw)

    def stop(r):
        if r == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(home=tmp_path / "b", on_round=stop, **kw)
    rounds = []
    resumed = finetune(home=tmp_path / "b", on_round=rounds.append, **kw)
    assert rounds == [2, 3]
    cols = ["round", "acc_plus", "acc_comfort", "pg_loss", "mean_kl", "p_critical_mean"]
    pd.testing.assert_frame_equal(full[cols], resumed[cols])


def test_alpha_zero_prioritized_equals_standard(tiny_checkpoint, tmp_path):
    kw = dict(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, progress=False)
    a = finetune(home=tmp_path, kl="standard", **kw)
    b = finetune(home=tmp_path, kl="prioritized", alpha=0.0, **kw)
    cols = ["acc_plus", "pg_loss", "weighted_kl_loss", "mean_kl", "p_critical_mean"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_cli_finetune_errors(capsys, tiny_checkpoint):
    with pytest.raises(SystemExit):
        cli_main(["finetune", "--model", str(tiny_checkpoint), "--kl", "bogus"])
    assert cli_main(["finetune", "--preset", "tiny", "--model", str(tiny_checkpoint), "--alpha", "-3"]) == 2
    assert "alpha=-3.0" in capsys.readouterr().err


def test_paper_style_minibatches_and_ppo(tiny_checkpoint, tmp_path):
    """The paper's small token minibatches (many optimizer steps per collect) and the PPO option run."""
    df = finetune(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, minibatch_tokens=256, algo="ppo",
                  estimator="k3", home=tmp_path, progress=False)
    # mean_kl is measured on the first collect, before any update: the policy is still the reference, so
    # the KV-cached sampler's log-probs and the reference's full forward must agree (k3 = 0 up to rounding)
    assert df["pg_loss"].notna().iloc[1] and df["mean_kl"].iloc[1] == pytest.approx(0.0, abs=1e-5)
    # many small PPO steps move the policy away from the sampling one: approx_kl > 0, clipfrac in [0, 1]
    end = df.iloc[1]
    assert math.isfinite(end["approx_kl"]) and end["approx_kl"] > 0 and 0 <= end["clipfrac"] <= 1
    assert math.isfinite(end["explained_variance"])


def test_cuda_request_without_cuda_fails_early(tiny_checkpoint, _home):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA"):
        finetune(preset="tiny", model_dir=str(tiny_checkpoint), device="cuda", progress=False)
    assert not _home.exists()


def test_nan_loss_stops_with_message(tiny_checkpoint, tmp_path, monkeypatch):
    import critkl.rl as rl

    def nan_loss(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        return loss * float("nan"), terms

    real = rl.total_loss
    monkeypatch.setattr(rl, "total_loss", nan_loss)
    with pytest.raises(FloatingPointError, match="RL loss is nan"):
        finetune(preset="tiny", model_dir=str(tiny_checkpoint), home=tmp_path, progress=False)
    # no finished run, and no state to resume (the loss failed before the first round ended)
    assert sorted(p.name for p in (tmp_path / "rl").iterdir()) == [".locks"]


def test_minibatches_hand_made():
    # 4 episodes of 3, 1, 2 and 4 tokens: 10 transitions
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    every = sorted(map(tuple, mask.nonzero().tolist()))

    def split(**kw):
        return minibatches(mask, rl_config("tiny", model_dir="x", **kw), torch.Generator().manual_seed(0))

    by_episode = split(minibatch_episodes=2)
    assert len(by_episode) == 2
    for mb in by_episode:  # whole episodes, two at a time
        rows = mb[:, 0].unique().tolist()
        assert len(rows) == 2 and len(mb) == int(mask[rows].sum())
    assert sorted(map(tuple, torch.cat(by_episode).tolist())) == every  # each transition once
    by_token = split(minibatch_tokens=3)
    assert [len(mb) for mb in by_token] == [3, 3, 3, 1]
    assert sorted(map(tuple, torch.cat(by_token).tolist())) == every
    whole = split()  # the tiny preset: all transitions at once
    assert len(whole) == 1 and sorted(map(tuple, whole[0].tolist())) == every


def test_episode_minibatches(tiny_checkpoint, tmp_path, monkeypatch):
    """In a run, minibatch_episodes=2 makes each optimizer step see the tokens of 2 whole episodes: 2 steps per
    collect of 4 episodes, where the tiny preset's default takes one step on all of them."""
    import critkl.rl as rl
    steps = []
    real = rl.minibatch_loss

    def spy(policy, value_head, batch, sel, weights, cfg):
        rows = sel[:, 0].unique()
        steps.append((cfg.minibatch_episodes, len(rows), len(sel) == int(batch.mask[rows].sum())))
        return real(policy, value_head, batch, sel, weights, cfg)

    monkeypatch.setattr(rl, "minibatch_loss", spy)
    kw = dict(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, home=tmp_path, progress=False)
    finetune(minibatch_episodes=2, **kw)
    finetune(**kw)
    assert steps == [(2, 2, True), (2, 2, True), (0, 4, True)]
    with pytest.raises(ValueError, match="minibatch_episodes=-1"):
        finetune(preset="tiny", model_dir=str(tiny_checkpoint), minibatch_episodes=-1, home=tmp_path)


def test_value_init_mean_return_centres_the_first_update(tiny_checkpoint, tmp_path, monkeypatch):
    """value_init="mean_return": the first update sees the critic at the collect's mean episode reward on
    every token and, with gamma = lambda = 1, advantages R - mean R; by default it sees the random critic's
    values."""
    import critkl.rl as rl
    seen = []
    real = rl.update

    def spy(policy, value_head, opt, batch, cfg, generator):
        seen.append((batch.gen.values.clone(), batch.advantages.clone(), batch.rewards.sum(1), batch.mask.bool()))
        return real(policy, value_head, opt, batch, cfg, generator)

    monkeypatch.setattr(rl, "update", spy)
    kw = dict(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, gamma=1.0, gae_lambda=1.0, home=tmp_path,
              progress=False)
    finetune(value_init="mean_return", **kw)
    values, adv, R, m = seen[0]
    assert torch.allclose(values[m], torch.full_like(values[m], float(R.mean())))
    assert torch.allclose(adv, (R - R.mean())[:, None] * m)
    finetune(**kw)
    values, _, _, m = seen[1]
    assert values[m].std() > 0  # a random critic: not one constant
    with pytest.raises(ValueError, match="value_init='zero'"):
        finetune(preset="tiny", model_dir=str(tiny_checkpoint), value_init="zero", home=tmp_path)


def test_update_follows_the_advantage_sign(tiny_checkpoint):
    """One A2C step with A = +1 on episode 0 and -1 on episode 1 (no value, entropy or KL terms) raises
    the log-probability of episode 0's tokens and lowers episode 1's."""
    import dataclasses

    from critkl import task
    from critkl.model import load_checkpoint
    from critkl.rl import ValueHead, update
    from critkl.rollout import collect
    from critkl.sampling import completion_logits, token_logprobs

    policy, tok, _ = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    vh = ValueHead(policy.config.hidden_size, 8)
    problems = task.Split("plus", 2, 1).sample(2, __import__("numpy").random.default_rng(0))
    batch = collect(policy, vh, None, tok, problems, 2, rl_config("tiny", model_dir="x", temperature=1.0),
                    torch.Generator().manual_seed(0))
    batch.advantages = torch.stack([torch.ones_like(batch.advantages[0]), -torch.ones_like(batch.advantages[1])])
    cfg = dataclasses.replace(rl_config("tiny", model_dir="x"), kl="none", vf_coef=0.0, ent_coef=0.0, lr=1e-3,
                              temperature=1.0)

    def episode_logp():
        with torch.no_grad():
            lg, _, _ = completion_logits(policy, batch.gen)
            return (token_logprobs(lg, batch.gen.completion_ids, 1.0) * batch.mask).sum(1)

    before = episode_logp()
    opt = torch.optim.SGD(list(policy.parameters()) + list(vh.parameters()), lr=1e-2)
    update(policy, vh, opt, batch, cfg, torch.Generator().manual_seed(0))
    after = episode_logp()
    assert after[0] > before[0] and after[1] < before[1]


def test_reinforce_on_successes_and_critic_warmup(tiny_checkpoint, tmp_path):
    """The cpu preset's REINFORCE (binary reward, no baseline, lambda 1): failed episodes get advantage 0
    everywhere, successful ones their reward on every token; the warm-up fits the critic before round 1."""
    import numpy as np

    from critkl import task
    from critkl.model import load_checkpoint
    from critkl.rl import ValueHead
    from critkl.rollout import collect

    policy, tok, _ = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    problems = task.Split("plus", 2, 1).sample(4, np.random.default_rng(0))
    cfg = rl_config("tiny", model_dir="x", temperature=1.0, reward="binary", baseline="none", gae_lambda=1.0)
    b = collect(policy, ValueHead(policy.config.hidden_size, 8), None, tok, problems, 2, cfg,
                torch.Generator().manual_seed(0))
    expected = b.correct.float()[:, None] * b.mask
    assert torch.equal(b.advantages, expected)
    df = finetune(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, reward="binary", baseline="none",
                  gae_lambda=1.0, critic_warmup=1, critic_epochs=2, loss_average="episode", home=tmp_path,
                  progress=False)
    # the warm-up fits V(s) -> terminal reward in {0, 1}: its squared error is at most 1/2 * 1 per token
    # once fitted at all (0.5 * (V - R)^2 with V and R in [0, 1]) and a number, not NaN
    assert 0 <= df["critic_warmup_v_loss"].iloc[0] < 0.5 and df["loss"].notna().iloc[1]
    assert "explained_variance" not in df and "clipfrac" not in df  # no critic in the advantages, no clipping


def test_collect_stats_hand_computed():
    """Weights and certainties at critical vs other states, and the KL, on a hand-made collect."""
    from types import SimpleNamespace

    from critkl.rl import collect_stats
    t = lambda rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    gen = SimpleNamespace(logprobs=t([[-1, -2, -0.5, 0], [-1, -1, 0, 0]]))
    batch = SimpleNamespace(mask=mask, gen=gen, correct=torch.tensor([True, False]),
                            critical_mask=torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0]]),
                            ref_logprobs=t([[-1.5, -1, -0.5, 0], [-2, -1, 0, 0]]),
                            ref_certainty=t([[1.0, 0.5, 0.9, 0.3], [0.2, 1.0, 0.7, 0.1]]), oracle_mask=None)
    cfg = rl_config("tiny", model_dir="x", kl="prioritized", alpha=2.0, estimator="k1")
    out = collect_stats(batch, cfg)
    # w = J^2: critical states (0,1) and (1,0): 0.25, 0.04; other valid states (0,0), (0,2), (1,1): 1, 0.81, 1
    assert out["weight_critical"] == pytest.approx((0.25 + 0.04) / 2)
    assert out["weight_other"] == pytest.approx((1 + 0.81 + 1) / 3)
    assert out["certainty_critical"] == pytest.approx((0.5 + 0.2) / 2)
    assert out["certainty_other"] == pytest.approx((1 + 0.9 + 1) / 3)
    # k1 = logp - ref_logp on the 5 valid tokens: 0.5, -1, 0, 1, 0
    assert out["mean_kl"] == pytest.approx(0.1)
    assert out["train_accuracy"] == 0.5 and out["episode_length"] == 2.5 and out["n_critical_states"] == 2


def test_center_critic_values_and_advantages():
    """The critic outputs the first collect's mean episode reward everywhere, and the advantages are
    recomputed with it (lambda = 1, gamma = 1: A_t = R - mean R on every token of the episode)."""
    from types import SimpleNamespace

    from critkl.rl import ValueHead, center_critic
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # binary: episode 0 right, episode 1 wrong
    batch = SimpleNamespace(mask=mask, rewards=rewards, gen=SimpleNamespace(values=None), advantages=None,
                            returns=None)
    vh = ValueHead(8, 4)
    center_critic(vh, batch, rl_config("tiny", model_dir="x", gamma=1.0, gae_lambda=1.0))
    assert torch.allclose(vh(torch.randn(5, 8)), torch.full((5, 1), 0.5))
    assert torch.allclose(batch.gen.values, torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.0]]))
    assert torch.allclose(batch.advantages, torch.tensor([[0.5, 0.5, 0.5], [-0.5, -0.5, 0.0]]))
    assert torch.allclose(batch.returns, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))


# ---------------------------------------------------------------------------------------------------
# Gathering finished runs of the cache
def _fake_run(home, name, cfg: dict, rows: list[dict]):
    d = home / "rl" / name
    d.mkdir(parents=True)
    (d / "config.rl.json").write_text(json.dumps(cfg))
    pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)


def test_gather_runs(tmp_path):
    home = tmp_path / "h"
    _fake_run(home, "N3-plus1-standard-tiny-s0-aaa", dict(kl="standard", lr=0.5, reward="binary"),
              [dict(round=0, episodes=0, acc_plus=0.1, kl="standard"), dict(round=1, episodes=4, acc_plus=0.2, kl="standard")])
    _fake_run(home, "N2-plus1-none-tiny-s1-bbb", dict(kl="none"), [dict(round=0, episodes=0, acc_plus=0.3, kl="none")])
    _fake_run(home, "N3-plus1-none-tiny-s0-ccc.partial", dict(kl="none"), [dict(round=0, acc_plus=0.0)])
    (home / "rl" / "N3-empty").mkdir()
    df = gather_runs(home)
    assert sorted(df.run.unique()) == ["N2-plus1-none-tiny-s1-bbb", "N3-plus1-standard-tiny-s0-aaa"]
    assert len(df) == 3
    std = df[df.run.str.startswith("N3")]
    assert std.lr.tolist() == [0.5, 0.5] and std.reward.tolist() == ["binary"] * 2
    assert df[df.run.str.startswith("N2")].reward.tolist() == ["ternary"]  # omitted field -> its default
    assert gather_runs(home, level=3).run.unique().tolist() == ["N3-plus1-standard-tiny-s0-aaa"]
    assert gather_runs(home, since="2999-01-01").empty
    assert gather_runs(tmp_path / "nothing").empty


def test_gather_runs_default_home(_home):
    _fake_run(_home, "N3-x", dict(kl="none"), [dict(round=0, acc_plus=0.5)])
    assert gather_runs().run.tolist() == ["N3-x"]



def test_grpo_groups_problems_and_uses_group_advantages(tiny_checkpoint, tmp_path, monkeypatch):
    import critkl.rl as rl_mod
    from critkl.losses import group_advantages
    cfg = rl_config("tiny", model_dir=str(tiny_checkpoint), algo="grpo", group_size=2, rounds=1, reward="binary",
                    estimator="k3", kl="standard")
    seen = []
    real_update = rl_mod.update

    def spy(policy, value_head, opt, batch, cfg_, generator):
        seen.append(batch)
        return real_update(policy, value_head, opt, batch, cfg_, generator)

    monkeypatch.setattr(rl_mod, "update", spy)
    df = finetune(cfg, home=tmp_path, progress=False)
    batch = seen[0]
    assert batch.problems[0::2] == batch.problems[1::2]  # each problem sampled group_size times in a row
    per_episode = group_advantages(batch.rewards.sum(1), 2)
    assert torch.allclose(batch.advantages, per_episode[:, None] * batch.mask)  # same advantage on every token
    assert "clipfrac" in df and "explained_variance" not in df and math.isfinite(df["approx_kl"].iloc[1])
    with pytest.raises(ValueError, match="group_size=3"):
        rl_config("tiny", model_dir="x", algo="grpo", group_size=3)  # does not divide 4 episodes


@pytest.mark.parametrize("overrides", [dict(kl="oracle"), dict(kl="oracle_inverse"),
                                       dict(kl="standard", top_entropy_quantile=0.2),
                                       dict(kl="standard", advantage_weighting="entropy")])
def test_beyond_the_paper_variants_run_and_log(tiny_checkpoint, tmp_path, overrides):
    df = finetune(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, home=tmp_path, progress=False, **overrides)
    end = df.iloc[1]
    assert math.isfinite(end["pg_loss"]) and math.isfinite(end["weighted_kl_loss"])
    if overrides["kl"].startswith("oracle"):  # the weight is the true critical mask (or its complement)
        assert end["weight_other"] == (1.0 if overrides["kl"] == "oracle" else 0.0)


def test_forking_token_mask_changes_the_update(tiny_checkpoint, tmp_path):
    """With rho < 1 the policy term sees fewer tokens: a different loss on the same collect."""
    a = finetune(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, home=tmp_path / "a", progress=False,
                 kl="standard", baseline="none")  # ternary reward: every failed token has advantage -1
    b = finetune(preset="tiny", model_dir=str(tiny_checkpoint), rounds=1, home=tmp_path / "b", progress=False,
                 kl="standard", baseline="none", top_entropy_quantile=0.2)
    assert a["train_accuracy"].iloc[1] == b["train_accuracy"].iloc[1]  # the same collect
    assert a["pg_loss"].iloc[1] != b["pg_loss"].iloc[1]


def test_exact_success_is_the_true_texts_probability(tiny_checkpoint):
    from critkl import task
    from critkl.model import load_checkpoint
    from critkl.rollout import exact_success
    from critkl.tokenizer import encode
    model, tok, _ = load_checkpoint(tiny_checkpoint)
    problems = [(12, 5), (345, 67), (9, 9)]
    by_hand = []
    for a, b in problems:  # one unpadded forward per problem: exp of the completion's summed log-probs at T = 1.5
        ids = torch.tensor([encode(tok, task.full_text(a, b))])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1] / 1.5, -1)
        start = len(task.prompt(a, b))
        by_hand.append(logp[start - 1:].gather(-1, ids[0, start:, None]).sum().exp().item())
    assert exact_success(model, tok, problems, 1.5) == pytest.approx(sum(by_hand) / 3, rel=1e-4)
    assert exact_success(model, tok, problems, 1.5, batch_size=1) == pytest.approx(sum(by_hand) / 3, rel=1e-4)


def test_exact_success_greedy_equals_greedy_decoding_on_a_trained_model():
    """On the shipped N = 3 model, greedy exact success is 1 exactly where greedy decoding writes the true text."""
    import numpy as np
    from critkl import store, task
    from critkl.model import load_checkpoint
    from critkl.rollout import exact_success
    from critkl.sampling import generate
    from pathlib import Path
    repo_store = Path(__file__).resolve().parent.parent / "models"  # conftest points CRITKL_MODELS elsewhere
    folders = [f for f in store.index(repo_store).values() if f.name.startswith("N3-")]
    assert folders, "the repository ships no N = 3 checkpoint"
    default = [f for f in folders if f.name.endswith("c25686da37e8")]  # the chapters' model, when shipped
    model, tok, _ = load_checkpoint((default or sorted(folders))[0])
    problems = task.Split("plus", 3, 1).sample(24, np.random.default_rng(3)) + task.Split("comfort", 3).sample(8, np.random.default_rng(3))
    gen = generate(model, tok, [task.prompt(a, b) for a, b in problems], task.episode_limit(3, 1), 0.0)
    exact = [t == task.full_text(a, b)[len(task.prompt(a, b)):] for t, (a, b) in zip(gen.texts, problems)]
    assert 0 < sum(exact) < len(problems)  # both kinds occur, so the test can fail either way
    assert exact_success(model, tok, problems, 0.0) == pytest.approx(np.mean(exact))


def test_eval_mode_exact_runs_labels_and_keys(tiny_checkpoint, tmp_path):
    df = finetune(preset="tiny", model_dir=str(tiny_checkpoint), eval_mode="exact", home=tmp_path, progress=False)
    assert (df.eval_mode == "exact").all() and df.acc_plus.between(0, 1).all() and df.acc_comfort.between(0, 1).all()
    exact = rl_config("tiny", model_dir=str(tiny_checkpoint), eval_mode="exact")
    assert run_dir(exact, tmp_path) != run_dir(rl_config("tiny", model_dir=str(tiny_checkpoint)), tmp_path)
    with pytest.raises(ValueError, match="eval_mode='mean'"):
        rl_config("tiny", model_dir=str(tiny_checkpoint), eval_mode="mean")
