"""The camroll agent as a LangGraph StateGraph: plan -> call tools -> read -> (plan again | answer).

Small node functions over one typed state. The conversation (``turns``) persists through LangGraph's SQLite
checkpointer, one thread per (user, thread name), so ``chat`` resumes after a restart; the per-question fields
are reset by each new question.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import operator
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

from agents.camroll.answerers import Decision, approx_tokens
from agents.camroll.errors import ToolArgumentError
from agents.camroll.tools import CamrollTools, render_result

MAX_STEPS = 8


class AgentState(TypedDict, total=False):
    """The graph's state: the current question's work, and the turns of the whole conversation."""

    question: str
    today: str  # the question's date, YYYY-MM-DD
    pending: list[dict[str, Any]]  # tool calls chosen by the last plan step
    observations: list[dict[str, Any]]  # every call run for this question, with its result or error
    steps: int
    context_tokens: int  # tokens of tool results read for this question (approx_tokens)
    n_read: int  # observations already accounted for by the read node
    evidence: list[str]  # this user's photo ids that the tools returned for this question
    answer: str
    cited: list[str]
    turns: Annotated[list[dict[str, Any]], operator.add]


def build_graph(tools: CamrollTools, answerer: Any, checkpointer: Any = None, max_steps: int = MAX_STEPS) -> Any:
    """A compiled graph over one user's tools and one answerer (optionally with a checkpointer)."""
    from langgraph.graph import END, START, StateGraph

    def plan(state: AgentState) -> dict[str, Any]:
        today = dt.date.fromisoformat(state["today"])
        extra = {"turns": state.get("turns", [])} if getattr(answerer, "uses_turns", False) else {}
        decision: Decision = answerer.step(state["question"], today, state.get("observations", []), **extra)
        if decision.answer is not None or state.get("steps", 0) >= max_steps:
            answer = decision.answer if decision.answer is not None else "I could not answer within the step limit."
            return {"pending": [], "answer": answer, "cited": decision.cited}
        return {"pending": decision.calls, "steps": state.get("steps", 0) + 1}

    def call_tools(state: AgentState) -> dict[str, Any]:
        observations = list(state.get("observations", []))
        for call in state.get("pending", []):
            if call.get("tool") == "__invalid__":  # an unparseable model reply, kept so the model can fix it
                observations.append({"raw": call.get("raw", ""), "error": call.get("error", "")})
                continue
            record: dict[str, Any] = {"tool": call["tool"], "args": call.get("args", {})}
            try:
                record["result"] = tools.call(call["tool"], call.get("args"))
            except ToolArgumentError as exc:
                record["error"] = str(exc)
            observations.append(record)
        return {"observations": observations, "pending": []}

    def read(state: AgentState) -> dict[str, Any]:
        """Account for the new results: their tokens, and the photo ids they show (the only citable ones)."""
        observations = state.get("observations", [])
        tokens = state.get("context_tokens", 0)
        evidence = list(state.get("evidence", []))
        known = set(evidence)
        for observation in observations[state.get("n_read", 0) :]:
            if "result" in observation:
                tokens += approx_tokens(render_result(observation["tool"], observation["result"]))
                fresh = sorted(_photo_ids(observation["result"], tools.user) - known)
                evidence.extend(fresh)
                known.update(fresh)
        return {"context_tokens": tokens, "evidence": evidence, "n_read": len(observations)}

    def answer(state: AgentState) -> dict[str, Any]:
        prefix = f"user{tools.user}/photo/"
        # Cite only this user's photos that a tool actually returned for this question.
        evidence = set(state.get("evidence", []))
        cited = [c for c in state.get("cited", []) if c.startswith(prefix) and c in evidence]
        turn = {
            "question": state["question"],
            "today": state["today"],
            "answer": state.get("answer", ""),
            "cited": cited,
            "tool_calls": [{"tool": o.get("tool"), "args": o.get("args")} for o in state.get("observations", [])],
        }
        return {"cited": cited, "turns": [turn]}

    def route(state: AgentState) -> str:
        return "call_tools" if state.get("pending") else "answer"

    graph = StateGraph(AgentState)
    graph.add_node("plan", plan)
    graph.add_node("call_tools", call_tools)
    graph.add_node("read", read)
    graph.add_node("answer", answer)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route, {"call_tools": "call_tools", "answer": "answer"})
    graph.add_edge("call_tools", "read")
    graph.add_edge("read", "plan")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)


def _photo_ids(result: Any, user: str) -> set[str]:
    """Every photo id (made global) mentioned anywhere in a tool result."""
    found: set[str] = set()
    prefix = f"user{user}/photo/"

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if key == "photo_ids":
                found.add(value if value.startswith(prefix) else prefix + value)
            elif value.startswith(prefix):
                found.add(value)

    walk(result)
    return found


def new_question(question: str, today: dt.date | None = None) -> AgentState:
    """The input that starts a new question (and clears the previous question's work)."""
    return {
        "question": question,
        "today": (today or dt.date.today()).isoformat(),
        "pending": [],
        "observations": [],
        "steps": 0,
        "context_tokens": 0,
        "n_read": 0,
        "evidence": [],
        "answer": "",
        "cited": [],
    }


def ask(graph: Any, question: str, today: dt.date | None = None, thread_id: str | None = None) -> dict[str, Any]:
    """Run one question through the graph; returns answer, cited ids, tool calls, tokens and seconds."""
    config = (
        {"configurable": {"thread_id": thread_id}, "recursion_limit": 4 * MAX_STEPS + 8}
        if thread_id
        else {"recursion_limit": 4 * MAX_STEPS + 8}
    )
    started = time.perf_counter()
    state = graph.invoke(new_question(question, today), config)
    return {
        "question": question,
        "answer": state.get("answer", ""),
        "cited": state.get("cited", []),
        "tool_calls": [{"tool": o.get("tool"), "args": o.get("args")} for o in state.get("observations", [])],
        "context_tokens": state.get("context_tokens", 0),
        "seconds": time.perf_counter() - started,
    }


# ------------------------------------------------------------------------------------------ checkpointer


@contextlib.contextmanager
def sqlite_checkpointer(path: str | Path) -> Iterator[Any]:
    """LangGraph's SqliteSaver on one file: WAL, a busy timeout, synchronous=FULL so a finished turn survives."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
    try:
        connection.execute("PRAGMA busy_timeout = 30000")
        saver = SqliteSaver(connection)
        saver.setup()
        connection.execute("PRAGMA synchronous = FULL")
        yield saver
    finally:
        connection.close()


def thread_key(user: str, thread: str) -> str:
    """The checkpointer thread id: one namespace per user, so a thread name never reaches another user's turns."""
    return f"user{user}:{thread}"


def conversation(graph: Any, thread_id: str) -> list[dict[str, Any]]:
    """The turns saved for a thread ([] for a new thread)."""
    snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    return list((snapshot.values or {}).get("turns", [])) if snapshot else []


def list_threads(path: str | Path, user: str) -> list[str]:
    """The thread names saved for a user in a checkpointer file."""
    path = Path(path)
    if not path.is_file():
        return []
    with contextlib.closing(sqlite3.connect(str(path))) as connection:
        try:
            rows = connection.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()
        except sqlite3.OperationalError:
            return []
    prefix = f"user{user}:"
    return sorted(r[0][len(prefix) :] for r in rows if r[0].startswith(prefix))


def prune_thread(saver: Any, user: str, thread: str) -> None:
    """Delete a thread's checkpoints (``--new`` on an existing name starts it afresh)."""
    saver.delete_thread(thread_key(user, thread))


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False, default=str)
