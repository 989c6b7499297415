"""The layering of DESIGN.md as import-linter contracts: the real tree keeps them, and a tree with one upward
import or one cycle added (in a temporary copy) breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "retrieval", "evals", "recsys", "mllm", "agents", "benchmarks")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the tree at ``root`` (its packages first on the path, no cache)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages and pyproject.toml copied into a temporary folder (sources only)."""
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "results", "*.json", "*.png", "*.log", "*.md"),
        )
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def append(path: Path, code: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + code + "\n", encoding="utf-8")


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_copy_is_clean_before_it_is_changed(tree_copy: Path) -> None:
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_inside_a_function_breaks_the_layers(tree_copy: Path) -> None:
    append(tree_copy / "retrieval" / "embed.py", "def _upward():\n    from recsys.models import build_model\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "retrieval is not allowed to import recsys" in result.stdout
    assert "retrieval.embed -> recsys.models" in result.stdout


def test_recsys_importing_mllm_breaks_the_layers(tree_copy: Path) -> None:
    # mllm sits above recsys (SAILRec and RGCD-Rep use recsys' MF and Trainer); the reverse is upward
    append(tree_copy / "recsys" / "train.py", "def _upward():\n    from mllm.lora import LoraTrainingConfig  # noqa\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "recsys is not allowed to import mllm" in result.stdout


def test_the_bottom_metric_module_may_not_import_the_ranking_evaluator(tree_copy: Path) -> None:
    append(tree_copy / "evals" / "metrics.py", "def _upward():\n    import evals.ranking\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "evals.metrics is not allowed to import evals.ranking" in result.stdout


def test_a_cycle_between_recsys_subpackages_breaks_the_acyclic_contract(tree_copy: Path) -> None:
    # recsys.train already imports recsys.data; the reverse import closes a cycle (layers alone would allow it)
    append(tree_copy / "recsys" / "data" / "splits.py", "def _cycle():\n    from recsys.train import TrainConfig\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "No cycles are allowed in recsys" in result.stdout
