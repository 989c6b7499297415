"""CLI plumbing that imports no model code: verbosity flags, logging that does not break progress bars, and
``run_cli`` (print a command's JSON result; turn a user error into one line and exit status 2)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from core.errors import UserError

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class TqdmLoggingHandler(logging.Handler):
    """Writes log records through ``tqdm.write`` so a line never lands in the middle of a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def add_verbosity_args(parser: argparse.ArgumentParser) -> None:
    """``-v`` (info; ``-vv`` debug) and ``--quiet`` (warnings and errors only, no progress bars)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars; only warnings and errors")


def configure_logging(verbose: int = 0, quiet: bool = False, default: int = logging.INFO, fmt: str = LOG_FORMAT) -> int:
    """Route the root logger through tqdm at the level the flags ask for; returns that level."""
    if quiet:
        level = logging.WARNING
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = min(default, logging.INFO)
    else:
        level = default
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, TqdmLoggingHandler):
            root.removeHandler(handler)
    handler = TqdmLoggingHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    return level


def configure_from_args(args: argparse.Namespace, default: int = logging.INFO, fmt: str = LOG_FORMAT) -> int:
    """``configure_logging`` from the ``-v``/``--quiet`` attributes of parsed arguments (absent ones count as 0)."""
    return configure_logging(getattr(args, "verbose", 0) or 0, bool(getattr(args, "quiet", False)), default, fmt)


def run_cli(command: Callable[[], Any], errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``command``; print its result as JSON on stdout; on a user error (a ``UserError``, one of ``errors``,
    or a missing file) print one line and return 2; on Ctrl-C return 130."""
    try:
        result = command()
    except (UserError, FileNotFoundError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0
