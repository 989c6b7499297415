"""RGCD-Rep teacher stage: the reasoning parser and validator, and the resumable cache (a real kill -9)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mllm.rgcd.errors import ReasoningError
from mllm.rgcd.teach import (
    TeacherRequest,
    first_json_object,
    parse_reasoning,
    read_cache,
    reasoning_text,
    request_messages,
    run_teacher,
    teacher_requests,
)

REPO = Path(__file__).resolve().parents[2]
GOOD = '{"vertical_domain": "film", "key_subject": "a heist crew", "content_theme": "crime"}'


def test_parser_takes_the_first_balanced_object_around_chatter() -> None:
    reply = 'Sure! {"vertical_domain": "film {x}", "key_subject": "a \\"crew\\"", "content_theme": "crime"} done {}'
    assert parse_reasoning(reply) == {
        "vertical_domain": "film {x}",
        "key_subject": 'a "crew"',
        "content_theme": "crime",
    }
    assert first_json_object("a stray { then " + GOOD) == GOOD  # an unclosed brace is tried, then skipped


def test_parser_rejects_missing_objects_and_schema_violations_naming_the_field() -> None:
    with pytest.raises(ReasoningError, match="no complete JSON object"):
        parse_reasoning('{"vertical_domain": "film"')
    with pytest.raises(ReasoningError, match="content_theme"):
        parse_reasoning('{"vertical_domain": "film", "key_subject": "x"}')
    with pytest.raises(ReasoningError, match="field key_subject"):
        parse_reasoning('{"vertical_domain": "film", "key_subject": 3, "content_theme": "x"}')
    with pytest.raises(ReasoningError, match="field match"):
        parse_reasoning('{"match": "yes", "shared_aspect": "x"}', kind="pair")
    assert parse_reasoning('{"match": false, "shared_aspect": "none", "extra": 1}', kind="pair") == {
        "match": False,
        "shared_aspect": "none",
    }


def test_prompts_carry_the_item_and_the_pair() -> None:
    item = request_messages(TeacherRequest("target/1", "item", ("Heat (1995)",), "target"))
    assert item[-1]["role"] == "user" and "Heat (1995)" in item[-1]["content"] and "target" in item[-1]["content"]
    pair = request_messages(TeacherRequest("pair/a|b", "pair", ("A", "B"), "pair"))
    assert "Source item: A" in pair[-1]["content"] and "Target item: B" in pair[-1]["content"]
    assert reasoning_text({"kind": "item", "reasoning": json.loads(GOOD)}).startswith("vertical domain: film")


def _requests(n: int) -> list[TeacherRequest]:
    return teacher_requests([f"s{i}" for i in range(n)], [f"source {i}" for i in range(n)], ["t0"], ["target 0"])


def test_invalid_replies_are_cached_once_and_not_asked_again(tmp_path: Path) -> None:
    out = tmp_path / "teacher.jsonl"
    calls: list[str] = []

    def generate(messages: list[dict[str, str]]) -> str:
        calls.append(messages[-1]["content"])
        return "I cannot answer" if "source 1" in messages[-1]["content"] else GOOD

    first = run_teacher(_requests(3), generate, out, progress=False)
    assert first["generated"] == 4 and first["valid_generated"] == 3
    second = run_teacher(_requests(3), generate, out, progress=False)
    assert second["generated"] == 0 and second["cached_before"] == 4 and len(calls) == 4
    records = read_cache(out)
    assert records["source/s1"]["valid"] is False and "no complete JSON" in records["source/s1"]["error"]


def test_kill_minus_nine_mid_run_then_resume_generates_each_item_once(tmp_path: Path) -> None:
    out = tmp_path / "teacher.jsonl"
    log = tmp_path / "calls.txt"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from mllm.rgcd.teach import run_teacher, teacher_requests
        requests = teacher_requests([f"s{{i}}" for i in range(6)], [f"source {{i}}" for i in range(6)], [], [])
        calls = 0
        def generate(messages):
            global calls
            calls += 1
            with open({str(log)!r}, "a") as handle:
                handle.write(messages[-1]["content"].splitlines()[0] + "\\n")
            if calls == 4:
                with open({str(out)!r}, "ab") as handle:  # a torn half-line, as a kill inside a write leaves
                    handle.write(b'{{"id": "source/s3", "kind"')
                os.kill(os.getpid(), signal.SIGKILL)
            return {GOOD!r}
        run_teacher(requests, generate, {str(out)!r}, progress=False)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert killed.returncode == -9
    assert set(read_cache(out)) == {"source/s0", "source/s1", "source/s2"}

    resumed_calls: list[str] = []

    def generate(messages: list[dict[str, str]]) -> str:
        resumed_calls.append(messages[-1]["content"].splitlines()[0])
        return GOOD

    requests = teacher_requests([f"s{i}" for i in range(6)], [f"source {i}" for i in range(6)], [], [])
    summary = run_teacher(requests, generate, out, progress=False)
    assert summary["cached_before"] == 3 and summary["generated"] == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == [f"source/s{i}" for i in range(6)]  # each id exactly once
    written_before_kill = log.read_text().splitlines()[:3]
    assert not set(written_before_kill) & set(resumed_calls)  # nothing cached was asked again


def test_cli_turns_a_missing_teacher_cache_into_one_error_line(tmp_path: Path, capsys) -> None:
    from mllm.rgcd.__main__ import main

    status = main(["distill", "--data", "synthetic", "--teacher", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "none.jsonl" in err[0] and "no valid item records" in err[0]
