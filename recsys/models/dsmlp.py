"""DS-MLP (Ou et al., "Dual-Stream MLP is All You Need for CTR Prediction", TKDD, arXiv 2606.04944).

Explicit feature interactions are distilled from a teacher into a main ("student") MLP, while a parallel MLP
with its own embeddings learns implicit interactions; the served model is the two MLPs only, its logit the
mean of the two streams' logits. We follow the paper and its public code (RUCAIBox/DS-MLP,
``model_zoo/DS-MLP/src/DSMLP.py``, on FuxiCTR) for the structure; the code is our own.

Three phases, chosen per epoch by ``on_epoch_start`` from ``teacher_epochs`` and ``distill_epochs``:

1. ``teacher``: the teacher, GDCN (gated cross network, ``x_{l+1} = x_0 * (W_l x_l + b_l) * sigmoid(Wg_l x_l)
   + x_l``, beside a DNN, concatenated into one logit), is trained with BCE on the *shared* embeddings.
2. ``distillation``: the teacher is frozen (eval mode, no gradient). Loss =
   ``BCE(fused) + alpha_e * BCE(student) + alpha_i * BCE(parallel) + kd_weight * KD``. The student reads the
   teacher's (shared) embedding table, which keeps training, so the teacher's targets drift a little, as in
   the public code.
3. ``finetuning``: the same loss without the KD term. Only finetuning epochs are ``selectable``: the
   Trainer picks the best of them on validation AUC and early-stops among them (each phase of the public code
   is a separate FuxiCTR run; here the teacher and distillation phases run their fixed number of epochs).

The two alignment strategies (config switches):

- ``align_norm``: batch normalisation of each stream's last hidden layer before its output head, so the two
  streams' hidden representations (and hence logits) sit on a comparable scale before they are averaged
  (``cross_bn``/``dnn_bn`` in the public code). The public code drops these layers in its finetuning run;
  we keep them in both phases (at serving time a batch norm folds into the head, so the model stays a
  vanilla MLP).
- ``align_stream_loss``: each stream is also supervised on its own (``alpha_e``, ``alpha_i``), so that neither
  stream's logit dominates the average. Off: only the fused BCE (and KD) are used.

KD term (``kd_loss``): ``"per_sample"`` (default, the paper's intent) is ``mean_i (p_teacher_i - p_student_i)^2``;
``"batch_mean_sq"`` is the public code's ``(mean_i (p_teacher_i - p_student_i))^2``, which only matches the
batch-average probability and lets per-sample errors cancel.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.ctr_layers import CTRModel, FeatureEmbedding, MLPBlock

logger = logging.getLogger(__name__)

PHASES = ("teacher", "distillation", "finetuning")
KD_LOSSES = ("per_sample", "batch_mean_sq")


class GatedCrossNetwork(nn.Module):
    """GDCN's gated cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) * sigmoid(Wg_l x_l) + x_l``."""

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.cross = nn.ModuleList(nn.Linear(input_dim, input_dim, bias=False) for _ in range(num_layers))
        self.gates = nn.ModuleList(nn.Linear(input_dim, input_dim, bias=False) for _ in range(num_layers))
        # the public code initialises the cross biases uniformly in [0, 1)
        self.biases = nn.ParameterList(nn.Parameter(torch.rand(input_dim)) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for cross, gate, bias in zip(self.cross, self.gates, self.biases, strict=True):
            x = x0 * (cross(x) + bias) * torch.sigmoid(gate(x)) + x
        return x


class GDCNTeacher(nn.Module):
    """The explicit-interaction teacher: gated cross network and DNN side by side, one logit from both."""

    def __init__(self, input_dim: int, num_cross_layers: int, hidden: tuple[int, ...], dropout: float, bn: bool):
        super().__init__()
        self.cross = GatedCrossNetwork(input_dim, num_cross_layers)
        self.dnn = MLPBlock(input_dim, hidden, dropout, bn)
        self.head = nn.Linear(input_dim + self.dnn.output_dim, 1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.cross(x0), self.dnn(x0)], dim=1)).squeeze(-1)


