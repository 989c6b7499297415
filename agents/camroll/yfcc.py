"""The camroll paper's real Flickr rolls (YFCC100M) as camroll rolls: readers, conversion, ingest and answering.

Two layouts are read:

- the paper's website files, ``DIR/u{N}.json``: ``photos`` [{id, date, caption (the Flickr title), captionKii (a
  first-person description written by a VLM), eventId, license, ...}], ``events`` (the paper's own memory, kept
  only as a reference for diagnostics) and ``suggestedQs`` [{question, answer, explanation, trace}];
- the paper's release layout, ``DIR/u{N}/qa.json`` ({"semantic_qa": [{question, answer, detail_type}],
  "episodic_qa": [{question, answer, image_ref: [...], detail_type}]}), ``DIR/u{N}/photos.csv`` (Flickr
  metadata: an id column, ``datetaken``, ``latitude``/``longitude``, ``title``, ``tags``, ...) and
  ``DIR/u{N}/images/``.

Each user becomes a camroll user ``yfcc{N}`` (the prefix keeps these users apart from a demo roll's ``user1``
even in one shared store) in a roll folder written by :func:`write_roll`: ``photos.jsonl`` (the Flickr title is
the user's caption; dates from the roll; GPS only where the release has it), ``qa.jsonl`` (the questions, typed
``date`` or ``exact``) and ``captions/<id>.txt``, the VLM description of each photo. No image bytes exist
offline, so :class:`SidecarCaptions`, a visual back end, "sees" a photo by reading its caption file: the
captions stand in for the visual back end and flow through the unchanged ingest path (``CamrollMemory``: same
store, same nodes, per-user isolation). The paper's ``events`` are never an input.

Answers are scored by :func:`score_answer`: exact match after :func:`normalise_answer` (the stated normaliser),
the harness's typed match, and two lenient secondary metrics (contains-match and token F1).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.camroll.data import QA_FILE, QARecord, check_user_id, parse_timestamp, write_jsonl
from agents.camroll.errors import CamrollDataError

logger = logging.getLogger(__name__)

USER_PREFIX = "yfcc"
CAPTIONS_DIR = "captions"
IMAGES_DIR = "images"
MANIFEST = "yfcc.json"
WEBSITE_FILE = re.compile(r"^u(\d+)\.json$")
RELEASE_DIR = re.compile(r"^u(\d+)$")
PHOTO_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# photos.csv: the first column present of each group names that field (the release's own names first).
CSV_ID_COLUMNS = ("photo_id", "id", "photoid", "image_id", "filename", "file", "image")
CSV_DATE_COLUMNS = ("datetaken", "date_taken", "date", "timestamp")
CSV_CAPTION_COLUMNS = ("caption", "vlm_caption", "captionKii", "image_caption")
DEFAULT_ANSWERER = "query"  # the session's default answerer (agents.camroll.session.make_answerer); see answer_user
PAPER_TOKENS_PER_QUESTION = 3200  # the paper's agent, ~3.2k tokens per question (third-party summary, unverified)


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class YfccPhoto:
    """One Flickr photo: the user's title, the VLM description (``""`` when the layout has none), GPS if any."""

    photo_id: str
    timestamp: dt.datetime
    title: str = ""
    description: str = ""
    lat: float | None = None
    lon: float | None = None
    image: Path | None = None  # the JPEG (release layout only)
    event_id: str = ""  # the paper's event (website layout): reference only, never an ingest input
    license: str = ""


@dataclass(frozen=True)
class YfccQuestion:
    """One question with its reference answer; ``evidence`` are photo ids where the layout gives them."""

    qa_id: str
    question: str
    answer: str
    kind: str  # "suggested" (website), "semantic" or "episodic" (release)
    detail_type: str = ""
    evidence: tuple[str, ...] = ()
    explanation: str = ""


@dataclass(frozen=True)
class YfccEvent:
    """One of the paper's events (website layout): a reference for diagnostics, not an input."""

    event_id: str
    name: str
    date: str
    photo_ids: tuple[str, ...]


@dataclass
class YfccUser:
    """One user's photos (time order), questions and the paper's events, read from either layout."""

    number: int
    layout: str  # "website" or "release"
    source: Path
    photos: list[YfccPhoto]
    questions: list[YfccQuestion]
    events: list[YfccEvent] = field(default_factory=list)
    name: str = ""

    @property
    def user(self) -> str:
        """The camroll user id, ``yfcc{N}``."""
        return f"{USER_PREFIX}{self.number}"

    @property
    def question_date(self) -> dt.date:
        """The day the questions are asked: the day after the user's last photo."""
        return max(p.timestamp for p in self.photos).date() + dt.timedelta(days=1)


