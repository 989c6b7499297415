"""``python -m agents.pcf label|eval|index``: label a catalogue with PCF estimates, or measure the estimator."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.pcf.attributes import columns_help
from agents.pcf.errors import PCFError
from agents.pcf.label import BRAND_FIELDS, CATEGORY_FIELDS, DESCRIPTION_FIELDS, ID_FIELDS, TITLE_FIELDS
from core.cli import add_verbosity_args, configure_from_args, run_cli

logger = logging.getLogger("agents.pcf")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _load_llm(spec: str) -> tuple[Any, str]:
    """(ChatModel or None, its name) for ``--llm``: none, default (packaged SmolLM2), a folder, .gguf or URL."""
    if spec.lower() in ("none", "off", ""):
        return None, ""
    from mllm.backbones import load_chat_model

    model = load_chat_model(spec, device="cpu") if not spec.startswith("http") else load_chat_model(spec)
    name = "SmolLM2-135M-Instruct (packaged)" if spec == "default" else getattr(model, "name", spec)
    return model, name


def _open_store(spec: str | None) -> Any:
    from retrieval import VectorStore

    if spec and spec.startswith(("http://", "https://")):
        return VectorStore(url=spec)
    return VectorStore(path=spec)


def _label(args: argparse.Namespace) -> dict[str, Any]:
    from agents.pcf.label import parse_shard, run_label_job
    from retrieval.embed import make_text_embedder

    shard = parse_shard(args.shard)
    if args.workers < 1 or args.batch_size < 1:
        raise PCFError("--workers and --batch-size must be >= 1")
    embedder = make_text_embedder(args.embedder)
    llm, llm_name = _load_llm(args.llm)
    workers = args.workers
    if llm is not None and workers > 1 and not args.llm.startswith(("http://", "https://")):
        # One local model is not safe to call from several threads; it batches the conversations instead.
        logger.warning("--workers %d ignored for a local model (batched generation is used instead)", workers)
        workers = 1
    with _open_store(args.store) as store:
        return run_label_job(
            args.catalog,
            args.out,
            store,
            embedder,
            llm=llm,
            llm_name=llm_name,
            workers=workers,
            shard=shard,
            batch_size=args.batch_size,
            k=args.k,
            similarity_threshold=args.similarity_threshold,
            reference=args.reference,
            progress=not args.no_progress,
            estimator=args.estimator,
            coverage=args.coverage,
        )


def _eval(args: argparse.Namespace) -> dict[str, Any]:
    from agents.pcf.evaluate import (
        TRANSFER_PROTOCOLS,
        evaluate,
        evaluate_transfer,
        format_table,
        format_transfer_table,
        plain_text,
    )
    from agents.pcf.reference import load_carbon_catalogue
    from core.io import atomic_write_text
    from retrieval.embed import make_text_embedder

    products = load_carbon_catalogue(args.reference)
    embedder = make_text_embedder(args.embedder)
    embeddings = embedder.embed_texts([p.text() for p in products])
    llm, llm_name = _load_llm(args.llm)
    result = evaluate(
        products,
        embeddings,
        n_folds=args.folds,
        k=args.k,
        seed=args.seed,
        llm=llm,
        llm_name=llm_name,
        llm_limit=args.llm_limit or None,
        similarity_threshold=args.similarity_threshold,
        with_weight=args.with_weight,
        leave_one_group_out=args.loo,
    )
    result["embedder"] = embedder.name
    result["command"] = "python -m agents.pcf " + " ".join(sys.argv[1:])
    print(format_table(result, "all"))
    if "llm_subset" in result:
        print()
        print(format_table(result, "llm_subset"))
        print(f"LLM answers that parsed: {result['llm_valid_share']:.1%}")
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in TRANSFER_PROTOCOLS]
    if unknown:
        raise PCFError(f"--protocols: {unknown} unknown; use {', '.join(TRANSFER_PROTOCOLS)} (comma-separated)")
    if protocols:
        if not 0.0 < args.coverage < 1.0:
            raise PCFError(f"--coverage must be in (0, 1), got {args.coverage}")
        queries = embedder.embed_texts([plain_text(p) for p in products])
        result["transfer"] = {}
        for protocol in protocols:
            transfer = evaluate_transfer(
                products, embeddings, queries, protocol, n_folds=args.folds, k=args.k, seed=args.seed,
                coverage=args.coverage,
            )  # fmt: skip
            result["transfer"][protocol] = transfer
            print()
            print(format_transfer_table(transfer))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"wrote {out}")
    return None


def _transfer(args: argparse.Namespace) -> None:
    """Fit on one food LCA table (AGRIBALYSE), estimate another (Poore & Nemecek), print and write the metrics."""
    from agents.pcf.evaluate import evaluate_external, format_external_table
    from agents.pcf.food import load_agribalyse, load_poore_nemecek
    from agents.pcf.reference import product_text
    from core.io import atomic_write_text
    from retrieval.embed import make_text_embedder

    if not 0.0 < args.coverage < 1.0:
        raise PCFError(f"--coverage must be in (0, 1), got {args.coverage}")
    reference = load_agribalyse(args.reference or DEFAULT_DATA / "agribalyse_food_lca")
    targets = load_poore_nemecek(args.targets or DEFAULT_DATA / "food_emissions_poore_nemecek")
    embedder = make_text_embedder(args.embedder)
    embeddings = embedder.embed_texts([p.text() for p in reference])
    queries = embedder.embed_texts([product_text(p.name) for p in reference])
    target_embeddings = embedder.embed_texts([product_text(t.name) for t in targets])
    result = evaluate_external(
        reference,
        embeddings,
        queries,
        [t.name for t in targets],
        [t.pcf_kg for t in targets],
        target_embeddings,
        k=args.k,
        coverage=args.coverage,
    )
    result["reference"], result["targets_file"] = "agribalyse_food_lca", "food_emissions_poore_nemecek"
    result["embedder"] = embedder.name
    result["command"] = "python -m agents.pcf " + " ".join(sys.argv[1:])
    print(format_external_table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


def _index(args: argparse.Namespace) -> dict[str, Any]:
    from agents.pcf.reference import REFERENCE_COLLECTION, index_references, load_carbon_catalogue
    from retrieval.embed import make_text_embedder

    products = load_carbon_catalogue(args.reference)
    with _open_store(args.store) as store:
        written = index_references(store, products, make_text_embedder(args.embedder))
        return {
            "collection": REFERENCE_COLLECTION,
            "products": len(products),
            "written": written,
            "count": store.count(REFERENCE_COLLECTION),
        }


def _model_errors() -> tuple[type[BaseException], ...]:
    """mllm's user-facing errors, only when mllm was loaded (importing it pulls in torch)."""
    backbones = sys.modules.get("mllm.backbones")
    return (backbones.MllmError,) if backbones is not None else ()


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m agents.pcf``."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.pcf",
        description="Product-carbon-footprint estimation: label a catalogue, or evaluate on the Carbon Catalogue.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--reference",
            help="Carbon Catalogue product_level.csv or its folder (default: ../shared/data/carbon_catalogue)",
        )
        sub.add_argument(
            "--embedder",
            default="minilm",
            choices=["minilm", "hashing"],
            help="text embedder: minilm (packaged all-MiniLM-L6-v2) or hashing (fast, tests only)",
        )
        sub.add_argument("--k", type=int, default=5, help="reference neighbours per product (default 5)")
        sub.add_argument(
            "--similarity-threshold",
            type=float,
            default=0.3,
            help="below this best cosine similarity the LLM is skipped for kNN (default 0.3)",
        )
        sub.add_argument(
            "--llm",
            default="none",
            help="none (kNN only, default), default (packaged SmolLM2-135M), a model folder, "
            "a .gguf file, or an OpenAI-compatible URL (http://host:port#model)",
        )
        add_verbosity_args(sub)

    label = verbs.add_parser("label", help="label every item of a catalogue (resumable, exactly once per item)")
    label.add_argument(
        "--catalog",
        required=True,
        help="items file: .jsonl, .csv, .tsv/.text or .parquet. Columns (case-insensitive): id: "
        + "|".join(ID_FIELDS)
        + "; title: "
        + "|".join(TITLE_FIELDS)
        + "; optional category: "
        + "|".join(CATEGORY_FIELDS)
        + ", description: "
        + "|".join(DESCRIPTION_FIELDS)
        + ", brand: "
        + "|".join(BRAND_FIELDS)
        + ", and attribute columns (a number in the unit named, or a number with its unit such as '8 oz'): "
        + columns_help()
        + ". Quantities in the title ('15.6-inch', '500 W', '8 oz', '2-pack') are parsed too; a column wins.",
    )
    label.add_argument(
        "--estimator",
        choices=["hierarchical", "knn"],
        default="hierarchical",
        help="estimate when the LLM does not answer: hierarchical (category prior + neighbour shrinkage, "
        "default) or knn (the neighbours' weighted geometric mean, the old default)",
    )
    label.add_argument(
        "--coverage", type=float, default=0.8, help="coverage of the interval written with each label (default 0.8)"
    )
    label.add_argument("--out", required=True, help="labels JSONL (appended; rejects go to OUT.rejects.jsonl)")
    label.add_argument("--workers", type=int, default=1, help="concurrent LLM calls (for an HTTP endpoint)")
    label.add_argument("--shard", default="0/1", help="i/n: label only shard i of n (stable hash of the item id)")
    label.add_argument(
        "--store", help="store directory or Chroma server URL (default: $RECAGENTS_STORE or ~/.cache/recagents/store)"
    )
    label.add_argument("--batch-size", type=int, default=32, help="items per batch (each batch is fsynced)")
    label.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    common(label)
    label.set_defaults(run=_label)

    evaluation = verbs.add_parser("eval", help="grouped k-fold evaluation over the reference catalogue")
    evaluation.add_argument("--folds", type=int, default=5, help="number of folds, grouped by product (default 5)")
    evaluation.add_argument("--loo", action="store_true", help="leave one product group out instead of k folds")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the fold assignment and the LLM sample")
    evaluation.add_argument(
        "--llm-limit",
        type=int,
        default=100,
        help="held-out products sent to the LLM (seeded sample; 0 = all; default 100)",
    )
    evaluation.add_argument(
        "--with-weight",
        action="store_true",
        help="give the pipeline and the LLM each product's weight (kNN is reported both ways)",
    )
    evaluation.add_argument(
        "--protocols",
        default="grouped_kfold,leave_one_sector_out",
        help="transfer evaluations of the hierarchical estimator beside global / sector / category median and kNN "
        "(held-out products described without their sector): grouped_kfold, leave_one_sector_out, both "
        "(default) or '' for none",
    )
    evaluation.add_argument(
        "--coverage", type=float, default=0.8, help="target coverage of the estimator's intervals (default 0.8)"
    )
    evaluation.add_argument("--out", default="runs/pcf/eval.json", help="JSON result (default runs/pcf/eval.json)")
    common(evaluation)
    evaluation.set_defaults(run=_eval)

    transfer = verbs.add_parser(
        "transfer",
        help="transfer to an unseen catalogue: fit on AGRIBALYSE foods, estimate Poore & Nemecek's 43 foods "
        "(both kg CO2e per kg)",
    )
    transfer.add_argument(
        "--targets", help="Poore & Nemecek Food_Production.csv or its folder (default: ../shared/data/...)"
    )
    transfer.add_argument("--coverage", type=float, default=0.8, help="interval coverage (default 0.8)")
    transfer.add_argument(
        "--out", default="runs/pcf/transfer_food.json", help="JSON result (default runs/pcf/transfer_food.json)"
    )
    transfer.add_argument("--reference", help="AGRIBALYSE agribalyse_synthese.csv or its folder")
    transfer.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"], help="text embedder")
    transfer.add_argument("--k", type=int, default=5, help="reference neighbours per product (default 5)")
    add_verbosity_args(transfer)
    transfer.set_defaults(run=_transfer)

    index = verbs.add_parser("index", help="index the reference catalogue into the store (idempotent)")
    index.add_argument("--store", help="store directory or Chroma server URL")
    common(index)
    index.set_defaults(run=_index)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a bad input prints one line naming the file, line or field and returns 2."""
    args = build_parser().parse_args(argv)
    configure_from_args(args, default=logging.WARNING)
    from retrieval.errors import RetrievalError

    return run_cli(lambda: args.run(args), errors=(PCFError, RetrievalError, *_model_errors()))


if __name__ == "__main__":
    sys.exit(main())
