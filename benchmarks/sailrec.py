"""SailRec vs its baselines on CoLLM's ML-1M split: AUC / UAUC (all, warm, cold), mean +- std over seeds.

    python benchmarks/sailrec.py --train-rows 64 --test-rows 200 --seeds 0 --extra-seeds 1 2 \\
        --extra-variants sailrec collm --budget-minutes 60

MF (stage 1 alone) is scored on the whole test set for every seed, and on the fixed test subsample that every
LLM variant is scored on. Results are rewritten after every run, so a run cut short keeps what finished. The
first SAILRec run is diagnosed (attention mass per layer with/without steering; masking) and plotted.
GPU / full run: ``--train-rows 0 --test-rows 0 --seeds 0 1 2 --max-history 10 --title-tokens 16 --epochs 1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, print_table, write_results
from mllm.sailrec.mf import like_rate_scores, mf_scores, train_mf
from mllm.sailrec.model import VARIANTS
from mllm.sailrec.train import (
    DataSpec,
    MFSpec,
    diagnose,
    plot_attention,
    train_run,
    variant_config,
    yes_no_metrics,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ANCHORS = {  # CoLLM Table II (Vicuna-7B), ML-1M test AUC; SAILRec's reported AUC
    "mf": 0.6482,
    "tallrec": 0.7097,
    "collm": 0.7295,
    "sailrec": 0.7571,
}
METRICS = ("auc", "uauc", "warm_auc", "warm_uauc", "cold_auc", "cold_uauc")


def summarise(runs: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Mean and std (over seeds) of each metric per variant, from the runs' ``key`` metrics."""
    out: dict[str, dict[str, Any]] = {}
    for variant in sorted({r["variant"] for r in runs if key in r}):
        chosen = [r[key] for r in runs if r["variant"] == variant and key in r]
        entry: dict[str, Any] = {"n_seeds": len(chosen), "n_rows": chosen[0]["n_rows"]}
        for metric in METRICS:
            values = [c[metric] for c in chosen if c.get(metric) is not None]
            if values:
                entry[metric] = float(np.mean(values))
                entry[f"{metric}_std"] = float(np.std(values)) if len(values) > 1 else None
        out[variant] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(SHARED / "collm_ml1m"))
    parser.add_argument("--genres", default=str(SHARED / "movielens" / "ml-1m" / "ml-1m.item"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--variants", nargs="+", default=["sailrec", "collm", "tallrec", *list(VARIANTS)[3:]])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--extra-seeds", nargs="*", type=int, default=[], help="more seeds for --extra-variants")
    parser.add_argument("--extra-variants", nargs="*", default=["sailrec", "collm"])
    parser.add_argument("--train-rows", type=int, default=64, help="fixed training subsample (0: all 33,891)")
    parser.add_argument("--test-rows", type=int, default=200, help="fixed test subsample for LLM variants (0: all)")
    parser.add_argument("--diagnose-rows", type=int, default=32)
    parser.add_argument("--max-history", type=int, default=5)
    parser.add_argument("--title-tokens", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--budget-minutes", type=float, default=0.0, help="start no new run after this (0: none)")
    parser.add_argument("--name", default="sailrec")
    parser.add_argument("--resume", action="store_true", help="keep the runs in the existing results JSON; skip them")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "sailrec_attention.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()

    spec = DataSpec("collm_ml1m", args.data_dir, args.genres, args.train_rows, 0)
    data = spec.load()
    test_subset = data.test.sample(args.test_rows, 0)
    overrides = {
        "max_history": args.max_history,
        "title_tokens": args.title_tokens,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "warmup_steps": args.warmup_steps,
    }
    protocol = {
        "data": "CoLLM ML-1M (collm_ml1m), time split; test 7,331 rows",
        "train_rows": args.train_rows or len(data.train),
        "train_subsample_seed": 0,
        "test_subsample_rows": len(test_subset),
        "test_subsample_seed": 0,
        "test_subsample_warm_rows": int(test_subset.warm.sum()),
        "overrides": overrides,
        "model": args.model,
        "mf": MFSpec().__dict__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    runs: list[dict[str, Any]] = []
    diagnosis: dict[str, Any] = {}
    previous = RESULTS_DIR / f"{args.name}.json"
    if args.resume and previous.is_file():
        old = json.loads(previous.read_text())
        if old["protocol"]["overrides"] != overrides or old["protocol"]["test_subsample_rows"] != len(test_subset):
            raise SystemExit(f"--resume: {previous} used another protocol; drop --resume or change --name")
        runs, diagnosis = old["runs"], old["diagnosis"]
        protocol["resumed_from_elapsed_minutes"] = old["elapsed_minutes"]
    done = {(r["variant"], r["seed"]) for r in runs}
    mfs: dict[int, Any] = {}
    cache: dict[str, Any] = {}

    def save() -> None:
        payload = {
            "protocol": protocol,
            "anchors_collm_table2_vicuna7b": ANCHORS,
            "runs": runs,
            "summary_test_subset": summarise(runs, "test_subset"),
            "summary_test_full": summarise(runs, "test_full"),
            "diagnosis": diagnosis,
            "elapsed_minutes": round((time.perf_counter() - started) / 60, 1),
        }
        write_results(args.name, payload)

    if ("item_like_rate", 0) not in done:  # deterministic: one "seed"
        runs.append(
            {
                "variant": "item_like_rate",
                "seed": 0,
                "test_full": yes_no_metrics(data.test, like_rate_scores(data, data.test)),
                "test_subset": yes_no_metrics(test_subset, like_rate_scores(data, test_subset)),
            }
        )
    for seed in sorted(set(args.seeds) | set(args.extra_seeds)):
        mf, _ = train_mf(data, seed, **MFSpec().__dict__)
        mfs[seed] = mf
        if ("mf", seed) in done:
            continue
        runs.append(
            {
                "variant": "mf",
                "seed": seed,
                "test_full": yes_no_metrics(data.test, mf_scores(mf, data.test)),
                "valid_full": yes_no_metrics(data.valid, mf_scores(mf, data.valid)),
                "test_subset": yes_no_metrics(test_subset, mf_scores(mf, test_subset)),
            }
        )
    save()

    plan = [(v, s) for s in args.seeds for v in args.variants]
    plan += [(v, s) for s in args.extra_seeds for v in args.extra_variants]
    for variant, seed in plan:
        if (variant, seed) in done:
            continue
        minutes = (time.perf_counter() - started) / 60
        if args.budget_minutes and minutes > args.budget_minutes:
            logging.warning("budget reached after %.1f min: skipping %s seed %d and later runs", minutes, variant, seed)
            protocol.setdefault("skipped_for_budget", []).append(f"{variant}/seed{seed}")
            continue
        run_started = time.perf_counter()
        config = variant_config(variant, overrides)
        model, _, summary = train_run(data, spec, config, seed, None, args.model, mf=mfs[seed], alignment_cache=cache)
        scoring = time.perf_counter()
        probabilities = model.score_rows(test_subset)
        record = {
            "variant": variant,
            "seed": seed,
            "train_summary": {k: v for k, v in summary.items() if k != "config"},
            "test_subset": yes_no_metrics(test_subset, probabilities),
            "score_seconds": round(time.perf_counter() - scoring, 1),
        }
        if args.test_rows == 0:
            record["test_full"] = record["test_subset"]
        runs.append(record)
        if variant == "sailrec" and not diagnosis:
            rows = data.test.sample(args.diagnose_rows, 1)
            diagnosis.update(variant=variant, seed=seed, rows_seed=1, **diagnose(model, rows))
            plot_attention(diagnosis, args.plot, f"SmolLM2-135M SailRec (seed {seed}), {len(rows)} test rows")
            diagnosis["plot"] = str(Path(args.plot).relative_to(ROOT))
        record["seconds"] = round(time.perf_counter() - run_started, 1)
        save()
        del model

    table = []
    for variant, entry in summarise(runs, "test_subset").items():
        table.append({"variant": variant, "anchor_auc": ANCHORS.get(variant), **entry})
    print_table(table, ["variant", "n_seeds", "n_rows", "auc", "auc_std", "uauc", "warm_auc", "cold_auc", "anchor_auc"])
    print_table(
        [{"variant": v, **e} for v, e in summarise(runs, "test_full").items()],
        ["variant", "n_seeds", "n_rows", "auc", "auc_std", "uauc", "uauc_std", "warm_auc", "cold_auc"],
        title="whole test set",
    )
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
