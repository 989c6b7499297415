"""Kept for callers written before ``core.cli``: the CLI helper lives in the bottom layer now (no model imports)."""

from core.cli import run_cli

__all__ = ["run_cli"]
