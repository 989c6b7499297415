"""``python -m agents.bayesq run|sweep|calibrate|improper``: Bayesian Q* and baselines on Deep Sea and small SSPs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.bayesq.agents import METHODS, AgentConfig
from agents.bayesq.errors import BayesQError
from agents.bayesq.experiment import (
    calibration_study,
    improper_mass_study,
    parse_sizes,
    run_deep_sea,
    sweep_deep_sea,
)
from core.cli import add_verbosity_args, configure_from_args
from core.io import atomic_write_json

logger = logging.getLogger("agents.bayesq")

ENVS = ("deepsea", "deepsea-stochastic")


def _config(args: argparse.Namespace, stochastic: bool) -> AgentConfig:
    noise = args.noise_sd if args.noise_sd is not None else (1.0 if stochastic else 0.1)
    return AgentConfig(
        prior_sd=args.prior_sd, noise_sd=noise, gibbs_sweeps=args.gibbs_sweeps, resample_every=args.resample_every
    )


def _run(args: argparse.Namespace) -> dict[str, Any]:
    stochastic = args.env == "deepsea-stochastic"
    return run_deep_sea(
        args.method, args.size, args.episodes, [args.seed], stochastic, _config(args, stochastic), progress=True
    )[0]


def _sweep(args: argparse.Namespace) -> dict[str, Any]:
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BayesQError(f"--methods: unknown {unknown}; expected some of {', '.join(METHODS)}")
    result = sweep_deep_sea(
        methods,
        parse_sizes(args.sizes),
        list(range(args.seed_start, args.seed_start + args.seeds)),
        args.variants.split(","),
        cap=args.episodes,
        per_size=args.episodes_per_size,
        out=args.out,
        prior_sd=args.prior_sd,
        noise_sd=args.noise_sd,
        gibbs_sweeps=args.gibbs_sweeps,
        resample_every=args.resample_every,
    )
    return {"summary": result["summary"], "runs": len(result["runs"])}


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    visits = [int(v) for v in args.visits.split(",")]
    return calibration_study(
        args.problems,
        args.states,
        visits,
        args.seed,
        reward_sd=args.reward_sd,
        sampler=args.sampler,
        n_samples=args.samples,
        deterministic=not args.stochastic_transitions,
    )


def _improper(args: argparse.Namespace) -> dict[str, Any]:
    sds = [float(v) for v in args.noise_sds.split(",")]
    return improper_mass_study(sds, args.seed, n_states=args.states, n_samples=args.samples, nuts=not args.no_nuts)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the four verbs."""
    parser = argparse.ArgumentParser(prog="python -m agents.bayesq", description=__doc__)
    add_verbosity_args(parser)
    sub = parser.add_subparsers(dest="verb", required=True)

    def agent_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prior-sd", type=float, default=1.0, help="prior sd of every Q(s, a) (all Bayesian methods)")
        p.add_argument(
            "--noise-sd",
            type=float,
            default=None,
            help="relaxation / noise scale sigma (default 0.1 deterministic, 1.0 stochastic)",
        )
        p.add_argument("--gibbs-sweeps", type=int, default=10, help="bayes-q: Gibbs sweeps per episode")
        p.add_argument(
            "--resample-every",
            type=int,
            default=1,
            help="bayes-q: advance the chain and draw a new Q every k-th episode only (default 1: every episode)",
        )

    run = sub.add_parser("run", help="one agent on Deep Sea; prints the JSON summary")
    run.add_argument("--env", choices=ENVS, default="deepsea")
    run.add_argument("--size", type=int, default=20)
    run.add_argument("--method", choices=METHODS, default="bayes-q")
    run.add_argument("--episodes", type=int, default=1000)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    agent_options(run)
    run.set_defaults(func=_run)

    sweep = sub.add_parser("sweep", help="bsuite's size sweep for several methods; writes all runs and the scores")
    sweep.add_argument("--methods", default=",".join(METHODS))
    sweep.add_argument("--sizes", default="10:50:2", help="LO:HI:STEP (inclusive) or a comma list")
    sweep.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    sweep.add_argument("--seed-start", type=int, default=0, help="first seed (seeds seed-start .. seed-start + n - 1)")
    sweep.add_argument("--variants", default="deepsea,deepsea-stochastic")
    sweep.add_argument("--episodes", type=int, default=10_000, help="episode cap per run (bsuite: 10000)")
    sweep.add_argument(
        "--episodes-per-size", type=int, default=0, help="if > 0, cap a size-N run at min(--episodes, this * N)"
    )
    sweep.add_argument("--out", type=Path, required=True, help="JSON file (resumed if it exists)")
    agent_options(sweep)
    sweep.set_defaults(func=_sweep)

    cal = sub.add_parser("calibrate", help="coverage of credible intervals for Q* on random SSPs")
    cal.add_argument("--problems", type=int, default=20)
    cal.add_argument("--states", type=int, default=5)
    cal.add_argument("--visits", default="2,10,50", help="transitions observed per (s, a)")
    cal.add_argument("--reward-sd", type=float, default=0.3)
    cal.add_argument("--sampler", choices=("langevin", "nuts"), default="langevin")
    cal.add_argument("--samples", type=int, default=1000)
    cal.add_argument("--stochastic-transitions", action="store_true")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--out", type=Path, default=None)
    cal.set_defaults(func=_calibrate)

    imp = sub.add_parser("improper", help="posterior mass on improper decision rules as sigma shrinks")
    imp.add_argument("--noise-sds", default="1.0,0.5,0.2,0.1,0.05")
    imp.add_argument("--states", type=int, default=4)
    imp.add_argument("--samples", type=int, default=1000)
    imp.add_argument("--no-nuts", action="store_true", help="skip the NUTS estimate (Langevin and exact only)")
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--out", type=Path, default=None)
    imp.set_defaults(func=_improper)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_from_args(args, default=logging.WARNING)
    if args.verb in ("calibrate", "improper"):
        import torch

        torch.set_num_threads(1)  # NUTS works on tensors of a few dozen numbers; more threads only contend
    try:
        if args.verb != "sweep" and getattr(args, "episodes", 1) < 1:
            raise BayesQError(f"--episodes {args.episodes}: must be >= 1")
        result = args.func(args)
    except BayesQError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.verb != "sweep" and args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
