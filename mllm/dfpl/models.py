"""DFPL and the missing-modality baselines, one readable class each, behind one interface.

Every model takes a batch from :meth:`mllm.dfpl.data.MultimodalData.batch` and returns ``{"logits": ...}``
from ``forward``; ``loss(batch)`` returns the total training loss and its named parts. Encoders run on the
present rows only (:func:`mllm.dfpl.encoders.encode_present`), so a missing input is never read.

DFPL (arXiv 2606.05455) as built here (no public code; our reading of the method):

- **SSPM** shared prototypes ``P_s`` (one set for both modalities) and specific prototypes ``P_img``,
  ``P_tab`` attend over the modality's tokens (prototypes are queries, cosine / temperature), giving per-sample
  prototype representations ``Z``. Losses: compactness (tokens near their soft-assigned prototype), diversity
  (squared off-diagonal cosine of all prototypes: no collapse) and disentanglement (squared cosine between a
  sample's shared and specific prototype representations).
- **PFA** on samples with both modalities: prototype-level distribution matching of the shared
  representations (per-prototype batch mean and std matching plus paired cosine), and prototype-to-class
  semantic alignment (symmetric KL between the modalities' prototype-to-class affinity distributions, with the
  class anchors trained by a cross-entropy on each modality's prototype-to-class scores).
- **CMA** class-aware aggregation: each class has a query that attends over the available evidence, global
  (pooled image tokens, table [CLS]) and prototype level (shared prototypes fused over the present modalities,
  specific prototypes of each present modality); the class logit scores its own aggregated evidence. Its loss
  is deep supervision: the same aggregation restricted to the global level and to the prototype level each
  gets a cross-entropy. Without CMA, a linear head reads the mean of the available evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mllm.dfpl.data import TableSchema
from mllm.dfpl.encoders import ImageEncoder, TabularEncoder, encode_present

MODELS: dict[str, type[MissingModalityClassifier]] = {}


def register(name: str):
    """Class decorator: make a model buildable by name."""

    def wrap(cls):
        MODELS[name] = cls
        cls.name = name
        return cls

    return wrap


@dataclass
class ModelConfig:
    """Model hyper-parameters (shared by all models; each uses the fields it needs)."""

    dim: int = 64
    tabular: str = "transformer"  # or "mlp"
    tabular_layers: int = 1
    finetune_image: bool = False
    image_grid: int = 1  # region tokens per photo when fine-tuning (grid x grid)
    shared_prototypes: int = 6
    specific_prototypes: int = 4
    temperature: float = 0.2
    sspm: bool = True
    pfa: bool = True
    cma: bool = True
    sspm_weight: float = 0.1
    pfa_weight: float = 0.1
    cma_weight: float = 0.5
    dropout: float = 0.1
    shaspec_dao_weight: float = 0.1
    shaspec_dcl_weight: float = 0.1


class MissingModalityClassifier(nn.Module):
    """Shared plumbing: both encoders, the class prior used when a model has nothing to read."""

    name = "base"
    multimodal = True

    def __init__(self, config: ModelConfig, schema: TableSchema, image_shape: tuple[int, int], num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        dim = config.dim
        self.image_encoder = ImageEncoder(
            image_shape[1], image_shape[0], dim, finetune=config.finetune_image, grid=config.image_grid
        )
        self.table_encoder = TabularEncoder(schema, dim, layers=config.tabular_layers, kind=config.tabular)
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))

    def set_prior(self, labels: torch.Tensor) -> None:
        """The training class frequencies (Laplace-smoothed): the prediction when no input can be read."""
        counts = torch.bincount(labels, minlength=self.num_classes).float() + 1.0
        self.log_prior.copy_((counts / counts.sum()).log())

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens (n, Lv, d) and table tokens (n, Lt, d), zeros where the modality is missing."""
        dim = self.config.dim
        image = encode_present(
            self.image_encoder, batch["image"], batch["image_mask"], self.image_encoder.n_tokens, dim
        )
        table = encode_present(
            self.table_encoder,
            (batch["numeric"], batch["categorical"]),
            batch["table_mask"],
            self.table_encoder.n_tokens,
            dim,
        )
        return image, table

    def prior_logits(self, n: int) -> torch.Tensor:
        """The class prior repeated for ``n`` rows."""
        return self.log_prior.expand(n, -1)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the fused prediction plus the model's auxiliary losses."""
        out = self(batch)
        ce = F.cross_entropy(out["logits"], batch["labels"])
        return ce, {"ce": ce.detach()}


