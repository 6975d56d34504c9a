"""The tile grid: cores cover the raster exactly once, halos read context, edges are invalid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.raster import RasterInfo, inspect_raster
from samgeo_pipeline.tiling import Tile, TileGrid, core_of, make_grid, read_tile
from tests.scenes import write_raster

HEIGHT, WIDTH = 150, 230


@pytest.fixture
def ramp(tmp_path: Path) -> Path:
    """150x230 4-band uint16 raster, 2 m pixels: band b holds 1000 * b + row + col (never 0 = nodata)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    data = np.stack([1000 * b + rows + cols for b in range(1, 5)]).astype(np.uint16)
    return write_raster(tmp_path / "ramp.tif", data, transform=Affine(2.0, 0, 0, 0, -2.0, 0))


def grid_for(info: RasterInfo, **options: object) -> TileGrid:
    return make_grid(info, SegmentConfig(model="none").merged(options))


class TestGrid:
    def test_native(self, ramp: Path) -> None:
        grid = grid_for(inspect_raster(ramp), tile_size=96, halo=16)
        assert (grid.core, grid.halo, grid.tile_size, grid.read_size) == (64, 16, 96, 96)
        assert grid.scale == 1.0
        assert (grid.rows, grid.cols) == (3, 4) and len(grid) == 12
        assert [(t.row, t.col) for t in grid][:5] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]

    def test_cores_cover_raster_exactly_once(self, ramp: Path) -> None:
        for tile_size, halo in [(96, 16), (64, 0), (256, 64), (1024, 128)]:
            grid = grid_for(inspect_raster(ramp), tile_size=tile_size, halo=halo)
            cover = np.zeros((HEIGHT, WIDTH), int)
            for tile in grid:
                w = tile.core_window(HEIGHT, WIDTH)
                assert w.width > 0 and w.height > 0
                cover[int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)] += 1
            assert (cover == 1).all(), (tile_size, halo)

    def test_read_window_is_core_plus_halo(self, ramp: Path) -> None:
        grid = grid_for(inspect_raster(ramp), tile_size=96, halo=16)
        tile = Tile(1, 2, grid)
        read = tile.read_window
        core = tile.core_window(HEIGHT, WIDTH)
        assert (read.col_off, read.row_off, read.width, read.height) == (128 - 16, 64 - 16, 96, 96)
        assert (core.col_off, core.row_off, core.width, core.height) == (128, 64, 64, 64)
        last = Tile(2, 3, grid).core_window(HEIGHT, WIDTH)
        assert (last.col_off, last.row_off, last.width, last.height) == (192, 128, WIDTH - 192, HEIGHT - 128)

    def test_gsd_scales_source_pixels(self, ramp: Path) -> None:
        # 2 m pixels, gsd 4 m: one working pixel is two source pixels.
        grid = grid_for(inspect_raster(ramp), tile_size=96, halo=16, gsd=4.0)
        assert (grid.core, grid.halo, grid.read_size, grid.tile_size) == (128, 32, 192, 96)
        assert grid.scale == 2.0
        assert (grid.rows, grid.cols) == (2, 2)


class TestReadTile:
    def test_inside(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16)
        with rasterio.open(ramp) as ds:
            data, valid = read_tile(ds, info, Tile(1, 1, grid))
        assert data.shape == (4, 96, 96) and data.dtype == np.float32
        assert valid.all()
        # Working pixel (0, 0) is source pixel (row 48, col 48).
        assert data[0, 0, 0] == 1000 + 48 + 48
        assert data[3, 95, 95] == 4000 + 143 + 143

    def test_edges_outside_the_raster_are_invalid_zeros(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16)
        with rasterio.open(ramp) as ds:
            data, valid = read_tile(ds, info, Tile(0, 0, grid))
            assert not valid[:16].any() and not valid[:, :16].any()
            assert valid[16:, 16:].all()
            assert (data[:, :16] == 0).all()
            assert data[0, 16, 16] == 1000
            data, valid = read_tile(ds, info, Tile(2, 3, grid))
        # Core starts at (128, 192); the raster ends at (150, 230).
        assert valid[: 16 + 22, : 16 + 38].all() and not valid[16 + 22 :].any() and not valid[:, 16 + 38 :].any()

    def test_core_of_native(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16)
        tile = Tile(2, 3, grid)
        with rasterio.open(ramp) as ds:
            data, _ = read_tile(ds, info, tile)
        core = core_of(tile, data[0], HEIGHT, WIDTH)
        assert core.shape == (HEIGHT - 128, WIDTH - 192)
        with rasterio.open(ramp) as ds:
            expected = ds.read(1, window=tile.core_window(HEIGHT, WIDTH))
        np.testing.assert_array_equal(core, expected)

    def test_gsd_round_trip(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16, gsd=4.0)
        tile = Tile(0, 1, grid)
        with rasterio.open(ramp) as ds:
            data, valid = read_tile(ds, info, tile)
        assert data.shape == (4, 96, 96)
        assert not valid[:16].any() and valid[16:, :].any()  # top halo above the raster
        core = core_of(tile, valid.astype(np.uint8), HEIGHT, WIDTH)
        window = tile.core_window(HEIGHT, WIDTH)
        assert core.shape == (int(window.height), int(window.width)) == (128, WIDTH - 128)
        assert core.all()

    def test_nodata_pixels_invalid(self, tmp_path: Path) -> None:
        data = np.full((4, 40, 40), 9, np.uint8)
        data[:, 5:10, 5:10] = 0
        path = write_raster(tmp_path / "holes.tif", data)
        info = inspect_raster(path)
        grid = grid_for(info, tile_size=32, halo=0)
        with rasterio.open(path) as ds:
            _, valid = read_tile(ds, info, Tile(0, 0, grid))
        assert valid.sum() == 32 * 32 - 25
