"""The JSON object inside a model reply: fences, chatter, strings with braces, truncation."""

from __future__ import annotations

from core.jsontext import first_json_object, first_json_object_text, json_object_spans


def test_first_object_is_found_inside_fences_and_chatter() -> None:
    reply = 'Sure! ```json\n{"a": 1, "b": {"c": [1, 2]}}\n``` and {"d": 2}'
    assert first_json_object_text(reply) == '{"a": 1, "b": {"c": [1, 2]}}'
    assert first_json_object(reply) == {"a": 1, "b": {"c": [1, 2]}}


def test_braces_and_escaped_quotes_inside_strings_do_not_count() -> None:
    reply = 'x {"text": "a } brace and \\" a quote {", "n": 3} y'
    assert first_json_object(reply) == {"text": 'a } brace and " a quote {', "n": 3}


def test_an_unclosed_stray_brace_is_skipped_for_the_next_object() -> None:
    good = '{"ok": true}'
    assert first_json_object_text("a stray { then " + good) == good
    assert list(json_object_spans("{x} {y")) == ["{x}"]


def test_first_json_object_skips_balanced_non_json_and_non_objects() -> None:
    assert first_json_object('{not json} then {"k": "v"}') == {"k": "v"}
    assert first_json_object("no braces at all") is None
    assert first_json_object_text("no braces at all") is None


def test_close_truncated_closes_a_reply_cut_off_by_the_token_limit() -> None:
    cut = '{"action": "answer", "args": {"q": "x"'
    assert first_json_object_text(cut) is None
    assert first_json_object_text(cut, close_truncated=True) == cut + "}}"
