"""Episodes, bsuite's Deep Sea score, the sweep over sizes, and the calibration / improper-mass studies."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.bayesq.agents import AgentConfig, make_agent
from agents.bayesq.envs import SSP, DeepSea, is_proper, random_ssp, value_iteration
from agents.bayesq.errors import BayesQConfigError
from agents.bayesq.posterior import (
    RelaxedPosterior,
    TransitionData,
    exact_rule_posterior,
    rule_mass,
    sample_langevin,
    sample_nuts,
)
from core.io import atomic_write_json

logger = logging.getLogger(__name__)

BAD_EPISODE_THRESHOLD = 0.8  # bsuite deep_sea analysis: solved once total_bad_episodes / episode < 0.8
FORGIVENESS = 100  # bsuite deep_sea score: solved before 2^N + 100 episodes beats dithering


def solved_at_episode(bad: np.ndarray, threshold: float = BAD_EPISODE_THRESHOLD) -> int | None:
    """bsuite's criterion: first episode e (1-based) with total_bad_episodes(e) / e < threshold, else None."""
    episodes = np.arange(1, len(bad) + 1)
    hit = np.flatnonzero(np.cumsum(bad) / episodes < threshold)
    return int(hit[0] + 1) if hit.size else None


def deep_sea_score(solved: dict[int, int | None], forgiveness: float = FORGIVENESS) -> float:
    """bsuite's score: share of sizes solved at an episode < 2^N + forgiveness (within the episodes run)."""
    if not solved:
        return 0.0
    return float(np.mean([e is not None and e < 2**n + forgiveness for n, e in solved.items()]))


