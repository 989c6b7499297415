"""Shared CLI plumbing: run a command, print its JSON result, turn our errors into one clear line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (bad input, not a bug)."""
    from recsys.config import ConfigError
    from recsys.data import DataError
    from recsys.models import UnknownModelError
    from recsys.models.base import CheckpointError
    from recsys.train import TrainingError

    return (ConfigError, DataError, UnknownModelError, CheckpointError, TrainingError, FileNotFoundError)


def run_cli(command: Callable[[], Any], errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``command``; print its result as JSON on stdout; on a user error (ours, or one of ``errors``) print
    one line and return 2."""
    try:
        result = command()
    except (*user_errors(), *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0
