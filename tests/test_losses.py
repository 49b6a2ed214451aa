import math

import pytest
import torch

from critkl import losses

LOGP = torch.tensor([math.log(0.5), math.log(0.2)])
REF = torch.tensor([math.log(0.25), math.log(0.4)])


def test_k1_k2_k3_hand_values():
    # token 1: pi=0.5, ref=0.25 -> log-ratio log(ref/pi) = -log 2 ; token 2: pi=0.2, ref=0.4 -> +log 2
    l2 = math.log(2)
    assert torch.allclose(losses.kl_k1(LOGP, REF), torch.tensor([l2, -l2]))
    assert torch.allclose(losses.kl_k2(LOGP, REF), torch.tensor([0.5 * l2**2, 0.5 * l2**2]))
    # k3 = (r - 1) - log r with r = 0.5 and r = 2
    assert torch.allclose(losses.kl_k3(LOGP, REF), torch.tensor([-0.5 + l2, 1 - l2]))
    assert torch.equal(losses.kl_estimate(LOGP, REF, "k2"), losses.kl_k2(LOGP, REF))
    with pytest.raises(ValueError, match="k4"):
        losses.kl_estimate(LOGP, REF, "k4")


def test_kl_estimators_zero_when_equal():
    for f in (losses.kl_k1, losses.kl_k2, losses.kl_k3):
        assert torch.all(f(LOGP, LOGP) == 0)


def test_certainty_limits_and_hand_value():
    V = 8
    one_hot = torch.full((V,), -1e9)
    one_hot[3] = 0.0
    assert losses.certainty(one_hot, 1.0).item() == pytest.approx(1.0)
    assert losses.certainty(torch.zeros(V), 1.0).item() == pytest.approx(0.0, abs=1e-6)
    # max prob 1/2 over a vocabulary of 8: 1 + log(1/2) / log(8) = 1 - 1/3
    logits = torch.log(torch.tensor([0.5] + [0.5 / 7] * 7))
    assert losses.certainty(logits, 1.0).item() == pytest.approx(2 / 3, rel=1e-5)
    # the reference temperature flattens: T -> large gives certainty -> 0
    assert losses.certainty(logits, 1e6).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        losses.certainty(logits, 0.0)


def test_prioritized_weight_limits():
    c = torch.tensor([1.0, 0.0, 0.5])
    assert torch.allclose(losses.prioritized_weight(c, 2.0), torch.tensor([1.0, 0.0, 0.25]))
    assert torch.equal(losses.prioritized_weight(c, 0.0), torch.ones(3))
    with pytest.raises(ValueError, match="alpha=-1"):
        losses.prioritized_weight(c, -1)


def test_prioritized_equals_standard_at_alpha_zero():
    c = torch.rand(4, 7)
    assert torch.equal(losses.kl_weight("prioritized", c, 0.0), losses.kl_weight("standard", c, 150.0))
    assert torch.equal(losses.kl_weight("none", c, 1.0), torch.zeros(4, 7))
    with pytest.raises(ValueError, match="'forward'"):
        losses.kl_weight("forward", c, 1.0)


def test_policy_terms():
    logp = torch.tensor([math.log(0.5)], requires_grad=True)
    adv = torch.tensor([2.0])
    assert losses.pg_loss_a2c(logp, adv).item() == pytest.approx(-2 * math.log(0.5))
    old = torch.tensor([math.log(0.25)])  # ratio 2, clipped to 1.2
    assert losses.pg_loss_ppo(logp, old, adv, 0.2).item() == pytest.approx(-2 * 1.2)
    assert losses.pg_loss_ppo(logp, old, -adv, 0.2).item() == pytest.approx(2 * 2.0)  # max picks unclipped


def test_value_entropy_masked_mean():
    assert losses.value_loss(torch.tensor([1.0]), torch.tensor([3.0])).item() == 2.0
    assert losses.entropy(torch.zeros(4), 1.0).item() == pytest.approx(math.log(4))
    x = torch.tensor([[1.0, 2.0, 100.0]])
    assert losses.masked_mean(x, torch.tensor([[1, 1, 0]])).item() == 1.5
    assert losses.masked_mean(x, torch.zeros(1, 3)).item() == 0.0


def test_gae_hand_example():
    # one episode of 3 tokens, reward +1 at the end, gamma 1, lambda 0.5, values 0.1 0.2 0.3
    r = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[0.1, 0.2, 0.3, 9.0]])  # last position is padding
    m = torch.tensor([[1, 1, 1, 0]])
    adv, ret = losses.gae(r, v, m, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.3
    d1 = 0.3 - 0.2
    d0 = 0.2 - 0.1
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[a0 + 0.1, a1 + 0.2, a2 + 0.3, 0.0]]))
    # lambda = 1: returns are the Monte-Carlo return, 1 everywhere
    _, ret1 = losses.gae(r, v, m, 1.0, 1.0)
    assert torch.allclose(ret1[:, :3], torch.ones(1, 3))


