"""Whole-image radiometry: index choice, index values, nodata-aware statistics, RGB composite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.radiometry import (
    ImageStats,
    choose_composite,
    compute_stats,
    resolve_index,
    to_rgb8,
    water_index,
)
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


class TestResolveIndex:
    @pytest.mark.parametrize(
        ("names", "expected"),
        [
            (["red", "green", "blue", "nir", "swir"], "mndwi"),
            (["green", "swir"], "mndwi"),
            (["red", "green", "blue", "nir"], "ndwi"),
            (["green", "nir"], "ndwi"),
            (["red", "green", "blue"], "hsv"),
        ],
    )
    def test_auto(self, names: list[str], expected: str) -> None:
        assert resolve_index("auto", names) == expected

    def test_auto_impossible(self) -> None:
        with pytest.raises(InputError, match=r"no water index possible with bands \['nir', 'red'\]"):
            resolve_index("auto", ["red", "nir"])

    def test_explicit(self) -> None:
        assert resolve_index("ndwi", ["red", "green", "blue", "nir", "swir"]) == "ndwi"
        assert resolve_index("hsv", ["red", "green", "blue", "nir"]) == "hsv"

    def test_explicit_missing_band(self) -> None:
        with pytest.raises(InputError, match=r"index mndwi needs band\(s\) \['swir'\]; map them with --bands"):
            resolve_index("mndwi", ["red", "green", "blue", "nir"])


class TestWaterIndex:
    def test_ndwi_and_mndwi(self) -> None:
        data = np.array([[[60.0, 0.0]], [[20.0, 0.0]], [[40.0, 5.0]]], np.float32)  # green, nir, swir
        names = ["green", "nir", "swir"]
        np.testing.assert_allclose(water_index(data, names, "ndwi"), [[0.5, 0.0]])
        np.testing.assert_allclose(water_index(data, names, "mndwi"), [[0.2, -1.0]])
        assert water_index(data, names, "ndwi").dtype == np.float32

    def test_range_with_negative_reflectance(self) -> None:
        # Reflectance x 10000 may be negative (Cellula chips): the index stays in [-1, 1] and finite.
        data = np.array([[[-5.0, 100.0, 3.0]], [[10.0, -100.0, -3.0]]], np.float32)
        result = water_index(data, ["green", "nir"], "ndwi")
        assert np.isfinite(result).all() and (np.abs(result) <= 1).all()
        assert result[0, 1] == 0.0 and result[0, 2] == 0.0  # sum 0


class TestComputeStats:
    def test_otsu_separates_land_and_water(self, lake_scene: Path) -> None:
        stats = stats_of(lake_scene)
        assert stats.index == "ndwi"
        assert stats.band_names == ("red", "green", "blue", "nir")
        # NDWI of land ~ -0.21, of water ~ +0.45: Otsu falls between them.
        assert 0.0 <= stats.threshold < 0.4
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
        assert stats_of(lake_scene, threshold=0.25).threshold == 0.25

    def test_otsu_clipped_for_a_scene_without_water(self, tmp_path: Path) -> None:
        # Land and bright cloud: Otsu would split them below 0; the clip keeps the threshold >= 0.
        image = rgbn_scene(np.zeros((100, 100), bool))
        image[:, :50, :50] = 230  # cloud: NDWI ~ 0 - small
        path = write_raster(tmp_path / "dry.tif", image)
        stats = stats_of(path)
        assert stats.threshold == 0.0
        stats = stats_of(path, otsu_range=(-1.0, 0.5))
        assert stats.threshold < 0.0

    def test_hsv_has_no_threshold(self, lake_scene: Path) -> None:
        stats = stats_of(lake_scene, bands="rgb")
        assert stats.index == "hsv" and stats.threshold is None

    def test_all_nodata(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "void.tif", np.zeros((4, 64, 64), np.uint8))
        with pytest.raises(InputError, match=r"void.tif: every pixel is nodata.*; nothing to segment"):
            stats_of(path)

    def test_decimated_read_agrees(self, lake_scene: Path) -> None:
        full, small = stats_of(lake_scene), stats_of(lake_scene, stats_size=100)
        assert small.threshold == pytest.approx(full.threshold, abs=0.05)
        assert small.valid_fraction == pytest.approx(full.valid_fraction, abs=0.01)

    def test_to_dict(self, lake_scene: Path) -> None:
        values = stats_of(lake_scene).to_dict()
        assert values["index"] == "ndwi" and values["composite"] == ["red", "green", "blue"]
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
            index="ndwi",
            threshold=0.0,
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


@pytest.mark.parametrize("threshold", [-0.6, -0.05, 0.0, 0.12, 0.5, 0.95, 1.0, -1.5])
def test_water_index_above_equals_index_comparison(threshold):
    from samgeo_pipeline.radiometry import water_index, water_index_above

    rng = np.random.default_rng(7)
    data = rng.integers(-500, 4000, (2, 200, 300)).astype(np.float32)  # negative reflectances too
    data[:, :10, :10] = 0  # zero sums
    data[1, 10:20, :10] = -data[0, 10:20, :10]
    names = ["green", "nir"]
    index = water_index(data, names, "ndwi")
    differ = water_index_above(data, names, "ndwi", threshold) != (index > threshold)
    # Only exact ties (index == threshold up to float rounding) may land on either side.
    assert np.all(np.abs(index[differ] - threshold) < 1e-6)
