"""The teacher stage: structured cross-domain reasoning about items (and source/target pairs), cached and resumable.

A chat model (any ``mllm.backbones`` spec: the packaged SmolLM2, a local folder, an OpenAI-compatible endpoint)
answers a few-shot prompt with one JSON object; the reply is parsed (the first balanced ``{...}``) and validated
against a JSON schema with ``jsonschema``. Results go to an append-only JSONL cache keyed by record id, written
and fsync'ed one record at a time under a file lock (the PCF labeller's conventions): after a kill -9 a rerun
skips every id already in the cache (a torn last line is cut off), so each item is generated exactly once. A
reply that fails validation is cached too (``valid: false`` with the error) rather than asked again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from tqdm.auto import tqdm

from core.io import read_keyed_jsonl
from core.jsontext import first_json_object_text
from mllm.rgcd.errors import ReasoningError, RGCDDataError

logger = logging.getLogger(__name__)

SHORT_TEXT = {"type": "string", "minLength": 1, "maxLength": 120}
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"vertical_domain": SHORT_TEXT, "key_subject": SHORT_TEXT, "content_theme": SHORT_TEXT},
    "required": ["vertical_domain", "key_subject", "content_theme"],
}
PAIR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"match": {"type": "boolean"}, "shared_aspect": SHORT_TEXT},
    "required": ["match", "shared_aspect"],
}
SYSTEM_PROMPT = (
    "You describe items for a cross-domain recommender. Answer with exactly one JSON object and nothing else."
)
ITEM_INSTRUCTION = (
    'Item ({domain} domain): {text}\nGive JSON with "vertical_domain" (the broad category), "key_subject" '
    '(who or what the item is about) and "content_theme" (its main theme), each a short phrase.'
)
PAIR_INSTRUCTION = (
    "Source item: {source}\nTarget item: {target}\nWould a person who liked the source item like the target "
    'item? Give JSON with "match" (true or false) and "shared_aspect" (what they share, or "none").'
)
# Few-shot turns: small models copy a single example verbatim, two contrasting ones less so.
ITEM_SHOTS = (
    (
        "source",
        "Alien (1979). Genres: Horror, Sci-Fi.",
        {
            "vertical_domain": "film",
            "key_subject": "a spaceship crew and a creature",
            "content_theme": "survival horror",
        },
    ),
    (
        "target",
        "Lipstick set, matte. Brand: Acme.",
        {"vertical_domain": "beauty", "key_subject": "lipstick", "content_theme": "make-up"},
    ),
)
PAIR_SHOTS = (
    (
        "Heat (1995). Genres: Action, Crime.",
        "Ronin (1998). Genres: Action, Crime.",
        {"match": True, "shared_aspect": "crime action"},
    ),
    ("Bambi (1942). Genres: Animation.", "Scream (1996). Genres: Horror.", {"match": False, "shared_aspect": "none"}),
)


@dataclass
class TeacherRequest:
    """One thing to reason about: an item (``kind="item"``) or a source/target pair (``kind="pair"``)."""

    record_id: str
    kind: str
    texts: tuple[str, ...]
    domain: str = ""


def item_messages(text: str, domain: str) -> list[dict[str, str]]:
    """The few-shot chat for one item."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot_domain, shot_text, answer in ITEM_SHOTS:
        messages.append({"role": "user", "content": ITEM_INSTRUCTION.format(domain=shot_domain, text=shot_text)})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    messages.append({"role": "user", "content": ITEM_INSTRUCTION.format(domain=domain, text=text)})
    return messages