def run_deep_sea(
    method: str,
    size: int,
    episodes: int,
    seeds: Sequence[int],
    stochastic: bool = False,
    config: AgentConfig | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run one agent on Deep Sea for ``episodes`` episodes, one run per seed (vectorised), one summary each.

    Seed ``s`` seeds both the environment's noise (bsuite's ``seed``) and the agent; the action mapping is bsuite's
    (mapping seed 42).
    """
    if episodes < 1:
        raise BayesQConfigError(f"--episodes {episodes}: must be >= 1")
    if not seeds:
        raise BayesQConfigError("--seeds: need at least one seed")
    config = config or AgentConfig(noise_sd=1.0 if stochastic else 0.1)
    envs = [DeepSea(size, stochastic=stochastic, seed=s) for s in seeds]
    v_star = float(value_iteration(envs[0].to_ssp()).max(1)[0])
    B = len(seeds)
    agent = make_agent(method, size, B, config, seed=int(np.random.SeedSequence(list(seeds)).generate_state(1)[0]))
    returns = np.zeros((episodes, B))
    denoised = np.zeros((episodes, B))
    bad = np.zeros((episodes, B), dtype=bool)
    rewards = np.zeros(B)
    s2 = np.zeros(B, dtype=np.int64)
    start, cpu_start = time.perf_counter(), time.process_time()
    for ep in tqdm(range(episodes), disable=not progress, desc=f"{method} N={size}", leave=False):
        agent.begin_episode()
        s = np.array([env.reset() for env in envs])
        before = np.array([env.total_bad_episodes for env in envs])
        for _ in range(size):  # every episode lasts exactly N steps
            a = agent.act(s)
            for i, env in enumerate(envs):
                s2[i], rewards[i], _ = env.step(int(a[i]))
            agent.observe(s, a, rewards, s2)
            returns[ep] += rewards
            s = s2.copy()
        denoised[ep] = [env.denoised_return for env in envs]
        bad[ep] = np.array([env.total_bad_episodes for env in envs]) > before
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    out = []
    for i, seed in enumerate(seeds):
        treasure = np.flatnonzero(denoised[:, i] > 0.5)
        out.append(
            {
                "env": "deepsea-stochastic" if stochastic else "deepsea",
                "size": size,
                "method": method,
                "seed": int(seed),
                "episodes": episodes,
                "episodes_to_first_treasure": int(treasure[0] + 1) if treasure.size else None,
                "solved_at_episode": solved_at_episode(bad[:, i]),
                "total_regret": float(np.sum(v_star - denoised[:, i])),
                "mean_return": float(returns[:, i].mean()),
                "total_bad_episodes": int(bad[:, i].sum()),
                "treasure_episodes": int(treasure.size),
                "optimal_value": v_star,
                "bsuite_optimal_return": envs[i].bsuite_optimal_return,
                "seconds": seconds / B,
                "cpu_seconds": cpu_seconds / B,  # this process's CPU time (wall time depends on the machine's load)
                "config": asdict(config),
            }
        )
    return out


def parse_sizes(text: str) -> list[int]:
    """``"10:50:2"`` (inclusive) or ``"10,20,30"`` -> list of sizes."""
    try:
        if ":" in text:
            lo, hi, step = (int(x) for x in text.split(":"))
            sizes = list(range(lo, hi + 1, step))
        else:
            sizes = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise BayesQConfigError(f"--sizes {text!r}: expected LO:HI:STEP or a comma-separated list") from None
    if not sizes or min(sizes) < 2:
        raise BayesQConfigError(f"--sizes {text!r}: need at least one size >= 2")
    return sizes


def episode_cap(size: int, cap: int, per_size: int) -> int:
    """Episodes for one size: min(cap, per_size * size) when per_size > 0, else cap."""
    return min(cap, per_size * size) if per_size > 0 else cap


def sweep_deep_sea(
    methods: Sequence[str],
    sizes: Sequence[int],
    seeds: Sequence[int],
    variants: Sequence[str],
    cap: int,
    per_size: int = 0,
    out: Path | None = None,
    prior_sd: float = 1.0,
    noise_sd: float | None = None,
    gibbs_sweeps: int = 10,
    resample_every: int = 1,
) -> dict[str, Any]:
    """All (size, variant, method, seed) runs, smallest sizes first; resumes from ``out`` (rows there are skipped).

    The seeds of one (size, variant, method) run together (vectorised). Every run goes to its episode cap, so
    total_regret is comparable. ``noise_sd`` None means 0.1 on the deterministic and 1.0 on the stochastic sea.
    Writes ``out`` atomically after every (size, variant, method).
    """
    for variant in variants:
        if variant not in ("deepsea", "deepsea-stochastic"):
            raise BayesQConfigError(f"--variants {variant!r}: expected deepsea or deepsea-stochastic")
    rows: list[dict[str, Any]] = []
    if out is not None and out.exists():
        rows = json.loads(out.read_text()).get("runs", [])
    done = {(r["env"], r["method"], r["size"], r["seed"]) for r in rows}
    todo = [(n, v, m) for n in sizes for v in variants for m in methods]
    for size, variant, method in tqdm(todo, desc="deep sea sweep"):
        missing = [s for s in seeds if (variant, method, size, s) not in done]
        if not missing:
            continue
        stochastic = variant == "deepsea-stochastic"
        sd = noise_sd if noise_sd is not None else (1.0 if stochastic else 0.1)
        config = AgentConfig(prior_sd=prior_sd, noise_sd=sd, gibbs_sweeps=gibbs_sweeps, resample_every=resample_every)
        new = run_deep_sea(method, size, episode_cap(size, cap, per_size), missing, stochastic, config)
        rows.extend(new)
        solved = [r["solved_at_episode"] for r in new]
        logger.info("%s %s N=%d: solved at %s (%.1fs per run)", variant, method, size, solved, new[0]["seconds"])
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out, {"runs": rows, "summary": summarise_sweep(rows)}, indent=1)
    return {"runs": rows, "summary": summarise_sweep(rows)}


def common_sizes(rows: list[dict[str, Any]], env: str) -> list[int]:
    """Sizes of ``env`` that every method in ``rows`` ran (so scores over them compare like with like)."""
    return sorted({size for size, _ in common_cells(rows, env)})


def common_cells(rows: list[dict[str, Any]], env: str) -> set[tuple[int, int]]:
    """(size, seed) runs of ``env`` that every method in ``rows`` made."""
    mine = [r for r in rows if r["env"] == env]
    per_method = [{(r["size"], r["seed"]) for r in mine if r["method"] == m} for m in {r["method"] for r in mine}]
    return set.intersection(*per_method) if per_method else set()


def summarise_sweep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, method): bsuite score per seed (mean; over all sizes run and over the sizes every method ran),
    median episodes to solve per size, regret."""
    out = []
    keys = sorted({(r["env"], r["method"]) for r in rows})
    for env, method in keys:
        mine = [r for r in rows if r["env"] == env and r["method"] == method]
        seeds = sorted({r["seed"] for r in mine})
        shared = common_cells(rows, env)
        scores, solved_common = [], 0.0
        for seed in seeds:
            solved = {r["size"]: r["solved_at_episode"] for r in mine if r["seed"] == seed}
            scores.append(deep_sea_score(solved))
            cells = {n: e for n, e in solved.items() if (n, seed) in shared}
            solved_common += deep_sea_score(cells) * len(cells)
        per_size = {}
        for size in sorted({r["size"] for r in mine}):
            these = [r for r in mine if r["size"] == size]
            solved = [r["solved_at_episode"] for r in these]
            first = [r["episodes_to_first_treasure"] for r in these]
            per_size[str(size)] = {
                "runs": len(these),
                "episodes_cap": max(r["episodes"] for r in these),
                "solved_share": float(np.mean([e is not None for e in solved])),
                # unsolved runs count as the cap (a lower bound), so the median is conservative for them
                "median_solved_at": float(
                    np.median([e if e is not None else r["episodes"] for e, r in zip(solved, these, strict=True)])
                ),
                "median_first_treasure": float(
                    np.median([e if e is not None else r["episodes"] for e, r in zip(first, these, strict=True)])
                ),
                "mean_total_regret": float(np.mean([r["total_regret"] for r in these])),
                "mean_treasure_share": float(np.mean([r["treasure_episodes"] / r["episodes"] for r in these])),
            }
        out.append(
            {
                "env": env,
                "method": method,
                "seeds": len(seeds),
                "bsuite_score_mean": float(np.mean(scores)),
                "bsuite_score_per_seed": scores,
                "common_sizes": sorted({n for n, _ in shared}),
                "common_cells": len(shared),
                # share of the (size, seed) runs every method made that were solved in time (bsuite's rule)
                "bsuite_score_common_sizes": solved_common / len(shared) if shared else 0.0,
                "per_size": per_size,
                "mean_seconds_per_run": float(np.mean([r["seconds"] for r in mine])),
            }
        )
    return out


