"""The hierarchical PCF estimator: shrinkage to the category prior, calibrated intervals, flags, held-out property."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agents.pcf.evaluate import evaluate_transfer, plain_text
from agents.pcf.hierarchy import HierarchicalPCF, fit_category_priors
from agents.pcf.reference import ReferenceProduct, load_carbon_catalogue
from retrieval.embed import HashingEmbedder

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CATEGORY_LOG_MEDIANS = {"steel": 3.0, "phones": 1.0, "snacks": -1.0}
DIM = 56
UNUSED = 8  # the last dimensions no reference product uses: a target there resembles nothing in the reference


def synthetic_catalogue(
    n_per_category: int, seed: int, noise: float = 0.3
) -> tuple[list[ReferenceProduct], np.ndarray]:
    """Products whose embedding = category direction + a product direction; log PCF = category level + the
    product direction's first coordinate (so near neighbours share footprints) + Gaussian noise."""
    rng = np.random.default_rng(seed)
    products, rows = [], []
    for c, (category, level) in enumerate(CATEGORY_LOG_MEDIANS.items()):
        for i in range(n_per_category):
            specific = rng.normal(size=DIM - 3 - UNUSED)
            specific /= np.linalg.norm(specific)
            vector = np.concatenate([np.eye(3)[c] * 1.0, specific * 1.0, np.zeros(UNUSED)])
            y = level + 1.5 * specific[0] * math.sqrt(DIM - UNUSED) / 3 + rng.normal(0, noise)
            products.append(
                ReferenceProduct(
                    ref_id=f"{category}-{seed}-{i}",
                    name=f"{category} {i}",
                    company="",
                    sector=category,
                    pcf_kg=float(10**y),
                    group=f"{category}-{seed}-{i}",
                )
            )
            rows.append(vector / np.linalg.norm(vector))
    return products, np.array(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def fitted() -> HierarchicalPCF:
    products, embeddings = synthetic_catalogue(60, seed=0, noise=0.1)
    return HierarchicalPCF(k=5, coverage=0.8, seed=0).fit(products, embeddings)


def test_weak_neighbours_fall_back_to_the_category_prior(fitted: HierarchicalPCF) -> None:
    # A little of the "steel" direction, the rest where no reference lies: only weak neighbours (similarity
    # < 0.3, while a reference's own nearest neighbours sit near 0.65).
    weak = np.zeros((1, DIM), dtype=np.float32)
    weak[0, 0] = 0.4
    weak[0, DIM - UNUSED :] = 1.0 / math.sqrt(UNUSED)
    weak /= np.linalg.norm(weak)
    assert float((fitted.embeddings @ weak[0]).max()) < 0.3
    estimate = fitted.predict(weak)[0]
    assert estimate.category == "steel"
    assert estimate.neighbour_share < 0.5 and "weak_neighbours" in estimate.flags
    prior = fitted.category_median_kg("steel")
    assert (
        abs(math.log10(estimate.pcf_kg) - math.log10(prior))
        < 0.5 * abs(math.log10(np.mean([n.pcf_kg for n in fitted.products[:5]])) - math.log10(prior)) + 0.15
    )
    # The exact copy of a reference product: its neighbour dominates and the estimate follows it.
    strong = fitted.embeddings[7:8]
    copy = fitted.predict(strong)[0]
    assert copy.neighbour_share > 0.6 and "weak_neighbours" not in copy.flags
    target = math.log10(fitted.products[7].pcf_kg)
    assert abs(math.log10(copy.pcf_kg) - target) < abs(math.log10(prior) - target)


def test_noise_curve_decreases_with_similarity(fitted: HierarchicalPCF) -> None:
    noise = fitted.noise(np.array([0.0, 0.3, 0.6, 0.9, 1.0]))
    assert np.all(np.diff(noise) <= 1e-12) and noise[0] > noise[-1]


def test_interval_is_calibrated_on_held_out_synthetic_products() -> None:
    products, embeddings = synthetic_catalogue(80, seed=1)
    held_out, held_embeddings = synthetic_catalogue(60, seed=2)
    truth = np.log10([p.pcf_kg for p in held_out])
    for coverage in (0.5, 0.8):
        model = HierarchicalPCF(k=5, coverage=coverage, seed=0).fit(products, embeddings)
        estimates = model.predict(held_embeddings)
        low = np.log10([e.low_kg for e in estimates])
        high = np.log10([e.high_kg for e in estimates])
        covered = float(np.mean((truth >= low) & (truth <= high)))
        assert abs(covered - coverage) < 0.1, (coverage, covered)
    narrow = HierarchicalPCF(k=5, coverage=0.5, seed=0).fit(products, embeddings).predict(held_embeddings)
    assert np.median([e.high_kg / e.low_kg for e in narrow]) < np.median([e.high_kg / e.low_kg for e in estimates])


def test_flags_and_plausibility_against_the_category_range(fitted: HierarchicalPCF) -> None:
    prior = fitted.priors["phones"]
    assert fitted.plausible("phones", 10**prior.high)
    assert not fitted.plausible("phones", 10 ** (prior.high + 1.0))
    assert not fitted.plausible("phones", 10 ** (prior.low - 1.0))
    assert fitted.plausible("not a category", 1e9)  # unknown category: nothing to check against
    # halfway between two categories: the classifier is unsure and says so
    between = np.zeros((1, DIM), dtype=np.float32)
    between[0, 0] = between[0, 1] = 1.0
    between /= np.linalg.norm(between)
    estimate = fitted.predict(between)[0]
    assert estimate.category_probability < 0.6 and "uncertain_category" in estimate.flags
    record = estimate.record()
    assert record["pcf_low_kg"] < estimate.pcf_kg < record["pcf_high_kg"] and record["plausible"] is True


def test_attribute_elasticity_is_fitted_within_category_and_used() -> None:
    rng = np.random.default_rng(3)
    weights = 10 ** rng.uniform(-1, 2, size=40)
    y = 1.0 + 0.8 * np.log10(weights) + rng.normal(0, 0.05, size=40)
    priors = fit_category_priors(y, ["pans"] * 40, [{"weight_kg": w} for w in weights])
    slope, mean_x, residual = priors["pans"].slopes["weight_kg"]
    assert mean_x == pytest.approx(np.mean(np.log10(weights)))
    assert slope == pytest.approx(0.8, abs=0.05) and residual < 0.1
    assert (
        "weight_kg"
        not in fit_category_priors(y[:5], ["pans"] * 5, [{"weight_kg": w} for w in weights[:5]])["pans"].slopes
    )


def test_synthetic_held_out_folds_never_worse_than_the_category_median() -> None:
    products, embeddings = synthetic_catalogue(40, seed=4, noise=0.4)
    result = evaluate_transfer(products, embeddings, embeddings, "grouped_kfold", n_folds=4, k=5, seed=0)
    for fold in result["property_by_fold"]:
        assert fold["hierarchical"] <= fold["category_median"] + 1e-9
    assert 0.65 <= result["overall"]["hierarchical"]["interval_coverage"] <= 0.95


@pytest.mark.slow
def test_real_catalogue_held_out_folds_never_worse_than_the_predicted_category_median() -> None:
    products = load_carbon_catalogue(SHARED / "carbon_catalogue")
    embedder = HashingEmbedder()
    embeddings = embedder.embed_texts([p.text() for p in products])
    queries = embedder.embed_texts([plain_text(p) for p in products])
    result = evaluate_transfer(products, embeddings, queries, "grouped_kfold", n_folds=5, k=5, seed=0)
    for fold in result["property_by_fold"]:
        assert fold["hierarchical"] <= fold["category_median"]
    overall = result["overall"]
    assert overall["hierarchical"]["mean_abs_log10_error"] < overall["knn"]["mean_abs_log10_error"]
    assert abs(overall["hierarchical"]["interval_coverage"] - 0.8) < 0.06
