"""Modality encoders that only ever see the rows whose modality is present.

:func:`encode_present` gathers the present rows, runs the encoder on them alone and scatters the result
into a zero tensor, so a missing input is never read (the data layer fills it with NaN to prove it).
"""

from __future__ import annotations

import torch
from torch import nn

from mllm.dfpl.data import TableSchema
from mllm.dfpl.errors import DfplError
from mllm.dfpl.features import EfficientNetTokens


def encode_present(encoder: nn.Module, inputs: torch.Tensor | tuple, mask: torch.Tensor, n_tokens: int, dim: int):
    """``encoder`` on the rows where ``mask`` is True; (n, n_tokens, dim) with zeros on the other rows."""
    index = mask.nonzero(as_tuple=True)[0]
    parts = tuple(part.index_select(0, index) for part in (inputs if isinstance(inputs, tuple) else (inputs,)))
    reference = parts[0]
    out = torch.zeros(mask.shape[0], n_tokens, dim, device=reference.device)
    if len(index):
        out = out.index_put((index,), encoder(*parts))
    return out


class ImageEncoder(nn.Module):
    """Image tokens -> d-dim tokens: an MLP on cached 1280-d features, or a trainable EfficientNet-lite0 trunk.

    Inputs are (n, L, input_dim) cached features, or with ``finetune`` (n, P, 3, H, W) pixels of P photos,
    which the trunk turns into P * grid^2 region tokens. A learned position embedding marks each token slot.
    """

    def __init__(self, input_dim: int, n_tokens: int, dim: int, finetune: bool = False, grid: int = 1) -> None:
        super().__init__()
        self.trunk = EfficientNetTokens(grid=grid, trainable=True) if finetune else None
        self.n_tokens = n_tokens
        self.project = nn.Sequential(nn.LayerNorm(input_dim), nn.Linear(input_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.position = nn.Parameter(torch.zeros(n_tokens, dim))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(n, L, input_dim) features or (n, P, 3, H, W) pixels -> (n, n_tokens, dim)."""
        if self.trunk is not None:
            n = image.shape[0]
            image = self.trunk(image.flatten(0, 1)).reshape(n, -1, self.trunk.trunk._fc.in_features)
        return self.project(image) + self.position


class TabularEncoder(nn.Module):
    """Feature tokenizer + transformer (FT-Transformer style): one token per column plus a [CLS] token.

    ``kind="mlp"`` instead returns a single token from an MLP on [numeric, categorical embeddings].
    """

    def __init__(self, schema: TableSchema, dim: int, layers: int = 1, heads: int = 4, kind: str = "transformer"):
        super().__init__()
        self.kind = kind
        p, q = len(schema.numeric), len(schema.categorical)
        self.numeric_weight = nn.Parameter(torch.randn(p, dim) * 0.1)
        self.numeric_bias = nn.Parameter(torch.zeros(p, dim))
        offsets = torch.tensor([0, *schema.cardinalities[:-1]]).cumsum(0) if q else torch.zeros(0, dtype=torch.long)
        self.register_buffer("offsets", offsets.long(), persistent=False)
        self.embedding = nn.Embedding(max(1, sum(schema.cardinalities)), dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.n_tokens = 1 if kind == "mlp" else p + q + 1
        if kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear((p + q) * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        elif kind == "transformer":
            self.cls = nn.Parameter(torch.zeros(1, 1, dim))
            layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
        else:
            raise DfplError(f"tabular encoder kind {kind!r}: use 'transformer' or 'mlp'")

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """(n, p) standardised numeric and (n, q) codes -> (n, n_tokens, dim)."""
        tokens = [numeric.unsqueeze(-1) * self.numeric_weight + self.numeric_bias]
        if categorical.shape[1]:
            tokens.append(self.embedding(categorical + self.offsets))
        tokens = torch.cat(tokens, dim=1)
        if self.kind == "mlp":
            return self.mlp(tokens.flatten(1)).unsqueeze(1)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.norm(self.transformer(tokens))