def collect_uniform(ssp: SSP, visits: int, rng: np.random.Generator) -> TransitionData:
    """``visits`` sampled transitions from every (s, a) of a tabular SSP."""
    data = TransitionData(ssp.n_states, ssp.n_actions)
    for s in range(ssp.n_states):
        for a in range(ssp.n_actions):
            for _ in range(visits):
                s2, r = ssp.sample(s, a)
                data.add(s, a, r, s2)
    return data


def calibration_study(
    n_problems: int,
    n_states: int,
    visits: Sequence[int],
    seed: int,
    reward_sd: float = 0.3,
    prior_sd: float = 2.0,
    levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    sampler: str = "langevin",
    n_samples: int = 1000,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Coverage of central credible intervals for the true Q* on random SSPs (relaxation scale = reward noise)."""
    rng = np.random.default_rng(seed)
    hits = {(v, lv): [] for v in visits for lv in levels}
    widths = {(v, lv): [] for v in visits for lv in levels}
    for problem in tqdm(range(n_problems), desc=f"calibration ({sampler})"):
        ssp = random_ssp(n_states, 2, rng, deterministic=deterministic, reward_sd=reward_sd)
        ssp.seed(seed * 1000 + problem)
        q_star = value_iteration(ssp)
        for v in visits:
            data = collect_uniform(ssp, v, rng)
            post = RelaxedPosterior(data, prior_mean=0.0, prior_sd=prior_sd, noise_sd=max(reward_sd, 1e-3))
            if sampler == "nuts":
                draws = sample_nuts(post, n_samples, seed=seed + problem, warmup=300)
            else:
                draws = sample_langevin(post, n_samples, rng, n_chains=4, warmup=1500, thin=5)
            for lv in levels:
                lo, hi = np.quantile(draws, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
                hits[(v, lv)].extend(((q_star >= lo) & (q_star <= hi)).ravel().tolist())
                widths[(v, lv)].extend((hi - lo).ravel().tolist())
    rows = [
        {
            "visits": v,
            "level": lv,
            "coverage": float(np.mean(hits[(v, lv)])),
            "mean_width": float(np.mean(widths[(v, lv)])),
            "n_values": len(hits[(v, lv)]),
        }
        for v in visits
        for lv in levels
    ]
    return {
        "sampler": sampler,
        "n_problems": n_problems,
        "n_states": n_states,
        "reward_sd": reward_sd,
        "prior_sd": prior_sd,
        "deterministic_transitions": deterministic,
        "rows": rows,
    }


def improper_mass_study(
    noise_sds: Sequence[float], seed: int, n_states: int = 4, n_samples: int = 1000, nuts: bool = True
) -> dict[str, Any]:
    """Posterior mass on improper decision rules as the relaxation scale shrinks (exact and sampled).

    A deterministic random SSP with cycles, every (s, a) observed once (rewards are deterministic costs), so
    the exact (sigma -> 0) posterior is a point mass on Q* and gives improper rules no mass.
    """
    rng = np.random.default_rng(seed)
    ssp = random_ssp(n_states, 2, rng, deterministic=True)
    support = ssp.P > 0
    data = collect_uniform(ssp, 1, rng)
    q_star = value_iteration(ssp)
    rows = []
    for sd in tqdm(noise_sds, desc="improper mass"):
        post = RelaxedPosterior(data, prior_mean=0.0, prior_sd=2.0, noise_sd=sd)
        exact = exact_rule_posterior(post, support=support)
        row: dict[str, Any] = {
            "noise_sd": sd,
            "exact_improper_mass": exact.improper_mass,
            "exact_prob_optimal_rule": float(exact.weights[_rule_index(q_star.argmax(1), 2)]),
        }
        draws = sample_langevin(post, n_samples, rng, n_chains=4, warmup=2000, thin=5)
        row["langevin_improper_mass"] = rule_mass(draws, support)
        if nuts:
            draws = sample_nuts(post, n_samples, seed=seed, warmup=300)
            row["nuts_improper_mass"] = rule_mass(draws, support)
        rows.append(row)
    n_improper = sum(not is_proper(support, r) for r in exact.rules)
    return {
        "seed": seed,
        "n_states": n_states,
        "n_rules": len(exact.rules),
        "n_improper_rules": int(n_improper),
        "q_star": q_star.tolist(),
        "rows": rows,
    }


def _rule_index(rule: np.ndarray, n_actions: int) -> int:
    """Index of a rule in ``itertools.product`` order (first state most significant)."""
    idx = 0
    for a in rule:
        idx = idx * n_actions + int(a)
    return idx


def random_deep_sea_transitions(
    size: int, episodes: int, stochastic: bool, seed: int
) -> list[tuple[int, int, float, int]]:
    """(s, a, r, s') of ``episodes`` uniformly random-action episodes on Deep Sea (env and actions seeded)."""
    env, rng = DeepSea(size, stochastic=stochastic, seed=seed), np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        s, done = env.reset(), False
        while not done:
            a = int(rng.integers(2))
            s2, r, done = env.step(a)
            out.append((int(s), a, float(r), int(s2)))
            s = s2
    return out


def chain_moments(agent: Any, cells: np.ndarray, sweeps: int, warmup: int) -> dict[str, list]:
    """Run ``warmup + sweeps`` Gibbs sweeps of a Deep Sea agent's chain (run 0): P(action 1 greedy), mean, sd."""
    for _ in range(warmup):
        agent.sweep()
    draws = np.empty((sweeps, cells.size, agent.A))
    for i in range(sweeps):
        agent.sweep()
        draws[i] = agent.Q[0, cells]
    return {
        "p_action1": (draws.argmax(-1) == 1).mean(0).tolist(),
        "mean": draws.mean(0).tolist(),
        "sd": draws.std(0).tolist(),
    }


def sampler_check(
    size: int = 3,
    stochastic: bool = False,
    episodes: int = 6,
    noise_sd: float = 0.5,
    sweeps: int = 20_000,
    warmup: int = 200,
    seed: int = 0,
    max_rules: int = 64,
) -> dict[str, Any]:
    """The Deep Sea agent's Gibbs chain against the exact P(action optimal) and the generic Gibbs sampler.

    One data set of random-action episodes; the agent's chain (``BayesQBatch``, the sampler the sweeps use) and
    ``GibbsSampler`` (independent code on ``TransitionData``) each run ``sweeps`` sweeps; ``exact_rule_posterior``
    enumerates the 2^R decision rules of the R reachable cells when that is at most ``max_rules``.
    """
    from agents.bayesq.agents import BayesQBatch, DeepSeaLayout
    from agents.bayesq.posterior import GibbsSampler

    transitions = random_deep_sea_transitions(size, episodes, stochastic, seed)
    config = AgentConfig(noise_sd=noise_sd)
    agent = BayesQBatch(DeepSeaLayout(size), 1, config, np.random.default_rng(seed + 1))
    for s, a, r, s2 in transitions:
        agent.observe(np.array([s]), np.array([a]), np.array([r]), np.array([s2]))
    data, cells = agent.transition_data(0)
    post = RelaxedPosterior(data, prior_mean=config.prior_mean, prior_sd=config.prior_sd, noise_sd=noise_sd)
    start = time.perf_counter()
    current = chain_moments(agent, cells, sweeps, warmup)
    current["seconds"] = time.perf_counter() - start
    rows, cols = np.divmod(cells, size)
    generic_sampler = GibbsSampler(post, (rows % 2) * 2 + cols % 2, np.random.default_rng(seed + 2))
    draws = generic_sampler.sample(sweeps, warmup=warmup)
    generic = {
        "p_action1": (draws.argmax(-1) == 1).mean(0).tolist(),
        "mean": draws.mean(0).tolist(),
        "sd": draws.std(0).tolist(),
    }
    exact = None
    if 2**cells.size <= max_rules:
        exact = exact_rule_posterior(post, max_rules=max_rules, seed=seed).action_probs[:, 1].tolist()
    return {
        "size": size,
        "env": "deepsea-stochastic" if stochastic else "deepsea",
        "episodes": episodes,
        "noise_sd": noise_sd,
        "sweeps": sweeps,
        "warmup": warmup,
        "seed": seed,
        "cells": cells.tolist(),
        "transitions": transitions,
        "exact_p_action1": exact,
        "current": current,
        "generic": generic,
    }


def saturated_episode_cost(
    size: int, batch: int = 5, config: AgentConfig | None = None, episodes: int = 5, seed: int = 0
) -> dict[str, Any]:
    """CPU seconds of one bayes-q episode's sampling once every reachable (s, a) has data (the long-run cost).

    Feeds every run one transition of every reachable (s, a) to each successor the sea allows (expected dynamics),
    then times ``episodes`` calls of ``q_for_episode`` (each ``gibbs_sweeps`` sweeps over all reachable cells).
    """
    from agents.bayesq.agents import BayesQBatch, DeepSeaLayout

    config = config or AgentConfig()
    lay = DeepSeaLayout(size)
    agent = BayesQBatch(lay, batch, config, np.random.default_rng(seed))
    ssp = DeepSea(size).to_ssp()
    for s in np.flatnonzero(lay.cols <= lay.rows):
        for a in range(2):
            for s2 in np.flatnonzero(ssp.P[s, a] > 0):
                full = np.full(batch, 1)
                agent.observe(full * s, full * a, full * ssp.R[s, a], full * s2)
    agent.q_for_episode()  # builds the count-only cache once, as after every real episode
    start = time.process_time()
    for _ in range(episodes):
        agent._cache = None  # a real episode adds data, so the cache is rebuilt every episode
        agent.q_for_episode()
    cpu = (time.process_time() - start) / episodes
    return {"size": size, "batch": batch, "config": asdict(config), "cpu_seconds_per_episode": cpu}


def compare_run_groups(
    groups: dict[str, list[dict[str, Any]]], sizes: Sequence[int], pooled: Sequence[int]
) -> dict[str, Any]:
    """Runs solved per size in each group of runs, pooled over ``pooled`` sizes, and Fisher's exact test
    (two-sided) between every two groups' pooled counts: is the difference more than run-to-run noise?"""
    from scipy.stats import fisher_exact

    table: dict[str, Any] = {}
    for name, rows in groups.items():
        per_size = {}
        for n in sizes:
            mine = [r for r in rows if r["size"] == n]
            per_size[str(n)] = {"solved": sum(r["solved_at_episode"] is not None for r in mine), "runs": len(mine)}
        pool = [per_size[str(n)] for n in pooled]
        table[name] = {
            "per_size": per_size,
            "pooled": {"solved": sum(p["solved"] for p in pool), "runs": sum(p["runs"] for p in pool)},
        }
    tests = []
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pa, pb = table[a]["pooled"], table[b]["pooled"]
            contingency = [[pa["solved"], pa["runs"] - pa["solved"]], [pb["solved"], pb["runs"] - pb["solved"]]]
            tests.append({"a": a, "b": b, "fisher_p_two_sided": float(fisher_exact(contingency)[1])})
    return {"sizes": list(sizes), "pooled_sizes": list(pooled), "groups": table, "tests": tests}
