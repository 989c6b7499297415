"""Each collaborative-filtering model learns planted structure that popularity cannot, and round-trips
through save_pretrained / from_pretrained with identical scores."""

from __future__ import annotations

import pytest
import torch

from recsys.models import Recommender, build_model
from recsys.train import train_from_args

SETTINGS = {
    "pop": [],
    "ease": ["--l2", "10"],
    "bpr": ["--epochs", "40", "--lr", "0.01", "--batch_size", "128"],
    "neumf": [
        "--epochs",
        "30",
        "--lr",
        "0.005",
        "--batch_size",
        "128",
        "--mlp_layers",
        "32,16",
        "--gmf_dim",
        "16",
        "--mlp_dim",
        "16",
    ],
    "lightgcn": ["--epochs", "40", "--lr", "0.01", "--batch_size", "128", "--n_layers", "2"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, clustered_dataset_dir):
    """Train every model once on the clustered dataset; return {name: (result, checkpoint dir)}."""
    root = tmp_path_factory.mktemp("models")
    data = clustered_dataset_dir
    out = {}
    for name, extra in SETTINGS.items():
        result = train_from_args(
            ["--model", name, "--dataset", str(data), "--out", str(root / name), "--quiet", "--patience", "5", *extra]
        )
        out[name] = (result, root / name)
    return out


@pytest.mark.parametrize("name", ["ease", "bpr", "neumf", "lightgcn"])
def test_model_beats_item_popularity_on_planted_groups(trained, name):
    result, _ = trained[name]
    pop, _ = trained["pop"]
    assert result["n_users"] == pop["n_users"]
    assert result["ndcg@10"] > pop["ndcg@10"] + 0.25, (name, result["ndcg@10"], pop["ndcg@10"])
    assert result["recall@20"] > 0.9


@pytest.mark.parametrize("name", list(SETTINGS))
def test_checkpoint_round_trip_gives_identical_scores(trained, name):
    _, directory = trained[name]
    model = Recommender.from_pretrained(directory).eval()
    again = Recommender.from_pretrained(directory).eval()
    users = torch.arange(10)
    with torch.no_grad():
        torch.testing.assert_close(model.score(users), again.score(users))
        assert model.score(users).shape == (10, model.n_items)


def test_lightgcn_propagation_is_sparse_and_normalised():
    from recsys.models.lightgcn import normalized_adjacency

    users = torch.tensor([0, 0, 1])
    items = torch.tensor([0, 1, 1])
    adjacency = normalized_adjacency(users, items, 2, 2)
    assert adjacency.is_sparse
    dense = adjacency.to_dense()
    # user 0 (degree 2) - item 0 (degree 1): 1 / sqrt(2 * 1)
    assert dense[0, 2].item() == pytest.approx(2**-0.5)
    # user 1 (degree 1) - item 1 (degree 2)
    assert dense[1, 3].item() == pytest.approx(2**-0.5)
    torch.testing.assert_close(dense, dense.T)


def test_lightgcn_sparse_gradient_equals_the_dense_reference():
    """The symmetric sparse product's custom backward gives the gradient of the dense computation."""
    from recsys.models import build_model
    from recsys.models.lightgcn import normalized_adjacency

    gen = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 12, (60,), generator=gen), torch.randint(0, 9, (60,), generator=gen)
    pairs = torch.unique(torch.stack([users, items], 1), dim=0)

    class Train:  # the two fields LightGCN.prepare reads
        users, items = pairs[:, 0].numpy(), pairs[:, 1].numpy()

    model = build_model("lightgcn", 12, 9, {"embedding_dim": "4", "n_layers": "2"})
    model.prepare(Train)
    batch = {
        "users": torch.tensor([0, 3, 5]),
        "pos_items": torch.tensor([1, 2, 8]),
        "neg_items": torch.tensor([4, 0, 7]),
    }
    model.loss(batch).backward()
    sparse_grad = model.embedding.weight.grad.clone()

    dense = normalized_adjacency(pairs[:, 0], pairs[:, 1], 12, 9).to_dense()
    weight = model.embedding.weight.detach().clone().requires_grad_(True)
    layer, total = weight, weight
    for _ in range(2):
        layer = dense @ layer
        total = total + layer
    final = total / 3
    u, i_pos, i_neg = final[batch["users"]], final[12 + batch["pos_items"]], final[12 + batch["neg_items"]]
    bpr = -torch.nn.functional.logsigmoid((u * i_pos).sum(-1) - (u * i_neg).sum(-1)).mean()
    ego = weight[batch["users"]], weight[12 + batch["pos_items"]], weight[12 + batch["neg_items"]]
    reg = sum(e.pow(2).sum() for e in ego) / (2 * 3)
    (bpr + model.config.reg_weight * reg).backward()
    torch.testing.assert_close(sparse_grad, weight.grad)


