"""Errors of the PCF package; their messages name the file, line and field at fault."""

from __future__ import annotations

from core.errors import UserError


class PCFError(UserError):
    """Base class of PCF errors."""


class PCFDataError(PCFError, ValueError):
    """A reference or item catalogue is missing, malformed or inconsistent."""


class LLMAnswerError(PCFError, ValueError):
    """An LLM answer could not be parsed or failed validation (the reason is in the message)."""
