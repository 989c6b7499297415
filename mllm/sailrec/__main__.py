"""``python -m mllm.sailrec train|eval|diagnose``: SailRec and its baselines on CoLLM-protocol yes/no data.

    python -m mllm.sailrec train --data-dir ../shared/data/collm_ml1m \\
        --genres ../shared/data/movielens/ml-1m/ml-1m.item --variant sailrec --train-rows 160 --out runs/sailrec
    python -m mllm.sailrec eval --run runs/sailrec --rows 300
    python -m mllm.sailrec diagnose --run runs/sailrec --rows 32 --plot runs/sailrec/attention.png

Any ``SailRecConfig`` field can be overridden with ``--key value`` after the named options
(``--steer_deep 3 --warmup_steps 100``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from core.cli import add_verbosity_args, configure_from_args, run_cli
from core.io import atomic_write_json
from mllm.backbones import DEFAULT_MODEL
from mllm.sailrec.data import DATASETS, SPLITS
from mllm.sailrec.model import ALL_VARIANTS, SailRecConfig
from mllm.sailrec.train import (
    DataSpec,
    MFSpec,
    diagnose,
    load_run,
    plot_attention,
    score,
    train_run,
    variant_config,
    yes_no_metrics,
)
from recsys.config import ConfigError, build_config, parse_overrides


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mllm.sailrec`` parser with its three verbs."""
    parser = argparse.ArgumentParser(prog="python -m mllm.sailrec", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train one variant (all stages) and save the run folder")
    train.add_argument("--dataset", choices=DATASETS, default="collm_ml1m")
    train.add_argument("--data-dir", required=True, help="folder of the data set's files")
    train.add_argument("--genres", help="ML-1M item file with genres (ml-1m.item) for the user profiles")
    train.add_argument("--variant", choices=ALL_VARIANTS, default="sailrec")
    train.add_argument("--model", default=DEFAULT_MODEL, help="'default' (SmolLM2-135M GGUF) or a model folder")
    train.add_argument("--train-rows", type=int, default=0, help="fixed training subsample (0: all rows)")
    train.add_argument("--sample-seed", type=int, default=0, help="seed of the training subsample")
    train.add_argument("--allow-pickle", action="store_true", help="read CoLLM's Amazon-Book .pkl files (trusted only)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--mf-epochs", type=int, default=MFSpec.epochs)
    train.add_argument("--out", required=True, help="run folder")
    add_verbosity_args(train)

    evaluate = verbs.add_parser("eval", help="AUC / UAUC (all, warm, cold) of a run folder")
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument("--split", choices=SPLITS[1:], default="test")
    evaluate.add_argument("--rows", type=int, default=0, help="fixed subsample of the split (0: every row)")
    evaluate.add_argument("--rows-seed", type=int, default=0)
    evaluate.add_argument("--out", help="also write the metrics to this JSON file")
    add_verbosity_args(evaluate)

    diag = verbs.add_parser("diagnose", help="attention mass on collaborative tokens per layer; masking analysis")
    diag.add_argument("--run", required=True)
    diag.add_argument("--split", choices=SPLITS[1:], default="test")
    diag.add_argument("--rows", type=int, default=32)
    diag.add_argument("--rows-seed", type=int, default=0)
    diag.add_argument("--plot", help="PNG of the per-layer attention mass")
    diag.add_argument("--out", help="also write the result to this JSON file")
    add_verbosity_args(diag)
    return parser


def _train(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    spec = DataSpec(args.dataset, args.data_dir, args.genres, args.train_rows, args.sample_seed, args.allow_pickle)
    if args.variant == "mf" and overrides:
        raise ConfigError("variant mf takes no SailRecConfig overrides")
    config = None if args.variant == "mf" else build_config(SailRecConfig, {**overrides, "variant": args.variant})
    config = config if config is not None else variant_config("mf")
    mf_spec = dataclasses.replace(MFSpec(), epochs=args.mf_epochs)
    _, _, summary = train_run(spec.load(), spec, config, args.seed, args.out, args.model, mf_spec)
    return summary


def _eval(args: argparse.Namespace) -> dict[str, Any]:
    model, mf, data, summary = load_run(args.run)
    rows = getattr(data, args.split).sample(args.rows, args.rows_seed)
    metrics = yes_no_metrics(rows, score(model, mf, rows))
    result = {"run": str(args.run), "variant": summary["variant"], "split": args.split, **metrics}
    if args.out:
        atomic_write_json(args.out, result)
    return result


def _diagnose(args: argparse.Namespace) -> dict[str, Any]:
    model, _, data, summary = load_run(args.run)
    if model is None:
        raise ConfigError("diagnose needs an LLM variant with collaborative tokens, not mf")
    rows = getattr(data, args.split).sample(args.rows, args.rows_seed)
    result = {"run": str(args.run), "variant": summary["variant"], **diagnose(model, rows)}
    if args.plot:
        result["plot"] = str(plot_attention(result, args.plot, f"{summary['variant']}, {len(rows)} {args.split} rows"))
    if args.out:
        atomic_write_json(args.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args, rest = build_parser().parse_known_args(argv)
    configure_from_args(args)

    def command() -> dict[str, Any]:
        overrides = parse_overrides(rest)
        if args.verb == "train":
            return _train(args, overrides)
        if overrides:
            raise ConfigError(f"unexpected arguments {' '.join(rest)}")
        if not Path(args.run).is_dir():
            raise FileNotFoundError(f"run folder not found: {args.run}")
        return _eval(args) if args.verb == "eval" else _diagnose(args)

    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
