"""The base class of every error whose message is meant for the user (bad input, not a bug)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix; a CLI prints the message on one line and exits with status 2."""
