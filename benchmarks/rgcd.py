"""RGCD-Rep benchmark: baselines, the full method and the ablations on a cold target domain (full ranking).

Steps (each resumable on its own; the teacher cache comes from ``python -m mllm.rgcd teach``):

  python benchmarks/rgcd.py distill --teacher runs/rgcd/ml1m_teacher.jsonl --targets reasoning
  python benchmarks/rgcd.py distill --teacher runs/rgcd/ml1m_teacher.jsonl --targets titles
  python benchmarks/rgcd.py eval --data ml1m          # writes benchmarks/results/rgcd_ml1m.json
  python benchmarks/rgcd.py eval --data synthetic     # planted contents stand in for the student's embeddings
  python benchmarks/rgcd.py eval --data amazon        # attribute projections stand in (behaviour-only join)
  python benchmarks/rgcd.py eval --data ml1m --student-suffix _v2 --cold-items 0.2 --name rgcd_ml1m_cold_items

All logic lives in ``mllm.rgcd``; this script picks the documented subsample and writes the results JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import print_table, write_results
from core.io import atomic_write
from mllm.rgcd.data import (
    amazon_beauty_sports,
    attribute_contents,
    movielens_genre_domains,
    synthetic_contents,
    synthetic_two_domain,
)
from mllm.rgcd.pipeline import METHODS, TUNING_GRID, distill_and_embed, evaluate_methods

# the documented ML-1M subsample: 2,000 seeded users; the 400 / 250 most-rated source / target movies
ML1M = {"max_users": 2000, "seed": 0, "max_source_items": 400, "max_target_items": 250}
RUNS = Path("runs/rgcd")


def ml1m_data():
    """The ML-1M two-domain subsample every step uses."""
    return movielens_genre_domains(**ML1M)


def synthetic_data():
    """The synthetic two-domain set (400 users, 150 items per domain, 8 planted topics)."""
    return synthetic_two_domain(n_users=400, n_items_per_domain=150, n_topics=8, seed=0)


def distill(args: argparse.Namespace) -> dict[str, Any]:
    """Train one student (reasoning or titles targets) and embed every item of the subsample."""
    out = RUNS / f"ml1m_student_{args.targets}{args.suffix}"
    summary = distill_and_embed(
        ml1m_data(), args.teacher, out, targets=args.targets, epochs=args.epochs, lr=args.lr, seed=0
    )
    print(f"wrote {write_results(f'rgcd_ml1m_student_{args.targets}{args.suffix}', summary)}")
    return summary


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """All methods x seeds on one data set; writes benchmarks/results/rgcd_<data>.json."""
    seeds = [int(s) for s in args.seeds.split(",") if s]  # "": the tuning runs only
    methods = METHODS if args.methods == "all" else tuple(args.methods.split(","))
    if args.data == "ml1m":
        data = ml1m_data()
        embeddings = {
            name: RUNS / f"ml1m_student_{name}{args.student_suffix}" / "item_embeddings.npz"
            for name in ("reasoning", "titles")
            if (RUNS / f"ml1m_student_{name}{args.student_suffix}" / "item_embeddings.npz").is_file()
        }
        needs_student = [m for m in methods if m not in ("pop", "target_only", "shared_id", "minilm", "titles_student")]
        kept = [m for m in methods if m not in needs_student or "reasoning" in embeddings]
        methods = [m for m in kept if m != "titles_student" or "titles" in embeddings]
        note = "ML-1M genre split (target: Comedy); student embeddings from SmolLM2-135M distilled on the teacher cache"
    else:
        if args.data == "amazon":
            data = amazon_beauty_sports()
            source, target = attribute_contents(data, seed=0)
            note = "Amazon Beauty -> Sports (1,625 shared reviewers); attribute projections stand in for the student"
        else:
            data = synthetic_data()
            source, target = synthetic_contents(data, seed=0)
            note = "synthetic: planted content vectors stand in for the student embeddings (shows the code runs)"
        path = RUNS / f"{args.data}_contents.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez(tmp.open("wb"), source=source, target=target,
                                                source_ids=np.array(data.source.item_ids),
                                                target_ids=np.array(data.target.item_ids)))  # fmt: skip
        embeddings = {"reasoning": path, "titles": path}
        methods = [m for m in methods if m not in ("minilm", "titles_student")]
    result = evaluate_methods(
        data,
        embeddings,
        methods=list(methods),
        seeds=seeds,
        cold_share=args.cold_share,
        max_cold=args.max_cold,
        epochs=args.epochs,
        out=RUNS / f"{args.name or 'rgcd_' + args.data}_partial.json",
        minilm_cache=RUNS / f"{args.data}_minilm.npz",
        tune=[m for m in args.tune.split(",") if m and m in methods],
        content_shared_space=args.data != "amazon",  # Amazon's attribute projections differ per category
        cold_items=args.cold_items,
        cold_item_seed=args.cold_item_seed,
        grid=tuple({"reg_weight": float(w)} for w in args.grid.split(",")) if args.grid else TUNING_GRID,
    )
    payload = {
        "data": args.data,
        "note": note,
        "subsample": ML1M if args.data == "ml1m" else {},
        "student_suffix": args.student_suffix,
        **result,
    }
    path = write_results(args.name or f"rgcd_{args.data}", payload)
    columns = ["method", "seeds", "cold_hr@10", "cold_ndcg@10", "all_hr@10", "all_ndcg@10"]
    if args.cold_items:
        columns += ["cold_item_hr@10", "cold_item_ndcg@10", "warm_item_hr@10", "warm_item_ndcg@10"]
    print_table(
        result["summary"],
        columns,
        title=f"RGCD-Rep on {args.data} (full ranking, cold target users and all users)",
    )
    print(f"wrote {path}")
    return payload


def main(argv: list[str] | None = None) -> int:
    """Parse the step and run it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    d = steps.add_parser("distill")
    d.add_argument("--teacher", default=str(RUNS / "ml1m_teacher.jsonl"))
    d.add_argument("--targets", default="reasoning", choices=("reasoning", "titles"))
    d.add_argument("--epochs", type=int, default=2)
    d.add_argument("--lr", type=float, default=5e-4)
    d.add_argument("--suffix", default="", help="student folder suffix")
    e = steps.add_parser("eval")
    e.add_argument("--data", default="ml1m", choices=("ml1m", "synthetic", "amazon"))
    e.add_argument("--methods", default="all")
    e.add_argument("--seeds", default="0,1,2")
    e.add_argument("--cold-share", type=float, default=0.5)
    e.add_argument("--max-cold", type=int, default=2)
    e.add_argument("--epochs", type=int, default=30)
    e.add_argument(
        "--cold-items", type=float, default=0.0, help="share of target items held out of all training (0: none)"
    )
    e.add_argument("--cold-item-seed", type=int, default=0, help="seed of the cold-item draw")
    e.add_argument("--grid", default="", help="L2 weights of the tuning grid, comma list (default: TUNING_GRID)")
    e.add_argument("--name", default=None, help="results name (default rgcd_<data>)")
    e.add_argument("--student-suffix", default="", help="ml1m: read runs/rgcd/ml1m_student_<targets><suffix>")
    e.add_argument(
        "--tune",
        default="shared_id,full",
        help="methods that get the tuning grid (same budget each; selected on the cold users' validation items)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("recsys.train", "httpx", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    (distill if args.step == "distill" else evaluate)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
