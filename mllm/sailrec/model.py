"""The SailRec model: a causal LM reading a yes/no prompt whose placeholder tokens carry projected MF embeddings.

A prompt (CoLLM/TALLRec style, kept short for CPUs)::

    User <U> watched: Title 1 <I>, Title 2 <I>, ... Will the user like Candidate <I>? Answer:

The input embedding of each ``<U>``/``<I>`` placeholder is replaced by ``user_mapper(p_u)`` or
``item_projector(q_i)`` (p, q: a frozen MF's embeddings). The score is ``logit("Yes") - logit("No")`` at the
answer position, so ``P(yes) = sigmoid(score)`` is the 2-way softmax over the two answer tokens. Only the answer
position's hidden state goes through the LM head rows of the two tokens (the rest of the vocabulary never
matters for the score, and skipping it saves a 49k-row matrix product per token on a CPU).

Alignment (SAILRec's dual-side semantic alignment) is InfoNCE between the projected embeddings and frozen LLM
representations (mean-pooled hidden states) of the item title and of the user's codebook profile text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mllm.sailrec.data import YesNoRows
from mllm.sailrec.steering import SteeringState, depth_schedule, install_steered_attention, steering
from recsys.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, validate_fields

logger = logging.getLogger(__name__)

TEXT, USER_SLOT, ITEM_SLOT = 0, 1, 2

# variant -> (soft tokens, item alignment, user alignment, steering, LoRA)
VARIANTS: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    "tallrec": (False, False, False, False, True),
    "collm": (True, False, False, False, True),
    "sailrec": (True, True, True, True, True),
    "sailrec_no_item_align": (True, False, True, True, True),
    "sailrec_no_user_align": (True, True, False, True, True),
    "sailrec_no_steer": (True, True, True, False, True),
}
ALL_VARIANTS = ("mf", *VARIANTS)


@dataclass
class SailRecConfig:
    """Prompt, mapper, alignment, steering and training settings (defaults: our CPU-sized choices)."""

    variant: str = "sailrec"
    max_history: int = 10
    title_tokens: int = 10  # each title truncated to this many tokens
    mapper_hidden: int = 256
    temperature: float = 0.07  # InfoNCE temperature
    item_align_weight: float = 0.1  # weight of each alignment loss next to the yes/no loss in the joint stage
    user_align_weight: float = 0.1
    align_layer: int = -1  # hidden-state layer mean-pooled for the text representations (-1: the last)
    profile_top_k: int = 3
    steer_shallow: float = -1.0
    steer_deep: float = 2.0
    steer_schedule: str = "linear"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 5e-4
    mapper_lr: float = 1e-3
    batch_size: int = 8
    epochs: int = 1
    warmup_steps: int = 200  # mapper-only steps on the alignment losses (stage 2)
    warmup_batch: int = 128
    eval_batch_size: int = 16
    max_grad_norm: float = 1.0

    field_ranges = {  # noqa: RUF012 - read by validate_fields
        "variant": tuple(VARIANTS),
        "steer_schedule": ("linear", "step", "none"),
        "max_history": NON_NEGATIVE,
        "title_tokens": AT_LEAST_ONE,
        "mapper_hidden": AT_LEAST_ONE,
        "temperature": POSITIVE,
        "item_align_weight": NON_NEGATIVE,
        "user_align_weight": NON_NEGATIVE,
        "profile_top_k": AT_LEAST_ONE,
        "lora_rank": AT_LEAST_ONE,
        "lora_alpha": AT_LEAST_ONE,
        "lr": POSITIVE,
        "mapper_lr": POSITIVE,
        "batch_size": AT_LEAST_ONE,
        "epochs": NON_NEGATIVE,
        "warmup_steps": NON_NEGATIVE,
        "warmup_batch": AT_LEAST_ONE,
        "eval_batch_size": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        validate_fields(self)

    @property
    def soft_tokens(self) -> bool:
        return VARIANTS[self.variant][0]

    @property
    def item_align(self) -> bool:
        return VARIANTS[self.variant][1]

    @property
    def user_align(self) -> bool:
        return VARIANTS[self.variant][2]

    @property
    def steer(self) -> bool:
        return VARIANTS[self.variant][3]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lora_targets"] = list(self.lora_targets)
        return out


# ----------------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------------


class PromptBuilder:
    """Token ids of a prompt plus, per position, whether it is text, a user slot or an item slot."""

    def __init__(self, tokenizer: Any, titles: list[str], config: SailRecConfig) -> None:
        self.tokenizer = tokenizer
        self.titles = titles
        self.config = config
        self.placeholder_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._pieces: dict[str, list[int]] = {}
        self._title_ids: dict[int, list[int]] = {}

    def piece(self, text: str) -> list[int]:
        """Token ids of a fixed text piece (cached)."""
        if text not in self._pieces:
            self._pieces[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._pieces[text]

    def title(self, item: int) -> list[int]:
        """Token ids of `` <title>`` truncated to ``title_tokens`` (cached)."""
        if item not in self._title_ids:
            text = " " + (self.titles[item] if 0 <= item < len(self.titles) else f"item {item}")
            self._title_ids[item] = self.tokenizer(text, add_special_tokens=False)["input_ids"][
                : self.config.title_tokens
            ]
        return self._title_ids[item]

    def build(self, user: int, history: np.ndarray, item: int) -> tuple[list[int], list[int], list[int]]:
        """(ids, kind per position, entity per position: the user or item id of a slot, else 0)."""
        soft = self.config.soft_tokens
        ids: list[int] = []
        kinds: list[int] = []
        entities: list[int] = []

        def text(tokens: list[int]) -> None:
            ids.extend(tokens)
            kinds.extend([TEXT] * len(tokens))
            entities.extend([0] * len(tokens))

        def slot(kind: int, entity: int) -> None:
            if soft:
                ids.append(self.placeholder_id)
                kinds.append(kind)
                entities.append(int(entity))

        text(self.piece("User"))
        slot(USER_SLOT, user)
        recent = history[-self.config.max_history :] if self.config.max_history else history[:0]
        text(self.piece(" watched:" if len(recent) else " is new."))
        for position, earlier in enumerate(recent):
            text(self.title(int(earlier)))
            slot(ITEM_SLOT, earlier)
            if position < len(recent) - 1:
                text(self.piece(","))
        text(self.piece(". Will the user like"))
        text(self.title(int(item)))
        slot(ITEM_SLOT, item)
        text(self.piece("? Answer:"))
        return ids, kinds, entities

    def batch(self, rows: YesNoRows, index: np.ndarray | list[int]) -> dict[str, torch.Tensor]:
        """Right-padded tensors for rows ``index``: input_ids, attention_mask, kinds, entities, lengths, labels."""
        built = [self.build(int(rows.users[i]), rows.histories[i], int(rows.items[i])) for i in index]
        length = max(len(ids) for ids, _, _ in built)
        out = {
            "input_ids": torch.full((len(built), length), self.placeholder_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(built), length), dtype=torch.long),
            "kinds": torch.zeros((len(built), length), dtype=torch.long),
            "entities": torch.zeros((len(built), length), dtype=torch.long),
        }
        for row, (ids, kinds, entities) in enumerate(built):
            n = len(ids)
            out["input_ids"][row, :n] = torch.tensor(ids)
            out["attention_mask"][row, :n] = 1
            out["kinds"][row, :n] = torch.tensor(kinds)
            out["entities"][row, :n] = torch.tensor(entities)
        out["lengths"] = out["attention_mask"].sum(1)
        out["labels"] = torch.as_tensor(rows.labels[np.asarray(index)], dtype=torch.float32)
        out["users"] = torch.as_tensor(rows.users[np.asarray(index)])
        return out


# ----------------------------------------------------------------------------------------------------------
# Mappers and alignment losses
# ----------------------------------------------------------------------------------------------------------


class Projector(nn.Module):
    """MLP from the MF space to the LLM's input-embedding space, rescaled to the token embeddings' mean norm."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, target_norm: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.register_buffer("target_norm", torch.tensor(float(target_norm)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fixed norm: soft tokens stay at the scale the LLM's layers expect for token embeddings
        return F.normalize(self.net(x), dim=-1) * self.target_norm


