"""SinkRec: a memory-conditioned, temporal-aware gated DeltaNet for long sequences (Zhuang et al.,
arXiv 2606.09888, "Mitigating Semantic State Sink in Long Sequence Recommendation"). No public code; this
is our implementation from the abstract and the issue's description. Linear time, constant-size state.

Each loop (``n_loops``, shared or per-loop weights) runs three steps on the token stream x [B, T, D]:

1. Conditional memory (RVQ). The local pattern of event t is the mean of the last ``memory_window``
   normalised tokens (t included) joined with the time-gap feature, projected to z_t. A stack of
   ``n_codebooks`` codebooks quantises z_t residually (greedy nearest code per level); straight-through
   gradients, codebook loss ||sg(r) - c||^2 per level plus ``commitment_weight`` * ||z - sg(z_q)||^2, and a
   dead-code guard (codes whose EMA usage falls under ``dead_code_threshold`` of the uniform rate are reset
   to residuals drawn from the current batch). The retrieved code z_q is re-injected into the stream
   (x <- x + W_r z_q, switch ``reinject``) and mapped to a memory key m_k and value m_v per head.
2. TDGD (temporal-aware, state-relation, differential gated DeltaNet), on GatedDeltaLayer's projections:
   * temporal gates (``temporal_gates``): the decay and write pre-activations get a learned per-head term
     in phi(gap) = log1p(gap / time_unit), so decay and writing depend on the time since the last event;
   * write suppression (``write_suppression``): beta_t <- beta_t * (1 - lambda_w * relu(cos(v_t, m_v_t))):
     where the memory already holds what would be written, the state writes less (lambda_w in (0, 1),
     learned per head);
   * differential readout (``readout_purification``): o_t <- o_t - lambda_r <o_t, u_t> u_t with
     u_t = m_v_t / |m_v_t|, removing the memory-aligned part of what the state reads (lambda_r learned);
   * the memory key-value pairs are exposed to the block: o_t += softmax_j(tau <q_t, m_k_j>) m_v_j over the
     last ``memory_window`` events j <= t (a local window: linear time, and a bounded ring buffer when
     streaming).
3. A feed-forward net. Residual connections and pre-norm throughout; a final LayerNorm; tied item embeddings.

Choices the paper leaves open (ours, each a config field): the local pattern (window mean + time, window 8),
3 codebooks of 256 codes, the cosine relation and the projection form of the purification, the additive
time terms, 2 loops with shared weights. Ablations: ``use_memory=False`` (TDGD with temporal gates only),
``reinject=False``, ``write_suppression=False``, ``readout_purification=False``, ``temporal_gates=False``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.delta_rule import GatedDeltaLayer
from recsys.models.gdn import FeedForward
from recsys.models.sequential import PAD, SequentialRecommender

REINJECT_GRADS = ("straight_through", "codebook", "none")


@dataclasses.dataclass
class SinkRecConfig:
    """SinkRec hyper-parameters (our defaults where the paper is open; sized for ml-100k on a CPU)."""

    hidden_dim: int = 64
    n_heads: int = 2
    n_loops: int = 2
    shared_loop_weights: bool = True
    conv_size: int = 4
    ffn_mult: int = 2
    dropout: float = 0.2
    chunk_size: int = 64
    kernel: str = "torch"  # "torch" | "fla" | "auto": who runs the chunked delta rule (as GDNConfig.kernel)
    # conditional memory
    use_memory: bool = True
    memory_window: int = 8
    n_codebooks: int = 3
    codebook_size: int = 256
    commitment_weight: float = 0.25
    memory_loss_weight: float = 1.0
    dead_code_threshold: float = 0.03  # a code is dead when its EMA usage < this fraction of the uniform rate
    usage_decay: float = 0.99
    # "random": N(0, 1/dim) codes; "data": on the first training batch each level's codes become evenly spaced
    # residuals of that batch (the local patterns' own scale; random codes can leave one code taking most rows)
    codebook_init: str = "random"
    # normalise each local pattern (zero mean, unit variance over its entries, no learned gain) before the RVQ,
    # so the codebooks quantise at a fixed scale; without it the pattern's scale is free and on the Amazon sets
    # grew through training faster than the codes followed (docs/sequential.md, "the rising RVQ loss")
    pattern_norm: bool = False
    reinject: bool = True
    # "default": torch's Linear initialisation, the codes enter the token stream at full strength from step 0;
    # "zero": W_r and its bias start at 0, so the model starts as if without re-injection and learns how much
    # of it to use (the temporal gates start at zero for the same reason)
    reinject_init: str = "default"
    # where the main loss's gradient through the re-injected codes goes: "straight_through" (the paper's VQ
    # convention: into the local pattern z, as if z itself had been added; the codes follow only through the
    # codebook loss), "codebook" (a lookup: into the chosen codes, never into z, so the main loss cannot pull
    # the pattern away from what the codebooks hold), "none" (the codes are a fixed input; only W_r learns).
    # The memory keys and values stay straight-through in every case.
    reinject_grad: str = "straight_through"
    # TDGD
    write_suppression: bool = True
    readout_purification: bool = True
    temporal_gates: bool = True
    # data
    max_len: int = 50
    loss: str = "ce"
    n_neg: int = 1
    similarity: str = "dot"  # dot | cosine (query and items L2-normalised, divided by temperature)
    temperature: float = 1.0
    train_windows: str = "all"
    time_unit: float = 86400.0  # seconds per unit of the time-gap feature log1p(gap / time_unit)

    def __post_init__(self) -> None:
        validate_fields(self)


class ResidualVQ(nn.Module):
    """Residual vector quantisation with straight-through gradients, commitment loss and dead-code revival."""

    def __init__(
        self,
        dim: int,
        n_codebooks: int,
        codebook_size: int,
        commitment_weight: float = 0.25,
        dead_code_threshold: float = 0.03,
        usage_decay: float = 0.99,
        init: str = "random",
    ) -> None:
        super().__init__()
        if init not in ("random", "data"):
            raise ValueError(f"codebook_init must be 'random' or 'data', got {init!r}")
        self.codebooks = nn.Parameter(torch.randn(n_codebooks, codebook_size, dim) * dim**-0.5)
        self.commitment_weight = commitment_weight
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.register_buffer("usage", torch.ones(n_codebooks, codebook_size))  # EMA, 1 = uniform rate
        # EMAs of what quantisation leaves (diagnostics only, not saved): the share of the pattern's energy left
        # after each level, and the pattern's mean squared entry (the scale the RVQ losses are measured at)
        self.register_buffer("relative_error", torch.full((n_codebooks,), float("nan")), persistent=False)
        self.register_buffer("pattern_energy", torch.tensor(float("nan")), persistent=False)
        # saved with the weights, so a resumed or reloaded model never re-initialises trained codes
        self.register_buffer("initialized", torch.tensor(init == "random"))
        self.revived = 0  # codes reset so far (a diagnostic)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "initialized", torch.tensor(True))  # checkpoints from before the flag
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def code_usage(self) -> dict[str, list[float]]:
        """Per level, from the EMA usage: ``perplexity`` (exp of the usage entropy; the codebook size when every
        code is used equally, 1 when one code takes every row) and ``max_share`` (the busiest code's share).
        From training batches (EMAs; NaN before the first): ``relative_error`` per level, the share of the
        pattern's energy left after quantising with levels 0..l, and ``pattern_energy``, the pattern's mean
        squared entry. The RVQ losses are mean squared errors, so they grow with ``pattern_energy`` even where
        ``relative_error`` holds: the two tell a scale drift from a worse fit."""
        share = self.usage / self.usage.sum(1, keepdim=True)
        entropy = -(share * share.clamp_min(1e-12).log()).sum(1)
        return {
            "perplexity": entropy.exp().tolist(),
            "max_share": share.max(1).values.tolist(),
            "relative_error": self.relative_error.tolist(),
            "pattern_energy": float(self.pattern_energy),
        }

    @torch.no_grad()
    def _nearest(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        book = self.codebooks[level]
        dist = residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(-1)
        return dist.argmin(-1)

    def quantize(self, z: torch.Tensor, n_levels: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(sum of the chosen codes, codes per level) for z [N, dim], without losses or updates."""
        residual = z.detach()
        total = torch.zeros_like(residual)
        codes = []
        for level in range(n_levels or self.codebooks.shape[0]):
            idx = self._nearest(residual, level)
            chosen = self.codebooks[level][idx]
            total = total + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        return total, codes

    @torch.no_grad()
    def init_from(self, z: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Data initialisation: each level's codes become residuals of ``z`` at that level, drawn with
        ``generator``, or evenly spaced rows without one (deterministic, no global RNG draw)."""
        residual = z.detach().reshape(-1, z.shape[-1])
        size = self.codebooks.shape[1]
        for level in range(self.codebooks.shape[0]):
            if generator is None:
                pick = torch.linspace(0, residual.shape[0] - 1, size).long()
            else:
                pick = torch.randint(0, residual.shape[0], (size,), generator=generator)
            self.codebooks.data[level] = residual[pick.to(residual.device)]
            residual = residual - self.codebooks[level][self._nearest(residual, level)]
        self.initialized.fill_(True)

    def forward(
        self, z: torch.Tensor, mask: torch.Tensor | None = None, return_codes: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """(straight-through quantised z, loss) for z [..., dim]; ``mask`` marks the real (non-pad) rows. With
        ``return_codes`` also the sum of the chosen codes, whose gradient reaches the codebooks, not z."""
        shape = z.shape
        flat = z.reshape(-1, shape[-1])
        keep = torch.ones(flat.shape[0], dtype=torch.bool, device=z.device) if mask is None else mask.reshape(-1)
        if self.training and not bool(self.initialized) and bool(keep.any()):
            self.init_from(flat[keep])
        residual = flat.detach()
        total = torch.zeros_like(flat)
        codebook_loss = flat.new_zeros(())
        residuals, codes = [], []
        for level in range(self.codebooks.shape[0]):
            idx = self._nearest(residual, level)
            chosen = self.codebooks[level][idx]
            if keep.any():
                codebook_loss = codebook_loss + F.mse_loss(chosen[keep], residual[keep])
            residuals.append(residual)
            codes.append(idx)
            total = total + chosen
            residual = residual - chosen.detach()
        commitment = F.mse_loss(flat[keep], total[keep].detach()) if keep.any() else flat.new_zeros(())
        loss = codebook_loss + self.commitment_weight * commitment
        if self.training and keep.any():
            self._track_usage(codes, residuals, keep)
            self._track_error(flat.detach()[keep], [*residuals[1:], residual], keep)
        quantized = flat + (total - flat).detach()  # straight-through
        if return_codes:
            return quantized.reshape(shape), loss, total.reshape(shape)
        return quantized.reshape(shape), loss

    @torch.no_grad()
    def _track_usage(self, codes: list[torch.Tensor], residuals: list[torch.Tensor], keep: torch.Tensor) -> None:
        size = self.codebooks.shape[1]
        n = int(keep.sum())
        for level, (idx, residual) in enumerate(zip(codes, residuals, strict=True)):
            rate = torch.bincount(idx[keep], minlength=size).float() * size / n
            self.usage[level].mul_(self.usage_decay).add_(rate, alpha=1 - self.usage_decay)
            dead = torch.nonzero(self.usage[level] < self.dead_code_threshold).flatten()
            if dead.numel():
                pool = residual[keep]
                # deterministic given the batch: take evenly spaced residuals (no global RNG draw)
                pick = torch.linspace(0, pool.shape[0] - 1, dead.numel(), device=pool.device).long()
                self.codebooks.data[level, dead] = pool[pick]
                self.usage[level, dead] = 1.0
                self.revived += int(dead.numel())

    @torch.no_grad()
    def _track_error(self, z: torch.Tensor, left: list[torch.Tensor], keep: torch.Tensor) -> None:
        """Update the error EMAs from the kept rows z and the residual left after each level."""
        energy = z.pow(2).sum().clamp_min(1e-12)
        error = torch.stack([r[keep].pow(2).sum() / energy for r in left])
        mean_sq = energy / z.numel()
        decay = self.usage_decay
        if torch.isnan(self.pattern_energy):  # the first batch seeds the EMAs
            self.relative_error.copy_(error)
            self.pattern_energy.copy_(mean_sq)
        else:
            self.relative_error.mul_(decay).add_(error, alpha=1 - decay)
            self.pattern_energy.mul_(decay).add_(mean_sq, alpha=1 - decay)


def _window_slots(x: torch.Tensor, width: int) -> list[torch.Tensor]:
    """The ``width`` slots of the causal window over time (dim 1), as views of one padded copy: slot j at
    step t holds x[:, t - width + 1 + j] (zeros before the start). No [B, T, width, ...] tensor is built."""
    length = x.shape[1]
    padded = F.pad(x, (0, 0) * (x.dim() - 2) + (width - 1, 0))
    return [padded[:, j : j + length] for j in range(width)]


def _window_valid(steps: torch.Tensor, width: int) -> torch.Tensor:
    """[T, width] mask: window slot j of step t holds event t - width + 1 + j, real when that is >= 0."""
    return torch.arange(width, device=steps.device)[None, :] >= (width - 1 - steps)[:, None]


class ConditionalMemory(nn.Module):
    """Local pattern -> RVQ code -> (re-injection, memory key and value per head)."""

    def __init__(self, cfg: SinkRecConfig, head_dim: int) -> None:
        super().__init__()
        dim = cfg.hidden_dim
        self.cfg = cfg
        self.head_dim = head_dim
        self.norm = nn.LayerNorm(dim)
        self.time_proj = nn.Linear(1, dim)
        self.to_pattern = nn.Linear(2 * dim, dim)
        self.rvq = ResidualVQ(
            dim,
            cfg.n_codebooks,
            cfg.codebook_size,
            cfg.commitment_weight,
            cfg.dead_code_threshold,
            cfg.usage_decay,
            cfg.codebook_init,
        )
        if cfg.reinject_init not in ("default", "zero"):
            raise ValueError(f"reinject_init must be 'default' or 'zero', got {cfg.reinject_init!r}")
        if cfg.reinject_grad not in REINJECT_GRADS:
            raise ValueError(f"reinject_grad must be one of {REINJECT_GRADS}, got {cfg.reinject_grad!r}")
        self.reinject = nn.Linear(dim, dim) if cfg.reinject else None
        if self.reinject is not None and cfg.reinject_init == "zero":
            nn.init.zeros_(self.reinject.weight)
            nn.init.zeros_(self.reinject.bias)
        self.key = nn.Linear(dim, cfg.n_heads * head_dim)
        self.value = nn.Linear(dim, cfg.n_heads * head_dim)

    def pattern(
        self, x: torch.Tensor, gaps: torch.Tensor, window_sum: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """z_t from the sum [B, T, D] of the normalised window ending at t and the gap feature."""
        count = torch.clamp(steps + 1, max=self.cfg.memory_window).to(x.dtype)  # [T]
        mean = window_sum / count[None, :, None]
        z = self.to_pattern(torch.cat([mean, self.time_proj(gaps.unsqueeze(-1))], dim=-1))
        return F.layer_norm(z, z.shape[-1:]) if self.cfg.pattern_norm else z

    def forward(self, x, gaps, mask, cache=None):
        """(x with re-injected codes, m_k [B, T, H, d], m_v [B, T, H, d], loss, new window cache)."""
        batch, length, _ = x.shape
        w = self.cfg.memory_window
        h = self.norm(x)
        if cache is None:
            steps = torch.arange(length, device=x.device)
            window_sum = sum(_window_slots(h, w))
            new_cache = None
        else:  # one step: the ring buffer holds the last w - 1 normalised tokens
            steps = cache["t"].view(1)
            window = torch.cat([cache["tokens"], h], dim=1)
            window_sum = window.sum(1, keepdim=True)
            new_cache = {"tokens": window[:, 1:], "t": cache["t"] + 1}
        z = self.pattern(h, gaps, window_sum, steps)
        z_q, loss, codes = self.rvq(z, mask, return_codes=True)
        if self.reinject is not None:
            grad = self.cfg.reinject_grad
            fed = z_q if grad == "straight_through" else codes if grad == "codebook" else codes.detach()
            x = x + self.reinject(fed)
        heads = self.cfg.n_heads
        m_k = F.normalize(self.key(z_q).view(batch, length, heads, self.head_dim), dim=-1)
        m_v = self.value(z_q).view(batch, length, heads, self.head_dim)
        return x, m_k, m_v, loss, new_cache


class TDGDBlock(nn.Module):
    """Temporal-aware, state-relation, differential gated DeltaNet mixer plus its feed-forward net."""

    def __init__(self, cfg: SinkRecConfig) -> None:
        super().__init__()
        dim = cfg.hidden_dim
        self.cfg = cfg
        self.norm = nn.LayerNorm(dim)
        self.mixer = GatedDeltaLayer(
            dim, cfg.n_heads, conv_size=cfg.conv_size, chunk_size=cfg.chunk_size, kernel=cfg.kernel
        )
        heads = cfg.n_heads
        self.memory = ConditionalMemory(cfg, self.mixer.head_dim) if cfg.use_memory else None
        if cfg.temporal_gates:  # start as plain GDN: the time terms begin at zero
            self.time_decay = nn.Parameter(torch.zeros(heads))
            self.time_write = nn.Parameter(torch.zeros(heads))
        self.suppress_logit = nn.Parameter(torch.zeros(heads))  # lambda_w = sigmoid(.)
        self.purify_logit = nn.Parameter(torch.zeros(heads))  # lambda_r = sigmoid(.)
        self.memory_temperature = nn.Parameter(torch.tensor(float(self.mixer.head_dim) ** 0.5))
        self.ffn = FeedForward(dim, cfg.ffn_mult, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def memory_readout(self, q, m_k, m_v, steps, cache=None):
        """Attention of q_t over the memory pairs of the last ``memory_window`` events; (out, new cache)."""
        w = self.cfg.memory_window
        if cache is None:
            keys, values = _window_slots(m_k, w), _window_slots(m_v, w)
            new_cache = None
        else:
            k_all = torch.cat([cache["keys"], m_k], dim=1)
            v_all = torch.cat([cache["values"], m_v], dim=1)
            keys, values = list(k_all.split(1, dim=1)), list(v_all.split(1, dim=1))
            new_cache = {"keys": k_all[:, 1:], "values": v_all[:, 1:]}
        scores = torch.stack([(q * key).sum(-1) for key in keys], dim=-1) * self.memory_temperature
        valid = _window_valid(steps, w)[None, :, None, :]
        weights = scores.masked_fill(~valid, float("-inf")).softmax(-1)  # [B, T, H, w]
        out = weights[..., 0, None] * values[0]
        for j in range(1, w):
            out = out + weights[..., j, None] * values[j]
        return out, new_cache

    def forward(self, x, gaps, mask, cache=None):
        """One loop: memory, TDGD, FFN. ``cache`` (streaming) holds the state and the ring buffers."""
        cfg = self.cfg
        new_cache: dict[str, Any] = {}
        loss = x.new_zeros(())
        m_k = m_v = None
        steps = torch.arange(x.shape[1], device=x.device) if cache is None else cache["t"].view(1)
        if self.memory is not None:
            x, m_k, m_v, loss, mem_cache = self.memory(x, gaps, mask, None if cache is None else cache["memory"])
            if mem_cache is not None:
                new_cache["memory"] = mem_cache
        y = self.norm(x)
        q, k, v, conv = self.mixer.project(y, None if cache is None else cache.get("conv"))
        a, b = self.mixer.gate_inputs(y)
        if cfg.temporal_gates:
            phi = gaps.unsqueeze(-1).to(a.dtype)
            a = a + phi * self.time_decay
            b = b + phi * self.time_write
        g, beta = self.mixer.gates(a, b)
        if m_v is not None and cfg.write_suppression:
            relation = (F.normalize(v, dim=-1) * F.normalize(m_v, dim=-1)).sum(-1)  # [B, T, H]
            beta = beta * (1 - torch.sigmoid(self.suppress_logit) * F.relu(relation))
        o, state = self.mixer.mix(q, k, v, g, beta, None if cache is None else cache["state"])
        if m_v is not None:
            if cfg.readout_purification:
                u = F.normalize(m_v.float(), dim=-1)
                o = o - torch.sigmoid(self.purify_logit)[:, None] * (o * u).sum(-1, keepdim=True) * u
            read, mem_kv = self.memory_readout(q, m_k, m_v, steps, None if cache is None else cache["memory_kv"])
            o = o + read
            if mem_kv is not None:
                new_cache["memory_kv"] = mem_kv
        x = x + self.dropout(self.mixer.output(o, y))
        x = x + self.dropout(self.ffn(x))
        if cache is not None:
            new_cache.update(state=state, t=cache["t"] + 1)
            if conv is not None:
                new_cache["conv"] = conv
        return x, loss, new_cache

    def init_cache(self, batch_size: int, device: torch.device) -> dict[str, Any]:
        """Empty streaming cache: delta-rule state, conv inputs and the memory ring buffers (window - 1)."""
        cfg = self.cfg
        base = self.mixer.init_cache(batch_size, device)
        cache: dict[str, Any] = {"state": base["state"], "t": torch.zeros((), dtype=torch.long, device=device)}
        if "conv" in base:
            cache["conv"] = base["conv"]
        if self.memory is not None:
            w, heads, d = cfg.memory_window, cfg.n_heads, self.mixer.head_dim
            cache["memory"] = {
                "tokens": torch.zeros(batch_size, w - 1, cfg.hidden_dim, device=device),
                "t": cache["t"],
            }
            cache["memory_kv"] = {
                "keys": torch.zeros(batch_size, w - 1, heads, d, device=device),
                "values": torch.zeros(batch_size, w - 1, heads, d, device=device),
            }
        return cache


@register("sinkrec")
class SinkRec(SequentialRecommender):
    """Looped [conditional memory -> TDGD -> FFN] blocks over item embeddings; score = <hidden_t, E[j]>."""

    Config = SinkRecConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 128, "epochs": 200, "patience": 10}

    def __init__(self, config: SinkRecConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        if config.memory_window < 1 or config.n_loops < 1 or config.n_codebooks < 1:
            raise ValueError("sinkrec: memory_window, n_loops and n_codebooks must be >= 1")
        dim = config.hidden_dim
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        self.dropout = nn.Dropout(config.dropout)
        n_blocks = 1 if config.shared_loop_weights else config.n_loops
        self.blocks = nn.ModuleList(TDGDBlock(config) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_embedding.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def _block(self, loop: int) -> TDGDBlock:
        return self.blocks[0 if self.config.shared_loop_weights else loop]

    def encode(self, items: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(self.item_embedding(items))
        mask = items != PAD
        aux = x.new_zeros(())
        for loop in range(self.config.n_loops):
            x, loss, _ = self._block(loop)(x, gaps, mask)
            aux = aux + loss
        return self.final_norm(x), self.config.memory_loss_weight * aux / self.config.n_loops

    def code_usage(self) -> list[dict[str, Any]] | None:
        """Each block's RVQ code usage (``ResidualVQ.code_usage``); None without memory."""
        return [b.memory.rvq.code_usage() for b in self.blocks if b.memory is not None] or None

    def epoch_diagnostics(self) -> dict[str, Any]:
        """The RVQ's code usage and quantisation error per block, logged by the Trainer each epoch."""
        usage = self.code_usage()
        return {"rvq": usage} if usage else {}

    def stream_init(self, batch_size: int = 1) -> list[dict[str, Any]]:
        device = self.item_embedding.weight.device
        return [self._block(loop).init_cache(batch_size, device) for loop in range(self.config.n_loops)]

    def stream_step(self, state, items: torch.Tensor, gaps: torch.Tensor):
        x = self.item_embedding(items).unsqueeze(1)
        gaps = gaps.view(-1, 1)
        new_state = []
        for loop in range(self.config.n_loops):
            x, _, cache = self._block(loop)(x, gaps, None, state[loop])
            new_state.append(cache)
        return self.final_norm(x)[:, 0], new_state
