"""DINOSAUR benchmarks: coverage-recall per S on real data (``quality``) and index cost at scale (``scale``).

    python benchmarks/dinosaur.py quality --dataset ml-1m --split random --seeds 0,1,2
    python benchmarks/dinosaur.py scale --items 1000000 --samples 5 --dim 64
    python benchmarks/dinosaur.py plot --results benchmarks/results/dinosaur_ml-1m.json

``quality`` trains iALS through the Trainer (one checkpoint per seed under ``runs/dinosaur``), evaluates DINOSAUR
with the library (``recsys.dinosaur.evaluate_dinosaur``) and writes ``benchmarks/results/dinosaur_<name>.json``
with the per-seed results and their mean and std. ``scale`` indexes synthetic items (the point embedding plus
S - 1 draws each) in faiss IVF-Flat (all vectors), faiss HNSW and Chroma (on as many vectors as given) and
measures build time, memory and queries per second. ``plot`` draws coverage@K against recall@K change.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, print_table, write_results
from core.io import atomic_write_json
from recsys.dinosaur import (
    count_sigma,
    dot_product_factors,
    eval_data_from_split,
    evaluate_dinosaur,
    item_sigma,
    sample_item_embeddings,
)
from recsys.evaluate import load_checkpoint
from recsys.train import train_from_args
from retrieval.ann import ExactIndex, build_index, hnsw_bytes, measure_queries, recall_against

logger = logging.getLogger("benchmarks.dinosaur")

# The paper (MovieLens-32M, iALS d = 128, faiss IVF-Flat): coverage@1000 at S = 1 and S = 5, recall change,
# least-popular quintile coverage.
ANCHOR = {
    "dataset": "MovieLens-32M",
    "model": "iALS d=128",
    "coverage@1000_S1": 0.2352,
    "coverage@1000_S5": 0.6297,
    "recall@1000_change_S5": -0.0041,
    "coverage_q0@1000_S1": 0.0,
    "coverage_q0@1000_S5": 0.8188,
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of every numeric leaf (nested dicts kept)."""
    out: dict[str, Any] = {}
    for key, value in per_seed[0].items():
        if isinstance(value, dict):
            out[key] = _summarise([run[key] for run in per_seed])
        elif isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
            values = np.array([float(run[key]) for run in per_seed if run.get(key) is not None])
            if len(values):
                out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out


def _options(text: str) -> dict[str, Any]:
    """``key=value,key=value`` back-end options (int or float values, else strings)."""
    options: dict[str, Any] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = pair.partition("=")
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return options