def info_nce(queries: torch.Tensor, keys: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean cross-entropy of cosine similarities / temperature: query i's positive is key ``targets[i]``."""
    logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    return F.cross_entropy(logits, targets)


def grouped_info_nce(
    queries: torch.Tensor, group_of: torch.Tensor, group_keys: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE against the distinct groups in the batch: query i's positive is its own group's key.

    Rows that share a group (one item twice, two users with one profile) are never each other's negatives.
    """
    groups, targets = torch.unique(group_of, return_inverse=True)
    return info_nce(queries, group_keys[groups], targets, temperature)


# ----------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------


class SailRecModel(nn.Module):
    """LLM + frozen MF tables + user mapper / item projector; ``forward`` returns logit(Yes) - logit(No)."""

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        titles: list[str],
        user_table: torch.Tensor,
        item_table: torch.Tensor,
        config: SailRecConfig,
    ) -> None:
        super().__init__()
        self.config = config
        self.llm = llm
        self.tokenizer = tokenizer
        self.prompts = PromptBuilder(tokenizer, titles, config)
        self.register_buffer("user_table", user_table.detach().float().clone())  # frozen MF (stage 1)
        self.register_buffer("item_table", item_table.detach().float().clone())
        embeddings = self.input_embeddings().weight
        hidden = embeddings.shape[1]
        norm = float(embeddings.detach().float().norm(dim=1).mean())
        mf_dim = user_table.shape[1]
        self.user_mapper = Projector(mf_dim, config.mapper_hidden, hidden, norm)
        self.item_projector = Projector(mf_dim, config.mapper_hidden, hidden, norm)
        self.yes_no_ids = (self._answer_id(" Yes"), self._answer_id(" No"))
        self.n_layers = int(self.causal_lm().config.num_hidden_layers)
        install_steered_attention(self.causal_lm())
        self.layer_bias = (
            depth_schedule(self.n_layers, config.steer_shallow, config.steer_deep, config.steer_schedule)
            if config.steer
            else [0.0] * self.n_layers
        )
        # frozen text representations for alignment, filled by precompute_alignment_targets
        self.register_buffer("item_text_rep", torch.zeros(item_table.shape[0], hidden))
        self.register_buffer("item_text_known", torch.zeros(item_table.shape[0], dtype=torch.bool))
        self.register_buffer("user_profile_index", torch.full((user_table.shape[0],), -1, dtype=torch.long))
        self.register_buffer("profile_rep", torch.zeros(0, hidden))
        # the masking analysis's "another user": a seeded derangement of the user table (nobody maps to itself)
        n_users = user_table.shape[0]
        order = torch.randperm(n_users, generator=torch.Generator().manual_seed(0))
        other = torch.empty(n_users, dtype=torch.long)
        other[order] = torch.roll(order, 1)
        self.register_buffer("other_user", other, persistent=False)

    # -- parts of the LLM (peft wraps it in place; these find the pieces either way) ---------------------
    def causal_lm(self) -> Any:
        """The transformers CausalLM inside (LoRA layers, when present, are injected into it in place)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def decoder(self) -> Any:
        """The decoder stack without the LM head (``model`` for Llama-family models)."""
        lm = self.causal_lm()
        return getattr(lm, lm.base_model_prefix)

    def input_embeddings(self) -> nn.Embedding:
        return self.causal_lm().get_input_embeddings()

    def _answer_id(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            logger.warning("answer %r is %d tokens; scoring its first token", text, len(ids))
        return int(ids[0])

    # -- placeholders -> projected collaborative embeddings --------------------------------------------
    def collaborative_vectors(
        self, kinds: torch.Tensor, entities: torch.Tensor, source: str = "mf"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(user-slot vectors, item-slot vectors) in position order.

        ``source``: "mf" (the projected MF embeddings), "zeros" (zero vectors in place of the soft tokens) or
        "other_user" (the user slot gets another user's projected embedding: a fixed seeded derangement).
        """
        user_ids = entities[kinds == USER_SLOT]
        item_ids = entities[kinds == ITEM_SLOT]
        if source == "other_user":
            user_ids = self.other_user[user_ids]
        elif source not in ("mf", "zeros"):
            raise ValueError(f"source must be mf, zeros or other_user; got {source!r}")
        users = self.user_mapper(self.user_table[user_ids])
        items = self.item_projector(self.item_table[item_ids])
        if source == "zeros":
            users, items = torch.zeros_like(users), torch.zeros_like(items)
        return users, items

    def embed(self, batch: dict[str, torch.Tensor], source: str = "mf") -> torch.Tensor:
        """Input embeddings of the batch with every placeholder replaced by its projected MF embedding."""
        embeddings = self.input_embeddings()(batch["input_ids"])
        kinds = batch["kinds"]
        if not bool((kinds != TEXT).any()):
            return embeddings
        user_vectors, item_vectors = self.collaborative_vectors(kinds, batch["entities"], source)
        embeddings = embeddings.clone()
        embeddings[kinds == USER_SLOT] = user_vectors.to(embeddings.dtype)
        embeddings[kinds == ITEM_SLOT] = item_vectors.to(embeddings.dtype)
        return embeddings

    def steering_state(self, batch: dict[str, torch.Tensor], steer: bool | None = None, record: bool = False):
        """The attention-steering state for this batch (zero biases when steering is off)."""
        on = self.config.steer if steer is None else steer
        bias = (
            self.layer_bias
            if self.config.steer
            else depth_schedule(self.n_layers, self.config.steer_shallow, self.config.steer_deep, "linear")
        )
        return SteeringState(
            layer_bias=bias if on else [0.0] * self.n_layers,
            key_mask=batch["kinds"] != TEXT,
            answer_index=batch["lengths"] - 1,
            record=record,
        )

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        source: str = "mf",
        steer: bool | None = None,
        state: SteeringState | None = None,
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """logit(Yes) - logit(No) at each row's last prompt token."""
        embeddings = self.embed(batch, source) if embeddings is None else embeddings
        state = state or self.steering_state(batch, steer)
        with steering(state):
            hidden = self.decoder()(inputs_embeds=embeddings, attention_mask=batch["attention_mask"]).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, batch["lengths"] - 1]
        head = self.causal_lm().get_output_embeddings()
        weight = head.weight[list(self.yes_no_ids)]
        logits = last @ weight.T.to(last.dtype)
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[list(self.yes_no_ids)]
        return (logits[:, 0] - logits[:, 1]).float()

    # -- alignment -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 32, desc: str = "texts") -> torch.Tensor:
        """Mean-pooled hidden states (layer ``align_layer``) of the frozen LLM for each text (LoRA disabled)."""
        lm = self.causal_lm()
        device = self.input_embeddings().weight.device
        reps = []
        adapter_off = self.llm.disable_adapter() if hasattr(self.llm, "disable_adapter") else contextlib.nullcontext()
        with adapter_off, steering(SteeringState(layer_bias=[0.0] * self.n_layers)):
            for start in tqdm(range(0, len(texts), batch_size), desc=desc, leave=False):
                chunk = texts[start : start + batch_size]
                encoded = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                encoded = {k: v.to(device) for k, v in encoded.items()}
                states = lm(**encoded, output_hidden_states=True).hidden_states[self.config.align_layer]
                mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
                reps.append(((states * mask).sum(1) / mask.sum(1).clamp(min=1)).float())
        return torch.cat(reps) if reps else torch.zeros(0, self.item_text_rep.shape[1])

    def precompute_alignment_targets(
        self, items: np.ndarray, profiles: dict[int, list[str]] | None, profile_text: Any
    ) -> None:
        """Encode the titles of ``items`` and the distinct profile texts once with the frozen LLM."""
        items = np.unique(np.asarray(items, dtype=np.int64))
        items = items[(items > 0) & (items < self.item_text_rep.shape[0])]
        todo = items[~self.item_text_known[torch.as_tensor(items)].cpu().numpy()] if len(items) else items
        if len(todo):
            titles = [self.prompts.titles[i] or f"item {i}" for i in todo]
            self.item_text_rep[torch.as_tensor(todo)] = self.encode_texts(titles, desc="titles").to(
                self.item_text_rep.device
            )
            self.item_text_known[torch.as_tensor(todo)] = True
        if profiles:
            texts = sorted({profile_text(f) for f in profiles.values()})
            index = {t: i for i, t in enumerate(texts)}
            self.profile_rep = self.encode_texts(texts, desc="profiles").to(self.item_text_rep.device)
            for user, facets in profiles.items():
                if user < len(self.user_profile_index):
                    self.user_profile_index[user] = index[profile_text(facets)]

    def item_alignment_loss(self, items: torch.Tensor) -> torch.Tensor:
        """InfoNCE between projected item embeddings and the LLM representations of their titles."""
        items = items[self.item_text_known[items]]
        if items.numel() < 2:
            return self.item_text_rep.new_zeros(())
        return grouped_info_nce(
            self.item_projector(self.item_table[items]), items, self.item_text_rep, self.config.temperature
        )

    def user_alignment_loss(self, users: torch.Tensor) -> torch.Tensor:
        """InfoNCE between projected user embeddings and the representations of their semantic profiles."""
        users = users[self.user_profile_index[users] >= 0]
        if users.numel() < 2 or self.profile_rep.shape[0] < 2:
            return self.profile_rep.new_zeros(())
        profiles = self.user_profile_index[users]
        if torch.unique(profiles).numel() < 2:
            return self.profile_rep.new_zeros(())
        return grouped_info_nce(
            self.user_mapper(self.user_table[users]), profiles, self.profile_rep, self.config.temperature
        )

    def alignment_loss(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the alignment losses this variant uses."""
        total = self.item_text_rep.new_zeros(())
        if self.config.item_align:
            total = total + self.config.item_align_weight * self.item_alignment_loss(items)
        if self.config.user_align:
            total = total + self.config.user_align_weight * self.user_alignment_loss(users)
        return total

    # -- scoring ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def score_rows(
        self,
        rows: YesNoRows,
        batch_size: int | None = None,
        source: str = "mf",
        steer: bool | None = None,
        desc: str = "scoring",
    ) -> np.ndarray:
        """P(yes) for every row (``source``: see ``collaborative_vectors``; ``steer`` overrides the variant)."""
        was_training = self.training
        self.eval()
        batch_size = batch_size or self.config.eval_batch_size
        device = self.input_embeddings().weight.device
        out = []
        try:
            for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
                index = np.arange(start, min(start + batch_size, len(rows)))
                batch = {k: v.to(device) for k, v in self.prompts.batch(rows, index).items()}
                out.append(torch.sigmoid(self(batch, source=source, steer=steer)).cpu())
        finally:
            self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0)
