"""``python -m agents.camroll.yfcc_cli convert|ingest|ask|eval``: the camroll paper's real Flickr rolls.

``--data`` is a folder in the website layout (``u{N}.json``) or the release layout (``u{N}/qa.json``,
``photos.csv``, ``images/``); default ``../shared/data/camroll_yfcc_public`` beside the repository. The converted
roll, the vector store and the caches live under ``--dir`` (default ``<camroll cache>/yfcc``), so ``ask`` after
an ``ingest`` reads the stored memory (an unchanged user is not re-embedded). Users are ``3``, ``u3`` or ``yfcc3``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.camroll.errors import CamrollError
from core.cli import add_verbosity_args, configure_from_args, run_cli

DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camroll_yfcc_public"


def _base(args: argparse.Namespace) -> Path:
    from agents.camroll.yfcc import default_yfcc_dir

    return Path(args.dir) if args.dir else default_yfcc_dir()


def _data(args: argparse.Namespace) -> Path:
    path = Path(args.data) if args.data else DEFAULT_DATA
    if not path.is_dir():
        raise CamrollError(f"--data {path}: YFCC folder not found (u<N>.json files or u<N>/qa.json folders)")
    return path


def _open(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """(store, memory, users): the chosen users read, converted into the roll and ingested."""
    from agents.camroll import yfcc
    from retrieval import VectorStore
    from retrieval.embed import make_text_embedder

    base = _base(args)
    users = yfcc.read_users(_data(args), args.users)
    yfcc.write_roll(users, base / "roll", progress=not args.quiet)
    store = VectorStore(base / "store")
    try:
        memory = yfcc.open_memory(store, base / "roll", make_text_embedder(args.embedder), base / "cache")
        for user in users:
            memory.ingest(user.user, progress=not args.quiet)
    except BaseException:
        store.close()
        raise
    return store, memory, users


def _convert(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll import yfcc

    users = yfcc.read_users(_data(args), args.users)
    root = Path(args.roll) if args.roll else _base(args) / "roll"
    yfcc.write_roll(users, root, progress=not args.quiet)
    return {
        "roll": str(root),
        "users": {u.user: {"photos": len(u.photos), "questions": len(u.questions)} for u in users},
    }


def _ingest(args: argparse.Namespace) -> dict[str, Any]:
    store, memory, users = _open(args)
    try:
        return {"ingest": [memory.ingest(u.user, progress=False) for u in users]}  # already current: writes nothing
    finally:
        store.close()


def _ask(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll import yfcc
    from agents.camroll.graph import ask, build_graph
    from agents.camroll.tools import CamrollTools

    args.users = [args.user]
    store, memory, users = _open(args)
    try:
        user = users[0]
        today = dt.date.fromisoformat(args.today) if args.today else user.question_date
        answerer = yfcc.answerer_factory(args.answerer, args.model, reader=args.reader)(user.user)
        result = ask(build_graph(CamrollTools(memory, user.user), answerer), args.question, today)
        return {"user": user.user, "today": today.isoformat(), **result}
    finally:
        store.close()


def _eval(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll import yfcc
    from core.io import atomic_write_json, atomic_write_text
    from mllm.backbones import load_chat_model
    from retrieval import VectorStore
    from retrieval.embed import make_text_embedder

    base = _base(args)
    factory = yfcc.answerer_factory(args.answerer, args.model, reader=args.reader)
    judge_model = load_chat_model(args.judge) if args.judge else None
    with VectorStore(base / "store") as store:
        report = yfcc.evaluate(
            _data(args),
            store,
            base / "roll",
            users=args.users,
            embedder=make_text_embedder(args.embedder),
            factory=factory,
            answerer=args.answerer,
            systems=args.systems,
            judge_model=judge_model,
            cache_dir=base / "cache",
            progress=not args.quiet,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report["command"] = "python -m agents.camroll.yfcc_cli " + " ".join(sys.argv[1:])
    atomic_write_json(out / "camroll_yfcc.json", report, indent=1)
    table = yfcc.markdown_table(report["summary"], args.answerer)
    atomic_write_text(out / "camroll_yfcc.md", table)
    print(table, file=sys.stderr)
    return {"wrote": [str(out / "camroll_yfcc.json"), str(out / "camroll_yfcc.md")], "summary": report["summary"]}


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``yfcc`` verb (with convert/ingest/ask/eval) to a sub-parser set, e.g. ``python -m agents.camroll``."""
    yfcc = verbs.add_parser("yfcc", help="the camroll paper's real Flickr rolls: convert, ingest, ask, eval")
    add_verbs(yfcc.add_subparsers(dest="yfcc_verb", required=True))
    return yfcc


