"""`python benchmarks/sequential.py sink`: the state share of repeated patterns (recsys.models.sink_diagnostic)."""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import print_table, write_results
from benchmarks.sequential_common import (
    METRICS,
    PRESETS,
    VARIANTS,
    _result_name,
    logger,
)
from recsys.config import build_config
from recsys.models import build_model
from recsys.models.sink_diagnostic import item_genres, planted_repetition_dataset, sink_share
from recsys.train import DataConfig, TrainConfig, Trainer, prepare_split


def sink(args: argparse.Namespace) -> int:
    from recsys.data import make_split

    if args.preset:  # real data
        split = prepare_split(build_config(DataConfig, PRESETS[args.preset]["data"]))
        source = args.preset
    else:
        split = make_split(planted_repetition_dataset(args.users, 60, args.length, seed=0), "loo")
        source = "planted repetition + transitions (synthetic)"
    rows = []
    for variant in args.models:
        model_name, options = VARIANTS[variant]
        torch.manual_seed(0)
        config = build_config(TrainConfig, {"epochs": args.epochs, "batch_size": 64, "lr": 3e-3, "patience": 0})
        max_len = PRESETS[args.preset]["max_len"] if args.preset else args.length
        model = build_model(model_name, split.train.n_users, split.train.n_items, {**options, "max_len": max_len})
        result = Trainer(model, split, config, progress=False).fit()
        row = {"data": source, "model": variant, **{m: result.get(m) for m in METRICS}}
        row.update(sink_share(model, split.train, genres=item_genres(split.train)))
        rows.append(row)
        logger.info("%s", row)
    columns = [
        "model",
        "hr@10",
        "ndcg@10",
        "state_share_top_key_directions",
        "random_subspace_share",
        "state_share_repeated",
        "repeated_score_percentile",
        "users_with_repeats",
        "state_share_top_genre",
        "top_genre_score_percentile",
    ]
    print_table(rows, columns, title=f"semantic state sink on {source}")
    payload = {"data": source, "rows": rows, "users": args.users, "length": args.length, "epochs": args.epochs}
    path = write_results(_result_name("sink", args.tag), payload, args.out)
    print(f"wrote {path}")
    return 0
