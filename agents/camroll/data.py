"""The camroll on-disk format: validated readers, EXIF reading, and the import of a bare photo folder.

A camera roll is a folder with one sub-folder per user::

    ROOT/
      user12/
        photos/000341.jpg ...      the pictures (any format Pillow reads)
        photos.jsonl               one JSON object per photo (see PhotoRecord)
        qa.jsonl                   optional: one JSON object per question (see QARecord)
        places.json                optional: the user's named places [{"name", "lat", "lon", "radius_km"}]

Ids are stable strings: the photo id is local to the user (``"000341"``); the global id that the memory and the
tools use is ``"user12/photo/000341"``. Every reader error names the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agents.camroll.errors import CamrollDataError
from core.io import iter_jsonl

logger = logging.getLogger(__name__)

PHOTOS_DIR = "photos"
PHOTOS_FILE = "photos.jsonl"
QA_FILE = "qa.jsonl"
PLACES_FILE = "places.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
ANSWER_TYPES = ("exact", "numeric", "date", "set", "open", "yesno")
QUESTION_TYPES = ("factual", "temporal", "counting", "place", "recommendation")
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LOCAL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# EXIF tags (TIFF/EXIF 2.3 numbering).
TAG_DESCRIPTION, TAG_MAKE, TAG_MODEL, TAG_ORIENTATION, TAG_DATETIME = 270, 271, 272, 274, 306
TAG_EXIF_IFD, TAG_GPS_IFD = 0x8769, 0x8825
TAG_DATETIME_ORIGINAL = 36867
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PhotoRecord:
    """One photo of one user: ``file`` is relative to the user folder and must stay inside it."""

    photo_id: str
    file: str
    timestamp: dt.datetime  # local wall-clock time, naive
    lat: float | None = None
    lon: float | None = None
    device: str = ""
    caption: str = ""
    orientation: int = 1

    def to_json(self) -> dict[str, Any]:
        """The photos.jsonl line for this record."""
        row: dict[str, Any] = {
            "photo_id": self.photo_id,
            "file": self.file,
            "timestamp": self.timestamp.isoformat(timespec="seconds"),
            "lat": self.lat,
            "lon": self.lon,
            "device": self.device,
        }
        if self.caption:
            row["caption"] = self.caption
        if self.orientation != 1:
            row["orientation"] = self.orientation
        return row


@dataclass(frozen=True)
class QARecord:
    """One question with its checkable answer and the photos that support it."""

    qa_id: str
    question: str
    answer: Any  # str for exact/date/open, number for numeric, list[str] for set
    answer_type: str
    question_type: str
    evidence: tuple[str, ...]
    question_date: dt.date
    forbidden: tuple[str, ...] = ()  # open answers: what must not be recommended (already photographed)
    candidates: tuple[str, ...] = ()  # open answers: the valid vocabulary a recommendation must come from

    def to_json(self) -> dict[str, Any]:
        """The qa.jsonl line for this record."""
        row = dataclasses.asdict(self)
        row["evidence"] = list(self.evidence)
        row["question_date"] = self.question_date.isoformat()
        row["forbidden"] = list(self.forbidden)
        row["candidates"] = list(self.candidates)
        return row


@dataclass(frozen=True)
class Place:
    """A named place of the user (e.g. "Home", "Riverside Park"): a centre and a radius."""

    name: str
    lat: float
    lon: float
    radius_km: float = 0.5


# --------------------------------------------------------------------------------------------- helpers


def check_user_id(user: str | int) -> str:
    """The user id as a string, refusing anything that could name another folder (``..``, slashes)."""
    user = str(user)
    if not USER_ID.match(user):
        raise CamrollDataError(f"user id {user!r}: use 1-64 characters from [A-Za-z0-9_-]")
    return user


def user_dir(root: str | Path, user: str | int) -> Path:
    """``ROOT/user<id>`` (the id is validated first)."""
    return Path(root) / f"user{check_user_id(user)}"


def list_users(root: str | Path) -> list[str]:
    """The user ids of a camera roll (folders ``user<id>`` holding a photos.jsonl), numeric ids in number order."""
    root = Path(root)
    if not root.is_dir():
        raise CamrollDataError(f"{root}: camera roll folder not found")
    users = [
        p.name[4:] for p in root.iterdir() if p.is_dir() and p.name.startswith("user") and (p / PHOTOS_FILE).is_file()
    ]
    return sorted(users, key=lambda u: (0, int(u), u) if u.isdigit() else (1, 0, u))


def resolve_inside(base: Path, relative: str) -> Path:
    """``base / relative`` resolved, refusing absolute paths and anything that leaves ``base`` (``..``, links)."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute() or "\x00" in relative:
        raise CamrollDataError(f"path {relative!r}: must be a non-empty path relative to {base}")
    base = base.resolve()
    path = (base / relative).resolve()
    if path != base and base not in path.parents:
        raise CamrollDataError(f"path {relative!r} leaves the user folder {base}; refused")
    return path