def add_verbs(sub: Any) -> None:
    """The convert, ingest, ask and eval verbs on a sub-parser set."""
    from agents.camroll.yfcc import DEFAULT_ANSWERER

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data", help=f"YFCC folder, website or release layout (default {DEFAULT_DATA})")
        parser.add_argument("--dir", help="folder for the roll, store and caches (default <camroll cache>/yfcc)")
        parser.add_argument("--embedder", default="minilm", help="text embedder: minilm (default), hashing, a folder")
        add_verbosity_args(parser)

    def answering(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--answerer", default=DEFAULT_ANSWERER, help=f"default {DEFAULT_ANSWERER}; planner, llm, endpoint"
        )
        parser.add_argument("--model", help="llm: model spec (default packaged SmolLM2); endpoint: http(s) URL")
        parser.add_argument(
            "--reader",
            default="sentence",
            choices=("sentence", "llm", "endpoint", "none"),
            help="query answerer: caption reader for what no query fits (default: sentence, offline)",
        )

    convert = sub.add_parser("convert", help="write the users as a camroll roll (photos.jsonl, qa.jsonl, captions/)")
    common(convert)
    convert.add_argument("--users", nargs="+", help="user numbers (default: all)")
    convert.add_argument("--roll", help="output roll folder (default <dir>/roll)")
    convert.set_defaults(run=_convert)
    ingest = sub.add_parser("ingest", help="convert and ingest users into the memory (incremental)")
    common(ingest)
    ingest.add_argument("--users", nargs="+", help="user numbers (default: all)")
    ingest.set_defaults(run=_ingest)
    ask = sub.add_parser("ask", help="answer one question about one user's roll and print JSON")
    common(ask)
    answering(ask)
    ask.add_argument("--user", required=True, help="user number: 3, u3 or yfcc3")
    ask.add_argument("--today", help="the date of the question, YYYY-MM-DD (default: the day after the last photo)")
    ask.add_argument("question")
    ask.set_defaults(run=_ask)
    evaluate = sub.add_parser("eval", help="answer the users' questions; per-question JSON and a table")
    common(evaluate)
    answering(evaluate)
    evaluate.add_argument("--users", nargs="+", help="user numbers (default: all)")
    evaluate.add_argument("--systems", nargs="+", default=["hierarchical", "flat_rag", "long_context"],
                          choices=("hierarchical", "flat_rag", "long_context"))  # fmt: skip
    evaluate.add_argument("--judge", help="opt-in LLM judge: a model spec or URL")
    evaluate.add_argument("--out", default="camroll_yfcc_out", help="folder for camroll_yfcc.json and .md")
    evaluate.set_defaults(run=_eval)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.camroll.yfcc_cli VERB`` (the same verbs as ``python -m agents.camroll yfcc VERB``)."""
    from mllm.backbones import MllmError
    from retrieval.errors import RetrievalError

    parser = argparse.ArgumentParser(prog="python -m agents.camroll.yfcc_cli", description=__doc__.split("\n\n")[0])
    add_verbs(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    configure_from_args(args, default=logging.WARNING)
    return run_cli(lambda: args.run(args), errors=(CamrollError, RetrievalError, MllmError))


if __name__ == "__main__":
    sys.exit(main())
