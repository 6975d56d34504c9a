"""Whole-image radiometry: index choice, index values, nodata-aware statistics, RGB composite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.coarse import CoarseRule
from samgeo_pipeline.radiometry import ImageStats, choose_composite, compute_stats, to_rgb8
from samgeo_pipeline.raster import inspect_raster
from tests.scenes import disc, rgbn_scene, write_raster


def stats_of(path: Path, **options: object) -> ImageStats:
    config = SegmentConfig(model="none").merged(options)
    info = inspect_raster(path, config.bands, config.nodata)
    with rasterio.open(path) as ds:
        return compute_stats(ds, info, config)


@pytest.fixture
def lake_scene(tmp_path: Path) -> Path:
    """200x200 RGBN uint8: a lake (r=50) and a 20-column nodata margin, nodata 0."""
    water = disc((200, 200), (100, 110), 50)
    nodata = np.zeros((200, 200), bool)
    nodata[:, :20] = True
    return write_raster(tmp_path / "lake.tif", rgbn_scene(water, nodata))


class TestComputeStats:
    def test_coarse_rule_separates_land_and_water(self, lake_scene: Path) -> None:
        stats = stats_of(lake_scene)
        assert stats.coarse.method == "ndwi" and stats.coarse.threshold == 0.0
        assert stats.band_names == ("red", "green", "blue", "nir")
        assert stats.coarse.separability > 0.8
        lake_share = np.pi * 50**2 / (200 * 180)  # of the valid pixels
        assert stats.coarse.water_fraction == pytest.approx(lake_share, rel=0.05)
        assert stats.valid_fraction == pytest.approx(0.9)
        assert stats.composite == ("red", "green", "blue")

    def test_nodata_excluded_from_percentiles(self, lake_scene: Path) -> None:
        stats = stats_of(lake_scene, percentiles=(0, 100))
        # Every valid value was clipped to >= 1; nodata (0) must not be the minimum.
        assert min(stats.low) >= 1
        assert all(h > lo for lo, h in zip(stats.low, stats.high))

    def test_nodata_override(self, lake_scene: Path) -> None:
        with_file_nodata = stats_of(lake_scene)
        without = stats_of(lake_scene, nodata=-1.0)  # no pixel equals -1: the margin counts as data
        assert with_file_nodata.valid_fraction == pytest.approx(0.9)
        assert without.valid_fraction == 1.0

    def test_fixed_threshold(self, lake_scene: Path) -> None:
        assert stats_of(lake_scene, threshold=0.25).coarse.threshold == 0.25

    def test_rgb_method_without_nir(self, lake_scene: Path) -> None:
        stats = stats_of(lake_scene, bands="rgb")
        assert stats.coarse.method == "rgb" and stats.coarse.threshold is None
        assert 0 < stats.coarse.grey_seed <= stats.coarse.grey_max <= 0.5

    def test_all_nodata(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "void.tif", np.zeros((4, 64, 64), np.uint8))
        with pytest.raises(InputError, match=r"void.tif: every pixel is nodata.*; nothing to segment"):
            stats_of(path)

    def test_decimated_read_agrees(self, lake_scene: Path) -> None:
        full, small = stats_of(lake_scene), stats_of(lake_scene, stats_size=100)
        assert small.coarse.water_fraction == pytest.approx(full.coarse.water_fraction, abs=0.02)
        assert small.valid_fraction == pytest.approx(full.valid_fraction, abs=0.01)

    def test_to_dict(self, lake_scene: Path) -> None:
        values = stats_of(lake_scene).to_dict()
        assert values["index"] == "ndwi" and values["composite"] == ["red", "green", "blue"]
        assert values["coarse"]["method"] == "ndwi" and values["coarse"]["threshold"] == 0.0
        assert len(values["low"]) == len(values["high"]) == 4


class TestComposite:
    @pytest.mark.parametrize(
        ("names", "expected"),
        [
            (["red", "green", "blue", "nir"], ("red", "green", "blue")),
            (["red", "nir", "swir", "green"], ("swir", "nir", "red")),
            (["green", "red", "nir"], ("nir", "red", "green")),
            (["green", "nir", "swir"], ("swir", "nir", "green")),
            (["green", "nir"], ("green", "nir", "green")),
        ],
    )
    def test_choose(self, names: list[str], expected: tuple[str, str, str]) -> None:
        assert choose_composite(names) == expected

    def test_to_rgb8(self) -> None:
        stats = ImageStats(
            band_names=("nir", "red", "green", "blue"),
            low=(0.0, 10.0, 20.0, 30.0),
            high=(100.0, 110.0, 120.0, 130.0),
            coarse=CoarseRule("ndwi", ("nir", "red", "green", "blue"), threshold=0.0),
            valid_fraction=1.0,
            composite=("red", "green", "blue"),
        )
        data = np.zeros((4, 1, 4), np.float32)
        data[1, 0] = [10, 60, 110, 500]  # red: low, middle, high, above
        data[2, 0] = 20
        data[3, 0] = [0, 130, 130, 130]  # blue: below low, high...
        valid = np.array([[True, True, True, False]])
        rgb = to_rgb8(data, valid, stats)
        assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
        np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255, 0])  # invalid -> 0
        np.testing.assert_array_equal(rgb[0, :, 1], [0, 0, 0, 0])
        np.testing.assert_array_equal(rgb[0, :, 2], [0, 255, 255, 0])
