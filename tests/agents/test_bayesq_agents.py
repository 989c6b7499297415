"""Deep Sea agents, bsuite's solved criterion and score, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.bayesq.__main__ import main
from agents.bayesq.agents import METHODS, AgentConfig, DeepSeaLayout
from agents.bayesq.errors import BayesQConfigError
from agents.bayesq.experiment import deep_sea_score, parse_sizes, run_deep_sea, solved_at_episode, sweep_deep_sea


def test_solved_at_episode_is_bsuites_first_episode_below_0_8_bad() -> None:
    assert solved_at_episode(np.array([1, 1, 0, 0, 0], bool)) == 3  # 2/3 < 0.8 at episode 3
    assert solved_at_episode(np.array([1, 1, 1, 1, 0], bool)) is None  # 4/5 = 0.8 is not below
    assert solved_at_episode(np.array([0, 1], bool)) == 1


def test_deep_sea_score_counts_sizes_solved_before_2_to_the_n_plus_100() -> None:
    assert deep_sea_score({10: 50, 12: None}) == 0.5
    assert deep_sea_score({10: 1124}) == 0.0 and deep_sea_score({10: 1123}) == 1.0
    assert deep_sea_score({}) == 0.0


def test_layout_slots_and_predecessors() -> None:
    lay = DeepSeaLayout(4)
    assert lay.next_state[0].tolist() == [16, 4, 5]  # from (0, 0): column -1 is invalid, then (1, 0), (1, 1)
    assert (lay.next_state[12:16] == 16).all()  # last row ends the episode
    assert lay.pred_state[5].tolist() == [2, 1, 0]  # (1, 1) is reached from (0, 2) left, (0, 1) stay, (0, 0) right
    assert lay.slot(np.array([0, 5, 13]), np.array([5, 8, 16])).tolist() == [2, 0, 1]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_reports_the_summary(method: str) -> None:
    rows = run_deep_sea(method, 6, 30, [0, 1])
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        assert {"episodes_to_first_treasure", "solved_at_episode", "total_regret", "mean_return", "cpu_seconds"} <= set(
            r
        )
        assert r["optimal_value"] == pytest.approx(0.99)
        assert r["total_regret"] >= -1e-9  # the denoised return never beats Q*(start) on the deterministic sea
        assert r["treasure_episodes"] == 30 - r["total_bad_episodes"]  # deterministic: not bad <=> treasure


def test_deep_exploration_separates_thompson_methods_from_dithering() -> None:
    """On N = 8 RLSVI and Bayesian Q* (50 Gibbs sweeps per episode) find the treasure within 100 episodes and then
    keep returning to it; epsilon-greedy Q-learning (about 2^-8 per episode) rarely gets there."""
    thompson = run_deep_sea("rlsvi", 8, 100, [0, 1, 2]) + run_deep_sea(
        "bayes-q", 8, 100, [0, 1, 2], config=AgentConfig(gibbs_sweeps=50)
    )
    assert all(r["episodes_to_first_treasure"] is not None for r in thompson)
    assert all(r["treasure_episodes"] >= 20 for r in thompson)
    eps = run_deep_sea("eps-greedy", 8, 100, [0, 1, 2])
    assert all(r["treasure_episodes"] <= 3 for r in eps)


def test_stochastic_variant_runs_with_its_own_optimum() -> None:
    (row,) = run_deep_sea("rlsvi", 6, 20, [4], stochastic=True)
    assert row["env"] == "deepsea-stochastic"
    assert row["bsuite_optimal_return"] == pytest.approx((1 - 1 / 6) ** 5 - 0.01)
    assert row["optimal_value"] >= row["bsuite_optimal_return"]


def test_sweep_resumes_from_its_file(tmp_path) -> None:
    out = tmp_path / "sweep.json"
    first = sweep_deep_sea(["eps-greedy"], [4, 6], [0, 1], ["deepsea"], cap=5, out=out)
    assert len(first["runs"]) == 4 and out.exists()
    again = sweep_deep_sea(["eps-greedy"], [4, 6], [0, 1, 2], ["deepsea"], cap=5, out=out)
    assert len(again["runs"]) == 6  # only seed 2 was new
    (summary,) = again["summary"]
    assert summary["seeds"] == 3 and set(summary["per_size"]) == {"4", "6"}
    assert summary["common_sizes"] == [4, 6]
    assert summary["bsuite_score_common_sizes"] == summary["bsuite_score_mean"]
    assert parse_sizes("10:50:2") == list(range(10, 51, 2)) and parse_sizes("4,6") == [4, 6]
    with pytest.raises(BayesQConfigError, match="--sizes"):
        parse_sizes("ten")


def test_cli_sweep_seed_start_adds_later_seeds(tmp_path) -> None:
    out = tmp_path / "sweep.json"
    args = ["sweep", "--methods", "gptd", "--sizes", "4", "--variants", "deepsea", "--episodes", "3", "--out", str(out)]
    assert main([*args, "--seeds", "2", "--seed-start", "3"]) == 0
    assert sorted(r["seed"] for r in json.loads(out.read_text())["runs"]) == [3, 4]


def test_cli_run_prints_the_issue_keys_and_writes_out(tmp_path, capsys) -> None:
    out = tmp_path / "run.json"
    code = main(
        [
            "run",
            "--env",
            "deepsea",
            "--size",
            "6",
            "--method",
            "rlsvi",
            "--episodes",
            "20",
            "--seed",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    for key in ("episodes_to_first_treasure", "solved_at_episode", "total_regret", "mean_return"):
        assert key in printed


def test_cli_rejects_bad_input_with_one_line(capsys) -> None:
    assert main(["run", "--size", "1", "--episodes", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --size") and "\n" not in err
    assert main(["sweep", "--methods", "nope", "--out", "x.json"]) == 2


def _gptd_on_random_walks(episodes: int, seed: int = 0, noise_sd: float = 0.5):
    """A GPTD agent fed random-action Deep Sea (N = 3) episodes, plus Engel's per-step H and r of run 0."""
    from agents.bayesq.agents import GPTDBatch
    from agents.bayesq.envs import DeepSea

    N = 3
    agent = GPTDBatch(
        DeepSeaLayout(N), 1, AgentConfig(prior_mean=0.2, prior_sd=1.5, noise_sd=noise_sd), np.random.default_rng(5)
    )
    env, rng = DeepSea(N, seed=seed), np.random.default_rng(seed)
    dim = N * N * 2
    H, r = [], []
    for _ in range(episodes):
        s, done, xs, rs = env.reset(), False, [], []
        while not done:
            a = int(rng.integers(2))
            s2, rew, done = env.step(a)
            agent.observe(np.array([s]), np.array([a]), np.array([rew]), np.array([s2]))
            xs.append(s * 2 + a)
            rs.append(rew)
            s = s2
        for t, x in enumerate(xs):  # r_t = Q(x_t) - Q(x_{t+1}), Q(terminal) = 0
            row = np.zeros(dim)
            row[x] = 1.0
            if t + 1 < len(xs):
                row[xs[t + 1]] -= 1.0
            H.append(row)
            r.append(rs[t])
    return agent, np.array(H), np.array(r)


