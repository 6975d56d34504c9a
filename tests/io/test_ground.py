"""Pixel size in metres on every CRS (:mod:`samgeo_pipeline.io.ground`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import Affine

from samgeo_pipeline.io.ground import pixel_size_m, source_resolution
from samgeo_pipeline.io.raster import inspect_raster
from tests.scenes import write_raster


@pytest.mark.parametrize(
    ("crs", "transform", "expected"),
    [
        ("EPSG:32633", Affine(3.0, 0, 500000, 0, -5.0, 5600000), (5.0, 3.0)),
        ("EPSG:2263", Affine(10.0, 0, 1e6, 0, -10.0, 2e5), (3.048, 3.048)),  # US survey feet
        ("EPSG:4326", Affine(1e-3, 0, 30.0, 0, -1e-3, 0.002), (110.57, 111.32)),  # at the equator
        ("EPSG:4326", Affine(1e-3, 0, 30.0, 0, -1e-3, 60.002), (111.41, 55.80)),  # at 60 N, lon shrinks
        (None, Affine(2.0, 0, 0, 0, -2.0, 0), (1.0, 1.0)),  # no CRS: --gsd in source pixels
    ],
)
def test_pixel_size_in_metres(crs: str | None, transform: Affine, expected: tuple, tmp_path: Path) -> None:
    """Issue 21: --gsd is metres on every CRS (it was CRS units: 30 meant 30 degrees on EPSG:4326)."""
    path = write_raster(tmp_path / "r.tif", np.ones((4, 4, 4), np.uint8), crs=crs, transform=transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = inspect_raster(path)
    assert pixel_size_m(info) == pytest.approx(expected, rel=1e-3)


def test_source_resolution(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "r.tif", np.ones((4, 4, 4), np.uint8), transform=Affine(3.0, 0, 0, 0, -5.0, 0))
    assert source_resolution(inspect_raster(path)) == 4.0