def test_total_loss_sums_terms():
    one = torch.ones(1, 2)
    m = torch.tensor([[1, 0]])
    loss, t = losses.total_loss(one * 1, one * 2, one * 3, one * 4, one * 0.5, m, vf_coef=0.1,
                                ent_coef=0.01, beta=5.0)
    assert loss.item() == pytest.approx(1 + 0.1 * 2 - 0.01 * 3 + 5 * 0.5 * 4)
    assert t["kl_loss"].item() == 4 and t["weighted_kl_loss"].item() == 2


def test_token_weights_per_episode():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert losses.token_weights(mask, "token").tolist() == mask.float().tolist()
    w = losses.token_weights(mask, "episode")
    assert w.tolist() == [[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]]
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 7.0, 7.0]])
    assert losses.masked_mean(x, mask).item() == pytest.approx(10 / 6)  # the long episode weighs more
    assert losses.masked_mean(x, w).item() == pytest.approx(2.0)        # each episode once: (1 + 3) / 2
    with pytest.raises(ValueError, match="'sequence'"):
        losses.token_weights(mask, "sequence")


def test_update_diagnostics_hand_computed():
    """CleanRL's approx_kl, clipfrac and explained_variance."""
    # new pi = 0.5 and 0.2 where the sampling policy had 0.25 and 0.4: r = 2 and 0.5
    l2 = math.log(2)
    assert torch.allclose(losses.approx_kl(LOGP, REF), torch.tensor([1 - l2, -0.5 + l2]))  # (r - 1) - log r
    assert torch.all(losses.approx_kl(LOGP, LOGP) == 0)  # before the first step
    # |r - 1| = 1 and 0.5: both clipped at 0.2, only the first at 0.6
    assert losses.clipped(LOGP, REF, 0.2).tolist() == [True, True]
    assert losses.clipped(LOGP, REF, 0.6).tolist() == [True, False]
    # returns R = [1, 0, 1, 0] on the masked tokens (mean 0.5, Var 0.25); V = [0.5, 0, 1, 0.5]:
    # R - V = [0.5, 0, 0, -0.5], Var = 0.125 -> 1 - 0.125 / 0.25 = 0.5. The padded token (V = 9) is ignored.
    R = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    V = torch.tensor([[0.5, 0.0, 9.0], [1.0, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    assert losses.explained_variance(V, R, mask).item() == pytest.approx(0.5)
    assert losses.explained_variance(R, R, mask).item() == pytest.approx(1.0)                       # perfect
    assert losses.explained_variance(torch.full_like(R, 0.3), R, mask).item() == pytest.approx(0.0)  # constant
    assert math.isnan(losses.explained_variance(V, torch.ones_like(R), mask).item())                  # R constant


def test_group_advantages_hand_computed():
    from critkl.losses import group_advantages
    # two problems x G = 4 samples: rewards 1,0,0,0 (mean 0.25, unbiased std 0.5) and all failed
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    a = group_advantages(r, 4)
    assert torch.allclose(a[:4], torch.tensor([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-4))
    assert torch.equal(a[4:], torch.zeros(4))  # a group that all failed pushes nothing
    assert torch.allclose(group_advantages(r, 4, scale="none")[:4], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    # ternary and binary rewards give the same std-scaled advantage (an affine change of R)
    assert torch.allclose(group_advantages(2 * r - 1, 4), a, atol=1e-3)


def test_oracle_weights_follow_the_critical_mask():
    from critkl.losses import kl_weight
    cert = torch.tensor([[0.9, 0.2, 0.99, 0.5]])
    crit = torch.tensor([[0, 1, 0, 1]])
    assert torch.equal(kl_weight("oracle", cert, 1000.0, crit), torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    assert torch.equal(kl_weight("oracle_inverse", cert, 1000.0, crit), torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="critical-state mask"):
        kl_weight("oracle", cert, 1.0)


def test_top_entropy_mask_hand_computed():
    from critkl.losses import top_entropy_mask
    h = torch.tensor([[0.1, 0.5, 0.9, 0.3, 7.0], [0.2, 0.8, 0.4, 0.6, 0.7]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])  # the 7.0 is padding: never counted
    # 9 masked entropies; the 0.8 quantile (linear interpolation, as torch.quantile) is 0.7 + 0.4 * 0.1 = 0.74
    got = top_entropy_mask(h, mask, 0.2)
    assert torch.equal(got, torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(top_entropy_mask(h, mask, 1.0), mask.float())


def test_entropy_weighted_advantages_hand_computed():
    from critkl.losses import entropy_weighted_advantages
    adv = torch.tensor([[2.0, 2.0, 2.0, 0.0]])
    h = torch.tensor([[0.1, 0.2, 0.3, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean masked entropy 0.2: weights 0.5, 1, 1.5
    assert torch.allclose(entropy_weighted_advantages(adv, h, mask), torch.tensor([[1.0, 2.0, 3.0, 0.0]]))
