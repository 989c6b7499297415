"""The representation stage: item content embeddings split into a transferable and a domain-residual part.

z_i = [t_i ; r_i] with t_i = T(c_i) shared by both domains and r_i = R_d(c_i) for the item's domain d. Losses
(our reading of the paper's stage 2; its code is not public):

- cross-domain contrastive (InfoNCE with soft labels, both directions) on t: a source item against every
  target item, the labels its co-engagement with them by users active in both domains ("behaviour", the
  paper's behavioural guidance; cosine-normalised counts) or, for the ablation, its nearest target item by
  content ("content");
- routing: a router (linear domain classifier) learns the domain from r, while t is trained to leave the
  (frozen) router uncertain, so domain-specific signal is routed into r and out of t;
- reconstruction: a per-domain linear decoder rebuilds c from [t ; r], so r keeps what t drops;
- orthogonality: the squared cosine between t and r, so the parts do not duplicate each other.
Without the residual part (``residual=False``) only t and the contrastive + reconstruction losses remain.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from mllm.rgcd.errors import RGCDError
from recsys.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, validate_fields

logger = logging.getLogger(__name__)

DOMAINS = ("source", "target")


@dataclass
class DecompositionConfig:
    """Sizes, loss weights and optimisation of the decomposition."""

    dim: int = 32
    residual: bool = True
    temperature: float = 0.1
    contrastive_weight: float = 1.0
    routing_weight: float = 0.5
    reconstruction_weight: float = 1.0
    orthogonality_weight: float = 0.1
    steps: int = 300
    batch_size: int = 256
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        validate_fields(
            self,
            {
                "dim": AT_LEAST_ONE,
                "temperature": POSITIVE,
                "contrastive_weight": NON_NEGATIVE,
                "routing_weight": NON_NEGATIVE,
                "reconstruction_weight": NON_NEGATIVE,
                "orthogonality_weight": NON_NEGATIVE,
                "steps": NON_NEGATIVE,
                "batch_size": AT_LEAST_ONE,
                "lr": POSITIVE,
                "seed": NON_NEGATIVE,
            },
        )


def _mlp(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, 2 * out_dim), nn.GELU(), nn.Linear(2 * out_dim, out_dim))


class Decomposition(nn.Module):
    """T (shared), R_source and R_target (residual encoders), the router and per-domain decoders."""

    def __init__(self, in_dim: int, config: DecompositionConfig) -> None:
        super().__init__()
        self.config = config
        torch.manual_seed(config.seed)
        self.transferable = _mlp(in_dim, config.dim)
        part_dim = 2 * config.dim if config.residual else config.dim
        self.decoders = nn.ModuleDict({d: nn.Linear(part_dim, in_dim) for d in DOMAINS})
        if config.residual:
            self.residual = nn.ModuleDict({d: _mlp(in_dim, config.dim) for d in DOMAINS})
            self.router = nn.Linear(config.dim, len(DOMAINS))

    def parts(self, content: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(t, r) for items of one domain; r is None without the residual part."""
        t = self.transferable(content)
        r = self.residual[domain](content) if self.config.residual else None
        return t, r

    def losses(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        positives: torch.Tensor,
        source_rows: torch.Tensor,
        target_rows: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Each loss term. ``positives`` [n_source, n_target] holds the (row-normalisable) positive weights;
        the contrastive term scores a batch of source rows against every target item and a batch of target
        rows against every source item, with the positives' normalised weights as soft labels."""
        cfg = self.config
        t_s, r_s = self.parts(source, "source")
        t_t, r_t = self.parts(target, "target")
        a, b = F.normalize(t_s, dim=-1), F.normalize(t_t, dim=-1)
        forward = (
            -(
                F.normalize(positives[source_rows], p=1, dim=1)
                * F.log_softmax(a[source_rows] @ b.T / cfg.temperature, dim=1)
            )
            .sum(1)
            .mean()
        )
        backward = (
            -(
                F.normalize(positives[:, target_rows].T, p=1, dim=1)
                * F.log_softmax(b[target_rows] @ a.T / cfg.temperature, dim=1)
            )
            .sum(1)
            .mean()
        )
        terms = {"contrastive": (forward + backward) / 2}
        both_t = torch.cat([t_s, t_t])
        domains = torch.cat([torch.zeros(len(t_s)), torch.ones(len(t_t))]).long().to(both_t.device)
        if cfg.residual:
            both_r = torch.cat([r_s, r_t])
            # the router learns the domain from r and from a detached t; t is trained to leave a frozen copy of
            # the router uncertain (cross-entropy to the uniform distribution), so domain signal is routed to r
            frozen = F.linear(both_t, self.router.weight.detach(), self.router.bias.detach())
            terms["routing"] = (
                F.cross_entropy(self.router(both_r), domains)
                + F.cross_entropy(self.router(both_t.detach()), domains)
                - F.log_softmax(frozen, dim=-1).mean()
                - math.log(len(DOMAINS))  # the confusion term's floor, so a perfect routing scores 0
            )
            terms["orthogonality"] = F.cosine_similarity(both_t, both_r, dim=-1).pow(2).mean()
            rebuilt_s = self.decoders["source"](torch.cat([t_s, r_s], -1))
            rebuilt_t = self.decoders["target"](torch.cat([t_t, r_t], -1))
        else:
            rebuilt_s, rebuilt_t = self.decoders["source"](t_s), self.decoders["target"](t_t)
        terms["reconstruction"] = F.mse_loss(rebuilt_s, source) + F.mse_loss(rebuilt_t, target)
        weights = {
            "contrastive": cfg.contrastive_weight,
            "routing": cfg.routing_weight,
            "orthogonality": cfg.orthogonality_weight,
            "reconstruction": cfg.reconstruction_weight,
        }
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    @torch.no_grad()
    def export(self, content: np.ndarray, domain: str) -> dict[str, np.ndarray]:
        """The parts of every item of one domain as float32 arrays (``transferable``, ``residual``)."""
        self.eval()
        t, r = self.parts(torch.as_tensor(content, dtype=torch.float32), domain)
        out = {"transferable": t.numpy().astype(np.float32)}
        if r is not None:
            out["residual"] = r.numpy().astype(np.float32)
        return out


def standardise(
    source: np.ndarray, target: np.ndarray, target_rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale both domains' contents with statistics of their union (float32); ``target_rows``: take
    the target's statistics from these rows only (the warm items, when cold items must not shape anything)."""
    both = np.concatenate([source, target if target_rows is None else target[target_rows]])
    mean, std = both.mean(0), both.std(0) + 1e-6
    return ((source - mean) / std).astype(np.float32), ((target - mean) / std).astype(np.float32)


def _co_engagement(
    source_csr: sp.csr_matrix, target_csr: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(pair counts, source item counts, target item counts, number of users) over the users active in both."""
    source_csr, target_csr = sp.csr_matrix(source_csr, dtype=np.float32), sp.csr_matrix(target_csr, dtype=np.float32)
    source_csr.data[:] = 1.0
    target_csr.data[:] = 1.0
    both = (np.asarray(source_csr.sum(1)).ravel() > 0) & (np.asarray(target_csr.sum(1)).ravel() > 0)
    if not both.any():
        raise RGCDError("no user engaged with items of both domains: behaviour-guided positives are empty")
    keep = sp.diags(both.astype(np.float32))
    counts = np.asarray((source_csr.T @ keep @ target_csr).todense(), dtype=np.float32)
    source_pop = np.asarray((keep @ source_csr).sum(0), dtype=np.float32).ravel()
    target_pop = np.asarray((keep @ target_csr).sum(0), dtype=np.float32).ravel()
    return counts, source_pop, target_pop, int(both.sum())


def behaviour_positives(
    source_csr: sp.csr_matrix, target_csr: sp.csr_matrix, weighting: str = "lift", top_k: int = 10
) -> np.ndarray:
    """Behavioural positive weights of every (source item, target item) pair, ``[n_source, n_target]`` float32,
    from the co-engagement of the users active in both domains.

    ``weighting="lift"`` (default): the positive pointwise mutual information log(n * c_st / (c_s * c_t)),
    kept for each source item's ``top_k`` target items and each target item's ``top_k`` source items (0
    elsewhere): pairs co-engaged MORE than their popularity predicts. ``weighting="cosine"``: counts divided by
    sqrt(c_s * c_t), dense; on a dense co-engagement matrix (every pair shared by some user, as in the ML-1M
    subsample) its row-normalised soft labels are close to uniform, so they carry almost no alignment signal
    (kept for the comparison in docs/rgcd.md)."""
    counts, source_pop, target_pop, n_users = _co_engagement(source_csr, target_csr)
    if weighting == "cosine":
        return counts / (np.sqrt(source_pop)[:, None] + 1e-6) / (np.sqrt(target_pop)[None, :] + 1e-6)
    if weighting != "lift":
        raise RGCDError(f"unknown positives weighting {weighting!r}; choose lift or cosine")
    expected = np.outer(source_pop, target_pop) / max(n_users, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.where(counts > 0, np.log(counts / np.maximum(expected, 1e-12)), 0.0)
    pmi = np.maximum(pmi, 0.0).astype(np.float32)
    keep = np.zeros_like(pmi, dtype=bool)
    k_rows, k_cols = min(top_k, pmi.shape[1]), min(top_k, pmi.shape[0])
    rows = np.argpartition(-pmi, k_rows - 1, axis=1)[:, :k_rows]
    keep[np.arange(pmi.shape[0])[:, None], rows] = True
    cols = np.argpartition(-pmi, k_cols - 1, axis=0)[:k_cols, :]
    keep[cols, np.arange(pmi.shape[1])[None, :]] = True
    return np.where(keep, pmi, 0.0).astype(np.float32)


def content_positives(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The no-behaviour ablation: each source item's nearest target item by content cosine (and each target
    item's nearest source item) as its positive, ``[n_source, n_target]`` float32."""
    a = source / (np.linalg.norm(source, axis=1, keepdims=True) + 1e-8)
    b = target / (np.linalg.norm(target, axis=1, keepdims=True) + 1e-8)
    similarity = a @ b.T
    positives = np.zeros_like(similarity, dtype=np.float32)
    positives[np.arange(len(a)), similarity.argmax(1)] = 1.0
    positives[similarity.argmax(0), np.arange(len(b))] = 1.0
    return positives


def train_decomposition(
    source: np.ndarray, target: np.ndarray, positives: np.ndarray, config: DecompositionConfig
) -> tuple[Decomposition, list[dict[str, float]]]:
    """Fit the decomposition on standardised contents and a positives matrix; returns it and the loss history."""
    if source.shape[1] != target.shape[1]:
        raise RGCDError(f"source contents are {source.shape[1]}-d but target contents {target.shape[1]}-d")
    if positives.shape != (len(source), len(target)):
        raise RGCDError(f"positives has shape {positives.shape}, expected ({len(source)}, {len(target)})")
    source_rows = np.flatnonzero(positives.sum(1) > 0)
    target_rows = np.flatnonzero(positives.sum(0) > 0)
    if source_rows.size == 0:
        raise RGCDError("no positive pairs for the contrastive loss")
    model = Decomposition(source.shape[1], config)
    source_t, target_t, positives_t = torch.as_tensor(source), torch.as_tensor(target), torch.as_tensor(positives)
    source_rows_t, target_rows_t = torch.as_tensor(source_rows), torch.as_tensor(target_rows)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    model.train()
    for step in range(config.steps):
        rows_s = source_rows_t[torch.randint(len(source_rows_t), (config.batch_size,), generator=generator)]
        rows_t = target_rows_t[torch.randint(len(target_rows_t), (config.batch_size,), generator=generator)]
        terms = model.losses(source_t, target_t, positives_t, rows_s, rows_t)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        if step % 50 == 0 or step == config.steps - 1:
            history.append({"step": step, **{k: float(v.detach()) for k, v in terms.items()}})
    model.eval()
    logger.info("decomposition: %s", history[-1] if history else {})
    return model, history


def nearest_label_agreement(
    source_vectors: np.ndarray, target_vectors: np.ndarray, source_labels: np.ndarray, target_labels: np.ndarray
) -> float:
    """Share of source items whose nearest target item (cosine) has the same label: the cross-domain signal a
    part carries about a planted label (chance is about 1 / number of labels)."""
    a = source_vectors / (np.linalg.norm(source_vectors, axis=1, keepdims=True) + 1e-8)
    b = target_vectors / (np.linalg.norm(target_vectors, axis=1, keepdims=True) + 1e-8)
    return float(np.mean(target_labels[np.argmax(a @ b.T, axis=1)] == source_labels))
