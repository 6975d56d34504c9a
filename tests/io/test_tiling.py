"""The tile grid: fewest tiles, cores cover the raster exactly once, edge tiles inside the raster,
gsd tiles aligned with a full-grid read."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from scipy import ndimage

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.io.raster import RasterInfo, inspect_raster
from samgeo_pipeline.io.tiling import GridOptions, Tile, TileGrid, core_of, inside_part, make_grid, read_tile
from tests.scenes import options_only, write_raster

HEIGHT, WIDTH = 150, 230


@pytest.fixture
def ramp(tmp_path: Path) -> Path:
    """150x230 4-band uint16 raster, 2 m pixels: band b holds 1000 * b + row + col (never 0 = nodata)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    data = np.stack([1000 * b + rows + cols for b in range(1, 5)]).astype(np.uint16)
    return write_raster(tmp_path / "ramp.tif", data, transform=Affine(2.0, 0, 0, 0, -2.0, 0))


@pytest.fixture
def noise(tmp_path: Path) -> Path:
    """150x230 4-band uint16 noise, 2 m pixels, 32-pixel blocks: any shift of a read shows."""
    data = np.random.default_rng(3).integers(1, 60000, (4, HEIGHT, WIDTH)).astype(np.uint16)
    return write_raster(tmp_path / "noise.tif", data, transform=Affine(2.0, 0, 0, 0, -2.0, 0))


def grid_for(info: RasterInfo, **options: object) -> TileGrid:
    return make_grid(info, SegmentConfig(model="none").merged(options))


def sized(info: RasterInfo, height: int, width: int) -> RasterInfo:
    """``info`` with another size (the grid reads nothing but the header)."""
    return dataclasses.replace(info, height=height, width=width)


def span(window: Window) -> tuple[float, float, float, float]:
    """``(row0, row1, col0, col1)`` of a window."""
    return window.row_off, window.row_off + window.height, window.col_off, window.col_off + window.width


def cover_count(grid: TileGrid, height: int, width: int) -> np.ndarray:
    """How many cores hold each source pixel (asserting that no core is empty unless working
    pixels are finer than source pixels)."""
    cover = np.zeros((height, width), np.int32)
    for tile in grid:
        w = tile.core_window(height, width)
        assert (w.width > 0 and w.height > 0) or grid.scale < 1
        cover[int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)] += 1
    return cover


SIZES = [(1, 1), (31, 40), (96, 96), (97, 95), (150, 230), (233, 1000), (1024, 1025), (1900, 700)]
TILINGS = [(32, 0), (33, 15), (96, 16), (256, 64), (1024, 128)]
GSDS = [None, 0.74, 2.0, 3.3, 4.0, 5.0]  # the rasters have 2 m pixels: finer, same, coarser


def grids(info: RasterInfo, gsd: float | None) -> Iterator[tuple[TileGrid, tuple]]:
    """A grid for each of SIZES x TILINGS at ``gsd`` (those of at most 2000 tiles, to stay quick)."""
    for (height, width), (tile_size, halo) in itertools.product(SIZES, TILINGS):
        grid = grid_for(sized(info, height, width), tile_size=tile_size, halo=halo, gsd=gsd)
        if len(grid) <= 2000:
            yield grid, (height, width, tile_size, halo, gsd)