def _write_quality(
    args: argparse.Namespace, per_seed: list[dict[str, Any]], train_results: list[dict[str, Any]], show: bool
) -> None:
    """Aggregate the seeds done so far and write the result file (and print the tables when ``show``)."""
    summary = _summarise(per_seed)
    ks, samples = _ints(args.k), _ints(args.samples)
    rows = []
    for s in samples:
        entry = summary[f"S={s}"]
        for k in ks:
            rows.append(
                {
                    "S": s,
                    "K": k,
                    "K/items": entry[f"k_over_catalogue@{k}"]["mean"],
                    "recall": entry[f"recall@{k}"]["mean"],
                    "d_recall": entry[f"recall@{k}"]["mean"] - summary["S=1"][f"recall@{k}"]["mean"],
                    "ndcg": entry[f"ndcg@{k}"]["mean"],
                    "coverage": entry[f"coverage@{k}"]["mean"],
                    "cov_sd": entry[f"coverage@{k}"]["std"],
                    "q0_cov": entry[f"coverage_q0@{k}"]["mean"],
                    "q0_incl": entry[f"inclusion_q0@{k}"]["mean"],
                    "tail_users": entry[f"tail_users@{k}"]["mean"],
                    "ms/query": entry["index"]["ms_per_query"]["mean"],
                }
            )
    columns = list(rows[0])
    if show:
        print_table(rows, columns, title=f"DINOSAUR on {args.dataset} ({args.index}, {args.variance} variance)")
    if show and "baselines" in summary:
        base_rows = []
        for name in ("epsilon_greedy", "popularity_debiased"):
            for k in ks:
                entry = summary["baselines"][name][f"K={k}"]
                base_rows.append(
                    {
                        "baseline": name,
                        "K": k,
                        "recall": entry[f"recall@{k}"]["mean"],
                        "coverage": entry[f"coverage@{k}"]["mean"],
                        "q0_cov": entry[f"coverage_q0@{k}"]["mean"],
                        "tail_users": entry[f"tail_users@{k}"]["mean"],
                    }
                )
        print_table(
            base_rows,
            list(base_rows[0]),
            title=f"baselines at the coverage of {per_seed[0]['baselines']['matched_to']}",
        )
    payload = {
        "dataset": args.dataset,
        "split": args.split,
        "model": {"name": "ials", "dim": args.dim, "iterations": args.iterations, "alpha": args.alpha, "reg": args.reg},
        "dinosaur": {
            "index": args.index,
            "variance": args.variance,
            "c": args.c,
            "p": args.p,
            "adaptive": args.adaptive,
            "samples": samples,
            "ks": ks,
            "max_users": args.max_users,
            "index_options": _options(args.index_options),
        },
        "seeds": [run["seed"] for run in per_seed],
        "seeds_requested": _ints(args.seeds),
        "anchor": ANCHOR,
        "train": train_results,
        "summary": summary,
        "per_seed": per_seed,
        "table": rows,
    }
    path = write_results(f"dinosaur_{args.name}", payload)
    if show:
        print(f"wrote {path}")


def quality(args: argparse.Namespace) -> None:
    """Train iALS per seed, evaluate DINOSAUR and the baselines, aggregate over seeds."""
    per_seed = []
    train_results = []
    store, tmp = None, None
    if args.index == "chroma":  # one temporary store; each S gets (and then drops) its own collection
        from retrieval.store import VectorStore

        tmp = tempfile.TemporaryDirectory(prefix="dinosaur_quality_chroma_")
        store = VectorStore(Path(tmp.name))
    for seed in _ints(args.seeds):
        out = Path(args.runs) / f"{args.model_name or args.name}_ials_s{seed}"
        if not (out / "run.json").is_file() or args.retrain:
            tick = time.perf_counter()
            result = train_from_args(
                [
                    "--model",
                    "ials",
                    "--dataset",
                    args.dataset,
                    "--split",
                    args.split,
                    "--out",
                    str(out),
                    "--embedding_dim",
                    str(args.dim),
                    "--iterations",
                    str(args.iterations),
                    "--alpha",
                    str(args.alpha),
                    "--reg",
                    str(args.reg),
                    "--seed",
                    str(seed),
                    "--ks",
                    "10,100",
                    "--quiet",
                ]
            )
            train_results.append({"seed": seed, "fit_seconds": time.perf_counter() - tick, **result})
        model, split, _ = load_checkpoint(out)
        users, items = dot_product_factors(model)
        data = eval_data_from_split(users, items, split, "test", args.max_users, seed)
        sigma = item_sigma(args.variance, data.counts, model, args.c, args.p)
        tick = time.perf_counter()
        result = evaluate_dinosaur(
            data,
            _ints(args.samples),
            _ints(args.k),
            sigma,
            backend=args.index,
            index_options=_options(args.index_options),
            store=store,
            seed=seed,
            adaptive=args.adaptive,
            baselines=not args.no_baselines,
            match_samples=args.match_samples,
            progress=False,
        )
        result["seconds"] = time.perf_counter() - tick
        result["seed"] = seed
        result["meta"] = {"n_items": len(data.counts), "n_users_evaluated": len(data.users)}
        per_seed.append(result)
        _write_quality(args, per_seed, train_results, show=False)  # what is done so far survives a stop
        logger.info("seed %d done in %.0f s", seed, result["seconds"])
    if store is not None:
        store.close()
        tmp.cleanup()
    _write_quality(args, per_seed, train_results, show=True)


