"""Hierarchical PCF estimation: a category classifier, category priors, and shrinkage of neighbour evidence.

All in y = log10(PCF). For a target product:

1. A logistic-regression classifier over the reference embeddings predicts its category (the Carbon
   Catalogue's sector) with probabilities p_c.
2. The category prior is N(mu, tau^2): mu = the predicted category's median log PCF (shifted by the
   category's fitted attribute elasticity where the target has an attribute the category's references
   have, e.g. weight), tau^2 = the category's spread plus the spread between categories weighted by p_c
   (an unsure classifier widens the prior).
3. Each of the k nearest references j is a noisy observation of y: v_j (its log PCF, attribute-adjusted
   the same way) with variance sigma^2(s_j), a decreasing function of the cosine similarity s_j fitted by
   isotonic regression on held-out neighbour pairs of the reference itself. Their precision-weighted mean m
   has precision P = sum_j w_j / (1 + rho (k - 1)), with w_j = max(0, 1/sigma^2(s_j) - gamma/D_c): a
   neighbour counts only by what it tells beyond a random member of the category (D_c = the mean squared
   log difference of two random members of the category, measured on the reference), in a share gamma.
   rho (the neighbours' redundancy) and gamma (0, 0.5 or 1) are chosen on inner held-out folds among a
   grid that includes "prior only" (P = 0). The noise curve is fitted on the inner neighbours and on random
   reference pairs, so it knows what a low similarity is worth.
4. The posterior: y_hat = (mu / tau^2 + P m) / (1 / tau^2 + P), variance 1 / (1 / tau^2 + P). Weak
   neighbours (small s_j, large sigma^2) give P ~ 0 and the estimate falls back to the category prior.
5. The interval is y_hat +- q sd, with q the ``coverage`` quantile of |residual| / sd over the inner
   held-out predictions (split-conformal), so an 80% interval covers ~80% of held-out products.
6. Flags: ``outside_category_range`` (the estimate leaves the predicted category's observed range widened by
   ``range_margin``), ``weak_neighbours`` (neighbours carry < 25% of the posterior weight),
   ``uncertain_category`` (classifier probability < 0.5), ``wide_interval`` (high / low > 100).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.pcf.attributes import ALL_ATTRIBUTES, parse_quantities
from agents.pcf.reference import ReferenceProduct

logger = logging.getLogger(__name__)

DEFAULT_COVERAGE = 0.8
RHO_GRID = (0.0, 0.25, 0.5, 1.0, math.inf)  # inf = prior only
GAMMA_GRID = (0.0, 0.5, 1.0)
RANDOM_PAIRS = 5
MIN_ATTRIBUTE_SIZE = 8
WEAK_NEIGHBOUR_SHARE = 0.25
UNCERTAIN_CATEGORY = 0.5
WIDE_INTERVAL_RATIO = 100.0


def reference_attributes(product: ReferenceProduct) -> dict[str, float]:
    """A reference product's attributes: parsed from its name and detail, its weight column on top."""
    attributes = parse_quantities(f"{product.name} {product.detail}")
    if product.weight_kg:
        attributes["weight_kg"] = product.weight_kg
    return attributes


