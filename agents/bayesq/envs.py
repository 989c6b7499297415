"""Environments: bsuite's Deep Sea (deterministic and stochastic) and small stochastic shortest-path problems.

States are integers ``0 .. n_states - 1``; ``terminal`` (= ``n_states``) is the absorbing end state whose value
is 0 by definition. Rewards are maximised (an SSP's costs are negative rewards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from agents.bayesq.errors import BayesQConfigError

logger = logging.getLogger(__name__)

BSUITE_MAPPING_SEED = 42  # bsuite's deep_sea sweep fixes the action mapping seed
UNSCALED_MOVE_COST = 0.01  # bsuite: cost 0.01 / N per "right", so the optimal return is 0.99


class DeepSea:
    """bsuite's Deep Sea, written out in numpy with bsuite's random streams.

    The agent starts at (row 0, column 0) of an N x N grid and falls one row per step (N steps per episode).
    In cell (r, c) action ``mapping[r, c]`` means "right" and the other action means "left"; the mapping is
    ``RandomState(mapping_seed).binomial(1, 0.5, [N, N])``. "Right" costs 0.01 / N; "right" at column N - 1
    pays 1. The stochastic variant moves right only with probability 1 - 1/N (the cost is paid anyway) and adds
    N(0, 1) noise to the reward of the last row's two end cells. An episode is "bad" when the agent takes "left"
    while on the diagonal (row == column), as bsuite logs ``total_bad_episodes``.
    State index: ``row * N + column``; the end of the episode is the terminal state ``N * N``.
    """

    n_actions = 2

    def __init__(self, size: int, stochastic: bool = False, seed: int | None = 0, mapping_seed: int | None = None):
        if not isinstance(size, int | np.integer) or size < 2:
            raise BayesQConfigError(f"--size {size!r}: Deep Sea needs an integer size >= 2")
        self.size = int(size)
        self.stochastic = bool(stochastic)
        self.mapping_seed = BSUITE_MAPPING_SEED if mapping_seed is None else mapping_seed
        self._rng = np.random.RandomState(seed)  # bsuite draws randn (end noise) then rand (right succeeds)
        self.action_mapping = np.random.RandomState(self.mapping_seed).binomial(1, 0.5, [self.size, self.size])
        no_cost = (1 - 1 / self.size) ** (self.size - 1) if self.stochastic else 1.0
        self.bsuite_optimal_return = no_cost - UNSCALED_MOVE_COST
        self.n_states = self.size * self.size
        self.terminal = self.n_states
        self.row = 0
        self.column = 0
        self.bad_episode = False
        self.total_bad_episodes = 0
        self.denoised_return = 0.0  # treasure + move costs of the current episode, without the N(0, 1) noise

    @property
    def state(self) -> int:
        """Index of the current cell (or ``terminal`` after the last row)."""
        return self.terminal if self.row >= self.size else self.row * self.size + self.column

    def layer(self) -> np.ndarray:
        """Row of every state (Gibbs colours: transitions only link consecutive rows)."""
        return np.repeat(np.arange(self.size), self.size)

    def reset(self) -> int:
        """Start an episode at the top-left cell."""
        self.row, self.column, self.bad_episode, self.denoised_return = 0, 0, False, 0.0
        return self.state

    def step(self, action: int) -> tuple[int, float, bool]:
        """Apply bsuite's rules; returns (next state, reward, episode over)."""
        if self.row >= self.size:
            raise BayesQConfigError("DeepSea.step called after the episode ended; call reset() first")
        reward = 0.0
        action_right = action == self.action_mapping[self.row, self.column]
        if self.column == self.size - 1 and action_right:
            reward += 1.0
            self.denoised_return += 1.0
        if self.stochastic and self.row == self.size - 1 and self.column in (0, self.size - 1):
            reward += self._rng.randn()
        if action_right:
            # bsuite evaluates rand() first, so the stream is consumed even when deterministic
            if self._rng.rand() > 1 / self.size or not self.stochastic:
                self.column = min(self.column + 1, self.size - 1)
            reward -= UNSCALED_MOVE_COST / self.size
            self.denoised_return -= UNSCALED_MOVE_COST / self.size
        else:
            if self.row == self.column:
                self.bad_episode = True
            self.column = max(self.column - 1, 0)
        self.row += 1
        done = self.row == self.size
        if done and self.bad_episode:
            self.total_bad_episodes += 1
        return self.state, float(reward), done

    def to_ssp(self) -> SSP:
        """The same problem as a tabular SSP (expected rewards), for value iteration."""
        n, s_total = self.size, self.n_states
        P = np.zeros((s_total, 2, s_total + 1))
        R = np.zeros((s_total, 2))
        p_move = 1 - 1 / n if self.stochastic else 1.0
        for row in range(n):
            for col in range(n):
                s = row * n + col
                for a in range(2):
                    right = a == self.action_mapping[row, col]
                    nxt_row = row + 1
                    if right:
                        R[s, a] = -UNSCALED_MOVE_COST / n + (1.0 if col == n - 1 else 0.0)
                        targets = [(min(col + 1, n - 1), p_move), (col, 1 - p_move)]
                    else:
                        targets = [(max(col - 1, 0), 1.0)]
                    for c2, p in targets:
                        if p == 0:
                            continue
                        s2 = s_total if nxt_row == n else nxt_row * n + c2
                        P[s, a, s2] += p
        return SSP(P=P, R=R, reward_sd=0.0, start=0)  # expected rewards: the end noise has mean 0