def _rss_gb() -> float:
    """Peak resident memory of this process so far, in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _rss_now_gb() -> float:
    """Current resident memory of this process, in GiB (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / 2**30


def _set_faiss_threads(threads: int) -> None:
    """faiss's OpenMP thread count (builds may use more threads than the queries, which are timed on one)."""
    import faiss

    faiss.omp_set_num_threads(threads)


def _scale_backend(
    args: argparse.Namespace,
    backend: str,
    size: int,
    vectors: np.ndarray,
    owners: np.ndarray,
    queries: np.ndarray,
    k: int,
    rows: list[dict[str, Any]],
    save: Any,
) -> None:
    """Build one back end on the first ``size`` vectors (staged: measured at the checkpoints, within the budget);
    each measurement is appended to ``rows`` and ``save()`` writes the result file so far."""
    subset, subset_ids = vectors[:size], owners[:size]
    tmp = None
    options: dict[str, Any] = {}
    store, progress_file = None, None
    if backend == "chroma":
        from retrieval.store import VectorStore

        if args.chroma_store:  # a kept store: a stopped build can be resumed (--resume) by a later run
            store_path = Path(args.chroma_store)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="dinosaur_scale_chroma_")
            store_path = Path(tmp.name)
        store = VectorStore(store_path)
        progress_file = store_path.with_name(store_path.name + ".progress.json")
        options["collection"] = "dinosaur_scale"
        options["batch_size"] = args.chroma_batch
        options["hnsw"] = _options(args.chroma_hnsw) or None
        options["resume"] = args.resume
    if backend == "faiss-ivf":
        options["train_size"] = args.ivf_train
    if backend == "faiss-hnsw":
        options.update(m=args.hnsw_m, ef_construction=args.hnsw_ef_construction)
    logger.info("building %s on %d vectors (%d build threads)", backend, size, args.build_threads)
    measured: set[int] = set()
    # build seconds of earlier, stopped runs of a resumed Chroma build (their progress file names the vectors)
    clock = {"start": time.perf_counter(), "outside": 0.0, "before": 0.0, "checked": False}
    earlier = json.loads(progress_file.read_text()) if backend == "chroma" and progress_file.is_file() else None
    if args.resume and earlier and "dinosaur_scale" in store.list_collections():
        # a run stopped inside a batch holds vectors past its last recorded one: drop them, build them again
        held = store.count("dinosaur_scale")
        for first in range(earlier["vectors"], held, 5000):
            store.delete("dinosaur_scale", ids=[str(i) for i in range(first, min(first + 5000, held))])

    def measure(index: Any, built: int, build_seconds: float, backend: str = backend) -> None:
        """QPS and recall vs exact of the ``built`` vectors indexed so far (HNSW: at each efSearch)."""
        _set_faiss_threads(args.query_threads)
        reference = ExactIndex(vectors[:built], owners[:built]).search(queries[: args.recall_queries], k)[1]
        # HNSW returns at most efSearch results, so efSearch is at least k
        settings = [max(ef, k) for ef in _ints(args.hnsw_ef_search)] if backend == "faiss-hnsw" else [None]
        for ef in settings:
            if ef is not None:
                index.ef_search = ef
            timing = measure_queries(index, queries, k)
            found = index.search(queries[: args.recall_queries], k)[1]
            params = dict(index.stats.params) if hasattr(index, "stats") else {}
            if backend == "faiss-hnsw":
                params = {"M": args.hnsw_m, "efConstruction": args.hnsw_ef_construction, "efSearch": ef}
            row = {
                "backend": backend,
                "vectors": built,
                "build_s": build_seconds,
                "build_vectors_per_s": built / build_seconds,
                "rss_growth_GiB": _rss_now_gb() - rss_before,
                "qps": timing["qps"],
                "ms/query": timing["ms_per_query"],
                "recall_vs_exact": recall_against(reference, found),
                "peak_rss_GiB": _rss_gb(),
                "params": params,
                "build_threads": args.build_threads,
                "query_threads": args.query_threads,
            }
            if backend == "faiss-hnsw":
                row["index_GB"] = (hnsw_bytes(index.index) + 8 * built) / 1e9
            rows.append(row)
            logger.info("%s", row)
            save()
        measured.add(built)
        _set_faiss_threads(args.build_threads)

    def on_batch(index: Any) -> bool:
        """Measure at the checkpoints; stop adding once the build budget is spent."""
        built = int(index.index.ntotal) if hasattr(index, "index") else int(index.n_added)
        if backend == "chroma" and not clock["checked"]:
            clock["checked"] = True
            resumed_at = getattr(index, "resumed_at", 0)
            if resumed_at and not (earlier and earlier["vectors"] == resumed_at):
                raise SystemExit(f"{progress_file}: no build time recorded for the {resumed_at} vectors held")
            clock["before"] = earlier["build_s"] if resumed_at else 0.0
        build_seconds = clock["before"] + time.perf_counter() - clock["start"] - clock["outside"]
        if backend == "chroma":
            atomic_write_json(progress_file, {"vectors": built, "build_s": build_seconds})
        mark = time.perf_counter()
        if built in checkpoints:
            measure(index, built, build_seconds)
        clock["outside"] += time.perf_counter() - mark
        if args.build_budget_s and build_seconds > args.build_budget_s and built < size:
            logger.warning("%s: build budget of %.0f s spent at %d of %d vectors", backend, build_seconds, built, size)
            return False
        return True

    checkpoints = set(_ints(args.checkpoints))
    if backend in ("faiss-hnsw", "chroma"):
        options.update(on_batch=on_batch, add_batch=args.add_batch)
    _set_faiss_threads(args.build_threads)
    rss_before = _rss_now_gb()
    clock["start"] = time.perf_counter()
    index = build_index(backend, subset, subset_ids, store=store, **options)
    built = index.stats.n_vectors
    if built not in measured:
        measure(index, built, clock["before"] + index.stats.build_seconds)
    for row in rows:
        if row["backend"] == backend and row["vectors"] == built:
            row["index_GB"] = index.stats.memory_bytes / 1e9
            row["final"] = True
            if built < len(vectors):
                row["build_s_extrapolated_to_all_linear"] = row["build_s"] * len(vectors) / built
    del index
    if store is not None:
        store.close()
    if tmp is not None:
        tmp.cleanup()
    save()


