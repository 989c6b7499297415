"""RGCD-Rep's exceptions: each message names the file, line or field at fault."""

from __future__ import annotations

from mllm.backbones import MllmError


class RGCDError(MllmError):
    """Base class of RGCD-Rep errors."""


class RGCDDataError(RGCDError, ValueError):
    """A data file or a data-set parameter is unusable."""


class ReasoningError(RGCDError, ValueError):
    """A teacher reply is not a valid structured reasoning record."""
