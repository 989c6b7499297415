"""The RGCD-Rep stages wired to the data sets: what each CLI verb runs."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.io import atomic_write
from mllm.rgcd.data import TwoDomainData
from mllm.rgcd.teach import run_teacher, teacher_requests

logger = logging.getLogger(__name__)


def _save_item_embeddings(path: Path, source: np.ndarray, target: np.ndarray, source_ids: Any, target_ids: Any) -> None:
    """Write both domains' item embeddings and ids as one ``.npz``, atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(
                handle, source=source, target=target, source_ids=np.array(source_ids), target_ids=np.array(target_ids)
            )

    atomic_write(path, write)


def _active_items(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.unique(items)


def co_engaged_pairs(data: TwoDomainData, n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n_pairs`` (source item, target item) pairs engaged by one user each, drawn with a seed."""
    rng = np.random.default_rng(seed)
    both = np.intersect1d(np.unique(data.source.users), np.unique(data.target.users))
    pairs: list[tuple[int, int]] = []
    for user in rng.choice(both, size=min(n_pairs, both.size), replace=False) if both.size else []:
        source_items = data.source.items[data.source.users == user]
        target_items = data.target.items[data.target.users == user]
        pairs.append((int(rng.choice(source_items)), int(rng.choice(target_items))))
    return pairs


def teach_subsample(
    data: TwoDomainData,
    generate: Callable[[list[dict[str, str]]], str],
    out: str | Path,
    items_per_domain: int,
    n_pairs: int = 0,
    seed: int = 0,
    model_name: str = "",
) -> dict[str, Any]:
    """Run the teacher on a seeded subsample: ``items_per_domain`` items of each domain, and pairs (half
    co-engaged, half random)."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for name, log in (("source", data.source), ("target", data.target)):
        active = _active_items(log.users, log.items)
        chosen[name] = np.sort(rng.choice(active, size=min(items_per_domain, active.size), replace=False))
    half = n_pairs // 2
    pairs = co_engaged_pairs(data, half, seed)
    pairs += [
        (int(rng.integers(len(data.source.item_ids))), int(rng.integers(len(data.target.item_ids))))
        for _ in range(n_pairs - half)
    ]
    items = teacher_requests(
        [data.source.item_ids[i] for i in chosen["source"]],
        [data.source.item_texts[i] for i in chosen["source"]],
        [data.target.item_ids[i] for i in chosen["target"]],
        [data.target.item_texts[i] for i in chosen["target"]],
        [],
    )
    n_source = len(chosen["source"])
    # alternate the domains, so a run stopped early still has items of both
    alternating = itertools.zip_longest(items[:n_source], items[n_source:])
    requests = [r for pair in alternating for r in pair if r is not None]
    # pair ids index into the full item lists
    from mllm.rgcd.teach import TeacherRequest

    requests += [
        TeacherRequest(
            f"pair/{data.source.item_ids[s]}|{data.target.item_ids[t]}",
            "pair",
            (data.source.item_texts[s], data.target.item_texts[t]),
            "co-engaged" if k < half else "random",
        )
        for k, (s, t) in enumerate(pairs)
    ]
    unique: dict[str, Any] = {}
    for request in requests:
        unique.setdefault(request.record_id, request)
    summary = run_teacher(list(unique.values()), generate, out, model_name=model_name)
    summary.update({"data": data.name, "items_per_domain": items_per_domain, "pairs": n_pairs, "seed": seed})
    return summary


# ---------------------------------------------------------------------------------------------- distil


def distillation_examples(
    teacher_path: str | Path, targets: str = "reasoning"
) -> tuple[list[str], list[str], dict[str, int]]:
    """(item texts, student targets) from the valid item records of a teacher cache; ``targets="titles"``
    uses each item's own text instead of the reasoning (the no-distillation ablation, same items)."""
    from mllm.rgcd.errors import RGCDDataError
    from mllm.rgcd.teach import read_cache, reasoning_text

    records = read_cache(teacher_path)
    items = [r for r in records.values() if r.get("kind") == "item"]
    valid = [r for r in items if r.get("valid")]
    if not valid:
        raise RGCDDataError(f"{teacher_path}: no valid item records to distil (run teach first)")
    texts = [r["texts"][0] for r in valid]
    outputs = [reasoning_text(r) for r in valid] if targets == "reasoning" else list(texts)
    pairs = [r for r in records.values() if r.get("kind") == "pair"]
    counts = {
        "item_records": len(items),
        "valid_item_records": len(valid),
        "pair_records": len(pairs),
        "valid_pair_records": sum(1 for r in pairs if r.get("valid")),
    }
    return texts, outputs, counts


def distill_and_embed(
    data: TwoDomainData,
    teacher_path: str | Path,
    out: str | Path,
    model: str = "default",
    targets: str = "reasoning",
    summary_tokens: int = 4,
    epochs: int = 2,
    lr: float = 5e-4,
    max_items: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the summary-token student on the teacher cache, then embed every item of both domains."""
    import time

    import torch

    from core.io import atomic_write_json
    from mllm.backbones import load_causal_lm
    from mllm.rgcd.student import StudentConfig, SummaryTokenStudent, embed_items, train_student

    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts, outputs, counts = distillation_examples(teacher_path, targets)
    config = StudentConfig(summary_tokens=summary_tokens, epochs=epochs, lr=lr, seed=seed)
    lm, tokenizer = load_causal_lm(model, dtype=torch.float32, device="cpu")
    student = SummaryTokenStudent(lm, tokenizer, config)
    losses = train_student(student, texts, outputs, progress=progress)
    trained = time.time()
    limit = max_items or None
    source_ids, target_ids = data.source.item_ids[:limit], data.target.item_ids[:limit]
    source = embed_items(student, data.source.item_texts[:limit], progress=progress)
    target = embed_items(student, data.target.item_texts[:limit], progress=progress)
    student.save(out / "student")
    path = out / "item_embeddings.npz"
    _save_item_embeddings(path, source, target, source_ids, target_ids)
    summary = {
        "data": data.name,
        "targets": targets,
        "model": str(model),
        "train_examples": len(texts),
        **counts,
        "losses": losses,
        "train_seconds": round(trained - started, 1),
        "embed_seconds": round(time.time() - trained, 1),
        "embeddings": str(path),
        "dim": int(source.shape[1]),
    }
    atomic_write_json(out / "distill_summary.json", summary)
    return summary


def load_item_embeddings(path: str | Path, data: TwoDomainData) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) content arrays from an embeddings file, checked against the data set's item ids."""
    from mllm.rgcd.errors import RGCDDataError

    try:
        archive = np.load(path)
    except (OSError, ValueError) as exc:
        raise RGCDDataError(f"{path}: cannot read item embeddings ({exc})") from None
    for part in ("source", "target"):
        ids = [str(x) for x in archive[f"{part}_ids"]]
        expected = getattr(data, part).item_ids
        if ids != list(expected):
            raise RGCDDataError(
                f"{path}: field {part}_ids does not match {data.name}'s {part} items ({len(ids)} vs {len(expected)})"
            )
    return archive["source"].astype(np.float32), archive["target"].astype(np.float32)


def text_embeddings(data: TwoDomainData, cache: str | Path, embedder_name: str = "minilm") -> Path:
    """Embed every item text with a retrieval embedder (MiniLM by default) into an embeddings file (cached)."""
    from retrieval.embed import make_text_embedder

    cache = Path(cache)
    if cache.is_file():
        return cache
    embedder = make_text_embedder(embedder_name)
    source = np.asarray(embedder.embed_texts(data.source.item_texts), dtype=np.float32)
    target = np.asarray(embedder.embed_texts(data.target.item_texts), dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    _save_item_embeddings(cache, source, target, data.source.item_ids, data.target.item_ids)
    return cache


# ---------------------------------------------------------------------------------------------- represent


def fit_decomposition(
    task: Any,
    source: np.ndarray,
    target: np.ndarray,
    residual: bool = True,
    positives: str = "behaviour",
    seed: int = 0,
    steps: int = 300,
) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """Train the decomposition on a cold-start task's training behaviour; returns (model, parts, diagnostics).

    Behavioural positives come from the source log and the target TRAIN part only (never valid/test); cold
    target items are left out of training and of the standardisation statistics."""
    from mllm.rgcd.represent import DecompositionConfig, standardise, train_decomposition

    warm = task.warm_items
    source, target = standardise(source, target, warm)
    matrix = decomposition_labels(task, source, target, positives)
    config = DecompositionConfig(residual=residual, seed=seed, steps=steps)
    # cold target items (if any) take no part in training: the decomposition sees the warm items only and is
    # then applied to every item, so a cold item's parts come from its content through the trained networks
    model, history = train_decomposition(source, target[warm], matrix[:, warm], config)
    parts = {f"source_{k}": v for k, v in model.export(source, "source").items()}
    parts.update({f"target_{k}": v for k, v in model.export(target, "target").items()})
    parts["source_content"], parts["target_content"] = source, target
    return (
        model,
        parts,
        {
            "n_positive_pairs": int((matrix > 0).sum()),
            "effective_positives_per_source_item": effective_positives(matrix),
            "n_target_items": int(matrix.shape[1]),
            "positives": positives,
            "residual": residual,
            "final_losses": history[-1] if history else {},
        },
    )


def decomposition_labels(task: Any, source: np.ndarray, target: np.ndarray, positives: str) -> np.ndarray:
    """The contrastive loss's positive weights ``[n_source, n_target]``: behavioural (from the source log and the
    target TRAIN split only, so a cold item's column is empty) or, for the no-behaviour ablation, content nearest
    neighbours among the warm target items (cold columns zero as well)."""
    from mllm.rgcd.represent import behaviour_positives, content_positives

    if positives in ("behaviour", "behaviour_cosine"):
        weighting = "cosine" if positives == "behaviour_cosine" else "lift"
        return behaviour_positives(task.source.to_csr(), task.split.train.to_csr(), weighting=weighting)
    warm = task.warm_items
    matrix = np.zeros((len(source), len(target)), dtype=np.float32)
    matrix[:, warm] = content_positives(source, target[warm])
    return matrix


def effective_positives(matrix: np.ndarray) -> float:
    """Median over source items of exp(entropy) of the row-normalised positive weights: how many target items a
    source item's soft label is spread over (1: one sharp positive; n_target: uniform, no alignment signal)."""
    rows = matrix[matrix.sum(1) > 0]
    if rows.size == 0:
        return 0.0
    labels = rows / rows.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(labels > 0, labels * np.log(labels), 0.0).sum(1)
    return float(np.median(np.exp(entropy)))


@dataclass
class PartContract:
    """The embedder contract recorded with an exported collection (no texts: vectors come from the pipeline)."""

    name: str
    dim: int
    modality: str = "vector"

    def embed_texts(self, texts: Any) -> np.ndarray:  # pragma: no cover - the store never calls it for vectors
        from mllm.rgcd.errors import RGCDError

        raise RGCDError(f"{self.name}: RGCD-Rep parts are computed by `python -m mllm.rgcd represent`, not from text")

    def embed_images(self, images: Any) -> np.ndarray:  # pragma: no cover
        return self.embed_texts(images)


def collection_name(data_name: str, domain: str, part: str) -> str:
    """The store collection of one domain's part: ``rgcd_<data>_<domain>_<part>``."""
    return f"rgcd_{data_name}_{domain}_{part}".replace("-", "_")


def export_parts(store: Any, data: TwoDomainData, parts: dict[str, np.ndarray], run_tag: str) -> dict[str, int]:
    """Upsert each domain's parts into its own collection (ids ``<domain>/<item id>``); idempotent."""
    counts = {}
    for domain in ("source", "target"):
        ids = [f"{domain}/{item}" for item in getattr(data, domain).item_ids]
        for part in ("transferable", "residual"):
            key = f"{domain}_{part}"
            if key not in parts:
                continue
            vectors = parts[key]
            name = collection_name(data.name, domain, part)
            contract = PartContract(name=f"rgcd-rep:{part}:{run_tag}", dim=int(vectors.shape[1]))
            collection = store.collection(name, embedder=contract)
            metadatas = [{"domain": domain, "part": part, "item_id": str(i)} for i in getattr(data, domain).item_ids]
            collection.upsert(ids, embeddings=vectors, metadatas=metadatas)
            counts[name] = collection.count()
    return counts


def represent_and_export(
    data: TwoDomainData,
    embeddings: str | Path,
    out: str | Path,
    store_path: str | Path | None = None,
    residual: bool = True,
    positives: str = "behaviour",
    seed: int = 0,
    cold_share: float = 0.5,
    max_cold: int = 2,
) -> dict[str, Any]:
    """Decompose the item contents of ``embeddings``, write the parts (npz) and export them to the store."""
    import hashlib

    from core.io import atomic_write, atomic_write_json
    from mllm.rgcd.data import cold_start_task
    from retrieval.store import VectorStore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source, target = load_item_embeddings(embeddings, data)
    task = cold_start_task(data, cold_share, max_cold, seed=0)
    _, parts, diagnostics = fit_decomposition(task, source, target, residual, positives, seed)
    atomic_write(out / "parts.npz", lambda tmp: np.savez(tmp.open("wb"), **parts))
    run_tag = hashlib.sha256(f"{Path(embeddings).resolve()}|{residual}|{positives}|{seed}".encode()).hexdigest()[:10]
    with VectorStore(store_path) as store:
        counts = export_parts(store, data, parts, run_tag)
    summary = {
        "data": data.name,
        "parts": str(out / "parts.npz"),
        "store": str(store_path),
        "collections": counts,
        "run_tag": run_tag,
        **diagnostics,
    }
    atomic_write_json(out / "represent_summary.json", summary)
    return summary


# ---------------------------------------------------------------------------------------------- evaluate

BASELINES = ("pop", "target_only", "shared_id", "minilm", "student_raw")
FULL_AND_ABLATIONS = (
    "full",
    "titles_student",
    "no_residual",
    "no_behaviour",
    "full_cosine_positives",
    "full_separate_projections",
)
METHODS = BASELINES + FULL_AND_ABLATIONS
# which embeddings file each content method reads ("reasoning": the distilled student, "titles": the
# student trained on titles, "minilm": MiniLM text embeddings) and how the decomposition is run
METHOD_SPECS: dict[str, dict[str, Any]] = {
    "minilm": {"embeddings": "minilm", "decompose": False},
    "student_raw": {"embeddings": "reasoning", "decompose": False},
    "full": {"embeddings": "reasoning", "decompose": True, "residual": True, "positives": "behaviour"},
    "titles_student": {"embeddings": "titles", "decompose": True, "residual": True, "positives": "behaviour"},
    "no_residual": {"embeddings": "reasoning", "decompose": True, "residual": False, "positives": "behaviour"},
    "no_behaviour": {"embeddings": "reasoning", "decompose": True, "residual": True, "positives": "content"},
    # the pre-fix behavioural weighting (dense cosine-normalised co-engagement), for the comparison in the docs
    "full_cosine_positives": {
        "embeddings": "reasoning",
        "decompose": True,
        "residual": True,
        "positives": "behaviour_cosine",
    },
    # the pre-fix consumption: every feature column through a per-domain projection (no shared matrix)
    "full_separate_projections": {
        "embeddings": "reasoning",
        "decompose": True,
        "residual": True,
        "positives": "behaviour",
        "shared_projection": False,
    },
}


def method_features(
    method: str,
    task: Any,
    contents: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int,
    shared_projection: bool = True,
    content_shared_space: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, int, dict[str, Any]]:
    """(source item features, target item features, shared feature columns, diagnostics) for a content method.

    Features are standardised with the union of both domains' statistics. Columns that lie in one space for both
    domains (an undecomposed content embedding from one encoder, or the transferable part) come first and are
    counted as shared, so the two-tower model projects them with one matrix for both domains
    (``shared_projection=False``: every column gets a per-domain projection, the pre-fix behaviour kept for the
    comparison); the residual part (per domain by construction) follows with per-domain projections.
    ``content_shared_space=False`` says the raw contents of the two domains are different spaces (Amazon's
    per-category attribute projections): undecomposed contents then get per-domain projections."""
    from mllm.rgcd.errors import RGCDDataError
    from mllm.rgcd.represent import standardise

    spec = METHOD_SPECS[method]
    if spec["embeddings"] not in contents:
        raise RGCDDataError(f"method {method!r} needs the {spec['embeddings']!r} item embeddings (--embeddings)")
    source, target = contents[spec["embeddings"]]
    warm = task.warm_items  # statistics from warm items only: a cold item shapes nothing
    if not spec["decompose"]:
        source, target = standardise(source, target, warm)
        return source, target, source.shape[1] if shared_projection and content_shared_space else 0, {}
    _, parts, diagnostics = fit_decomposition(task, source, target, spec["residual"], spec["positives"], seed)
    source_features, target_features = standardise(parts["source_transferable"], parts["target_transferable"], warm)
    shared = source_features.shape[1] if shared_projection else 0
    if spec["residual"]:
        # each domain's residual is its own space: standardise it on its own domain
        residuals = []
        for domain, rows in (("source", slice(None)), ("target", warm)):
            r = parts[f"{domain}_residual"]
            residuals.append(((r - r[rows].mean(0)) / (r[rows].std(0) + 1e-6)).astype(np.float32))
        source_features = np.concatenate([source_features, residuals[0]], axis=1)
        target_features = np.concatenate([target_features, residuals[1]], axis=1)
    return source_features, target_features, shared, diagnostics


def _cold_metrics(
    model: Any, task: Any, ks: tuple[int, ...], on: str = "test", group: str = "cold_users"
) -> dict[str, float]:
    """Full-ranking metrics of one group of held-out interactions (``on="valid"``: the validation items, with
    only the training items masked; what tuning selects on, never a test item). ``group``: ``cold_users`` (the
    cold users' held-out item), ``cold_items`` / ``warm_items`` (every user's held-out item if it is / is not a
    cold item). The ranking always covers every target item, with the same masks."""
    import scipy.sparse as sp
    import torch

    from evals.ranking import evaluate_full_ranking

    held_out = (task.split.test if on == "test" else task.split.valid).to_csr()
    if group == "cold_users":
        keep = np.zeros(held_out.shape[0], dtype=np.float32)
        keep[task.cold_users] = 1.0
        held_out = sp.diags(keep) @ held_out
    else:
        columns = np.isin(np.arange(held_out.shape[1]), task.cold_items)
        held_out = held_out @ sp.diags((columns if group == "cold_items" else ~columns).astype(np.float32))
    held_out = sp.csr_matrix(held_out)
    held_out.eliminate_zeros()
    mask = task.split.train.to_csr()
    if on == "test":
        mask = mask + task.split.valid.to_csr()
    model.eval()

    @torch.no_grad()
    def score(users: torch.Tensor) -> torch.Tensor:
        return model.score(users).float()

    result = evaluate_full_ranking(score, held_out, mask, ks=ks, progress=False)
    return {k: v for k, v in result.items() if isinstance(v, (int, float))}


def _group_metrics(model: Any, task: Any, ks: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Cold users (test and validation) and, with cold items, the cold- and warm-item test interactions and the
    cold-item validation interactions (the cold-item tuning criterion)."""
    groups = {"cold": _cold_metrics(model, task, ks), "cold_valid": _cold_metrics(model, task, ks, on="valid")}
    if len(getattr(task, "cold_items", ())):
        groups["cold_item"] = _cold_metrics(model, task, ks, group="cold_items")
        groups["warm_item"] = _cold_metrics(model, task, ks, group="warm_items")
        groups["cold_item_valid"] = _cold_metrics(model, task, ks, on="valid", group="cold_items")
    return groups


def run_method(
    method: str,
    task: Any,
    contents: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int,
    epochs: int = 30,
    lr: float = 1e-2,
    reg_weight: float = 1e-4,
    shared_projection: bool = True,
    content_shared_space: bool = True,
) -> dict[str, Any]:
    """Train and evaluate one method at one seed: full-ranking metrics on all test users, on cold users, and on
    the cold users' validation items (``cold_valid``, for tuning)."""
    import time

    import torch

    from evals.ranking import evaluate_full_ranking
    from mllm.rgcd.two_tower import RGCDTwoTower, TwoTowerConfig
    from recsys.train import TrainConfig, Trainer

    started = time.time()
    ks = (10,)
    if method == "pop":
        counts = torch.as_tensor(np.asarray(task.split.train.to_csr().sum(axis=0)).ravel(), dtype=torch.float32)
        mask = task.split.train.to_csr() + task.split.valid.to_csr()

        class _Popularity:
            def eval(self) -> None:
                return None

            def score(self, users: torch.Tensor) -> torch.Tensor:
                return counts.expand(len(users), -1)

        model = _Popularity()
        all_users = evaluate_full_ranking(
            lambda u: model.score(u), task.split.test.to_csr(), mask, ks=ks, progress=False
        )
        all_users = {k: v for k, v in all_users.items() if isinstance(v, (int, float))}
        return {
            "method": method,
            "seed": seed,
            "all": all_users,
            **_group_metrics(model, task, ks),
            "seconds": round(time.time() - started, 2),
        }
    torch.manual_seed(seed)
    split = task.split
    # every method but the target-only baseline shares one item space with the source domain, trained on the
    # behaviour of both domains (the shared-embedding baseline); content methods add their features on top
    source_csr = None if method == "target_only" else task.source.to_csr()
    diagnostics: dict[str, Any] = {}
    source_features = target_features = None
    shared_dim = 0
    if method in METHOD_SPECS:
        source_features, target_features, shared_dim, diagnostics = method_features(
            method,
            task,
            contents,
            seed,
            METHOD_SPECS[method].get("shared_projection", shared_projection),
            content_shared_space,
        )
    torch.manual_seed(seed)  # the decomposition reseeds torch: every method's two-tower starts from one state
    config = TwoTowerConfig(
        joint_behaviour=method != "target_only", reg_weight=reg_weight, shared_feature_dim=shared_dim
    )
    model = RGCDTwoTower(config, split.train.n_users, split.train.n_items)
    model.attach(source_csr, source_features, target_features, cold_items=getattr(task, "cold_items", None))
    train_config = TrainConfig(
        epochs=epochs,
        batch_size=8192,
        lr=lr,
        patience=5,
        ks=ks,
        seed=seed,
        save_every_epoch=False,
        eval_batch_size=2048,
    )
    trainer = Trainer(model, split, train_config, progress=False)
    result = trainer.fit()
    all_users = {k: v for k, v in result.items() if (isinstance(v, (int, float)) and "@" in k) or k == "n_users"}
    return {
        "method": method,
        "seed": seed,
        "all": all_users,
        **_group_metrics(model, task, ks),
        "hyperparameters": {
            "lr": lr,
            "reg_weight": reg_weight,
            "epochs": epochs,
            "shared_feature_dim": shared_dim,
        },
        "best_epoch": result.get("best_epoch"),
        "epochs_run": result.get("epochs_run"),
        "decomposition": diagnostics,
        "seconds": round(time.time() - started, 2),
    }


def summarise(runs: list[dict[str, Any]], metrics: tuple[str, ...] = ("hr@10", "ndcg@10")) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per method, for cold and all users."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        row: dict[str, Any] = {"method": method, "seeds": len(mine)}
        for group in ("cold", "all", "cold_valid", "cold_item", "warm_item", "cold_item_valid"):
            if not all(group in r for r in mine):  # results written before the validation metrics existed
                continue
            for metric in metrics:
                values = np.array([r[group][metric] for r in mine])
                row[f"{group}_{metric}"] = float(values.mean())
                row[f"{group}_{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


# the tuning grid every tuned method gets (same budget): the two-tower's L2 weight
TUNING_GRID: tuple[dict[str, float], ...] = tuple({"reg_weight": w} for w in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1))


def tuning_criterion(task: Any) -> str:
    """The validation group tuning selects on: the cold-item validation interactions when items are held out,
    else the cold users' validation items."""
    return "cold_item_valid" if len(getattr(task, "cold_items", ())) else "cold_valid"


def tune_method(
    method: str,
    task: Any,
    contents: dict[str, tuple[np.ndarray, np.ndarray]],
    grid: tuple[dict[str, float], ...] = TUNING_GRID,
    seed: int = 0,
    epochs: int = 30,
    **options: Any,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Pick ``method``'s hyperparameters from ``grid`` by VALIDATION NDCG@10 at one seed (never by a test item):
    the cold users' validation items, or the cold items' validation interactions when items are held out
    (``tuning_criterion``; ties broken by the cold users' validation items); returns (the chosen setting, every
    tuning run)."""
    criterion = tuning_criterion(task)
    runs = [run_method(method, task, contents, seed, epochs, **setting, **options) for setting in grid]
    # ties (an ID-only model scores every cold item alike, so its cold-item validation NDCG is 0 at every setting)
    # are broken by the cold users' validation items, then by the smaller weight
    best = max(range(len(grid)), key=lambda i: (runs[i][criterion]["ndcg@10"], runs[i]["cold_valid"]["ndcg@10"], -i))
    logger.info("tuned %s: %s (%s ndcg@10 %.4f)", method, grid[best], criterion, runs[best][criterion]["ndcg@10"])
    return dict(grid[best]), runs


def evaluate_methods(
    data: TwoDomainData,
    embeddings: dict[str, str | Path],
    methods: list[str] | None = None,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    cold_share: float = 0.5,
    max_cold: int = 2,
    epochs: int = 30,
    out: str | Path | None = None,
    minilm_cache: str | Path | None = None,
    tune: list[str] | tuple[str, ...] = (),
    content_shared_space: bool = True,
    cold_items: float = 0.0,
    grid: tuple[dict[str, float], ...] = TUNING_GRID,
    cold_item_seed: int = 0,
) -> dict[str, Any]:
    """Every method x seed on one cold-start task; returns (and writes to ``out``) runs and the summary.

    Methods in ``tune`` first get the same tuning budget (``TUNING_GRID`` at seed 0, selected on the cold users'
    validation items, or the cold items' with ``cold_items`` > 0: that share of target items held out of all
    training, ``cold_start_task``). The others inherit a tuned setting so that each comparison changes one thing: the
    content methods and ablations take ``full``'s, the target-only model ``shared_id``'s (defaults otherwise)."""
    from core.io import atomic_write_json
    from mllm.rgcd.data import cold_start_task
    from mllm.rgcd.errors import RGCDDataError

    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RGCDDataError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    task = cold_start_task(data, cold_share, max_cold, seed=0, cold_items=cold_items, item_seed=cold_item_seed)
    paths = dict(embeddings)
    if any(METHOD_SPECS.get(m, {}).get("embeddings") == "minilm" for m in methods) and "minilm" not in paths:
        cache = minilm_cache or (Path(out).parent if out else Path(".")) / f"{data.name}_minilm.npz"
        paths["minilm"] = text_embeddings(data, cache)
    contents = {name: load_item_embeddings(path, data) for name, path in paths.items()}
    settings: dict[str, dict[str, float]] = {}
    tuning_runs: list[dict[str, Any]] = []
    for method in tune:
        settings[method], tried = tune_method(
            method, task, contents, grid=grid, epochs=epochs, content_shared_space=content_shared_space
        )
        tuning_runs += tried
    for method in methods:
        parent = "shared_id" if method == "target_only" else "full" if method in METHOD_SPECS else None
        if method not in settings and parent in settings:
            settings[method] = settings[parent]
    runs = []
    for seed in seeds:
        for method in methods:
            run = run_method(
                method,
                task,
                contents,
                seed,
                epochs,
                content_shared_space=content_shared_space,
                **settings.get(method, {}),
            )
            logger.info(
                "%s seed %d: cold hr@10 %.4f, all hr@10 %.4f", method, seed, run["cold"]["hr@10"], run["all"]["hr@10"]
            )
            runs.append(run)
            if out is not None:  # a partial file after each run, so a long job's progress is visible
                atomic_write_json(out, {"task": task.info(), "runs": runs, "summary": summarise(runs)})
    result = {
        "task": task.info(),
        "embeddings": {k: str(v) for k, v in paths.items()},
        "tuning": {
            "grid": list(grid),
            "criterion": tuning_criterion(task),
            "selected": settings,
            "runs": tuning_runs,
        },
        "runs": runs,
        "summary": summarise(runs),
    }
    if out is not None:
        atomic_write_json(out, result)
    return result