def _pool_image(tokens: torch.Tensor) -> torch.Tensor:
    return tokens.mean(dim=1)


def _pool_table(tokens: torch.Tensor) -> torch.Tensor:
    return tokens[:, 0]


def _masked_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows in ``mask`` (0 when there are none)."""
    if not mask.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], labels[mask])


def _head(dim: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))


def _fusion_mlp(dim: int, num_classes: int, dropout: float) -> nn.Module:
    """The classifier on two concatenated modality features (early concatenation, ShaSpec's decoder)."""
    return nn.Sequential(
        nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, num_classes)
    )


class _Unimodal(MissingModalityClassifier):
    """Reads only ``modality``; rows without it get the training class prior."""

    multimodal = False
    modality = "image"

    def __init__(self, config, schema, image_shape, num_classes):
        super().__init__(config, schema, image_shape, num_classes)
        self.head = _head(config.dim, num_classes, config.dropout)

    def forward(self, batch):
        mask = batch[f"{self.modality}_mask"]
        if self.modality == "image":
            encoder, inputs, pool = self.image_encoder, batch["image"], _pool_image
        else:
            encoder, inputs, pool = self.table_encoder, (batch["numeric"], batch["categorical"]), _pool_table
        tokens = encode_present(encoder, inputs, mask, encoder.n_tokens, self.config.dim)
        return {"logits": torch.where(mask[:, None], self.head(pool(tokens)), self.prior_logits(len(mask)))}

    def loss(self, batch):
        ce = _masked_ce(self(batch)["logits"], batch["labels"], batch[f"{self.modality}_mask"])
        return ce, {"ce": ce.detach()}


@register("image_only")
class ImageOnly(_Unimodal):
    """Reads only the image; rows without one get the training class prior."""

    modality = "image"


@register("table_only")
class TableOnly(_Unimodal):
    """Reads only the table; rows without one get the training class prior."""

    modality = "table"


@register("late_fusion")
class LateFusion(MissingModalityClassifier):
    """One classifier per modality; the prediction averages the probabilities of the present modalities."""

    def __init__(self, config, schema, image_shape, num_classes):
        super().__init__(config, schema, image_shape, num_classes)
        self.image_head = _head(config.dim, num_classes, config.dropout)
        self.table_head = _head(config.dim, num_classes, config.dropout)

    def forward(self, batch):
        image, table = self.encode(batch)
        image_logits = self.image_head(_pool_image(image))
        table_logits = self.table_head(_pool_table(table))
        mv, mt = batch["image_mask"][:, None].float(), batch["table_mask"][:, None].float()
        probs = (F.softmax(image_logits, -1) * mv + F.softmax(table_logits, -1) * mt) / (mv + mt).clamp(min=1.0)
        return {"logits": probs.clamp(min=1e-8).log(), "image_logits": image_logits, "table_logits": table_logits}

    def loss(self, batch):
        out = self(batch)
        image_ce = _masked_ce(out["image_logits"], batch["labels"], batch["image_mask"])
        table_ce = _masked_ce(out["table_logits"], batch["labels"], batch["table_mask"])
        return image_ce + table_ce, {"image_ce": image_ce.detach(), "table_ce": table_ce.detach()}


@register("early_concat")
class EarlyConcat(MissingModalityClassifier):
    """Concatenated pooled features, a learned placeholder for a missing modality, an MLP classifier.

    Trained with modality dropout (the trainer's ``modality_dropout``), so the placeholders are learned.
    """

    def __init__(self, config, schema, image_shape, num_classes):
        super().__init__(config, schema, image_shape, num_classes)
        dim = config.dim
        self.missing_image = nn.Parameter(torch.zeros(dim))
        self.missing_table = nn.Parameter(torch.zeros(dim))
        self.mlp = _fusion_mlp(dim, num_classes, config.dropout)

    def forward(self, batch):
        image, table = self.encode(batch)
        image = torch.where(batch["image_mask"][:, None], _pool_image(image), self.missing_image)
        table = torch.where(batch["table_mask"][:, None], _pool_table(table), self.missing_table)
        return {"logits": self.mlp(torch.cat([image, table], dim=1))}


