"""Product attributes from titles and columns: weight, screen size, power, capacity, battery, pack size.

A regular expression finds ``<number> <unit>`` spans in free text ("15.6-inch", "500 W", "8 oz", "2-pack",
'19"', "1Kg", "2520 mAh"); pint converts each unit to the attribute's canonical one (kg, inch, W, litre,
GB, mAh). pint is the maintained unit library but has no parser for quantities inside running text, so
the span finder is ours; quantulum3 does find spans, but its dimension guesses were not needed for six
fixed quantities and it was not adopted (not evaluated here). Columns named in :data:`ATTRIBUTE_COLUMNS`
take precedence over what the title says.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

# attribute -> (canonical pint unit, units accepted in text -> pint unit)
ATTRIBUTES: dict[str, tuple[str, dict[str, str]]] = {
    "weight_kg": (
        "kilogram",
        {
            "kg": "kilogram",
            "kgs": "kilogram",
            "kilogram": "kilogram",
            "kilograms": "kilogram",
            "g": "gram",
            "gram": "gram",
            "grams": "gram",
            "mg": "milligram",
            "lb": "pound",
            "lbs": "pound",
            "pound": "pound",
            "pounds": "pound",
            "oz": "ounce",
            "ounce": "ounce",
            "ounces": "ounce",
            "tonne": "metric_ton",
            "tonnes": "metric_ton",
        },
    ),
    "screen_in": ("inch", {"inch": "inch", "inches": "inch", "in": "inch", '"': "inch", "”": "inch", "''": "inch"}),
    "power_w": ("watt", {"w": "watt", "watt": "watt", "watts": "watt", "kw": "kilowatt", "kilowatt": "kilowatt"}),
    "capacity_l": (
        "liter",
        {
            "l": "liter",
            "litre": "liter",
            "litres": "liter",
            "liter": "liter",
            "liters": "liter",
            "ml": "milliliter",
            "cl": "centiliter",
            "fl oz": "fluid_ounce",
            "gal": "gallon",
            "gallon": "gallon",
            "gallons": "gallon",
        },
    ),
    "storage_gb": ("gigabyte", {"gb": "gigabyte", "tb": "terabyte", "mb": "megabyte"}),
    "battery_mah": ("mAh", {"mah": "mAh"}),
}
# Values outside these (canonical-unit) ranges are not a product's attribute: a scale's "0.01 g" resolution, a
# toner's "1320 t" page count. They are ignored in titles and rejected in columns.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "weight_kg": (0.0005, 50_000.0),
    "screen_in": (1.0, 150.0),
    "power_w": (0.1, 100_000.0),
    "capacity_l": (0.001, 100_000.0),
    "storage_gb": (0.001, 1_000_000.0),
    "battery_mah": (10.0, 1_000_000.0),
    "pack_count": (1.0, 10_000.0),
}
PACK_WORDS = ("packs", "pack", "pk", "count", "ct", "pcs", "pieces", "piece")

# Column name (case-insensitive) -> attribute; the value is a number in the attribute's canonical unit or a
# string with its own unit ("8 oz", "15.6 in"). Shown by ``python -m agents.pcf label --help``.
ATTRIBUTE_COLUMNS: dict[str, str] = {
    "weight_kg": "weight_kg",
    "weight": "weight_kg",
    "item_weight": "weight_kg",
    "screen_size": "screen_in",
    "screen_in": "screen_in",
    "display_size": "screen_in",
    "power_w": "power_w",
    "power": "power_w",
    "wattage": "power_w",
    "capacity_l": "capacity_l",
    "capacity": "capacity_l",
    "volume": "capacity_l",
    "storage_gb": "storage_gb",
    "storage": "storage_gb",
    "battery_mah": "battery_mah",
    "pack_size": "pack_count",
    "pack_count": "pack_count",
    "count": "pack_count",
}
ALL_ATTRIBUTES = (*ATTRIBUTES, "pack_count")

_UNIT_TO_ATTRIBUTE = {unit: name for name, (_, units) in ATTRIBUTES.items() for unit in units}
_NUMBER = r"(?<![A-Za-z0-9.\-])(?P<number>\d+(?:[.,]\d+)?)"
_UNITS = "|".join(re.escape(u) for u in sorted(_UNIT_TO_ATTRIBUTE, key=len, reverse=True))
# A number, an optional space or hyphen, a unit, and not a letter right after the unit ("5 in stock" is
# refused below because "in" needs a digit-adjacent form or a hyphen).
_QUANTITY = re.compile(rf"{_NUMBER}\s?-?\s?(?P<unit>{_UNITS})(?![a-z0-9])", re.IGNORECASE)
_PACK = re.compile(
    rf"(?:(?P<n1>\d+)\s?-?\s?(?:{'|'.join(PACK_WORDS)})\b|\b(?:pack|set|box|case) of (?P<n2>\d+)\b)", re.IGNORECASE
)


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    import pint

    return pint.UnitRegistry()


def to_canonical(value: float, unit: str, attribute: str) -> float:
    """``value`` in ``unit`` (a pint unit name) converted to ``attribute``'s canonical unit."""
    registry = _registry()
    canonical = ATTRIBUTES[attribute][0]
    return float(registry.Quantity(value, unit).to(canonical).magnitude)


