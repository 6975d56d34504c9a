"""Size limits of one input (:mod:`samgeo_pipeline.io.limits`), checked from the header alone.

The CLI runs over a huge VRT, a sparse TIFF and a full disk are in ``tests/test_security.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import SizeLimitError
from samgeo_pipeline.io import limits
from samgeo_pipeline.io.limits import LimitOptions, WorkFileOptions, check_free_disk, check_size, work_file_bytes
from samgeo_pipeline.io.raster import RasterInfo, inspect_raster
from tests.scenes import options_only, write_raster


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> RasterInfo:
    """A 120 x 100 pixel raster (width x height) of 2 m pixels."""
    path = tmp_path_factory.mktemp("limits") / "scene.tif"
    return inspect_raster(write_raster(path, np.ones((3, 100, 120), np.uint8)))


def test_within_the_limits_the_grid_comes_back(info: RasterInfo) -> None:
    grid = check_size(info, SegmentConfig(tile_size=64, halo=8))
    assert (grid.rows, grid.cols, len(grid)) == (2, 3, 6)
    assert len(check_size(info, SegmentConfig(tile_size=64, halo=8, max_pixels=12_000, max_tiles=6))) == 6


def test_too_many_source_pixels_or_tiles(info: RasterInfo) -> None:
    too_many = r"scene\.tif: 120 x 100 pixels \(1\.2e\+04\) exceed max_pixels=1\.2e\+04; .* --max-pixels"
    with pytest.raises(SizeLimitError, match=too_many):
        check_size(info, SegmentConfig(max_pixels=11_999))
    with pytest.raises(SizeLimitError, match=r"6 tiles \(2 x 3\) exceed max_tiles=5; .* raise --max-tiles"):
        check_size(info, SegmentConfig(tile_size=64, halo=8, max_tiles=5))


def test_a_gsd_too_fine_or_too_coarse(info: RasterInfo) -> None:
    with pytest.raises(SizeLimitError, match=r"--gsd 0\.1 makes a working grid of 4\.8e\+06 pixels, .*the file's pixel is 2 m"):
        check_size(info, SegmentConfig(gsd=0.1, max_pixels=1e6))
    # 10 m leaves 20 x 24 working pixels, under 32 on a side: 6.25 m leaves 32 x 38.4
    with pytest.raises(SizeLimitError, match=r"--gsd 10 makes a working grid of 20 x 24 pixels .* at most 6\.25$"):
        check_size(info, SegmentConfig(gsd=10.0))
    with pytest.raises(SizeLimitError, match=r"--gsd 7 makes a working grid of 29 x 34 pixels .* at most 6\.25$"):
        check_size(info, SegmentConfig(gsd=7.0))  # one side short is enough
    check_size(info, SegmentConfig(gsd=6.25, tile_size=64, halo=8))


def test_work_files_against_the_free_disk(info: RasterInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert work_file_bytes(info, SegmentConfig()) == 12_000
    assert work_file_bytes(info, SegmentConfig(probability=True)) == 60_000  # plus float32 probabilities
    monkeypatch.setattr(limits, "free_space", lambda folder: 59_999)
    check_free_disk(info, SegmentConfig(), tmp_path)
    monkeypatch.setattr(limits, "free_space", lambda folder: 60_000)
    check_free_disk(info, SegmentConfig(probability=True), tmp_path)  # exactly enough
    monkeypatch.setattr(limits, "free_space", lambda folder: 59_999)
    with pytest.raises(SizeLimitError, match=r"work files need about 6e-05 GB but .* has 6e-05 GB free; free some space"):
        check_free_disk(info, SegmentConfig(probability=True), tmp_path)


def test_the_limits_read_only_their_options(info: RasterInfo, tmp_path: Path) -> None:
    config = SegmentConfig(tile_size=64, halo=8, gsd=2.5, max_tiles=4, probability=True)
    with pytest.raises(SizeLimitError, match=r"4 tiles \(2 x 2\) exceed max_tiles=3"):
        check_size(info, options_only(config.merged({"max_tiles": 3}), LimitOptions))
    assert check_size(info, options_only(config, LimitOptions)) == check_size(info, config)
    assert work_file_bytes(info, options_only(config, WorkFileOptions)) == 60_000
    check_free_disk(info, options_only(config, WorkFileOptions), tmp_path)
