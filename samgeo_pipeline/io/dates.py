"""The acquisition date of an image: from an explicit option, its tags, or its file name.

The order, and what the run records as ``source``:

1. ``option``: a date the user gave (``--dates``);
2. ``tag IMAGERY:ACQUISITIONDATETIME`` (GDAL's normalised metadata of DigitalGlobe, Pleiades, Landsat
   MTL... sidecars), then the sensor tags of the default domain (``ACQUISITIONDATETIME``,
   ``DATE_ACQUIRED``, ``SENSING_TIME``, ``ACQUISITION_DATE``, ``DATATAKE_1_DATATAKE_SENSING_START``);
3. ``file name``: ``YYYYMMDD``, ``YYYY-MM-DD`` / ``YYYY_MM_DD`` (the first one: a Landsat product id
   names the acquisition before the processing date), else a lone year ``YYYY`` (1900-2099);
4. ``tag TIFFTAG_DATETIME``: last, because the TIFF tag says when the file was written, which after
   any reprocessing is not when the image was taken.

A year alone is a date of ``year`` precision (1 January of that year, shown as ``1985``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

import rasterio
from rasterio.errors import RasterioError

from samgeo_pipeline.errors import InputError

#: Sensor tags naming the acquisition time, by GDAL metadata domain, in the order they are tried.
SENSOR_TAGS = (
    ("IMAGERY", "ACQUISITIONDATETIME"),
    ("", "ACQUISITIONDATETIME"),
    ("", "ACQUISITION_DATETIME"),
    ("", "DATE_ACQUIRED"),
    ("", "SENSING_TIME"),
    ("", "ACQUISITION_DATE"),
    ("", "DATATAKE_1_DATATAKE_SENSING_START"),
)
_DAY = re.compile(r"(?<!\d)((?:19|20)\d\d)[-_]?(0[1-9]|1[0-2])[-_]?(0[1-9]|[12]\d|3[01])(?!\d)")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)(?!\d)")


@dataclass(frozen=True)
class ImageDate:
    """When an image was taken, and where the run found it."""

    date: dt.date
    precision: str
    """``day`` or ``year`` (a year alone: :attr:`date` is 1 January)."""
    source: str
    """``option``, ``tag NAME`` or ``file name``."""

    @property
    def label(self) -> str:
        """``2009-08-18``, or ``1985`` for a year alone."""
        return str(self.date.year) if self.precision == "year" else self.date.isoformat()

    def to_dict(self) -> dict[str, str]:
        """JSON-able: the label, its precision and source."""
        return {"date": self.label, "precision": self.precision, "source": self.source}


def parse_date(text: str) -> tuple[dt.date, str] | None:
    """``(date, precision)`` of a date or date-time text (ISO, EXIF ``YYYY:MM:DD``, ``YYYYMMDD``,
    a year), or None when it holds none."""
    text = text.strip()
    match = re.match(r"^((?:19|20)\d\d)[-:_/]?(\d\d)[-:_/]?(\d\d)(?!\d)", text)
    if match:
        try:
            return dt.date(*(int(g) for g in match.groups())), "day"
        except ValueError:
            return None
    if re.fullmatch(r"(?:19|20)\d\d", text):
        return dt.date(int(text), 1, 1), "year"
    return None


def date_from_name(name: str) -> tuple[dt.date, str] | None:
    """``(date, precision)`` from a file name: the first valid ``YYYYMMDD`` (or with ``-``/``_``), else
    the first lone year, else None."""
    for match in _DAY.finditer(name):
        try:
            return dt.date(*(int(g) for g in match.groups())), "day"
        except ValueError:  # 20090231: not a day
            continue
    year = _YEAR.search(name)
    return (dt.date(int(year.group(1)), 1, 1), "year") if year else None


def parse_datetime(text: str | None) -> dt.datetime | None:
    """A tag's date-time in UTC (``2015:08:04 16:19:21``, ``2015-08-04T16:19:21Z``, ``2015-08-04``),
    or None: not a date, or the placeholder 1970-01-01 00:00:00 some writers put there."""
    if not text or not text.strip():
        return None
    text = text.strip().replace("Z", "+00:00")
    if re.match(r"^\d{4}:\d\d:\d\d", text):  # EXIF / TIFF style
        text = text[:4] + "-" + text[5:7] + "-" + text[8:]
    try:
        value = dt.datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if value == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc):
        return None
    return value.astimezone(dt.timezone.utc)


def sensor_datetime(tags: dict[str, dict[str, str]]) -> tuple[dt.datetime, str] | None:
    """``(UTC date-time, tag name)`` from sensor tags (:data:`SENSOR_TAGS`; not TIFFTAG_DATETIME), or None.

    Args:
        tags: metadata domain (``""``: the default one) -> tags, as rasterio's ``tags(ns=...)``.
    """
    for domain, key in SENSOR_TAGS:
        value = parse_datetime(tags.get(domain, {}).get(key))
        if value is not None:
            return value, f"{domain}:{key}" if domain else key
    return None


def date_from_tags(path: Path) -> tuple[dt.date, str, str] | None:
    """``(date, precision, tag name)`` from the sensor tags of ``path`` (not TIFFTAG_DATETIME), or None."""
    found = sensor_datetime(_tags(path))
    return (found[0].date(), "day", found[1]) if found else None


def _tags(path: Path) -> dict[str, dict[str, str]]:
    """The tags of the domains :data:`SENSOR_TAGS` and TIFFTAG_DATETIME are read from; empty when unreadable."""
    try:
        with rasterio.open(path) as ds:
            return {domain: ds.tags(ns=domain or None) for domain in {d for d, _ in SENSOR_TAGS}}
    except (RasterioError, OSError):
        return {}


def image_date(path: PurePath, given: str | None = None, readable: bool = True) -> ImageDate:
    """The date of the image at ``path`` (see the module docstring for the order).

    Args:
        path: the image (its tags are read when ``readable`` and it exists; its name always).
        given: the user's date for it (``--dates``), which wins.
        readable: False when ``path`` is only a name (the input of a folder that has since moved).

    Raises:
        InputError: ``given`` is not a date, or no date is found; the message names the fix.
    """
    if given is not None:
        parsed = parse_date(given)
        if parsed is None:
            raise InputError(f"{path}: --dates value {given!r} is not a date (YYYY-MM-DD, YYYYMMDD or YYYY)")
        return ImageDate(*parsed, "option")
    exists = readable and Path(path).is_file()
    found = date_from_tags(Path(path)) if exists else None
    if found:
        return ImageDate(found[0], found[1], f"tag {found[2]}")
    named = date_from_name(path.name)
    if named:
        return ImageDate(*named, "file name")
    stamp = parse_datetime(_tags(Path(path)).get("", {}).get("TIFFTAG_DATETIME")) if exists else None
    if stamp is not None:
        return ImageDate(stamp.date(), "day", "tag TIFFTAG_DATETIME")
    raise InputError(
        f"{path}: no acquisition date in its tags or its file name; pass --dates (one per input, in order)"
    )
