"""Re-compute a trained model's metrics from its checkpoint folder: ``python -m recsys.evaluate --checkpoint DIR``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from recsys.config import build_config
from recsys.models import Recommender
from recsys.models.base import CheckpointError
from recsys.train import RUN_FILE, DataConfig, TrainConfig, Trainer, prepare_split

logger = logging.getLogger(__name__)


def load_checkpoint(checkpoint: str | Path, data_dir: str | None = None) -> tuple[Recommender, Any, dict[str, Any]]:
    """Model, rebuilt split and run record of a folder written by ``python -m recsys.train --out``."""
    checkpoint = Path(checkpoint)
    run_path = checkpoint / RUN_FILE
    if not run_path.is_file():
        raise CheckpointError(f"{run_path}: missing; --checkpoint must be a folder written by recsys.train")
    try:
        run = json.loads(run_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{run_path}: not valid JSON ({exc.msg})") from None
    if "result" not in run:
        logger.warning("%s has no final result: the run may be unfinished (its best weights so far are used)", run_path)
    data_values = dict(run.get("data_config", {}))
    if data_dir is not None:
        data_values["data_dir"] = data_dir
    data_config = build_config(DataConfig, data_values)
    model = Recommender.from_pretrained(checkpoint)
    if getattr(model, "task", "ranking") == "ctr":  # the same rows and split, encoded by the checkpoint's pipeline
        from recsys.ctr.datasets import load_ctr_table, split_and_encode

        table = load_ctr_table(data_config.dataset, data_config.data_dir, data_config.bad_rows)
        return model, split_and_encode(table, data_config.split, data_config.split_seed, model.pipeline), run
    split = prepare_split(data_config)
    if (model.n_users, model.n_items) != (split.train.n_users, split.train.n_items):
        raise CheckpointError(
            f"{checkpoint}: model has {model.n_users} users x {model.n_items} items but dataset "
            f"{data_config.dataset} now gives {split.train.n_users} x {split.train.n_items}"
        )
    return model, split, run


def evaluate_checkpoint(checkpoint: str | Path, which: str = "test", data_dir: str | None = None) -> dict[str, Any]:
    """Load model and run record from ``checkpoint``, rebuild the same split, and evaluate ``which``."""
    model, split, run = load_checkpoint(checkpoint, data_dir)
    train_config = build_config(TrainConfig, run.get("train_config", {}))
    trainer = Trainer(model, split, train_config, progress=False)
    model.to(trainer.accelerator.device)
    metrics = trainer.evaluate(which, model)
    dataset = build_config(DataConfig, dict(run.get("data_config", {}))).dataset
    return {"model": model.name, "dataset": dataset, "protocol": split.protocol, "split": which, **metrics}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from core.cli import add_verbosity_args, configure_from_args, run_cli

    parser = argparse.ArgumentParser(prog="python -m recsys.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="folder written by python -m recsys.train --out")
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    parser.add_argument("--data-dir", help="look for the dataset here first")
    add_verbosity_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args, default=logging.WARNING)
    return run_cli(lambda: evaluate_checkpoint(args.checkpoint, args.split, args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