def scale(args: argparse.Namespace) -> None:
    """Synthetic catalogue x S copies: faiss IVF over all vectors; HNSW and Chroma on the sizes given."""
    rng = np.random.default_rng(args.seed)
    n, dim, s = args.items, args.dim, args.samples
    counts = np.floor(1e5 / np.arange(1, n + 1) ** 1.0)  # Zipf-like popularity
    sigma = count_sigma(counts)
    queries = rng.standard_normal((args.queries, dim), dtype=np.float32) / np.sqrt(dim) * 3
    # generated a chunk of items at a time so that only the index's own copy is ever held twice
    vectors = np.empty((n * s, dim), dtype=np.float32)
    owners = np.empty(n * s, dtype=np.int64)
    chunk = 50_000
    for first in range(0, n, chunk):
        items = np.random.default_rng([args.seed, first]).standard_normal((min(chunk, n - first), dim), np.float32)
        part, part_owners = sample_item_embeddings(items / np.sqrt(dim), sigma[first : first + chunk], s, first)
        vectors[first * s : first * s + len(part)] = part
        owners[first * s : first * s + len(part)] = part_owners + first
    logger.info("%d vectors (%.2f GB) generated; peak RSS %.2f GiB", len(vectors), vectors.nbytes / 1e9, _rss_gb())
    rows = []
    previous = RESULTS_DIR / f"{args.name}.json"
    if args.resume and previous.is_file():  # the rows measured before the build was stopped
        rows = [{**row, "final": False} for row in json.loads(previous.read_text())["rows"]]
    k = args.k * s  # DINOSAUR fetches S * K neighbours per query
    sizes = {"faiss-ivf": len(vectors), "faiss-hnsw": min(args.hnsw_vectors, len(vectors))}
    sizes["chroma"] = min(args.chroma_vectors, len(vectors))

    def save() -> None:
        write_results(args.name, _scale_payload(args, len(vectors), k, rows))

    for backend in args.backends.split(","):
        _scale_backend(args, backend, sizes[backend], vectors, owners, queries, k, rows, save)
    columns = ["backend", "vectors", "build_s", "index_GB", "rss_growth_GiB", "qps", "ms/query", "recall_vs_exact"]
    for row in rows:
        row.setdefault("index_GB", float("nan"))
    print_table(rows, columns, title=f"{n} items x S={s} = {len(vectors)} vectors, {dim}-d, k = S x {args.k}")
    save()
    print(f"wrote {RESULTS_DIR / args.name}.json")


