"""DFPL robustness benchmark: accuracy and macro-F1 under missing image / table / mixed inputs.

    python benchmarks/dfpl.py run --dataset synthetic --seeds 0 1 2
    python benchmarks/dfpl.py run --dataset houses --folds 0 1 2 3 4
    python benchmarks/dfpl.py run --dataset fashion --seeds 0 1 2
    python benchmarks/dfpl.py run --dataset houses --repeat 1 --folds 0 1 2 3 4 --part repeat1
    python benchmarks/dfpl.py run --dataset fashion6k --seeds 0 1 2     # the whole cached 6,000 / 2,000 pool
    python benchmarks/dfpl.py finetune --seeds 0 --methods dfpl early_concat image_only
    python benchmarks/dfpl.py report          # tables + docs/dfpl_missing_rate.png

Two protocols per (pattern, rate): "test" = trained on complete data, the share ``rate`` of test samples
loses the ``pattern`` modality; "train+test" = the same share is missing at training and at test time (each
from its own seeded mask). Every completed training is written at once to
``benchmarks/results/dfpl_<dataset>.json`` (atomic), so a restarted run skips what is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, print_table, write_results
from mllm.dfpl.__main__ import model_for
from mllm.dfpl.data import MultimodalData, missing_masks
from mllm.dfpl.datasets import DataSpec, load_split
from mllm.dfpl.models import ModelConfig
from mllm.dfpl.train import TrainConfig, evaluate, predict, scores, train_model

METHODS = (
    "dfpl",
    "dfpl_no_sspm",
    "dfpl_no_pfa",
    "dfpl_no_cma",
    "shaspec",
    "early_concat",
    "late_fusion",
    "image_only",
    "table_only",
)
PATTERNS = ("image", "table", "mixed")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULTS = {
    "synthetic": {"epochs": 15, "batch_size": 64},
    "houses": {"epochs": 30, "batch_size": 64},
    "fashion": {"epochs": 12, "batch_size": 128},
    "fashion6k": {"epochs": 12, "batch_size": 128},
    "fashion60k": {"epochs": 3, "batch_size": 256},
}
PLOT = Path(__file__).resolve().parents[1] / "docs" / "dfpl_missing_rate.png"


def spec_for(dataset: str, replicate: int, repeat: int = 0) -> DataSpec:
    """The data spec of one replicate: a seed (synthetic, fashion) or a fold of the ``repeat``-th 5-fold split
    (houses). ``fashion`` = 150 / 100 images per class, ``fashion6k`` = the whole cached pool, 600 / 200,
    ``fashion60k`` = all 60,000 / 10,000 items."""
    if dataset == "houses":
        return DataSpec(name="houses", path=str(SHARED / "houses_ahmed2016"), fold=replicate, folds=5, repeat=repeat)
    if dataset == "fashion60k":
        return DataSpec(name="fashion", path=str(SHARED / "fashion_mnist"), split_seed=replicate, full=True)
    if dataset in ("fashion", "fashion6k"):
        full = dataset == "fashion6k"
        return DataSpec(
            name="fashion",
            path=str(SHARED / "fashion_mnist"),
            split_seed=replicate,
            train_per_class=600 if full else 150,
            test_per_class=200 if full else 100,
        )
    return DataSpec(name="synthetic", synthetic_n=800, split_seed=replicate)


def constant_rows(train: MultimodalData, test: MultimodalData) -> dict[str, float]:
    """The sceptic's baseline: always the most frequent training class."""
    majority = np.bincount(train.labels, minlength=train.num_classes).argmax()
    logits = np.zeros((len(test), train.num_classes))
    logits[:, majority] = 1.0
    return scores(test.labels, logits)