def test_gptd_posterior_matches_engels_kernel_form() -> None:
    """Information form (aggregated pair counts, sparse precision) = Engel et al.'s GP formulas on the raw steps:
    mean = mu0 + K H^T (H K H^T + sigma^2 I)^-1 (r - H mu0), cov = K - K H^T (H K H^T + sigma^2 I)^-1 H K."""
    agent, H, r = _gptd_on_random_walks(12)
    mu0, tau2, sig2 = 0.2, 1.5**2, 0.5**2
    K = tau2 * np.eye(H.shape[1])
    G = H @ K @ H.T + sig2 * np.eye(len(r))
    mean = mu0 + K @ H.T @ np.linalg.solve(G, r - H @ np.full(H.shape[1], mu0))
    cov = K - K @ H.T @ np.linalg.solve(G, H @ K)
    got_mean, got_cov = agent.posterior(0)
    np.testing.assert_allclose(got_mean, mean, atol=1e-9)
    np.testing.assert_allclose(got_cov, cov, atol=1e-9)
    assert len(r) == 12 * 3 and sum(v[0] for v in agent.pairs[0].values()) == len(r)


def test_gptd_thompson_draws_have_the_posterior_moments() -> None:
    agent, _, _ = _gptd_on_random_walks(6)
    mean, cov = agent.posterior(0)
    draws = np.array([agent.q_for_episode()[0].ravel() for _ in range(3000)])
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * np.sqrt(np.diag(cov).max() / 3000))
    np.testing.assert_allclose(draws.var(0), np.diag(cov), rtol=0.15)


