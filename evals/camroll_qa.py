"""The camroll QA harness: accuracy per question type, evidence recall, latency and tokens, with baselines.

``python -m evals.camroll_qa --data DIR [--agent query|planner|llm|endpoint|endpoint-query] [--users 1 2 ...]
[--set templates|paraphrase] [--split all|seen|unseen] --out DIR`` runs, for every QA pair of the chosen users
(``--set paraphrase``: the paraphrase and composition set of agents.camroll.paraphrase, split by template):

- ``hierarchical``: the camroll agent (LangGraph graph, hierarchical memory, the full tool set);
- ``flat_rag``: no hierarchy: the top-k photo summaries nearest to the question are all there is to read;
- ``long_context``: as many photo summaries as fit ``--context-tokens``, newest first before the question date.

With the planner, the baselines keep the planner's reading and swap what it reads (the same tools, answered
from the retrieved pool only); with an LLM, each baseline is one prompt holding its context. Answers are matched
by type: exact (normalised phrase), numeric, date, set, open (a recommendation must name a valid candidate and
nothing the user already photographed). An LLM judge runs only with ``--judge SPEC``. Writes
``camroll_qa.json`` and ``camroll_qa.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from agents.camroll.data import list_users
from agents.camroll.demo_data import DEFAULT_PHOTOS_PER_USER, DEV_SEED
from agents.camroll.errors import CamrollError
from agents.camroll.memory import CamrollMemory, make_visual
from agents.camroll.paraphrase import roll_paraphrases, train_learned_parser
from agents.camroll.qa import (  # re-exported: the harness's scoring functions live with the agent
    CITE_CAP,
    SYSTEMS,
    contains_phrase,
    evidence_recall,
    find_dates,
    first_number,
    flat_rag_pool,
    is_correct,
    judge,
    llm_direct_answer,
    long_context_pool,
    markdown_table,
    normalise,
    pooled_tools,
    run_eval,
    summarise,
    summarise_by,
)
from agents.camroll.reader import make_reader
from agents.camroll.session import AGENTS, ensure_data, make_answerer, open_store
from core.cli import add_verbosity_args, configure_from_args
from core.io import atomic_write_json, atomic_write_text
from core.provenance import environment
from mllm.backbones import MllmError, load_chat_model
from retrieval.embed import make_text_embedder
from retrieval.errors import RetrievalError

__all__ = [
    "CITE_CAP",
    "SYSTEMS",
    "contains_phrase",
    "evidence_recall",
    "find_dates",
    "first_number",
    "flat_rag_pool",
    "is_correct",
    "judge",
    "llm_direct_answer",
    "long_context_pool",
    "main",
    "markdown_table",
    "normalise",
    "pooled_tools",
    "run_eval",
    "summarise",
    "summarise_by",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m evals.camroll_qa", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="camera roll folder with qa.jsonl per user (default: the demo roll)")
    parser.add_argument(
        "--agent",
        default="query",
        choices=AGENTS,
        help="query (default: the typed query layer), planner (the old template planner), llm, endpoint, "
        "endpoint-query (the endpoint writes the typed query)",
    )
    parser.add_argument("--translator", default="rules", choices=("rules", "learned"), help="--agent query: parser")
    parser.add_argument("--reader", default="sentence", choices=("sentence", "none"),
                        help="--agent query: caption reader when no query fits (none: decline)")  # fmt: skip
    parser.add_argument(
        "--train-users", type=int, default=6, help="learned translator: users 1..N of the seed-0 timelines"
    )
    parser.add_argument(
        "--set",
        default="templates",
        choices=("templates", "paraphrase"),
        help="templates: the roll's qa.jsonl; paraphrase: the paraphrase and composition set (demo rolls)",
    )
    parser.add_argument("--split", default="all", choices=("all", "seen", "unseen"), help="paraphrase: templates")
    parser.add_argument("--model", help="llm: model spec (default packaged SmolLM2); endpoint: http(s) URL")
    parser.add_argument("--users", nargs="+", help="user ids (default: all)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--max-questions", type=int, help="at most this many questions per user")
    parser.add_argument("--rag-k", type=int, default=20, help="flat RAG: photo summaries retrieved (default 20)")
    parser.add_argument("--context-tokens", type=int, default=8000, help="long-context budget (default 8000)")
    parser.add_argument("--store", help="vector store directory or URL (default: <out>/store)")
    parser.add_argument("--embedder", default="minilm", help="minilm (default), hashing, or a folder")
    parser.add_argument(
        "--visual",
        default="none",
        help="visual labels for the memory: none (default), efficientnet, open_clip:MODEL:WEIGHTS_FILE, or vlm:FOLDER",
    )
    parser.add_argument("--judge", help="opt-in LLM judge: a model spec or URL")
    parser.add_argument("--out", default="camroll_qa_out", help="folder for camroll_qa.json and camroll_qa.md")
    add_verbosity_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args, default=logging.WARNING)

    out = Path(args.out)
    try:
        data = ensure_data(args.data, progress=not args.quiet)
        out.mkdir(parents=True, exist_ok=True)
        model = None
        if args.agent not in ("planner", "query"):
            answerer = make_answerer(args.agent, args.model, "0")
            model = answerer.model if hasattr(answerer, "model") else answerer.translator.model
        judge_model = load_chat_model(args.judge) if args.judge else None
        translator = None
        if args.agent == "query" and args.translator == "learned":
            translator = train_learned_parser(
                [str(u) for u in range(1, args.train_users + 1)], DEV_SEED, DEFAULT_PHOTOS_PER_USER
            )
        questions, extra = None, None
        if args.set == "paraphrase":
            sets = roll_paraphrases(data, args.users or list_users(data), args.split)
            questions = lambda user: [p.qa for p in sets[user]]  # noqa: E731
            extra = {p.qa.qa_id: {"split": p.split, "intent": p.intent} for ps in sets.values() for p in ps}
        with open_store(args.store or str(out / "store")) as store:
            report = run_eval(
                data,
                lambda: CamrollMemory(
                    store,
                    data,
                    embedder=make_text_embedder(args.embedder),
                    visual=make_visual(args.visual),
                    cache_dir=out / "cache",
                ),
                users=args.users,
                agent=args.agent,
                model=model,
                systems=args.systems,
                rag_k=args.rag_k,
                context_tokens=args.context_tokens,
                max_questions=args.max_questions,
                judge_model=judge_model,
                progress=not args.quiet,
                translator=translator,
                reader=make_reader(args.reader) if args.agent == "query" else None,
                questions=questions,
                row_extra=extra,
            )
        if args.set == "paraphrase":
            report["by_split"] = {s: summarise_by(rows, "split") for s, rows in report["rows"].items()}
    except (CamrollError, RetrievalError, MllmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = data / "camroll.json"
    report["data_manifest"] = json.loads(manifest.read_text()) if manifest.is_file() else None
    if report["data_manifest"]:
        report["data_manifest"].pop("users", None)
    report["command"] = "python -m evals.camroll_qa " + " ".join(sys.argv[1:] if argv is None else argv)
    report["environment"] = environment()
    report["embedder"], report["visual"] = args.embedder, args.visual
    atomic_write_json(out / "camroll_qa.json", report, indent=1)
    table = markdown_table(report)
    atomic_write_text(out / "camroll_qa.md", table)
    print(table)
    print(f"wrote {out / 'camroll_qa.json'} and {out / 'camroll_qa.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
