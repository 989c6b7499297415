"""camroll performance: demo-roll generation and ingest throughput (photos/s), answer latency, peak memory.

``python benchmarks/camroll.py --users 50 --out benchmarks/results/camroll_perf.json [--visual efficientnet]``
builds (or reuses) a demo roll under ``--data``, ingests every chosen user into a fresh store, answers each
user's QA with the planner, and writes one JSON file with the command, commit and machine. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.cli import add_verbosity_args, configure_from_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_verbosity_args(parser)
    parser.add_argument("--data", default=None, help="demo roll folder (built there if missing)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--photos-per-user", type=int, default=630)
    parser.add_argument("--seed", type=int, default=2026, help="the held-out seed by default")
    parser.add_argument(
        "--visual",
        default="efficientnet",
        help="efficientnet (default), none, open_clip:MODEL:WEIGHTS_FILE, or vlm:FOLDER",
    )
    parser.add_argument("--embedder", default="minilm", help="minilm or hashing")
    parser.add_argument("--out", default="benchmarks/results/camroll_perf.json")
    args = parser.parse_args()
    configure_from_args(args)

    from agents.camroll.answerers import PlannerAnswerer
    from agents.camroll.data import read_qa, user_dir
    from agents.camroll.demo_data import make_demo_roll
    from agents.camroll.graph import ask, build_graph
    from agents.camroll.memory import CamrollMemory, make_visual
    from agents.camroll.tools import CamrollTools
    from core.io import atomic_write_json
    from core.provenance import environment
    from retrieval import VectorStore
    from retrieval.embed import make_text_embedder

    data = Path(args.data or tempfile.mkdtemp(prefix="camroll-bench-"))
    users = [str(u) for u in range(1, args.users + 1)]
    result: dict = {"command": "python " + " ".join(sys.argv), "settings": vars(args)}
    if not (data / "camroll.json").is_file():
        started = time.perf_counter()
        made = make_demo_roll(data, users=users, photos_per_user=args.photos_per_user, seed=args.seed)
        seconds = time.perf_counter() - started
        result["generate"] = {
            **made,
            "seconds": round(seconds, 1),
            "photos_per_second": round(made["photos"] / seconds, 1),
        }
    with tempfile.TemporaryDirectory() as scratch, VectorStore(Path(scratch) / "store") as store:
        memory = CamrollMemory(
            store, data, embedder=make_text_embedder(args.embedder), visual=make_visual(args.visual),
            cache_dir=Path(scratch) / "cache",
        )  # fmt: skip
        started, photos = time.perf_counter(), 0
        for user in users:
            photos += memory.ingest(user, progress=False)["photos"]
        seconds = time.perf_counter() - started
        result["ingest"] = {
            "photos": photos,
            "seconds": round(seconds, 1),
            "photos_per_second": round(photos / seconds, 1),
        }
        started = time.perf_counter()
        for user in users:
            memory.ingest(user, progress=False)
        result["reingest_unchanged_seconds"] = round(time.perf_counter() - started, 2)
        latencies = []
        for user in users:
            tools = CamrollTools(memory, user)
            for qa in read_qa(user_dir(data, user)):
                latencies.append(
                    ask(build_graph(tools, PlannerAnswerer(user)), qa.question, qa.question_date)["seconds"]
                )
        result["planner_latency_s"] = {
            "n": len(latencies),
            "p50": round(float(np.percentile(latencies, 50)), 4),
            "p95": round(float(np.percentile(latencies, 95)), 4),
        }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["environment"] = environment()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