def test_ease_closed_form_has_zero_diagonal(trained):
    _, directory = trained["ease"]
    model = Recommender.from_pretrained(directory)
    assert torch.count_nonzero(torch.diagonal(model.weights)) == 0


@pytest.mark.parametrize("towers", ["both", "gmf", "mlp"])
def test_neumf_full_scoring_equals_pairwise_logits(towers):
    """The factorised full-catalogue scorer gives the same numbers as the per-pair forward pass."""
    from recsys.models import build_model

    model = build_model("neumf", 9, 13, {"towers": towers, "score_chunk_pairs": "20", "mlp_layers": "[16, 8]"})
    model.eval()
    users = torch.tensor([0, 4, 8, 2])
    with torch.no_grad():
        pairs = model.logits(users.repeat_interleave(13), torch.arange(13).repeat(4)).view(4, 13)
        torch.testing.assert_close(model.score(users), pairs)


@pytest.mark.parametrize("n_neg", [1, 3])
def test_bpr_loss_equals_the_textbook_formula(n_neg):
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_model("bpr", 6, 9, {"reg_weight": 0.01})
    users = torch.tensor([0, 1, 5, 2])
    pos = torch.tensor([1, 2, 8, 0])
    neg = torch.randint(0, 9, (4, n_neg)) if n_neg > 1 else torch.tensor([3, 4, 0, 7])
    u, p, q = model.user_embedding(users), model.item_embedding(pos), model.item_embedding(neg)
    neg_scores = (u.unsqueeze(1) * q).sum(-1) if n_neg > 1 else (u * q).sum(-1)
    pos_scores = (u * p).sum(-1, keepdim=n_neg > 1)
    expected = -F.logsigmoid(pos_scores - neg_scores).mean()
    expected = expected + 0.01 * (u.pow(2).sum() + p.pow(2).sum() + q.pow(2).sum()) / (2 * len(users))
    got = model.loss({"users": users, "pos_items": pos, "neg_items": neg})
    assert torch.allclose(got, expected, atol=1e-6)


def test_sum_of_squares_matches_pow_sum_and_its_gradient():
    import torch

    from recsys.models.base import sum_of_squares

    a = torch.randn(7, 3, requires_grad=True)
    b = torch.randn(4, 2, 5, requires_grad=True)
    got = sum_of_squares(a, b)
    want = a.pow(2).sum() + b.pow(2).sum()
    assert torch.allclose(got, want)
    got.backward()
    assert torch.allclose(a.grad, 2 * a) and torch.allclose(b.grad, 2 * b)


@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_fused_bpr_loss_matches_autograd_value_and_gradient(reg):
    import torch
    import torch.nn.functional as F

    from recsys.models.base import bpr_loss

    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(33, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    u, p, n = tensors
    want = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()
    want = want + reg * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(u))
    want_grads = torch.autograd.grad(3.0 * want, tensors)  # an upstream gradient other than 1
    got = bpr_loss(u, p, n, reg)
    got_grads = torch.autograd.grad(3.0 * got, tensors)
    assert torch.allclose(got, want, atol=1e-12)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *t: bpr_loss(*t, reg), tuple(tensors))


def test_fused_bpr_loss_rejects_mismatched_shapes():
    import torch

    from recsys.models.base import bpr_loss

    with pytest.raises(ValueError, match="bpr_loss needs three"):
        bpr_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 2, 3))