@register("shaspec")
class ShaSpec(MissingModalityClassifier):
    """ShaSpec (Wang et al., CVPR 2023), from the paper: shared + specific encoders, residual fusion.

    One shared encoder for all modalities and one specific encoder each (MLPs on the modality's pooled
    features); fused feature = shared + projection([shared, specific]) (residual fusion); a missing modality's
    feature is the mean shared feature of the present ones. Auxiliary losses: distribution alignment of the
    shared features (symmetric KL of their softmax, samples with both modalities) and domain classification
    (a linear classifier tells which modality a specific feature came from).
    """

    def __init__(self, config, schema, image_shape, num_classes):
        super().__init__(config, schema, image_shape, num_classes)
        dim = config.dim
        self.shared = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.specific = nn.ModuleList(
            [nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) for _ in range(2)]
        )
        self.projection = nn.Linear(2 * dim, dim)
        self.domain = nn.Linear(dim, 2)
        self.decoder = _fusion_mlp(dim, num_classes, config.dropout)

    def forward(self, batch):
        image, table = self.encode(batch)
        pooled = [_pool_image(image), _pool_table(table)]
        masks = [batch["image_mask"][:, None], batch["table_mask"][:, None]]
        shared = [self.shared(x) for x in pooled]
        specific = [encoder(x) for encoder, x in zip(self.specific, pooled, strict=True)]
        fused = [r + self.projection(torch.cat([r, s], dim=1)) for r, s in zip(shared, specific, strict=True)]
        weights = [m.float() for m in masks]
        mean_shared = (shared[0] * weights[0] + shared[1] * weights[1]) / (weights[0] + weights[1]).clamp(min=1.0)
        fused = [torch.where(m, f, mean_shared) for f, m in zip(fused, masks, strict=True)]
        return {"logits": self.decoder(torch.cat(fused, dim=1)), "shared": shared, "specific": specific}

    def aux_losses(self, out, batch) -> dict[str, torch.Tensor]:
        """Distribution alignment of the shared features and domain classification of the specific ones."""
        both = batch["image_mask"] & batch["table_mask"]
        dao = out["logits"].sum() * 0.0
        if both.any():
            log_p = [F.log_softmax(r[both], dim=-1) for r in out["shared"]]
            dao = 0.5 * (
                F.kl_div(log_p[0], log_p[1], log_target=True, reduction="batchmean")
                + F.kl_div(log_p[1], log_p[0], log_target=True, reduction="batchmean")
            )
        logits, targets = [], []
        masks = (batch["image_mask"], batch["table_mask"])
        for modality, (s, mask) in enumerate(zip(out["specific"], masks, strict=True)):
            logits.append(self.domain(s[mask]))
            targets.append(torch.full((int(mask.sum()),), modality, dtype=torch.long, device=s.device))
        return {"dao": dao, "dcl": F.cross_entropy(torch.cat(logits), torch.cat(targets))}

    def loss(self, batch):
        out = self(batch)
        ce = F.cross_entropy(out["logits"], batch["labels"])
        aux = self.aux_losses(out, batch)
        total = ce + self.config.shaspec_dao_weight * aux["dao"] + self.config.shaspec_dcl_weight * aux["dcl"]
        return total, {"ce": ce.detach(), **{k: v.detach() for k, v in aux.items()}}


