"""Every CLI takes -v and --quiet (-q) with the same meaning: parsed from each CLI's own parser."""

from __future__ import annotations

import importlib

import pytest

# (module with build_parser, a minimal valid command line)
CLIS = [
    ("recsys.train", ["--model", "bpr"]),
    ("recsys.data.__main__", ["info", "ml-100k"]),
    ("recsys.carbon.__main__", ["sweep", "--checkpoint", "c", "--labels", "l.jsonl", "--out", "o"]),
    ("agents.pcf.__main__", ["label", "--catalog", "c.jsonl", "--out", "o.jsonl"]),
    ("agents.camroll.__main__", ["ask", "--user", "12", "what did I eat?"]),
    ("agents.camroll.__main__", ["threads", "--user", "12"]),
    ("mllm.generate", ["--prompt", "hi"]),
    ("mllm.serve", []),
    ("mllm.lora", ["--train", "t.jsonl", "--out", "o"]),
    ("recsys.dinosaur", ["eval", "--checkpoint", "c"]),
    ("mllm.dfpl.__main__", ["train", "--out", "o"]),
    ("agents.bayesq.__main__", ["run", "--size", "10"]),
]
# these declare the flags on the top parser, before the verb
BEFORE_VERB = {"recsys.data.__main__", "mllm.dfpl.__main__", "agents.bayesq.__main__"}


@pytest.mark.parametrize(("module", "argv"), CLIS, ids=[f"{m}:{a[0] if a else ''}" for m, a in CLIS])
def test_every_cli_takes_verbose_and_quiet(module: str, argv: list[str]) -> None:
    build_parser = importlib.import_module(module).build_parser
    before = module in BEFORE_VERB

    def parse(flag: str):
        return build_parser().parse_args([flag, *argv] if before else [*argv, flag])

    assert parse("-q").quiet is True and parse("--quiet").quiet is True
    assert parse("-v").verbose == 1 and parse("-vv").verbose == 2
