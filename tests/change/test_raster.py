"""The rasters of ``change`` (:mod:`samgeo_pipeline.change.raster`): the grid, pixel areas, windows,
the GSW transition classes and the occurrence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from samgeo_pipeline.change.raster import (
    ChangeInputError,
    Grid,
    grid_options,
    occurrence_percent,
    row_areas_m2,
    transitions,
    windows,
)


@pytest.mark.parametrize(
    ("series", "years", "expected"),
    [
        ([1, 1], [2009, 2020], 1), ([0, 1], [2009, 2020], 2), ([1, 0], [2009, 2020], 3), ([0, 0], [2009, 2020], 0),
        ([1, 0, 1], [1985, 2000, 2020], 1), ([0, 1, 0], [1985, 2000, 2020], 9), ([0, 1, 1], [1985, 2000, 2020], 2),
        ([1, 0, 1, 1], [2020, 2020, 2021, 2021], 7), ([1, 1, 1, 0], [2020, 2020, 2021, 2021], 8),
        ([0, 1, 0, 1], [2020, 2020, 2021, 2021], 4), ([0, 0, 1, 0], [2020, 2020, 2021, 2021], 5),
        ([1, 0, 0, 0], [2020, 2020, 2021, 2021], 6), ([0, 1, 0, 0, 0], [2019, 2020, 2020, 2021, 2021], 10),
        ([1, 1], [2020, 2020], 1), ([1, 0], [2020, 2020], 4),
    ],
)  # fmt: skip
def test_transition_classes(series: list[int], years: list[int], expected: int) -> None:
    water = np.array(series, bool)[:, None, None]
    assert transitions(water, years)[0, 0] == expected


def test_occurrence_is_the_rounded_percent_of_dates_with_water() -> None:
    water = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], bool)[:, None, :]  # 3 dates, 1 x 4 pixels
    assert occurrence_percent(water).tolist() == [[100, 67, 33, 0]]


def test_windows_cover_the_grid_once() -> None:
    grid = Grid(None, from_origin(0, 0, 1, 1), width=5, height=3)
    cut = list(windows(grid, 2))
    assert [(w.col_off, w.row_off, w.width, w.height) for w in cut] == [
        (0, 0, 2, 2), (2, 0, 2, 2), (4, 0, 1, 2), (0, 2, 2, 1), (2, 2, 2, 1), (4, 2, 1, 1)
    ]  # fmt: skip
    assert sum(w.width * w.height for w in cut) == 15


def test_pixel_areas_projected_geographic_and_without_crs() -> None:
    utm = Grid(CRS.from_epsg(32633), from_origin(500000, 5000000, 10, 20), width=3, height=2)
    assert row_areas_m2(utm).tolist() == [200.0, 200.0]
    feet = Grid(CRS.from_epsg(2263), from_origin(1e6, 2e5, 10, 10), width=1, height=1)  # US survey feet
    assert row_areas_m2(feet)[0] == pytest.approx(100 * 0.3048006**2, rel=1e-5)
    # 0.01 degree pixels from the equator to 60 N: rows shrink about with the cosine of the latitude
    geo = Grid(CRS.from_epsg(4326), from_origin(10.0, 60.0, 0.01, 0.01), width=2, height=6000)
    areas = row_areas_m2(geo)
    assert areas[-1] == pytest.approx(1105.7 * 1113.2, rel=2e-3)  # at the equator
    assert areas[0] / areas[-1] == pytest.approx(math.cos(math.radians(60)), rel=0.02)  # the ellipsoid: ~1 % more
    assert np.isnan(row_areas_m2(Grid(None, from_origin(0, 0, 1, 1), 2, 2))).all()


@pytest.mark.parametrize(
    ("crs", "gsd", "message"),
    [("nonsense", None, "crs='nonsense': not a CRS"), (None, 0.0, "gsd=0.0: must be a finite number > 0"),
     (None, math.inf, "gsd=inf: must be"), ("EPSG:32633", -5.0, "gsd=-5.0")],
)  # fmt: skip
def test_grid_options_refuse_bad_crs_and_gsd(crs: str | None, gsd: float | None, message: str) -> None:
    with pytest.raises(ChangeInputError, match=message):
        grid_options(crs, gsd)
    assert grid_options("EPSG:32633", 10.0) == CRS.from_epsg(32633) and grid_options(None, None) is None
