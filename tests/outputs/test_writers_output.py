"""What a finished output holds, and where its work file lives (pins found by mutation testing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from samgeo_pipeline.errors import OutputWriteError
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.outputs import writers
from samgeo_pipeline.outputs.writers import WindowedRasterWriter
from tests.scenes import write_raster


def test_cog_with_nodata_deflate_and_overviews(tmp_path: Path) -> None:
    source = write_raster(tmp_path / "in.tif", np.ones((3, 1100, 700), np.uint8))
    final = tmp_path / "new" / "deeper" / "mask.tif"  # parents are created
    writer = WindowedRasterWriter(inspect_raster(source, "rgb"), final, "uint8", 255)
    (work,) = final.parent.glob(".mask.tif.work-*.tif")  # beside the output: the rename stays on one disk
    assert work == writer.work
    values = (np.arange(1100 * 700).reshape(1100, 700) % 3).astype(np.uint8)
    writer.write(values, Window(0, 0, 700, 1100))
    assert writer.make_cog("nearest") == final
    writer.remove_work()
    assert sorted(p.name for p in final.parent.iterdir()) == ["mask.tif"]  # work file gone
    with rasterio.open(final) as ds:
        assert ds.nodata == 255 and ds.compression.name == "deflate" and ds.overviews(1)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(ds.read(1), values)


def test_remove_work_twice_leaves_nothing(tmp_path: Path) -> None:
    source = write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint8))
    out = tmp_path / "out"
    writer = WindowedRasterWriter(inspect_raster(source, "rgb"), out / "p.tif", "float32", -1.0)
    writer.remove_work()
    writer.remove_work()
    assert list(out.iterdir()) == []


def test_work_file_is_tiled_and_uncompressed_then_overviews_follow_the_resampling(tmp_path: Path) -> None:
    """The work file: 512² blocks, no compression; the COG's one overview (1024 -> 512): nearest
    keeps every other pixel (a mask stays 0/1/255), average is the mean of each 2x2 block."""
    info = inspect_raster(write_raster(tmp_path / "in.tif", np.ones((3, 1024, 1024), np.uint8)), "rgb")
    values = (np.arange(1024 * 1024).reshape(1024, 1024) % 7).astype(np.float32)
    for resampling, dtype, expected in (
        ("nearest", "uint8", values[::2, ::2]),
        ("average", "float32", values.reshape(512, 2, 512, 2).mean(axis=(1, 3))),
    ):
        writer = WindowedRasterWriter(info, tmp_path / f"{resampling}.tif", dtype, 255)
        writer.write(values.astype(dtype), Window(0, 0, 1024, 1024))
        writer._ds.close()  # flushes the header; finish() closes it again
        with rasterio.open(writer.work) as work:
            assert work.driver == "GTiff" and work.compression is None and work.is_tiled
            assert work.block_shapes == [(512, 512)] and work.overviews(1) == []
        with rasterio.open(writer.make_cog(resampling)) as ds:
            assert ds.overviews(1) == [2] and ds.block_shapes == [(512, 512)]
            np.testing.assert_array_equal(ds.read(1, out_shape=(512, 512)), expected.astype(dtype))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RasterioIOError("disk full\nsecond line of GDAL's message"), "disk full"),
        (PermissionError(), "PermissionError"),
    ],
)
def test_work_file_creation_error_names_file_and_reason(tmp_path, monkeypatch, error, reason) -> None:
    info = inspect_raster(write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint8)), "rgb")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(writers.rasterio, "open", fail)
    final = tmp_path / "out" / "mask.tif"
    with pytest.raises(OutputWriteError) as caught:
        WindowedRasterWriter(info, final, "uint8", 255)
    assert str(caught.value) == (
        f"{final}: cannot create the work file ({reason}); check the free space and permissions there"
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_interrupt_while_creating_leaves_nothing(tmp_path, monkeypatch) -> None:
    info = inspect_raster(write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint8)), "rgb")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.rasterio, "open", interrupt)
    with pytest.raises(KeyboardInterrupt):
        WindowedRasterWriter(info, tmp_path / "out" / "mask.tif", "uint8", 255)
    assert list((tmp_path / "out").iterdir()) == []


def test_remove_work_closes_the_work_file(tmp_path: Path) -> None:
    info = inspect_raster(write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint8)), "rgb")
    writer = WindowedRasterWriter(info, tmp_path / "out" / "mask.tif", "uint8", 255)
    writer.remove_work()
    assert writer._ds.closed
