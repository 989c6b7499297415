"""The errors of agents.camroll: messages name the file, line, field or argument at fault."""

from __future__ import annotations

from core.errors import UserError


class CamrollError(UserError):
    """Base class of camroll errors (a CLI prints the message as one line and exits non-zero)."""


class CamrollDataError(CamrollError, ValueError):
    """A camera roll file is missing or malformed; the message names file, line and field."""


class ToolArgumentError(CamrollError, ValueError):
    """A tool was called with arguments that are invalid or reach outside the current user's data."""
