"""Deep Sea against bsuite's rules written out by hand; value iteration on hand-made SSPs."""

from __future__ import annotations

import numpy as np
import pytest

from agents.bayesq.envs import SSP, DeepSea, is_proper, random_ssp, value_iteration
from agents.bayesq.errors import BayesQConfigError

# bsuite deep_sea sweep: mapping seed 42, RandomState(42).binomial(1, 0.5, [N, N]); first rows for N = 10
BSUITE_N10_MAPPING_ROWS = [
    [0, 1, 1, 1, 0, 0, 0, 1, 1, 1],
    [0, 1, 1, 0, 0, 0, 0, 1, 0, 0],
    [1, 0, 0, 0, 0, 1, 0, 1, 1, 0],
]


def test_action_mapping_is_bsuite_seed_42() -> None:
    env = DeepSea(10)
    assert env.action_mapping[:3].tolist() == BSUITE_N10_MAPPING_ROWS
    assert env.action_mapping.shape == (10, 10)


@pytest.mark.parametrize("size", [10, 23])
def test_always_right_earns_0_99_with_move_cost_per_step(size: int) -> None:
    env = DeepSea(size)
    s, rewards, done = env.reset(), [], False
    while not done:
        row, col = divmod(s, size)
        s, r, done = env.step(int(env.action_mapping[row, col]))
        rewards.append(r)
    assert len(rewards) == size  # one row per step
    np.testing.assert_allclose(rewards[:-1], -0.01 / size)
    assert rewards[-1] == pytest.approx(1.0 - 0.01 / size)  # treasure at the bottom-right
    assert sum(rewards) == pytest.approx(0.99)
    assert s == env.terminal and env.total_bad_episodes == 0


def test_left_is_free_clipped_at_column_zero_and_bad_only_on_the_diagonal() -> None:
    N = 8
    env = DeepSea(N)
    env.reset()
    left = 1 - env.action_mapping[0, 0]
    s, r, _ = env.step(int(left))  # left from (0, 0): stays in column 0, no cost, and leaves the diagonal
    assert (s, r) == (1 * N + 0, 0.0) and env.bad_episode
    for _ in range(N - 1):  # always right from (1, 0) on: never back on the diagonal, never the treasure
        row, col = divmod(s, N)
        s, r, done = env.step(int(env.action_mapping[row, col]))
        assert r == pytest.approx(-0.01 / N)
    assert done and env.total_bad_episodes == 1 and env.denoised_return == pytest.approx(-0.01 * (N - 1) / N)
    env.reset()  # right once then left: the left at (1, 1) is on the diagonal, so the episode is bad
    s, _, _ = env.step(int(env.action_mapping[0, 0]))
    env.step(int(1 - env.action_mapping[1, 1]))
    assert env.bad_episode


def test_stochastic_stream_follows_bsuite_order() -> None:
    """randn (end-cell noise) is drawn before rand (does 'right' succeed, p = 1 - 1/N); rand is drawn per right."""
    N, seed = 10, 3
    env = DeepSea(N, stochastic=True, seed=seed)
    ref = np.random.RandomState(seed)
    s, col, done = env.reset(), 0, False
    for row in range(N):
        expected_reward = 0.0
        if row == N - 1 and col in (0, N - 1):
            expected_reward += ref.randn()
        moved = ref.rand() > 1 / N
        if col == N - 1:
            expected_reward += 1.0
        expected_reward -= 0.01 / N
        s, r, done = env.step(int(env.action_mapping[row, col]))
        assert r == pytest.approx(expected_reward)
        col = min(col + 1, N - 1) if moved else col
        assert s == (env.terminal if row == N - 1 else (row + 1) * N + col)
    assert done


