"""core.cli: one line and status 2 for a user error, JSON on success, -v/--quiet levels, logs through tqdm."""

from __future__ import annotations

import argparse
import logging
import sys

import pytest

from core.cli import TqdmLoggingHandler, add_verbosity_args, configure_from_args, run_cli
from core.errors import UserError


class BadInputError(UserError, ValueError):
    pass


def test_user_error_prints_one_line_and_returns_2(capsys) -> None:
    def fail() -> None:
        raise BadInputError("data.csv:3: field 'user' missing")

    assert run_cli(fail) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: data.csv:3: field 'user' missing\n" and captured.out == ""


def test_result_is_printed_as_json_and_a_bug_is_not_swallowed(capsys) -> None:
    assert run_cli(lambda: {"ok": 1}) == 0
    assert capsys.readouterr().out == '{\n  "ok": 1\n}\n'
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda: 1 / 0)


def test_extra_error_types_are_user_errors_too(capsys) -> None:
    def fail() -> None:
        raise KeyError("no such thing")

    assert run_cli(fail, errors=(KeyError,)) == 2


def test_the_cli_helper_imports_no_model_code() -> None:
    import subprocess

    code = "import sys, core.cli; print(sorted(m for m in ('torch', 'accelerate', 'recsys') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "level"), [([], logging.INFO), (["-v"], logging.INFO), (["-vv"], logging.DEBUG), (["--quiet"], 30)]
)
def test_verbosity_flags_set_the_level(argv: list[str], level: int) -> None:
    parser = argparse.ArgumentParser()
    add_verbosity_args(parser)
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    try:
        assert configure_from_args(parser.parse_args(argv)) == level
        assert root.level == level
        assert sum(isinstance(h, TqdmLoggingHandler) for h in root.handlers) == 1
        configure_from_args(parser.parse_args(argv))  # twice: still one handler, so each line prints once
        assert sum(isinstance(h, TqdmLoggingHandler) for h in root.handlers) == 1
    finally:
        root.handlers[:] = old_handlers
        root.setLevel(old_level)


def test_quiet_and_verbose_exclude_each_other() -> None:
    parser = argparse.ArgumentParser()
    add_verbosity_args(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["-v", "--quiet"])