def parse_quantities(text: str) -> dict[str, float]:
    """Attributes found in ``text`` in canonical units (the first mention of each wins).

    >>> parse_quantities('Laptop 15.6-inch, 500 W, 8 oz, 2-pack')
    {'screen_in': 15.6, 'power_w': 500.0, 'weight_kg': 0.226796185, 'pack_count': 2.0}
    """
    found: dict[str, float] = {}
    for match in _QUANTITY.finditer(text or ""):
        raw_unit = match["unit"].lower()
        attribute = _UNIT_TO_ATTRIBUTE[raw_unit]
        if attribute in found:
            continue
        if raw_unit == "in" and not re.search(r"\d\s?-?\s?in\b", match.group(0), re.IGNORECASE):
            continue
        if raw_unit == "in" and re.match(r"\s+(stock|the|a|an|one|box|store)\b", text[match.end() :], re.IGNORECASE):
            continue  # "5 in stock", "3 in the box": not inches
        dimension = r"\s*[x×]\s*\d"
        if attribute == "screen_in" and (
            re.match(dimension, text[match.end() :])
            or re.search(r"(\d|inch|inches|in|\"|”)\s*[x×]\s*$", text[: match.start()], re.IGNORECASE)
        ):
            continue  # "5.5 inches x 8.5 inches", "8.5 x 11 in": a sheet's or box's dimensions, not a screen
        digits = match["number"]
        # "1,000 g" is a thousands separator, "3,5 kg" a decimal comma
        number = float(digits.replace(",", "") if re.fullmatch(r"\d{1,3},\d{3}", digits) else digits.replace(",", "."))
        if number <= 0:
            continue
        value = round(to_canonical(number, ATTRIBUTES[attribute][1][raw_unit], attribute), 9)
        low, high = PLAUSIBLE_RANGES[attribute]
        if low <= value <= high:
            found[attribute] = value
    pack = _PACK.search(text or "")
    if pack:
        count = float(pack["n1"] or pack["n2"])
        if PLAUSIBLE_RANGES["pack_count"][0] <= count <= PLAUSIBLE_RANGES["pack_count"][1]:
            found["pack_count"] = count
    return found


def parse_column_value(value: Any, attribute: str) -> float:
    """One column value as a positive number in the attribute's canonical unit; ValueError says why not."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            parsed = parse_quantities(text)
            if attribute not in parsed:
                raise ValueError(f"{text!r} is not a {attribute} quantity (number or number + unit)") from None
            number = parsed[attribute]
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{value!r} must be a positive number")
    low, high = PLAUSIBLE_RANGES[attribute]
    if not low <= number <= high:
        raise ValueError(f"{value!r} is outside the plausible {attribute} range [{low:g}, {high:g}]")
    return number


def attributes_from_record(record: Mapping[str, Any], text: str) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Attributes of a catalogue row: columns first, then quantities parsed from ``text``.

    Returns (attributes, errors) where each error is (column, message) for a column value that is not a quantity.
    """
    attributes = parse_quantities(text)
    errors: list[tuple[str, str]] = []
    for column, value in record.items():
        attribute = ATTRIBUTE_COLUMNS.get(str(column).strip().lower().split(":")[0])
        if attribute is None or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        try:
            attributes[attribute] = parse_column_value(value, attribute)
        except ValueError as exc:
            errors.append((str(column), str(exc)))
    return attributes, errors


def columns_help() -> str:
    """The accepted attribute columns, for ``--help``."""
    by_attribute: dict[str, list[str]] = {}
    for column, attribute in ATTRIBUTE_COLUMNS.items():
        by_attribute.setdefault(attribute, []).append(column)
    return "; ".join(f"{attribute}: {'|'.join(columns)}" for attribute, columns in by_attribute.items())
