"""Choose the offline caption reader's threshold on the demo roll (never on the real roll's questions).

    nice -n 10 python -m benchmarks.camroll_reader_threshold --users 3

For every question of the development demo roll (seed 0: the paraphrase set's SEEN templates and the roll's own
template set), the hybrid answerer's caption search runs as it would when no query fits (a photo search on the
question, inside the time it names, photos naming its entities first). The found photos are split into those of
the question's gold evidence and the rest, and the sentence reader's best sentence is scored on each side: a
*supported* reading (the best sentence of an evidence photo) and an *unsupported* one (the best sentence when
no evidence photo is there to read, as for a question whose answer the roll does not hold). The threshold is the
similarity with the best precision of "answer iff supported" among those still answering at least half of the
supported readings (the F1-best one is reported beside it); it is written to
``benchmarks/results/camroll_reader_threshold.json`` and copied by hand into ``agents.camroll.reader``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import print_table, write_results


def main() -> None:
    """Build (or reuse) the development roll, score every question's best sentence, and pick the threshold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/camroll_reader_threshold", help="folder for the roll and store")
    parser.add_argument("--users", type=int, default=3, help="development users (seed 0)")
    parser.add_argument("--photos-per-user", type=int, default=630)
    parser.add_argument("--out", default="benchmarks/results/camroll_reader_threshold.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from agents.camroll import reader as reading
    from agents.camroll.answerers import QueryAnswerer
    from agents.camroll.data import read_qa, user_dir
    from agents.camroll.demo_data import DEV_SEED, make_demo_roll
    from agents.camroll.facts import Vocabulary
    from agents.camroll.memory import CamrollMemory, NoVisual
    from agents.camroll.paraphrase import generate_paraphrase_qa
    from agents.camroll.tools import CamrollTools
    from retrieval import VectorStore
    from retrieval.embed import make_text_embedder

    work = Path(args.work)
    data = work / f"roll-dev-{args.users}u-{args.photos_per_user}"
    if not (data / "camroll.json").is_file():
        make_demo_roll(data, users=args.users, photos_per_user=args.photos_per_user, seed=DEV_SEED, progress=False)
    sentence_reader = reading.SentenceReader()
    rows = []
    started = time.perf_counter()
    with VectorStore(work / "store") as store:
        memory = CamrollMemory(store, data, embedder=make_text_embedder("minilm"), visual=NoVisual(),
                               cache_dir=work / "cache")  # fmt: skip
        for user in [str(u) for u in range(1, args.users + 1)]:
            memory.ingest(user, progress=False)
            tools = CamrollTools(memory, user)
            answerer = QueryAnswerer(user, reader=sentence_reader)
            found = tools.call("vocabulary", {})
            answerer.vocab = Vocabulary(**{k: Counter(found.get(k) or []) for k in Vocabulary.__dataclass_fields__})
            questions = [("paraphrase-seen", p.qa) for p in generate_paraphrase_qa(user, DEV_SEED, args.photos_per_user)
                         if p.split == "seen"]  # fmt: skip
            questions += [("templates", qa) for qa in read_qa(user_dir(data, user))]
            for set_name, qa in questions:
                result = tools.call("search_by_text", answerer.caption_search(qa.question, qa.question_date))
                hits = answerer.caption_hits(qa.question, qa.question_date, result)
                gold = set(qa.evidence)
                sides = {True: [h for h in hits if h["id"].rsplit("/", 1)[-1] in gold],
                         False: [h for h in hits if h["id"].rsplit("/", 1)[-1] not in gold]}  # fmt: skip
                for supported, side in sides.items():
                    best = sentence_reader.best(qa.question, side)
                    if best.answer is None:
                        continue
                    row = {"user": user, "set": set_name, "qa_id": qa.qa_id, "question": qa.question}
                    row.update(score=round(best.score, 4), sentence=best.sentence, supported=supported)
                    rows.append(row)
    chosen = reading.calibrate_threshold([r["score"] for r in rows], [r["supported"] for r in rows])
    print_table([chosen], ["threshold", "f1", "precision", "recall", "answered", "n", "supported"],
                title="offline reader threshold (demo roll, seed 0)")  # fmt: skip
    payload = {"protocol": __doc__.split("\n\n")[2].replace("\n", " "), "roll": {"seed": DEV_SEED, "users": args.users,
               "photos_per_user": args.photos_per_user}, "embedder": "minilm", "read_k": reading.READ_K,
               "chosen": chosen, "seconds": round(time.perf_counter() - started, 1), "rows": rows}  # fmt: skip
    print(f"wrote {write_results('camroll_reader_threshold', payload, out=args.out)}")


if __name__ == "__main__":
    main()