def _attend(prototypes: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """Prototypes (K, d) attend over tokens (n, L, d) by cosine / temperature: (n, K, d) representations."""
    scores = torch.einsum("kd,nld->nkl", F.normalize(prototypes, dim=-1), F.normalize(tokens, dim=-1))
    return torch.softmax(scores / temperature, dim=-1) @ tokens


def soft_assign(
    tokens: torch.Tensor, prototypes: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine (n, L, K) of each token to each prototype, and the token-to-prototype soft assignment."""
    cos = torch.einsum("nld,kd->nlk", F.normalize(tokens, dim=-1), F.normalize(prototypes, dim=-1))
    return cos, torch.softmax(cos / temperature, dim=-1)


def _rowwise_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the rows in ``mask`` of a per-row quantity (0 when there are none)."""
    return x[mask].mean() if mask.any() else x.sum() * 0.0


@register("dfpl")
class DFPL(MissingModalityClassifier):
    """Disentangled prototypes (SSPM) + prototype-level alignment (PFA) + class-aware aggregation (CMA)."""

    def __init__(self, config, schema, image_shape, num_classes):
        super().__init__(config, schema, image_shape, num_classes)
        dim, ks, kp = config.dim, config.shared_prototypes, config.specific_prototypes
        self.shared_proj = nn.Linear(dim, dim)  # one for both modalities: the shared view
        self.specific_proj = nn.ModuleList([nn.Linear(dim, dim) for _ in range(2)])
        self.shared_prototypes = nn.Parameter(torch.randn(ks, dim))
        self.specific_prototypes = nn.ParameterList([nn.Parameter(torch.randn(kp, dim)) for _ in range(2)])
        self.class_anchors = nn.Parameter(torch.randn(num_classes, dim) * 0.1)
        self.class_queries = nn.Parameter(torch.randn(num_classes, dim) * 0.1)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.class_weight = nn.Parameter(torch.randn(num_classes, dim) * 0.1)
        self.class_bias = nn.Parameter(torch.zeros(num_classes))
        self.mean_head = nn.Linear(dim, num_classes)  # the head without CMA

    def prototypes(self) -> torch.Tensor:
        """All prototypes stacked: shared, image-specific, table-specific."""
        return torch.cat([self.shared_prototypes, *self.specific_prototypes], dim=0)

    def _aggregate(self, evidence: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Class-aware aggregation (CMA): per-class attention over available evidence, then per-class score."""
        evidence = self.norm(evidence)
        scores = torch.einsum("cd,njd->ncj", self.class_queries, self.key(evidence)) / math.sqrt(evidence.shape[-1])
        scores = scores.masked_fill(~available[:, None, :], float("-inf"))
        aggregated = torch.softmax(scores, dim=-1) @ self.value(evidence)  # (n, C, d)
        return (self.dropout(aggregated) * self.class_weight).sum(-1) + self.class_bias

    def forward(self, batch):
        config = self.config
        image, table = self.encode(batch)
        mv, mt = batch["image_mask"], batch["table_mask"]
        tokens = (image, table)
        shared_tokens = [self.shared_proj(t) for t in tokens]
        specific_tokens = [proj(t) for proj, t in zip(self.specific_proj, tokens, strict=True)]
        shared = [_attend(self.shared_prototypes, t, config.temperature) for t in shared_tokens]
        specific = [
            _attend(p, t, config.temperature) for p, t in zip(self.specific_prototypes, specific_tokens, strict=True)
        ]
        wv, wt = mv[:, None, None].float(), mt[:, None, None].float()
        fused_shared = (shared[0] * wv + shared[1] * wt) / (wv + wt).clamp(min=1.0)
        global_level = torch.stack([_pool_image(image), _pool_table(table)], dim=1)
        prototype_level = torch.cat([fused_shared, *specific], dim=1)
        n, ks, kp = len(mv), config.shared_prototypes, config.specific_prototypes
        global_available = torch.stack([mv, mt], dim=1)
        prototype_available = torch.cat(
            [mv.new_ones(n, ks), mv[:, None].expand(n, kp), mt[:, None].expand(n, kp)], dim=1
        )
        evidence = torch.cat([global_level, prototype_level], dim=1)
        available = torch.cat([global_available, prototype_available], dim=1)
        out = {
            "shared": shared,
            "specific": specific,
            "shared_tokens": shared_tokens,
            "specific_tokens": specific_tokens,
        }
        if config.cma:
            out["logits"] = self._aggregate(evidence, available)
            out["global_logits"] = self._aggregate(global_level, global_available)
            out["prototype_logits"] = self._aggregate(prototype_level, prototype_available)
        else:
            weights = available.float()[..., None]
            pooled = (evidence * weights).sum(1) / weights.sum(1)
            out["logits"] = self.mean_head(self.dropout(self.norm(pooled)))
        return out

    # ---------------------------------------------------------------- the three groups of losses
    def sspm_losses(self, out, batch) -> dict[str, torch.Tensor]:
        """Compactness, diversity and shared/specific disentanglement of the prototypes (SSPM)."""
        tau = self.config.temperature
        masks = (batch["image_mask"], batch["table_mask"])
        compact, disentangle = [], []
        for m, mask in enumerate(masks):
            for tokens, protos in (
                (out["shared_tokens"][m], self.shared_prototypes),
                (out["specific_tokens"][m], self.specific_prototypes[m]),
            ):
                cos, assignment = soft_assign(tokens, protos, tau)
                per_row = (assignment * (1.0 - cos)).sum(-1).mean(-1)
                compact.append(_rowwise_mean(per_row, mask))
            cross = torch.einsum(
                "nkd,njd->nkj", F.normalize(out["shared"][m], dim=-1), F.normalize(out["specific"][m], dim=-1)
            )
            disentangle.append(_rowwise_mean(cross.pow(2).mean((1, 2)), mask))
        p = F.normalize(self.prototypes(), dim=-1)
        gram = p @ p.T
        off_diagonal = gram - torch.diag_embed(torch.diagonal(gram))
        diversity = off_diagonal.pow(2).sum() / (len(p) * (len(p) - 1))
        return {
            "compact": torch.stack(compact).mean(),
            "diversity": diversity,
            "disentangle": torch.stack(disentangle).mean(),
        }

    def pfa_losses(self, out, batch) -> dict[str, torch.Tensor]:
        """Prototype-level distribution matching and prototype-to-class semantic alignment (PFA)."""
        tau, labels = self.config.temperature, batch["labels"]
        both = batch["image_mask"] & batch["table_mask"]
        anchors = F.normalize(self.class_anchors, dim=-1)
        class_scores = [torch.einsum("nkd,cd->nkc", F.normalize(z, dim=-1), anchors) / tau for z in out["shared"]]
        anchor_ce = sum(
            _masked_ce(s.mean(1), labels, mask)
            for s, mask in zip(class_scores, (batch["image_mask"], batch["table_mask"]), strict=True)
        )
        zero = anchor_ce * 0.0
        if int(both.sum()) < 2:
            return {"distribution": zero, "semantic": zero, "anchor_ce": anchor_ce}
        zv, zt = out["shared"][0][both], out["shared"][1][both]
        moments = (zv.mean(0) - zt.mean(0)).pow(2).sum(-1) + (zv.std(0) - zt.std(0)).pow(2).sum(-1)
        paired = 1.0 - F.cosine_similarity(zv, zt, dim=-1)
        distribution = moments.mean() + paired.mean()
        log_pv, log_pt = (F.log_softmax(s[both], dim=-1) for s in class_scores)
        semantic = 0.5 * (
            (log_pv.exp() * (log_pv - log_pt)).sum(-1).mean() + (log_pt.exp() * (log_pt - log_pv)).sum(-1).mean()
        )
        return {"distribution": distribution, "semantic": semantic, "anchor_ce": anchor_ce}

    def cma_losses(self, out, batch) -> dict[str, torch.Tensor]:
        """Deep supervision of the global-level and prototype-level class-aware aggregations (CMA)."""
        labels = batch["labels"]
        has_global = batch["image_mask"] | batch["table_mask"]
        return {
            "global_ce": _masked_ce(out["global_logits"], labels, has_global),
            "prototype_ce": F.cross_entropy(out["prototype_logits"], labels),
        }

    def loss(self, batch):
        config = self.config
        out = self(batch)
        ce = F.cross_entropy(out["logits"], batch["labels"])
        total, parts = ce, {"ce": ce.detach()}
        for enabled, weight, losses in (
            (config.sspm, config.sspm_weight, self.sspm_losses),
            (config.pfa, config.pfa_weight, self.pfa_losses),
            (config.cma, config.cma_weight, self.cma_losses),
        ):
            if enabled:
                group = losses(out, batch)
                total = total + weight * sum(group.values())
                parts.update({k: v.detach() for k, v in group.items()})
        return total, parts


def build_model(
    name: str, config: ModelConfig, schema: TableSchema, image_shape: tuple[int, int], num_classes: int
) -> MissingModalityClassifier:
    """A registered model by name (``dfpl``, ``image_only``, ``table_only``, ``late_fusion``, ``early_concat``,
    ``shaspec``)."""
    from mllm.dfpl.errors import DfplError

    if name not in MODELS:
        raise DfplError(f"model {name!r}: use one of {', '.join(sorted(MODELS))}")
    return MODELS[name](config, schema, image_shape, num_classes)
