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


def open_store(spec: str | None) -> Any:
    """A VectorStore on a local directory (default: the shared store) or a Chroma server URL."""
    from retrieval import VectorStore

    if spec and spec.startswith(("http://", "https://")):
        return VectorStore(url=spec)
    return VectorStore(path=spec)


def make_answerer(kind: str, model_spec: str | None, user: str) -> Any:
    """planner (no LLM), llm (local model, default the packaged SmolLM2) or endpoint (an OpenAI-compatible URL)."""
    from agents.camroll.answerers import LLMAnswerer, PlannerAnswerer

    if kind == "planner":
        return PlannerAnswerer(user)
    from mllm.backbones import load_chat_model

    if kind == "llm":
        return LLMAnswerer(load_chat_model(model_spec or "default"), user, name="llm", constrained=True)
    if kind == "endpoint":
        if not model_spec or not model_spec.startswith(("http://", "https://")):
            raise CamrollError("--agent endpoint needs --model http(s)://host:port/v1[#model-name]")
        return LLMAnswerer(load_chat_model(model_spec), user, name="endpoint")
    raise CamrollError(f"--agent {kind!r}: use planner, llm or endpoint")


class Session:
    """Data, store, memory and checkpointer opened together for one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        from agents.camroll.memory import CamrollMemory, default_cache_dir, make_visual
        from retrieval.embed import make_text_embedder

        self.args = args
        self.data = ensure_data(args.data, progress=not args.quiet)
        self.store = open_store(args.store)
        self.memory = CamrollMemory(
            self.store,
            self.data,
            embedder=make_text_embedder(args.embedder),
            visual=make_visual(args.visual),
            cache_dir=args.cache_dir or default_cache_dir(),
        )

    def close(self) -> None:
        self.store.close()
