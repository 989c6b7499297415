"""The pieces every camroll command opens: the camera roll folder, the vector store, the answerer, the memory.

Shared by the CLI (``agents.camroll.__main__``), the QA harness (``evals.camroll_qa``) and the benchmarks, so
none of them imports another's entry point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agents.camroll.errors import CamrollError


def default_demo_dir() -> Path:
    """Where the 50-user demo camera roll is built on first use."""
    from agents.camroll.memory import default_cache_dir

    return default_cache_dir() / "demo-roll"


def ensure_data(data: str | None, progress: bool = True) -> Path:
    """The camera roll folder: ``--data``, else the demo roll (built once, on first use)."""
    if data:
        path = Path(data)
        if not path.is_dir():
            raise CamrollError(f"--data {path}: camera roll folder not found")
        return path
    path = default_demo_dir()
    if not (path / "camroll.json").is_file():
        from agents.camroll.demo_data import make_demo_roll

        print(f"building the demo camera roll in {path} (first use; takes a few minutes)", file=sys.stderr)
        make_demo_roll(path, users=50, progress=progress)
    return path


def open_store(spec: str | None, read_only: bool = False) -> Any:
    """A VectorStore on a local directory (default: the shared store) or a Chroma server URL."""
    from retrieval import VectorStore

    if spec and spec.startswith(("http://", "https://")):
        return VectorStore(url=spec, read_only=read_only)
    return VectorStore(path=spec, read_only=read_only)


AGENTS = ("query", "planner", "llm", "endpoint", "endpoint-query")
# The endpoint's tool loop, lean: the first photo search done for it (3 hits, so its first prompt holds evidence),
# then one action of its own and an answer (at most two model calls), a prose reply after reading is the answer,
# one repair round, 64 new tokens (an action or a short answer fits).
ENDPOINT_LOOP = {"prefetch_k": 3, "prose_answers": True, "max_repairs": 1, "max_new_tokens": 64, "max_steps": 2}
ENDPOINT_TIMEOUT_S = 600.0  # a model served from a shared CPU answers a 2k-token prompt in minutes, not seconds


READERS = ("sentence", "llm", "endpoint", "none")


def reader_model(reader: str | None, model_spec: str | None) -> Any:
    """The chat model an ``llm``/``endpoint`` caption reader needs (None for the offline readers)."""
    from mllm.backbones import load_chat_model

    if reader == "llm":
        return load_chat_model(model_spec or "default")
    if reader == "endpoint":
        if not model_spec or not model_spec.startswith(("http://", "https://")):
            raise CamrollError("--reader endpoint needs --model http(s)://host:port/v1[#model-name]")
        return load_chat_model(model_spec, timeout=ENDPOINT_TIMEOUT_S)
    return None


def make_answerer(
    kind: str, model_spec: str | None, user: str, reader: str | None = "sentence", reader_chat: Any = None
) -> Any:
    """query (default: typed query from the rule parser, and a caption reader for what no query fits: the
    offline ``sentence`` reader, an ``llm``/``endpoint`` one on ``model_spec``, or ``none`` to decline), planner
    (the old template planner), llm (local model choosing tools, default the packaged SmolLM2), endpoint (an
    OpenAI-compatible URL choosing tools) or endpoint-query (the endpoint translates the question into a typed
    query). ``reader_chat``: an already loaded model for an LLM reader."""
    from agents.camroll.answerers import LLMAnswerer, PlannerAnswerer, QueryAnswerer
    from agents.camroll.reader import make_reader

    if kind == "query":
        if reader in ("llm", "endpoint") and reader_chat is None:
            reader_chat = reader_model(reader, model_spec)
        return QueryAnswerer(user, reader=make_reader(reader, reader_chat))
    if kind == "planner":
        return PlannerAnswerer(user)
    from mllm.backbones import load_chat_model

    if kind == "llm":
        return LLMAnswerer(load_chat_model(model_spec or "default"), user, name="llm", constrained=True)
    if kind in ("endpoint", "endpoint-query"):
        if not model_spec or not model_spec.startswith(("http://", "https://")):
            raise CamrollError(f"--agent {kind} needs --model http(s)://host:port/v1[#model-name]")
        chat = load_chat_model(model_spec, timeout=ENDPOINT_TIMEOUT_S)
        if kind == "endpoint-query":
            from agents.camroll.parsing import LLMParser

            return QueryAnswerer(user, LLMParser(chat), name="endpoint-query")
        return LLMAnswerer(chat, user, name="endpoint", **ENDPOINT_LOOP)
    raise CamrollError(f"--agent {kind!r}: use {', '.join(AGENTS)}")


class Session:
    """Data, store, memory and checkpointer opened together for one command.

    ``read_only``: the store is opened without its writer lock, so any number of readers share it (``ask`` and
    ``chat`` read; they take the lock only for the moment an ingest writes). ``reuse``: an earlier session whose
    embedder and visual backend are reused rather than loaded again.
    """

    def __init__(self, args: argparse.Namespace, read_only: bool = False, reuse: Session | None = None) -> None:
        from agents.camroll.memory import CamrollMemory, default_cache_dir, make_visual
        from retrieval.embed import make_text_embedder

        self.args = args
        self.data = reuse.data if reuse is not None else ensure_data(args.data, progress=not args.quiet)
        embedder = reuse.memory.embedder if reuse is not None else make_text_embedder(args.embedder)
        visual = reuse.memory.visual if reuse is not None else make_visual(args.visual)
        self.store = open_store(args.store, read_only=read_only)
        try:
            self.memory = CamrollMemory(
                self.store, self.data, embedder=embedder, visual=visual, cache_dir=args.cache_dir or default_cache_dir()
            )
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        self.store.close()
