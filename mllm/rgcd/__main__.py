"""``python -m mllm.rgcd teach|distill|represent|eval``: the RGCD-Rep pipeline, one stage per verb.

teach      the teacher's structured reasoning for a documented item subsample (cached, resumable)
distill    LoRA + K summary tokens: a student trained on the teacher's outputs; writes item content embeddings
represent  transferable + residual decomposition; exports the parts to the shared store
eval       the two-tower retrieval comparison on the cold target domain (baselines, ablations, seeds)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli import add_verbosity_args, configure_from_args, run_cli


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="ml1m", choices=("ml1m", "amazon", "synthetic"))
    parser.add_argument("--data-dir", default=None, help="folder of the raw files (default: ../shared/data/...)")
    parser.add_argument("--max-users", type=int, default=2000, help="ml1m: seeded user subsample (0: all)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--max-source-items", type=int, default=0, help="ml1m: keep the most-rated N (0: all)")
    parser.add_argument("--max-target-items", type=int, default=0, help="ml1m: keep the most-rated N (0: all)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mllm.rgcd`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m mllm.rgcd", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    teach = verbs.add_parser("teach", help="run the teacher on an item subsample (resumable)")
    _data_args(teach)
    teach.add_argument("--out", required=True, help="the teacher cache (JSONL, appended)")
    teach.add_argument(
        "--model", default="default", help="'default' (SmolLM2), a folder, a .gguf, or http(s)://..#name"
    )
    teach.add_argument("--items-per-domain", type=int, default=60, help="seeded item subsample per domain")
    teach.add_argument("--pairs", type=int, default=0, help="co-engaged + random source/target pairs (half each)")
    teach.add_argument("--max-new-tokens", type=int, default=48)
    teach.add_argument("--seed", type=int, default=0)

    distill = verbs.add_parser("distill", help="train the summary-token student and embed every item")
    _data_args(distill)
    distill.add_argument("--teacher", required=True, help="the teacher cache written by teach")
    distill.add_argument("--out", required=True, help="output folder (adapter, summary tokens, embeddings)")
    distill.add_argument("--model", default="default", help="the student's base model spec")
    distill.add_argument("--targets", default="reasoning", choices=("reasoning", "titles"))
    distill.add_argument("--summary-tokens", type=int, default=4)
    distill.add_argument("--epochs", type=int, default=2)
    distill.add_argument("--lr", type=float, default=5e-4)
    distill.add_argument("--max-items", type=int, default=0, help="embed at most this many items per domain (0: all)")
    distill.add_argument("--seed", type=int, default=0)

    represent = verbs.add_parser("represent", help="decompose content embeddings and export them to the store")
    _data_args(represent)
    represent.add_argument("--embeddings", required=True, help="item_embeddings.npz from distill (or any content)")
    represent.add_argument("--out", required=True, help="output folder")
    represent.add_argument("--store", default=None, help="the VectorStore directory (default: the shared store)")
    represent.add_argument("--no-residual", action="store_true")
    represent.add_argument(
        "--positives",
        default="behaviour",
        choices=("behaviour", "behaviour_cosine", "content"),
        help="behaviour: lift (positive PMI, top 10); behaviour_cosine: dense cosine-normalised co-engagement",
    )
    represent.add_argument("--seed", type=int, default=0)

    evaluate = verbs.add_parser("eval", help="two-tower retrieval on the cold target domain")
    _data_args(evaluate)
    evaluate.add_argument("--embeddings", action="append", default=[], help="NAME=item_embeddings.npz (repeatable)")
    evaluate.add_argument("--methods", default="all", help="comma list or 'all'")
    evaluate.add_argument("--seeds", default="0,1,2")
    evaluate.add_argument("--cold-share", type=float, default=0.5)
    evaluate.add_argument("--max-cold", type=int, default=2)
    evaluate.add_argument(
        "--cold-items",
        type=float,
        default=0.0,
        help="share of target items held out of all training (content is their only signal); 0: none",
    )
    evaluate.add_argument("--cold-item-seed", type=int, default=0, help="seed of the cold-item draw")
    evaluate.add_argument("--epochs", type=int, default=30)
    evaluate.add_argument("--out", required=True, help="results JSON")
    for sub in (teach, distill, represent, evaluate):
        add_verbosity_args(sub)
    return parser


def _load_data(args: argparse.Namespace):
    from mllm.rgcd.data import load_two_domain

    kwargs: dict[str, Any] = {}
    if args.data == "ml1m":
        kwargs = {
            "folder": args.data_dir,
            "max_users": args.max_users or None,
            "seed": args.data_seed,
            "max_source_items": args.max_source_items or None,
            "max_target_items": args.max_target_items or None,
        }
    elif args.data == "amazon":
        kwargs = {"folder": args.data_dir}
    else:
        kwargs = {"seed": args.data_seed}
    return load_two_domain(args.data, **kwargs)


def _teach(args: argparse.Namespace) -> dict[str, Any]:
    from mllm.backbones import load_chat_model
    from mllm.rgcd.pipeline import teach_subsample

    data = _load_data(args)
    chat = load_chat_model(args.model, **({} if str(args.model).startswith("http") else {"device": "cpu"}))

    def generate(messages: list[dict[str, str]]) -> str:
        return chat.generate(messages, max_new_tokens=args.max_new_tokens, temperature=0.0)

    return teach_subsample(data, generate, args.out, args.items_per_domain, args.pairs, args.seed, chat.name)


def _distill(args: argparse.Namespace) -> dict[str, Any]:
    from mllm.rgcd.pipeline import distill_and_embed

    return distill_and_embed(
        _load_data(args),
        args.teacher,
        args.out,
        model=args.model,
        targets=args.targets,
        summary_tokens=args.summary_tokens,
        epochs=args.epochs,
        lr=args.lr,
        max_items=args.max_items,
        seed=args.seed,
    )


def _represent(args: argparse.Namespace) -> dict[str, Any]:
    from mllm.rgcd.pipeline import represent_and_export

    return represent_and_export(
        _load_data(args),
        args.embeddings,
        args.out,
        store_path=args.store,
        residual=not args.no_residual,
        positives=args.positives,
        seed=args.seed,
    )


def _eval(args: argparse.Namespace) -> dict[str, Any]:
    from mllm.rgcd.pipeline import evaluate_methods

    embeddings = dict(spec.split("=", 1) for spec in args.embeddings)
    return evaluate_methods(
        _load_data(args),
        embeddings,
        methods=None if args.methods == "all" else args.methods.split(","),
        seeds=[int(s) for s in args.seeds.split(",")],
        cold_share=args.cold_share,
        max_cold=args.max_cold,
        epochs=args.epochs,
        out=args.out,
        cold_items=args.cold_items,
        cold_item_seed=args.cold_item_seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    command = {"teach": _teach, "distill": _distill, "represent": _represent, "eval": _eval}[args.verb]
    return run_cli(lambda: command(args))


if __name__ == "__main__":
    sys.exit(main())
