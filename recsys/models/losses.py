"""Losses shared by several models.

``linear_cross_entropy(h, W, target)`` is ``F.cross_entropy(h @ W.T, target)`` (the softmax over a whole item
catalogue) computed a block of rows at a time on the CPU, without ever holding the [N, n_items] logits.

Why: on a CPU the plain form is dominated by memory, not arithmetic. For an Amazon-sized catalogue (18k items,
6,400 positions per batch) the logits are 470 MB; every fresh tensor that large is mapped page by page by the
kernel, and the softmax and its gradient pass over it several times. Measured on one thread: 2.0 s for the
plain forward and backward, of which the matrix products are under half. Here each block's logits go into one
reused buffer, are turned into the softmax gradient in place, and are multiplied straight into the gradients
of ``h`` and ``W``, which the forward pass keeps for the backward one (one pass over the logits, not three).

On CUDA, where no gradient is needed, and where all the logits fit one block, it is the plain form: on a GPU
cuBLAS and the caching allocator do not have this problem, and the plain form keeps autocast's bf16 matrix
products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# rows per block: the block's logits (rows x n_items floats) stay a few MB, reused across blocks
BLOCK_ELEMENTS = 1 << 20


class _BlockedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, n_classes = hidden.shape[0], weight.shape[0]
        h, w = hidden.float(), weight.float()
        rows = max(1, min(n, BLOCK_ELEMENTS // max(n_classes, 1)))
        buffer = h.new_empty(rows, n_classes)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(w)
        total = h.new_zeros(())
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block, logits, t = h[start:stop], buffer[: stop - start], target[start:stop]
            torch.mm(block, w.T, out=logits)
            index = torch.arange(stop - start, device=h.device)
            picked = logits[index, t]
            top = logits.amax(dim=1)
            logits.sub_(top[:, None]).exp_()
            norm = logits.sum(dim=1)
            total += (top + norm.log() - picked).sum()
            logits.div_(norm[:, None])  # softmax
            logits[index, t] -= 1.0  # d(loss_i)/d(logits_i)
            torch.mm(logits, w, out=grad_h[start:stop])
            grad_w.addmm_(logits.T, block)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / grad_h.shape[0]
        return (grad_h * scale).to(ctx.dtypes[0]), (grad_w * scale).to(ctx.dtypes[1]), None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``target`` (class indices), as ``F.cross_entropy``.

    hidden [N, D], weight [C, D], target [N] in ``[0, C)``. Equal to the plain form up to float rounding, with
    the same gradients (tested); blocked on the CPU when a gradient is needed (see the module docstring)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: hidden [N, D] and weight [C, D], got {hidden.shape}, {weight.shape}")
    if target.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: target must be [N] = [{hidden.shape[0]}], got {tuple(target.shape)}")
    if hidden.shape[0] == 0:
        return F.cross_entropy(hidden @ weight.T, target)  # nan, as the plain form
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    # where all the logits fit one block, the plain form is as lean and has no Python loop
    blocked = hidden.device.type == "cpu" and needs_grad and hidden.shape[0] * weight.shape[0] > BLOCK_ELEMENTS
    if not blocked:
        return F.cross_entropy(hidden @ weight.T, target)
    return _BlockedLinearCrossEntropy.apply(hidden, weight, target)
