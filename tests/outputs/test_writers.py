"""Raster outputs: the windowed writer finished as a COG (atomic renames: test_atomic.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from samgeo_pipeline.io.raster import RasterInfo, inspect_raster
from samgeo_pipeline.outputs.writers import MASK_NODATA, WindowedRasterWriter
from tests.scenes import UTM_TRANSFORM, leftovers, write_raster

HEIGHT, WIDTH = 600, 700


@pytest.fixture
def info(tmp_path: Path) -> RasterInfo:
    """Header of a 600x700 4-band UTM raster (above the 512-pixel COG block: one overview)."""
    (tmp_path / "in").mkdir()
    return inspect_raster(write_raster(tmp_path / "in" / "src.tif", np.ones((4, HEIGHT, WIDTH), np.uint8)))


class TestWindowedRasterWriter:
    def test_mask_cog(self, info: RasterInfo, tmp_path: Path) -> None:
        final = tmp_path / "out" / "mask.tif"
        writer = WindowedRasterWriter(info, final, "uint8", MASK_NODATA)
        assert not final.exists() and writer.work.exists() and ".work-" in writer.work.name
        expected = np.zeros((HEIGHT, WIDTH), np.uint8)
        for r0 in range(0, HEIGHT, 256):
            for c0 in range(0, WIDTH, 256):
                h, w = min(256, HEIGHT - r0), min(256, WIDTH - c0)
                block = np.full((h, w), (r0 // 256 + c0 // 256) % 2, np.uint8)
                block[:3, :3] = MASK_NODATA
                expected[r0 : r0 + h, c0 : c0 + w] = block
                writer.write(block, Window(c0, r0, w, h))
        assert writer.make_cog("nearest") == final
        assert writer.work.exists()  # others may still read it
        writer.remove_work()
        assert not writer.work.exists()
        assert not leftovers(tmp_path / "out")
        with rasterio.open(final) as ds:
            assert ds.crs == info.crs and ds.transform == info.transform == UTM_TRANSFORM
            assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (WIDTH, HEIGHT, 1, "uint8")
            assert ds.nodata == MASK_NODATA
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert ds.overviews(1) == [2]
            assert ds.block_shapes[0] == (512, 512)
            np.testing.assert_array_equal(ds.read(1), expected)

    def test_float_probability(self, info: RasterInfo, tmp_path: Path) -> None:
        final = tmp_path / "probability.tif"
        writer = WindowedRasterWriter(info, final, "float32", float("nan"))
        values = np.linspace(0, 1, HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH)
        values[0, 0] = np.nan
        writer.write(values, Window(0, 0, WIDTH, HEIGHT))
        writer.make_cog("average")
        with rasterio.open(final) as ds:
            assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
            np.testing.assert_array_equal(ds.read(1), values)
            assert ds.overviews(1)

    def test_remove_work(self, info: RasterInfo, tmp_path: Path) -> None:
        final = tmp_path / "mask.tif"
        writer = WindowedRasterWriter(info, final, "uint8", MASK_NODATA)
        writer.write(np.ones((10, 10), np.uint8), Window(0, 0, 10, 10))
        writer.remove_work()
        assert not final.exists()
        assert list(tmp_path.iterdir()) == [tmp_path / "in"]
