"""Shared pieces of the sequential (next-item) recommenders: user sequences, the training dataset, the
loss/score plumbing and a streaming scorer.

Conventions (every sequential model follows them):

* Item ids inside a sequence model are shifted by one: 0 is padding, item ``i`` of the dataset is ``i + 1``.
* Sequences are RIGHT-padded: position 0 holds the oldest kept event, the user's last event sits at
  ``length - 1`` and padding follows it. With causal models the padding is never seen by a real position,
  so no key-padding mask is needed and a recurrent state after ``length`` steps equals the unpadded one.
* Only the most recent ``max_len`` events are kept (the oldest are truncated).
* Order is the timestamp order (stable: rows with equal or missing timestamps keep their row order). Data
  without timestamps (the S3-Rec and SASRec Amazon files) are ordered by row order, and every time gap is
  one "step".
* Time gaps enter models as ``log1p(gap / time_unit)`` (0 for a user's first event), a float per event.
* Training sequences come only from the train part; scoring sequences only from ``set_eval_history``
  (train before "valid", train + valid before "test"), so no target ever leaks into its own input.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recsys.models.base import Recommender
from recsys.models.losses import linear_cross_entropy
from recsys.sampling import TrainingData

logger = logging.getLogger(__name__)

PAD = 0
LOSSES = ("ce", "bce", "bpr", "sampled_softmax")
SIMILARITIES = ("dot", "cosine")
TRAIN_WINDOWS = ("all", "last")


@dataclasses.dataclass
class UserSequences:
    """All users' events in time order, CSR-style: user ``u``'s events are ``items[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray  # [n_users + 1]
    items: np.ndarray  # [n_events] dataset item indices (not shifted)
    gaps: np.ndarray  # [n_events] float32 log1p(gap / time_unit); 0 for each user's first event
    timestamps: np.ndarray | None  # [n_events] raw timestamps, None when the data has none

    @property
    def n_users(self) -> int:
        """Number of users (rows), including users without events."""
        return self.indptr.size - 1

    def lengths(self) -> np.ndarray:
        """Number of events of each user."""
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        """The item indices of one user, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]


def gap_feature(gaps: np.ndarray, time_unit: float) -> np.ndarray:
    """The per-event time feature: ``log1p(max(gap, 0) / time_unit)``."""
    return np.log1p(np.maximum(np.asarray(gaps, dtype=np.float64), 0.0) / float(time_unit)).astype(np.float32)


def build_user_sequences(dataset: Any, time_unit: float = 86400.0) -> UserSequences:
    """Group an InteractionDataset into per-user, time-ordered sequences (stable on ties and without time)."""
    n = dataset.n_interactions
    rows = np.arange(n)
    time = dataset.timestamps
    order = np.lexsort((rows, time, dataset.users)) if time is not None else np.lexsort((rows, dataset.users))
    users = dataset.users[order]
    indptr = np.zeros(dataset.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=dataset.n_users), out=indptr[1:])
    items = dataset.items[order].astype(np.int64)
    first = np.zeros(n, dtype=bool)
    first[indptr[:-1][np.diff(indptr) > 0]] = True
    if time is not None:
        sorted_time = time[order]
        raw_gaps = np.diff(sorted_time, prepend=sorted_time[:1] if n else sorted_time)
        raw_gaps[first] = 0.0
        gaps = gap_feature(raw_gaps, time_unit)
        timestamps = sorted_time
    else:  # order only: every step is one unit of time
        gaps = np.full(n, float(np.log1p(1.0)), dtype=np.float32)
        timestamps = None
    gaps[first] = 0.0
    return UserSequences(indptr=indptr, items=items, gaps=gaps, timestamps=timestamps)


def pad_last(sequences: UserSequences, users: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last ``max_len`` events of each user, right-padded: (shifted item ids, gap features, lengths)."""
    users = np.asarray(users, dtype=np.int64)
    end = sequences.indptr[users + 1]
    start = np.maximum(sequences.indptr[users], end - max_len)
    lengths = end - start
    positions = np.arange(max_len)[None, :]
    valid = positions < lengths[:, None]
    index = np.where(valid, start[:, None] + positions, 0)
    items = np.where(valid, sequences.items[index] + 1, PAD) if sequences.items.size else np.zeros_like(index)
    gaps = np.where(valid, sequences.gaps[index], 0.0).astype(np.float32) if sequences.items.size else index * 0.0
    # the first kept event of a truncated sequence keeps its true gap; of a full one the gap is 0 already
    return items.astype(np.int64), gaps.astype(np.float32), lengths.astype(np.int64)


class SequenceTrainDataset(TrainingData):
    """Next-item training windows over the train part; ``__getitems__`` returns one batch dict.

    Each example is a window of up to ``max_len + 1`` consecutive events of one user: inputs are the first
    ``n`` events, targets the next ``n`` (all positions, causal). ``windows="all"`` cuts each long sequence
    into windows from its end, stepping back ``max_len`` events, so every training transition is a target
    exactly once per epoch; ``windows="last"`` keeps one window per user (the SASRec reference code).
    With ``n_neg > 0`` the batch also holds ``neg_items`` [B, L, n_neg] drawn uniformly (never the target),
    seeded by (seed, epoch, batch). After ``set_target_weighting("global")`` it holds ``target_weight``, the
    batch's targets over (its examples x the mean targets per example), by which the model scales its
    per-target mean loss, so every target weighs the same in every batch (``TrainConfig.target_weighting``).
    """

    supports_target_weighting = True
    has_example_lengths = True

    def __init__(
        self,
        sequences: UserSequences,
        n_items: int,
        max_len: int,
        n_neg: int = 0,
        windows: str = "all",
        seed: int = 0,
    ) -> None:
        if windows not in TRAIN_WINDOWS:
            raise ValueError(f"train_windows must be one of {TRAIN_WINDOWS}, got {windows!r}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.seq = sequences
        self.n_items = int(n_items)
        self.max_len = int(max_len)
        self.n_neg = int(n_neg)
        self.seed = int(seed)
        self.epoch = 0
        starts, ends = [], []
        lengths = sequences.lengths()
        for user in np.flatnonzero(lengths >= 2):
            end = int(sequences.indptr[user + 1])
            lo = int(sequences.indptr[user])
            while end - lo >= 2:
                start = max(lo, end - self.max_len - 1)
                starts.append(start)
                ends.append(end)
                if windows == "last":
                    break
                end = start + 1  # the next window's last input is this window's first input (its target)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        if self.starts.size == 0:
            raise ValueError("no user has two or more training events: nothing to train a sequence model on")
        self.target_weighting = "batch"
        self.mean_targets = float(self.example_lengths().mean())

    def set_target_weighting(self, mode: str) -> None:
        """Either "batch" (the loss is the batch's mean over its targets) or "global" (batches carry
        ``target_weight``)."""
        if mode not in ("batch", "global"):
            raise ValueError(f"target_weighting must be 'batch' or 'global', got {mode!r}")
        self.target_weighting = mode

    def example_lengths(self) -> np.ndarray:
        """Input events of each window (its padded width in a batch): for ``TrainConfig.length_buckets``."""
        return self.ends - self.starts - 1

    def set_epoch(self, epoch: int) -> None:
        """Select the negatives of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.starts.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        starts, ends = self.starts[idx], self.ends[idx]
        n = ends - starts - 1  # number of (input, target) pairs per window
        width = int(n.max())
        positions = np.arange(width)[None, :]
        valid = positions < n[:, None]
        index = np.where(valid, starts[:, None] + positions, 0)
        items = np.where(valid, self.seq.items[index] + 1, PAD)
        targets = np.where(valid, self.seq.items[index + 1] + 1, PAD)
        gaps = np.where(valid, self.seq.gaps[index], 0.0).astype(np.float32)
        batch = {
            "items": torch.from_numpy(items.astype(np.int64)),
            "targets": torch.from_numpy(targets.astype(np.int64)),
            "gaps": torch.from_numpy(gaps),
        }
        if self.n_neg > 0:
            first = int(idx[0]) if idx.size else 0
            rng = np.random.default_rng([self.seed, self.epoch, first, int(idx.size)])
            negatives = rng.integers(1, self.n_items + 1, size=(*items.shape, self.n_neg))
            for _ in range(10):
                clash = negatives == targets[..., None]
                if not clash.any():
                    break
                negatives[clash] = rng.integers(1, self.n_items + 1, size=int(clash.sum()))
            batch["neg_items"] = torch.from_numpy(negatives.astype(np.int64))
        if self.target_weighting == "global":
            batch["target_weight"] = torch.tensor(float(n.sum()) / (idx.size * self.mean_targets))
        return batch


class SequentialRecommender(Recommender):
    """Base of the next-item models: subclasses implement ``encode`` (and, to stream, ``stream_*``).

    ``encode(items [B, L], gaps [B, L]) -> (hidden [B, L, D], aux_loss)``: hidden state at each position
    predicts the next item by a dot product with ``item_embedding.weight[1:]`` (tied input/output item
    embeddings, as SASRec). The config must have ``max_len``, ``loss``, ``n_neg``, ``similarity``,
    ``temperature``, ``train_windows`` and ``time_unit``.

    Losses: ``ce`` is the softmax over every item; ``bce`` (the SASRec paper's) and ``bpr`` score the target
    against ``n_neg`` uniformly sampled negatives per position; ``sampled_softmax`` is the softmax over the
    target and those ``n_neg`` negatives (HSTU's SASRec baseline: 128 negatives, ``similarity="cosine"``,
    ``temperature=0.05``). The score is ``<q, e> / temperature``, where ``similarity="cosine"`` first
    L2-normalises the hidden state q and the item embedding e, in training and in ranking alike.
    """

    has_input_window = True  # eval_input_csr: TrainConfig.eval_mask = "input"
    item_embedding: torch.nn.Embedding
    # users per encoder call when scoring on a CPU (grouped by history length; see ``score``)
    score_group_size: int = 256

    def __init__(self, config: Any, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        if config.loss not in LOSSES:
            raise ValueError(f"{type(self).__name__}: loss must be one of {LOSSES}, got {config.loss!r}")
        if config.similarity not in SIMILARITIES:
            raise ValueError(
                f"{type(self).__name__}: similarity must be one of {SIMILARITIES}, got {config.similarity!r}"
            )
        if not float(config.temperature) > 0:
            raise ValueError(f"{type(self).__name__}: temperature must be > 0, got {config.temperature!r}")
        self._eval: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # -- data -------------------------------------------------------------------------------------
    def train_dataset(self, train: Any) -> SequenceTrainDataset:
        cfg = self.config
        sequences = build_user_sequences(train, cfg.time_unit)
        n_neg = 0 if cfg.loss == "ce" else max(int(cfg.n_neg), 1)
        return SequenceTrainDataset(sequences, self.n_items, cfg.max_len, n_neg, cfg.train_windows)

    def set_eval_history(self, history: Any) -> None:
        """Keep each user's last ``max_len`` events before the evaluation target (see module docstring)."""
        sequences = build_user_sequences(history, self.config.time_unit)
        items, gaps, lengths = pad_last(sequences, np.arange(self.n_users), self.config.max_len)
        self._eval = (torch.from_numpy(items), torch.from_numpy(gaps), torch.from_numpy(lengths))

    def eval_input_csr(self) -> Any:
        """[n_users, n_items] 0/1 CSR of the items in each user's scoring sequence (the model's input window at
        evaluation): the ranking mask of ``TrainConfig.eval_mask = "input"``, HSTU's protocol."""
        if self._eval is None:
            raise RuntimeError(f"{self.name}: no scoring sequences; call set_eval_history(history) first")
        items = self._eval[0].numpy()
        users, positions = np.nonzero(items != PAD)
        data = np.ones(users.size, dtype=np.float32)
        matrix = sp.csr_matrix((data, (users, items[users, positions] - 1)), shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    # -- model ------------------------------------------------------------------------------------
    def encode(self, items: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden state per position and an auxiliary loss (0 for most models)."""
        raise NotImplementedError

    def query(self, hidden: torch.Tensor) -> torch.Tensor:
        """The hidden state as a scoring query: L2-normalised for cosine, divided by the temperature."""
        if self.config.similarity == "cosine":
            hidden = F.normalize(hidden, dim=-1)
        temperature = float(self.config.temperature)
        return hidden if temperature == 1.0 else hidden / temperature

    def item_vectors(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Item embeddings as scored: L2-normalised for cosine, as they are for dot."""
        return F.normalize(embeddings, dim=-1) if self.config.similarity == "cosine" else embeddings

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every real item (no padding column): ``query(hidden) @ item_vectors(E[1:])^T``."""
        return self.query(hidden) @ self.item_vectors(self.item_embedding.weight[1:]).T

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items, targets = batch["items"], batch["targets"]
        hidden, aux = self.encode(items, batch["gaps"])
        mask = targets != PAD
        h = hidden[mask]
        target = targets[mask]
        if self.config.loss == "ce":
            # = F.cross_entropy(self.item_logits(h), target - 1), without the [N, n_items] logits on a CPU
            main = linear_cross_entropy(self.query(h), self.item_vectors(self.item_embedding.weight[1:]), target - 1)
        else:
            negatives = batch["neg_items"][mask]  # [N, n_neg]
            q = self.query(h)
            pos = (q * self.item_vectors(self.item_embedding(target))).sum(-1, keepdim=True)
            neg = torch.einsum("nd,nkd->nk", q, self.item_vectors(self.item_embedding(negatives)))
            if self.config.loss == "bce":  # the SASRec paper's loss
                main = -(F.logsigmoid(pos).mean() + F.logsigmoid(-neg).mean())
            elif self.config.loss == "sampled_softmax":  # the target is column 0
                logits = torch.cat([pos, neg], dim=-1)
                main = F.cross_entropy(logits, logits.new_zeros(logits.shape[0], dtype=torch.long))
            else:
                main = -F.logsigmoid(pos - neg).mean()
        if "target_weight" in batch:  # TrainConfig.target_weighting="global": the targets' sum over a constant
            main = main * batch["target_weight"]
        # SinkRec's RVQ losses: logged apart, since the sum hides which of the two moves
        self._loss_parts = {"main": main.detach(), "aux": aux.detach()} if aux.requires_grad else {}
        return main + aux

    def loss_parts(self) -> dict[str, torch.Tensor]:
        return getattr(self, "_loss_parts", {})

    def last_hidden(self, items: torch.Tensor, gaps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The hidden state at each sequence's last real event (position 0 for an empty history)."""
        hidden, _ = self.encode(items, gaps)
        last = (lengths - 1).clamp(min=0)
        return hidden[torch.arange(len(items), device=hidden.device), last]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self._eval is None:
            raise RuntimeError(
                f"{self.name}: no scoring sequences; call set_eval_history(history) first (the Trainer does)"
            )
        device = self.item_embedding.weight.device
        cpu_users = users.cpu()
        items, gaps, lengths = self._eval[0][cpu_users], self._eval[1][cpu_users], self._eval[2][cpu_users]
        group = self.score_group_size if device.type == "cpu" else len(cpu_users)
        if len(cpu_users) <= group:
            return self.item_logits(self._last_hidden_trimmed(items.to(device), gaps.to(device), lengths.to(device)))
        # on a CPU, users of similar history length are encoded together, each group only as wide as its
        # longest history: where most histories are short (Amazon: 6 events, max_len 50) this is most of the work
        order = torch.argsort(lengths, stable=True)
        hidden = None
        for start in range(0, len(order), group):
            rows = order[start : start + group]
            part = self._last_hidden_trimmed(items[rows], gaps[rows], lengths[rows])
            if hidden is None:
                hidden = part.new_empty(len(order), part.shape[1])
            hidden[rows] = part
        return self.item_logits(hidden)

    def _last_hidden_trimmed(self, items: torch.Tensor, gaps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``last_hidden`` without the trailing padding columns no row of the batch reaches (right padding)."""
        width = max(int(lengths.max()), 1)
        return self.last_hidden(items[:, :width], gaps[:, :width], lengths)

    # -- streaming --------------------------------------------------------------------------------
    def stream_init(self, batch_size: int = 1) -> Any:
        """The empty per-user state for streaming (constant size); models that cannot stream raise."""
        raise NotImplementedError(f"{self.name} has no constant-size streaming state")

    def stream_step(self, state: Any, items: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Consume one event per row (shifted item ids [B], gap features [B]); return (hidden [B, D], state)."""
        raise NotImplementedError(f"{self.name} has no constant-size streaming state")


class StreamingScorer:
    """Online next-item scoring: ``update(user, item, timestamp)`` folds one event into that user's state in
    O(1) time and memory (independent of the history length), then returns the scores of every item.

    Works with any model that implements ``stream_init``/``stream_step`` (gdn, sinkrec, gru4rec). Its
    scores equal ``model.score`` on the same history (tested), up to float tolerance, while the history fits
    in ``max_len``; beyond it the batch path truncates to the last ``max_len`` events and the stream keeps
    folding every event into its state. Dropout is off (the model is put in eval mode).
    """

    def __init__(self, model: SequentialRecommender) -> None:
        self.model = model.eval()
        self.states: dict[Any, Any] = {}
        self.last_time: dict[Any, float | None] = {}

    def reset(self, user: Any) -> None:
        """Forget a user's state."""
        self.states.pop(user, None)
        self.last_time.pop(user, None)

    @torch.no_grad()
    def update(self, user: Any, item: int, timestamp: float | None = None) -> torch.Tensor:
        """Add the event (dataset item index ``item`` at ``timestamp``) and return scores ``[n_items]``."""
        if not 0 <= int(item) < self.model.n_items:
            raise ValueError(f"item index {item} out of range [0, {self.model.n_items})")
        device = self.model.item_embedding.weight.device
        first = user not in self.states
        if first:
            self.states[user] = self.model.stream_init(1)
            gap = 0.0
        elif timestamp is None or self.last_time.get(user) is None:
            gap = float(np.log1p(1.0))
        else:
            gap = float(gap_feature(np.array([timestamp - self.last_time[user]]), self.model.config.time_unit)[0])
        self.last_time[user] = timestamp
        hidden, self.states[user] = self.model.stream_step(
            self.states[user],
            torch.tensor([int(item) + 1], device=device),
            torch.tensor([gap], dtype=torch.float32, device=device),
        )
        return self.model.item_logits(hidden)[0]
