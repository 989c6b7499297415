"""The relaxed posterior of Q*: exact decision-rule probabilities, samplers, concentration, improper mass."""

from __future__ import annotations

import numpy as np
import pytest

from agents.bayesq.agents import AgentConfig, BayesQBatch, DeepSeaLayout
from agents.bayesq.envs import SSP, DeepSea, random_ssp, value_iteration
from agents.bayesq.errors import BayesQConfigError
from agents.bayesq.experiment import collect_uniform
from agents.bayesq.posterior import (
    GibbsSampler,
    RelaxedPosterior,
    TransitionData,
    exact_rule_posterior,
    greedy_coloring,
    rule_mass,
    sample_langevin,
    sample_nuts,
)


def _tiny(noise_sd: float = 0.3) -> tuple[RelaxedPosterior, np.ndarray]:
    """2 states, 2 actions, deterministic: s0 -a0-> end, s0 -a1-> s1, s1 -a0-> end, s1 -a1-> s0 (not observed)."""
    P = np.zeros((2, 2, 3))
    P[0, 0, 2] = P[0, 1, 1] = P[1, 0, 2] = P[1, 1, 0] = 1.0
    data = TransitionData(2, 2)
    data.add(0, 0, -1.0, 2)
    data.add(0, 1, -0.2, 1)
    data.add(1, 0, -0.2, 2)
    return RelaxedPosterior(data, prior_mean=0.0, prior_sd=1.0, noise_sd=noise_sd), P > 0


def test_exact_action_probabilities_match_importance_sampling_from_the_prior() -> None:
    post, support = _tiny()
    exact = exact_rule_posterior(post, support=support)
    assert exact.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(exact.action_probs.sum(1), 1.0)
    rng = np.random.default_rng(0)
    draws = post.sample_prior(rng, (400_000,))
    log_lik = post.log_density(draws) + 0.5 * (draws**2).sum((1, 2))  # remove the prior: draws come from it
    w = np.exp(log_lik - log_lik.max())
    w /= w.sum()
    greedy = draws.argmax(-1)
    for s in range(2):
        p = float((w * (greedy[:, s] == 1)).sum())
        se = float(np.sqrt(((w * ((greedy[:, s] == 1) - p)) ** 2).sum()))
        assert abs(exact.action_probs[s, 1] - p) < 4 * se + 0.003
    # the improper rule (a1, a1) is the cycle; its mass is what the exact computation says
    improper = exact.weights[(exact.rules == [1, 1]).all(1)].sum()
    assert exact.improper_mass == pytest.approx(improper)
    assert 0.2 < exact.improper_mass < 0.8  # s1 -a1-> s0 is unobserved, so the relaxation leaves it open


def test_exact_probabilities_without_data_are_symmetric() -> None:
    post = RelaxedPosterior(TransitionData(3, 2), noise_sd=0.5)
    exact = exact_rule_posterior(post)
    np.testing.assert_allclose(exact.action_probs, 0.5, atol=1e-6)
    with pytest.raises(BayesQConfigError, match="max_rules"):
        exact_rule_posterior(RelaxedPosterior(TransitionData(13, 2)))


def test_gibbs_and_langevin_agree_with_the_exact_probabilities() -> None:
    post, _ = _tiny()
    exact = exact_rule_posterior(post)
    rng = np.random.default_rng(1)
    gibbs = GibbsSampler(post, greedy_coloring(2, post.data.s, post.data.s2, post.data.a), rng).sample(3000, warmup=100)
    np.testing.assert_allclose((gibbs.argmax(-1) == 1).mean(0), exact.action_probs[:, 1], atol=0.03)
    mala = sample_langevin(post, 4000, rng, n_chains=8, warmup=800, thin=4)
    np.testing.assert_allclose((mala.argmax(-1) == 1).mean(0), exact.action_probs[:, 1], atol=0.03)


def test_gradient_matches_finite_differences() -> None:
    post, _ = _tiny()
    Q = np.random.default_rng(2).normal(size=(2, 2))
    g = post.grad(Q)
    eps = 1e-6
    for idx in np.ndindex(2, 2):
        d = np.zeros((2, 2))
        d[idx] = eps
        fd = (post.log_density(Q + d) - post.log_density(Q - d)) / (2 * eps)
        assert g[idx] == pytest.approx(fd, rel=1e-4, abs=1e-6)


def test_improper_mass_vanishes_as_the_relaxation_shrinks() -> None:
    rng = np.random.default_rng(0)
    ssp = random_ssp(4, 2, rng, deterministic=True)
    data = collect_uniform(ssp, 1, rng)
    masses = [
        exact_rule_posterior(RelaxedPosterior(data, prior_sd=2.0, noise_sd=sd), support=ssp.P > 0).improper_mass
        for sd in (1.0, 0.3, 0.05)
    ]
    assert masses[0] > 0.05  # a wide relaxation puts visible mass on improper rules
    assert masses[0] > masses[1] > masses[2]
    assert masses[2] < 1e-3
    best = exact_rule_posterior(RelaxedPosterior(data, prior_sd=2.0, noise_sd=0.05), support=ssp.P > 0)
    q_star = value_iteration(ssp)
    assert (best.action_probs.argmax(1) == q_star.argmax(1)).all()


def test_posterior_concentrates_on_q_star_as_data_grow() -> None:
    rng = np.random.default_rng(3)
    ssp = random_ssp(4, 2, rng, deterministic=False, reward_sd=0.3)
    ssp.seed(3)
    q_star = value_iteration(ssp)
    errors, sds = [], []
    for visits in (3, 300):
        post = RelaxedPosterior(collect_uniform(ssp, visits, rng), prior_sd=2.0, noise_sd=0.3)
        draws = sample_langevin(post, 1000, rng, n_chains=4, warmup=1500, thin=4)
        errors.append(np.abs(draws.mean(0) - q_star).max())
        sds.append(draws.std(0).max())
    assert errors[1] < 0.5 * errors[0] and errors[1] < 0.15
    assert sds[1] < 0.3 * sds[0]


