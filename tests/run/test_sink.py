"""The tile sink (:mod:`samgeo_pipeline.run.sink`): each tile's core written once into the work files,
nodata outside valid data, failed tiles as nodata, the counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.io.raster import RasterInfo, inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.outputs.writers import MASK_NODATA
from samgeo_pipeline.run.prepare import PreparedTile
from samgeo_pipeline.run.sink import SinkOptions, TileSink
from tests.scenes import options_only, write_raster

SHAPE = (80, 72)
CONFIG = SegmentConfig(tile_size=32, halo=4, probability=True)


@pytest.fixture
def info(tmp_path: Path) -> RasterInfo:
    return inspect_raster(write_raster(tmp_path / "scene.tif", np.ones((3, *SHAPE), np.uint8)))


def truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(water, valid, logits)`` over the whole raster: random water, a nodata corner, logits of +-3."""
    water = np.random.default_rng(0).random(SHAPE) < 0.3
    valid = np.ones(SHAPE, bool)
    valid[:10, :12] = False
    return water, valid, np.where(water, 3.0, -3.0).astype(np.float32)


def tile_of(tile, array: np.ndarray) -> np.ndarray:
    """The tile's part of a whole-raster array (the grid here has working = source pixels, tiles inside)."""
    (y, x), size = tile.start, tile.grid.tile_size
    return array[y : y + size, x : x + size]


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_every_core_written_once_from_the_coarse_mask_or_sams_logits(info: RasterInfo, tmp_path: Path) -> None:
    water, valid, logits = truth()
    grid = make_grid(info, CONFIG)
    assert len(grid) > 4
    sink = TileSink(info, CONFIG, tmp_path)
    for i, tile in enumerate(grid):
        coarse = tile_of(tile, water) if i % 2 else ~tile_of(tile, water)  # even tiles: SAM's logits win over it
        sink.write(PreparedTile(tile, None, tile_of(tile, valid), coarse, []), None if i % 2 else tile_of(tile, logits))
    mask_path = sink.close()
    np.testing.assert_array_equal(read(mask_path), np.where(valid, water, MASK_NODATA))
    with rasterio.open(sink.prob.work) as ds:
        probability = ds.read(1)
    expected = np.where(water, 1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(3.0)))  # sigmoid of SAM's logits
    sam_tiles = np.zeros(SHAPE, bool)
    for i, tile in enumerate(grid):
        if i % 2 == 0:
            core = tile.core_window(*SHAPE)
            sam_tiles[core.row_off : core.row_off + core.height, core.col_off : core.col_off + core.width] = True
    np.testing.assert_allclose(probability[sam_tiles & valid], expected[sam_tiles & valid], rtol=1e-6)
    np.testing.assert_array_equal(probability[~sam_tiles & valid], water[~sam_tiles & valid])  # the coarse mask as 0/1
    assert np.isnan(probability[~valid]).all()
    assert (sink.water_pixels, sink.valid_pixels) == ((water & valid).sum(), valid.sum())
    sink.remove_work()
    assert not [p for p in tmp_path.iterdir() if p.name != "scene.tif"]  # no work file left


def test_a_failed_tile_is_nodata_and_listed(info: RasterInfo, tmp_path: Path) -> None:
    water, valid, _ = truth()
    grid = make_grid(info, CONFIG)
    sink = TileSink(info, CONFIG.merged({"probability": False}), tmp_path)
    failed = next(t for t in grid if (t.row, t.col) == (1, 1))
    for tile in grid:
        prepared = PreparedTile(tile, None, tile_of(tile, valid), tile_of(tile, water), [])
        if tile == failed:
            sink.fail(prepared, "CUDA out of memory")
        else:
            sink.write(prepared, None)
    mask = read(sink.close())
    core = failed.core_window(*SHAPE)
    rows, cols = slice(core.row_off, core.row_off + core.height), slice(core.col_off, core.col_off + core.width)
    assert (mask[rows, cols] == MASK_NODATA).all()
    outside = np.ones(SHAPE, bool)
    outside[rows, cols] = False
    np.testing.assert_array_equal(mask[outside], np.where(valid, water, MASK_NODATA)[outside])
    assert (sink.counts.failed, sink.counts.failed_tiles) == (1, [{"row": 1, "col": 1, "reason": "CUDA out of memory"}])
    sink.remove_work()


def test_sam_water_is_kept_near_the_coarse_mask_only(info: RasterInfo, tmp_path: Path) -> None:
    """``restrict_dilation``: SAM's water counts only within that many pixels of the coarse mask (the
    sink is given the options it declares and no other)."""
    config = CONFIG.merged({"probability": False, "restrict_dilation": 2, "tile_size": 96, "halo": 8})
    grid = make_grid(info, config)
    (tile,) = grid
    coarse = np.zeros((96, 96), bool)
    coarse[20:30, 20:30] = True
    sam = np.zeros((96, 96), bool)
    sam[19:31, 19:31] = True  # within 2 pixels (corners too: 1 + 1): kept
    sam[60:70, 50:60] = True  # far from any coarse water: dropped
    sink = TileSink(info, options_only(config, SinkOptions), tmp_path)
    sink.write(PreparedTile(tile, None, np.ones((96, 96), bool), coarse, []), sam)
    mask = read(sink.close())
    expected = np.zeros(SHAPE, np.uint8)
    expected[19:31, 19:31] = 1
    np.testing.assert_array_equal(mask, expected)
    sink.remove_work()
