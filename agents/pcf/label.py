"""The labelling batch job: estimate a PCF for every item of a catalogue, resumably, exactly once per item.

Output is an append-only JSONL file, one label per line, written a batch at a time with flush + fsync. On
start the file is read back: a torn last line (a kill in the middle of a write) is cut off, the ids already
labelled are skipped. Each batch is first upserted into the store (idempotent by item id) and only then
appended, so a kill at any moment leaves every item either labelled once or not at all, and a rerun finishes
the rest. A file lock keeps a second process off the same output file. Malformed catalogue rows go to
``<out>.rejects.jsonl`` with their line numbers, rows that are not valid UTF-8 among them (no fallback
decoding: a wrong guess would label a garbled title; the job goes on with the other rows).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agents.pcf.attributes import attributes_from_record, parse_column_value
from agents.pcf.errors import PCFDataError
from agents.pcf.estimate import (
    DEFAULT_K,
    DEFAULT_SIMILARITY_THRESHOLD,
    METHOD_LLM,
    ChatLike,
    PCFEstimator,
    PCFLabel,
    StoreNeighbours,
    TargetItem,
)
from agents.pcf.hierarchy import DEFAULT_COVERAGE, HierarchicalEstimate, HierarchicalPCF
from agents.pcf.reference import (
    REFERENCE_COLLECTION,
    ReferenceProduct,
    SectorStats,
    index_references,
    load_carbon_catalogue,
    product_text,
)
from core.io import (
    UNDECODABLE_PREFIX,
    BadLine,
    atomic_write_text,
    iter_jsonl,
    printable,
    read_keyed_jsonl,
    undecodable_reason,
    untyped,
)

logger = logging.getLogger(__name__)

LABEL_COLLECTION = "pcf_labels"
ID_FIELDS = ("item_id", "id", "asin", "parent_asin", "product_id")
TITLE_FIELDS = ("title", "name", "text", "product_name")
CATEGORY_FIELDS = ("category", "categories", "main_category")
DESCRIPTION_FIELDS = ("description", "desc")
BRAND_FIELDS = ("brand", "company")
WEIGHT_FIELDS = ("weight_kg", "weight")
ESTIMATORS = ("hierarchical", "knn")
METHOD_HIERARCHICAL = "hierarchical"


@dataclass
class Reject:
    """A catalogue row that could not be used, with where and why."""

    line: int
    field: str
    error: str
    raw: str = ""


@dataclass
class Catalogue:
    """The usable items of a catalogue file and its rejected rows."""

    path: Path
    items: list[TargetItem] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- reading items


def _pick(record: dict[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    """The first of ``names`` present in ``record`` (case-insensitive) with its value."""
    lowered = {untyped(str(k).strip()).lower(): k for k in record}  # typed headers (item_id:token) too
    for name in names:
        if name in lowered:
            return name, record[lowered[name]]
    return None, None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return " > ".join(_text(v) for v in value if _text(v))
    return str(value).strip()


def item_from_record(record: dict[str, Any], line: int, seen: dict[str, int]) -> TargetItem | Reject:
    """A TargetItem from one catalogue row, or a Reject naming the line and field."""
    raw = json.dumps(record, default=str)[:300]
    id_field, raw_id = _pick(record, ID_FIELDS)
    item_id = _text(raw_id)
    if isinstance(raw_id, float) and raw_id.is_integer():
        item_id = str(int(raw_id))  # parquet/pandas may read integer ids as floats
    if not item_id:
        return Reject(line, id_field or "item_id", "missing item id", raw)
    if item_id in seen:
        return Reject(
            line, id_field or "item_id", f"duplicate item id {item_id!r} (first on line {seen[item_id]})", raw
        )
    title_field, title = _pick(record, TITLE_FIELDS)
    if not _text(title):
        return Reject(line, title_field or "title", "missing title", raw)
    weight_field, weight = _pick(record, WEIGHT_FIELDS)
    weight_kg = None
    if _text(weight):
        try:  # a number in kg, or a number with its unit ("8 oz", "1.2 lb")
            weight_kg = parse_column_value(weight if isinstance(weight, (int, float)) else _text(weight), "weight_kg")
        except ValueError as exc:
            return Reject(line, weight_field or "weight_kg", f"weight: {exc}", raw)
    attribute_columns = {k: v for k, v in record.items() if untyped(str(k).strip()).lower() not in WEIGHT_FIELDS}
    attributes, errors = attributes_from_record(
        {untyped(str(k).strip()): v for k, v in attribute_columns.items()}, _text(title)
    )
    if errors:
        column, error = errors[0]
        return Reject(line, column, error, raw)
    if weight_kg is not None:
        attributes["weight_kg"] = weight_kg
    seen[item_id] = line
    return TargetItem(
        item_id=item_id,
        title=_text(title),
        category=_text(_pick(record, CATEGORY_FIELDS)[1]),
        description=_text(_pick(record, DESCRIPTION_FIELDS)[1]),
        brand=_text(_pick(record, BRAND_FIELDS)[1]),
        weight_kg=weight_kg,
        attributes=attributes,
    )


def _encoding_reject(line: int, text: str) -> Reject | None:
    """A Reject when ``text`` (read with ``surrogateescape``) held bytes that are not UTF-8, else None."""
    reason = undecodable_reason(text)
    return None if reason is None else Reject(line, "(encoding)", reason, printable(text)[:300])


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | Reject]]:
    """(line number, record or Reject) for each row of a .jsonl, .csv/.tsv/.text or .parquet file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        for line_number, record in iter_jsonl(path, error=PCFDataError, keep_bad=True):
            if isinstance(record, BadLine):
                field = "(encoding)" if record.reason.startswith(UNDECODABLE_PREFIX) else "(line)"
                yield line_number, Reject(line_number, field, record.reason, record.text)
                continue
            yield line_number, record
    elif suffix in (".csv", ".tsv", ".text", ".txt"):
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
            first = handle.readline()
            handle.seek(0)
            delimiter = "\t" if suffix in (".tsv", ".text") or "\t" in first else ","
            reader = csv.DictReader(handle, delimiter=delimiter)
            _check_columns(path, reader.fieldnames or [])
            for record in _csv_records(reader):
                if isinstance(record, Reject):
                    yield record.line, record
                    continue
                cells = [v for k, v in record.items() if k is not None] + list(record.get(None) or [])
                row_text = delimiter.join(str(cell) for cell in cells if cell is not None)
                bad_bytes = _encoding_reject(reader.line_num, row_text)
                if bad_bytes is not None:
                    yield reader.line_num, bad_bytes
                    continue
                swallowed = _swallowed_rows(cells, delimiter, len(reader.fieldnames or []))
                if swallowed:
                    first = reader.line_num - swallowed
                    error = f"lines {first}-{reader.line_num} were read as one row: an unclosed quote on line {first}?"
                    yield first, Reject(first, "(row)", error, row_text[:300])
                    continue
                if None in record:  # more cells than header columns
                    yield (
                        reader.line_num,
                        Reject(reader.line_num, "(row)", "more cells than header columns", row_text[:300]),
                    )
                    continue
                yield reader.line_num, record
    elif suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise PCFDataError(f"{path}: cannot read parquet ({exc})") from exc
        _check_columns(path, list(frame.columns))
        for row_number, record in enumerate(frame.to_dict(orient="records"), start=1):
            yield row_number, record
    else:
        raise PCFDataError(f"{path}: unsupported catalogue format {suffix!r} (use .jsonl, .csv, .tsv or .parquet)")


