"""PCF estimation: nearest reference products, a few-shot LLM answer (parsed and validated), a kNN fallback.

For a target product the k most similar reference products are found by text similarity; they become worked
examples of a few-shot prompt asking the LLM for ``{"estimate_kg_co2e", "unit", "rationale"}``. The answer is
accepted only when it parses, is in kg CO2e, is positive and lies in the plausible range of the neighbours'
sector. Otherwise (and when no LLM is given, or the best similarity is under the threshold, so the examples
say little) the label is the similarity-weighted geometric mean of the neighbours' footprints, each scaled by
``target weight / neighbour weight`` where both weights are known. Every label records its method, the
neighbour ids and similarities, and a confidence in [0, 1].
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from agents.pcf.errors import LLMAnswerError
from agents.pcf.reference import REFERENCE_COLLECTION, ReferenceProduct, SectorStats, product_text
from core.jsontext import first_json_object

logger = logging.getLogger(__name__)

METHOD_LLM = "llm_few_shot"
METHOD_KNN = "knn"
METHOD_KNN_WEIGHT = "knn_weight_scaled"
DEFAULT_K = 5
DEFAULT_SIMILARITY_THRESHOLD = 0.3
UNIT = "kg CO2e"
_UNIT_ALIASES = {"kgco2e", "kgco2eq", "kgco2equivalent", "kgco2", "kilogramsco2e", "kilogramco2e"}


class ChatLike(Protocol):
    """What the estimator needs from an LLM (``mllm.backbones.ChatModel`` fits)."""

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class TargetItem:
    """A product to label: id and title are required, the rest helps when present."""

    item_id: str
    title: str
    category: str = ""
    description: str = ""
    brand: str = ""
    weight_kg: float | None = None
    attributes: dict[str, float] = field(default_factory=dict, compare=False)

    def text(self) -> str:
        """The text embedded for similarity search."""
        return product_text(self.title, category=self.category, description=self.description, brand=self.brand)


@dataclass(frozen=True)
class Neighbour:
    """A reference product found for a target, with its cosine similarity."""

    product: ReferenceProduct
    similarity: float


@dataclass
class PCFLabel:
    """An estimated footprint and how it was obtained (one line of a labels file)."""

    item_id: str
    pcf_kg: float
    method: str
    confidence: float
    neighbours: list[str]
    similarities: list[float]
    sector: str = ""
    rationale: str = ""
    fallback_reason: str = ""
    llm_estimate_kg: float | None = None
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record (the labels-file line format in docs/CONTRACTS.md); ``extra`` is merged in."""
        record = asdict(self)
        record.update(record.pop("extra"))
        record["pcf_kg"] = float(self.pcf_kg)
        record["confidence"] = round(float(self.confidence), 4)
        record["similarities"] = [round(float(s), 4) for s in self.similarities]
        return record


# ---------------------------------------------------------------------------------------- kNN fallback


def _weights(neighbours: Sequence[Neighbour]) -> np.ndarray:
    """Similarity weights (clipped at a small positive floor so dissimilar neighbours still count a little)."""
    return np.maximum(np.array([n.similarity for n in neighbours], dtype=float), 1e-3)


def neighbour_estimates(neighbours: Sequence[Neighbour], target_weight_kg: float | None = None) -> np.ndarray:
    """Each neighbour's footprint, scaled by target / neighbour weight where both weights are known."""
    values = []
    for neighbour in neighbours:
        pcf = neighbour.product.pcf_kg
        if target_weight_kg and neighbour.product.weight_kg:
            pcf = pcf * target_weight_kg / neighbour.product.weight_kg
        values.append(pcf)
    return np.array(values, dtype=float)


def knn_estimate(neighbours: Sequence[Neighbour], target_weight_kg: float | None = None) -> float:
    """Similarity-weighted geometric mean of the neighbours' (weight-scaled) footprints."""
    if not neighbours:
        raise ValueError("knn_estimate needs at least one neighbour")
    logs = np.log(neighbour_estimates(neighbours, target_weight_kg))
    weights = _weights(neighbours)
    return float(np.exp(np.sum(weights * logs) / np.sum(weights)))


