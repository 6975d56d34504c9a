"""What a finished output holds, and where its work file lives (pins found by mutation testing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from samgeo_pipeline.raster import inspect_raster
from samgeo_pipeline.writers import WindowedRasterWriter
from tests.scenes import write_raster


def test_cog_with_nodata_deflate_and_overviews(tmp_path: Path) -> None:
    source = write_raster(tmp_path / "in.tif", np.ones((3, 1100, 700), np.uint8))
    final = tmp_path / "new" / "deeper" / "mask.tif"  # parents are created
    writer = WindowedRasterWriter(inspect_raster(source, "rgb"), final, "uint8", 255)
    (work,) = final.parent.glob(".mask.tif.work-*.tif")  # beside the output: the rename stays on one disk
    assert work == writer.work
    values = (np.arange(1100 * 700).reshape(1100, 700) % 3).astype(np.uint8)
    writer.write(values, Window(0, 0, 700, 1100))
    assert writer.finish() == final
    assert sorted(p.name for p in final.parent.iterdir()) == ["mask.tif"]  # work file gone
    with rasterio.open(final) as ds:
        assert ds.nodata == 255 and ds.compression.name == "deflate" and ds.overviews(1)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(ds.read(1), values)


def test_abort_twice_leaves_nothing(tmp_path: Path) -> None:
    source = write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint8))
    out = tmp_path / "out"
    writer = WindowedRasterWriter(inspect_raster(source, "rgb"), out / "p.tif", "float32", -1.0)
    writer.abort()
    writer.abort()
    assert list(out.iterdir()) == []