def test_dense_deep_sea_gibbs_matches_the_generic_sampler() -> None:
    N = 4
    env, rng = DeepSea(N, stochastic=True, seed=0), np.random.default_rng(1)
    agent = BayesQBatch(DeepSeaLayout(N), 1, AgentConfig(noise_sd=0.3), np.random.default_rng(2))
    data = TransitionData(N * N, 2)
    for _ in range(5):
        s, done = env.reset(), False
        while not done:
            a = int(rng.integers(2))
            s2, r, done = env.step(a)
            data.add(s, a, r, s2)
            agent.observe(np.array([s]), np.array([a]), np.array([r]), np.array([s2]))
            s = s2
    colors = (env.layer() % 2) * 2 + np.arange(N * N) % N % 2
    generic = GibbsSampler(RelaxedPosterior(data, noise_sd=0.3), colors, np.random.default_rng(3))
    x = generic.sample(1500, warmup=100)
    ys = []
    for i in range(1600):
        agent.sweep()
        if i >= 100:
            ys.append(agent.Q[0, : N * N].copy())
    y = np.array(ys)
    rows, cols = np.divmod(np.arange(N * N), N)
    reachable = cols <= rows  # the dense sampler leaves cells right of the diagonal alone
    np.testing.assert_allclose(x.mean(0)[reachable], y.mean(0)[reachable], atol=0.15)
    np.testing.assert_allclose(x.std(0)[reachable], y.std(0)[reachable], atol=0.12)


def test_gibbs_refuses_self_loops() -> None:
    data = TransitionData(2, 2)
    data.add(0, 0, -1.0, 0)
    with pytest.raises(BayesQConfigError, match="self-loop"):
        GibbsSampler(RelaxedPosterior(data), np.array([0, 1]), np.random.default_rng(0)).sweep()


@pytest.mark.slow
def test_nuts_agrees_with_the_exact_probabilities_and_flags_improper_rules() -> None:
    import torch

    torch.set_num_threads(1)  # tiny tensors: more threads only contend
    post, support = _tiny()
    exact = exact_rule_posterior(post, support=support)
    draws = sample_nuts(post, 200, seed=0, warmup=100, max_tree_depth=4)
    np.testing.assert_allclose((draws.argmax(-1) == 1).mean(0), exact.action_probs[:, 1], atol=0.12)
    assert rule_mass(draws, support) == pytest.approx(exact.improper_mass, abs=0.12)


def test_ssp_sampling_follows_p() -> None:
    P = np.zeros((1, 1, 2))
    P[0, 0] = [0.25, 0.75]
    ssp = SSP(P, np.array([[-1.0]]))
    ssp.seed(0)
    ends = np.mean([ssp.sample(0, 0)[0] == 1 for _ in range(4000)])
    assert ends == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("stochastic", [False, True])
def test_deep_sea_chain_matches_the_exact_probabilities(stochastic: bool) -> None:
    """The agent's Gibbs chain (compact live-cell sweep, fused two-piece draws) on a 3 x 3 sea after 6 random
    episodes: P(action 1 greedy) of every reachable cell equals the exact enumeration over the 2^6 rules."""
    from agents.bayesq.experiment import sampler_check

    check = sampler_check(3, stochastic, episodes=6, noise_sd=0.5, sweeps=3000, warmup=100)
    exact = np.array(check["exact_p_action1"])
    assert exact.shape == (6,) and np.ptp(exact) > 0.2  # the data move the probabilities away from 1/2
    np.testing.assert_allclose(check["current"]["p_action1"], exact, atol=0.05)
    np.testing.assert_allclose(check["current"]["mean"], check["generic"]["mean"], atol=0.12)
    np.testing.assert_allclose(check["current"]["sd"], check["generic"]["sd"], atol=0.08)


@pytest.mark.parametrize("cmax", [0.3, -1.0, -np.inf])
def test_two_piece_draws_follow_the_full_conditional(cmax: float) -> None:
    """draw_two_piece against the density exp(-(a1 x^2 - 2 b1 x)/2 - sum w (u - max(x, c))^2 / 2) on a grid."""
    from agents.bayesq.posterior import draw_two_piece

    a1, b1, w, u = 1.5, 0.4, np.array([2.0, 3.0]), np.array([0.8, -0.1])
    n = 200_000
    full = np.ones(n)
    x = draw_two_piece(
        a1 * full,
        b1 * full,
        w.sum() * full,
        (w * u).sum() * full,
        (w * u * u).sum() * full,
        cmax * full,
        np.random.default_rng(0),
    )
    grid = np.linspace(-8, 8, 40_001)
    top = np.maximum(grid, cmax) if np.isfinite(cmax) else grid
    log_d = -0.5 * (a1 * grid**2 - 2 * b1 * grid) - 0.5 * (w[:, None] * (u[:, None] - top[None]) ** 2).sum(0)
    dens = np.exp(log_d - log_d.max())
    dens /= dens.sum()
    mean, sd = (grid * dens).sum(), np.sqrt(((grid - (grid * dens).sum()) ** 2 * dens).sum())
    assert x.mean() == pytest.approx(mean, abs=4 * sd / np.sqrt(n))
    assert x.std() == pytest.approx(sd, rel=0.01)
    if np.isfinite(cmax):
        p_below = dens[grid < cmax].sum()
        assert (x < cmax).mean() == pytest.approx(p_below, abs=4 * np.sqrt(p_below * (1 - p_below) / n) + 1e-4)
