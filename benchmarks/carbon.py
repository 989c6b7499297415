"""Carbon-aware recommendation benchmark: PCF estimation error, labelling throughput, Pareto frontiers.

One script runs the whole used-by chain through the toolkit's own command lines (so every step can be re-run
by hand with the command recorded in the JSON):

1. ``python -m agents.pcf eval``: grouped k-fold estimation error on the Carbon Catalogue (sector median,
   kNN, kNN scaled by weight; with ``--llm``: the few-shot LLM alone and the full pipeline on a seeded
   sample of held-out products).
2. ``python -m agents.pcf label``: labels a real product catalogue (Amazon Office titles by default) with the
   kNN path, and a small slice of it with the LLM path, timing items per second for each.
3. ``python -m recsys.train``: BPR, NeuMF and LightGCN on that category's interactions.
4. ``python -m recsys.carbon sweep``: lambda re-ranking of each model's top-100 to a top-10, Pareto
   frontiers, the headline 'carbon reduction at <= 5% NDCG@10 loss' and the frontier PNG.

Each step is skipped when its output exists in ``--work-dir`` (delete it, or pass ``--fresh``, to redo).
Example (the README's numbers)::

    python benchmarks/carbon.py --llm default --llm-limit 40 --llm-label-items 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.cli import add_verbosity_args, configure_from_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, print_table, write_results

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ESTIMATION_METHODS = ("sector_median", "knn", "knn_weight", "llm_few_shot", "pipeline")
# The seed paper's public code (771 consumer-scale hold-out products, Qwen2.5-3B few-shot); another protocol.
PAPER_ANCHORS = [
    {"method": "paper: neighbour average", "spearman": 0.728, "median_abs_error_kg": 123.3},
    {"method": "paper: few-shot Qwen2.5-3B", "spearman": 0.518, "median_abs_error_kg": 58.6},
]


def run(command: list[str], log: Path) -> float:
    """Run one toolkit command, teeing its output to ``log``; returns its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"command failed (exit {done.returncode}), see {log}:\n{tail}")
    return seconds


def count_lines(path: Path) -> int:
    """Non-empty lines of a text file (0 when missing)."""
    if not path.is_file():
        return 0
    with path.open() as handle:
        return sum(1 for line in handle if line.strip())


