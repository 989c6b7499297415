"""``python -m agents.camroll chat|ask|ingest|demo|demo-data|threads|yfcc``: the camera-roll agent's command line.

``chat --user 12`` resumes the user's thread after a restart (LangGraph SQLite checkpointer); ``ask`` answers
once; ``--data DIR`` picks a camera roll (default: the demo roll, built on first use under the cache folder).
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
from agents.camroll.session import AGENTS, READERS, Session, make_answerer
from core.cli import add_verbosity_args, configure_from_args, run_cli

logger = logging.getLogger("agents.camroll")


def _today(args: argparse.Namespace) -> dt.date:
    if not args.today:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(args.today)
    except ValueError as exc:
        raise CamrollError(f"--today {args.today!r}: expected YYYY-MM-DD") from exc


def _threads_db(args: argparse.Namespace) -> Path:
    from agents.camroll.memory import default_cache_dir

    return (
        Path(args.threads_db)
        if args.threads_db
        else (Path(args.cache_dir) if args.cache_dir else default_cache_dir()) / "threads.sqlite"
    )


def _ingest(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll.data import check_user_id, import_photo_folder, list_users

    result: dict[str, Any] = {}
    if args.photos:
        if not args.data:
            raise CamrollError("ingest --photos needs --data DIR (the camera roll to import into)")
        Path(args.data).mkdir(parents=True, exist_ok=True)
        report = import_photo_folder(args.photos, args.data, check_user_id(args.user), progress=not args.quiet)
        result["import"] = report.as_dict()
        if args.report:
            import json

            Path(args.report).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    session = Session(args)
    try:
        users = list_users(session.data) if args.all_users else [check_user_id(args.user)]
        result["memory"] = [session.memory.ingest(user, progress=not args.quiet) for user in users]
    finally:
        session.close()
    return result


def reader_session(args: argparse.Namespace, user: str) -> Session:
    """A read-only session whose memory of ``user`` is current; the writer lock is held only while ingesting."""
    from retrieval.errors import StoreError

    reader: Session | None = None
    try:
        reader = Session(args, read_only=True)
        if not reader.memory.needs_ingest(user, progress=not args.quiet):
            return reader
        reader.close()
    except StoreError as exc:  # no store or no collection yet (a damaged store is refused again below)
        logger.debug("read-only open failed (%s); ingesting first", exc)
    writer = Session(args, reuse=reader)
    try:
        writer.memory.ingest(user, progress=not args.quiet)  # incremental: only changed nodes are written
    finally:
        writer.close()  # releases the writer lock before the conversation starts
    return Session(args, read_only=True, reuse=writer)


def _with_agent(args: argparse.Namespace, body: Any) -> Any:
    from agents.camroll.data import check_user_id
    from agents.camroll.graph import build_graph, prune_thread, sqlite_checkpointer, thread_key
    from agents.camroll.tools import CamrollTools

    user = check_user_id(args.user)
    session = reader_session(args, user)
    try:
        tools = CamrollTools(session.memory, user)
        answerer = make_answerer(args.agent, args.model, user, reader=args.reader)
        with sqlite_checkpointer(_threads_db(args)) as saver:
            if args.new:
                prune_thread(saver, user, args.thread)
            graph = build_graph(tools, answerer, checkpointer=saver)
            return body(graph, thread_key(user, args.thread))
    finally:
        session.close()


def _ask(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll.graph import ask

    today = _today(args)
    return _with_agent(args, lambda graph, thread: {**ask(graph, args.question, today, thread), "thread": thread})


def _chat(args: argparse.Namespace) -> None:
    from agents.camroll.graph import ask, conversation

    today = _today(args)

    def loop(graph: Any, thread: str) -> None:
        turns = conversation(graph, thread)
        if turns:
            print(f"resuming thread {thread} ({len(turns)} earlier turns):")
            for turn in turns[-5:]:
                print(f"  you: {turn['question']}\n  camroll: {turn['answer']}")
        else:
            print(f"new thread {thread}")
        print("ask about your photos; an empty line, 'exit' or Ctrl-D ends")
        while True:
            try:
                question = input("you> ").strip()
            except EOFError:
                print()
                break
            if not question or question.lower() in ("exit", "quit"):
                break
            result = ask(graph, question, today, thread)
            print(f"camroll> {result['answer']}")
            if result["cited"]:
                print(f"  photos: {', '.join(result['cited'][:8])}")

    _with_agent(args, loop)


def _threads(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll.data import check_user_id
    from agents.camroll.graph import list_threads

    user = check_user_id(args.user)
    return {"user": user, "threads": list_threads(_threads_db(args), user)}


def _demo_data(args: argparse.Namespace) -> dict[str, Any]:
    from agents.camroll.demo_data import make_demo_roll

    if args.users < 1 or args.photos_per_user < 1 or args.questions_per_user < 0:
        raise CamrollError("--users and --photos-per-user must be >= 1, --questions-per-user >= 0")
    return make_demo_roll(
        args.out,
        users=args.users,
        photos_per_user=args.photos_per_user,
        questions_per_user=args.questions_per_user,
        seed=args.seed,
        extra_photos=args.extra_photos,
        progress=not args.quiet,
    )


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    """Build the demo roll if missing, ingest one user, answer a few of its questions, print the eval table."""
    from agents.camroll.answerers import QueryAnswerer
    from agents.camroll.data import check_user_id, read_qa, user_dir
    from agents.camroll.graph import ask, build_graph
    from agents.camroll.qa import markdown_table, run_eval
    from agents.camroll.tools import CamrollTools

    user = check_user_id(args.user)
    session = Session(args)
    try:
        report = session.memory.ingest(user, progress=not args.quiet)
        print(f"ingested user{user}: {report['photos']} photos -> {report['nodes']} ({report['seconds']} s)")
        tools = CamrollTools(session.memory, user)
        qas = read_qa(user_dir(session.data, user))
        picked = {}
        for qa in qas:
            picked.setdefault(qa.question_type, qa)
        answers = []
        answerer = QueryAnswerer(user)  # the default answerer (typed queries, rule parser)
        for qa in picked.values():
            result = ask(build_graph(tools, answerer), qa.question, qa.question_date)
            expected = f"expected: {qa.answer}" if qa.answer_type != "open" else "checked: nothing already photographed"
            print(f"\n[{qa.question_date}] {qa.question}\n  answer: {result['answer']}   ({expected})")
            print(f"  photos: {', '.join(result['cited'][:5]) or '-'}")
            answers.append({"question": qa.question, "answer": result["answer"], "cited": result["cited"][:5]})
        evaluation = run_eval(session.data, lambda: session.memory, users=[user], agent="query", progress=False)
        print("\n" + markdown_table(evaluation))
        return {"user": user, "answers": answers, "results": evaluation["results"]} if args.json else None
    finally:
        session.close()


def build_parser() -> argparse.ArgumentParser:
    from agents.camroll.demo_data import DEFAULT_PHOTOS_PER_USER, DEFAULT_QUESTIONS_PER_USER, DEV_SEED, HELDOUT_SEED

    parser = argparse.ArgumentParser(prog="python -m agents.camroll", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    def common(sub: argparse.ArgumentParser, agent: bool = False) -> None:
        sub.add_argument("--data", help="camera roll folder (default: the demo roll, built on first use)")
        sub.add_argument("--store", help="vector store directory or Chroma server URL (default: the shared store)")
        sub.add_argument("--embedder", default="minilm", help="text embedder: minilm (default), hashing, or a folder")
        sub.add_argument(
            "--visual",
            default="efficientnet",
            help="visual labels: efficientnet (default), none, open_clip:MODEL:WEIGHTS_FILE (zero-shot labels), "
            "or vlm:FOLDER (a caption per photo from a local VLM folder)",
        )
        sub.add_argument("--cache-dir", help="cache folder (default ~/.cache/recagents/camroll)")
        add_verbosity_args(sub)
        if agent:
            sub.add_argument("--user", required=True, help="user id, e.g. 12")
            sub.add_argument(
                "--agent",
                default="query",
                choices=AGENTS,
                help="query (default: typed query language, rule parser), planner (the old template planner), llm, "
                "endpoint (tool calls by an endpoint) or endpoint-query (the endpoint writes the typed query)",
            )
            sub.add_argument("--model", help="llm: model spec (default: packaged SmolLM2); endpoint: http(s) URL")
            sub.add_argument("--reader", default="sentence", choices=READERS,
                             help="query: caption reader for what no query fits (default sentence: offline MiniLM; "
                             "llm / endpoint: a chat model on --model; none: decline)")  # fmt: skip
            sub.add_argument("--thread", default="default", help="conversation thread name (default: default)")
            sub.add_argument("--new", action="store_true", help="start the thread afresh (drop its saved turns)")
            sub.add_argument("--today", help="the date questions are asked on, YYYY-MM-DD (default: today)")
            sub.add_argument("--threads-db", help="SQLite checkpointer file (default: <cache-dir>/threads.sqlite)")

    chat = verbs.add_parser("chat", help="chat with the agent about a user's photos (resumes the thread)")
    common(chat, agent=True)
    chat.set_defaults(run=_chat)
    ask = verbs.add_parser("ask", help="answer one question and print JSON (answer, cited photo ids, tool calls)")
    common(ask, agent=True)
    ask.add_argument("question")
    ask.set_defaults(run=_ask)
    ingest = verbs.add_parser("ingest", help="build or update a user's memory (optionally import a photo folder)")
    common(ingest)
    who = ingest.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="user id")
    who.add_argument("--all-users", action="store_true", help="every user of the camera roll")
    ingest.add_argument("--photos", help="a bare folder of photos to import for --user (EXIF is read)")
    ingest.add_argument("--report", help="also write the import report (skipped files and why) to this JSON file")
    ingest.set_defaults(run=_ingest)
    threads = verbs.add_parser("threads", help="list a user's saved conversation threads")
    threads.add_argument("--user", required=True)
    threads.add_argument("--cache-dir")
    threads.add_argument("--threads-db")
    add_verbosity_args(threads)
    threads.set_defaults(run=_threads)
    show = verbs.add_parser("demo", help="the camroll part of `make demo`: demo roll, ingest, a few answers, eval")
    common(show)
    show.add_argument("--user", default="12", help="user id (default 12)")
    show.add_argument("--json", action="store_true", help="also print the answers and results as JSON")
    show.set_defaults(run=_demo)
    demo = verbs.add_parser("demo-data", help="write a deterministic demo camera roll with a QA set")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--users", type=int, default=50, help="users 1..N (default 50)")
    demo.add_argument("--photos-per-user", type=int, default=DEFAULT_PHOTOS_PER_USER)
    demo.add_argument("--questions-per-user", type=int, default=DEFAULT_QUESTIONS_PER_USER)
    demo.add_argument("--seed", type=int, default=DEV_SEED, help=f"{DEV_SEED}: development; {HELDOUT_SEED}: held out")
    demo.add_argument("--extra-photos", help="a folder of photos named by content (e.g. ImageNet samples) to mix in")
    add_verbosity_args(demo)
    demo.set_defaults(run=_demo_data)
    from agents.camroll.yfcc_cli import add_parser as add_yfcc_parser

    add_yfcc_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mllm.backbones import MllmError
    from retrieval.errors import RetrievalError

    args = build_parser().parse_args(argv)
    configure_from_args(args, default=logging.WARNING)
    return run_cli(lambda: args.run(args), errors=(CamrollError, RetrievalError, MllmError))


if __name__ == "__main__":
    sys.exit(main())
