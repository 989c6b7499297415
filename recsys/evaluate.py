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


def evaluate_checkpoint(checkpoint: str | Path, which: str = "test", data_dir: str | None = None) -> dict[str, Any]:
    """Load model and run record from ``checkpoint``, rebuild the same split, and evaluate ``which``."""
    checkpoint = Path(checkpoint)
    run_path = checkpoint / RUN_FILE
    if not run_path.is_file():
        raise CheckpointError(f"{run_path}: missing; --checkpoint must be a folder written by recsys.train")
    run = json.loads(run_path.read_text())
    data_values = dict(run.get("data_config", {}))
    if data_dir is not None:
        data_values["data_dir"] = data_dir
    data_config = build_config(DataConfig, data_values)
    train_config = build_config(TrainConfig, run.get("train_config", {}))
    split = prepare_split(data_config)
    model = Recommender.from_pretrained(checkpoint)
    if (model.n_users, model.n_items) != (split.train.n_users, split.train.n_items):
        raise CheckpointError(
            f"{checkpoint}: model has {model.n_users} users x {model.n_items} items but dataset "
            f"{data_config.dataset} now gives {split.train.n_users} x {split.train.n_items}"
        )
    trainer = Trainer(model, split, train_config, progress=False)
    model.to(trainer.accelerator.device)
    metrics = trainer.evaluate(which, model)
    return {"model": model.name, "dataset": data_config.dataset, "protocol": split.protocol, "split": which, **metrics}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from recsys.cli import run_cli

    parser = argparse.ArgumentParser(prog="python -m recsys.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="folder written by python -m recsys.train --out")
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    parser.add_argument("--data-dir", help="look for the dataset here first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: evaluate_checkpoint(args.checkpoint, args.split, args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