def estimation(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Step 1: grouped k-fold estimation error (all products; LLM methods on a seeded sample)."""
    out = work / "pcf_eval.json"
    if not out.is_file():
        command = [sys.executable, "-m", "agents.pcf", "eval", "--folds", str(args.folds), "--out", str(out)]
        command += ["--llm", args.llm, "--llm-limit", str(args.llm_limit)]
        if args.reference:
            command += ["--reference", args.reference]
        run(command, work / "pcf_eval.log")
    result = json.loads(out.read_text())
    rows = []
    for part in ("all", "llm_subset"):
        for method, m in result.get(part, {}).get("overall", {}).items():
            rows.append({"products": part, "method": method, **{k: m[k] for k in m}})
    return {"result_file": str(out), "llm": result.get("llm"), "rows": rows, "raw": result}


def labelling(args: argparse.Namespace, work: Path, catalog: Path) -> dict[str, Any]:
    """Step 2: label the catalogue with kNN (all items) and the LLM (a slice); items per second for each."""
    label_cmd = [sys.executable, "-m", "agents.pcf", "label"]
    common = ["--store", str(work / "store"), "--no-progress"]
    if args.reference:
        common += ["--reference", args.reference]
    knn_labels = work / "labels_knn.jsonl"
    timing_file = work / "labelling_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    if "knn" not in timing:
        seconds = run(
            # the README's kNN labels; benchmarks/carbon_scaling.py runs the hierarchical estimator
            [
                *label_cmd,
                "--catalog",
                str(catalog),
                "--out",
                str(knn_labels),
                *common,
                "--llm",
                "none",
                "--estimator",
                "knn",
            ],
            work / "label_knn.log",
        )
        timing["knn"] = {"items": count_lines(knn_labels), "seconds": seconds}
    if args.llm != "none" and args.llm_label_items > 0 and "llm" not in timing:
        lines = catalog.read_text().splitlines()
        sliced = work / f"catalog_first_{args.llm_label_items}{catalog.suffix}"
        sliced.write_text("\n".join(lines[: args.llm_label_items + 1]) + "\n")  # header + N items
        llm_labels = work / "labels_llm.jsonl"
        llm_options = ["--llm", args.llm, "--workers", str(args.workers)]
        llm_labels.unlink(missing_ok=True)
        seconds = run(
            [*label_cmd, "--catalog", str(sliced), "--out", str(llm_labels), *common, *llm_options],
            work / "label_llm.log",
        )
        methods: dict[str, int] = {}
        for line in llm_labels.read_text().splitlines():
            if line.strip():
                method = json.loads(line).get("method", "?")
                methods[method] = methods.get(method, 0) + 1
        timing["llm"] = {"items": count_lines(llm_labels), "seconds": seconds, "methods": methods, "model": args.llm}
    timing_file.write_text(json.dumps(timing, indent=2))
    rows = []
    for path, t in timing.items():
        # wall time includes process start and loading the embedder (and the LLM): a floor on items/s
        rows.append(
            {"path": path, "items": t["items"], "seconds": t["seconds"], "items_per_s": t["items"] / t["seconds"]}
        )
    return {"labels": str(knn_labels), "timing": timing, "rows": rows}


def training(args: argparse.Namespace, work: Path) -> dict[str, str]:
    """Step 3: one checkpoint per model on the category's interactions (skipped when it exists)."""
    checkpoints = {}
    for model in args.models:
        out = work / f"ckpt_{model}"
        if not (out / "model.safetensors").is_file():
            command = [sys.executable, "-m", "recsys.train", "--model", model, "--dataset", args.dataset]
            command += ["--split", args.split, "--seed", str(args.seed), "--out", str(out)]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            epochs = args.model_epochs.get(model, args.epochs)
            if epochs:
                command += ["--epochs", str(epochs)]
            run(command, work / f"train_{model}.log")
        checkpoints[model] = str(out)
    return checkpoints


def sweep(args: argparse.Namespace, work: Path, checkpoints: dict[str, str], labels: str) -> dict[str, Any]:
    """Step 4: lambda sweep, Pareto frontier, headline and PNG over every checkpoint."""
    out = work / "sweep"
    command = [sys.executable, "-m", "recsys.carbon", "sweep", "--labels", labels, "--out", str(out), "--quiet"]
    for path in checkpoints.values():
        command += ["--checkpoint", path]
    if args.id_map:
        command += ["--id-map", args.id_map]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    command += ["--pcf-scale", args.pcf_scale]
    run(command, work / "sweep.log")
    report = json.loads((out / "carbon_sweep.json").read_text())
    rows = []
    for res in report["results"]:
        h = res["headline"]
        rows.append(
            {
                "model": res["label"],
                "ndcg@10 (lambda 0)": h["baseline_ndcg@10"],
                "lambda": h["lambda"],
                "ndcg loss %": h["ndcg_loss_pct"],
                "carbon reduction %": h["carbon_reduction_pct"],
                "pareto points": sum(1 for r in res["rows"] if r["pareto"]),
            }
        )
    return {"report": str(out / "carbon_sweep.json"), "plots": report["plots"], "rows": rows, "raw": report}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of this benchmark."""
    office = DEFAULT_DATA / "amazon_office_rechorus"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbosity_args(parser)
    parser.add_argument("--dataset", default="amazon_office_rechorus", help="interactions (name or path)")
    parser.add_argument("--split", default="given", help="split protocol for training (default: the files' own)")
    parser.add_argument("--catalog", default=str(office / "Office.text"), help="item titles to label")
    parser.add_argument("--id-map", default=str(office / "Office.item2index"), help="label id -> dataset item id")
    parser.add_argument("--reference", help="Carbon Catalogue file or folder (default: ../shared/data)")
    parser.add_argument("--data-dir", help="dataset root for recsys.train / recsys.carbon")
    parser.add_argument("--models", type=lambda s: s.split(","), default=["bpr", "neumf", "lightgcn"])
    parser.add_argument("--epochs", type=int, default=0, help="epoch cap per model (0: the model's default)")
    parser.add_argument(
        "--model-epochs",
        type=lambda s: {k: int(v) for k, v in (pair.split("=") for pair in s.split(","))},
        default={},
        help="per-model epoch caps, e.g. neumf=20 (overrides --epochs for those models)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="grouped folds of the estimation step")
    parser.add_argument("--llm", default="none", help="none, default (packaged SmolLM2-135M), folder or URL")
    parser.add_argument("--llm-limit", type=int, default=40, help="held-out products sent to the LLM in step 1")
    parser.add_argument("--llm-label-items", type=int, default=20, help="catalogue items labelled by the LLM")
    parser.add_argument("--workers", type=int, default=1, help="concurrent LLM calls when labelling")
    parser.add_argument("--pcf-scale", default="minmax", choices=["minmax", "log"])
    parser.add_argument("--work-dir", default="runs/carbon_bench", help="intermediate files (resumable)")
    parser.add_argument("--fresh", action="store_true", help="delete --work-dir first")
    parser.add_argument("--out", help="result JSON (default benchmarks/results/carbon_<dataset>.json)")
    parser.add_argument("--plot", help="copy the frontier PNG here (default benchmarks/results/carbon_<dataset>.png)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the four steps, print the tables and write the JSON."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    work = Path(args.work_dir)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    catalog = Path(args.catalog)
    if not catalog.is_file():
        raise SystemExit(f"--catalog {catalog}: not a file")
    name = Path(args.dataset).name

    est = estimation(args, work)
    lab = labelling(args, work, catalog)
    checkpoints = training(args, work)
    swp = sweep(args, work, checkpoints, lab["labels"])

    metric_columns = ["products", "method", "n", "median_abs_log10_error", "within_factor_2", "spearman"]
    print_table(est["rows"], [*metric_columns, "median_abs_error_kg"], title=f"PCF estimation (llm={est['llm']})")
    print_table(PAPER_ANCHORS, ["method", "spearman", "median_abs_error_kg"], title="seed paper anchors")
    print_table(lab["rows"], ["path", "items", "seconds", "items_per_s"], title="labelling throughput")
    print_table(swp["rows"], list(swp["rows"][0]), title=f"carbon-aware re-ranking on {name}")

    plot = Path(args.plot) if args.plot else RESULTS_DIR / f"carbon_{name}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    if swp["plots"]:
        shutil.copyfile(swp["plots"][0], plot)
    payload = {
        "dataset": args.dataset,
        "catalog": str(catalog),
        "estimation": {k: est[k] for k in ("llm", "rows")},
        "estimation_anchors": PAPER_ANCHORS,
        "labelling": {k: lab[k] for k in ("timing", "rows")},
        "sweep": {"rows": swp["rows"], "full": swp["raw"]},
        "plot": str(plot),
    }
    path = write_results(f"carbon_{name}", payload, args.out)
    print(f"wrote {path} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
