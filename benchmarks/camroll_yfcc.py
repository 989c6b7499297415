"""camroll on the paper's 10 real Flickr rolls: the 30 questions per answerer and system (exact match and more).

    nice -n 10 python -m benchmarks.camroll_yfcc                        # planner, all 10 users (ingest ~1 h once)
    nice -n 10 python -m benchmarks.camroll_yfcc --users 3 --name camroll_yfcc_u3
    nice -n 10 python -m benchmarks.camroll_yfcc --answerer llm          # the packaged SmolLM2 as the agent
    python -m benchmarks.camroll_yfcc --answerer endpoint --model http://host:8000/v1#name --judge http://...

Reads ``../shared/data/camroll_yfcc_public`` (or ``--data``), writes the converted roll and the vector store
under ``--dir`` (default ``<camroll cache>/yfcc``; the ingest is incremental, so a second run reuses it), and
writes ``benchmarks/results/<name>.json`` with the summary per system and one row per (question, system).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from benchmarks.common import print_table, write_results

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camroll_yfcc_public"


def main() -> None:
    """Parse arguments, run ``agents.camroll.yfcc.evaluate`` and write the table and the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="YFCC folder (website or release layout)")
    parser.add_argument("--users", nargs="+", help="user numbers (default: all)")
    parser.add_argument("--answerer", default=None, help="query (default), planner, llm, endpoint, endpoint-query")
    parser.add_argument("--model", help="llm: model spec; endpoint: http(s) URL")
    parser.add_argument("--reader", default="sentence", help="query: caption reader sentence|llm|endpoint|none")
    parser.add_argument("--judge", help="opt-in LLM judge: a model spec or URL")
    parser.add_argument("--systems", nargs="+", default=["hierarchical", "flat_rag", "long_context"])
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--dir", help="folder for the roll, store and caches (default <camroll cache>/yfcc)")
    parser.add_argument("--name", default=None, help="results name (default camroll_yfcc_<answerer>)")
    parser.add_argument("--time-budget", type=float, help="start no further user after this many seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("agents.camroll.yfcc").setLevel(logging.INFO)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from agents.camroll import yfcc
    from mllm.backbones import load_chat_model
    from retrieval import VectorStore
    from retrieval.embed import make_text_embedder

    answerer = args.answerer or yfcc.DEFAULT_ANSWERER
    base = Path(args.dir) if args.dir else yfcc.default_yfcc_dir()
    factory = yfcc.answerer_factory(answerer, args.model, reader=args.reader)
    judge_model = load_chat_model(args.judge) if args.judge else None
    with VectorStore(base / "store") as store:
        report = yfcc.evaluate(
            args.data,
            store,
            base / "roll",
            users=args.users,
            embedder=make_text_embedder(args.embedder),
            factory=factory,
            answerer=answerer,
            systems=args.systems,
            judge_model=judge_model,
            cache_dir=base / "cache",
            time_budget_s=args.time_budget,
        )
    report["settings"] = {"embedder": args.embedder, "store": str(base / "store"), "model": args.model,
                          "reader": args.reader if answerer == "query" else None,
                          "judge": args.judge, "paper_tokens_per_question": yfcc.PAPER_TOKENS_PER_QUESTION}  # fmt: skip
    rows = [{"answerer": answerer, "system": system, **summary} for system, summary in report["summary"].items()]
    columns = ["answerer", "system", "n", "exact", "typed", "contains", "token_f1", "judge", "evidence_day_hit",
               "tokens_per_question", "latency_p50_s", "latency_p95_s"]  # fmt: skip
    print_table(rows, columns, title=f"camroll on the YFCC rolls ({report['n_questions']} questions)")
    print(yfcc.markdown_table(report["summary"], answerer))
    path = write_results(args.name or f"camroll_yfcc_{answerer}", report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