def _csv_records(reader: csv.DictReader) -> Iterator[dict[str, Any] | Reject]:
    """The reader's records; a row the csv module cannot parse (e.g. a field over its size limit) is a Reject."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Reject(reader.line_num, "(row)", f"unreadable CSV row ({exc})")


def _swallowed_rows(cells: list[Any], delimiter: str, columns: int) -> int:
    """How many whole rows a quoted cell holds (an unclosed quote reads the following rows into one cell)."""
    lines = [line for cell in cells if isinstance(cell, str) and "\n" in cell for line in cell.split("\n")[1:]]
    return sum(1 for line in lines if columns > 1 and line.count(delimiter) >= columns - 1)


def _check_columns(path: Path, columns: Sequence[str]) -> None:
    lowered = {untyped(str(c).strip()).lower() for c in columns}
    for what, names in (("id", ID_FIELDS), ("title", TITLE_FIELDS)):
        if not lowered & set(names):
            shown = [printable(str(c)) for c in columns]
            raise PCFDataError(f"{path}:1: no {what} column (one of {', '.join(names)}); columns: {shown}")


def read_catalogue(path: str | Path) -> Catalogue:
    """Items and rejected rows of a catalogue file; raises PCFDataError when the file as a whole is unusable."""
    path = Path(path)
    if not path.is_file():
        raise PCFDataError(f"{path}: catalogue file not found")
    catalogue = Catalogue(path=path)
    seen: dict[str, int] = {}
    for line, record in _records(path):
        parsed = record if isinstance(record, Reject) else item_from_record(record, line, seen)
        (catalogue.rejects if isinstance(parsed, Reject) else catalogue.items).append(parsed)
    return catalogue


def in_shard(item_id: str, shard: tuple[int, int]) -> bool:
    """Whether an item belongs to shard ``i`` of ``n`` (stable: a hash of the id, not the row order)."""
    index, count = shard
    return zlib.crc32(item_id.encode("utf-8")) % count == index


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise PCFDataError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(match[1]), int(match[2])


# ---------------------------------------------------------------------------------------- the labels file


def read_labels(path: str | Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Labels by item id from a labels file (first one wins); a torn last line is ignored (cut with ``repair``).

    Raises PCFDataError naming the line when a complete line is not a label.
    """
    return read_keyed_jsonl(path, "item_id", repair=repair, error=PCFDataError, what="a label line")