def run(args: argparse.Namespace) -> None:
    """Train every method for every replicate and (pattern, rate); append each result as it lands."""
    name = f"dfpl_{args.dataset}" + (f"_{args.part}" if args.part else "")
    path = RESULTS_DIR / f"{name}.json"
    records = json.loads(path.read_text())["records"] if path.is_file() and not args.fresh else []
    done = {(r["method"], r.get("repeat", 0), r["replicate"], r["train_pattern"], r["train_rate"]) for r in records}
    rates = [r for r in args.rates if r > 0]
    train_settings = [] if args.skip_complete else [("none", 0.0)]
    train_settings += [(p, r) for p in args.train_patterns for r in rates]
    defaults = DEFAULTS[args.dataset]
    loaded: dict[int, tuple[MultimodalData, MultimodalData]] = {}

    def split_of(replicate: int) -> tuple[MultimodalData, MultimodalData]:
        """One replicate's split, loaded on first use; only the latest is kept (fashion60k: 0.7 GB each)."""
        if replicate not in loaded:
            loaded.clear()
            loaded[replicate] = load_split(spec_for(args.dataset, replicate, args.repeat))
        return loaded[replicate]

    # setting-major order: a run cut short still has every replicate of the settings it finished
    for train_pattern, train_rate in train_settings:
        for replicate in args.replicates:
            for method in args.methods:
                key = (method, args.repeat, replicate, train_pattern, train_rate)
                if key in done:
                    continue
                train, test = split_of(replicate)
                config = TrainConfig(
                    epochs=args.epochs or defaults["epochs"],
                    batch_size=defaults["batch_size"],
                    seed=replicate,
                    train_missing_rate=train_rate,
                    train_missing_pattern=train_pattern,
                )
                model_name, model_config = model_for(method, ModelConfig())
                start = time.process_time()
                model = train_model(model_name, train, model_config, config)
                seconds = time.process_time() - start
                tests = [("none", 0.0)] + [(p, r) for p in PATTERNS for r in rates]
                if train_pattern != "none":
                    tests = [(train_pattern, train_rate)]
                for test_pattern, test_rate in tests:
                    metrics = evaluate(model, test, test_rate, test_pattern, seed=1000 + replicate)
                    records.append(
                        {
                            "method": method,
                            "repeat": args.repeat,
                            "replicate": replicate,
                            "train_pattern": train_pattern,
                            "train_rate": train_rate,
                            "test_pattern": test_pattern,
                            "test_rate": test_rate,
                            **metrics,
                            "train_cpu_seconds": round(seconds, 2),
                        }
                    )
                done.add(key)
                logging.info("%s %s rep %d train %s@%.1f: %.1f s", args.dataset, method, replicate, train_pattern,
                             train_rate, seconds)  # fmt: skip
                payload = {
                    "dataset": args.dataset,
                    "protocol": "test: complete training, seeded missing test inputs; train+test: same rate missing "
                    "in training (mask seed = replicate) and test (mask seed = 1000 + replicate)",
                    "replicates": "houses: folds of the 5-fold stratified split number `repeat` (its shuffling "
                    "seed); others: seeds",
                    "train_config": dataclasses.asdict(config) | {"seed": "replicate"},
                    "model_config": dataclasses.asdict(ModelConfig()),
                    "constant": {_constant_key(args.repeat, replicate): constant_rows(train, test)}
                    | (json.loads(path.read_text()).get("constant", {}) if path.is_file() else {}),
                    "records": records,
                }
                write_results(name, payload)


def _constant_key(repeat: int, replicate: int) -> str:
    return str(replicate) if repeat == 0 else f"{repeat}/{replicate}"


