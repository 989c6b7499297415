"""The reference catalogue: Carbon Catalogue products with their footprints, grouped and indexed into the store.

The Carbon Catalogue reports many products in several years (``10056-1-2014`` and ``10056-1-2015``, same
footprint, sometimes a reworded name), so every product carries a ``group`` key: two rows share a group when
they share the PCF-ID stem (company id + product number, the year dropped) or the normalised name + company.
Evaluation folds split by group, never by row, or a held-out product finds its own twin.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.pcf.errors import PCFDataError

logger = logging.getLogger(__name__)

REFERENCE_COLLECTION = "pcf_reference"
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "carbon_catalogue"
CATALOGUE_FILE = "product_level.csv"

# Column names of product_level.csv (the authors' own, starred ones added during their study).
COL_ID = "*PCF-ID"
COL_YEAR = "Year of reporting"
COL_NAME = "Product name (and functional unit)"
COL_DETAIL = "Product detail"
COL_COMPANY = "Company"
COL_COUNTRY = "Country (where company is incorporated)"
COL_INDUSTRY = "Company's GICS Industry"
COL_SECTOR = "*Company's sector"
COL_WEIGHT = "Product weight (kg)"
COL_PCF = "Product's carbon footprint (PCF, kg CO2e)"
REQUIRED_COLUMNS = (COL_ID, COL_NAME, COL_COMPANY, COL_SECTOR, COL_WEIGHT, COL_PCF)
_EMPTY_DETAIL = {"", "field not included in 2013 data", "n/a", "nan"}


@dataclass(frozen=True)
class ReferenceProduct:
    """One life-cycle-assessed product with its footprint in kg CO2e."""

    ref_id: str
    name: str
    company: str
    sector: str
    pcf_kg: float
    weight_kg: float | None = None
    detail: str = ""
    industry: str = ""
    year: int | None = None
    group: str = ""
    source: str = "carbon_catalogue"
    line: int = 0

    def text(self) -> str:
        """The text embedded for similarity search (same builder as for target items)."""
        category = f"{self.sector} / {self.industry}" if self.industry else self.sector
        return product_text(self.name, category=category, description=self.detail, brand=self.company)


def product_text(title: str, category: str = "", description: str = "", brand: str = "") -> str:
    """One line describing a product: title, brand, category and (the start of) its description."""
    parts = [title.strip()]
    if brand and brand.strip():
        parts.append(f"by {brand.strip()}")
    if category and category.strip():
        parts.append(f"category: {category.strip()}")
    if description and description.strip():
        parts.append(description.strip()[:300])
    return ". ".join(parts)


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _industry(text: str) -> str:
    """The GICS industry, blank where the year's data did not use it ("Not used for 2015 reporting")."""
    text = text.strip()
    return "" if text.lower().startswith("not used") else text


def _id_stem(ref_id: str) -> str:
    """``10056-1-2014`` -> ``10056-1``: the id without its reporting year."""
    return re.sub(r"-(19|20)\d\d$", "", ref_id)


def assign_groups(rows: list[dict[str, Any]]) -> list[str]:
    """A group key per row: rows are joined when they share an id stem or a normalised name + company."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key: dict[str, int] = {}
    for i, row in enumerate(rows):
        for key in (f"id:{_id_stem(row['ref_id'])}", f"nc:{_normalise(row['name'])}|{_normalise(row['company'])}"):
            if key in first_by_key:
                parent[find(i)] = find(first_by_key[key])
            else:
                first_by_key[key] = i
    # The group is named after its first member's id stem so it is stable and readable.
    return [_id_stem(rows[find(i)]["ref_id"]) for i in range(len(rows))]


def _positive_float(value: str, path: Path, line: int, column: str, required: bool) -> float | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise PCFDataError(f"{path}:{line}: field {column!r} is empty")
        return None
    try:
        number = float(text)
    except ValueError:
        raise PCFDataError(f"{path}:{line}: field {column!r} = {text!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise PCFDataError(f"{path}:{line}: field {column!r} = {text!r} must be a positive number")
    return number


def _csv_rows(reader: csv.DictReader, path: Path) -> Iterator[dict[str, Any]]:
    """The reader's rows; a CSV syntax error (e.g. a field over the size limit) becomes PCFDataError with its line."""
    try:
        yield from reader
    except csv.Error as exc:
        raise PCFDataError(f"{path}:{reader.line_num}: unreadable CSV row ({exc})") from None