def grouped_folds(groups: Sequence[str], n_folds: int, seed: int = 0) -> np.ndarray:
    """A fold index per row; every group lands whole in one fold (groups shuffled, then dealt round-robin)."""
    unique = sorted(set(groups))
    if n_folds < 2 or n_folds > len(unique):
        raise ValueError(f"--folds must be between 2 and the number of product groups ({len(unique)}), got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[g]: i % n_folds for i, g in enumerate(order)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


@dataclass
class CategoryPrior:
    """The log10 PCF distribution of one category and its attribute elasticities."""

    name: str
    n: int
    median: float
    spread: float
    low: float
    high: float
    # attribute -> (elasticity d log PCF / d log attribute, mean log10 attribute, residual spread)
    slopes: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def _robust_spread(values: np.ndarray) -> float:
    """Standard deviation estimated from the interquartile range (1.349 IQR for a normal), floored."""
    if len(values) < 2:
        return 1.0
    q75, q25 = np.percentile(values, [75, 25])
    return float(max((q75 - q25) / 1.349, np.std(values) * 0.5, 0.05))


def fit_category_priors(
    y: np.ndarray, categories: Sequence[str], attributes: Sequence[Mapping[str, float]]
) -> dict[str, CategoryPrior]:
    """Median, spread, range and attribute elasticities (least squares, clipped to [0, 1.5]) per category."""
    priors: dict[str, CategoryPrior] = {}
    categories = np.asarray(categories)
    for name in sorted(set(categories.tolist())):
        rows = np.flatnonzero(categories == name)
        values = y[rows]
        prior = CategoryPrior(
            name=name,
            n=len(rows),
            median=float(np.median(values)),
            spread=_robust_spread(values),
            low=float(values.min()),
            high=float(values.max()),
        )
        for attribute in ALL_ATTRIBUTES:
            having = [(y[i], math.log10(attributes[i][attribute])) for i in rows if attribute in attributes[i]]
            if len(having) < MIN_ATTRIBUTE_SIZE:
                continue
            ys, xs = np.array(having).T
            if np.ptp(xs) < 0.3:  # under a factor of 2 of variation: no slope can be read
                continue
            slope = float(np.clip(np.cov(xs, ys, bias=True)[0, 1] / np.var(xs), 0.0, 1.5))
            residual = ys - (np.median(ys) + slope * (xs - xs.mean()))
            prior.slopes[attribute] = (slope, float(xs.mean()), _robust_spread(residual))
        priors[name] = prior
    return priors


def _best_attribute(prior: CategoryPrior, attributes: Mapping[str, float]) -> str | None:
    """The target's attribute with the smallest residual spread in this category (None when none applies)."""
    usable = [(prior.slopes[a][2], a) for a in attributes if a in prior.slopes and prior.slopes[a][0] > 0]
    return min(usable)[1] if usable else None


class _Isotonic:
    """sigma^2(similarity): a decreasing isotonic fit of squared log differences, floored."""

    def __init__(self, similarities: np.ndarray, squared: np.ndarray, floor: float = 0.0025) -> None:
        from sklearn.isotonic import IsotonicRegression

        self.floor = floor
        self.model = IsotonicRegression(increasing=False, out_of_bounds="clip")
        self.model.fit(similarities, squared)

    def __call__(self, similarities: np.ndarray) -> np.ndarray:
        flat = np.nan_to_num(np.asarray(similarities, dtype=float).ravel(), nan=-1.0)
        return np.maximum(self.model.predict(flat).reshape(np.shape(similarities)), self.floor)


@dataclass
class HierarchicalEstimate:
    """One product's estimate, its interval and the checks on it."""

    pcf_kg: float
    low_kg: float
    high_kg: float
    coverage: float
    category: str
    category_probability: float
    prior_kg: float
    neighbour_share: float
    attribute: str | None
    flags: list[str]
    plausible: bool
    log10_sd: float

    def record(self) -> dict[str, Any]:
        """The label-file fields of this estimate."""
        return {
            "pcf_low_kg": float(f"{self.low_kg:.6g}"),
            "pcf_high_kg": float(f"{self.high_kg:.6g}"),
            "interval_coverage": self.coverage,
            "category": self.category,
            "category_probability": round(self.category_probability, 4),
            "category_prior_kg": float(f"{self.prior_kg:.6g}"),
            "neighbour_share": round(self.neighbour_share, 4),
            "attribute_used": self.attribute,
            "plausible": self.plausible,
            "flags": list(self.flags),
        }


@dataclass
class _Evidence:
    """Arrays for n targets: prior mean / variance, neighbour values and similarities (n, k)."""

    mu: np.ndarray
    tau2: np.ndarray
    within2: np.ndarray
    values: np.ndarray
    similarities: np.ndarray
    category: list[str]
    probability: np.ndarray
    attribute: list[str | None]


class HierarchicalPCF:
    """Category prior + similarity-weighted neighbour shrinkage, with calibrated intervals (see module doc)."""

    def __init__(
        self,
        k: int = 5,
        coverage: float = DEFAULT_COVERAGE,
        use_attributes: bool = True,
        classifier_c: float = 10.0,
        inner_folds: int = 5,
        range_margin: float = 2.0,
        seed: int = 0,
        random_pairs: int = RANDOM_PAIRS,
    ) -> None:
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        self.k = k
        self.coverage = coverage
        self.use_attributes = use_attributes
        self.classifier_c = classifier_c
        self.inner_folds = inner_folds
        self.range_margin = range_margin
        self.seed = seed
        self.random_pairs = random_pairs
        self.gamma = 0.0
        self.rho = 0.0
        self.interval_q = 1.2816
        self.inner_report: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------- fitting

    def _classifier(self, embeddings: np.ndarray, categories: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        if len(set(categories.tolist())) < 2:
            return _ConstantClassifier(str(categories[0]))
        return LogisticRegression(C=self.classifier_c, max_iter=500).fit(embeddings, categories)

    def _attributes(self, attributes: Mapping[str, float] | None) -> dict[str, float]:
        return dict(attributes or {}) if self.use_attributes else {}

    def _evidence(
        self,
        queries: np.ndarray,
        query_attributes: Sequence[Mapping[str, float] | None],
        classifier: Any,
        priors: dict[str, CategoryPrior],
        ref_embeddings: np.ndarray,
        ref_y: np.ndarray,
        ref_attributes: Sequence[Mapping[str, float]],
        allowed: np.ndarray | None = None,
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> _Evidence:
        """Prior and neighbour evidence for each query row (neighbours searched here unless given)."""
        n = len(queries)
        probabilities = classifier.predict_proba(queries)
        classes = [str(c) for c in classifier.classes_]
        if neighbours is None:
            similarities = queries @ ref_embeddings.T
            if allowed is not None:
                similarities = np.where(allowed, similarities, -np.inf)
            k = min(self.k, similarities.shape[1])
            top = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
            top_sims = np.take_along_axis(similarities, top, axis=1)
        else:
            top, top_sims = neighbours
        mu, tau2, within2 = np.zeros(n), np.zeros(n), np.zeros(n)
        values = np.full(top.shape, np.nan)
        chosen, probability, used = [], np.zeros(n), []
        for i in range(n):
            target = self._attributes(query_attributes[i])
            best = int(np.argmax(probabilities[i]))
            category = classes[best]
            prior = priors[category]
            attribute = _best_attribute(prior, target)
            means, spreads = [], []
            for name in classes:
                other = priors[name]
                other_attribute = _best_attribute(other, target)
                if other_attribute:
                    slope, mean_x, residual = other.slopes[other_attribute]
                    means.append(other.median + slope * (math.log10(target[other_attribute]) - mean_x))
                    spreads.append(residual)
                else:
                    means.append(other.median)
                    spreads.append(other.spread)
            means_arr, spreads_arr = np.array(means), np.array(spreads)
            mu[i] = means_arr[best]
            # half the mean squared difference of two random members of the category (2 spread^2 when unknown)
            within2[i] = self.category_pair_d2.get(category, 2 * spreads_arr[best] ** 2) / 2
            # the category's spread, plus how far the other categories the classifier considers sit from it
            tau2[i] = float(np.sum(probabilities[i] * (spreads_arr**2 + (means_arr - mu[i]) ** 2)))
            for slot, j in enumerate(top[i]):
                if not np.isfinite(top_sims[i, slot]):
                    continue
                value = ref_y[j]
                if attribute and attribute in ref_attributes[j]:
                    slope = prior.slopes[attribute][0]
                    value += slope * (math.log10(target[attribute]) - math.log10(ref_attributes[j][attribute]))
                values[i, slot] = value
            chosen.append(category)
            probability[i] = probabilities[i, best]
            used.append(attribute)
        similarities = np.where(np.isfinite(values), top_sims, np.nan)
        return _Evidence(mu, tau2, within2, values, similarities, chosen, probability, used)

    def _category_pair_d2(self, groups: Sequence[str]) -> dict[str, float]:
        """Mean squared log difference of random pairs (other groups) inside each category."""
        rng = np.random.default_rng(self.seed + 1)
        result = {}
        groups_arr = np.asarray(groups)
        for category in sorted(set(self.categories.tolist())):
            rows = np.flatnonzero(self.categories == category)
            if len(rows) < 2:
                continue
            first = rng.choice(rows, size=20 * len(rows))
            second = rng.choice(rows, size=20 * len(rows))
            keep = groups_arr[first] != groups_arr[second]
            if keep.any():
                result[category] = float(np.mean((self.y[first[keep]] - self.y[second[keep]]) ** 2))
        return result

    def _posterior(
        self, evidence: _Evidence, rho: float, gamma: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(posterior mean, posterior variance, neighbour share) for a redundancy ``rho`` (inf = prior only) and
        a share ``gamma`` of the category's random-pair precision taken off each neighbour's."""
        gamma = self.gamma if gamma is None else gamma
        valid = np.isfinite(evidence.values)
        # A neighbour informs beyond the prior only by what it adds to a random member of the category, whose
        # mean squared difference to the target is D_c (measured on the reference): its net precision is
        # 1/sigma^2(s) - 1/D_c, >= 0.
        raw = 1.0 / self.noise(np.where(valid, evidence.similarities, 0.0))
        net = np.maximum(raw - gamma / (2.0 * np.maximum(evidence.within2, 1e-6))[:, None], 0.0)
        precision = np.where(valid, net, 0.0)
        valid = valid & (precision > 0)
        counts = valid.sum(axis=1)
        total = precision.sum(axis=1)
        mean = np.where(
            total > 0, np.nansum(precision * np.nan_to_num(evidence.values), axis=1) / np.maximum(total, 1e-12), 0.0
        )
        if math.isinf(rho):
            effective = np.zeros_like(total)
        else:
            effective = total / (1.0 + rho * np.maximum(counts - 1, 0))
        prior_precision = 1.0 / np.maximum(evidence.tau2, 1e-6)
        posterior_precision = prior_precision + effective
        estimate = (prior_precision * evidence.mu + effective * mean) / posterior_precision
        return estimate, 1.0 / posterior_precision, effective / posterior_precision

    def fit(
        self,
        products: Sequence[ReferenceProduct],
        embeddings: np.ndarray,
        query_embeddings: np.ndarray | None = None,
    ) -> HierarchicalPCF:
        """Fit the classifier, the category priors, the noise curve, rho and the interval scale on ``products``.

        ``embeddings`` index the references (row i = product i, L2-normalised); ``query_embeddings`` are the
        same products embedded the way targets are (without their category) for the inner held-out folds;
        ``embeddings`` are used when None.
        """
        self.products = list(products)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        queries = self.embeddings if query_embeddings is None else np.asarray(query_embeddings, dtype=np.float32)
        self.y = np.log10([p.pcf_kg for p in self.products])
        self.categories = np.array([p.sector for p in self.products])
        self.ref_attributes = [reference_attributes(p) for p in self.products]
        groups = [p.group or p.ref_id for p in self.products]
        self.category_pair_d2 = self._category_pair_d2(groups)
        n_inner = min(self.inner_folds, len(set(groups)))
        # Inner held-out folds: every product is predicted by a model that never saw its group.
        folds = grouped_folds(groups, n_inner, self.seed)
        evidence_parts: list[tuple[np.ndarray, _Evidence]] = []
        rng = np.random.default_rng(self.seed)
        random_similarities, random_squared = [], []
        for fold in range(n_inner):
            test = np.flatnonzero(folds == fold)
            train = folds != fold
            rows = np.flatnonzero(train)
            classifier = self._classifier(self.embeddings[rows], self.categories[rows])
            priors = fit_category_priors(self.y[rows], self.categories[rows], [self.ref_attributes[r] for r in rows])
            evidence = self._evidence(
                queries[test],
                [self.ref_attributes[t] for t in test],
                classifier,
                priors,
                self.embeddings,
                self.y,
                self.ref_attributes,
                allowed=train[None, :],
            )
            evidence_parts.append((test, evidence))
            # random reference pairs anchor the noise curve at low similarity (weak neighbours = noise)
            partners = rows[rng.integers(0, len(rows), size=(len(test), self.random_pairs))]
            random_similarities.append(np.einsum("id,ijd->ij", queries[test], self.embeddings[partners]).ravel())
            random_squared.append(((self.y[test][:, None] - self.y[partners]) ** 2).ravel())
        order = np.concatenate([t for t, _ in evidence_parts])
        evidence = _Evidence(
            mu=np.concatenate([e.mu for _, e in evidence_parts]),
            tau2=np.concatenate([e.tau2 for _, e in evidence_parts]),
            within2=np.concatenate([e.within2 for _, e in evidence_parts]),
            values=np.concatenate([e.values for _, e in evidence_parts]),
            similarities=np.concatenate([e.similarities for _, e in evidence_parts]),
            category=[c for _, e in evidence_parts for c in e.category],
            probability=np.concatenate([e.probability for _, e in evidence_parts]),
            attribute=[a for _, e in evidence_parts for a in e.attribute],
        )
        truth = self.y[order]
        valid = np.isfinite(evidence.values)
        squared = (truth[:, None] - evidence.values) ** 2
        self.noise = _Isotonic(
            np.concatenate([evidence.similarities[valid], *random_similarities]),
            np.concatenate([squared[valid], *random_squared]),
        )
        errors = {}
        for rho in RHO_GRID:
            for gamma in GAMMA_GRID:
                if math.isinf(rho) and gamma > 0:
                    continue
                estimate, _, _ = self._posterior(evidence, rho, gamma)
                errors[(rho, gamma)] = float(np.mean(np.abs(estimate - truth)))
        # ties go to the more cautious setting (larger gamma, then larger rho)
        self.rho, self.gamma = min(errors, key=lambda key: (round(errors[key], 12), -key[1], -key[0]))
        estimate, variance, share = self._posterior(evidence, self.rho)
        standardised = np.abs(estimate - truth) / np.sqrt(variance)
        self.interval_q = float(np.quantile(standardised, self.coverage))
        self.inner_report = {
            "rho": None if math.isinf(self.rho) else self.rho,
            "gamma": self.gamma,
            "inner_mean_abs_log10_error": {
                ("prior_only" if math.isinf(r) else f"rho={r},gamma={g}"): e for (r, g), e in errors.items()
            },
            "inner_category_median_mean_abs_log10_error": float(np.mean(np.abs(evidence.mu - truth))),
            "interval_q": self.interval_q,
            "inner_classifier_accuracy": float(np.mean(np.array(evidence.category) == self.categories[order])),
            "mean_neighbour_share": float(np.mean(share)),
        }
        self.classifier = self._classifier(self.embeddings, self.categories)
        self.priors = fit_category_priors(self.y, self.categories, self.ref_attributes)
        logger.info("hierarchical PCF fitted: %s", self.inner_report)
        return self

    # ---------------------------------------------------------------------------------- prediction

    def predict(
        self,
        query_embeddings: np.ndarray,
        attributes: Sequence[Mapping[str, float] | None] | None = None,
        allowed: np.ndarray | None = None,
    ) -> list[HierarchicalEstimate]:
        """Estimates for targets embedded as ``query_embeddings`` (neighbours among the fitted references)."""
        queries = np.asarray(query_embeddings, dtype=np.float32)
        attributes = list(attributes) if attributes is not None else [None] * len(queries)
        evidence = self._evidence(
            queries,
            attributes,
            self.classifier,
            self.priors,
            self.embeddings,
            self.y,
            self.ref_attributes,
            allowed=None if allowed is None else allowed[None, :],
        )
        return self._estimates(evidence)

    def _estimates(self, evidence: _Evidence) -> list[HierarchicalEstimate]:
        estimate, variance, share = self._posterior(evidence, self.rho)
        sd = np.sqrt(variance)
        margin = math.log10(self.range_margin)
        out = []
        for i in range(len(estimate)):
            prior = self.priors[evidence.category[i]]
            low, high = estimate[i] - self.interval_q * sd[i], estimate[i] + self.interval_q * sd[i]
            flags = []
            if not prior.low - margin <= estimate[i] <= prior.high + margin:
                flags.append("outside_category_range")
            if share[i] < WEAK_NEIGHBOUR_SHARE:
                flags.append("weak_neighbours")
            if evidence.probability[i] < UNCERTAIN_CATEGORY:
                flags.append("uncertain_category")
            if high - low > math.log10(WIDE_INTERVAL_RATIO):
                flags.append("wide_interval")
            out.append(
                HierarchicalEstimate(
                    pcf_kg=float(10 ** estimate[i]),
                    low_kg=float(10**low),
                    high_kg=float(10**high),
                    coverage=self.coverage,
                    category=evidence.category[i],
                    category_probability=float(evidence.probability[i]),
                    prior_kg=float(10 ** evidence.mu[i]),
                    neighbour_share=float(share[i]),
                    attribute=evidence.attribute[i],
                    flags=flags,
                    plausible="outside_category_range" not in flags,
                    log10_sd=float(sd[i]),
                )
            )
        return out

    def category_median_kg(self, category: str) -> float:
        """The (unshifted) median PCF of a fitted category."""
        return float(10 ** self.priors[category].median)

    def plausible(self, category: str, pcf_kg: float) -> bool:
        """Whether ``pcf_kg`` lies in the category's observed range widened by ``range_margin``."""
        prior = self.priors.get(category)
        if prior is None:
            return True
        value, margin = math.log10(pcf_kg), math.log10(self.range_margin)
        return prior.low - margin <= value <= prior.high + margin


class _ConstantClassifier:
    """A classifier for a reference with one category: probability 1 for it."""

    def __init__(self, category: str) -> None:
        self.classes_ = np.array([category])

    def predict_proba(self, queries: np.ndarray) -> np.ndarray:
        return np.ones((len(queries), 1))
