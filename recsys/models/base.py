"""The recommender interface every model implements, and HF-style save/load."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core.errors import UserError
from core.io import atomic_write, atomic_write_text
from recsys.config import build_config

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(UserError, ValueError):
    """A checkpoint folder is missing, incomplete or does not match the model."""


@dataclasses.dataclass
class NoConfig:
    """Config of a model without hyper-parameters."""


class Recommender(nn.Module):
    """Base class: ``loss(batch)`` for training and ``score(users)`` for full ranking.

    Subclasses set ``name`` (through ``@register``), ``Config`` (a dataclass whose defaults are the paper's
    values) and, optionally, ``train_defaults`` (the paper's optimiser settings, applied to the Trainer's
    config unless overridden).
    """

    name: ClassVar[str] = "recommender"
    Config: ClassVar[type] = NoConfig
    trainable: ClassVar[bool] = True
    train_defaults: ClassVar[dict[str, Any]] = {}
    # Buffers whose size depends on the training data (e.g. the interaction graph); from_pretrained takes
    # their shape from the checkpoint instead of from the freshly built model.
    data_buffers: ClassVar[tuple[str, ...]] = ()
    # Whether the Trainer's mixed_precision="auto" should pick bf16 on a GPU (transformer back-bones do).
    prefers_bf16: ClassVar[bool] = False
    # Whether ``eval_input_csr`` exists: the items of each user's input window (TrainConfig.eval_mask = "input").
    has_input_window: ClassVar[bool] = False

    def __init__(self, config: Any, n_users: int, n_items: int) -> None:
        super().__init__()
        if n_users <= 0 or n_items <= 0:
            raise ValueError(f"{type(self).__name__}: need n_users > 0 and n_items > 0, got {n_users}, {n_items}")
        self.config = config
        self.n_users = int(n_users)
        self.n_items = int(n_items)

    # -- training ---------------------------------------------------------------------------------
    def train_dataset(self, train: Any) -> torch.utils.data.Dataset:
        """A map-style dataset whose ``__getitems__`` returns one batch dict (see recsys.sampling)."""
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of one batch."""
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    def loss_parts(self) -> dict[str, torch.Tensor]:
        """Named, detached parts of the last ``loss`` (e.g. a main and an auxiliary loss), which the Trainer
        averages per epoch into its log; empty for a loss of one part."""
        return {}

    def epoch_diagnostics(self) -> dict[str, Any]:
        """JSON-ready statistics the Trainer records in its history after each epoch (SinkRec: the RVQ's code
        usage and quantisation error); empty by default."""
        return {}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``model(batch)`` is the loss, so that DDP wrappers (which hook ``forward``) sync gradients."""
        return self.loss(batch)

    def fit_closed_form(self, train: Any) -> None:
        """Fit a model that needs no gradient steps (popularity, EASE)."""
        raise NotImplementedError(f"{self.name} has no closed-form fit")

    def prepare(self, train: Any) -> None:
        """Hook called once with the training data before fitting (store a graph, a history, counts)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called by the Trainer before each epoch."""

    def set_eval_history(self, history: Any) -> None:
        """Hook called before each evaluation with the interactions a user has made before that target.

        ``history`` is an InteractionDataset: the train part before validation, train + valid before test.
        Models that read a user's sequence at scoring time (SASRec, SinkRec, ...) keep it; others ignore it.
        """

    def selectable(self) -> bool:
        """Whether this epoch's weights may become the best checkpoint (False in a pre-training phase,
        e.g. DS-MLP's teacher and distillation phases); the Trainer then neither selects nor early-stops."""
        return True

    def eval_input_csr(self) -> Any:
        """[n_users, n_items] CSR of the items in each user's input window (only where ``has_input_window``)."""
        raise NotImplementedError(f"{self.name} has no input window (only sequential models do)")

    # -- inference --------------------------------------------------------------------------------
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``Tensor[len(users), n_items]``."""
        raise NotImplementedError

    # -- persistence ------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """JSON-able description of this model (name, sizes, hyper-parameters)."""
        return {
            "model": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "config": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_checkpoint(cls, config: Any, meta: dict[str, Any], directory: Path) -> Recommender:
        """Build the (untrained) model described by a checkpoint's ``config.json``; weights are loaded after."""
        return cls(config, int(meta["n_users"]), int(meta["n_items"]))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically per file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p)))
        atomic_write_text(directory / CONFIG_NAME, json.dumps(self.config_dict(), indent=2))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> Recommender:
        """Rebuild a model from a folder written by ``save_pretrained`` (any registered class)."""
        from recsys.models import get_model_class

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        weights_path = directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(f"{path}: missing; is {directory} a checkpoint written by save_pretrained?")
        try:
            meta = json.loads(config_path.read_text())
            model_cls = get_model_class(meta["model"]) if cls is Recommender else cls
            config = build_config(model_cls.Config, meta.get("config", {}))
            model = model_cls.from_checkpoint(config, meta, directory)
        except (KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_path}: malformed config ({exc})") from None
        state = load_file(str(weights_path), device=map_location)
        for name in model.data_buffers:
            if name in state:
                setattr(model, name, state[name].clone())
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{weights_path}: weights do not match {meta['model']} (missing {missing}, unexpected {unexpected})"
            )
        return model


