"""``python -m recsys.carbon sweep --checkpoint DIR [--checkpoint DIR2] --labels LABELS.jsonl --out DIR``.

Re-ranks each checkpoint's top-N candidates by ``(1 - lambda) * rel_norm - lambda * pcf_norm`` over a
lambda grid, and writes ``carbon_sweep.json``, ``carbon_sweep.md`` and ``pareto_<dataset>.png`` to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from core.cli import add_verbosity_args, configure_from_args, run_cli
from recsys.carbon.labels import (
    MISSING_POLICIES,
    UNCERTAINTY_VARIANTS,
    CarbonError,
    labels_for_variant,
    read_id_map,
    read_pcf_records,
)
from recsys.carbon.rerank import PCF_SCALES, lambda_grid
from recsys.carbon.sweep import sweep_checkpoint, write_reports


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m recsys.carbon``."""
    parser = argparse.ArgumentParser(prog="python -m recsys.carbon", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    sweep = verbs.add_parser("sweep", help="lambda sweep, Pareto frontier and headline per checkpoint")
    sweep.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="folder from recsys.train --out (repeat for several models)",
    )
    sweep.add_argument("--labels", required=True, help="JSONL with item_id and pcf_kg per line (agents.pcf label)")
    sweep.add_argument("--out", required=True, help="folder for carbon_sweep.json, carbon_sweep.md, pareto_*.png")
    sweep.add_argument(
        "--missing",
        choices=MISSING_POLICIES,
        default="exclude",
        help="unlabelled items: excluded from candidates (default), given the median PCF, or an error",
    )
    sweep.add_argument(
        "--id-map", help="two-column file label_id -> dataset item id (e.g. Office.item2index when labels use ASINs)"
    )
    sweep.add_argument(
        "--pcf-scale",
        default="minmax",
        help="global PCF normalisation, one or a comma-separated list (or 'all'): minmax (the paper's), log "
        "(min-max of log10) or rank (rank share); each is swept and reported side by side (default minmax)",
    )
    sweep.add_argument(
        "--uncertainty",
        default="none",
        help="uncertainty-aware variants, one or a comma-separated list (or 'all'): none (point estimate), "
        "upper (penalise the label's pcf_high_kg, the interval's upper end), skip_implausible (labels with "
        "plausible=false follow --missing); the carbon reported is always pcf_kg (default none)",
    )
    sweep.add_argument(
        "--candidates", type=int, default=100, help="top-N candidates re-ranked to a top-10 (default 100)"
    )
    sweep.add_argument(
        "--lambdas", help="comma-separated lambdas (must include 0); default: 25 points dense in [0.9, 1]"
    )
    sweep.add_argument(
        "--max-loss", type=float, default=0.05, help="NDCG@10 loss allowed for the headline (default 0.05)"
    )
    sweep.add_argument("--data-dir", help="look for the checkpoint's dataset here first")
    sweep.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sweep.add_argument("--batch-size", type=int, default=1024, help="users scored per batch")
    add_verbosity_args(sweep)
    return parser


def _lambdas(text: str | None) -> list[float]:
    if text is None:
        return lambda_grid()
    try:
        values = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise CarbonError(f"--lambdas: {text!r} is not a comma-separated list of numbers") from None
    if not values or values[0] < 0 or values[-1] > 1 or values[0] != 0.0:
        raise CarbonError(f"--lambdas: need values in [0, 1] including 0, got {text!r}")
    return values


def _choices(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """A comma-separated list of ``allowed`` values ('all' = every one), order kept, duplicates dropped."""
    values = list(allowed) if text.strip() == "all" else list(dict.fromkeys(v.strip() for v in text.split(",")))
    unknown = [v for v in values if v not in allowed]
    if not values or unknown:
        raise CarbonError(f"{option}: {text!r} unknown; use one or more of {', '.join(allowed)} or 'all'")
    return values


def run_sweep(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Run the sweep command and write its reports; returns where they went and the headlines."""
    if args.candidates < 1 or not 0.0 <= args.max_loss < 1.0:
        raise CarbonError("--candidates must be >= 1 and --max-loss in [0, 1)")
    lambdas = _lambdas(args.lambdas)
    scales = _choices(args.pcf_scale, PCF_SCALES, "--pcf-scale")
    variants = _choices(args.uncertainty, UNCERTAINTY_VARIANTS, "--uncertainty")
    records = read_pcf_records(args.labels)
    id_map = read_id_map(args.id_map) if args.id_map else None
    started = time.perf_counter()
    results = [
        sweep_checkpoint(
            checkpoint,
            labels_for_variant(records, variant)[0],
            lambdas,
            missing=args.missing,
            id_map=id_map,
            n_candidates=args.candidates,
            pcf_scale=pcf_scale,
            max_loss=args.max_loss,
            data_dir=args.data_dir,
            device=args.device,
            batch_size=args.batch_size,
            progress=not args.quiet,
            labels_source=str(args.labels),
            penalty=labels_for_variant(records, variant)[1] if variant == "upper" else None,
            variant=variant,
        )
        for checkpoint in args.checkpoint
        for pcf_scale in scales
        for variant in variants
    ]
    from core.provenance import environment

    meta = {
        "command": "python -m recsys.carbon " + " ".join(argv if argv is not None else sys.argv[1:]),
        "labels_file": str(args.labels),
        "id_map": args.id_map,
        "score": "(1 - lambda) * minmax_per_user(relevance over candidates) - lambda * pcf_norm",
        "pcf_scales": scales,
        "uncertainty_variants": variants,
        "missing_policy": args.missing,
        "n_candidates": args.candidates,
        "top_k": 10,
        "lambdas": lambdas,
        "evaluation": "full ranking: train and valid items masked before the top-N, pessimistic ties",
        "seconds": time.perf_counter() - started,
        "environment": environment(),
    }
    return write_reports(results, args.out, meta)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: JSON summary on stdout; one clear line and exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    return run_cli(lambda: run_sweep(args, argv))


if __name__ == "__main__":
    sys.exit(main())