class TestGrid:
    def test_native(self, ramp: Path) -> None:
        grid = grid_for(inspect_raster(ramp), tile_size=96, halo=16)
        assert (grid.tile_size, grid.context, grid.scale, grid.read_size) == (96, 16, 1.0, 96)
        assert (grid.halo, grid.core) == (16, 64)  # in source pixels
        # rows: 150 px need 2 tiles (cores of at most 80 at the edges), columns 230 px need 4
        assert (grid.rows, grid.cols) == (2, 4) and len(grid) == 8
        assert grid.y.starts == (0, 54) and grid.y.cuts == (0, 75, 150)
        assert grid.x.starts == (0, 45, 89, 134) and grid.x.cuts == (0, 70, 115, 159, 230)
        assert [(t.row, t.col) for t in grid][:5] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]

    def test_fewest_tiles(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        # A raster that fits in one tile is one tile (was 2 x 1 tiles with 768-pixel cores).
        grid = grid_for(sized(info, 934, 723))
        assert (grid.rows, grid.cols) == (1, 1)
        assert grid.model_pixels_per_image_pixel() == pytest.approx(1024**2 / (934 * 723))
        # n tiles carry n - 2 cores of tile - 2 halo and two edge cores of tile - halo.
        for length, n in [(1024, 1), (1025, 2), (1792, 2), (1793, 3), (2000, 3), (3000, 4), (8192, 11)]:
            assert grid_for(sized(info, length, 10)).rows == n, length

    @pytest.mark.parametrize("gsd", GSDS)
    def test_cores_cover_raster_exactly_once(self, ramp: Path, gsd: float | None) -> None:
        for grid, case in grids(inspect_raster(ramp), gsd):
            assert (cover_count(grid, *case[:2]) == 1).all(), case

    @pytest.mark.parametrize("gsd", GSDS)
    def test_tiles_inside_cores_inside_tiles(self, ramp: Path, gsd: float | None) -> None:
        for grid, case in grids(inspect_raster(ramp), gsd):
            height, width, tile_size, halo, _ = case
            for tile in grid:
                r0, r1, c0, c1 = span(tile.read_window)
                # inside the raster, but for a raster shorter than a tile (one tile from 0)
                assert r0 >= 0 and (r1 <= height or (grid.rows == 1 and r0 == 0)), case
                assert c0 >= 0 and (c1 <= width or (grid.cols == 1 and c0 == 0)), case
                rows, cols = tile.core_slices
                assert 0 <= rows.start < rows.stop <= tile_size and 0 <= cols.start < cols.stop <= tile_size
                # at least the halo of context wherever the raster goes on
                y, x = tile.start
                assert rows.start >= halo or y + rows.start == 0, case
                assert cols.start >= halo or x + cols.start == 0, case
                assert tile_size - rows.stop >= halo or y + rows.stop == grid.y.working, case
                assert tile_size - cols.stop >= halo or x + cols.stop == grid.x.working, case
                # the centres of the core's source pixels lie inside the read window
                k0, k1, l0, l1 = span(tile.core_window(height, width))
                assert r0 <= k0 + 0.5 and k1 - 0.5 <= r1 and c0 <= l0 + 0.5 and l1 - 0.5 <= c1, case

    def test_fewest_tiles_is_the_least_the_halo_rule_allows(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        for length, (tile_size, halo) in itertools.product(range(1, 400, 7), TILINGS):
            n = grid_for(sized(info, length, 1), tile_size=tile_size, halo=halo).rows
            # one tile less can carry at most 2 edge cores of tile - halo and n - 3 of tile - 2 halo
            fewer = tile_size if n == 2 else 2 * (tile_size - halo) + (n - 3) * (tile_size - 2 * halo)
            assert n == 1 or length > fewer, (length, tile_size, halo, n)

    def test_gsd_scales_source_pixels(self, ramp: Path) -> None:
        # 2 m pixels, gsd 4 m: one working pixel is two source pixels; 75 x 115 working pixels.
        grid = grid_for(inspect_raster(ramp), tile_size=96, halo=16, gsd=4.0)
        assert (grid.y.working, grid.x.working) == (75, 115)
        assert (grid.core, grid.halo, grid.read_size, grid.scale) == (128, 32, 192, 2.0)
        assert (grid.rows, grid.cols) == (1, 2)
        # 2 m pixels, gsd 3 m: 150 / 1.5 = 100 rows, 230 / 1.5 = 153.3 -> 153 columns spanning the raster
        grid = grid_for(inspect_raster(ramp), tile_size=96, halo=16, gsd=3.0)
        assert (grid.y.working, grid.x.working) == (100, 153)
        assert grid.y.scale == 1.5 and grid.x.scale == 230 / 153

    def test_the_grid_reads_only_its_options(self, ramp: Path) -> None:
        info, config = inspect_raster(ramp), SegmentConfig(model="none", tile_size=96, halo=16, gsd=3.0)
        assert make_grid(info, options_only(config, GridOptions)) == make_grid(info, config)

    def test_working_transform(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16, gsd=3.0)
        tile = Tile(0, 1, grid)
        origin = window_transform(tile.read_window, info.transform)
        assert tile.working_transform(info.transform).almost_equals(origin @ Affine.scale(230 / 153, 1.5))


class TestReadTile:
    def test_inside(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16)
        with rasterio.open(ramp) as ds:
            data, valid = read_tile(ds, info, Tile(1, 1, grid))
        assert data.shape == (4, 96, 96) and data.dtype == np.float32
        assert valid.all()
        # Working pixel (0, 0) is source pixel (row 54, col 45).
        assert data[0, 0, 0] == 1000 + 54 + 45
        assert data[3, 95, 95] == 4000 + 149 + 140

    def test_edge_tiles_end_at_the_raster_edge(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16)
        last = Tile(grid.rows - 1, grid.cols - 1, grid)
        with rasterio.open(ramp) as ds:
            data, valid = read_tile(ds, info, last)
        assert valid.all()
        assert data[0, 95, 95] == 1000 + HEIGHT - 1 + WIDTH - 1
        window = last.core_window(HEIGHT, WIDTH)
        assert span(window) == (75, HEIGHT, 159, WIDTH)
        assert last.core_slices == (slice(75 - 54, 96), slice(159 - 134, 96))

    def test_small_raster_is_padded_past_its_end(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=256, halo=64)
        assert len(grid) == 1
        tile = Tile(0, 0, grid)
        assert inside_part(tile, HEIGHT, WIDTH) == (Window(0, 0, WIDTH, HEIGHT), (slice(0, HEIGHT), slice(0, WIDTH)))
        with rasterio.open(ramp) as ds:
            data, valid = read_tile(ds, info, tile)
        assert valid[:HEIGHT, :WIDTH].all() and not valid[HEIGHT:].any() and not valid[:, WIDTH:].any()
        assert (data[:, HEIGHT:] == 0).all() and data[0, 0, 0] == 1000
        assert tile.core_slices == (slice(0, HEIGHT), slice(0, WIDTH))

    def test_core_of_native_is_a_view(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16)
        with rasterio.open(ramp) as ds:
            for tile in grid:
                data, _ = read_tile(ds, info, tile)
                core = core_of(tile, data[0], HEIGHT, WIDTH)
                assert np.shares_memory(core, data)
                np.testing.assert_array_equal(core, ds.read(1, window=tile.core_window(HEIGHT, WIDTH)))

    def test_gsd_round_trip(self, ramp: Path) -> None:
        info = inspect_raster(ramp)
        grid = grid_for(info, tile_size=96, halo=16, gsd=4.0)
        mask = np.zeros((HEIGHT, WIDTH), np.int32)
        for tile in grid:
            valid = np.zeros((96, 96), np.uint8)
            valid[inside_part(tile, HEIGHT, WIDTH)[1]] = 1
            core = core_of(tile, valid, HEIGHT, WIDTH)
            window = tile.core_window(HEIGHT, WIDTH)
            assert core.shape == (int(window.height), int(window.width)) and core.dtype == np.uint8
            r0, r1, c0, c1 = (int(v) for v in span(window))
            mask[r0:r1, c0:c1] += core
        assert (mask == 1).all()  # every source pixel came from inside the raster, once

    @pytest.mark.parametrize("gsd", [3.0, 3.3, 4.0, 1.3])
    def test_gsd_tiles_equal_the_full_grid_read(self, noise: Path, gsd: float) -> None:
        # Issue 9 item 6: each tile (edge tiles included) is the same area of a read of the whole
        # raster resampled to the working grid, pixel for pixel; no half-pixel shifts at the borders.
        info = inspect_raster(noise)
        for tile_size, halo in [(40, 8), (256, 64)]:
            grid = grid_for(info, tile_size=tile_size, halo=halo, gsd=gsd)
            assert grid.scale != 1.0
            with rasterio.open(noise) as ds:
                shape = (4, grid.y.working, grid.x.working)
                full = ds.read(out_shape=shape, resampling=Resampling.bilinear).astype(np.float32)
                for tile in grid:
                    data, valid = read_tile(ds, info, tile)
                    (y, x), (rows, cols) = tile.start, inside_part(tile, HEIGHT, WIDTH)[1]
                    np.testing.assert_array_equal(data[:, rows, cols], full[:, y : y + rows.stop, x : x + cols.stop])
                    assert valid[rows, cols].all() and valid.sum() == rows.stop * cols.stop

    @pytest.mark.parametrize("gsd", [3.3, 1.3])
    def test_gsd_cores_do_not_depend_on_the_tile(self, noise: Path, gsd: float) -> None:
        # A core mapped back to source pixels is the full working grid mapped back, whichever tile
        # it came from: nearest takes the working pixel under each source pixel's centre, linear
        # interpolates at the centre (clamped to the raster's first and last working pixel).
        info = inspect_raster(noise)
        grid = grid_for(info, tile_size=40, halo=8, gsd=gsd)
        working = np.random.default_rng(1).random((grid.y.working, grid.x.working))
        centre_y = (np.arange(HEIGHT) + 0.5) / grid.y.scale
        centre_x = (np.arange(WIDTH) + 0.5) / grid.x.scale
        nearest = working[centre_y.astype(int)][:, centre_x.astype(int)]
        at = np.meshgrid(np.clip(centre_y - 0.5, 0, grid.y.working - 1), np.clip(centre_x - 0.5, 0, grid.x.working - 1),
                         indexing="ij")
        linear = ndimage.map_coordinates(working, at, order=1)
        got_nearest, got_linear = np.full((2, HEIGHT, WIDTH), np.nan)
        for tile in grid:
            y, x = tile.start
            array = np.full((40, 40), np.nan)  # padding must never leak into a core
            rows, cols = inside_part(tile, HEIGHT, WIDTH)[1]
            array[rows, cols] = working[y : y + rows.stop, x : x + cols.stop]
            r0, r1, c0, c1 = (int(v) for v in span(tile.core_window(HEIGHT, WIDTH)))
            got_nearest[r0:r1, c0:c1] = core_of(tile, array, HEIGHT, WIDTH)
            got_linear[r0:r1, c0:c1] = core_of(tile, array, HEIGHT, WIDTH, nearest=False)
        np.testing.assert_array_equal(got_nearest, nearest)
        np.testing.assert_allclose(got_linear, linear, rtol=0, atol=1e-12)

    def test_nodata_pixels_invalid(self, tmp_path: Path) -> None:
        data = np.full((4, 40, 40), 9, np.uint8)
        data[:, 5:10, 5:10] = 0
        path = write_raster(tmp_path / "holes.tif", data)
        info = inspect_raster(path)
        grid = grid_for(info, tile_size=32, halo=0)
        with rasterio.open(path) as ds:
            _, valid = read_tile(ds, info, Tile(0, 0, grid))
        assert valid.sum() == 32 * 32 - 25
