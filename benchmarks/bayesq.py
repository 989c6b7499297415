"""Bayesian Q* benchmark: Deep Sea size sweep (bsuite's score), improper-rule mass, and SSP calibration.

Verbs (each one calls the library in ``agents.bayesq``; the sweep is resumable, so it can be stopped and rerun):

    python benchmarks/bayesq.py sweep --sizes 10:50:2 --seeds 5 --episodes 1000 --episodes-per-size 25
    python benchmarks/bayesq.py improper
    python benchmarks/bayesq.py calibrate
    python benchmarks/bayesq.py report      # tables + docs/bayesq_sample_efficiency.png from the result files

``sweep`` writes ``benchmarks/results/bayesq_sweep_runs.json`` (every run, rewritten after each size x variant x
method) and, when it finishes, ``benchmarks/results/bayesq_sweep.json`` through ``write_results``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.bayesq.agents import METHODS, AgentConfig
from agents.bayesq.experiment import (
    calibration_study,
    compare_run_groups,
    improper_mass_study,
    parse_sizes,
    sampler_check,
    saturated_episode_cost,
    summarise_sweep,
    sweep_deep_sea,
)
from benchmarks.common import RESULTS_DIR, print_table, write_results

RUNS_FILE = RESULTS_DIR / "bayesq_sweep_runs.json"
# runs of the same protocol made by a second process (``python -m agents.bayesq sweep --out ...``), merged by report
EXTRA_RUNS_FILES = (
    RESULTS_DIR / "bayesq_sweep_runs_large.json",
    RESULTS_DIR / "bayesq_sweep_runs_gptd.json",
    RESULTS_DIR / "bayesq_sweep_runs_seeds5_9.json",
)
REPO = Path(__file__).resolve().parents[1]
# the chain of an older commit's BayesQBatch on given transitions (runs in a subprocess against that commit's code)
_OLD_CHAIN = """
import json, sys
import numpy as np
from agents.bayesq.agents import AgentConfig, BayesQBatch, DeepSeaLayout
d = json.load(sys.stdin)
agent = BayesQBatch(DeepSeaLayout(d["size"]), 1, AgentConfig(noise_sd=d["noise_sd"]), np.random.default_rng(d["seed"]))
for s, a, r, s2 in d["transitions"]:
    agent.observe(np.array([s]), np.array([a]), np.array([r]), np.array([s2]))
cells = np.array(d["cells"])
for _ in range(d["warmup"]):
    agent.sweep()
draws = np.empty((d["sweeps"], cells.size, 2))
for i in range(d["sweeps"]):
    agent.sweep()
    draws[i] = agent.Q[0, cells]
out = {"p_action1": (draws.argmax(-1) == 1).mean(0), "mean": draws.mean(0), "sd": draws.std(0)}
out = {k: v.tolist() for k, v in out.items()}
import agents.bayesq.agents as module
print(json.dumps(out | {"module": module.__file__}))
"""
# one saturated bayes-q episode's CPU time with an older commit's BayesQBatch (same feeding as saturated_episode_cost)
_OLD_COST = """
import json, sys, time
import numpy as np
from agents.bayesq.agents import AgentConfig, BayesQBatch, DeepSeaLayout
from agents.bayesq.envs import DeepSea
d = json.load(sys.stdin)
lay, B = DeepSeaLayout(d["size"]), d["batch"]
agent = BayesQBatch(lay, B, AgentConfig(), np.random.default_rng(0))
ssp = DeepSea(d["size"]).to_ssp()
for s in np.flatnonzero(lay.cols <= lay.rows):
    for a in range(2):
        for s2 in np.flatnonzero(ssp.P[s, a] > 0):
            full = np.full(B, 1)
            agent.observe(full * s, full * a, full * ssp.R[s, a], full * s2)
agent.q_for_episode()
start = time.process_time()
for _ in range(d["episodes"]):
    if hasattr(agent, "_cache"):
        agent._cache = None
    agent.q_for_episode()