def knn_confidence(neighbours: Sequence[Neighbour], target_weight_kg: float | None = None) -> float:
    """Best similarity times agreement: 1 / (1 + weighted std of the neighbours' log10 footprints)."""
    if not neighbours:
        return 0.0
    logs = np.log10(neighbour_estimates(neighbours, target_weight_kg))
    weights = _weights(neighbours)
    mean = np.sum(weights * logs) / np.sum(weights)
    spread = math.sqrt(float(np.sum(weights * (logs - mean) ** 2) / np.sum(weights)))
    best = max(0.0, min(1.0, max(n.similarity for n in neighbours)))
    return best / (1.0 + spread)


def likely_sector(neighbours: Sequence[Neighbour]) -> str:
    """The sector with the largest total similarity among the neighbours."""
    totals: dict[str, float] = {}
    for neighbour in neighbours:
        totals[neighbour.product.sector] = totals.get(neighbour.product.sector, 0.0) + max(neighbour.similarity, 1e-3)
    return max(totals, key=totals.get) if totals else ""


# ---------------------------------------------------------------------------------------- LLM answers

SYSTEM_PROMPT = (
    "You estimate the cradle-to-grave product carbon footprint (PCF) of one unit of a product, in kg CO2e. "
    "Use the reference products as a guide: similar products have similar footprints, and heavier products "
    'larger ones. Reply with one JSON object only: {"estimate_kg_co2e": <number>, "unit": "kg CO2e", '
    '"rationale": "<one short sentence>"}'
)


def _product_prompt(text: str, weight_kg: float | None) -> str:
    weight = f"{weight_kg:g} kg" if weight_kg else "unknown"
    return f"Product: {text}\nWeight: {weight}\nEstimate its carbon footprint as JSON."


def build_messages(item: TargetItem, neighbours: Sequence[Neighbour]) -> list[dict[str, str]]:
    """A few-shot conversation: each neighbour as a solved example (least similar first), then the target."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for neighbour in sorted(neighbours, key=lambda n: n.similarity):
        product = neighbour.product
        answer = {
            "estimate_kg_co2e": float(f"{product.pcf_kg:.4g}"),
            "unit": UNIT,
            "rationale": f"like {product.sector}",
        }
        messages.append({"role": "user", "content": _product_prompt(product.text(), product.weight_kg)})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    messages.append({"role": "user", "content": _product_prompt(item.text(), item.weight_kg)})
    return messages


def _first_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (code fences and chatter around it are ignored)."""
    value = first_json_object(text)
    if value is None:
        raise LLMAnswerError(f"no JSON object in the answer: {text[:120]!r}")
    return value