def load_carbon_catalogue(path: str | Path | None = None) -> list[ReferenceProduct]:
    """Products of the Carbon Catalogue's ``product_level.csv`` (a file or its folder), with group keys.

    Raises PCFDataError naming the file, line and field of the first bad row.
    """
    path = Path(path) if path is not None else DEFAULT_CATALOGUE
    if path.is_dir():
        path = path / CATALOGUE_FILE
    path = path.resolve()
    if not path.is_file():
        raise PCFDataError(f"{path}: Carbon Catalogue file not found (expected product_level.csv)")
    rows: list[dict[str, Any]] = []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start]
        raise PCFDataError(f"{path}:{line}: not valid UTF-8 (byte 0x{byte:02x}); re-save it as UTF-8") from None
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PCFDataError(f"{path}:1: missing column(s) {missing}; found {reader.fieldnames}")
        seen: dict[str, int] = {}
        for record in _csv_rows(reader, path):
            line = reader.line_num  # physical line of the record's end (quoted fields may span lines)
            ref_id = (record[COL_ID] or "").strip()
            if not ref_id:
                raise PCFDataError(f"{path}:{line}: field {COL_ID!r} is empty")
            if ref_id in seen:
                raise PCFDataError(f"{path}:{line}: field {COL_ID!r} = {ref_id!r} repeats line {seen[ref_id]}")
            seen[ref_id] = line
            name = (record[COL_NAME] or "").strip()
            if not name:
                raise PCFDataError(f"{path}:{line}: field {COL_NAME!r} is empty")
            detail = (record.get(COL_DETAIL) or "").strip()
            year_text = (record.get(COL_YEAR) or "").strip()
            rows.append(
                {
                    "ref_id": ref_id,
                    "name": name,
                    "company": (record[COL_COMPANY] or "").strip(),
                    "sector": (record[COL_SECTOR] or "").strip() or "unknown",
                    "pcf_kg": _positive_float(record[COL_PCF], path, line, COL_PCF, required=True),
                    "weight_kg": _positive_float(record[COL_WEIGHT], path, line, COL_WEIGHT, required=False),
                    "detail": "" if detail.lower() in _EMPTY_DETAIL else detail,
                    "industry": _industry(record.get(COL_INDUSTRY) or ""),
                    "year": int(year_text) if year_text.isdigit() else None,
                    "line": line,
                }
            )
    if not rows:
        raise PCFDataError(f"{path}: no products")
    groups = assign_groups(rows)
    products = [ReferenceProduct(**row, group=group) for row, group in zip(rows, groups, strict=True)]
    logger.info("loaded %d reference products (%d product groups) from %s", len(products), len(set(groups)), path)
    return products


@dataclass
class SectorStats:
    """Footprint statistics per sector, for the sector-median baseline and the plausibility check."""

    median: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    global_median: float = 100.0
    global_low: float = 1e-4
    global_high: float = 1e7

    @classmethod
    def from_products(cls, products: Sequence[ReferenceProduct]) -> SectorStats:
        """Median and min/max footprint per sector (and over all products)."""
        import numpy as np

        stats = cls()
        by_sector: dict[str, list[float]] = {}
        for product in products:
            by_sector.setdefault(product.sector, []).append(product.pcf_kg)
        for sector, values in by_sector.items():
            stats.median[sector] = float(np.median(values))
            stats.low[sector], stats.high[sector] = float(min(values)), float(max(values))
        every = [p.pcf_kg for p in products]
        if every:
            stats.global_median = float(np.median(every))
            stats.global_low, stats.global_high = float(min(every)), float(max(every))
        return stats

    def plausible_range(self, sector: str | None, margin: float = 10.0) -> tuple[float, float]:
        """The footprints seen in a sector widened by ``margin`` both ways (all products when unknown)."""
        low = self.low.get(sector or "", self.global_low)
        high = self.high.get(sector or "", self.global_high)
        return low / margin, high * margin


def reference_metadata(product: ReferenceProduct) -> dict[str, Any]:
    """The store metadata of a reference product (no None values: Chroma refuses them)."""
    meta: dict[str, Any] = {
        "pcf_kg": product.pcf_kg,
        "name": product.name[:500],
        "company": product.company,
        "sector": product.sector,
        "group": product.group,
        "source": product.source,
    }
    if product.weight_kg is not None:
        meta["weight_kg"] = product.weight_kg
    if product.year is not None:
        meta["year"] = product.year
    return meta


def product_from_metadata(ref_id: str, meta: dict[str, Any], document: str = "") -> ReferenceProduct:
    """Rebuild a (partial) reference product from its store metadata."""
    return ReferenceProduct(
        ref_id=ref_id,
        name=str(meta.get("name", document)),
        company=str(meta.get("company", "")),
        sector=str(meta.get("sector", "unknown")),
        pcf_kg=float(meta["pcf_kg"]),
        weight_kg=float(meta["weight_kg"]) if meta.get("weight_kg") is not None else None,
        year=int(meta["year"]) if meta.get("year") is not None else None,
        group=str(meta.get("group", "")),
        source=str(meta.get("source", "")),
    )


def index_references(
    store: Any, products: Sequence[ReferenceProduct], embedder: Any, collection: str = REFERENCE_COLLECTION
) -> int:
    """Upsert the reference products into ``collection`` (by PCF-ID); only missing ids are embedded.

    Returns the number of products written (0 when the collection already holds them all).
    """
    handle = store.collection(collection, embedder=embedder)
    ids = [p.ref_id for p in products]
    present = {item["id"] for item in handle.get(ids=ids)} if handle.count() else set()
    todo = [p for p in products if p.ref_id not in present]
    if todo:
        handle.upsert(
            [p.ref_id for p in todo],
            documents=[p.text() for p in todo],
            metadatas=[reference_metadata(p) for p in todo],
        )
        logger.info("indexed %d reference products into %r", len(todo), collection)
    return len(todo)