print(json.dumps({"cpu_seconds_per_episode": (time.process_time() - start) / d["episodes"]}))
"""
LONG_RUNS_FILE = RESULTS_DIR / "bayesq_sweep_runs_10k.json"  # bsuite's 10,000 episodes (a subset of sizes)
RERUN_FILE = RESULTS_DIR / "bayesq_sweep_runs_rerun_seeds0_4.json"  # seeds 0-4 again with session 2's sampler
PLOT = Path(__file__).resolve().parents[1] / "docs" / "bayesq_sample_efficiency.png"


def _sweep(args: argparse.Namespace) -> None:
    sizes = parse_sizes(args.sizes)
    result = sweep_deep_sea(
        args.methods.split(","),
        sizes,
        list(range(args.seeds)),
        args.variants.split(","),
        cap=args.episodes,
        per_size=args.episodes_per_size,
        out=RUNS_FILE,
    )
    payload = {
        "protocol": {
            "sizes": sizes,
            "seeds": args.seeds,
            "episode_cap": args.episodes,
            "episodes_per_size": args.episodes_per_size,
            "variants": args.variants.split(","),
        },
        "summary": result["summary"],
    }
    write_results("bayesq_sweep", payload)
    _report_sweep(result["runs"])


def _report_sweep(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = summarise_sweep(runs)
    rows = []
    for s in summary:
        sizes = sorted(int(n) for n in s["per_size"])
        rows.append(
            {
                "env": s["env"],
                "method": s["method"],
                "seeds": s["seeds"],
                "sizes": f"{sizes[0]}-{sizes[-1]}",
                "bsuite_score": s["bsuite_score_mean"],
                "score_common_sizes": s["bsuite_score_common_sizes"],
                **{
                    f"solved@N={n}": s["per_size"][str(n)]["median_solved_at"]
                    for n in (10, 20, 30, 40, 50)
                    if str(n) in s["per_size"]
                },
            }
        )
    print_table(rows, list(rows[0]) if rows else [], title="Deep Sea: bsuite score and median episode solved")
    return summary


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({s["env"] for s in summary})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for s in (x for x in summary if x["env"] == env):
            sizes = sorted(int(n) for n in s["per_size"])
            med = [s["per_size"][str(n)]["median_solved_at"] for n in sizes]
            share = [s["per_size"][str(n)]["solved_share"] for n in sizes]
            (line,) = ax.plot(sizes, med, marker="o", ms=3, label=s["method"])
            for n, m, sh in zip(sizes, med, share, strict=True):
                if sh < 0.5:  # the median run did not solve: the point is the cap (a lower bound)
                    ax.plot([n], [m], marker="x", color=line.get_color(), ms=7)
        all_caps = sorted(
            {(int(n), v["episodes_cap"]) for s in summary if s["env"] == env for n, v in s["per_size"].items()}
        )
        ax.plot([n for n, _ in all_caps], [c for _, c in all_caps], "k--", lw=1, label="episode cap")
        ax.set_yscale("log")
        ax.set_xlabel("Deep Sea size N")
        ax.set_ylabel("median episode solved (bsuite criterion)")
        ax.set_title(env + " (x: median run unsolved, = cap)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _improper(args: argparse.Namespace) -> None:
    sds = [float(x) for x in args.noise_sds.split(",")]
    result = improper_mass_study(sds, args.seed, n_states=args.states, n_samples=args.samples, nuts=not args.no_nuts)
    write_results("bayesq_improper", result)
    print_table(result["rows"], list(result["rows"][0]), title="posterior mass on improper decision rules")


def _calibrate(args: argparse.Namespace) -> None:
    results = {}
    for transitions in ("deterministic", "stochastic"):
        results[transitions] = calibration_study(
            args.problems,
            args.states,
            [int(v) for v in args.visits.split(",")],
            args.seed,
            reward_sd=args.reward_sd,
            sampler=args.sampler,
            n_samples=args.samples,
            deterministic=transitions == "deterministic",
        )
        print_table(
            results[transitions]["rows"],
            ["visits", "level", "coverage", "mean_width", "n_values"],
            title=f"credible-interval coverage of Q* ({transitions} transitions, {args.sampler})",
        )
    write_results(f"bayesq_calibration_{args.sampler}", results)


TABLE_SIZES = (10, 14, 20, 26, 30, 36, 40, 46, 50)


def _at_commit(commit: str, snippet: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``snippet`` (JSON in on stdin, JSON out) with ``agents/`` as it was at ``commit`` (git archive)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "agents/__init__.py", "agents/bayesq"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, "-c", snippet],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=tmp,  # python -c puts the working directory first on sys.path
        )
    return json.loads(done.stdout)


def _sampler_check(args: argparse.Namespace) -> None:
    checks, table = [], []
    for size in parse_sizes(args.sizes):
        for stochastic in (False, True):
            check = sampler_check(size, stochastic, episodes=args.episodes, noise_sd=args.noise_sd, sweeps=args.sweeps)
            keys = ("size", "noise_sd", "transitions", "cells", "warmup", "sweeps")
            payload = {k: check[k] for k in keys} | {"seed": check["seed"] + 1}
            check["commits"] = {c: _at_commit(c, _OLD_CHAIN, payload) for c in args.commits.split(",") if c}
            checks.append(check)
            chains = {"current": check["current"], "generic": check["generic"], **check["commits"]}
            exact = check["exact_p_action1"]
            ref = np.array(exact if exact is not None else check["generic"]["p_action1"])
            for name, chain in chains.items():
                p = np.array(chain["p_action1"])
                table.append(
                    {
                        "env": check["env"],
                        "size": size,
                        "cells": len(check["cells"]),
                        "chain": name,
                        "reference": "exact" if exact is not None else "generic",
                        "max_abs_dp": float(np.abs(p - ref).max()),
                        "max_abs_dmean_vs_generic": float(
                            np.abs(np.array(chain["mean"]) - np.array(check["generic"]["mean"])).max()
                        ),
                        "max_abs_dsd_vs_generic": float(
                            np.abs(np.array(chain["sd"]) - np.array(check["generic"]["sd"])).max()
                        ),
                    }
                )
    print_table(table, list(table[0]), title="Deep Sea Gibbs chains: P(action 1 greedy) against the reference")
    write_results("bayesq_sampler_check", {"checks": checks, "table": table})


def _cost(args: argparse.Namespace) -> None:
    rows = []
    for size in parse_sizes(args.sizes):
        config = AgentConfig(gibbs_sweeps=args.gibbs_sweeps)
        now = saturated_episode_cost(size, args.batch, config, episodes=args.episodes)
        row = {
            "size": size,
            "batch": args.batch,
            "gibbs_sweeps": args.gibbs_sweeps,
            "current": now["cpu_seconds_per_episode"],
        }
        payload = {"size": size, "batch": args.batch, "episodes": args.episodes}
        for commit in (c for c in args.commits.split(",") if c):
            row[commit] = _at_commit(commit, _OLD_COST, payload)["cpu_seconds_per_episode"]
        rows.append(row)
    print_table(rows, list(rows[0]), title="bayes-q CPU seconds per episode, every reachable (s, a) observed")
    write_results("bayesq_cost", {"rows": rows, "episodes_timed": args.episodes})


def _markdown(summary: list[dict[str, Any]], sizes: list[int] | None = None) -> str:
    """The docs' tables: per variant, median episode solved (share of seeds) per size, scores and regret."""
    table_sizes = sizes or TABLE_SIZES
    out = []
    for env in sorted({s["env"] for s in summary}):
        rows = [s for s in summary if s["env"] == env]
        cells = rows[0].get("common_cells", "?")
        out += [
            f"**{env}** (common runs: {cells} (size, seed) pairs that every method made)",
            "",
            "| method | seeds | sizes run | bsuite score, all its runs | score, common runs | "
            + " | ".join(f"N={n}" for n in table_sizes)
            + " |",
            "|---" * (5 + len(table_sizes)) + "|",
        ]
        regret = ["| method | " + " | ".join(f"regret N={n}" for n in table_sizes) + " | s/run (mean) |"]
        regret.append("|---" * (2 + len(table_sizes)) + "|")
        for s in rows:
            sizes = sorted(int(n) for n in s["per_size"])
            cols, reg = [], []
            for n in table_sizes:
                v = s["per_size"].get(str(n))
                if v is None:
                    cols.append("not run")
                    reg.append("-")
                    continue
                solved = v["solved_share"] > 0.5  # the median run (both middle runs for an even count) solved
                med = f"{v['median_solved_at']:.0f}" if solved else f">{v['episodes_cap']}"
                cols.append(f"{med} ({v['solved_share']:.0%}, n={v['runs']})")
                reg.append(f"{v['mean_total_regret']:.1f}")
            out.append(
                f"| {s['method']} | {s['seeds']} | {sizes[0]}-{sizes[-1]} ({len(sizes)}) | "
                f"{s['bsuite_score_mean']:.2f} | {s['bsuite_score_common_sizes']:.2f} | " + " | ".join(cols) + " |"
            )
            regret.append(f"| {s['method']} | " + " | ".join(reg) + f" | {s['mean_seconds_per_run']:.1f} |")
        out += ["", *regret, ""]
    return "\n".join(out)


