"""Read a PCF labels file (JSONL written by ``agents.pcf label``) and align it with a dataset's item map.

Contract: one JSON object per line with at least ``"item_id"`` (the raw item id, a string as in the
dataset's item map; an integer is accepted and read as its decimal string) and ``"pcf_kg"`` (a finite
float > 0); every other field is ignored. Blank lines are skipped. A duplicate ``item_id``: the first line
wins (the count is logged). A malformed line raises ``LabelsError`` naming the file and line, except an
unterminated, unparseable last line (a write cut short by killing the labelling job), which is skipped with a
warning.

Items of the dataset without a label follow an explicit ``missing`` policy (the count is always logged):
``"exclude"`` (default) removes them from every user's candidate set, ``"median"`` gives them the median
PCF of the labelled items (what the seed paper's code did), ``"error"`` refuses to continue.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from core.io import iter_jsonl
from recsys.data import DataError, IdMap

logger = logging.getLogger(__name__)

MISSING_POLICIES = ("exclude", "median", "error")


class CarbonError(DataError):
    """Bad input to the carbon-aware re-ranking (labels, id map, lambdas, options); the CLI exits 2 on it."""


class LabelsError(CarbonError):
    """A labels file (or id map) is malformed or does not fit the dataset; the message names file and line."""


UNCERTAINTY_VARIANTS = ("none", "upper", "skip_implausible")


def read_pcf_labels(path: str | Path) -> dict[str, float]:
    """``{item_id: pcf_kg}`` from a JSONL labels file; the first line wins for a repeated id."""
    return {key: record["pcf_kg"] for key, record in read_pcf_records(path).items()}


def read_pcf_records(path: str | Path) -> dict[str, dict[str, float | bool]]:
    """``{item_id: {"pcf_kg", "pcf_high_kg", "plausible"}}``; files without interval fields read as well.

    ``pcf_high_kg`` (the interval's upper end written by ``agents.pcf label``) defaults to ``pcf_kg`` and
    must be >= it; ``plausible`` defaults to True.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: labels file not found")
    labels: dict[str, dict[str, float | bool]] = {}
    duplicates = 0
    # the labelling job appends whole lines; an unterminated, undecodable last one is a write cut by a kill
    for line_no, record in iter_jsonl(path, error=LabelsError, torn_tail="skip"):
        where = f"{path}:{line_no}"
        item = record.get("item_id")
        if isinstance(item, bool) or not isinstance(item, (str, int)) or str(item).strip() == "":
            raise LabelsError(f"{where}: field 'item_id' missing or not a non-empty string (got {item!r})")
        value = record.get("pcf_kg")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LabelsError(f"{where}: field 'pcf_kg' missing or not a number (got {value!r})")
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise LabelsError(f"{where}: field 'pcf_kg' must be a finite number > 0, got {value!r}")
        high = record.get("pcf_high_kg", value)
        if isinstance(high, bool) or not isinstance(high, (int, float)) or not math.isfinite(high) or high < value:
            raise LabelsError(f"{where}: field 'pcf_high_kg' must be a number >= pcf_kg, got {high!r}")
        plausible = record.get("plausible", True)
        if not isinstance(plausible, bool):
            raise LabelsError(f"{where}: field 'plausible' must be true or false, got {plausible!r}")
        key = str(item).strip()
        if key in labels:  # the labelling job resumes by skipping ids it has, so the first line is the label
            duplicates += 1
            continue
        labels[key] = {"pcf_kg": value, "pcf_high_kg": float(high), "plausible": plausible}
    if not labels:
        raise LabelsError(f"{path}: no labels (the file holds no JSON lines)")
    if duplicates:
        logger.warning("%s: %d duplicate item_id lines; the first line of each id wins", path, duplicates)
    logger.info("%s: %d labelled items", path, len(labels))
    return labels


def read_id_map(path: str | Path) -> dict[str, str]:
    """``{label_id: dataset_id}`` from a two-column whitespace-separated file (e.g. ReChorus ``*.item2index``)."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: id map file not found")
    mapping: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise LabelsError(
                    f"{path}: line {line_no}: expected 2 columns (label id, dataset id), got {len(fields)}"
                )
            mapping[fields[0]] = fields[1]
    return mapping


def labels_for_variant(
    records: dict[str, dict[str, float | bool]], variant: str
) -> tuple[dict[str, float], dict[str, float]]:
    """(labels measured, labels penalised) for an uncertainty variant of the re-ranking.

    ``none``: both the point estimate. ``upper``: the penalty uses the interval's upper end (an uncertain
    label counts as heavy). ``skip_implausible``: labels flagged implausible are dropped (they follow the
    missing-item policy). The carbon reported is always the point estimate.
    """
    if variant not in UNCERTAINTY_VARIANTS:
        raise CarbonError(f"uncertainty variant {variant!r} unknown; use one of {', '.join(UNCERTAINTY_VARIANTS)}")
    kept = {k: r for k, r in records.items() if variant != "skip_implausible" or r["plausible"]}
    if not kept:
        raise CarbonError("every label is flagged implausible; nothing left to re-rank with")
    measured = {k: float(r["pcf_kg"]) for k, r in kept.items()}
    penalised = {k: float(r["pcf_high_kg"]) for k, r in kept.items()} if variant == "upper" else measured
    return measured, penalised


@dataclasses.dataclass
class ItemPCF:
    """PCF per dense item index: ``pcf_kg`` (NaN where excluded) and ``allowed`` (may be recommended)."""

    pcf_kg: np.ndarray
    allowed: np.ndarray
    labelled: np.ndarray
    missing_policy: str
    stats: dict[str, int | float]


def align_pcf(
    labels: dict[str, float],
    item_map: IdMap,
    missing: str = "exclude",
    id_map: dict[str, str] | None = None,
    source: str = "labels",
) -> ItemPCF:
    """Map labels onto the dataset's items and apply the ``missing`` policy (see the module docstring)."""
    if missing not in MISSING_POLICIES:
        raise LabelsError(f"missing policy {missing!r} unknown; use one of {', '.join(MISSING_POLICIES)}")
    if id_map is not None:
        translated = {id_map[k]: v for k, v in labels.items() if k in id_map}
        untranslated = len(labels) - len(translated)
        if untranslated:
            logger.warning("%s: %d labelled ids are not in the id map; ignored", source, untranslated)
        labels = translated
    n_items = len(item_map)
    pcf = np.full(n_items, np.nan, dtype=np.float64)
    known = 0
    for raw, value in labels.items():
        if raw in item_map:
            pcf[item_map.to_index(raw)] = value
            known += 1
    unknown = len(labels) - known
    if known == 0:
        example = next(iter(labels), "?")
        raise LabelsError(
            f"{source}: none of its {len(labels)} item ids is an item of the dataset (e.g. {example!r} vs the "
            f"dataset's {item_map.raw[0]!r}); pass --id-map when the labels use other ids (e.g. ASINs)"
        )
    if unknown:
        logger.warning("%s: %d labelled ids are not items of the dataset; ignored", source, unknown)
    labelled = ~np.isnan(pcf)
    n_missing = int((~labelled).sum())
    median = float(np.median(pcf[labelled]))
    if n_missing:
        if missing == "error":
            first = item_map.raw[int(np.flatnonzero(~labelled)[0])]
            raise LabelsError(
                f"{source}: {n_missing} of {n_items} dataset items have no label (first: {first!r}); "
                "use --missing exclude or --missing median"
            )
        if missing == "median":
            pcf[~labelled] = median
            logger.warning(
                "%s: %d of %d items unlabelled: given the median PCF %.4g kg", source, n_missing, n_items, median
            )
        else:
            logger.warning(
                "%s: %d of %d items unlabelled: excluded from every candidate set", source, n_missing, n_items
            )
    allowed = labelled.copy() if missing == "exclude" else np.ones(n_items, dtype=bool)
    stats = {
        "n_labels": len(labels),
        "n_items": n_items,
        "n_labelled_items": int(labelled.sum()),
        "n_unlabelled_items": n_missing,
        "n_unknown_label_ids": unknown,
        "median_pcf_kg": median,
    }
    return ItemPCF(pcf_kg=pcf, allowed=allowed, labelled=labelled, missing_policy=missing, stats=stats)