def test_stochastic_right_fails_one_in_n_and_end_noise_has_unit_variance() -> None:
    N = 5
    env = DeepSea(N, stochastic=True, seed=0)
    fails = moves = 0
    end_rewards = []
    for _ in range(4000):
        s, done = env.reset(), False
        while not done:
            row, col = divmod(s, N)
            if row < N - 1:
                s, _, done = env.step(int(env.action_mapping[row, col]))
                moves += 1
                fails += divmod(s, N)[1] == col
            else:  # last row: take "left" (no cost); noise only in the two end columns
                s, r, done = env.step(int(1 - env.action_mapping[row, col]))
                if col in (0, N - 1):
                    end_rewards.append(r)
    # column N-1 is absorbing for "right" (clipped), which never happens before row N-1 here
    assert fails / moves == pytest.approx(1 / N, abs=0.015)
    assert np.mean(end_rewards) == pytest.approx(0.0, abs=0.1)
    assert np.std(end_rewards) == pytest.approx(1.0, abs=0.1)


def test_deep_sea_q_star_by_value_iteration() -> None:
    env = DeepSea(12)
    q = value_iteration(env.to_ssp())
    assert q[0].max() == pytest.approx(0.99)
    assert q[0, env.action_mapping[0, 0]] > q[0, 1 - env.action_mapping[0, 0]]
    stoch = DeepSea(12, stochastic=True)
    v = value_iteration(stoch.to_ssp())[0].max()
    assert stoch.bsuite_optimal_return <= v < 0.99  # after a failed right the optimum stops paying move costs


def test_value_iteration_on_hand_made_ssps() -> None:
    # s0 -a0 (cost 1)-> end; s0 -a1 (cost 0.2)-> s1; s1 -a0 (cost 0.2)-> end; s1 -a1 (cost 0.3)-> s0
    P = np.zeros((2, 2, 3))
    P[0, 0, 2] = P[0, 1, 1] = P[1, 0, 2] = P[1, 1, 0] = 1.0
    q = value_iteration(SSP(P, np.array([[-1.0, -0.2], [-0.2, -0.3]])))
    np.testing.assert_allclose(q, [[-1.0, -0.4], [-0.2, -0.7]])
    # a0 ends with probability 1/2 and otherwise stays (cost 1); a1 ends surely (cost 3): Q0 = -1 + V/2 => V = -2
    P = np.zeros((1, 2, 2))
    P[0, 0] = [0.5, 0.5]
    P[0, 1, 1] = 1.0
    np.testing.assert_allclose(value_iteration(SSP(P, np.array([[-1.0, -3.0]]))), [[-2.0, -3.0]])


def test_properness_and_random_ssp() -> None:
    P = np.zeros((2, 2, 3))
    P[0, 0, 2] = P[0, 1, 1] = P[1, 0, 2] = P[1, 1, 0] = 1.0
    assert is_proper(P > 0, np.array([0, 0])) and is_proper(P > 0, np.array([1, 0]))
    assert not is_proper(P > 0, np.array([1, 1]))  # the cycle s0 -> s1 -> s0
    ssp = random_ssp(5, 2, np.random.default_rng(0))
    assert is_proper(ssp.P > 0, np.zeros(5, dtype=int))  # action 0 always moves down or ends
    assert np.isfinite(value_iteration(ssp)).all()
    with pytest.raises(BayesQConfigError, match="must sum to 1"):
        SSP(np.zeros((1, 1, 2)), np.zeros((1, 1)))
    with pytest.raises(BayesQConfigError, match="--size"):
        DeepSea(1)


def test_matches_bsuite_when_installed() -> None:
    """Cross-check against the bsuite package itself (runs where bsuite is importable)."""
    deep_sea = pytest.importorskip("bsuite.environments.deep_sea")
    for stochastic in (False, True):
        ours = DeepSea(10, stochastic=stochastic, seed=7)
        theirs = deep_sea.DeepSea(10, deterministic=not stochastic, seed=7, mapping_seed=42)
        rng = np.random.default_rng(0)
        for _ in range(30):
            ours.reset()
            theirs.reset()
            done = False
            while not done:
                a = int(rng.integers(2))
                _, r, done = ours.step(a)
                ts = theirs.step(a)
                assert r == pytest.approx(ts.reward)
                assert done == ts.last()
        assert ours.total_bad_episodes == theirs.bsuite_info()["total_bad_episodes"]
