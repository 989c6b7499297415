"""core.provenance: the record every result file carries (commit, package versions, machine, command)."""

from __future__ import annotations

import re
from importlib import metadata

from core.provenance import command_line, environment


def test_environment_records_commit_versions_and_machine() -> None:
    env = environment(packages=("numpy", "surely-not-installed-pkg"))
    assert env["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["commit"])
    assert env["packages"] == {"numpy": metadata.version("numpy"), "surely-not-installed-pkg": None}
    assert env["python"] and env["machine"] and env["cpu_count"] >= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env["date"])


def test_benchmarks_common_delegates_to_core() -> None:
    from benchmarks import common

    assert common.environment is environment
    assert callable(common.write_results) and callable(common.print_table)


def test_command_line_names_the_program_and_its_arguments() -> None:
    assert command_line("python -m recsys.train", ["--model", "bpr"]) == "python -m recsys.train --model bpr"
