"""Quantities from titles and columns: weight, screen size, power, capacity, storage, battery and pack size."""

from __future__ import annotations

import pytest

from agents.pcf.attributes import ATTRIBUTE_COLUMNS, attributes_from_record, columns_help, parse_column_value
from agents.pcf.attributes import parse_quantities as parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Laptop 15.6-inch, 500 W, 8 oz, 2-pack", {"screen_in": 15.6, "power_w": 500.0, "weight_kg": 0.226796185,
                                                   "pack_count": 2.0}),
        ('19" LCD Monitor, 2.4Kg, 16.25 W', {"screen_in": 19.0, "weight_kg": 2.4, "power_w": 16.25}),
        ("HP 27in monitor", {"screen_in": 27.0}),
        ("Mobile Phone 5.2\u201d 2520 mAh 0.35 Kg", {"screen_in": 5.2, "battery_mah": 2520.0, "weight_kg": 0.35}),
        ("Carling, 24 440ml cans in 4 packs", {"capacity_l": 0.44, "pack_count": 4.0}),
        ("Pack of 12 pens", {"pack_count": 12.0}),
        ("Copy paper 1,000 g", {"weight_kg": 1.0}),
        ("Sugar 3,5 kg", {"weight_kg": 3.5}),
        ("Water bottle 1.5 l and 2 lbs", {"capacity_l": 1.5, "weight_kg": 0.907184740}),
        ("Space heater 1.5 kW", {"power_w": 1500.0}),
        ("1TB external drive", {"storage_gb": 1000.0}),
    ],
)  # fmt: skip
def test_quantities_in_titles_are_found_and_converted(text: str, expected: dict[str, float]) -> None:
    assert parse(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "5 in stock",
        "power supply unit (MF6004-030L)",
        "Model A4 printer",
        "3 in the box",
        "USB-C cable",
        "Greeting cards, 5.5 inches x 8.5 inches",
        "Copy paper 8.5 x 11 in",
        "Digital pocket scale 200 x 0.01g",
        "Toner cartridge, 6000 pages, 1320 t",
    ],
)
def test_words_and_model_numbers_are_not_quantities(text: str) -> None:
    assert parse(text) == {}


def test_columns_win_over_the_title_and_take_units() -> None:
    attributes, errors = attributes_from_record(
        {"screen_size": "15.6 in", "power:float": 65, "capacity": "", "item_weight": "8 oz", "title": "x"},
        "Laptop 14-inch 3 kg",
    )
    assert attributes == pytest.approx({"screen_in": 15.6, "power_w": 65.0, "weight_kg": 0.226796185})
    assert errors == []
    _, errors = attributes_from_record({"wattage": "very strong"}, "")
    assert errors and errors[0][0] == "wattage" and "not a power_w quantity" in errors[0][1]
    with pytest.raises(ValueError, match="positive"):
        parse_column_value(-2, "weight_kg")
    with pytest.raises(ValueError, match="plausible screen_in range"):
        parse_column_value(300, "screen_in")


def test_help_lists_every_accepted_column() -> None:
    text = columns_help()
    assert all(column in text for column in ATTRIBUTE_COLUMNS)