def test_gptd_mean_concentrates_on_the_followed_policys_values() -> None:
    """Always 'action 1' on a deterministic sea: the posterior mean of each visited pair tends to its return-to-go."""
    from agents.bayesq.agents import GPTDBatch
    from agents.bayesq.envs import DeepSea

    N = 4
    agent = GPTDBatch(DeepSeaLayout(N), 1, AgentConfig(noise_sd=0.1), np.random.default_rng(0))
    env = DeepSea(N, seed=0)
    for _ in range(200):
        s, done, visited, rewards = env.reset(), False, [], []
        while not done:
            s2, rew, done = env.step(1)
            agent.observe(np.array([s]), np.array([1]), np.array([rew]), np.array([s2]))
            visited.append(s * 2 + 1)
            rewards.append(rew)
            s = s2
    mean, cov = agent.posterior(0)
    to_go = np.cumsum(rewards[::-1])[::-1]
    np.testing.assert_allclose(mean[visited], to_go, atol=0.02)
    assert np.sqrt(np.diag(cov)[visited]).max() < 0.05  # and is certain about them


def test_common_score_uses_only_the_runs_every_method_made() -> None:
    from agents.bayesq.experiment import summarise_sweep

    def row(method: str, size: int, seed: int, solved: int | None) -> dict:
        return {
            "env": "deepsea",
            "method": method,
            "size": size,
            "seed": seed,
            "solved_at_episode": solved,
            "episodes_to_first_treasure": solved,
            "episodes": 100,
            "total_regret": 0.0,
            "treasure_episodes": 0,
            "seconds": 1.0,
        }

    rows = [row("a", 10, 0, 5), row("a", 10, 1, None), row("a", 12, 0, 5), row("b", 10, 0, None), row("b", 10, 1, 7)]
    by_method = {s["method"]: s for s in summarise_sweep(rows)}
    assert by_method["a"]["common_cells"] == 2 and by_method["a"]["common_sizes"] == [10]
    assert by_method["a"]["bsuite_score_common_sizes"] == 0.5  # (10, 0) solved, (10, 1) not; (12, 0) is a's alone
    assert by_method["a"]["bsuite_score_mean"] == 0.5  # seed 0: 2/2, seed 1: 0/1
    assert by_method["b"]["bsuite_score_common_sizes"] == 0.5


def test_bayes_q_resample_every_k_reuses_the_draw_between_resamples() -> None:
    from agents.bayesq.agents import BayesQBatch

    agent = BayesQBatch(DeepSeaLayout(4), 2, AgentConfig(resample_every=3, gibbs_sweeps=2), np.random.default_rng(0))
    draws = [agent.q_for_episode().copy() for _ in range(7)]
    for i in (1, 2, 4, 5):
        np.testing.assert_array_equal(draws[i], draws[i - 1])  # episodes 2, 3 and 5, 6 act on the last draw
    for i in (3, 6):
        assert not np.array_equal(draws[i], draws[i - 1])  # episodes 4 and 7 draw anew
    (row,) = run_deep_sea("bayes-q", 5, 6, [0], config=AgentConfig(resample_every=2))
    assert row["config"]["resample_every"] == 2  # recorded with every run
    with pytest.raises(BayesQConfigError, match="resample_every"):
        AgentConfig(resample_every=0)
    assert main(["run", "--size", "4", "--episodes", "2", "--resample-every", "0"]) == 2


def test_compare_run_groups_counts_solved_runs_and_tests_the_pooled_difference() -> None:
    from agents.bayesq.experiment import compare_run_groups

    def rows(solved_per_size: dict[int, list[bool]]) -> list[dict]:
        return [
            {"size": n, "solved_at_episode": 10 if ok else None} for n, oks in solved_per_size.items() for ok in oks
        ]

    same = compare_run_groups(
        {"a": rows({28: [True, False], 30: [False]}), "b": rows({28: [False, True], 30: [False]})}, [28, 30], [28, 30]
    )
    assert same["groups"]["a"]["per_size"]["28"] == {"solved": 1, "runs": 2}
    assert same["groups"]["b"]["pooled"] == {"solved": 1, "runs": 3}
    assert same["tests"][0]["fisher_p_two_sided"] == pytest.approx(1.0)
    apart = compare_run_groups({"a": rows({28: [True] * 15}), "b": rows({28: [False] * 15})}, [28], [28])
    assert apart["tests"][0]["fisher_p_two_sided"] < 1e-6
