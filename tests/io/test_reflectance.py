"""Reflectance scale and offset (:mod:`samgeo_pipeline.io.reflectance`): the user's, the file's tags, a Landsat
MTL beside the file, Sentinel-2's quantification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.reflectance import Reflectance, resolve_reflectance
from tests.scenes import write_raster


class TestReflectance:
    def open(self, path: Path, bands: str = "auto"):
        info = inspect_raster(path, bands, warn=False)
        return rasterio.open(path), info

    def test_user_scale_wins(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "a.tif", np.ones((3, 8, 8), np.uint16))
        ds, info = self.open(path)
        with ds:
            assert resolve_reflectance(ds, info, 2e-4, -0.1, "auto") == Reflectance(2e-4, -0.1, "--reflectance-scale")
            assert resolve_reflectance(ds, info, None, 0.0, "auto") is None  # nothing says: no guess

    def test_file_tags(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "a.tif", np.ones((3, 8, 8), np.uint16))
        with rasterio.open(path, "r+") as ds:
            ds.scales, ds.offsets = (2.75e-5,) * 3, (-0.2,) * 3
        ds, info = self.open(path)
        with ds:
            assert resolve_reflectance(ds, info, None, 0.0, "auto") == Reflectance(2.75e-5, -0.2, "file scale/offset tags")

    def test_landsat_mtl_beside_the_file(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "a.tif", np.ones((3, 8, 8), np.uint16))
        lines = [f"    REFLECTANCE_MULT_BAND_{b} = 2.0000E-05\n    REFLECTANCE_ADD_BAND_{b} = -0.100000" for b in range(1, 10)]
        (tmp_path / "LC08_X_MTL.txt").write_text("\n".join([*lines, "    SUN_ELEVATION = 30.0"]) + "\n")
        ds, info = self.open(path)
        with ds:
            found = resolve_reflectance(ds, info, None, 0.0, "auto")
        assert found is not None and found.source == "LC08_X_MTL.txt"
        assert found.scale == pytest.approx(4e-5) and found.offset == pytest.approx(-0.2)  # / sin(30°)

    def test_sentinel2_quantification(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "s2.tif", np.ones((13, 8, 8), np.uint16), nodata=None)
        ds, info = self.open(path)
        with ds:
            assert resolve_reflectance(ds, info, None, 0.0, "auto").scale == 1e-4  # 13 bands guessed
        path8 = write_raster(tmp_path / "s2_8.tif", np.ones((13, 8, 8), np.uint8), nodata=None)
        ds, info = self.open(path8)
        with ds:
            assert resolve_reflectance(ds, info, None, 0.0, "auto") is None  # not the product's uint16


def test_sources_that_disagree_or_are_not_reflectance_say_nothing(tmp_path: Path) -> None:
    """Bands with different tags, two MTL files or an MTL with two gains: no guess, the rule runs uncalibrated."""
    path = write_raster(tmp_path / "a.tif", np.ones((3, 8, 8), np.uint16))
    with rasterio.open(path, "r+") as ds:
        ds.scales, ds.offsets = (2.75e-5, 2.75e-5, 1e-4), (-0.2,) * 3
    info = inspect_raster(path, "auto", warn=False)
    with rasterio.open(path) as ds:
        assert resolve_reflectance(ds, info, None, 0.0, "auto") is None
        mtl = "    REFLECTANCE_MULT_BAND_1 = 2.0E-05\n    REFLECTANCE_MULT_BAND_2 = 3.0E-05\n" \
              "    REFLECTANCE_ADD_BAND_1 = -0.1\n    SUN_ELEVATION = 30.0\n"  # fmt: skip
        (tmp_path / "LC08_X_MTL.txt").write_text(mtl)
        assert resolve_reflectance(ds, info, None, 0.0, "auto") is None
        (tmp_path / "LC08_X_MTL.txt").write_text(mtl.replace("3.0E-05", "2.0E-05"))
        assert resolve_reflectance(ds, info, None, 0.0, "auto").source == "LC08_X_MTL.txt"
        (tmp_path / "LC08_Y_MTL.txt").write_text(mtl)
        assert resolve_reflectance(ds, info, None, 0.0, "auto") is None  # which one?