@dataclass
class SSP:
    """A tabular stochastic shortest-path problem: ``P[s, a, s']`` over ``n_states + 1`` (last = terminal)."""

    P: np.ndarray
    R: np.ndarray
    reward_sd: float = 0.0
    start: int = 0
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0), repr=False)
    _state: int = 0

    def __post_init__(self) -> None:
        S, A = self.R.shape
        if self.P.shape != (S, A, S + 1):
            raise BayesQConfigError(f"SSP.P has shape {self.P.shape}; expected {(S, A, S + 1)} (last = terminal)")
        if not np.allclose(self.P.sum(-1), 1.0):
            raise BayesQConfigError("SSP.P: every row P[s, a, :] must sum to 1")

    @property
    def n_states(self) -> int:
        """Number of non-terminal states."""
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return self.R.shape[1]

    @property
    def terminal(self) -> int:
        """Index of the absorbing terminal state."""
        return self.n_states

    def seed(self, seed: int) -> None:
        """Reseed the sampler of transitions and reward noise."""
        self._rng = np.random.default_rng(seed)

    def reset(self) -> int:
        """Start an episode at ``start``."""
        self._state = self.start
        return self._state

    def sample(self, s: int, a: int) -> tuple[int, float]:
        """One transition from (s, a): (next state, reward)."""
        s2 = int(self._rng.choice(self.n_states + 1, p=self.P[s, a]))
        r = float(self.R[s, a] + (self.reward_sd * self._rng.standard_normal() if self.reward_sd > 0 else 0.0))
        return s2, r

    def step(self, action: int) -> tuple[int, float, bool]:
        """Move from the current state; returns (next state, reward, reached terminal)."""
        s2, r = self.sample(self._state, action)
        self._state = s2
        return s2, r, s2 == self.terminal


def value_iteration(ssp: SSP, tol: float = 1e-10, max_iter: int = 100_000) -> np.ndarray:
    """Q* of an SSP (maximising rewards) by value iteration from V = 0; raises if it does not converge."""
    V = np.zeros(ssp.n_states + 1)
    for _ in range(max_iter):
        Q = ssp.R + ssp.P @ V
        V_new = np.append(Q.max(1), 0.0)
        if np.max(np.abs(V_new - V)) < tol:
            return ssp.R + ssp.P @ V_new
        V = V_new
    raise BayesQConfigError(f"value iteration did not converge in {max_iter} iterations (no proper policy?)")


def is_proper(ssp_support: np.ndarray, rule: np.ndarray) -> bool:
    """Whether a decision rule reaches the terminal state with probability 1 from every state.

    ``ssp_support[s, a, s']`` is True where the transition is possible (last column = terminal). A rule is proper
    iff from every state the terminal state is reachable in the graph that the rule induces.
    """
    S = ssp_support.shape[0]
    edges = ssp_support[np.arange(S), rule]  # (S, S + 1)
    reach = edges[:, S].copy()
    while True:
        new = reach | (edges[:, :S] & reach[None, :]).any(1)
        if (new == reach).all():
            return bool(reach.all())
        reach = new


def random_ssp(
    n_states: int,
    n_actions: int,
    rng: np.random.Generator,
    deterministic: bool = False,
    branching: int = 2,
    reward_sd: float = 0.0,
    cost_range: tuple[float, float] = (0.1, 1.0),
) -> SSP:
    """A random SSP with at least one proper rule: action 0 at state s can move to a state < s or terminate.

    Other actions move anywhere (self-loops and cycles allowed, so improper rules exist). Rewards are
    ``-cost`` with cost uniform in ``cost_range``, so improper rules have value minus infinity.
    """
    if n_states < 1 or n_actions < 1 or branching < 1:
        raise BayesQConfigError("random_ssp: n_states, n_actions and branching must be >= 1")
    S, A = n_states, n_actions
    P = np.zeros((S, A, S + 1))
    for s in range(S):
        for a in range(A):
            if a == 0:
                choices = np.array([*range(s), S])  # lower states or terminal: proper by induction
            else:
                choices = np.arange(S + 1)
            k = 1 if deterministic else min(branching, len(choices))
            nxt = rng.choice(choices, size=k, replace=False)
            P[s, a, nxt] = rng.dirichlet(np.ones(k)) if k > 1 else 1.0
    R = -rng.uniform(*cost_range, size=(S, A))
    return SSP(P=P, R=R, reward_sd=reward_sd, start=S - 1)