def pair_messages(source: str, target: str) -> list[dict[str, str]]:
    """The few-shot chat for one source/target pair."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot_source, shot_target, answer in PAIR_SHOTS:
        messages.append({"role": "user", "content": PAIR_INSTRUCTION.format(source=shot_source, target=shot_target)})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    messages.append({"role": "user", "content": PAIR_INSTRUCTION.format(source=source, target=target)})
    return messages


def request_messages(request: TeacherRequest) -> list[dict[str, str]]:
    """The chat for a request of either kind."""
    if request.kind == "item":
        return item_messages(request.texts[0], request.domain)
    if request.kind == "pair":
        return pair_messages(request.texts[0], request.texts[1])
    raise RGCDDataError(f"request {request.record_id}: kind must be 'item' or 'pair', got {request.kind!r}")


def first_json_object(text: str) -> str:
    """The first balanced ``{...}`` in ``text`` (strings and escapes respected); ReasoningError if none."""
    span = first_json_object_text(text)
    if span is None:
        raise ReasoningError(f"no complete JSON object in the reply: {text[:120]!r}")
    return span


def parse_reasoning(text: str, kind: str = "item") -> dict[str, Any]:
    """Parse and validate a teacher reply; raises ReasoningError naming the failing field."""
    schema = ITEM_SCHEMA if kind == "item" else PAIR_SCHEMA
    try:
        record = json.loads(first_json_object(text))
    except json.JSONDecodeError as exc:
        raise ReasoningError(f"reply is not valid JSON ({exc.msg} at column {exc.colno})") from None
    try:
        jsonschema.validate(record, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ReasoningError(f"field {where}: {exc.message}") from None
    return {key: record[key] for key in schema["required"]}


def reasoning_text(record: dict[str, Any]) -> str:
    """The teacher's reasoning as the student's target text (one line per field)."""
    reasoning = record.get("reasoning") or {}
    if record.get("kind") == "pair":
        return f"match: {str(reasoning.get('match')).lower()}; shared: {reasoning.get('shared_aspect')}"
    return "; ".join(f"{key.replace('_', ' ')}: {reasoning.get(key)}" for key in ITEM_SCHEMA["required"])


def read_cache(path: str | Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Cached records by id (first wins); a torn last line is ignored (and cut off with ``repair``)."""
    return read_keyed_jsonl(path, "id", repair=repair, error=RGCDDataError, what="a teacher record")


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("ab") as handle:
        handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def run_teacher(
    requests: Sequence[TeacherRequest],
    generate: Callable[[list[dict[str, str]]], str],
    out: str | Path,
    model_name: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Ask the teacher about every request not yet in ``out``; append each validated (or rejected) reply."""
    from filelock import FileLock, Timeout

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = [r.record_id for r in requests]
    if len(set(ids)) != len(ids):
        raise RGCDDataError("teacher requests have duplicate ids")
    lock = FileLock(str(out) + ".lock")
    try:
        lock.acquire(timeout=1.0)
    except Timeout:
        raise RGCDDataError(f"{out}: another teacher process is writing this file ({out}.lock)") from None
    try:
        done = read_cache(out, repair=True)
        todo = [r for r in requests if r.record_id not in done]
        generated = valid = 0
        started = time.time()
        for request in tqdm(todo, desc="teacher", disable=not progress):
            reply_started = time.time()
            reply = generate(request_messages(request))
            record: dict[str, Any] = {
                "id": request.record_id,
                "kind": request.kind,
                "domain": request.domain,
                "texts": list(request.texts),
                "model": model_name,
                "raw": reply,
                "seconds": round(time.time() - reply_started, 3),
            }
            try:
                record["reasoning"] = parse_reasoning(reply, request.kind)
                record["valid"] = True
                valid += 1
            except ReasoningError as exc:
                record["reasoning"], record["valid"], record["error"] = None, False, str(exc)
            _append(out, record)
            generated += 1
        elapsed = time.time() - started
    finally:
        lock.release()
    return {
        "out": str(out),
        "requested": len(requests),
        "cached_before": len(requests) - len(todo),
        "generated": generated,
        "valid_generated": valid,
        "seconds": round(elapsed, 2),
        "seconds_per_item": round(elapsed / generated, 3) if generated else None,
    }


def teacher_requests(
    source_ids: Sequence[str],
    source_texts: Sequence[str],
    target_ids: Sequence[str],
    target_texts: Sequence[str],
    pairs: Sequence[tuple[int, int]] = (),
) -> list[TeacherRequest]:
    """Item requests for both domains plus pair requests (source index, target index)."""
    requests = [
        TeacherRequest(f"{domain}/{i}", "item", (t,), domain)
        for domain, ids, texts in (("source", source_ids, source_texts), ("target", target_ids, target_texts))
        for i, t in zip(ids, texts, strict=True)
    ]
    requests += [
        TeacherRequest(f"pair/{source_ids[s]}|{target_ids[t]}", "pair", (source_texts[s], target_texts[t]), "pair")
        for s, t in pairs
    ]
    return requests