def _append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records as JSON lines in one write, then flush and fsync (durable before the next batch)."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with path.open("ab") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------------------------------- embedders


# ---------------------------------------------------------------------------------------- the job


def fit_hierarchy(
    products: Sequence[ReferenceProduct],
    embedder: Any,
    k: int = DEFAULT_K,
    coverage: float = DEFAULT_COVERAGE,
    neighbours: StoreNeighbours | None = None,
) -> HierarchicalPCF:
    """The hierarchical estimator fitted on the reference (indexed by full text, held out by plain text).

    With ``neighbours``, the reference embeddings already in the store are reused instead of embedded again.
    """
    embeddings = None
    if neighbours is not None:
        matrix = neighbours._matrix()
        row_of = {product.ref_id: row for row, product in enumerate(matrix.products)}
        if all(p.ref_id in row_of for p in products):
            embeddings = matrix.embeddings[[row_of[p.ref_id] for p in products]]
    if embeddings is None:
        embeddings = embedder.embed_texts([p.text() for p in products])
    plain = embedder.embed_texts([product_text(p.name, description=p.detail, brand=p.company) for p in products])
    return HierarchicalPCF(k=k, coverage=coverage).fit(products, embeddings, plain)


def attach_estimate(
    label: PCFLabel, item: TargetItem, estimate: HierarchicalEstimate, hierarchy: HierarchicalPCF, replace: bool
) -> None:
    """Put the hierarchical estimate on a label: its value (``replace``, not for LLM answers), interval, flags.

    The interval keeps the hierarchical model's calibrated width and is centred on the label's final value;
    the plausibility flag is checked on that value against the predicted category's range.
    """
    if replace and label.method != METHOD_LLM:
        label.pcf_kg = estimate.pcf_kg
        label.method = METHOD_HIERARCHICAL
        label.sector = estimate.category
    extra = estimate.record()
    extra["pcf_low_kg"] = float(f"{label.pcf_kg * estimate.low_kg / estimate.pcf_kg:.6g}")
    extra["pcf_high_kg"] = float(f"{label.pcf_kg * estimate.high_kg / estimate.pcf_kg:.6g}")
    plausible = hierarchy.plausible(estimate.category, label.pcf_kg)
    flags = [f for f in estimate.flags if f != "outside_category_range"]
    if not plausible:
        flags.insert(0, "outside_category_range")
    extra["plausible"], extra["flags"] = plausible, flags
    extra["attributes"] = dict(item.attributes)
    label.extra.update(extra)


def label_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """Store metadata of a label (Chroma takes scalars and non-empty lists, no None)."""
    meta = {
        "pcf_kg": float(record["pcf_kg"]),
        "method": record["method"],
        "confidence": float(record["confidence"]),
        "sector": record.get("sector") or "",
    }
    for key in ("pcf_low_kg", "pcf_high_kg", "plausible", "category"):
        if record.get(key) is not None:
            meta[key] = record[key]
    if record.get("flags"):
        meta["flags"] = list(record["flags"])
    if record.get("neighbours"):
        meta["neighbours"] = list(record["neighbours"])
        meta["similarities"] = [float(s) for s in record["similarities"]]
    return meta


