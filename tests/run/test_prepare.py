"""Tiles read and prepared on reader threads (:mod:`samgeo_pipeline.run.prepare`): padding outside the raster,
the thread count, grid order whatever the threads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.run import prepare
from samgeo_pipeline.run.prepare import (
    PrefetchOptions,
    PreparedTile,
    PrepareOptions,
    ReaderOptions,
    prepare_tile,
    prepared_tiles,
    read_tile_native,
    read_workers,
)
from samgeo_pipeline.water.radiometry import compute_stats
from tests.scenes import options_only, write_raster


def test_a_tile_past_the_raster_is_padded_with_invalid_zeros(tmp_path: Path) -> None:
    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50) + 1
    info = inspect_raster(write_raster(tmp_path / "small.tif", data, nodata=None))
    (tile,) = make_grid(info, SegmentConfig(tile_size=64, halo=8))
    with rasterio.open(info.path) as ds:
        native, valid = read_tile_native(ds, info, tile)
    assert native.dtype == np.uint16 and native.shape == (3, 64, 64) and valid.shape == (64, 64)
    np.testing.assert_array_equal(native[:, :40, :50], data)
    assert not native[:, 40:].any() and not native[:, :, 50:].any()
    assert valid[:40, :50].all() and not valid[40:].any() and not valid[:, 50:].any()


def test_reader_threads_one_per_usable_cpu_at_most_32(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_workers(SegmentConfig(read_workers=3)) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert read_workers(SegmentConfig(read_workers=0)) == 32
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 7}, raising=False)
    assert read_workers(SegmentConfig(read_workers=0)) == 2

    def unavailable(pid: int) -> set[int]:
        raise OSError("no affinity here")

    monkeypatch.setattr(os, "sched_getaffinity", unavailable, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert read_workers(SegmentConfig(read_workers=0)) == 1


@pytest.mark.parametrize("workers", [1, 4])
def test_tiles_come_in_grid_order_as_prepared_one_by_one(tmp_path: Path, workers: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = write_demo_scene(tmp_path / "demo.tif", 300, 400)
    config = SegmentConfig(model="none", tile_size=128, halo=16, read_workers=workers, prefetch=2)
    info = inspect_raster(path)
    grid = make_grid(info, config)
    with rasterio.open(path) as ds:
        stats = compute_stats(ds, info, config)
        expected = [prepare_tile(ds, info, stats, tile, config) for tile in grid]
    opened = []
    real_open = prepare.open_for_tiles
    monkeypatch.setattr(prepare, "open_for_tiles", lambda *a: opened.append(1) or real_open(*a))
    got = list(prepared_tiles(info, stats, grid, config))
    assert [(p.tile.row, p.tile.col) for p in got] == [(t.row, t.col) for t in grid] and len(got) > 4
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.coarse, b.coarse)
        np.testing.assert_array_equal(a.valid, b.valid)
    assert len(opened) == min(workers, grid.cols)  # one handle per vertical strip of the grid


def test_the_reader_reads_only_its_options(tmp_path: Path) -> None:
    path = write_demo_scene(tmp_path / "demo.tif", 200, 260)
    config = SegmentConfig(model="fake-sam", tile_size=128, halo=16, points=2, negatives=1, seed=4, read_workers=2,
                           prefetch=1)  # fmt: skip
    info = inspect_raster(path)
    grid = make_grid(info, config)
    with rasterio.open(path) as ds:
        stats = compute_stats(ds, info, config)
        expected = [prepare_tile(ds, info, stats, tile, config) for tile in grid]
        alone = [prepare_tile(ds, info, stats, tile, options_only(config, PrepareOptions)) for tile in grid]
    threaded = list(prepared_tiles(info, stats, grid, options_only(config, PrefetchOptions)))
    assert read_workers(options_only(config, ReaderOptions)) == 2
    assert any(p.prompts for p in expected) and all(p.rgb is not None for p in expected)
    for got in (alone, threaded):
        assert [summary(p) for p in got] == [summary(p) for p in expected]


def summary(prepared: PreparedTile) -> tuple[object, ...]:
    """A prepared tile as comparable values: its place, arrays and prompts."""
    prompts = [(p.points_xy.tolist(), p.labels.tolist(), p.area) for p in prepared.prompts]
    rgb = None if prepared.rgb is None else prepared.rgb.tobytes()
    return prepared.tile.row, prepared.tile.col, rgb, prepared.valid.tobytes(), prepared.coarse.tobytes(), prompts