def _as_number(value: Any) -> float:
    if isinstance(value, bool):
        raise LLMAnswerError(f"estimate_kg_co2e = {value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        cleaned = value.strip().replace(",", "")
        match = re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", cleaned)
        if match:
            return float(cleaned)
    raise LLMAnswerError(f"estimate_kg_co2e = {value!r} is not a number")


def parse_llm_answer(text: str) -> dict[str, Any]:
    """``{"estimate_kg_co2e": float, "unit": "kg CO2e", "rationale": str}`` from a reply, or LLMAnswerError.

    Checks the JSON shape, the number and the unit; the range is checked by :func:`validate_estimate`.
    """
    text = text or ""
    if "{" in text and "}" not in text[text.index("{") :]:
        text += "}"  # generation was stopped at the closing brace, which the stop string removes
    answer = _first_json_object(text)
    if "estimate_kg_co2e" not in answer:
        raise LLMAnswerError(f"field 'estimate_kg_co2e' missing (fields: {sorted(answer)})")
    value = _as_number(answer["estimate_kg_co2e"])
    if not math.isfinite(value):
        raise LLMAnswerError(f"estimate_kg_co2e = {value} is not finite")
    unit = answer.get("unit")
    if not isinstance(unit, str) or re.sub(r"[^a-z0-9]", "", unit.lower().replace("₂", "2")) not in _UNIT_ALIASES:
        raise LLMAnswerError(f"unit = {unit!r}: expected {UNIT!r}")
    rationale = answer.get("rationale", "")
    return {"estimate_kg_co2e": value, "unit": UNIT, "rationale": str(rationale)[:500]}


def validate_estimate(value: float, plausible: tuple[float, float]) -> float:
    """``value`` when positive and inside ``plausible`` (low, high), else LLMAnswerError saying why."""
    if value <= 0:
        raise LLMAnswerError(f"estimate_kg_co2e = {value:g} is not positive")
    low, high = plausible
    if not low <= value <= high:
        raise LLMAnswerError(f"estimate_kg_co2e = {value:g} outside the plausible range [{low:.3g}, {high:.3g}] kg")
    return value


# ---------------------------------------------------------------------------------------- the estimator


@dataclass
class PCFEstimator:
    """Turns (item, neighbours) into a PCFLabel: the LLM when it gives a valid answer, else the kNN fallback."""

    stats: SectorStats
    llm: ChatLike | None = None
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD
    max_new_tokens: int = 64
    workers: int = 1
    llm_name: str = ""
    plausible_margin: float = 10.0
    counts: dict[str, int] = field(default_factory=dict)

    def fallback(self, item: TargetItem, neighbours: Sequence[Neighbour], reason: str) -> PCFLabel:
        """The kNN label (weight-scaled where the item's and a neighbour's weights are known)."""
        scaled = bool(item.weight_kg) and any(n.product.weight_kg for n in neighbours)
        self.counts[reason.split(":")[0] or "no_llm"] = self.counts.get(reason.split(":")[0] or "no_llm", 0) + 1
        return PCFLabel(
            item_id=item.item_id,
            pcf_kg=knn_estimate(neighbours, item.weight_kg),
            method=METHOD_KNN_WEIGHT if scaled else METHOD_KNN,
            confidence=knn_confidence(neighbours, item.weight_kg),
            neighbours=[n.product.ref_id for n in neighbours],
            similarities=[n.similarity for n in neighbours],
            sector=likely_sector(neighbours),
            fallback_reason=reason,
        )

    def from_answer(self, item: TargetItem, neighbours: Sequence[Neighbour], reply: str) -> PCFLabel:
        """Parse and validate an LLM reply; a bad one falls back to kNN with the reason recorded."""
        sector = likely_sector(neighbours)
        try:
            answer = parse_llm_answer(reply)
            plausible = self.stats.plausible_range(sector, self.plausible_margin)
            value = validate_estimate(answer["estimate_kg_co2e"], plausible)
        except LLMAnswerError as exc:
            return self.fallback(item, neighbours, f"llm_invalid: {exc}")
        estimates = neighbour_estimates(neighbours, item.weight_kg)
        inside = estimates.min() / 2 <= value <= estimates.max() * 2
        self.counts["llm"] = self.counts.get("llm", 0) + 1
        return PCFLabel(
            item_id=item.item_id,
            pcf_kg=value,
            method=METHOD_LLM,
            # An answer within the neighbours' span (factor 2) keeps the kNN confidence; one outside it is halved.
            confidence=knn_confidence(neighbours, item.weight_kg) * (1.0 if inside else 0.5),
            neighbours=[n.product.ref_id for n in neighbours],
            similarities=[n.similarity for n in neighbours],
            sector=sector,
            rationale=answer["rationale"],
            llm_estimate_kg=value,
            model=self.llm_name,
        )

    def _options(self) -> dict[str, Any]:
        # Generation stops at the first "}" (the answer is one flat JSON object); parse_llm_answer puts it back.
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "stop": ["}"]}

    def _ask(self, conversations: list[list[dict[str, str]]]) -> list[str | Exception]:
        """Replies (or the exception raised) per conversation; concurrent with ``workers`` > 1."""

        def one(messages: list[dict[str, str]]) -> str | Exception:
            try:
                return self.llm.generate(messages, **self._options())
            except Exception as exc:  # a failing model or endpoint must not lose the item: kNN takes over
                logger.warning("LLM call failed: %s", exc)
                return exc

        if self.workers > 1 and len(conversations) > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                return list(pool.map(one, conversations))
        batch = getattr(self.llm, "generate_batch", None)
        if batch is not None and len(conversations) > 1:
            try:
                return list(batch(conversations, **self._options()))
            except Exception as exc:  # one call each isolates the failing conversation
                logger.warning("batched LLM call failed (%s); retrying one by one", exc)
        return [one(messages) for messages in conversations]

    def estimate(self, items: Sequence[TargetItem], neighbour_lists: Sequence[Sequence[Neighbour]]) -> list[PCFLabel]:
        """Labels for items given their neighbours (one list per item, each non-empty)."""
        labels: list[PCFLabel | None] = [None] * len(items)
        asks: list[int] = []
        for index, (item, neighbours) in enumerate(zip(items, neighbour_lists, strict=True)):
            if not neighbours:
                raise ValueError(f"item {item.item_id!r}: no reference neighbours (is the reference index empty?)")
            best = max(n.similarity for n in neighbours)
            if self.llm is None:
                labels[index] = self.fallback(item, neighbours, "")
            elif best < self.similarity_threshold:
                labels[index] = self.fallback(
                    item, neighbours, f"low_similarity: best {best:.3f} < {self.similarity_threshold}"
                )
            else:
                asks.append(index)
        if asks:
            replies = self._ask([build_messages(items[i], neighbour_lists[i]) for i in asks])
            for index, reply in zip(asks, replies, strict=True):
                if isinstance(reply, Exception):
                    labels[index] = self.fallback(items[index], neighbour_lists[index], f"llm_error: {reply}")
                else:
                    labels[index] = self.from_answer(items[index], neighbour_lists[index], reply)
        return [label for label in labels if label is not None]