def run_label_job(
    catalog: str | Path,
    out: str | Path,
    store: Any,
    embedder: Any,
    llm: ChatLike | None = None,
    llm_name: str = "",
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 32,
    k: int = DEFAULT_K,
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD,
    reference: str | Path | None = None,
    progress: bool = True,
    estimator: str = "hierarchical",
    coverage: float = DEFAULT_COVERAGE,
) -> dict[str, Any]:
    """Label every (shard's) item of ``catalog`` into ``out``; returns a summary dict. Safe to rerun.

    ``estimator``: ``hierarchical`` (category prior + neighbour shrinkage, the default) or ``knn`` (the
    neighbours' weighted geometric mean) for items the LLM does not answer. Every label carries the
    hierarchical model's ``coverage`` interval (centred on the label's value), its category and flags.
    """
    if estimator not in ESTIMATORS:
        raise PCFDataError(f"--estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
    from filelock import FileLock, Timeout

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out) + ".lock")
    try:
        lock.acquire(timeout=1.0)
    except Timeout:
        raise PCFDataError(f"{out}: another labelling process is writing this file ({out}.lock)") from None
    try:
        return _run_locked(
            catalog, out, store, embedder, llm, llm_name, workers, shard, batch_size, k, similarity_threshold,
            reference, progress, estimator, coverage,
        )  # fmt: skip
    finally:
        lock.release()


def _run_locked(
    catalog,
    out,
    store,
    embedder,
    llm,
    llm_name,
    workers,
    shard,
    batch_size,
    k,
    similarity_threshold,
    reference,
    progress,
    estimator_name="hierarchical",
    coverage=DEFAULT_COVERAGE,
) -> dict[str, Any]:
    started = time.perf_counter()
    catalogue = read_catalogue(catalog)
    rejects_path = Path(str(out) + ".rejects.jsonl")
    atomic_write_text(
        rejects_path,
        "".join(
            json.dumps({"file": str(catalogue.path), **r.__dict__}, ensure_ascii=False) + "\n"
            for r in catalogue.rejects
        ),
    )
    for reject in catalogue.rejects[:5]:
        logger.warning("%s:%d: field %s: %s (rejected)", catalogue.path, reject.line, reject.field, reject.error)
    mine = [item for item in catalogue.items if in_shard(item.item_id, shard)]
    done = read_labels(out, repair=True)
    todo = [item for item in mine if item.item_id not in done]
    products = load_carbon_catalogue(reference)
    index_references(store, products, embedder, REFERENCE_COLLECTION)
    neighbours = StoreNeighbours(store, REFERENCE_COLLECTION)
    estimator = PCFEstimator(
        stats=SectorStats.from_products(products),
        llm=llm,
        similarity_threshold=similarity_threshold,
        workers=workers,
        llm_name=llm_name,
    )
    hierarchy = fit_hierarchy(products, embedder, k=k, coverage=coverage, neighbours=neighbours) if todo else None
    labels_collection = store.collection(LABEL_COLLECTION, embedder=embedder)
    methods: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    label_started = time.perf_counter()
    with tqdm(
        total=len(mine), initial=len(mine) - len(todo), desc="pcf label", unit="item", disable=not progress
    ) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            texts = [item.text() for item in batch]
            vectors = embedder.embed_texts(texts)
            labels = estimator.estimate(batch, neighbours.search(vectors, k=k))
            estimates = hierarchy.predict(vectors, [item.attributes for item in batch])
            for label, item, estimate in zip(labels, batch, estimates, strict=True):
                attach_estimate(label, item, estimate, hierarchy, replace=estimator_name == "hierarchical")
            records = [label.to_dict() for label in labels]
            # Store first, file second: the file is the record of what is done, so an item whose line was
            # not yet written is simply labelled (and upserted, idempotently) again by the next run.
            labels_collection.upsert(
                [r["item_id"] for r in records],
                documents=texts,
                embeddings=vectors,
                metadatas=[label_metadata(r) for r in records],
            )
            _append_lines(out, records)
            methods.update(r["method"] for r in records)
            flags.update(f for r in records for f in r["flags"])
            bar.update(len(batch))
    seconds = time.perf_counter() - label_started
    summary = {
        "catalog": str(catalogue.path),
        "out": str(out),
        "rejects_file": str(rejects_path),
        "shard": f"{shard[0]}/{shard[1]}",
        "rows_read": len(catalogue.items) + len(catalogue.rejects),
        "items": len(catalogue.items),
        "rejected": len(catalogue.rejects),
        "rejected_by_field": dict(Counter(r.field for r in catalogue.rejects)),
        "in_shard": len(mine),
        "already_labelled": len(mine) - len(todo),
        "labelled_now": len(todo),
        "methods_now": dict(methods),
        "fallback_reasons": dict(estimator.counts),
        "estimator": estimator_name,
        "flags_now": dict(flags),
        "hierarchy": hierarchy.inner_report if hierarchy is not None else None,
        "llm": llm_name or None,
        "items_per_second": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info(
        "labelled %d items (%d already done, %d rejected rows)",
        len(todo),
        len(mine) - len(todo),
        len(catalogue.rejects),
    )
    return summary
