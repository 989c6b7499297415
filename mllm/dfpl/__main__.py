"""``python -m mllm.dfpl train|eval``: train a DFPL model (or a baseline) and evaluate it under missing modalities.

python -m mllm.dfpl train --data houses --path ../shared/data/houses_ahmed2016 --model dfpl --out runs/dfpl-h0
python -m mllm.dfpl eval --run runs/dfpl-h0 --missing-pattern image --missing-rate 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import asdict, fields

import torch

from core.cli import add_verbosity_args, configure_from_args, run_cli
from mllm.dfpl.data import PATTERNS
from mllm.dfpl.datasets import DATASETS, DataSpec, load_split
from mllm.dfpl.errors import DfplError
from mllm.dfpl.models import MODELS, ModelConfig, build_model
from mllm.dfpl.train import TrainConfig, evaluate, fit, image_shape, load_run, save_run

logger = logging.getLogger("mllm.dfpl")

ABLATIONS = {"dfpl_no_sspm": {"sspm": False}, "dfpl_no_pfa": {"pfa": False}, "dfpl_no_cma": {"cma": False}}


def _add_dataclass(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One ``--field`` option per dataclass field (bools take true/false)."""
    for field in fields(cls):
        if field.name in skip:
            continue
        kind = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true", "yes")}
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=f"{cls.__name__}.{field.name}",
            type=kind[field.type if isinstance(field.type, str) else field.type.__name__],
            default=None,
            help=f"{cls.__name__} field (default {field.default})",
        )


def _collect(args: argparse.Namespace, cls, **extra):
    values = {
        key.split(".", 1)[1]: value
        for key, value in vars(args).items()
        if key.startswith(f"{cls.__name__}.") and value is not None
    }
    return cls(**{**values, **extra})


def model_for(name: str, config: ModelConfig) -> tuple[str, ModelConfig]:
    """A registered model name, mapping the ablation names (``dfpl_no_sspm`` ...) onto DFPL with a switch off."""
    if name in ABLATIONS:
        return "dfpl", dataclasses.replace(config, **ABLATIONS[name])
    return name, config


def train_command(args: argparse.Namespace) -> dict:
    """Train, evaluate on the complete test set and under the run's own missingness, save the run."""
    spec = _collect(args, DataSpec, name=args.data)
    model_config = _collect(args, ModelConfig)
    train_config = _collect(args, TrainConfig)
    train, test = load_split(spec)
    name, model_config = model_for(args.model, model_config)
    torch.manual_seed(train_config.seed)
    model = build_model(name, model_config, train.schema, image_shape(train, model_config), train.num_classes)
    history = fit(model, train, train_config, progress=True)
    metrics = {
        "complete": evaluate(model, test, 0.0, "none", train_config.seed),
        "same_missingness": evaluate(
            model, test, train_config.train_missing_rate, train_config.train_missing_pattern, train_config.seed + 100
        ),
    }
    record = {
        "model": args.model,
        "model_config": asdict(model_config),
        "train_config": asdict(train_config),
        "data": asdict(spec),
        "history": history,
        "test": metrics,
    }
    save_run(args.out, model, record)
    return {"run": args.out, **metrics}


def eval_command(args: argparse.Namespace) -> dict:
    """Rebuild a run's test split and score it with a seeded share of one modality missing."""
    record, state = load_run(args.run)
    spec = DataSpec(**record["data"])
    model_config = ModelConfig(**record["model_config"])
    train, test = load_split(spec)
    name, model_config = model_for(record["model"], model_config)
    model = build_model(name, model_config, train.schema, image_shape(train, model_config), train.num_classes)
    model.load_state_dict(state)
    return {
        "run": args.run,
        "missing_pattern": args.missing_pattern,
        "missing_rate": args.missing_rate,
        **evaluate(model, test, args.missing_rate, args.missing_pattern, args.seed),
    }


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m mllm.dfpl``."""
    parser = argparse.ArgumentParser(prog="python -m mllm.dfpl", description=__doc__.split("\n")[0])
    add_verbosity_args(parser)
    sub = parser.add_subparsers(dest="verb", required=True)
    train = sub.add_parser("train", help="train a model and save it (config.json + model.safetensors)")
    train.add_argument("--data", choices=DATASETS, default="synthetic")
    train.add_argument("--model", choices=sorted([*MODELS, *ABLATIONS]), default="dfpl")
    train.add_argument("--out", required=True, help="run folder to write")
    _add_dataclass(train, DataSpec, skip=("name",))
    _add_dataclass(train, ModelConfig)
    _add_dataclass(train, TrainConfig)
    evaluate_parser = sub.add_parser("eval", help="evaluate a saved run under test-time missing modalities")
    evaluate_parser.add_argument("--run", required=True, help="run folder written by train")
    evaluate_parser.add_argument("--missing-pattern", choices=PATTERNS, default="none")
    evaluate_parser.add_argument("--missing-rate", type=float, default=0.0)
    evaluate_parser.add_argument("--seed", type=int, default=0, help="seed of the test-time mask")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the result as JSON; a bad input prints one line and exits 2."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    return run_cli(lambda: train_command(args) if args.verb == "train" else eval_command(args), errors=(DfplError,))


if __name__ == "__main__":
    sys.exit(main())
