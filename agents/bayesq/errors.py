"""Errors of the Bayesian Q* package; messages name the argument or field at fault."""

from __future__ import annotations

from core.errors import UserError


class BayesQError(UserError):
    """Base class of Bayesian Q* errors."""


class BayesQConfigError(BayesQError, ValueError):
    """An argument (size, method, noise scale, sweep range ...) is invalid; the message names it."""