def sum_of_squares(*tensors: torch.Tensor) -> torch.Tensor:
    """sum(t ** 2) over all the tensors, as dot products: on a CPU its backward costs half that of
    ``t.pow(2).sum()`` (whose gradient recomputes a power and broadcasts a scalar), a quarter of a BPR step."""
    return sum(torch.dot(t.reshape(-1), t.reshape(-1)) for t in tensors)


class _FusedBPR(torch.autograd.Function):
    """mean(-log sigmoid(<u, p - n>)) + reg * (|u|^2 + |p|^2 + |n|^2) / (2B), with its gradient written out.

    Autograd would take ~9 elementwise passes over the [B, d] batch (the two products, their sums, the three
    squares, and the adds that gather u's three gradients); the closed form takes four. On a CPU that halves
    the loss's forward + backward, the larger part of a BPR-MF step.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float) -> torch.Tensor:
        diff = pos - neg
        x = (u * diff).sum(-1)
        n = u.shape[0]
        loss = -torch.nn.functional.logsigmoid(x).mean()
        if reg:
            loss = loss + reg * sum_of_squares(u, pos, neg) / (2 * n)
        ctx.save_for_backward(u, pos, neg, diff, x)
        ctx.reg = reg
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        u, pos, neg, diff, x = ctx.saved_tensors
        n = u.shape[0]
        # d/dx of -log sigmoid(x) is sigmoid(x) - 1; the mean divides by n
        coef = (torch.sigmoid(x) - 1).mul_(grad / n).unsqueeze(1)
        grad_u = diff * coef
        grad_pos = coef * u
        grad_neg = -grad_pos
        if ctx.reg:  # the L2 term's gradient, reg * t / n for each t
            r = ctx.reg * grad / n
            grad_u.add_(u * r)
            grad_pos.add_(pos * r)
            grad_neg.add_(neg * r)
        return grad_u, grad_pos, grad_neg, None


def bpr_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg_weight: float = 0.0) -> torch.Tensor:
    """The BPR loss of one sampled negative per positive, ``mean(-log sigmoid(<u, pos> - <u, neg>))``, plus
    ``reg_weight * (|u|^2 + |pos|^2 + |neg|^2) / (2 * batch)`` (L2 on these very embeddings; pass 0 and add
    your own term when the regularised tensors differ, as LightGCN's ego embeddings do).

    ``u``, ``pos`` and ``neg`` are [batch, dim]. Its gradient is the closed form (same values as autograd's
    to float rounding, tested), which costs half of autograd's on a CPU.
    """
    if not (u.dim() == pos.dim() == neg.dim() == 2 and u.shape == pos.shape == neg.shape):
        raise ValueError(
            f"bpr_loss needs three [batch, dim] tensors of one shape, got {tuple(u.shape)}, "
            f"{tuple(pos.shape)}, {tuple(neg.shape)}"
        )
    return _FusedBPR.apply(u, pos, neg, float(reg_weight))