# ---------------------------------------------------------------------------------------- neighbour search


class MatrixNeighbours:
    """Exact cosine search over reference embeddings held in memory (evaluation folds, tests)."""

    def __init__(self, products: Sequence[ReferenceProduct], embeddings: np.ndarray) -> None:
        self.products = list(products)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)

    def search(
        self, queries: np.ndarray, k: int = DEFAULT_K, allowed: np.ndarray | None = None
    ) -> list[list[Neighbour]]:
        """Top-k neighbours per query row, among the ``allowed`` reference rows (a boolean mask) when given."""
        similarities = np.asarray(queries, dtype=np.float32) @ self.embeddings.T
        if allowed is not None:
            similarities = np.where(allowed[None, :], similarities, -np.inf)
        k = min(k, int(np.isfinite(similarities[0]).sum()) if len(similarities) else k)
        top = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
        return [[Neighbour(self.products[j], float(similarities[i, j])) for j in row] for i, row in enumerate(top)]


class StoreNeighbours:
    """Exact cosine search over the shared store's reference collection (the labelling job).

    The store's HNSW index is approximate: it missed true neighbours, so two identical runs gave different
    labels. A reference catalogue holds a few thousand rows, so its embeddings are read once and searched by
    brute force, one query at a time (a query's neighbours do not depend on its batch); ties go to the smaller id.
    """

    def __init__(self, store: Any, collection: str = REFERENCE_COLLECTION) -> None:
        self.store = store
        self.collection = collection
        self._exact: MatrixNeighbours | None = None

    def _matrix(self) -> MatrixNeighbours:
        """The reference products and their stored embeddings, sorted by id (read on first use)."""
        if self._exact is None:
            from agents.pcf.reference import product_from_metadata

            rows = sorted(self.store.get(self.collection, include_embeddings=True), key=lambda row: row["id"])
            if not rows:
                raise ValueError(f"reference collection {self.collection!r} is empty (index the references first)")
            products = [product_from_metadata(r["id"], r["metadata"] or {}, r["document"] or "") for r in rows]
            embeddings = np.stack([r["embedding"] for r in rows])
            embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)  # cosine, as Chroma
            self._exact = MatrixNeighbours(products, embeddings)
        return self._exact

    def search(self, queries: np.ndarray, k: int = DEFAULT_K) -> list[list[Neighbour]]:
        """Top-k reference neighbours per query embedding (exact; the same query always gets the same list)."""
        matrix = self._matrix()
        queries = np.asarray(queries, dtype=np.float32)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        return [matrix.search(queries[row : row + 1], k=k)[0] for row in range(len(queries))]


EmbedFn = Callable[[list[str]], np.ndarray]
