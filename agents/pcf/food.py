"""Food LCA tables as a reference catalogue and as targets, for measuring transfer to an unseen catalogue.

AGRIBALYSE 3.1 (2,458 foods, kg CO2e per kg as consumed in France, English ``LCI Name``, 11 food groups) is
read as a reference catalogue (category = food group); Poore & Nemecek 2018 (43 foods, kg CO2e per kg,
farm to retail, global means) as held-out targets with known footprints. Both are per kg of food, so the
numbers are comparable, though the system boundaries differ (AGRIBALYSE includes packaging, transport to
the consumer and losses). RIVM's table has Dutch names only and is not used with the English text embedder.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from agents.pcf.errors import PCFDataError
from agents.pcf.reference import ReferenceProduct

AGRIBALYSE_FILE = "agribalyse_synthese.csv"
AGRIBALYSE_NAME = "LCI Name"
AGRIBALYSE_GROUP = "Groupe d'aliment"
AGRIBALYSE_SUBGROUP = "Sous-groupe d'aliment"
AGRIBALYSE_CODE = "Code AGB"
AGRIBALYSE_CIQUAL = "Code CIQUAL"
AGRIBALYSE_CLIMATE = "Changement climatique [kg CO2 eq/kg de produit]"
POORE_FILE = "Food_Production.csv"
POORE_NAME = "Food product"
POORE_TOTAL = "Total_emissions"


@dataclass(frozen=True)
class FoodTarget:
    """A food with a known footprint per kg, used as a held-out target."""

    name: str
    pcf_kg: float
    line: int


def _rows(path: Path, default_file: str, required: tuple[str, ...]) -> tuple[Path, list[tuple[int, dict[str, str]]]]:
    """(resolved file, [(line, record)]) of a CSV (a file or its folder), checking the required columns."""
    path = Path(path)
    if path.is_dir():
        path = path / default_file
    if not path.is_file():
        raise PCFDataError(f"{path}: file not found (expected {default_file})")
    with io.StringIO(path.read_text(encoding="utf-8"), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise PCFDataError(f"{path}:1: missing column(s) {missing}")
        return path, [(reader.line_num, row) for row in reader]


def _positive(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise PCFDataError(f"{path}:{line}: field {column!r} = {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise PCFDataError(f"{path}:{line}: field {column!r} = {text!r} must be a positive number")
    return value


def load_agribalyse(path: str | Path) -> list[ReferenceProduct]:
    """AGRIBALYSE foods as reference products: English name, food group as category, kg CO2e per kg.

    Foods sharing a CIQUAL code are one group (variants of one food), so folds never split them.
    """
    required = (AGRIBALYSE_CODE, AGRIBALYSE_CIQUAL, AGRIBALYSE_NAME, AGRIBALYSE_GROUP, AGRIBALYSE_CLIMATE)
    path, rows = _rows(path, AGRIBALYSE_FILE, required)
    products = []
    for line, row in rows:
        name = (row[AGRIBALYSE_NAME] or "").strip()
        if not name:
            raise PCFDataError(f"{path}:{line}: field {AGRIBALYSE_NAME!r} is empty")
        products.append(
            ReferenceProduct(
                ref_id=f"agb-{row[AGRIBALYSE_CODE].strip()}",
                name=name,
                company="",
                sector=(row[AGRIBALYSE_GROUP] or "").strip() or "unknown",
                pcf_kg=_positive(row[AGRIBALYSE_CLIMATE], path, line, AGRIBALYSE_CLIMATE),
                weight_kg=1.0,
                industry=(row.get(AGRIBALYSE_SUBGROUP) or "").strip(),
                group=f"ciqual-{(row[AGRIBALYSE_CIQUAL] or row[AGRIBALYSE_CODE]).strip()}",
                source="agribalyse",
                line=line,
            )
        )
    if not products:
        raise PCFDataError(f"{path}: no foods")
    return products


def load_poore_nemecek(path: str | Path) -> list[FoodTarget]:
    """Poore & Nemecek's 43 foods with their total emissions (kg CO2e per kg)."""
    path, rows = _rows(path, POORE_FILE, (POORE_NAME, POORE_TOTAL))
    targets = [
        FoodTarget(row[POORE_NAME].strip(), _positive(row[POORE_TOTAL], path, line, POORE_TOTAL), line)
        for line, row in rows
        if (row[POORE_NAME] or "").strip()
    ]
    if not targets:
        raise PCFDataError(f"{path}: no foods")
    return targets
