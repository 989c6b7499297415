"""Errors of the DFPL package."""

from __future__ import annotations

from mllm.backbones import MllmError


class DfplError(MllmError, ValueError):
    """Bad DFPL input (a file, a column, a config field); the message names it."""
