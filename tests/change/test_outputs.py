"""The outputs of ``change`` (:mod:`samgeo_pipeline.change.outputs`): water bodies and their areas per date,
``areas.csv``, the manifest's ``change`` section. Whole runs are in ``tests/change/test_compare.py``."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from samgeo_pipeline.change.outputs import areas_csv, bodies_frame, build_manifest, date_column, water_bodies
from samgeo_pipeline.change.raster import CLASSES, ChangeResult, DateInput, Grid
from samgeo_pipeline.io.dates import ImageDate

T = from_origin(500000, 5000000, 10, 10)  # 100 m² pixels
SHAPE = (20, 30)


def write(path: Path, array: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=SHAPE[1], height=SHAPE[0], count=1, dtype="uint8",
                       nodata=255, crs="EPSG:32633", transform=T) as ds:  # fmt: skip
        ds.write(array.astype(np.uint8), 1)
    return path


def result_of(tmp_path: Path, masks: list[np.ndarray]) -> ChangeResult:
    dates = []
    for year, mask in zip((2009, 2020), masks, strict=False):
        folder = tmp_path / f"scene_{year}"
        folder.mkdir()
        dates.append(DateInput(folder, write(folder / "mask.tif", mask), ImageDate(dt.date(year, 8, 18), "day", "file name"),
                               f"/in/scene_{year}.tif", "done"))  # fmt: skip
    grid = Grid(CRS.from_epsg(32633), T, SHAPE[1], SHAPE[0])
    return ChangeResult(tmp_path / "chg", dates, [], grid, class_pixels=dict.fromkeys(CLASSES, 0),
                        class_area_m2=dict.fromkeys(CLASSES, 0.0))  # fmt: skip


def test_water_bodies_largest_first_with_their_area_at_each_date(tmp_path: Path) -> None:
    first, last = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    first[2:6, 2:6] = 1  # lake A: 16 pixels, then 8
    last[2:4, 2:6] = 1
    first[10:12, 20:22] = 1  # pond B: 4 pixels, then dry
    last[15:18, 25:28] = 1  # lake C: only at the end, 9 pixels
    last[2, :] = 255  # nodata on the last date: A's top row counts on no date (nodata on any date is nodata)
    result = result_of(tmp_path, [first, last])
    occurrence = np.where((first == 1) | (last == 1), 50, 0)
    bodies, areas = water_bodies(write(tmp_path / "occurrence.tif", occurrence), result)
    assert [p.area for p in bodies] == [16, 9, 4]  # pixel coordinates, largest first
    np.testing.assert_array_equal(areas, [[1200, 400], [0, 900], [400, 0]])
    frame = bodies_frame(bodies, areas, result)
    assert list(frame.columns) == ["body_id", "extent_m2", "water_m2_2009_08_18", "water_m2_2020_08_18", "geometry"]
    assert frame["body_id"].tolist() == [1, 2, 3] and frame["extent_m2"].round().tolist() == [1600, 900, 400]
    assert frame.total_bounds.tolist() == [500020.0, 4999820.0, 500280.0, 4999980.0]  # map coordinates


def test_areas_csv_shares_of_the_valid_area(tmp_path: Path) -> None:
    result = result_of(tmp_path, [np.zeros(SHAPE), np.zeros(SHAPE)])
    result.date_pixels, result.date_area_m2 = [4, 2], [400.0, 200.0]
    result.valid_pixels, result.valid_area_m2 = 8, 800.0
    result.class_pixels[1], result.class_area_m2[1] = 2, 200.0
    rows = list(csv.reader(io.StringIO(areas_csv(result))))
    assert rows[0] == ["kind", "key", "name", "pixels", "area_m2", "share_of_valid"]
    assert rows[1] == ["date", "2009-08-18", "scene_2009.tif", "4", "400.0", "0.500000"]
    assert rows[3] == ["class", "0", "not water", "0", "0.0", "0.000000"]
    assert rows[4] == ["class", "1", "permanent", "2", "200.0", "0.250000"] and len(rows) == 3 + len(CLASSES)
    result.valid_area_m2 = 0.0  # nothing valid on every date: no share rather than a division by zero
    assert list(csv.reader(io.StringIO(areas_csv(result))))[1][-1] == "nan"


@pytest.mark.parametrize(("crs", "gsd", "source"), [(None, None, "first date"), ("EPSG:4326", None, "--crs/--gsd"),
                                                    (None, 5.0, "--crs/--gsd")])  # fmt: skip
def test_manifest_change_section(tmp_path: Path, crs: str | None, gsd: float | None, source: str) -> None:
    result = result_of(tmp_path, [np.zeros(SHAPE), np.zeros(SHAPE)])
    result.date_pixels, result.date_area_m2 = [4, 2], [400.0, 200.0]
    result.outputs = [tmp_path / "change.tif", tmp_path / "manifest.json"]
    manifest = build_manifest(result, crs, gsd, 1.23456)
    change = manifest["change"]
    assert change["grid"]["source"].startswith(source) and (change["grid"]["crs_option"], change["grid"]["gsd_m"]) == (crs, gsd)
    assert change["dates"][1] == {"folder": str(tmp_path / "scene_2020"), "image": "/in/scene_2020.tif", "status": "done",
                                  "date": "2020-08-18", "precision": "day", "source": "file name",
                                  "water_pixels": 2, "water_area_m2": 200.0}  # fmt: skip
    assert set(change["classes"]) == {str(c) for c in CLASSES} and change["classes"]["9"]["name"] == "ephemeral permanent"
    assert (manifest["seconds"], manifest["outputs"], manifest["status"]) == (1.235, ["change.tif", "manifest.json"], "done")


def test_date_columns() -> None:
    assert date_column("2009-08-18") == "water_m2_2009_08_18" and date_column("1985") == "water_m2_1985"