def _seed_check(write: bool) -> None:
    """Bayesian Q* on the deterministic sea at N = 24..32: seeds 0-4 (two samplers) against seeds 5-9."""
    if not RERUN_FILE.exists():
        return

    def runs(path: Path, seeds: range) -> list[dict[str, Any]]:
        rows = json.loads(path.read_text())["runs"]
        return [r for r in rows if r["method"] == "bayes-q" and r["env"] == "deepsea" and r["seed"] in seeds]

    groups = {
        "seeds 0-4, session-1 sampler (4a86335)": runs(RUNS_FILE, range(5)),
        "seeds 0-4, session-2 sampler (213197e)": runs(RERUN_FILE, range(5)),
        "seeds 5-9, session-2 sampler (213197e)": runs(RESULTS_DIR / "bayesq_sweep_runs_seeds5_9.json", range(5, 10)),
    }
    result = compare_run_groups(groups, [24, 26, 28, 30, 32], pooled=[28, 30, 32])
    lines = ["| runs | " + " | ".join(f"N={n}" for n in result["sizes"]) + " | N=28-32 pooled |"]
    lines.append("|---" * (len(result["sizes"]) + 2) + "|")
    for name, g in result["groups"].items():
        cells = [f"{v['solved']}/{v['runs']}" for v in g["per_size"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {g['pooled']['solved']}/{g['pooled']['runs']} |")
    lines += [
        "",
        *(f"* Fisher exact, {t['a']} vs {t['b']}: p = {t['fisher_p_two_sided']:.3f}" for t in result["tests"]),
    ]
    print("\n".join(lines))
    if write:
        write_results("bayesq_seed_check", result)


def _solved_counts(summary: list[dict[str, Any]], env: str) -> str:
    """Runs solved within the cap / runs made, for every size and method of ``env``."""
    rows = [s for s in summary if s["env"] == env]
    sizes = sorted({int(n) for s in rows for n in s["per_size"]})
    lines = [f"| {env}: solved / runs | " + " | ".join(str(n) for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for s in rows:
        cells = []
        for n in sizes:
            v = s["per_size"].get(str(n))
            cells.append("-" if v is None else f"{round(v['solved_share'] * v['runs'])}/{v['runs']}")
        lines.append(f"| {s['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> None:
    runs = json.loads(RUNS_FILE.read_text())["runs"]
    for extra in EXTRA_RUNS_FILES:
        if extra.exists():
            runs += json.loads(extra.read_text())["runs"]
    unique: dict[tuple, dict[str, Any]] = {}
    for row in runs:  # a (variant, method, size, seed) run kept once (the first file that has it)
        unique.setdefault((row["env"], row["method"], row["size"], row["seed"]), row)
    runs = list(unique.values())
    summary = _report_sweep(runs)
    _plot(summary, PLOT)
    if args.write:
        write_results(
            "bayesq_sweep",
            {
                "protocol": {
                    "from": [f.name for f in (RUNS_FILE, *EXTRA_RUNS_FILES) if f.exists()],
                    "runs": len(runs),
                },
                "summary": summary,
            },
        )
    if args.markdown:
        print(_markdown(summary))
        for env in sorted({s["env"] for s in summary}):
            print(_solved_counts(summary, env) + "\n")
    print(f"plot: {PLOT}")
    _seed_check(args.write)
    if LONG_RUNS_FILE.exists():  # a separate protocol (no cap), so never merged into the capped sweep's tables
        long_summary = summarise_sweep(json.loads(LONG_RUNS_FILE.read_text())["runs"])
        if args.write:
            write_results("bayesq_sweep_10k", {"from": LONG_RUNS_FILE.name, "summary": long_summary})
        if args.markdown:
            print(_markdown(long_summary, sizes=sorted({int(n) for s in long_summary for n in s["per_size"]})))


def main() -> None:
    """Parse the verb and run it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    sw = sub.add_parser("sweep")
    sw.add_argument("--methods", default=",".join(METHODS))
    sw.add_argument("--sizes", default="10:50:2")
    sw.add_argument("--seeds", type=int, default=10)
    sw.add_argument("--variants", default="deepsea,deepsea-stochastic")
    sw.add_argument("--episodes", type=int, default=1000)
    sw.add_argument("--episodes-per-size", type=int, default=25)
    sw.set_defaults(func=_sweep)
    im = sub.add_parser("improper")
    im.add_argument("--noise-sds", default="1.0,0.5,0.3,0.2,0.1,0.05")
    im.add_argument("--states", type=int, default=4)
    im.add_argument("--samples", type=int, default=400)
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--no-nuts", action="store_true")
    im.set_defaults(func=_improper)
    ca = sub.add_parser("calibrate")
    ca.add_argument("--problems", type=int, default=20)
    ca.add_argument("--states", type=int, default=5)
    ca.add_argument("--visits", default="2,10,50")
    ca.add_argument("--reward-sd", type=float, default=0.3)
    ca.add_argument("--sampler", choices=("langevin", "nuts"), default="langevin")
    ca.add_argument("--samples", type=int, default=1000)
    ca.add_argument("--seed", type=int, default=0)
    ca.set_defaults(func=_calibrate)
    sc = sub.add_parser("sampler-check", help="Deep Sea Gibbs chain (now and at older commits) vs exact P(optimal)")
    sc.add_argument("--sizes", default="3,5")
    sc.add_argument("--episodes", type=int, default=6)
    sc.add_argument("--noise-sd", type=float, default=0.5)
    sc.add_argument("--sweeps", type=int, default=10_000)
    sc.add_argument("--commits", default="4a86335,213197e", help="older commits whose BayesQBatch also runs")
    sc.set_defaults(func=_sampler_check)
    co = sub.add_parser("cost", help="bayes-q CPU seconds per episode once every reachable (s, a) has data")
    co.add_argument("--sizes", default="10:50:8")
    co.add_argument("--batch", type=int, default=5)
    co.add_argument("--episodes", type=int, default=5)
    co.add_argument("--gibbs-sweeps", type=int, default=10)
    co.add_argument("--commits", default="213197e", help="older commits timed the same way")
    co.set_defaults(func=_cost)
    rp = sub.add_parser("report")
    rp.add_argument("--write", action="store_true", help="also write bayesq_sweep.json from a partial sweep")
    rp.add_argument("--markdown", action="store_true", help="print the docs' tables")
    rp.set_defaults(func=_report)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # NUTS works on tensors of a few dozen numbers; more threads only contend
    args.func(args)


if __name__ == "__main__":
    main()
