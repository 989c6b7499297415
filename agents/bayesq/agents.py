"""Agents for Deep Sea, vectorised over a batch of independent seeds (B runs step in lockstep).

Every Deep Sea episode lasts exactly N steps, so B runs of one size advance together and every array carries the
run as its first axis. Transitions are stored densely: from cell (r, c) the next cell is (r + 1, c + j - 1) for a
slot j in {0, 1, 2} (left, same column, right), or the terminal state from the last row (slot 1), so the
sufficient statistics are counts and reward sums of shape (B, S, A, 3). The agents never see the action mapping.

Methods (``METHODS``):
- ``bayes-q``: Thompson sampling from the relaxed posterior of Q* (``posterior`` module's model), drawn by exact
  Gibbs sweeps on a persistent chain (cells of one row parity and column parity are conditionally independent);
- ``rlsvi``: randomised least-squares value iteration, tabular (Osband, Van Roy and Wen 2016);
- ``bootstrap``: bootstrapped Q-learning with randomised prior functions, tabular ensemble (Osband et al. 2018);
- ``kalman-td``: Kalman temporal differences for Q* with a diagonal covariance (after Geist and Pietquin 2010);
- ``gptd``: Gaussian-process temporal differences on state-action pairs (Engel, Mannor and Meir 2003, 2005),
  tabular kernel, exact posterior in information form, one Thompson draw per episode;
- ``eps-greedy``: epsilon-greedy tabular Q-learning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from agents.bayesq.errors import BayesQConfigError
from agents.bayesq.posterior import TransitionData, draw_two_piece

logger = logging.getLogger(__name__)

METHODS = ("bayes-q", "rlsvi", "bootstrap", "kalman-td", "gptd", "eps-greedy")


@dataclass
class AgentConfig:
    """Hyper-parameters (prior and noise scales are shared by every Bayesian method)."""

    prior_mean: float = 0.0
    prior_sd: float = 1.0
    noise_sd: float = 0.1  # relaxation scale sigma (bayes-q), noise of rlsvi and kalman-td
    gibbs_sweeps: int = 10  # bayes-q: Gibbs sweeps per episode on the persistent chain
    resample_every: int = 1  # bayes-q: advance the chain and draw a new Q every k-th episode (1: every episode)
    ensemble: int = 10  # bootstrap: members
    ridge: float | None = None  # bootstrap: pull towards the prior function; default noise_sd^2 / prior_sd^2
    epsilon: float = 0.1  # eps-greedy
    learning_rate: float = 0.1  # eps-greedy

    def __post_init__(self) -> None:
        for name in ("gibbs_sweeps", "resample_every", "ensemble"):
            if getattr(self, name) < 1:
                raise BayesQConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.prior_sd <= 0 or self.noise_sd <= 0:
            raise BayesQConfigError(f"prior_sd={self.prior_sd}, noise_sd={self.noise_sd}: both must be > 0")


class DeepSeaLayout:
    """Index tables of the Deep Sea grid: next state per slot and predecessor per slot."""

    def __init__(self, size: int):
        N = size
        self.size, self.n_states = N, N * N
        S = self.n_states
        rows, cols = np.divmod(np.arange(S), N)
        self.rows, self.cols = rows, cols
        shift = np.arange(3) - 1
        nc = cols[:, None] + shift[None, :]
        self.next_state = np.where((nc >= 0) & (nc < N), (rows[:, None] + 1) * N + nc, S)
        self.next_state[rows == N - 1] = S  # every move from the last row ends the episode
        pc = cols[:, None] - shift[None, :]  # predecessor through slot j sits at column c - (j - 1)
        self.pred_state = np.where((pc >= 0) & (pc < N) & (rows[:, None] > 0), (rows[:, None] - 1) * N + pc, S)
        # Gibbs colours: rows alternate (own and predecessor factors link consecutive rows) and columns alternate
        # (the two successors of a stochastic "right", columns c and c + 1, share one factor). Cells right of the
        # diagonal are unreachable from (0, 0): no factor ever involves them, so they are not swept.
        reachable = cols <= rows
        self.color_groups = [
            np.flatnonzero(reachable & (rows % 2 == p) & (cols % 2 == q)) for p in (0, 1) for q in (0, 1)
        ]
        self.row_states = [np.arange(r * N, (r + 1) * N) for r in range(N)]

    def slot(self, s: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """Slot of observed transitions s -> s2 (1 for the terminal state)."""
        return np.where(s2 >= self.n_states, 1, s2 % self.size - s % self.size + 1)


class BatchAgent:
    """Base: dense statistics, a per-episode greedy policy per run, lockstep acting."""

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        self.layout, self.B, self.config, self.rng = layout, batch, config, rng
        S, A = layout.n_states, 2
        self.S, self.A = S, A
        self.n = np.zeros((batch, S + 1, A, 3))  # one padding state (index S) with no data
        self.rsum = np.zeros((batch, S + 1, A, 3))
        self.policy = rng.integers(A, size=(batch, S))
        self._b = np.arange(batch)

    def q_for_episode(self) -> np.ndarray:
        """Action values (B, S, A) to act on in the next episode."""
        raise NotImplementedError

    def begin_episode(self) -> None:
        """Draw or compute the Q of every run for the coming episode; act greedily on it (random ties)."""
        Q = self.q_for_episode()
        self.policy = (Q + 1e-12 * self.rng.random(Q.shape)).argmax(-1)

    def act(self, states: np.ndarray) -> np.ndarray:
        """Actions of the B runs."""
        return self.policy[self._b, states]

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """Record one transition per run."""
        j = self.layout.slot(s, s2)
        self.n[self._b, s, a, j] += 1.0
        self.rsum[self._b, s, a, j] += r

    def transition_data(self, b: int = 0) -> tuple[TransitionData, np.ndarray]:
        """Run ``b``'s data as ``TransitionData`` over the cells reachable from (0, 0), relabelled 0..R-1.

        Returns the data and the reachable cells' grid indices (cell i of the data is grid cell ``cells[i]``);
        the terminal state is R. For checks against ``exact_rule_posterior`` on tiny seas.
        """
        lay = self.layout
        cells = np.flatnonzero(lay.cols <= lay.rows)
        label = np.full(self.S + 1, cells.size)
        label[cells] = np.arange(cells.size)
        data = TransitionData(cells.size, self.A)
        for s, a, j in zip(*np.nonzero(self.n[b, : self.S]), strict=True):
            count = self.n[b, s, a, j]
            data.add(label[s], a, self.rsum[b, s, a, j] / count, label[lay.next_state[s, j]], count=count)
        return data, cells

    def _backward(
        self,
        weight: np.ndarray,
        rsum: np.ndarray,
        base: np.ndarray,
        shrink_to: np.ndarray,
        shrink: float,
        noise: np.ndarray,
    ) -> np.ndarray:
        """Backward induction of Q = (shrink * shrink_to + sum_j (rsum + w V(next_j))) / (shrink + W) + noise.

        (s, a) without data keep ``base``. Exact in one pass since rows only lead to the next row.
        """
        lay = self.layout
        Q = base.copy()
        V = np.zeros((self.B, self.S + 1))
        for r in range(lay.size - 1, -1, -1):
            st = lay.row_states[r]
            w = weight[:, st]  # (B, N, A, 3)
            Vn = V[:, lay.next_state[st]]  # (B, N, 3)
            target = (rsum[:, st] + w * Vn[:, :, None, :]).sum(-1)
            W = w.sum(-1)
            fitted = (shrink * shrink_to[:, st] + target) / (shrink + W) + noise[:, st]
            Q[:, st] = np.where(W > 0, fitted, base[:, st])
            V[:, st] = Q[:, st].max(-1)
        return Q


class BayesQBatch(BatchAgent):
    """Thompson sampling from the relaxed posterior of Q*, exact Gibbs on a persistent chain per run.

    Everything in a full conditional that depends on the counts only (precisions, weights, square roots and logs
    of the precisions, index tables) is computed once per change of the data (``_prepare``), not once per sweep.
    Only "live" cells are swept: a cell with neither its own data nor an observed transition into it has the prior
    as its full conditional (no factor involves it), so one fresh prior draw per sweep is its exact Gibbs update.
    A sweep computes every factor's Bellman target once per colour (three slot terms, no small-axis reductions).
    With ``resample_every`` k > 1 the chain advances (``gibbs_sweeps`` sweeps) and a new Q is drawn only before
    episodes 1, k + 1, 2k + 1, ...; the episodes in between act on the last draw.
    """

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        self.Q = config.prior_mean + config.prior_sd * rng.standard_normal((batch, self.S + 1, self.A))
        self._cache: dict | None = None
        self._episode = 0
        # next state per slot with the padding state S leading to itself (predecessor tables may hold S)
        self._next_padded = np.vstack([layout.next_state, np.full((1, 3), self.S)])

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """Record one transition per run; the count-only parts of the conditionals are rebuilt before the next sweep."""
        super().observe(s, a, r, s2)
        self._cache = None

    def q_for_episode(self) -> np.ndarray:
        """The chain's state after ``gibbs_sweeps`` more sweeps with all data so far (every ``resample_every``-th
        episode; the last draw otherwise)."""
        if self._episode % self.config.resample_every == 0:
            for _ in range(self.config.gibbs_sweeps):
                self.sweep()
        self._episode += 1
        return self.Q[:, : self.S]

    def _prepare(self) -> dict:
        """Compact tables over the live cells (ordered by colour) and every count-only term of their conditionals.

        Index L (the number of live cells) is a padding cell with no data and V = 0: successors and predecessors
        that are not live map there (their counts towards live cells are zero, so they never enter a factor).
        """
        c, lay, S, B, A = self.config, self.layout, self.S, self.B, self.A
        sig2 = c.noise_sd**2
        n_f = self.n.sum(-1)  # (B, S+1, A): visits of (s, a), the factor's count
        jj = np.arange(3)[None, :]
        nT = self.n.transpose(0, 1, 3, 2)  # (B, S+1, 3, A)
        into = nT[:, lay.pred_state, jj].sum((-1, -2)) > 0  # (B, S): an observed transition ends in s
        live = ((n_f[:, :S].sum(-1) > 0) | into).any(0)
        by_colour = [idx[live[idx]] for idx in lay.color_groups]
        cells = np.concatenate(by_colour)
        L = cells.size
        compact = np.full(S + 1, L)  # full state -> compact index (L = padding)
        compact[cells] = np.arange(L)
        pad = np.zeros((B, 1, A))
        n_c = np.concatenate([self.n[:, cells], np.zeros((B, 1, A, 3))], axis=1)  # (B, L+1, A, 3)
        nf_c = n_c.sum(-1)
        groups, lo = [], 0
        for idx in by_colour:
            G = idx.size
            ps = compact[lay.pred_state[idx]]  # (G, 3) compact predecessors
            n_pj = nT[:, lay.pred_state[idx], jj]  # (B, G, 3, A): factor (p, b) holds V(s) with weight n_pj / n_p
            n_p = n_f[:, lay.pred_state[idx]]
            w = n_pj / np.maximum(n_p, 1.0)
            npm = np.where(n_pj > 0, n_p, 0.0) / sig2
            pred_prec = (npm * w * w).reshape(B, G, 3 * A).sum(-1)
            a1 = 1 / c.prior_sd**2 + n_f[:, idx] / sig2  # (B, G, A)
            a2 = a1 + pred_prec[..., None]
            groups.append(
                {
                    "slice": slice(lo, lo + G),
                    "ps": ps,
                    "w": w.reshape(B, G, 3 * A),  # predecessor slot x action, flattened
                    "npm": npm.reshape(B, G, 3 * A),
                    "pred_prec": pred_prec,
                    "a1": a1,
                    "a2": a2,
                    "sqrt_a1": np.sqrt(a1),
                    "sqrt_a2": np.sqrt(a2),
                    "half_log_ratio": 0.5 * np.log(a2 / a1),
                }
            )
            lo += G
        reachable = lay.cols <= lay.rows
        nxt = np.vstack([compact[lay.next_state[cells]], np.full((1, 3), L)])  # (L+1, 3) compact successors
        return {
            "cells": cells,
            "groups": groups,
            "dead": np.flatnonzero(reachable & ~live),
            "next": [nxt[:, j] for j in range(3)],
            "n_slots": [np.ascontiguousarray(n_c[..., j]) for j in range(3)],  # (B, L+1, A) each
            "r_f": np.concatenate([self.rsum[:, cells].sum(-1), pad], axis=1),
            "inv_n": 1 / np.maximum(nf_c, 1.0),
        }

    def sweep(self) -> None:
        """One Gibbs sweep over the four colours (row parity x column parity), action 0 then action 1."""
        c = self.config
        tau2, sig2, mu0 = c.prior_sd**2, c.noise_sd**2, c.prior_mean
        if self._cache is None:
            self._cache = self._prepare()
        cache = self._cache
        dead, cells = cache["dead"], cache["cells"]
        if dead.size:  # exact update of cells no factor involves: a fresh prior draw
            self.Q[:, dead] = mu0 + c.prior_sd * self.rng.standard_normal((self.B, dead.size, self.A))
        B, L = self.B, cells.size
        Q = np.zeros((B, L + 1, self.A))  # live cells, then the padding cell (Q = 0, no data)
        Q[:, :L] = self.Q[:, cells]
        V = np.zeros((B, L + 1))
        for g in cache["groups"]:
            sl = g["slice"]
            G = sl.stop - sl.start
            if not G:
                continue
            V[:, :L] = Q[:, :L, 0]
            for a in range(1, self.A):
                np.maximum(V[:, :L], Q[:, :L, a], out=V[:, :L])
            # every factor's target r + sum_j n_j V(next_j), and its residual Q - T_Q (0 weight where no data)
            target = cache["r_f"].copy()
            for n_j, nxt_j in zip(cache["n_slots"], cache["next"], strict=True):
                target += n_j * V[:, nxt_j, None]
            resid = Q - target * cache["inv_n"]
            # predecessor factor (p, b) without V(s): u = resid + w V(s)
            u = resid[:, g["ps"]].reshape(B, G, -1) + g["w"] * V[:, sl, None]
            npm_u = g["npm"] * u
            pred_lin = np.einsum("bgk,bgk->bg", npm_u, g["w"])
            pred_sq = np.einsum("bgk,bgk->bg", npm_u, u)
            b_all = mu0 / tau2 + target[:, sl] / sig2
            for a in range(self.A):
                Q[:, sl, a] = draw_two_piece(
                    g["a1"][..., a],
                    b_all[..., a],
                    g["pred_prec"],
                    pred_lin,
                    pred_sq,
                    Q[:, sl, 1 - a],
                    self.rng,
                    a2=g["a2"][..., a],
                    sqrt_a1=g["sqrt_a1"][..., a],
                    sqrt_a2=g["sqrt_a2"][..., a],
                    half_log_ratio=g["half_log_ratio"][..., a],
                )
        self.Q[:, cells] = Q[:, :L]


class RLSVIBatch(BatchAgent):
    """RLSVI: Bayesian regression of r + V(s') per (s, a) with prior N(mu0, tau^2), perturbed by posterior noise."""

    def q_for_episode(self) -> np.ndarray:
        """One randomised backward pass."""
        c = self.config
        z = self.rng.standard_normal((self.B, self.S + 1, self.A))
        base = c.prior_mean + c.prior_sd * z
        counts = self.n.sum(-1)
        post_sd = 1 / np.sqrt(1 / c.prior_sd**2 + counts / c.noise_sd**2)
        shrink = c.noise_sd**2 / c.prior_sd**2
        Q = self._backward(self.n, self.rsum, base, np.full_like(base, c.prior_mean), shrink, post_sd * z)
        return Q[:, : self.S]


class BootstrapBatch(BatchAgent):
    """Ensemble of K tabular Q-functions, each = prior function + ridge fit on a Bernoulli(1/2) bootstrap mask."""

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        K = config.ensemble
        self.priors = config.prior_mean + config.prior_sd * rng.standard_normal((batch, K, self.S + 1, self.A))
        self.wn = np.zeros((batch, K, self.S + 1, self.A, 3))
        self.wr = np.zeros((batch, K, self.S + 1, self.A, 3))

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """Record the transition for every member with weight 2 x Bernoulli(1/2)."""
        super().observe(s, a, r, s2)
        j = self.layout.slot(s, s2)
        mask = 2.0 * (self.rng.random((self.B, self.config.ensemble)) < 0.5)
        self.wn[self._b, :, s, a, j] += mask
        self.wr[self._b, :, s, a, j] += mask * r[:, None]

    def q_for_episode(self) -> np.ndarray:
        """The Q of one member per run, drawn at random."""
        c = self.config
        k = self.rng.integers(c.ensemble, size=self.B)
        prior = self.priors[self._b, k]
        ridge = c.ridge if c.ridge is not None else (c.noise_sd / c.prior_sd) ** 2
        Q = self._backward(self.wn[self._b, k], self.wr[self._b, k], prior, prior, ridge, np.zeros_like(prior))
        return Q[:, : self.S]


class KalmanTDBatch(BatchAgent):
    """Kalman TD for Q*, diagonal covariance: r + V(s') = Q(s, a) + noise, the max linearised at the mean.

    Observation variance sigma^2 + Var Q(s', a*) with a* the greedy action of the mean at s'. Thompson sampling from
    the diagonal Gaussian once per episode. TD-based: it bootstraps from the current estimate, one step at a time.
    """

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        self.mean = np.full((batch, self.S + 1, self.A), config.prior_mean)
        self.var = np.full((batch, self.S + 1, self.A), config.prior_sd**2)
        self.mean[:, self.S] = 0.0  # terminal
        self.var[:, self.S] = 0.0

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """One Kalman update per run."""
        super().observe(s, a, r, s2)
        b = self._b
        best = self.mean[b, s2].argmax(-1)
        target = r + self.mean[b, s2, best]
        gain = self.var[b, s, a] / (self.var[b, s, a] + self.config.noise_sd**2 + self.var[b, s2, best])
        self.mean[b, s, a] += gain * (target - self.mean[b, s, a])
        self.var[b, s, a] *= 1 - gain

    def q_for_episode(self) -> np.ndarray:
        """A draw from the diagonal Gaussian."""
        Q = self.mean + np.sqrt(self.var) * self.rng.standard_normal(self.mean.shape)
        return Q[:, : self.S]


class GPTDBatch(BatchAgent):
    """GPTD on state-action pairs (GP-SARSA): r_t = Q(x_t) - Q(x_{t+1}) + noise, a GP prior with a tabular kernel.

    Engel, Mannor and Meir (2003) model the rewards along a trajectory as R = H Q + N with H the temporal-difference
    matrix (rows e_{x_t} - gamma e_{x_{t+1}}; gamma = 1 and Q(terminal) = 0 on Deep Sea) and white noise N of
    variance sigma^2; their 2005 paper applies it to state-action pairs x = (s, a), where x_{t+1} uses the action
    actually taken (so it learns the value of the policies followed, TD-style, not Q* by a max). With the tabular
    kernel k(x, x') = tau^2 1[x = x'] the GP posterior over the table is Gaussian with precision
    P = I / tau^2 + H^T H / sigma^2; the posterior is kept in this information form (sufficient statistics: the
    count and reward sum of each observed pair (x_t, x_{t+1})) and a Thompson draw per episode is one sparse solve,
    Q = P^-1 (mu0 / tau^2 + z / tau + H^T (r + sigma e) / sigma^2) with z, e standard normal (perturb-then-solve:
    an exact draw from N(P^-1 b, P^-1)). ``posterior`` returns the mean and covariance for tests.
    """

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        self.dim = self.S * self.A  # pair index x = s * A + a; the terminal pair is self.dim (value 0)
        self.pairs: list[dict[tuple[int, int], list[float]]] = [{} for _ in range(batch)]
        self._pending: list[tuple[int, float] | None] = [None] * batch  # (x_t, r_t) waiting for x_{t+1}

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """Close the previous step's pair with this step's (s, a); a move into the terminal state closes its own."""
        super().observe(s, a, r, s2)
        for b in range(self.B):
            x = int(s[b]) * self.A + int(a[b])
            pending = self._pending[b]
            if pending is not None:
                self._add(b, pending[0], x, pending[1])
            if s2[b] >= self.S:
                self._add(b, x, self.dim, float(r[b]))
                self._pending[b] = None
            else:
                self._pending[b] = (x, float(r[b]))

    def _add(self, b: int, x: int, x_next: int, reward: float) -> None:
        stats = self.pairs[b].setdefault((x, x_next), [0.0, 0.0])
        stats[0] += 1.0
        stats[1] += reward

    def _system(self, b: int, compact: bool = False) -> tuple[sparse.csc_matrix, np.ndarray, np.ndarray, np.ndarray]:
        """P (sparse), the data term H^T r / sigma^2, the pairs' rows of H (as index arrays) and their counts.

        ``compact``: only the pairs that occur in the data (the rest have the prior as posterior, independent of
        them); returns their indices as the last element instead of the counts' index space being all pairs.
        """
        c = self.config
        sig2 = c.noise_sd**2
        keys = np.array(list(self.pairs[b]), dtype=np.int64).reshape(-1, 2)
        vals = np.array(list(self.pairs[b].values())).reshape(-1, 2)
        x, xn, n, rs = keys[:, 0], keys[:, 1], vals[:, 0], vals[:, 1]
        inner = xn < self.dim  # H row = e_x - e_x' (the terminal pair has value 0: e_x only)
        active = np.unique(np.concatenate([x, xn[inner]])) if compact else np.arange(self.dim)
        x, xn = np.searchsorted(active, x), np.where(inner, np.searchsorted(active, np.minimum(xn, self.dim - 1)), -1)
        dim = active.size
        rows = np.concatenate([x, xn[inner], x[inner], xn[inner], np.arange(dim)])
        cols = np.concatenate([x, xn[inner], xn[inner], x[inner], np.arange(dim)])
        data = np.concatenate(
            [n / sig2, n[inner] / sig2, -n[inner] / sig2, -n[inner] / sig2, np.full(dim, 1 / c.prior_sd**2)]
        )
        P = sparse.csc_matrix((data, (rows, cols)), shape=(dim, dim))  # duplicates are summed
        h_r = np.bincount(x, rs, dim) - np.bincount(xn[inner], rs[inner], dim)
        return P, h_r / sig2, (x, xn, inner, n), active

    def posterior(self, b: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and covariance of run ``b``'s Q table (flattened over (s, a)); dense, for small problems."""
        c = self.config
        P, h_r, _, _ = self._system(b)
        cov = np.linalg.inv(P.toarray())
        return cov @ (c.prior_mean / c.prior_sd**2 + h_r), cov

    def q_for_episode(self) -> np.ndarray:
        """One exact posterior draw per run (perturb-then-solve on the pairs with data; prior draws elsewhere)."""
        c = self.config
        Q = c.prior_mean + c.prior_sd * self.rng.standard_normal((self.B, self.dim))
        for b in range(self.B):
            if not self.pairs[b]:
                continue
            P, h_r, (x, xn, inner, n), active = self._system(b, compact=True)
            e = np.sqrt(n) * self.rng.standard_normal(n.size) / c.noise_sd  # sum of n iid N(0, 1/sigma^2)
            h_e = np.bincount(x, e, active.size) - np.bincount(xn[inner], e[inner], active.size)
            z = self.rng.standard_normal(active.size)
            rhs = c.prior_mean / c.prior_sd**2 + z / c.prior_sd + h_r + h_e
            Q[b, active] = spsolve(P, rhs)
        return Q.reshape(self.B, self.S, self.A)


class EpsGreedyBatch(BatchAgent):
    """Epsilon-greedy tabular Q-learning (Q starts at 0, constant learning rate)."""

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        self.Q = np.zeros((batch, self.S + 1, self.A))

    def q_for_episode(self) -> np.ndarray:
        """The current table."""
        return self.Q[:, : self.S]

    def act(self, states: np.ndarray) -> np.ndarray:
        """Greedy actions, each replaced by a random one with probability epsilon."""
        q = self.Q[self._b, states]
        greedy = (q + 1e-12 * self.rng.random(q.shape)).argmax(-1)
        explore = self.rng.random(self.B) < self.config.epsilon
        return np.where(explore, self.rng.integers(self.A, size=self.B), greedy)

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """Q-learning update."""
        b = self._b
        target = r + self.Q[b, s2].max(-1)
        self.Q[b, s, a] += self.config.learning_rate * (target - self.Q[b, s, a])


def make_agent(method: str, size: int, batch: int, config: AgentConfig, seed: int) -> BatchAgent:
    """Build a batched Deep Sea agent by name (one of ``METHODS``)."""
    classes = {
        "bayes-q": BayesQBatch,
        "rlsvi": RLSVIBatch,
        "bootstrap": BootstrapBatch,
        "kalman-td": KalmanTDBatch,
        "gptd": GPTDBatch,
        "eps-greedy": EpsGreedyBatch,
    }
    if method not in classes:
        raise BayesQConfigError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    return classes[method](DeepSeaLayout(size), batch, config, np.random.default_rng(seed))
