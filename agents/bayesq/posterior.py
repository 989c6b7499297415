"""The relaxed posterior over a tabular Q*, its samplers, and the exact posterior over decision rules.

Model (Gaussian prior, Gaussian relaxation of Bellman's optimality equation, one factor per observation):

    Q(s, a) ~ N(mu0, tau^2) independently,
    T_Q(s, a) := rbar(s, a) + sum_s' phat(s' | s, a) V_Q(s'),  V_Q(s') = max_a' Q(s', a'),  V_Q(terminal) = 0,
    likelihood  prod_{observed (s, a)} N(Q(s, a); T_Q(s, a), sigma^2 / n(s, a)).

This is Bellman's optimality equation Q = E[r + V_Q(s')] with the expectation taken under the empirical
transition law of the n(s, a) observations, relaxed by a Gaussian of scale sigma / sqrt(n(s, a)). As sigma -> 0
it is the exact (manifold) posterior; sigma > 0 gives a Lebesgue density. With deterministic transitions it is
the product over observations of N(r_i; Q(s_i, a_i) - V_Q(s'_i), sigma^2). One factor per (s, a), not per
observation: per-observation factors with stochastic transitions would pull V_Q(s') of the different successors
together (the double-sampling bias of Bellman-residual minimisation) and concentrate away from Q*.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from agents.bayesq.envs import is_proper
from agents.bayesq.errors import BayesQConfigError

logger = logging.getLogger(__name__)


class TransitionData:
    """Sufficient statistics of observed transitions: one row per distinct (s, a, s'), with count and reward sum."""

    def __init__(self, n_states: int, n_actions: int, capacity: int = 1024):
        self.n_states, self.n_actions, self.terminal = n_states, n_actions, n_states
        self._index: dict[tuple[int, int, int], int] = {}
        self._s = np.zeros(capacity, dtype=np.int64)
        self._a = np.zeros(capacity, dtype=np.int64)
        self._s2 = np.zeros(capacity, dtype=np.int64)
        self._n = np.zeros(capacity)
        self._r_sum = np.zeros(capacity)
        self.size = 0

    def add(self, s: int, a: int, r: float, s2: int, count: float = 1.0) -> int:
        """Record ``count`` observations of (s, a) -> s2 with reward r each; returns the row index."""
        key = (int(s), int(a), int(s2))
        row = self._index.get(key)
        if row is None:
            if not (0 <= key[0] < self.n_states and 0 <= key[1] < self.n_actions and 0 <= key[2] <= self.terminal):
                raise BayesQConfigError(f"transition {key}: state or action out of range")
            if self.size == len(self._s):
                for name in ("_s", "_a", "_s2", "_n", "_r_sum"):
                    old = getattr(self, name)
                    setattr(self, name, np.concatenate([old, np.zeros_like(old)]))
            row = self.size
            self._index[key] = row
            self._s[row], self._a[row], self._s2[row] = key
            self.size += 1
        self._n[row] += count
        self._r_sum[row] += count * r
        return row

    @property
    def s(self) -> np.ndarray:
        """State of each row."""
        return self._s[: self.size]

    @property
    def a(self) -> np.ndarray:
        """Action of each row."""
        return self._a[: self.size]

    @property
    def s2(self) -> np.ndarray:
        """Next state of each row (``terminal`` = n_states)."""
        return self._s2[: self.size]

    @property
    def n(self) -> np.ndarray:
        """Number of observations of each row."""
        return self._n[: self.size]

    @property
    def rbar(self) -> np.ndarray:
        """Mean reward of each row."""
        return self._r_sum[: self.size] / self._n[: self.size]

    def factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Observed (s, a) pairs: flat index s * A + a, count, reward sum, and each row's factor index."""
        sa = self.s * self.n_actions + self.a
        keys, row_factor = np.unique(sa, return_inverse=True)
        n = np.bincount(row_factor, self.n, minlength=len(keys))
        rsum = np.bincount(row_factor, self._r_sum[: self.size], minlength=len(keys))
        return keys, n, rsum, row_factor

    def sa_counts(self) -> np.ndarray:
        """Visits of every (s, a), shape (n_states, n_actions)."""
        flat = np.bincount(self.s * self.n_actions + self.a, self.n, minlength=self.n_states * self.n_actions)
        return flat.reshape(self.n_states, self.n_actions)


@dataclass
class RelaxedPosterior:
    """Unnormalised relaxed posterior of a tabular Q* (see the module docstring)."""

    data: TransitionData
    prior_mean: float = 0.0
    prior_sd: float = 1.0
    noise_sd: float = 0.1

    def __post_init__(self) -> None:
        if self.prior_sd <= 0 or self.noise_sd <= 0:
            raise BayesQConfigError(f"prior_sd={self.prior_sd}, noise_sd={self.noise_sd}: both must be > 0")

    @property
    def shape(self) -> tuple[int, int]:
        """(n_states, n_actions) of Q."""
        return self.data.n_states, self.data.n_actions

    def residuals(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per observed (s, a): residual Q - T_Q, its count; and the greedy action at every row's s' (chains first)."""
        d = self.data
        keys, n, rsum, row_factor = d.factors()
        V = np.concatenate([Q.max(-1), np.zeros((*Q.shape[:-2], 1))], axis=-1)
        G = np.zeros((len(keys), d.size))
        G[row_factor, np.arange(d.size)] = d.n
        target = (rsum + V[..., d.s2] @ G.T) / n
        flat = Q.reshape(*Q.shape[:-2], -1)
        greedy = Q.argmax(-1)[..., np.minimum(d.s2, d.n_states - 1)]
        return flat[..., keys] - target, n, greedy

    def log_density(self, Q: np.ndarray) -> np.ndarray:
        """Log density up to a constant; Q has shape (..., n_states, n_actions)."""
        resid, n, _ = self.residuals(Q)
        prior = ((Q - self.prior_mean) ** 2).sum((-1, -2)) / self.prior_sd**2
        return -0.5 * (prior + (n * resid**2).sum(-1) / self.noise_sd**2)

    def grad(self, Q: np.ndarray) -> np.ndarray:
        """Gradient of the log density (defined almost everywhere: the max is differentiable off ties)."""
        d = self.data
        S, A = self.shape
        Qb = Q.reshape(-1, S, A)
        C = Qb.shape[0]
        keys, _, _, row_factor = d.factors()
        resid, n, greedy_next = self.residuals(Qb)
        w = n * resid / self.noise_sd**2  # (C, J): d(-log lik)/dQ(s, a)
        offsets = (np.arange(C) * S * A)[:, None]
        g = -np.bincount((offsets + keys).ravel(), w.ravel(), minlength=C * S * A)
        live = d.s2 < d.n_states
        # dT/dV(s') = n_k / n(s, a) for row k, so row k adds n_k * resid / sigma^2 to its s' greedy action
        w_rows = d.n[live] * resid[:, row_factor[live]] / self.noise_sd**2
        idx = offsets + d.s2[live] * A + greedy_next[:, live]
        g += np.bincount(idx.ravel(), w_rows.ravel(), minlength=C * S * A)
        g = g.reshape(C, S, A) - (Qb - self.prior_mean) / self.prior_sd**2
        return g.reshape(Q.shape)

    def curvature(self) -> np.ndarray:
        """Diagonal of the negative Hessian at a generic point, bounding each coordinate's posterior precision."""
        d = self.data
        S, A = self.shape
        keys, n, _, row_factor = d.factors()
        own = np.bincount(keys, n, minlength=S * A)
        live = d.s2 < d.n_states
        pred = np.bincount(d.s2[live], d.n[live] ** 2 / n[row_factor[live]], minlength=S)
        return 1 / self.prior_sd**2 + (own.reshape(S, A) + pred[:, None] / A) / self.noise_sd**2

    def sample_prior(self, rng: np.random.Generator, size: tuple[int, ...] = ()) -> np.ndarray:
        """Draws of Q from the prior."""
        return self.prior_mean + self.prior_sd * rng.standard_normal(size + self.shape)


def empirical_q_star(
    data: TransitionData, fill: float = 0.0, tol: float = 1e-10, max_iter: int = 100_000
) -> np.ndarray:
    """Q* of the empirical MDP (mean rewards, empirical transition law); unobserved (s, a) are held at ``fill``.

    The relaxed posterior is multimodal (local modes near improper rules), so samplers start here: the mode that
    the exact (sigma -> 0) posterior keeps.
    """
    S, A = data.n_states, data.n_actions
    keys, n_f, rsum_f, f_k = data.factors()
    Q = np.full(S * A, fill)
    for _ in range(max_iter):
        V = np.append(Q.reshape(S, A).max(1), 0.0)
        new = Q.copy()
        new[keys] = (rsum_f + np.bincount(f_k, data.n * V[data.s2], minlength=len(keys))) / n_f
        if np.max(np.abs(new - Q)) < tol:
            return new.reshape(S, A)
        Q = new
    return Q.reshape(S, A)


def _truncated_standard_normal(lower: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws of Z ~ N(0, 1) conditioned on Z > lower (inverse CDF on the upper tail, stable for large lower)."""
    lower = np.clip(lower, -38.0, 38.0)
    u = rng.uniform(size=lower.shape)
    tail = special.ndtr(-lower)  # P(Z > lower)
    z = -special.ndtri(np.maximum(u * tail, 1e-320))
    return np.maximum(z, lower)


def draw_two_piece(
    a1: np.ndarray,
    b1: np.ndarray,
    pred_prec: np.ndarray,
    pred_lin: np.ndarray,
    pred_sq: np.ndarray,
    cmax: np.ndarray,
    rng: np.random.Generator,
    a2: np.ndarray | None = None,
    sqrt_a1: np.ndarray | None = None,
    sqrt_a2: np.ndarray | None = None,
    half_log_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Exact draws from the Gibbs full conditional of one Q(s, a) (elementwise over arrays).

    The density is exp(-(a1 x^2 - 2 b1 x)/2) (prior and own Bellman factors) times, from the predecessors' factors
    with u_k = Q(p_k, b_k) - rbar_k and weights n_k / sigma^2, exp(-sum w (u - max(x, c))^2 / 2): constant in x
    below c = ``cmax`` and Gaussian above it. ``pred_prec`` = sum w, ``pred_lin`` = sum w u, ``pred_sq`` =
    sum w u^2. Each piece is normalised in closed form; a piece is chosen by its mass and one truncated normal
    draw is made from it (all elements at once). ``a2`` (= a1 + pred_prec), ``sqrt_a1``, ``sqrt_a2`` and
    ``half_log_ratio`` (= log(a2 / a1) / 2) depend on the counts only; a caller that sweeps many times passes them
    precomputed.
    """
    a2 = a1 + pred_prec if a2 is None else a2
    sqrt_a1 = np.sqrt(a1) if sqrt_a1 is None else sqrt_a1
    sqrt_a2 = np.sqrt(a2) if sqrt_a2 is None else sqrt_a2
    half_log_ratio = 0.5 * np.log(a2 / a1) if half_log_ratio is None else half_log_ratio
    b2 = b1 + pred_lin
    m1, m2 = b1 / a1, b2 / a2
    finite = np.isfinite(cmax)
    cc = np.where(finite, cmax, 0.0)
    z1 = (cc - m1) * sqrt_a1  # piece 1: x < c
    z2 = (cc - m2) * sqrt_a2  # piece 2: x >= c
    # log mass of piece 1 minus piece 2; the k1 - pred_sq difference of the two exponents is c^2 w - 2 c w u
    log_ratio = (
        cc * pred_lin
        - 0.5 * cc * cc * pred_prec
        + 0.5 * (b1 * m1 - b2 * m2)
        + half_log_ratio
        + special.log_ndtr(z1)
        - special.log_ndtr(-z2)
    )
    lower = rng.uniform(size=np.shape(a1)) < np.where(finite, special.expit(log_ratio), 0.0)
    # piece 1: x = m1 - Z / sqrt(a1) with Z > -z1; piece 2: x = m2 + Z / sqrt(a2) with Z > z2 (no bound if c = -inf)
    bound = np.where(lower, -z1, np.where(finite, z2, -np.inf))
    z = _truncated_standard_normal(bound, rng)
    return np.where(lower, m1 - z / sqrt_a1, m2 + z / sqrt_a2)


class GibbsSampler:
    """Exact Gibbs sampling of the relaxed posterior for problems without self-loops.

    The full conditional of one Q(s, a) is a two-piece Gaussian: below c = max of the other actions at s the
    factors of the predecessors (p, b) do not involve it (they use c); above c they are Gaussian in it. Both pieces
    are normalised in closed form and sampled exactly (``draw_two_piece``). States of one colour share no factor
    (no observed transition between them, and never two successors of one (s, a)), so they are conditionally
    independent and a colour and an action are updated at once (vectorised).
    """

    def __init__(self, posterior: RelaxedPosterior, colors: np.ndarray, rng: np.random.Generator):
        S = posterior.shape[0]
        if colors.shape != (S,):
            raise BayesQConfigError(f"colors has shape {colors.shape}; expected ({S},)")
        self.posterior, self.colors, self.rng = posterior, np.asarray(colors), rng
        self.Q = posterior.sample_prior(rng)
        self._groups = [np.flatnonzero(self.colors == c) for c in np.unique(self.colors)]

    def _check(self) -> None:
        d = self.posterior.data
        live = d.s2 < d.n_states
        if np.any(d.s[live] == d.s2[live]):
            raise BayesQConfigError("Gibbs sampler: the data contain a self-loop; use the langevin or nuts sampler")
        if np.any(self.colors[d.s[live]] == self.colors[d.s2[live]]):
            raise BayesQConfigError("Gibbs sampler: colors must differ across every observed transition")
        _, _, _, row_factor = d.factors()
        pairs = set()
        for f, s2 in zip(row_factor[live].tolist(), d.s2[live].tolist(), strict=True):
            key = (f, int(self.colors[s2]))
            if key in pairs:
                raise BayesQConfigError("Gibbs sampler: two successors of one (s, a) share a colour")
            pairs.add(key)

    def sweep(self, n_sweeps: int = 1) -> np.ndarray:
        """Run ``n_sweeps`` full Gibbs sweeps and return the current Q (a copy)."""
        self._check()
        post, d, rng = self.posterior, self.posterior.data, self.rng
        S, A = post.shape
        tau2, sig2, mu0 = post.prior_sd**2, post.noise_sd**2, post.prior_mean
        s_k, a_k, s2_k, n_k = d.s, d.a, d.s2, d.n
        rsum_k = n_k * d.rbar
        _, n_f, rsum_f, f_k = d.factors()
        live = s2_k < S
        color_ext = np.append(self.colors, -1)
        for _ in range(n_sweeps):
            for idx in self._groups:
                c = self.colors[idx[0]]
                V = np.append(self.Q.max(1), 0.0)
                nv_f = np.bincount(f_k, n_k * V[s2_k], minlength=len(n_f))  # sum_k n_k V(s'_k) per factor
                # predecessors' factors that hold V(s) for s of this colour (all other terms fixed)
                rows = np.flatnonzero(live & (color_ext[s2_k] == c))
                f = f_k[rows]
                u = self.Q[s_k[rows], a_k[rows]] - (rsum_f[f] + nv_f[f] - n_k[rows] * V[s2_k[rows]]) / n_f[f]
                w = n_k[rows] / n_f[f]
                tgt = s2_k[rows]
                pred_prec = np.bincount(tgt, n_f[f] * w * w, minlength=S)[idx] / sig2
                pred_lin = np.bincount(tgt, n_f[f] * w * u, minlength=S)[idx] / sig2
                pred_sq = np.bincount(tgt, n_f[f] * u * u, minlength=S)[idx] / sig2
                for a in range(A):
                    own = (color_ext[s_k] == c) & (a_k == a)
                    own_prec = np.bincount(s_k[own], n_k[own], minlength=S)[idx]
                    own_lin = np.bincount(s_k[own], rsum_k[own] + n_k[own] * V[s2_k[own]], minlength=S)[idx]
                    others = np.delete(self.Q[idx], a, axis=1)
                    cmax = others.max(1) if A > 1 else np.full(len(idx), -np.inf)
                    a1 = 1 / tau2 + own_prec / sig2
                    b1 = mu0 / tau2 + own_lin / sig2
                    self.Q[idx, a] = draw_two_piece(a1, b1, pred_prec, pred_lin, pred_sq, cmax, rng)
        return self.Q.copy()

    def sample(self, n_samples: int, warmup: int = 100, thin: int = 1) -> np.ndarray:
        """``n_samples`` draws (after ``warmup`` sweeps, one every ``thin`` sweeps), shape (n, S, A)."""
        self.sweep(warmup)
        return np.stack([self.sweep(thin) for _ in range(n_samples)])


def greedy_coloring(n_states: int, s: np.ndarray, s2: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
    """Colours such that no observed transition, and no two successors of one (s, a), share a colour (greedy)."""
    neighbours: list[set[int]] = [set() for _ in range(n_states)]
    succ: dict[tuple[int, int], list[int]] = {}
    acts = np.zeros_like(s) if a is None else a
    for u, act, v in zip(s.tolist(), acts.tolist(), s2.tolist(), strict=True):
        if v < n_states and u != v:
            neighbours[u].add(v)
            neighbours[v].add(u)
            succ.setdefault((u, act), []).append(v)
    for group in succ.values():
        for v in group:
            neighbours[v].update(x for x in group if x != v)
    colors = np.full(n_states, -1, dtype=np.int64)
    for u in range(n_states):
        used = {int(colors[v]) for v in neighbours[u]}
        colors[u] = next(c for c in itertools.count() if c not in used)
    return colors


def sample_langevin(
    posterior: RelaxedPosterior,
    n_samples: int,
    rng: np.random.Generator,
    n_chains: int = 4,
    warmup: int = 1000,
    thin: int = 5,
    init: np.ndarray | None = None,
    target_accept: float = 0.574,
) -> np.ndarray:
    """Preconditioned Metropolis-adjusted Langevin (MALA), ``n_chains`` vectorised chains; returns (n, S, A).

    The preconditioner is the diagonal curvature bound of ``RelaxedPosterior.curvature``; the step size is tuned
    per chain during warmup towards ``target_accept`` (Roberts and Rosenthal's 0.574) and then frozen. Chains start
    at ``init`` (default: ``empirical_q_star``; chains started from the prior can stay in a local mode).
    """
    S, A = posterior.shape
    M = 1 / posterior.curvature()  # (S, A) inverse precision
    sqrtM = np.sqrt(M)
    start = empirical_q_star(posterior.data, posterior.prior_mean) if init is None else init
    Q = np.broadcast_to(start, (n_chains, S, A)).copy()
    logp, g = posterior.log_density(Q), posterior.grad(Q)
    h = np.full(n_chains, 0.5)
    per_chain = math.ceil(n_samples / n_chains)
    out = []
    for it in range(warmup + per_chain * thin):
        hh = h[:, None, None]
        noise = rng.standard_normal(Q.shape)
        prop = Q + 0.5 * hh**2 * M * g + hh * sqrtM * noise
        logp_p, g_p = posterior.log_density(prop), posterior.grad(prop)
        fwd = prop - Q - 0.5 * hh**2 * M * g
        bwd = Q - prop - 0.5 * hh**2 * M * g_p
        log_q_fwd = -0.5 * (fwd**2 / M).sum((1, 2)) / h**2
        log_q_bwd = -0.5 * (bwd**2 / M).sum((1, 2)) / h**2
        log_alpha = logp_p - logp + log_q_bwd - log_q_fwd
        accept = np.log(rng.uniform(size=n_chains)) < log_alpha
        Q[accept], logp[accept], g[accept] = prop[accept], logp_p[accept], g_p[accept]
        if it < warmup:
            rate = np.exp(np.minimum(log_alpha, 0.0))
            h *= np.exp((rate - target_accept) / math.sqrt(it + 1.0))
        elif (it - warmup + 1) % thin == 0:
            out.append(Q.copy())
    return np.concatenate(out, axis=0)[:n_samples] if out else np.empty((0, S, A))


def sample_nuts(
    posterior: RelaxedPosterior,
    n_samples: int,
    seed: int,
    warmup: int = 300,
    init: np.ndarray | None = None,
    max_tree_depth: int = 6,
) -> np.ndarray:
    """NUTS (Pyro's implementation, diagonal mass matrix adapted in warmup) on the relaxed posterior; (n, S, A)."""
    import pyro
    import torch
    from pyro.infer import MCMC, NUTS

    d = posterior.data
    S, A = posterior.shape
    keys, n_f, rsum_f, f_k = d.factors()
    G = np.zeros((len(keys), d.size))
    G[f_k, np.arange(d.size)] = d.n / n_f[f_k]  # T_Q = rbar(s, a) + G @ V_Q(s'_rows)
    keys_t, s2_t = torch.as_tensor(keys), torch.as_tensor(d.s2)
    G_t = torch.as_tensor(G, dtype=torch.float64)
    n_t = torch.as_tensor(n_f, dtype=torch.float64)
    rbar_t = torch.as_tensor(rsum_f / n_f, dtype=torch.float64)
    mu0, tau2, sig2 = posterior.prior_mean, posterior.prior_sd**2, posterior.noise_sd**2

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        q = params["q"]
        V = torch.cat([q.reshape(S, A).max(1).values, q.new_zeros(1)])
        resid = q[keys_t] - rbar_t - G_t @ V[s2_t]
        return 0.5 * (((q - mu0) ** 2).sum() / tau2 + (n_t * resid**2).sum() / sig2)

    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    start = empirical_q_star(posterior.data, posterior.prior_mean) if init is None else init
    kernel = NUTS(
        potential_fn=potential,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        full_mass=False,
        max_tree_depth=max_tree_depth,
    )
    mcmc = MCMC(
        kernel,
        num_samples=n_samples,
        warmup_steps=warmup,
        initial_params={"q": torch.as_tensor(start.reshape(-1), dtype=torch.float64)},
        disable_progbar=True,
    )
    mcmc.run()
    return mcmc.get_samples()["q"].numpy().reshape(n_samples, S, A)


@dataclass
class ExactRulePosterior:
    """Exact posterior over decision rules (tabular Q*, Gaussian prior, Gaussian relaxation)."""

    rules: np.ndarray  # (n_rules, S): the greedy action of every state
    weights: np.ndarray  # (n_rules,) posterior probability that Q's greedy rule is this one
    action_probs: np.ndarray  # (S, A): posterior probability that a is optimal (greedy) at s
    means: np.ndarray  # (n_rules, S, A): mean of the Gaussian that holds on the rule's region
    improper_mass: float | None  # posterior mass of improper rules (when the SSP's support is given)


def exact_rule_posterior(
    posterior: RelaxedPosterior,
    support: np.ndarray | None = None,
    max_rules: int = 4096,
    seed: int = 0,
) -> ExactRulePosterior:
    """Posterior probabilities of decision rules and of optimal actions, by enumeration of all A^S rules.

    On the region R_pi = {Q : pi is greedy for Q} the max in the likelihood is linear, V_Q(s') = Q(s', pi(s')),
    so prior x likelihood = Z_pi N(Q; m_pi, C_pi) with Z_pi the marginal likelihood of the linear-Gaussian model
    rbar(s, a) = Q(s, a) - sum_s' phat(s' | s, a) Q(s', pi(s')) + N(0, sigma^2 / n(s, a)), i.e. rbar = H_pi Q + noise.
    Hence P(pi | D) is proportional to Z_pi P_{N(m_pi, C_pi)}(D_pi Q >= 0), where D_pi
    stacks Q(s, pi(s)) - Q(s, a) for a != pi(s). The orthant probability is exact (normal CDF) in one
    dimension and computed by scipy's Genz integration (absolute error ~1e-7) in more. Exact up to that quadrature; the
    enumeration limits it to tiny problems (``max_rules``).
    """
    d = posterior.data
    S, A = posterior.shape
    n_rules = A**S
    if n_rules > max_rules:
        raise BayesQConfigError(f"exact posterior: {A}^{S} = {n_rules} decision rules exceed max_rules={max_rules}")
    dim = S * A
    tau2, sig2, mu0 = posterior.prior_sd**2, posterior.noise_sd**2, posterior.prior_mean
    keys, n_f, rsum_f, f_k = d.factors()
    K = len(keys)
    y, noise_var = rsum_f / np.maximum(n_f, 1e-300), sig2 / np.maximum(n_f, 1e-300)
    live = d.s2 < S
    rng = np.random.default_rng(seed)
    rules = np.array(list(itertools.product(range(A), repeat=S)), dtype=np.int64).reshape(n_rules, S)
    log_w = np.empty(n_rules)
    means = np.empty((n_rules, S, A))
    for j, rule in enumerate(rules):
        H = np.zeros((K, dim))
        H[np.arange(K), keys] += 1.0
        np.subtract.at(H, (f_k[live], d.s2[live] * A + rule[d.s2[live]]), d.n[live] / n_f[f_k[live]])
        cov_y = tau2 * H @ H.T + np.diag(noise_var)
        log_z = stats.multivariate_normal.logpdf(y, mean=H @ np.full(dim, mu0), cov=cov_y) if K else 0.0
        prec = np.eye(dim) / tau2 + H.T @ (H / noise_var[:, None])
        cov = np.linalg.inv(prec)
        cov = 0.5 * (cov + cov.T)
        mean = cov @ (np.full(dim, mu0) / tau2 + H.T @ (y / noise_var))
        D = _region_matrix(rule, A)
        log_region = _log_orthant(D @ mean, D @ cov @ D.T, rng)
        log_w[j] = log_z + log_region
        means[j] = mean.reshape(S, A)
    weights = np.exp(log_w - special.logsumexp(log_w))
    action_probs = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            action_probs[s, a] = weights[rules[:, s] == a].sum()
    improper = None
    if support is not None:
        proper = np.array([is_proper(support, rule) for rule in rules])
        improper = float(weights[~proper].sum())
    return ExactRulePosterior(rules, weights, action_probs, means, improper)


def _region_matrix(rule: np.ndarray, n_actions: int) -> np.ndarray:
    """Rows e_{s, rule(s)} - e_{s, a} for every state s and action a != rule(s)."""
    S = len(rule)
    rows = []
    for s in range(S):
        for a in range(n_actions):
            if a != rule[s]:
                row = np.zeros(S * n_actions)
                row[s * n_actions + rule[s]] = 1.0
                row[s * n_actions + a] = -1.0
                rows.append(row)
    return np.array(rows).reshape(-1, S * n_actions)


def _log_orthant(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> float:
    """log P(X >= 0) for X ~ N(mean, cov) (= log Phi_cov(mean))."""
    if mean.size == 0:
        return 0.0
    if mean.size == 1:
        return float(special.log_ndtr(mean[0] / math.sqrt(cov[0, 0])))
    p = stats.multivariate_normal.cdf(
        mean, mean=np.zeros_like(mean), cov=cov, abseps=1e-7, releps=1e-6, maxpts=20_000 * mean.size, rng=rng
    )
    return float(np.log(max(p, 1e-300)))


def rule_mass(samples: np.ndarray, support: np.ndarray) -> float:
    """Share of posterior samples whose greedy decision rule is improper."""
    rules = samples.argmax(-1)
    return float(np.mean([not is_proper(support, rule) for rule in rules]))