class Stream(nn.Module):
    """One MLP stream: hidden layers, optional alignment batch norm, a linear head to one logit."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], dropout: float, bn: bool, align_norm: bool):
        super().__init__()
        self.mlp = MLPBlock(input_dim, hidden, dropout, bn)
        self.align = nn.BatchNorm1d(self.mlp.output_dim) if align_norm else nn.Identity()
        self.head = nn.Linear(self.mlp.output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.align(self.mlp(x))).squeeze(-1)


@dataclasses.dataclass
class DSMLPConfig:
    """The public code's MovieLens/Avazu settings (model_zoo/DS-MLP/config/model_config.yaml).

    Criteo there: ``student_hidden = parallel_hidden = (600, 600, 600)``, ``embedding_regularizer = 1e-5``.
    """

    embedding_dim: int = 10
    num_cross_layers: int = 3
    teacher_hidden: tuple[int, ...] = (400, 400, 400)
    student_hidden: tuple[int, ...] = (1024, 1024, 1024)
    parallel_hidden: tuple[int, ...] = (400, 400, 400)
    dropout: float = 0.2
    batch_norm: bool = True
    embedding_regularizer: float = 0.01
    alpha_e: float = 1.0
    alpha_i: float = 1.0
    align_norm: bool = True
    align_stream_loss: bool = True
    kd_loss: str = "per_sample"
    kd_weight: float = 1.0
    teacher_epochs: int = 5
    distill_epochs: int = 5

    def __post_init__(self) -> None:
        validate_fields(self)


@register("dsmlp")
class DSMLP(CTRModel):
    """Teacher (GDCN on the shared embeddings) -> student MLP (shared embeddings) + parallel MLP (own ones)."""

    Config = DSMLPConfig

    def __init__(
        self, config: DSMLPConfig, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None
    ):
        super().__init__(config, n_users, n_items, layout)
        if config.kd_loss not in KD_LOSSES:
            raise ValueError(f"dsmlp: kd_loss must be one of {KD_LOSSES}, got {config.kd_loss!r}")
        dim = config.embedding_dim
        self.shared_embedding = FeatureEmbedding(self.layout, dim)
        self.parallel_embedding = FeatureEmbedding(self.layout, dim)
        input_dim = self.shared_embedding.n_fields * dim
        self.teacher = GDCNTeacher(
            input_dim, config.num_cross_layers, tuple(config.teacher_hidden), config.dropout, config.batch_norm
        )
        args = (config.dropout, config.batch_norm, config.align_norm)
        self.student = Stream(input_dim, tuple(config.student_hidden), *args)
        self.parallel = Stream(input_dim, tuple(config.parallel_hidden), *args)
        # the phase is a buffer so that a checkpoint (best, last or resumed) predicts with the right stream
        self.register_buffer("phase_index", torch.tensor(PHASES.index(self.phase_of_epoch(0))))

    @property
    def phase(self) -> str:
        return PHASES[int(self.phase_index)]

    @phase.setter
    def phase(self, value: str) -> None:
        if value not in PHASES:
            raise ValueError(f"dsmlp: phase must be one of {PHASES}, got {value!r}")
        self.phase_index.fill_(PHASES.index(value))

    # -- phases -------------------------------------------------------------------------------------
    def phase_of_epoch(self, epoch: int) -> str:
        """``teacher`` for the first ``teacher_epochs`` epochs (0-based), then ``distillation``, then ``finetuning``."""
        if epoch < self.config.teacher_epochs:
            return "teacher"
        if epoch < self.config.teacher_epochs + self.config.distill_epochs:
            return "distillation"
        return "finetuning"

    def on_epoch_start(self, epoch: int) -> None:
        phase = self.phase_of_epoch(epoch)
        if phase != self.phase:
            logger.info("dsmlp: epoch %d starts the %s phase", epoch + 1, phase)
        self.phase = phase

    def selectable(self) -> bool:
        return self.phase == "finetuning"

    # -- the maths ----------------------------------------------------------------------------------
    def stream_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(student logit on the shared embeddings, parallel logit on its own embeddings)."""
        shared = self.shared_embedding(batch).flatten(1)
        own = self.parallel_embedding(batch).flatten(1)
        return self.student(shared), self.parallel(own)

    def teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.teacher(self.shared_embedding(batch).flatten(1))

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's logit during the teacher phase, else the served model's ``0.5 (l_student + l_parallel)``."""
        if self.phase == "teacher":
            return self.teacher_logits(batch)
        student, parallel = self.stream_logits(batch)
        return 0.5 * (student + parallel)

    def kd_term(self, teacher_prob: torch.Tensor, student_prob: torch.Tensor) -> torch.Tensor:
        gap = teacher_prob - student_prob
        if self.config.kd_loss == "per_sample":
            return gap.pow(2).mean()
        return gap.mean().pow(2)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]
        if self.phase == "teacher":
            return F.binary_cross_entropy_with_logits(self.teacher_logits(batch), labels) + self.regularization()
        student, parallel = self.stream_logits(batch)
        loss = F.binary_cross_entropy_with_logits(0.5 * (student + parallel), labels)
        if self.config.align_stream_loss:
            loss = loss + self.config.alpha_e * F.binary_cross_entropy_with_logits(student, labels)
            loss = loss + self.config.alpha_i * F.binary_cross_entropy_with_logits(parallel, labels)
        if self.phase == "distillation" and self.config.kd_weight > 0:
            self.teacher.eval()  # the Trainer puts the whole model in train mode each epoch
            with torch.no_grad():
                teacher_prob = torch.sigmoid(self.teacher_logits(batch))
            loss = loss + self.config.kd_weight * self.kd_term(teacher_prob, torch.sigmoid(student))
        return loss + self.regularization()

    def regularization(self) -> torch.Tensor:
        """Embedding regularisation of the tables the current phase uses (the parallel table waits in phase 1)."""
        weight = self.config.embedding_regularizer
        if weight <= 0:
            return torch.zeros((), device=self.device_of())
        total = self.shared_embedding.squared_norm()
        if self.phase != "teacher":
            total = total + self.parallel_embedding.squared_norm()
        return 0.5 * weight * total

    # -- serving ------------------------------------------------------------------------------------
    def serving_parameter_names(self) -> list[str]:
        """Parameters of the served model (the two MLP streams and their embeddings; no teacher)."""
        return [name for name, _ in self.named_parameters() if not name.startswith("teacher.")]

    def n_serving_parameters(self) -> int:
        keep = set(self.serving_parameter_names())
        return sum(p.numel() for name, p in self.named_parameters() if name in keep)
