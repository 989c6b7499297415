"""camroll: a conversational agent over a personal camera roll (data, hierarchical memory, tools, graph, CLI)."""

from agents.camroll.errors import CamrollDataError, CamrollError, ToolArgumentError

__all__ = ["CamrollDataError", "CamrollError", "ToolArgumentError"]