def _table(records: list[dict], protocol: str, metric: str, methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        row = {"method": method}
        for pattern in PATTERNS:
            for rate in (0.0, 0.3, 0.5, 0.7):
                if protocol == "test" or rate == 0.0:
                    test_pattern = "none" if rate == 0 else pattern
                    chosen = [r for r in records if r["method"] == method and r["train_pattern"] == "none"
                              and r["test_pattern"] == test_pattern and r["test_rate"] == rate]  # fmt: skip
                else:
                    chosen = [r for r in records if r["method"] == method and r["train_pattern"] == pattern
                              and r["train_rate"] == rate]  # fmt: skip
                if chosen and (rate > 0 or pattern == "image"):
                    values = [r[metric] for r in chosen]
                    label = "complete" if rate == 0 else f"{pattern[:3]}@{rate}"
                    row[label] = f"{100 * np.mean(values):.1f}±{100 * np.std(values):.1f}"
                    row["n"] = min(row.get("n", len(values)), len(values))
        rows.append(row)
    return rows


KEY_FIELDS = ("repeat", "method", "replicate", "train_pattern", "train_rate", "test_pattern", "test_rate")


def merged(dataset: str) -> tuple[dict, list[dict]]:
    """The main result file of a dataset and the records of it and its parts, de-duplicated (first kept)."""
    payload = json.loads((RESULTS_DIR / f"dfpl_{dataset}.json").read_text())
    records, seen = [], set()
    for path in [RESULTS_DIR / f"dfpl_{dataset}.json", *sorted(RESULTS_DIR.glob(f"dfpl_{dataset}_*.json"))]:
        part = json.loads(path.read_text())
        payload["constant"] = part.get("constant", {}) | payload.get("constant", {})
        for record in part["records"]:
            record.setdefault("repeat", 0)
            key = tuple(record[k] for k in KEY_FIELDS)
            if key not in seen:
                seen.add(key)
                records.append(record)
    return payload, records


def report(args: argparse.Namespace) -> None:
    """Print the robustness tables of every dataset run so far and draw accuracy against missing rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in (*DEFAULTS,) if (RESULTS_DIR / f"dfpl_{d}.json").is_file()]
    markdown: list[str] = []
    panels = (("image", "test"), ("table", "test"), ("mixed", "test"), ("image", "train+test"),
              ("table", "train+test"), ("mixed", "train+test"))  # fmt: skip
    plotted = [d for d in datasets if d != "fashion6k"]  # fashion6k has rates 0 and 0.7 only: tables, no curve
    fig, axes = plt.subplots(len(plotted), len(panels), figsize=(19, 2.9 * len(plotted)), squeeze=False)
    for dataset in datasets:
        payload, every_repeat = merged(dataset)
        records = [r for r in every_repeat if r["repeat"] == 0]  # the full grid: one 5-fold split (houses)
        methods = [m for m in METHODS if any(r["method"] == m for r in records)]
        if any(r["repeat"] for r in every_repeat):
            for metric in ("accuracy", "macro_f1"):
                rows = _repeat_table(every_repeat, metric, methods)
                columns = ["method", *REPEAT_COLUMNS, "n"]
                title = f"{dataset}: {metric} (%), every repeat of the 5-fold split"
                markdown.append(_markdown(rows, columns, title))
                print_table(rows, columns, title="\n" + title)
        constant = np.mean([v["accuracy"] for v in payload["constant"].values()])
        trained_missing = any(r["train_pattern"] != "none" for r in records)
        for protocol in ("test", "train+test") if trained_missing else ("test",):
            for metric in ("accuracy", "macro_f1"):
                rows = _table(records, protocol, metric, methods)
                columns = [
                    "method",
                    *sorted({c for r in rows for c in r if c not in ("method", "n")}, key=_column_order),
                ]
                columns.append("n")
                markdown.append(_markdown(rows, columns, f"{dataset}: {metric} (%), missing at {protocol}"))
                print_table(rows, columns, title=f"\n{dataset}: {metric}, missing at {protocol} (constant acc "
                            f"{100 * constant:.1f})")  # fmt: skip
        for j, (pattern, protocol) in enumerate(panels if dataset in plotted else ()):
            ax = axes[plotted.index(dataset)][j]
            for method in methods if protocol == "test" or trained_missing else ():
                xs, ys = [], []
                for rate in (0.0, 0.3, 0.5, 0.7):
                    complete = [r for r in records if r["method"] == method and r["train_pattern"] == "none"]
                    if rate == 0.0:
                        chosen = [r for r in complete if r["test_pattern"] == "none"]
                    elif protocol == "test":
                        chosen = [r for r in complete if r["test_pattern"] == pattern and r["test_rate"] == rate]
                    else:
                        chosen = [r for r in records if r["method"] == method and r["train_pattern"] == pattern
                                  and r["train_rate"] == rate]  # fmt: skip
                    if chosen:
                        xs.append(rate)
                        ys.append(100 * np.mean([r["accuracy"] for r in chosen]))
                style = "-o" if method == "dfpl" else ("--" if method.startswith("dfpl") else ":")
                ax.plot(xs, ys, style, label=method, linewidth=2.2 if method == "dfpl" else 1.2, markersize=3)
            if not ax.lines:  # e.g. fashion60k: trained on complete data only, no train+test curves
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.axhline(100 * constant, color="grey", linewidth=0.8)
            ax.set_title(f"{dataset}: {pattern} missing at {protocol}", fontsize=9)
            ax.set_xlim(-0.03, 0.73)
            ax.set_xlabel("missing rate", fontsize=8)
            ax.set_ylabel("accuracy %", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=70)
    print(f"\nplot: {PLOT} ({PLOT.stat().st_size // 1024} KB)")
    if args.markdown:
        Path(args.markdown).write_text("\n".join(markdown))
        print(f"markdown tables: {args.markdown}")


REPEAT_COLUMNS = ("complete", "test mix@0.7", "train+test mix@0.7")


def _repeat_table(records: list[dict], metric: str, methods: list[str]) -> list[dict]:
    """Complete inputs and 70% mixed missingness (test only / train and test) over every (repeat, fold)."""
    rows = []
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        cells = {
            "complete": [r for r in mine if r["train_pattern"] == "none" and r["test_pattern"] == "none"],
            "test mix@0.7": [
                r
                for r in mine
                if r["train_pattern"] == "none" and r["test_pattern"] == "mixed" and r["test_rate"] == 0.7
            ],
            "train+test mix@0.7": [r for r in mine if r["train_pattern"] == "mixed" and r["train_rate"] == 0.7],
        }
        row = {"method": method}
        for column, chosen in cells.items():
            if chosen:
                values = [r[metric] for r in chosen]
                row[column] = f"{100 * np.mean(values):.1f}±{100 * np.std(values):.1f}"
                row["n"] = min(row.get("n", len(values)), len(values))
        rows.append(row)
    return rows


def finetune(args: argparse.Namespace) -> None:
    """EfficientNet-lite0 fine-tuned on pixels vs frozen cached features, same Fashion-MNIST items and seeds."""
    path = RESULTS_DIR / "dfpl_finetune.json"
    records = json.loads(path.read_text())["records"] if path.is_file() and not args.fresh else []
    done = {(r["method"], r["replicate"], r["finetune"]) for r in records}
    for seed in args.replicates:
        for tuned in (False, True):
            spec = dataclasses.replace(
                spec_for("fashion", seed), train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                pixels=tuned,
            )  # fmt: skip
            train, test = load_split(spec)
            for method in args.methods:
                if (method, seed, tuned) in done:
                    continue
                config = TrainConfig(epochs=args.epochs, batch_size=64, seed=seed)
                model_name, model_config = model_for(method, ModelConfig(finetune_image=tuned, image_grid=2))
                start = time.process_time()
                model = train_model(model_name, train, model_config, config)
                seconds = time.process_time() - start
                for test_pattern, test_rate in (("none", 0.0), ("mixed", 0.7), ("table", 0.7)):
                    metrics = evaluate(model, test, test_rate, test_pattern, seed=1000 + seed)
                    record = {"method": method, "replicate": seed, "finetune": tuned, "test_pattern": test_pattern}
                    records.append(record | {"test_rate": test_rate, **metrics, "train_cpu_seconds": round(seconds, 2)})
                done.add((method, seed, tuned))
                logging.info("finetune=%s %s seed %d: %.1f s", tuned, method, seed, seconds)
                write_results("dfpl_finetune", {
                    "dataset": f"fashion (semi-synthetic), {args.train_per_class} / {args.test_per_class} images per "
                    "class (train / test) at 64 px, 2x2 region tokens",
                    "protocol": "trained on complete data; tested complete, with 70% mixed missing, and with 70% of "
                    "tables missing (mask seed 1000 + seed); frozen = cached features of the same items",
                    "train_config": dataclasses.asdict(config) | {"seed": "replicate"},
                    "model_config": dataclasses.asdict(ModelConfig(image_grid=2)) | {"finetune_image": "per record"},
                    "records": records,
                })  # fmt: skip
    rows = []
    for method in args.methods:
        for tuned in (False, True):
            row = {"method": method, "image encoder": "fine-tuned" if tuned else "frozen"}
            for test_pattern, label in (("none", "complete"), ("mixed", "mix@0.7"), ("table", "tab@0.7")):
                chosen = [r for r in records if r["method"] == method and r["finetune"] == tuned
                          and r["test_pattern"] == test_pattern]  # fmt: skip
                if chosen:
                    values = [100 * r["accuracy"] for r in chosen]
                    row[label] = f"{np.mean(values):.1f}±{np.std(values):.1f}"
                    row["cpu s"] = round(float(np.mean([r["train_cpu_seconds"] for r in chosen])), 1)
                    row["n"] = len(chosen)
            rows.append(row)
    print_table(rows, ["method", "image encoder", "complete", "mix@0.7", "tab@0.7", "cpu s", "n"],
                title="fine-tuned vs frozen EfficientNet-lite0: accuracy %")  # fmt: skip


CMA_VARIANTS = {
    "dfpl": {},
    "dfpl_no_cma": {"cma": False},
    "dfpl, cma_weight 0 (aggregation kept, its loss off)": {"cma_weight": 0.0},
    "dfpl, dropout 0.3": {"dropout": 0.3},
}


def cmacheck(args: argparse.Namespace) -> None:
    """Is DFPL's gap to its no-CMA ablation on Houses a bug or overfitting? Train and test accuracy per variant."""
    records = []
    for fold in args.replicates:
        train, test = load_split(spec_for("houses", fold))
        for label, override in CMA_VARIANTS.items():
            config = TrainConfig(
                epochs=DEFAULTS["houses"]["epochs"], batch_size=DEFAULTS["houses"]["batch_size"], seed=fold
            )
            model = train_model("dfpl", train, dataclasses.replace(ModelConfig(), **override), config)
            accuracy = {part: evaluate(model, data, 0.0, "none", 0)["accuracy"] for part, data in (("train", train),
                        ("test", test))}  # fmt: skip
            records.append({"variant": label, "fold": fold, **{f"{k}_accuracy": v for k, v in accuracy.items()}})
    write_results("dfpl_cma_check", {"dataset": "houses, repeat 0", "protocol": "complete inputs", "records": records})
    rows = [{"variant": label, **{k: f"{100 * np.mean([r[k] for r in records if r['variant'] == label]):.1f}"
             for k in ("train_accuracy", "test_accuracy")}} for label in CMA_VARIANTS]  # fmt: skip
    print_table(
        rows, ["variant", "train_accuracy", "test_accuracy"], title=f"CMA check, Houses folds {args.replicates}"
    )


CHECK_VARIANTS = {
    "dfpl (defaults: sspm 0.1, pfa 0.1, cma 0.5)": ("dfpl", {}),
    "dfpl, sspm_weight 0.01": ("dfpl", {"sspm_weight": 0.01}),
    "dfpl, sspm_weight 1.0": ("dfpl", {"sspm_weight": 1.0}),
    "dfpl, pfa_weight 0.01": ("dfpl", {"pfa_weight": 0.01}),
    "dfpl, pfa_weight 1.0": ("dfpl", {"pfa_weight": 1.0}),
    "dfpl, cma_weight 0.1": ("dfpl", {"cma_weight": 0.1}),
    "dfpl, cma_weight 2.0": ("dfpl", {"cma_weight": 2.0}),
    "dfpl_no_cma": ("dfpl", {"cma": False}),
    "early_concat": ("early_concat", {}),
}


def validation_split(train: MultimodalData, per_class: tuple[int, int], seed: int) -> tuple[MultimodalData, ...]:
    """Disjoint (fit, validation) subsets of a training split, ``per_class`` items of each class each (seeded)."""
    rng = np.random.default_rng(seed)
    fit_rows, val_rows = [], []
    for c in range(train.num_classes):
        rows = rng.permutation(np.flatnonzero(train.labels == c))
        fit_rows.append(rows[: per_class[0]])
        val_rows.append(rows[per_class[0] : per_class[0] + per_class[1]])
    return train.subset(np.sort(np.concatenate(fit_rows))), train.subset(np.sort(np.concatenate(val_rows)))


def dfplcheck(args: argparse.Namespace) -> None:
    """Is DFPL's gap to early concatenation a bug? Loss weights and heads, on validation items only."""
    train, _ = load_split(spec_for("fashion60k", 0))  # the test split is never loaded into a decision
    fit_data, val = validation_split(train, (args.fit_per_class, args.val_per_class), seed=0)
    n = len(val)
    masks = {
        "complete": (np.ones(n, bool), np.ones(n, bool)),
        "mixed 0.7": missing_masks(n, 0.7, "mixed", seed=1000),
        "image only": (np.ones(n, bool), np.zeros(n, bool)),
        "table only": (np.zeros(n, bool), np.ones(n, bool)),
    }
    records = []
    for label, (method, override) in CHECK_VARIANTS.items():
        config = TrainConfig(epochs=DEFAULTS["fashion6k"]["epochs"], batch_size=DEFAULTS["fashion6k"]["batch_size"])
        start = time.process_time()
        model = train_model(method, fit_data, dataclasses.replace(ModelConfig(), **override), config)
        record = {"variant": label, "train_cpu_seconds": round(time.process_time() - start, 2)}
        for name, (mv, mt) in masks.items():
            record[name] = scores(val.labels, predict(model, val, mv, mt))["accuracy"]
        if method == "dfpl" and override.get("cma", True):
            for head in ("global_logits", "prototype_logits"):
                record[f"complete, {head} only"] = scores(val.labels, predict(model, val, *masks["complete"],
                                                          output=head))["accuracy"]  # fmt: skip
            one = predict(model, val.subset(np.arange(64)), np.ones(64, bool), np.ones(64, bool), batch_size=1)
            many = predict(model, val, *masks["complete"])[:64]
            record["batch_1_vs_512_max_logit_diff"] = float(np.abs(one - many).max())
        records.append(record)
        logging.info("%s: %s", label, record)
    write_results(
        "dfpl_check",
        {
            "dataset": f"fashion60k seed 0: {args.fit_per_class} / {args.val_per_class} items per class of the "
            "official training split (fit / validation); the test split is not used",
            "train_config": {
                "epochs": DEFAULTS["fashion6k"]["epochs"],
                "batch_size": DEFAULTS["fashion6k"]["batch_size"],
            },
            "records": records,
        },
    )
    columns = ["variant", *masks, "complete, global_logits only", "complete, prototype_logits only"]
    rows = [{k: (f"{100 * v:.1f}" if isinstance(v, float) else v) for k, v in r.items()} for r in records]
    print_table(rows, columns, title="DFPL check: validation accuracy (%)")


def _markdown(rows: list[dict], columns: list[str], title: str) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _column_order(column: str) -> tuple[int, str]:
    return (
        (0, column)
        if column == "complete"
        else (1 + PATTERNS.index({"ima": "image", "tab": "table", "mix": "mixed"}[column[:3]]), column)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run_parser = sub.add_parser("run", help="train and evaluate; results go to benchmarks/results/dfpl_<dataset>.json")
    run_parser.add_argument("--dataset", choices=sorted(DEFAULTS), required=True)
    run_parser.add_argument("--replicates", "--seeds", "--folds", type=int, nargs="+", default=[0, 1, 2])
    run_parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    run_parser.add_argument("--rates", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    run_parser.add_argument("--train-patterns", nargs="*", choices=PATTERNS, default=list(PATTERNS))
    run_parser.add_argument("--epochs", type=int, default=None)
    run_parser.add_argument("--fresh", action="store_true", help="ignore earlier results of this dataset")
    run_parser.add_argument("--part", default="", help="write dfpl_<dataset>_<part>.json (a second process)")
    run_parser.add_argument("--skip-complete", action="store_true", help="no complete-data training setting")
    run_parser.add_argument("--repeat", type=int, default=0, help="houses: which repetition of the 5-fold split")
    dfpl_check = sub.add_parser("dfplcheck", help="DFPL loss weights and heads vs early concat, validation only")
    dfpl_check.add_argument("--fit-per-class", type=int, default=600)
    dfpl_check.add_argument("--val-per-class", type=int, default=200)
    check_parser = sub.add_parser("cmacheck", help="DFPL with / without CMA on Houses: train vs test accuracy")
    check_parser.add_argument("--replicates", "--folds", type=int, nargs="+", default=[0])
    tune_parser = sub.add_parser("finetune", help="fine-tuned vs frozen EfficientNet-lite0 on a Fashion subsample")
    tune_parser.add_argument("--replicates", "--seeds", type=int, nargs="+", default=[0])
    tune_parser.add_argument("--methods", nargs="+", choices=METHODS, default=["dfpl", "image_only"])
    tune_parser.add_argument("--train-per-class", type=int, default=60)
    tune_parser.add_argument("--test-per-class", type=int, default=40)
    tune_parser.add_argument("--epochs", type=int, default=6)
    tune_parser.add_argument("--fresh", action="store_true", help="ignore earlier fine-tuning results")
    report_parser = sub.add_parser("report", help="print the tables and draw docs/dfpl_missing_rate.png")
    report_parser.add_argument("--markdown", default="", help="also write the tables as markdown to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    {"run": run, "report": report, "finetune": finetune, "cmacheck": cmacheck, "dfplcheck": dfplcheck}[args.verb](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
