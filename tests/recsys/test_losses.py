"""recsys.models.losses: the blocked softmax cross-entropy equals the plain one, value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.models import build_model, losses
from recsys.models.losses import linear_cross_entropy


@pytest.mark.parametrize("n_rows", [17, 37, 300])  # two blocks, a partial last block, many blocks
def test_blocked_cross_entropy_equals_the_plain_form(monkeypatch, n_rows):
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 16 * 50)  # 16 rows per block of 50 classes
    torch.manual_seed(0)
    hidden = torch.randn(n_rows, 8, requires_grad=True)
    weight = torch.randn(50, 8, requires_grad=True)
    target = torch.randint(0, 50, (n_rows,))
    target[: n_rows // 2] = 3  # many rows share a target: their gradients must add up in weight's row 3
    plain = F.cross_entropy(hidden @ weight.T, target)
    grad_h, grad_w = torch.autograd.grad(2.5 * plain, (hidden, weight))
    blocked = linear_cross_entropy(hidden, weight, target)
    assert blocked.grad_fn is not None and "Blocked" in type(blocked.grad_fn).__name__
    torch.testing.assert_close(blocked, plain)
    ours_h, ours_w = torch.autograd.grad(2.5 * blocked, (hidden, weight))  # the upstream gradient is applied
    torch.testing.assert_close(ours_h, grad_h)
    torch.testing.assert_close(ours_w, grad_w)


def test_large_logits_do_not_overflow():
    hidden = torch.tensor([[100.0, 0.0], [0.0, -100.0]], requires_grad=True)
    weight = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]], requires_grad=True)
    target = torch.tensor([2, 0])
    blocked = linear_cross_entropy(hidden, weight, target)
    torch.testing.assert_close(blocked, F.cross_entropy(hidden @ weight.T, target))
    assert torch.isfinite(blocked) and blocked > 1000


def test_without_gradients_or_when_one_block_holds_all_it_is_the_plain_form_and_shapes_are_checked(monkeypatch):
    hidden, weight, target = torch.randn(5, 4), torch.randn(7, 4), torch.randint(0, 7, (5,))
    out = linear_cross_entropy(hidden, weight, target)
    assert out.grad_fn is None
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 35)  # 5 x 7 logits: one block
    small = linear_cross_entropy(hidden.requires_grad_(), weight, target)
    assert "Blocked" not in type(small.grad_fn).__name__
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 34)
    assert "Blocked" in type(linear_cross_entropy(hidden, weight, target).grad_fn).__name__
    torch.testing.assert_close(out, F.cross_entropy(hidden @ weight.T, target))
    with pytest.raises(ValueError, match="hidden \\[N, D\\] and weight \\[C, D\\]"):
        linear_cross_entropy(hidden, torch.randn(7, 3), target)
    with pytest.raises(ValueError, match="target must be \\[N\\] = \\[5\\]"):
        linear_cross_entropy(hidden, weight, target[:4])


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_sequential_ce_loss_is_the_full_softmax_over_item_logits(monkeypatch, similarity):
    """The models' ``ce`` loss (blocked) and cross-entropy over ``item_logits`` give the same parameter grads."""
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 200)  # 5 rows of 40 items per block
    calls = []
    blocked_apply = losses._BlockedLinearCrossEntropy.apply
    monkeypatch.setattr(losses._BlockedLinearCrossEntropy, "apply", lambda *a: calls.append(1) or blocked_apply(*a))
    torch.manual_seed(0)
    options = {"hidden_dim": 16, "max_len": 10, "dropout": 0.0, "similarity": similarity, "temperature": 0.5}
    model = build_model("sasrec", 3, 40, options)
    items = torch.randint(1, 41, (4, 10))
    targets = torch.randint(1, 41, (4, 10))
    targets[0, 6:] = 0  # padding positions are not targets
    batch = {"items": items, "targets": targets, "gaps": torch.zeros(4, 10)}
    ours = torch.autograd.grad(model.loss(batch), list(model.parameters()), allow_unused=True)
    hidden, _ = model.encode(items, batch["gaps"])
    mask = targets != 0
    plain = F.cross_entropy(model.item_logits(hidden[mask]), targets[mask] - 1)
    reference = torch.autograd.grad(plain, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(model.loss(batch), plain)
    assert len(calls) == 2  # both loss calls took the blocked path
    for mine, theirs in zip(ours, reference, strict=True):
        if theirs is None:
            assert mine is None
        else:
            torch.testing.assert_close(mine, theirs)
