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
from agents.bayesq.posterior import draw_two_piece

logger = logging.getLogger(__name__)

METHODS = ("bayes-q", "rlsvi", "bootstrap", "kalman-td", "gptd", "eps-greedy")


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
    """Thompson sampling from the relaxed posterior of Q*, exact Gibbs on a persistent chain per run.

    Everything in a full conditional that depends on the counts only (precisions, weights, index tables) is
    computed once per change of the data (``_prepare``), not once per sweep. Only "live" cells are swept: a cell
    with neither its own data nor an observed transition into it has the prior as its full conditional (no factor
    involves it), so one fresh prior draw per sweep is its exact Gibbs update.
    """

    def __init__(self, layout: DeepSeaLayout, batch: int, config: AgentConfig, rng: np.random.Generator):
        super().__init__(layout, batch, config, rng)
        self.Q = config.prior_mean + config.prior_sd * rng.standard_normal((batch, self.S + 1, self.A))
        self._cache: dict | None = None
        # next state per slot with the padding state S leading to itself (predecessor tables may hold S)
        self._next_padded = np.vstack([layout.next_state, np.full((1, 3), self.S)])

    def observe(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray) -> None:
        """Record one transition per run; the count-only parts of the conditionals are rebuilt before the next sweep."""
        super().observe(s, a, r, s2)
        self._cache = None

    def q_for_episode(self) -> np.ndarray:
        """The chain's state after ``gibbs_sweeps`` more sweeps with all data so far."""
        for _ in range(self.config.gibbs_sweeps):
            self.sweep()
        return self.Q[:, : self.S]

    def _prepare(self) -> dict:
        """Per colour: live cells, their predecessors and every count-only term of their full conditionals."""
        c, lay, S = self.config, self.layout, self.S
        sig2 = c.noise_sd**2
        n_f = self.n.sum(-1)  # (B, S+1, A): visits of (s, a), the factor's count
        safe_n = np.maximum(n_f, 1.0)
        r_f = self.rsum.sum(-1)
        jj = np.arange(3)[None, :]
        nT = self.n.transpose(0, 1, 3, 2)  # (B, S+1, 3, A)
        into = nT[:, lay.pred_state, jj].sum((-1, -2)) > 0  # (B, S): an observed transition ends in s
        live = ((n_f[:, :S].sum(-1) > 0) | into).any(0)
        groups = []
        for idx in lay.color_groups:
            idx = idx[live[idx]]
            ps = lay.pred_state[idx]  # (G, 3)
            n_pj = nT[:, ps, jj]  # (B, G, 3, A): factor (p, b) holds V(s) with weight n_pj / n_p
            n_p, sn_p = n_f[:, ps], safe_n[:, ps]
            w = n_pj / sn_p
            npm = np.where(n_pj > 0, n_p, 0.0) / sig2
            groups.append(
                {
                    "idx": idx,
                    "ps": ps,
                    "next_idx": lay.next_state[idx],  # (G, 3)
                    "next_ps": self._next_padded[ps],  # (G, 3, 3)
                    "n_idx": self.n[:, idx],  # (B, G, A, 3)
                    "n_ps": self.n[:, ps],  # (B, G, 3, A, 3)
                    "n_pj": n_pj,
                    "sn_p": sn_p,
                    "r_ps": r_f[:, ps],
                    "r_idx": r_f[:, idx],
                    "w": w,
                    "npm": npm,
                    "pred_prec": (npm * w * w).sum((-1, -2)),
                    "a1": 1 / c.prior_sd**2 + n_f[:, idx] / sig2,  # (B, G, A)
                }
            )
        reachable = lay.cols <= lay.rows
        return {"groups": groups, "dead": np.flatnonzero(reachable & ~live)}

    def sweep(self) -> None:
        """One Gibbs sweep over the four colours (row parity x column parity), action 0 then action 1."""
        c = self.config
        tau2, sig2, mu0 = c.prior_sd**2, c.noise_sd**2, c.prior_mean
        if self._cache is None:
            self._cache = self._prepare()
        dead = self._cache["dead"]
        if dead.size:  # exact update of cells no factor involves: a fresh prior draw
            self.Q[:, dead] = mu0 + c.prior_sd * self.rng.standard_normal((self.B, dead.size, self.A))
        V = np.zeros((self.B, self.S + 1))
        for g in self._cache["groups"]:
            idx = g["idx"]
            if not idx.size:
                continue
            V[:, : self.S] = self.Q[:, : self.S].max(-1)
            nv_idx = (g["n_idx"] * V[:, g["next_idx"]][:, :, None, :]).sum(-1)  # (B, G, A): sum_j n_j V(next_j)
            nv_ps = (g["n_ps"] * V[:, g["next_ps"]][:, :, :, None, :]).sum(-1)  # (B, G, 3, A)
            Vs = V[:, idx][:, :, None, None]
            u = self.Q[:, g["ps"]] - (g["r_ps"] + nv_ps - g["n_pj"] * Vs) / g["sn_p"]
            npm_u = g["npm"] * u
            pred_lin = (npm_u * g["w"]).sum((-1, -2))
            pred_sq = (npm_u * u).sum((-1, -2))
            b_all = mu0 / tau2 + (g["r_idx"] + nv_idx) / sig2
            for a in range(self.A):
                cmax = self.Q[:, idx, 1 - a]
                self.Q[:, idx, a] = draw_two_piece(
                    g["a1"][..., a], b_all[..., a], g["pred_prec"], pred_lin, pred_sq, cmax, self.rng
                )


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