def parse_timestamp(value: Any, where: str) -> dt.datetime:
    """An ISO-8601 (``2023-07-14T13:05:00``) or EXIF (``2023:07:14 13:05:00``) time as a naive datetime."""
    if not isinstance(value, str) or not value.strip():
        raise CamrollDataError(f"{where}: expected a timestamp string like 2023-07-14T13:05:00, got {value!r}")
    text = value.strip().replace("\x00", "")
    exif = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if exif:
        text = "{}-{}-{}T{}:{}:{}".format(*exif.groups())
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise CamrollDataError(f"{where}: not a valid timestamp {value!r} ({exc})") from exc
    return stamp.replace(tzinfo=None) if stamp.tzinfo is not None else stamp


def _number(value: Any, where: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise CamrollDataError(f"{where}: expected a number in [{low}, {high}] or null, got {value!r}")
    return float(value)


def _string(row: dict[str, Any], key: str, where: str, required: bool = True, max_len: int = 2000) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise CamrollDataError(f"{where}, field {key!r}: expected a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise CamrollDataError(f"{where}, field {key!r}: longer than {max_len} characters")
    return value


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line, or CamrollDataError naming file and line."""
    return iter_jsonl(path, error=CamrollDataError)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- readers


def read_photos(folder: str | Path, check_files: bool = True) -> list[PhotoRecord]:
    """The photos of one user folder, sorted by (timestamp, photo id); every error names file, line and field."""
    folder = Path(folder)
    path = folder / PHOTOS_FILE
    photos: list[PhotoRecord] = []
    seen: dict[str, int] = {}
    for number, row in _read_jsonl(path):
        where = f"{path}:{number}"
        photo_id = _string(row, "photo_id", where, max_len=64)
        if not LOCAL_ID.match(photo_id) or set(photo_id) == {"."}:
            raise CamrollDataError(f"{where}, field 'photo_id': {photo_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if photo_id in seen:
            raise CamrollDataError(f"{where}, field 'photo_id': {photo_id!r} repeats line {seen[photo_id]}")
        seen[photo_id] = number
        file = _string(row, "file", where, max_len=500)
        try:
            resolved = resolve_inside(folder, file)
        except CamrollDataError as exc:
            raise CamrollDataError(f"{where}, field 'file': {exc}") from None
        if check_files and not resolved.is_file():
            raise CamrollDataError(f"{where}, field 'file': {resolved} does not exist")
        lat = _number(row.get("lat"), f"{where}, field 'lat'", -90, 90)
        lon = _number(row.get("lon"), f"{where}, field 'lon'", -180, 180)
        if (lat is None) != (lon is None):
            raise CamrollDataError(f"{where}, fields 'lat'/'lon': give both or neither")
        orientation = row.get("orientation", 1)
        if not isinstance(orientation, int) or isinstance(orientation, bool) or not 1 <= orientation <= 8:
            raise CamrollDataError(f"{where}, field 'orientation': expected an int 1-8, got {orientation!r}")
        photos.append(
            PhotoRecord(
                photo_id=photo_id,
                file=file,
                timestamp=parse_timestamp(row.get("timestamp"), f"{where}, field 'timestamp'"),
                lat=lat,
                lon=lon,
                device=_string(row, "device", where, required=False, max_len=200),
                caption=_string(row, "caption", where, required=False),
                orientation=orientation,
            )
        )
    photos.sort(key=lambda p: (p.timestamp, p.photo_id))
    return photos


def read_qa(folder: str | Path) -> list[QARecord]:
    """The QA set of one user folder (``qa.jsonl``); every error names file, line and field."""
    path = Path(folder) / QA_FILE
    records = []
    for number, row in _read_jsonl(path):
        where = f"{path}:{number}"
        answer_type = _string(row, "answer_type", where)
        if answer_type not in ANSWER_TYPES:
            raise CamrollDataError(f"{where}, field 'answer_type': {answer_type!r} is not one of {ANSWER_TYPES}")
        question_type = row.get("question_type") or "factual"
        if question_type not in QUESTION_TYPES:
            raise CamrollDataError(f"{where}, field 'question_type': {question_type!r} is not one of {QUESTION_TYPES}")
        answer = row.get("answer")
        if answer_type == "numeric" and (isinstance(answer, bool) or not isinstance(answer, (int, float))):
            raise CamrollDataError(f"{where}, field 'answer': a numeric answer must be a number, got {answer!r}")
        if answer_type == "set" and not (isinstance(answer, list) and all(isinstance(a, str) for a in answer)):
            raise CamrollDataError(f"{where}, field 'answer': a set answer must be a list of strings")
        if answer_type in ("exact", "date", "open") and not isinstance(answer, str):
            raise CamrollDataError(f"{where}, field 'answer': a {answer_type} answer must be a string")
        lists = {}
        for key in ("evidence", "forbidden", "candidates"):
            value = row.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CamrollDataError(f"{where}, field {key!r}: expected a list of strings")
            lists[key] = tuple(value)
        question_date = row.get("question_date")
        try:
            day = dt.date.fromisoformat(question_date) if isinstance(question_date, str) else None
        except ValueError:
            day = None
        if day is None:
            raise CamrollDataError(f"{where}, field 'question_date': expected YYYY-MM-DD, got {question_date!r}")
        records.append(
            QARecord(
                qa_id=str(row.get("qa_id") or f"q{number:04d}"),
                question=_string(row, "question", where),
                answer=answer,
                answer_type=answer_type,
                question_type=question_type,
                evidence=lists["evidence"],
                question_date=day,
                forbidden=lists["forbidden"],
                candidates=lists["candidates"],
            )
        )
    return records


def read_places(folder: str | Path) -> list[Place]:
    """The user's named places (``places.json``, optional: an absent file gives [])."""
    path = Path(folder) / PLACES_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CamrollDataError(f"{path}: cannot read places ({exc})") from exc
    if not isinstance(rows, list):
        raise CamrollDataError(f"{path}: expected a JSON list of places")
    places = []
    for index, row in enumerate(rows):
        where = f"{path}: entry {index}"
        if not isinstance(row, dict):
            raise CamrollDataError(f"{where}: expected an object")
        lat = _number(row.get("lat"), f"{where}, field 'lat'", -90, 90)
        lon = _number(row.get("lon"), f"{where}, field 'lon'", -180, 180)
        radius = _number(row.get("radius_km", 0.5), f"{where}, field 'radius_km'", 0.001, 1000)
        if lat is None or lon is None:
            raise CamrollDataError(f"{where}, fields 'lat'/'lon': required")
        places.append(Place(_string(row, "name", where, max_len=200), lat, lon, radius or 0.5))
    return places


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSON lines atomically (a temporary file renamed over the target)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ EXIF


@dataclass
class ExifInfo:
    """What ingest reads from a photo's EXIF; ``issues`` lists what was missing or broken."""

    timestamp: dt.datetime | None = None
    lat: float | None = None
    lon: float | None = None
    make: str = ""
    model: str = ""
    orientation: int = 1
    description: str = ""  # ImageDescription: becomes the caption (data, never an instruction)
    issues: list[str] = field(default_factory=list)

    @property
    def device(self) -> str:
        """ "Make Model" without the make repeated (``Canon Canon EOS 40D`` -> ``Canon EOS 40D``)."""
        if self.make and self.model.lower().startswith(self.make.lower()):
            return self.model
        return " ".join(part for part in (self.make, self.model) if part)


def _clean_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip() if value is not None else ""


def _dms_to_degrees(value: Any, ref: Any) -> float:
    """Degrees from an EXIF (degrees, minutes, seconds) triple and its N/S/E/W reference."""
    parts = [float(v) for v in value]
    if len(parts) != 3 or any(p != p for p in parts):  # NaN from a 0/0 rational
        raise ValueError(f"bad GPS triple {value!r}")
    degrees = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    if _clean_text(ref).upper() in ("S", "W"):
        degrees = -degrees
    return degrees


def read_exif(image: Any) -> ExifInfo:
    """DateTimeOriginal (else DateTime), GPS, make/model and orientation from an open PIL image; never raises."""
    info = ExifInfo()
    try:
        exif = image.getexif()
    except Exception as exc:  # Pillow raises many types on broken EXIF blocks
        info.issues.append(f"exif_unreadable: {type(exc).__name__}: {exc}")
        return info
    if not exif or (getattr(image, "format", None) == "JPEG" and not image.info.get("exif")):
        info.issues.append("no_exif")  # Pillow fills Orientation from XMP when a JPEG has no EXIF segment
    info.make, info.model = _clean_text(exif.get(TAG_MAKE)), _clean_text(exif.get(TAG_MODEL))
    info.description = _clean_text(exif.get(TAG_DESCRIPTION))[:2000]
    orientation = exif.get(TAG_ORIENTATION)
    if orientation is not None:
        if isinstance(orientation, int) and 1 <= orientation <= 8:
            info.orientation = orientation
        else:
            info.issues.append(f"invalid_orientation: {orientation!r} (treated as 1)")
    try:
        original = exif.get_ifd(TAG_EXIF_IFD).get(TAG_DATETIME_ORIGINAL)
    except Exception as exc:
        original = None
        info.issues.append(f"exif_ifd_unreadable: {type(exc).__name__}")
    for tag_name, value in (("DateTimeOriginal", original), ("DateTime", exif.get(TAG_DATETIME))):
        if value is None or not _clean_text(value):
            continue
        try:
            info.timestamp = parse_timestamp(_clean_text(value), tag_name)
        except CamrollDataError:
            info.issues.append(f"bad_{tag_name}: {_clean_text(value)!r}")
            continue
        if tag_name == "DateTime":
            info.issues.append("no_DateTimeOriginal: used DateTime")
        break
    if info.timestamp is None and exif:
        info.issues.append("no_timestamp")
    try:
        gps = exif.get_ifd(TAG_GPS_IFD)
    except Exception as exc:
        gps = {}
        info.issues.append(f"gps_unreadable: {type(exc).__name__}")
    if gps and GPS_LAT in gps and GPS_LON in gps:
        try:
            lat = _dms_to_degrees(gps[GPS_LAT], gps.get(GPS_LAT_REF))
            lon = _dms_to_degrees(gps[GPS_LON], gps.get(GPS_LON_REF))
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"out of range ({lat}, {lon})")
            info.lat, info.lon = round(lat, 6), round(lon, 6)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            info.issues.append(f"bad_gps: {exc}")
    return info


# ---------------------------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What ``import_photo_folder`` did: counts and, per file, why it was skipped or what was odd."""

    source: str
    user: str
    n_files: int = 0
    n_imported: int = 0
    n_already_present: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with counts per reason."""
        return {
            "source": self.source,
            "user": self.user,
            "n_files": self.n_files,
            "n_imported": self.n_imported,
            "n_already_present": self.n_already_present,
            "n_skipped": len(self.skipped),
            "skipped_by_reason": dict(Counter(s["reason"].split(":")[0] for s in self.skipped)),
            "warnings_by_issue": dict(Counter(w["issue"].split(":")[0] for w in self.warnings)),
            "skipped": self.skipped,
            "warnings": self.warnings,
        }


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_photo_folder(source: str | Path, root: str | Path, user: str | int, progress: bool = True) -> ImportReport:
    """Copy a bare folder of photos into ``ROOT/user<id>`` and write photos.jsonl from their EXIF.

    Photo ids are the first 12 hex digits of the file's SHA-256, so a re-run adds only new files and a copy of
    a photo already imported is not imported twice. Unreadable, truncated or corrupt images are skipped; a
    missing or broken EXIF keeps the photo (time from the file's modification time) and is listed as a warning.
    """
    from PIL import Image, UnidentifiedImageError

    source = Path(source)
    if not source.is_dir():
        raise CamrollDataError(f"{source}: photo folder not found")
    folder = user_dir(root, user)
    (folder / PHOTOS_DIR).mkdir(parents=True, exist_ok=True)
    existing = {p.photo_id: p for p in read_photos(folder)} if (folder / PHOTOS_FILE).is_file() else {}
    report = ImportReport(source=str(source), user=str(user))
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    report.n_files = len(files)
    records = dict(existing)
    for path in tqdm(files, desc=f"import user{user}", unit="photo", disable=not progress):
        name = str(path.relative_to(source))
        try:
            with Image.open(path) as image:
                exif = read_exif(image)
                image.load()  # decodes: a truncated or corrupt file fails here
                if image.width < 8 or image.height < 8:
                    raise ValueError(f"image too small ({image.width}x{image.height})")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            report.skipped.append({"file": name, "reason": f"unreadable_image: {type(exc).__name__}: {exc}"})
            continue
        except Exception as exc:  # a decoder bug on a hostile file must not stop the import
            report.skipped.append({"file": name, "reason": f"decoder_error: {type(exc).__name__}: {exc}"})
            continue
        photo_id = _file_digest(path)[:12]
        if photo_id in records:
            report.n_already_present += 1
            continue
        timestamp = exif.timestamp
        if timestamp is None:
            timestamp = dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0)
            exif.issues.append("timestamp_from_file_mtime")
        for issue in exif.issues:
            report.warnings.append({"file": name, "issue": issue})
        target = f"{PHOTOS_DIR}/{photo_id}{path.suffix.lower()}"
        shutil.copyfile(path, folder / target)
        records[photo_id] = PhotoRecord(
            photo_id=photo_id,
            file=target,
            timestamp=timestamp,
            lat=exif.lat,
            lon=exif.lon,
            device=exif.device[:200],
            caption=exif.description,
            orientation=exif.orientation,
        )
        report.n_imported += 1
    ordered = sorted(records.values(), key=lambda p: (p.timestamp, p.photo_id))
    write_jsonl(folder / PHOTOS_FILE, (p.to_json() for p in ordered))
    logger.info(
        "imported %d of %d files from %s into %s (%d skipped)",
        report.n_imported,
        report.n_files,
        source,
        folder,
        len(report.skipped),
    )
    return report
