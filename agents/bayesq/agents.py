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
- ``eps-greedy``: epsilon-greedy tabular Q-learning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from agents.bayesq.errors import BayesQConfigError
from agents.bayesq.posterior import draw_two_piece

logger = logging.getLogger(__name__)

METHODS = ("bayes-q", "rlsvi", "bootstrap", "kalman-td", "eps-greedy")


@dataclass
class AgentConfig:
    """Hyper-parameters (prior and noise scales are shared by every Bayesian method)."""

    prior_mean: float = 0.0
    prior_sd: float = 1.0
    noise_sd: float = 0.1  # relaxation scale sigma (bayes-q), noise of rlsvi and kalman-td
    gibbs_sweeps: int = 10  # bayes-q: Gibbs sweeps per episode on the persistent chain
    ensemble: int = 10  # bootstrap: members
    ridge: float | None = None  # bootstrap: pull towards the prior function; default noise_sd^2 / prior_sd^2
    epsilon: float = 0.1  # eps-greedy
    learning_rate: float = 0.1  # eps-greedy


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
    """Thompson sampling from the relaxed posterior of Q*, exact Gibbs on a persistent chain per run."""

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        self.Q = config.prior_mean + config.prior_sd * rng.standard_normal((batch, self.S + 1, self.A))

    def q_for_episode(self) -> np.ndarray:
        """The chain's state after ``gibbs_sweeps`` more sweeps with all data so far."""
        for _ in range(self.config.gibbs_sweeps):
            self.sweep()
        return self.Q[:, : self.S]

    def sweep(self) -> None:
        """One Gibbs sweep over the four colours (row parity x column parity), action 0 then action 1."""
        c, lay = self.config, self.layout
        tau2, sig2, mu0 = c.prior_sd**2, c.noise_sd**2, c.prior_mean
        n_f = self.n.sum(-1)  # (B, S+1, A): visits of (s, a), the factor's count
        safe_n = np.maximum(n_f, 1.0)
        r_f = self.rsum.sum(-1)
        jj = np.arange(3)[None, :]
        nT = self.n.transpose(0, 1, 3, 2)  # (B, S+1, 3, A)
        for idx in lay.color_groups:
            V = np.concatenate([self.Q[:, : self.S].max(-1), np.zeros((self.B, 1))], axis=1)
            Vn = V[:, lay.next_state]  # (B, S, 3)
            nv_f = (self.n[:, : self.S] * Vn[:, :, None, :]).sum(-1)  # (B, S, A): sum_j n_j V(next_j)
            nv_f = np.concatenate([nv_f, np.zeros((self.B, 1, self.A))], axis=1)
            # predecessor factors (p, b) holding V(s), s in this colour, through slot j from p = pred_state[s, j]
            ps = lay.pred_state[idx]  # (G, 3)
            n_pj = nT[:, ps, jj]  # (B, G, 3, A)
            n_p, sn_p = n_f[:, ps], safe_n[:, ps]  # (B, G, 3, A)
            Vs = V[:, idx][:, :, None, None]
            u = self.Q[:, ps] - (r_f[:, ps] + nv_f[:, ps] - n_pj * Vs) / sn_p
            w = n_pj / sn_p
            involved = n_pj > 0
            pred_prec = (n_p * w * w).sum((-1, -2)) / sig2
            pred_lin = (n_p * w * u).sum((-1, -2)) / sig2
            pred_sq = np.where(involved, n_p * u * u, 0.0).sum((-1, -2)) / sig2
            own_prec = n_f[:, idx]  # (B, G, A)
            own_lin = r_f[:, idx] + nv_f[:, idx]
            for a in range(self.A):
                a1 = 1 / tau2 + own_prec[..., a] / sig2
                b1 = mu0 / tau2 + own_lin[..., a] / sig2
                cmax = self.Q[:, idx, 1 - a]
                self.Q[:, idx, a] = draw_two_piece(a1, b1, pred_prec, pred_lin, pred_sq, cmax, self.rng)


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
        "eps-greedy": EpsGreedyBatch,
    }
    if method not in classes:
        raise BayesQConfigError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    return classes[method](DeepSeaLayout(size), batch, config, np.random.default_rng(seed))