def camroll_user(value: str | int) -> str:
    """``3``, ``u3`` or ``yfcc3`` -> ``yfcc3`` (the camroll user id of a YFCC user)."""
    text = str(value).strip()
    match = re.fullmatch(rf"(?:{USER_PREFIX}|u)?(\d+)", text)
    if not match:
        raise CamrollDataError(f"user {value!r}: expected a YFCC user number such as 3, u3 or {USER_PREFIX}3")
    return check_user_id(f"{USER_PREFIX}{int(match[1])}")


# ---------------------------------------------------------------------------------------------- readers


def _text(row: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise CamrollDataError(
            f"{where}, field {key!r}: expected a {'non-empty ' if required else ''}string, got {value!r}"
        )
    return value


def _photo_id(value: Any, where: str, key: str) -> str:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not PHOTO_ID.match(text) or set(text) == {"."}:
        raise CamrollDataError(f"{where}, field {key!r}: photo id {value!r} must match [A-Za-z0-9_.-]{{1,64}}")
    return text


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CamrollDataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CamrollDataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CamrollDataError(f"{path}: cannot read ({exc})") from None


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise CamrollDataError(f"{where}: expected a JSON list, got {type(value).__name__}")
    return value


def _check_unique(photos: list[YfccPhoto], where: str) -> None:
    seen: set[str] = set()
    for photo in photos:
        if photo.photo_id in seen:
            raise CamrollDataError(f"{where}: photo id {photo.photo_id!r} occurs twice")
        seen.add(photo.photo_id)


def read_website_user(path: str | Path) -> YfccUser:
    """One ``u{N}.json`` of the paper's website; every error names the file and the field (``photos[12].date``)."""
    path = Path(path)
    match = WEBSITE_FILE.match(path.name)
    if not match:
        raise CamrollDataError(f"{path}: expected a file named u<N>.json")
    data = _load_json(path)
    if not isinstance(data, dict):
        raise CamrollDataError(f"{path}: expected a JSON object with photos, events and suggestedQs")
    photos = []
    for index, row in enumerate(_list(data.get("photos"), f"{path}, field 'photos'")):
        where = f"{path}, photos[{index}]"
        if not isinstance(row, dict):
            raise CamrollDataError(f"{where}: expected an object")
        photos.append(
            YfccPhoto(
                photo_id=_photo_id(row.get("id"), where, "id"),
                timestamp=parse_timestamp(row.get("date"), f"{where}, field 'date'"),
                title=_text(row, "caption", where).strip(),
                description=_text(row, "captionKii", where).strip(),
                event_id=_text(row, "eventId", where),
                license=_text(row, "license", where),
            )
        )
    if not photos:
        raise CamrollDataError(f"{path}, field 'photos': no photos")
    _check_unique(photos, f"{path}, field 'photos'")
    events = []
    for index, row in enumerate(_list(data.get("events", []), f"{path}, field 'events'")):
        where = f"{path}, events[{index}]"
        if not isinstance(row, dict):
            raise CamrollDataError(f"{where}: expected an object")
        ids = _list(row.get("photoIds", []), f"{where}, field 'photoIds'")
        events.append(
            YfccEvent(
                event_id=_text(row, "id", where, required=True),
                name=_text(row, "name", where),
                date=_text(row, "date", where),
                photo_ids=tuple(_photo_id(i, where, "photoIds") for i in ids),
            )
        )
    questions = []
    for index, row in enumerate(_list(data.get("suggestedQs", []), f"{path}, field 'suggestedQs'")):
        where = f"{path}, suggestedQs[{index}]"
        if not isinstance(row, dict):
            raise CamrollDataError(f"{where}: expected an object")
        questions.append(
            YfccQuestion(
                qa_id=f"u{match[1]}-s{index + 1}",
                question=_text(row, "question", where, required=True).strip(),
                answer=_text(row, "answer", where, required=True).strip(),
                kind="suggested",
                explanation=_text(row, "explanation", where),
            )
        )
    photos.sort(key=lambda p: (p.timestamp, p.photo_id))
    name = data.get("name") if isinstance(data.get("name"), str) else ""
    return YfccUser(int(match[1]), "website", path, photos, questions, events, name=name)


def _column(header: Sequence[str], options: Sequence[str]) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    return next((lowered[o.lower()] for o in options if o.lower() in lowered), None)


def _coordinate(value: str, where: str, low: float, high: float) -> float | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise CamrollDataError(f"{where}: expected a number in [{low}, {high}] or empty, got {value!r}") from None
    if not low <= number <= high:
        raise CamrollDataError(f"{where}: {number} is outside [{low}, {high}]")
    return number


def _release_photos(folder: Path) -> list[YfccPhoto]:
    path = folder / "photos.csv"
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise CamrollDataError(f"{path}: file not found") from None
    images = folder / IMAGES_DIR
    by_stem = {p.stem: p for p in images.iterdir() if p.is_file()} if images.is_dir() else {}
    photos = []
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        id_column, date_column = _column(header, CSV_ID_COLUMNS), _column(header, CSV_DATE_COLUMNS)
        if id_column is None or date_column is None:
            missing = "an id column (" + "/".join(CSV_ID_COLUMNS) + ")" if id_column is None else ""
            missing += (" and " if missing else "") + ("datetaken" if date_column is None else "")
            raise CamrollDataError(f"{path}:1: header {header!r} lacks {missing}")
        lat_column, lon_column = _column(header, ("latitude", "lat")), _column(header, ("longitude", "lon"))
        title_column, tags_column = _column(header, ("title",)), _column(header, ("tags", "usertags"))
        caption_column = _column(header, CSV_CAPTION_COLUMNS)
        for row in reader:
            where = f"{path}:{reader.line_num}"
            raw_id = (row.get(id_column) or "").strip()
            photo_id = _photo_id(Path(raw_id).stem if raw_id else raw_id, where, id_column)
            lat = (
                _coordinate(row.get(lat_column) or "", f"{where}, field {lat_column!r}", -90, 90)
                if lat_column
                else None
            )
            lon = (
                _coordinate(row.get(lon_column) or "", f"{where}, field {lon_column!r}", -180, 180)
                if lon_column
                else None
            )
            if (lat is None) != (lon is None) or (lat == 0.0 and lon == 0.0):  # Flickr writes 0,0 for "no GPS"
                lat = lon = None
            title = (row.get(title_column) or "").strip() if title_column else ""
            tags = (row.get(tags_column) or "").strip() if tags_column else ""
            if tags:
                title = f"{title} (tags: {tags})" if title else f"tags: {tags}"
            photos.append(
                YfccPhoto(
                    photo_id=photo_id,
                    timestamp=parse_timestamp(row.get(date_column), f"{where}, field {date_column!r}"),
                    title=title[:1000],
                    description=(row.get(caption_column) or "").strip() if caption_column else "",
                    lat=lat,
                    lon=lon,
                    image=by_stem.get(photo_id),
                )
            )
    if not photos:
        raise CamrollDataError(f"{path}: no photos")
    _check_unique(photos, str(path))
    return sorted(photos, key=lambda p: (p.timestamp, p.photo_id))


def read_release_user(folder: str | Path) -> YfccUser:
    """One ``u{N}/`` folder of the paper's release (qa.json, photos.csv, images/); errors name file, line, field."""
    folder = Path(folder)
    match = RELEASE_DIR.match(folder.name)
    if not match or not folder.is_dir():
        raise CamrollDataError(f"{folder}: expected a folder named u<N> holding qa.json and photos.csv")
    photos = _release_photos(folder)
    known = {p.photo_id for p in photos}
    path = folder / "qa.json"
    data = _load_json(path)
    if not isinstance(data, dict) or not ({"semantic_qa", "episodic_qa"} & set(data)):
        raise CamrollDataError(f"{path}: expected an object with 'semantic_qa' and/or 'episodic_qa' lists")
    questions = []
    for kind in ("semantic", "episodic"):
        for index, row in enumerate(_list(data.get(f"{kind}_qa", []), f"{path}, field '{kind}_qa'")):
            where = f"{path}, {kind}_qa[{index}]"
            if not isinstance(row, dict):
                raise CamrollDataError(f"{where}: expected an object")
            answer = row.get("answer")
            if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                answer = str(answer)
            refs = []
            for ref in _list(row.get("image_ref", []), f"{where}, field 'image_ref'"):
                photo_id = _photo_id(Path(str(ref)).stem, where, "image_ref")
                if photo_id not in known:
                    raise CamrollDataError(f"{where}, field 'image_ref': {ref!r} is not a photo of photos.csv")
                refs.append(photo_id)
            questions.append(
                YfccQuestion(
                    qa_id=f"u{match[1]}-{kind[0]}{index + 1}",
                    question=_text(row, "question", where, required=True).strip(),
                    answer=_text({"answer": answer}, "answer", where, required=True).strip(),
                    kind=kind,
                    detail_type=str(row.get("detail_type") or ""),
                    evidence=tuple(refs),
                )
            )
    return YfccUser(int(match[1]), "release", folder, photos, questions)


def detect_layout(root: str | Path) -> str:
    """``website`` (u{N}.json files) or ``release`` (u{N}/ folders with qa.json)."""
    root = Path(root)
    if not root.is_dir():
        raise CamrollDataError(f"{root}: YFCC data folder not found")
    if any(WEBSITE_FILE.match(p.name) for p in root.iterdir() if p.is_file()):
        return "website"
    if any(RELEASE_DIR.match(p.name) and (p / "qa.json").is_file() for p in root.iterdir() if p.is_dir()):
        return "release"
    raise CamrollDataError(f"{root}: neither u<N>.json files (website layout) nor u<N>/qa.json folders (release)")


def read_users(root: str | Path, users: Iterable[str | int] | None = None) -> list[YfccUser]:
    """Every user (or the chosen ones) of a YFCC folder in either layout, in user-number order."""
    root = Path(root)
    layout = detect_layout(root)
    pattern = WEBSITE_FILE if layout == "website" else RELEASE_DIR
    found = {int(m[1]): p for p in root.iterdir() if (m := pattern.match(p.name))}
    wanted = sorted(found) if users is None else [int(camroll_user(u).removeprefix(USER_PREFIX)) for u in users]
    missing = [n for n in wanted if n not in found]
    if missing:
        raise CamrollDataError(f"{root}: no user(s) {missing} (found {sorted(found)})")
    reader = read_website_user if layout == "website" else read_release_user
    return [reader(found[n]) for n in wanted]


# ------------------------------------------------------------------------------------------- conversion


DATE_ONLY = re.compile(
    r"^(?:on )?(?:(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday),? )?"
    r"(?:[a-z]+ \d{1,2}(?:st|nd|rd|th)?,? \d{4}|\d{1,2}(?:st|nd|rd|th)? [a-z]+,? \d{4}|\d{4}-\d{2}-\d{2})\.?$"
)


def answer_type_of(answer: str) -> tuple[str, str]:
    """(``date``, ISO day) when the reference answer is a single date, else (``exact``, the answer)."""
    from agents.camroll.qa import find_dates

    dates = find_dates(answer)
    if len(dates) == 1 and DATE_ONLY.match(answer.strip().lower()):
        return "date", dates[0].isoformat()
    return "exact", answer


def qa_record(user: YfccUser, question: YfccQuestion) -> QARecord:
    """The camroll QA record of a YFCC question (asked the day after the last photo)."""
    answer_type, answer = answer_type_of(question.answer)
    return QARecord(
        qa_id=question.qa_id,
        question=question.question,
        answer=answer,
        answer_type=answer_type,
        question_type="temporal" if answer_type == "date" else "factual",
        evidence=question.evidence,
        question_date=user.question_date,
    )


def _write_if_changed(path: Path, text: str) -> None:
    """Write text unless the file already holds it (an unchanged mtime keeps the visual cache valid)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_roll(users: Sequence[YfccUser], root: str | Path, progress: bool = True) -> Path:
    """Write the users as a camroll roll under ``root`` (``user<yfccN>/``); idempotent, the events left out."""
    root = Path(root)
    for user in tqdm(users, desc="write roll", unit="user", disable=not progress):
        folder = root / f"user{user.user}"
        (folder / CAPTIONS_DIR).mkdir(parents=True, exist_ok=True)
        rows = []
        for photo in user.photos:
            sidecar = f"{CAPTIONS_DIR}/{photo.photo_id}.txt"
            if photo.description or photo.image is None:  # an empty caption file: a photo the VLM said nothing of
                _write_if_changed(folder / sidecar, photo.description + "\n" if photo.description else "")
            if photo.image is not None:
                (folder / IMAGES_DIR).mkdir(exist_ok=True)
                target = folder / IMAGES_DIR / photo.image.name
                if not target.is_file() or target.stat().st_size != photo.image.stat().st_size:
                    shutil.copyfile(photo.image, target)
                file = f"{IMAGES_DIR}/{photo.image.name}"
            else:
                file = sidecar  # no image bytes: the caption file stands in for the photo
            row: dict[str, Any] = {
                "photo_id": photo.photo_id,
                "file": file,
                "timestamp": photo.timestamp.isoformat(timespec="seconds"),
                "lat": photo.lat,
                "lon": photo.lon,
            }
            if photo.title:
                row["caption"] = photo.title[:2000]
            rows.append(row)
        write_jsonl(folder / "photos.jsonl", rows)
        write_jsonl(folder / QA_FILE, (qa_record(user, q).to_json() for q in user.questions))
    manifest = {
        "source": "camroll YFCC timelines (thaoshibe/camroll)",
        "layouts": sorted({u.layout for u in users}),
        "users": {
            u.user: {"source": str(u.source), "photos": len(u.photos), "questions": len(u.questions)} for u in users
        },
        "captions": f"{CAPTIONS_DIR}/<photo id>.txt: the VLM description (captionKii); events are not written",
    }
    from core.io import atomic_write_json

    previous = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).is_file() else {}
    manifest["users"] = {**previous.get("users", {}), **manifest["users"]}
    manifest["layouts"] = sorted(set(previous.get("layouts", [])) | set(manifest["layouts"]))
    atomic_write_json(root / MANIFEST, manifest)
    return root


class SidecarCaptions:
    """A visual back end that "sees" a photo by reading its caption file, ``<user folder>/captions/<stem>.txt``.

    Stands in for a VLM captioner (``VLMCaptions``) when only the captions exist: the caption lands whole in the
    photo's and its event's "Seen:" text, as a VLM caption would. A photo without a caption file gets no label.
    """

    name = "yfcc-caption-files"

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        """[caption] per path ([] without a caption file)."""
        labels = []
        for path in paths:
            path = Path(path)
            sidecar = (
                path if path.parent.name == CAPTIONS_DIR else path.parent.parent / CAPTIONS_DIR / f"{path.stem}.txt"
            )
            try:
                text = " ".join(sidecar.read_text(encoding="utf-8").split()).rstrip(" .")
            except (FileNotFoundError, UnicodeDecodeError):
                text = ""
            labels.append([text] if text else [])
        return labels


def default_yfcc_dir() -> Path:
    """Where the converted roll, the store and the caches live: ``<camroll cache>/yfcc``."""
    from agents.camroll.memory import default_cache_dir

    return default_cache_dir() / "yfcc"


def open_memory(store: Any, roll: str | Path, embedder: Any = None, cache_dir: str | Path | None = None) -> Any:
    """A ``CamrollMemory`` on the converted roll whose visual back end reads the caption files."""
    from agents.camroll.memory import CamrollMemory

    cache = Path(cache_dir) if cache_dir is not None else Path(roll).parent / "cache"
    return CamrollMemory(store, roll, embedder=embedder, visual=SidecarCaptions(), cache_dir=cache)


# -------------------------------------------------------------------------------------------- scoring

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")  # fmt: skip
_MONTH_RE = "|".join([*_MONTHS, *(m[:3] for m in _MONTHS), "sept"])
_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)  # fmt: skip
_ARTICLES = {"a", "an", "the"}


def _month(name: str) -> int:
    return next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(name[:3]))


def _iso(year: str, month: int, day: str) -> str:
    try:
        return dt.date(int(year), month, int(day)).isoformat()
    except ValueError:
        return f"{year} {month} {day}"


def normalise_answer(text: Any) -> str:
    """The stated normaliser: dates to ISO, number words to digits, lower case, no punctuation or articles.

    Dates: ``November 18, 2007``, ``Nov 18th 2007``, ``18 November 2007``, ``2007-11-18`` and US ``11/18/2007``
    all become ``2007 11 18`` (weekday names before a date are dropped). Numbers: ``zero``..``twenty`` become
    digits, ``1,000`` becomes ``1000``. Then lower case, every character other than a-z and 0-9 a space, the
    articles a/an/the dropped, single spaces.
    """
    lowered = str(text).lower()
    weekday = r"(?:(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday),?\s+)?"
    lowered = re.sub(
        rf"\b{weekday}({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b",
        lambda m: _iso(m[3], _month(m[1]), m[2]),
        lowered,
    )
    lowered = re.sub(
        rf"\b{weekday}(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\.?,?\s+(\d{{4}})\b",
        lambda m: _iso(m[3], _month(m[2]), m[1]),
        lowered,
    )
    lowered = re.sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", lambda m: _iso(m[3], int(m[1]), m[2]), lowered)
    lowered = re.sub(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b", lambda m: _iso(m[1], int(m[2]), m[3]), lowered)
    lowered = re.sub(r"(?<=\d),(?=\d{3}\b)", "", lowered)
    words = re.sub(r"[^a-z0-9]+", " ", lowered).split()
    words = [str(_NUMBER_WORDS.index(w)) if w in _NUMBER_WORDS else w for w in words]
    return " ".join(w for w in words if w not in _ARTICLES)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between the normalised prediction and reference (a lenient, secondary metric)."""
    pred, gold = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def score_answer(record: QARecord, reference: str, prediction: str) -> dict[str, Any]:
    """exact (after ``normalise_answer``), typed (the camroll harness's matcher), contains, token F1."""
    from agents.camroll.qa import DECLINED, is_correct

    if str(prediction or "").startswith(DECLINED):  # a declined answer scores nothing, whatever it offers
        prediction = ""
    pred, gold = normalise_answer(prediction), normalise_answer(reference)
    return {
        "exact": bool(gold) and pred == gold,
        "typed": bool(is_correct(record, prediction)),
        "contains": bool(gold) and f" {gold} " in f" {pred} ",
        "token_f1": round(token_f1(prediction, reference), 4),
        "prediction_words": len(pred.split()),
    }


# ------------------------------------------------------------------------------------------- answering

AnswererFactory = Callable[[str], Any]


def answerer_factory(
    kind: str = DEFAULT_ANSWERER, model_spec: str | None = None, model: Any = None, reader: str | None = "sentence"
) -> AnswererFactory:
    """A function user -> answerer: ``kind`` as the session names it (default: the session's default answerer).

    ``model`` (a loaded ChatModel, e.g. a scripted one in tests) makes an LLM answerer named ``kind`` on it; an
    ``llm``/``endpoint`` kind without one loads ``model_spec`` once, not once per user. ``reader``: the query
    answerer's caption reader (``sentence``, ``llm``, ``endpoint`` or ``none``); an LLM reader's model is
    ``model`` or ``model_spec``, loaded once.
    """
    from agents.camroll.answerers import LLMAnswerer
    from agents.camroll.session import ENDPOINT_LOOP, make_answerer, reader_model

    if kind == "query":  # one reader (and its model) for every user and question
        from agents.camroll.answerers import QueryAnswerer
        from agents.camroll.reader import make_reader

        chat = model if model is not None else reader_model(reader, model_spec)
        shared = make_reader(reader, chat)
        return lambda user: QueryAnswerer(user, reader=shared)

    if model is None and kind in ("llm", "endpoint"):
        model = make_answerer(kind, model_spec, "0").model
    if model is not None:
        loop = ENDPOINT_LOOP if kind == "endpoint" else {}
        return lambda user: LLMAnswerer(model, user, name=kind, constrained=kind == "llm", **loop)
    return lambda user: make_answerer(kind, model_spec, user)


def answer_user(
    memory: Any,
    user: YfccUser,
    factory: AnswererFactory | None = None,
    systems: Sequence[str] = ("hierarchical", "flat_rag", "long_context"),
    rag_k: int = 20,
    context_tokens: int = 8000,
    judge_model: Any = None,
) -> list[dict[str, Any]]:
    """Answer one ingested user's questions with each system; one scored row per (question, system).

    ``hierarchical`` is the camroll agent (``ask`` over the LangGraph graph and the full tool set); ``flat_rag``
    and ``long_context`` are the harness's baselines (the same answerer over a retrieved pool of photo summaries,
    or one prompt holding it when the answerer is an LLM). Tokens: the model's usage for an LLM, else the
    approximate tokens of the tool results read (the harness's count).
    """
    from agents.camroll.answerers import approx_tokens
    from agents.camroll.graph import ask, build_graph
    from agents.camroll.qa import flat_rag_pool, judge, llm_direct_answer, long_context_pool, pooled_tools
    from agents.camroll.tools import CamrollTools

    factory = factory or answerer_factory()
    name = user.user
    tools = CamrollTools(memory, name)
    photos = memory.store.get(memory.collection, where={"$and": [{"user": name}, {"level": "photo"}]})
    rows = []
    for question in user.questions:
        record = qa_record(user, question)
        for system in systems:
            answerer = factory(name)
            model = getattr(answerer, "model", None)
            before = model.usage.total_tokens if model is not None and hasattr(model, "usage") else None
            started = time.perf_counter()
            if system == "hierarchical":
                result = ask(build_graph(tools, answerer), record.question, record.question_date)
                answer, cited, tokens = result["answer"], result["cited"], result["context_tokens"]
            elif system in ("flat_rag", "long_context"):
                if system == "flat_rag":
                    pool = flat_rag_pool(memory, name, record.question, rag_k)
                    tokens = sum(approx_tokens(i["document"]) + 4 for i in pool)
                else:
                    pool, tokens = long_context_pool(photos, record.question_date, context_tokens)
                if model is None:
                    pooled = pooled_tools(CamrollTools, memory, name, pool)
                    result = ask(build_graph(pooled, answerer), record.question, record.question_date)
                    answer, cited = result["answer"], result["cited"]
                else:
                    answer, cited = llm_direct_answer(model, record.question, record.question_date, pool)
            else:
                raise CamrollDataError(f"system {system!r}: use hierarchical, flat_rag or long_context")
            seconds = time.perf_counter() - started
            if before is not None:
                tokens = model.usage.total_tokens - before
            row = {
                "user": name,
                "qa_id": question.qa_id,
                "kind": question.kind,
                "system": system,
                "answerer": getattr(answerer, "name", type(answerer).__name__),
                "question": question.question,
                "reference": question.answer,
                "answer_type": record.answer_type,
                "prediction": answer,
                **score_answer(record, question.answer, answer),
                "evidence_day_hit": evidence_day_hit(question, cited, memory, name),
                "cited": cited[:12],
                "seconds": round(seconds, 4),
                "tokens": int(tokens),
            }
            if judge_model is not None:
                row["judge"] = judge(judge_model, record, answer)
            rows.append(row)
    return rows


def evidence_day_hit(question: YfccQuestion, cited: list[str], memory: Any, user: str) -> bool | None:
    """Whether a cited photo was taken on a day that the reference's explanation names (None if it names none).

    A retrieval diagnostic that needs no image ids: the website's questions give only a prose explanation.
    """
    from agents.camroll.qa import find_dates

    days = {d.isoformat() for d in find_dates(question.explanation)}
    if not days:
        return None
    if not cited:
        return False
    found = memory.store.get(memory.collection, ids=[c for c in cited if c.startswith(f"user{user}/photo/")])
    return any((item.get("metadata") or {}).get("date") in days for item in found)


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per system: n, exact / typed / contains / token F1 / judge, evidence-day hits, tokens and latency."""
    summary: dict[str, dict[str, Any]] = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        seconds = [r["seconds"] for r in mine]
        hits = [float(r["evidence_day_hit"]) for r in mine if r["evidence_day_hit"] is not None]
        judged = [float(r["judge"]) for r in mine if r.get("judge") is not None]
        summary[system] = {
            "n": len(mine),
            "exact": _mean([float(r["exact"]) for r in mine]),
            "typed": _mean([float(r["typed"]) for r in mine]),
            "contains": _mean([float(r["contains"]) for r in mine]),
            "token_f1": _mean([r["token_f1"] for r in mine]),
            "judge": _mean(judged) if any("judge" in r for r in mine) else None,
            "evidence_day_hit": _mean(hits),
            "n_with_evidence_day": len(hits),
            "tokens_per_question": round(float(np.mean([r["tokens"] for r in mine])), 1),
            "latency_p50_s": round(float(np.percentile(seconds, 50)), 4),
            "latency_p95_s": round(float(np.percentile(seconds, 95)), 4),
        }
    return summary


def event_agreement(memory: Any, user: YfccUser) -> dict[str, Any]:
    """Diagnostic only: how our time-clustered events compare with the paper's events (adjusted Rand index)."""
    from sklearn.metrics import adjusted_rand_score

    if not user.events:
        return {"paper_events": 0}
    items = memory.store.get(memory.collection, where={"$and": [{"user": user.user}, {"level": "photo"}]})
    ours = {i["id"].rsplit("/", 1)[-1]: (i.get("metadata") or {}).get("event", "") for i in items}
    theirs = {pid: event.event_id for event in user.events for pid in event.photo_ids}
    common = sorted(set(ours) & set(theirs))
    return {
        "paper_events": len(user.events),
        "our_events": len(set(ours.values())),
        "photos_compared": len(common),
        "adjusted_rand_index": round(float(adjusted_rand_score([theirs[p] for p in common],
                                                                [ours[p] for p in common])), 4) if common else None,
    }  # fmt: skip


def ingest_users(memory: Any, users: Sequence[YfccUser], progress: bool = True) -> list[dict[str, Any]]:
    """Ingest each user through ``CamrollMemory.ingest`` (incremental: an unchanged user writes nothing)."""
    return [memory.ingest(u.user, progress=progress) for u in users]


def markdown_table(summary: dict[str, dict[str, Any]], answerer: str) -> str:
    """One row per system, with the paper's tokens per question beside ours."""
    head = ["answerer", "system", "n", "exact", "typed", "contains*", "token F1*", "judge", "evidence day",
            "tokens/q (paper ~3.2k)", "p50 s", "p95 s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    for system, s in summary.items():
        cells = [answerer, system, str(s["n"]), cell(s["exact"]), cell(s["typed"]), cell(s["contains"]),
                 cell(s["token_f1"]), cell(s["judge"]),
                 f"{cell(s['evidence_day_hit'])} (of {s['n_with_evidence_day']})", f"{s['tokens_per_question']:.0f}",
                 cell(s["latency_p50_s"]), cell(s["latency_p95_s"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate(
    data: str | Path,
    store: Any,
    roll: str | Path,
    users: Iterable[str | int] | None = None,
    embedder: Any = None,
    factory: AnswererFactory | None = None,
    answerer: str = DEFAULT_ANSWERER,
    systems: Sequence[str] = ("hierarchical", "flat_rag", "long_context"),
    judge_model: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """Read, convert, ingest and answer: the per-question rows, the summary per system, ingest and diagnostics.

    ``time_budget_s``: no further user is started once this many seconds have passed (the users left are listed
    in ``users_not_run``; the ingest is incremental, so a later run picks them up without redoing the others).
    """
    started = time.perf_counter()
    read = read_users(data, users)
    write_roll(read, roll, progress=progress)
    memory = open_memory(store, roll, embedder=embedder, cache_dir=cache_dir)
    factory = factory or answerer_factory(answerer)
    rows: list[dict[str, Any]] = []
    ingests, diagnostics, done = [], {}, []
    for user in tqdm(read, desc="users", unit="user", disable=not progress):
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            logger.warning("time budget of %.0f s spent: %s not run", time_budget_s, user.user)
            continue
        done.append(user)
        logger.info("ingesting %s (%d photos)", user.user, len(user.photos))
        ingests.append(memory.ingest(user.user, progress=progress))
        rows.extend(answer_user(memory, user, factory, systems=systems, judge_model=judge_model))
        diagnostics[user.user] = event_agreement(memory, user)
    return {
        "protocol": "camroll_yfcc",
        "data": str(data),
        "layout": read[0].layout if read else None,
        "users": [u.user for u in done],
        "users_not_run": [u.user for u in read if u.user not in {d.user for d in done}],
        "answerer": answerer,
        "n_questions": len(rows) // max(1, len(systems)),
        "normaliser": normalise_answer.__doc__,
        "metrics": {
            "exact": "normalise_answer(prediction) == normalise_answer(reference)",
            "typed": "agents.camroll.qa.is_correct: a date answer's first date; else the reference phrase in an "
            "answer at most 8 words longer",
            "contains": "secondary, lenient: the normalised reference occurs in the normalised prediction (any length)",
            "token_f1": "secondary, lenient: SQuAD token F1 after the normaliser",
            "evidence_day_hit": "diagnostic: a cited photo is on a day the reference explanation names",
            "tokens": "approx_tokens of the tool results read (planner); the model's usage (LLM)",
        },
        "ingest": {
            "photos": sum(i["photos"] for i in ingests),
            "seconds": round(sum(i["seconds"] for i in ingests), 2),
            "per_user": ingests,
        },
        "event_agreement": diagnostics,
        "summary": summarise_rows(rows),
        "rows": rows,
    }
