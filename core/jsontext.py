"""Find the JSON object inside a model's reply (code fences, chatter and truncation around it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def _balanced_end(text: str, start: int) -> tuple[int, int]:
    """(end index after the ``}`` that closes ``text[start]``, or -1; the depth still open at the end)."""
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1, 0
    return -1, depth


def json_object_spans(text: str) -> Iterator[str]:
    """Every balanced ``{...}`` substring, in order of its opening brace (strings and escapes respected)."""
    start = text.find("{")
    while start != -1:
        end, _ = _balanced_end(text, start)
        if end != -1:
            yield text[start:end]
        start = text.find("{", start + 1)


def first_json_object_text(text: str, *, close_truncated: bool = False) -> str | None:
    """The first balanced ``{...}`` in ``text``; None if there is none.

    With ``close_truncated``, a reply cut off by a token limit (an opening brace never closed) is returned from
    its first brace with the open braces closed, for a caller that repairs replies.
    """
    span = next(json_object_spans(text), None)
    if span is not None or not close_truncated:
        return span
    start = text.find("{")
    if start < 0:
        return None
    _, depth = _balanced_end(text, start)
    return text[start:] + "}" * depth


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first ``{...}`` in ``text`` that parses as a JSON object; None if there is none."""
    for span in json_object_spans(text):
        try:
            value = json.loads(span)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None