def _scale_payload(args: argparse.Namespace, n_vectors: int, k: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The scale result file's content."""
    n, dim, s = args.items, args.dim, args.samples
    return {
        "items": n,
        "samples": s,
        "dim": dim,
        "n_vectors": n_vectors,
        "queries": args.queries,
        "k_fetched": k,
        "recall_queries": args.recall_queries,
        "threads": {"build": args.build_threads, "query": args.query_threads},
        "rows": rows,
        "note": "synthetic vectors: measures index cost, not retrieval quality",
    }


def plot(args: argparse.Namespace) -> None:
    """coverage@K (x) against recall@K change from S = 1 (y), one line per result file, S marked; baselines as x."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = args.results.split(",")
    ks = _ints(args.k)
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.6), squeeze=False)
    for path in files:
        record = json.loads(Path(path).read_text())
        summary = record["summary"]
        samples = record["dinosaur"]["samples"]
        for ax, k in zip(axes[0], ks, strict=True):
            if f"recall@{k}" not in summary["S=1"]:
                continue
            base = summary["S=1"][f"recall@{k}"]["mean"]
            xs = [summary[f"S={s}"][f"coverage@{k}"]["mean"] for s in samples]
            ys = [summary[f"S={s}"][f"recall@{k}"]["mean"] - base for s in samples]
            label = Path(path).stem.replace("dinosaur_", "")
            line = ax.plot(xs, ys, "o-", label=f"{label} DINOSAUR")[0]
            for s, x, y in zip(samples, xs, ys, strict=True):
                ax.annotate(f"S={s}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            for name, marker in (("epsilon_greedy", "x"), ("popularity_debiased", "s")):
                entry = summary.get("baselines", {}).get(name, {}).get(f"K={k}")
                if entry:
                    ax.plot(
                        entry[f"coverage@{k}"]["mean"],
                        entry[f"recall@{k}"]["mean"] - base,
                        marker,
                        color=line.get_color(),
                        label=f"{label} {name.replace('_', '-')}",
                    )
            ax.set_title(f"K = {k}")
            ax.set_xlabel(f"catalogue coverage@{k}")
            ax.axhline(0, color="grey", lw=0.5)
    if 1000 in ks:
        ax = axes[0][ks.index(1000)]
        ax.plot([ANCHOR["coverage@1000_S1"], ANCHOR["coverage@1000_S5"]], [0, ANCHOR["recall@1000_change_S5"]], "k--*")
        ax.annotate("paper ML-32M S=1->5", (ANCHOR["coverage@1000_S5"], ANCHOR["recall@1000_change_S5"]), fontsize=7)
    axes[0][0].set_ylabel("recall@K change vs S = 1")
    axes[0][-1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


def _pm(entry: dict[str, float], digits: int = 4) -> str:
    return (
        f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}" if entry.get("std") else f"{entry['mean']:.{digits}f}"
    )


def report(args: argparse.Namespace) -> None:
    """Markdown tables (mean ± std over seeds) of quality result files, for docs/dinosaur.md."""
    import json

    for path in args.results.split(","):
        record = json.loads(Path(path).read_text())
        summary, ks = record["summary"], record["dinosaur"]["ks"]
        n_items = record["per_seed"][0]["meta"]["n_items"] if "meta" in record["per_seed"][0] else None
        print(
            f"\n`{path}` ({record['dataset']}, {record['split']} split, seeds {record['seeds']}, "
            f"{record['dinosaur']['index']} index, {record['dinosaur']['variance']} variance"
            f"{', ' + str(n_items) + ' items' if n_items else ''})\n"
        )
        print(
            "| S | K (K/items) | Recall@K | ΔRecall vs S=1 | NDCG@K | coverage@K | least-popular quintile coverage |"
            " users with a tail item | ms/query (vs S=1) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for s in record["dinosaur"]["samples"]:
            entry = summary[f"S={s}"]
            for k in ks:
                delta = entry[f"recall@{k}"]["mean"] - summary["S=1"][f"recall@{k}"]["mean"]
                timing = entry["index"]
                ratio = timing.get("ms_per_query_vs_s1", {}).get("mean")
                print(
                    f"| {s} | {k} ({entry[f'k_over_catalogue@{k}']['mean']:.2%}) | {_pm(entry[f'recall@{k}'])} | "
                    f"{delta:+.4f} | {_pm(entry[f'ndcg@{k}'])} | {_pm(entry[f'coverage@{k}'])} | "
                    f"{_pm(entry[f'coverage_q0@{k}'])} | {_pm(entry[f'tail_users@{k}'])} | "
                    f"{timing['ms_per_query']['mean']:.2f} (x{ratio:.1f}) |"
                )
        if "baselines" in summary:
            matched = record["per_seed"][0]["baselines"]["matched_to"]
            print(f"\nBaselines tuned to DINOSAUR's coverage@K at {matched} (exact search):\n")
            print(
                "| method | K | knob | Recall@K | coverage@K | least-popular quintile coverage "
                "| users with a tail item |"
            )
            print("|---|---|---|---|---|---|---|")
            for k in ks:
                entry = summary[matched][f"recall@{k}"]
                print(
                    f"| DINOSAUR {matched} | {k} | | {_pm(entry)} | {_pm(summary[matched][f'coverage@{k}'])} | "
                    f"{_pm(summary[matched][f'coverage_q0@{k}'])} | {_pm(summary[matched][f'tail_users@{k}'])} |"
                )
                point = summary["baselines"]["point_exact"]
                print(
                    f"| point retrieval (S=1, exact) | {k} | | {_pm(point[f'recall@{k}'])} | "
                    f"{_pm(point[f'coverage@{k}'])} | {_pm(point[f'coverage_q0@{k}'])} | "
                    f"{_pm(point[f'tail_users@{k}'])} |"
                )
                for name, knob in (("epsilon_greedy", "epsilon"), ("popularity_debiased", "beta")):
                    entry = summary["baselines"][name][f"K={k}"]
                    reached = [run["baselines"][name][f"K={k}"]["reached"] for run in record["per_seed"]]
                    note = "" if all(reached) else " (coverage not reached)"
                    print(
                        f"| {name.replace('_', '-')}{note} | {k} | {knob} {entry[knob]['mean']:.3g} | "
                        f"{_pm(entry[f'recall@{k}'])} | {_pm(entry[f'coverage@{k}'])} | "
                        f"{_pm(entry[f'coverage_q0@{k}'])} | {_pm(entry[f'tail_users@{k}'])} |"
                    )


def main(argv: list[str] | None = None) -> int:
    """Parse the verb and run it."""
    parser = argparse.ArgumentParser(prog="python benchmarks/dinosaur.py", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    q = verbs.add_parser("quality", help="coverage-recall per S on a dataset, iALS, several seeds")
    q.add_argument("--dataset", default="ml-1m")
    q.add_argument("--name", help="result name (default: the dataset)")
    q.add_argument("--split", default="random")
    q.add_argument("--seeds", default="0,1,2")
    q.add_argument("--dim", type=int, default=64)
    q.add_argument("--iterations", type=int, default=8)
    q.add_argument("--alpha", type=float, default=4.0)
    q.add_argument("--reg", type=float, default=4.0)
    q.add_argument("--samples", default="1,2,5,10")
    q.add_argument("--k", default="10,100,1000")
    q.add_argument("--index", default="exact")
    q.add_argument("--variance", default="count")
    q.add_argument("--c", type=float, default=0.1)
    q.add_argument("--p", type=float, default=0.25)
    q.add_argument("--adaptive", action="store_true")
    q.add_argument("--max-users", type=int, default=0)
    q.add_argument("--match-samples", type=int, default=5)
    q.add_argument("--no-baselines", action="store_true")
    q.add_argument("--retrain", action="store_true")
    q.add_argument("--runs", default="runs/dinosaur")
    q.add_argument("--model-name", help="checkpoint prefix under --runs (default: --name), to share checkpoints")
    q.add_argument("--index-options", default="", help="back-end options, e.g. m=16,ef_construction=40")
    sc = verbs.add_parser("scale", help="index cost on synthetic items x S copies")
    sc.add_argument("--items", type=int, default=1_000_000)
    sc.add_argument("--samples", type=int, default=5)
    sc.add_argument("--dim", type=int, default=64)
    sc.add_argument("--queries", type=int, default=1000)
    sc.add_argument("--recall-queries", type=int, default=100)
    sc.add_argument("--k", type=int, default=100, help="K; the index is asked for S x K")
    sc.add_argument("--backends", default="faiss-ivf,faiss-hnsw,chroma")
    sc.add_argument("--hnsw-vectors", type=int, default=500_000)
    sc.add_argument("--chroma-vectors", type=int, default=50_000)
    sc.add_argument("--ivf-train", type=int, default=100_000)
    sc.add_argument("--hnsw-m", type=int, default=32)
    sc.add_argument("--hnsw-ef-construction", type=int, default=40)
    sc.add_argument("--hnsw-ef-search", default="128", help="comma-separated efSearch values (each at least S x K)")
    sc.add_argument("--chroma-batch", type=int, default=5000, help="vectors per upsert (Chroma caps it at its max)")
    sc.add_argument("--build-threads", type=int, default=1, help="faiss OpenMP threads while building")
    sc.add_argument("--add-batch", type=int, default=250_000, help="HNSW/Chroma: vectors added between checks")
    sc.add_argument(
        "--chroma-hnsw", default="", help="Chroma index settings, e.g. max_neighbors=16,sync_threshold=100000"
    )
    sc.add_argument("--chroma-store", help="keep the Chroma store in this directory (default: a temporary one)")
    sc.add_argument(
        "--resume", action="store_true", help="Chroma: go on with the build kept in --chroma-store (same --name)"
    )
    sc.add_argument("--checkpoints", default="", help="HNSW/Chroma: sizes (multiples of --add-batch) to measure at")
    sc.add_argument("--build-budget-s", type=float, default=0.0, help="HNSW/Chroma: stop adding after this many s")
    sc.add_argument("--query-threads", type=int, default=1, help="faiss OpenMP threads while querying")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--name", default="dinosaur_scale")
    pl = verbs.add_parser("plot", help="coverage-recall PNG from quality result files")
    pl.add_argument("--results", required=True, help="comma-separated result JSON files")
    pl.add_argument("--k", default="100,1000")
    pl.add_argument("--out", default=str(RESULTS_DIR / "dinosaur_coverage_recall.png"))
    rp = verbs.add_parser("report", help="markdown tables of quality result files")
    rp.add_argument("--results", required=True, help="comma-separated result JSON files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verb == "quality":
        args.name = args.name or args.dataset
        quality(args)
    elif args.verb == "scale":
        scale(args)
    elif args.verb == "report":
        report(args)
    else:
        plot(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
