"""Acquisition dates (:mod:`samgeo_pipeline.io.dates`): from the option, sensor tags, the file name, the TIFF stamp."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.dates import ImageDate, date_from_name, image_date, parse_date, parse_datetime, sensor_datetime


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m_4709963_se_14_1_20090818.tif", (dt.date(2009, 8, 18), "day")),
        ("landsat_1985.tif", (dt.date(1985, 1, 1), "year")),
        ("LC08_L1TP_042034_20170616_20170629_01_T1.tif", (dt.date(2017, 6, 16), "day")),
        ("S2A_MSIL1C_20170216T103021_N0204.tif", (dt.date(2017, 2, 16), "day")),
        ("scene_2020-08-31.tif", (dt.date(2020, 8, 31), "day")),
        ("tile_20090231.tif", None),
        ("tile_20090231_20100105.tif", (dt.date(2010, 1, 5), "day")),
        ("scene.tif", None),
    ],
)
def test_dates_in_file_names(name: str, expected: tuple[dt.date, str] | None) -> None:
    assert date_from_name(name) == expected


def tagged_raster(path: Path, tags: dict[str, str], ns: str | None = None) -> Path:
    """A 4 x 4 GeoTIFF at ``path`` with ``tags`` (in the ``ns`` domain)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 4, 4), np.uint8))
        ds.update_tags(ns=ns, **tags)
    return path


def test_sources_in_order(tmp_path: Path) -> None:
    both = tagged_raster(tmp_path / "scene_20090818.tif", {"ACQUISITIONDATETIME": "2009-08-19T17:02:11Z",
                                                           "TIFFTAG_DATETIME": "2021:01:01 00:00:00"})  # fmt: skip
    assert image_date(both).label == "2009-08-19" and image_date(both).source == "tag ACQUISITIONDATETIME"
    assert image_date(both, "2009-08-20").source == "option"
    stamped = tagged_raster(tmp_path / "scene_1985.tif", {"TIFFTAG_DATETIME": "2021:01:01 00:00:00"})
    assert (image_date(stamped).label, image_date(stamped).source) == ("1985", "file name")  # name beats the file's own stamp
    only_stamp = tagged_raster(tmp_path / "scene.tif", {"TIFFTAG_DATETIME": "2015:09:26 10:00:00"})
    assert (image_date(only_stamp).label, image_date(only_stamp).source) == ("2015-09-26", "tag TIFFTAG_DATETIME")
    imagery = tagged_raster(tmp_path / "dg.tif", {"ACQUISITIONDATETIME": "2018-05-02 10:11:12"}, ns="IMAGERY")
    assert image_date(imagery).source == "tag IMAGERY:ACQUISITIONDATETIME"
    with pytest.raises(InputError, match=r"scene_x\.tif: no acquisition date .* pass --dates"):
        image_date(Path("scene_x.tif"))
    with pytest.raises(InputError, match="not a date"):
        image_date(both, "last summer")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2009-08-18", (dt.date(2009, 8, 18), "day")), ("20090818", (dt.date(2009, 8, 18), "day")),
     ("2009:08:18 10:00:00", (dt.date(2009, 8, 18), "day")), (" 1985 ", (dt.date(1985, 1, 1), "year")),
     ("2009-02-31", None), ("1885", None), ("198", None), ("last summer", None), ("200908181", None)],
)  # fmt: skip
def test_parse_date(text: str, expected: tuple[dt.date, str] | None) -> None:
    assert parse_date(text) == expected


def test_tag_datetimes_are_utc_and_the_1970_placeholder_is_none() -> None:
    utc = dt.timezone.utc
    assert parse_datetime("2015:08:04 16:19:21") == dt.datetime(2015, 8, 4, 16, 19, 21, tzinfo=utc)
    assert parse_datetime("2015-08-04T16:19:21Z") == dt.datetime(2015, 8, 4, 16, 19, 21, tzinfo=utc)
    east = parse_datetime("2015-08-04T18:19:21+02:00")
    assert (east, east.hour, east.utcoffset()) == (dt.datetime(2015, 8, 4, 16, 19, 21, tzinfo=utc), 16, dt.timedelta(0))
    assert parse_datetime("2015-08-04") == dt.datetime(2015, 8, 4, tzinfo=utc)
    for nothing in (None, "", "  ", "1970:01:01 00:00:00", "not a date"):
        assert parse_datetime(nothing) is None


def test_sensor_tags_skip_what_is_not_a_date() -> None:
    tags = {"IMAGERY": {"ACQUISITIONDATETIME": "1970-01-01T00:00:00Z"}, "": {"ACQUISITION_DATE": "2018-05-02 10:11:12"}}
    assert sensor_datetime(tags) == (dt.datetime(2018, 5, 2, 10, 11, 12, tzinfo=dt.timezone.utc), "ACQUISITION_DATE")
    assert sensor_datetime({"": {"TIFFTAG_DATETIME": "2015:09:26 10:00:00"}}) is None  # the file's stamp is not the sensor's


def test_a_year_alone_is_labelled_as_a_year() -> None:
    year = ImageDate(dt.date(1985, 1, 1), "year", "file name")
    assert year.to_dict() == {"date": "1985", "precision": "year", "source": "file name"}
    assert ImageDate(dt.date(1985, 1, 1), "day", "option").label == "1985-01-01"
