"""Whole-image radiometry: index choice, index values, nodata-aware statistics, RGB composite."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.raster import inspect_raster, nodata_valid, read_decimated
from samgeo_pipeline.water.coarse import CoarseRule, fit_rule
from samgeo_pipeline.water.radiometry import (
    ImageStats,
    RadiometryOptions,
    StatsOptions,
    band_percentiles,
    choose_composite,
    compute_stats,
    resolve_composite,
    source_dtype,
    stats_from_array,
    to_rgb8,
)
from tests.scenes import disc, options_only, rgbn_scene, write_raster


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
        assert all(h > lo for lo, h in zip(stats.low, stats.high, strict=True))

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
        stats = stats_of(lake_scene)
        assert stats.to_dict() == {
            "band_names": ["red", "green", "blue", "nir"],
            "low": list(stats.low),
            "high": list(stats.high),
            "index": "ndwi",
            "coarse": stats.coarse.to_dict(),
            "valid_fraction": stats.valid_fraction,
            "composite": ["red", "green", "blue"],
        }
        assert stats.coarse.to_dict()["method"] == "ndwi" and stats.coarse.to_dict()["threshold"] == 0.0
        assert len(stats.low) == len(stats.high) == 4

    def test_the_statistics_read_only_their_options(self, lake_scene: Path) -> None:
        config = SegmentConfig(model="none", stats_size=128, percentiles=(5.0, 95.0), min_area=30)
        info = inspect_raster(lake_scene)
        with rasterio.open(lake_scene) as ds:
            expected = compute_stats(ds, info, config)
            assert compute_stats(ds, info, options_only(config, StatsOptions)) == expected
            data = ds.read().astype(np.float32)
        names, valid = tuple(info.band_names), data.any(axis=0)
        only = options_only(config, RadiometryOptions)
        assert stats_from_array(data, valid, names, only) == stats_from_array(data, valid, names, config)

    def test_constant_band_gets_a_unit_span(self, lake_scene: Path) -> None:
        """A band with one value would divide by zero in the stretch: ``high`` becomes ``low + 1``."""
        with rasterio.open(lake_scene) as ds:
            data = ds.read().astype(np.float32)
        data[2] = 40.0
        stats = stats_from_array(data, data.any(axis=0), ("red", "green", "blue", "nir"), SegmentConfig())
        assert (stats.low[2], stats.high[2]) == (40.0, 41.0)
        assert all(h > lo + 1 for i, (lo, h) in enumerate(zip(stats.low, stats.high, strict=True)) if i != 2)

    def test_rule_gets_the_configured_window_and_area(self, lake_scene: Path) -> None:
        with rasterio.open(lake_scene) as ds:
            data = ds.read().astype(np.float32)
        valid, names = data.any(axis=0), ("red", "green", "blue")
        config = SegmentConfig(texture_window=7, min_area=5000)  # no lake is that big: no water
        stats = stats_from_array(data[:3], valid, names, config)
        assert stats.coarse.texture_window == 7
        expected = fit_rule(data[:3], valid, names, "auto", None, 7, 5000)
        assert stats.coarse.offset == pytest.approx(expected.offset)  # float32 vs float64 percentile
        assert replace(stats.coarse, offset=expected.offset) == expected
        assert stats.coarse.water_fraction == 0.0

    @pytest.mark.parametrize("dtype", ["uint8", "uint16"])
    def test_source_dtype(self, dtype: str, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "two.tif", np.ones((2, 8, 8), dtype))
        with rasterio.open(path) as ds:
            assert source_dtype(ds, inspect_raster(path, "green=2,nir=1")) == dtype


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

    def test_resolve(self) -> None:
        names = ("red", "green", "blue", "nir")
        assert resolve_composite("auto", names) == ("red", "green", "blue")
        assert resolve_composite("nir,red,green", names) == ("nir", "red", "green")
        message = (
            "scene.tif: composite swir,nir,red needs band(s) ['swir'], which are not mapped "
            "(mapped: red, green, blue, nir); map them with --bands"
        )
        with pytest.raises(InputError) as raised:
            resolve_composite("swir,nir,red", names, "scene.tif")
        assert str(raised.value) == message
        with pytest.raises(InputError, match=r"^image: composite"):
            stats_from_array(np.ones((2, 4, 4), np.float32), np.ones((4, 4), bool), ("green", "nir"),
                             SegmentConfig(composite="red,green,nir"))

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


def _stats(band_names: tuple[str, ...], low: tuple[float, ...], high: tuple[float, ...],
           composite: tuple[str, str, str]) -> ImageStats:
    return ImageStats(band_names, low, high, CoarseRule("ndwi", band_names, threshold=0.0), 1.0, composite)


class TestFastPaths:
    """The speed-ups of issue 8 give exactly what the plain NumPy code gave."""

    @pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
    def test_rgb8_lookup_table_equals_float_path(self, dtype: str) -> None:
        rng = np.random.default_rng(3)
        limits = np.iinfo(dtype)
        native = rng.integers(limits.min, limits.max, (4, 37, 53), dtype=dtype, endpoint=True)
        native[:, 0, :4] = [[limits.min], [limits.max], [0], [1]]  # the extremes pass through the table
        valid = rng.random((37, 53)) > 0.2
        span = float(limits.max) - float(limits.min)
        low = tuple(float(limits.min) + span * f for f in (0.1, 0.03, 0.25, 0.0))
        high = tuple(lo + span * f for lo, f in zip(low, (0.5, 0.9, 0.33, 1e-4), strict=True))  # incl. a very steep one
        stats = _stats(("blue", "nir", "green", "red"), low, high, ("nir", "red", "blue"))
        data = native.astype(np.float32)
        expected = to_rgb8(data, valid, stats)
        assert expected.dtype == to_rgb8(native, valid, stats).dtype == np.uint8
        np.testing.assert_array_equal(to_rgb8(native, valid, stats), expected)
        np.testing.assert_array_equal(to_rgb8(native, np.ones_like(valid), stats),
                                      to_rgb8(data, np.ones_like(valid), stats))

    def test_rgb8_of_other_dtypes_is_that_of_their_float32_copy(self) -> None:
        data = np.linspace(-5, 300, 4 * 6 * 7, dtype=np.float64).reshape(4, 6, 7)
        valid = np.ones((6, 7), bool)
        valid[2] = False
        stats = _stats(("red", "green", "blue", "nir"), (0.0,) * 4, (255.0,) * 4, ("red", "green", "blue"))
        expected = to_rgb8(data.astype(np.float32), valid, stats)
        assert 0 < expected.mean() < 255
        np.testing.assert_array_equal(to_rgb8(data, valid, stats), expected)
        np.testing.assert_array_equal(to_rgb8(data.astype(np.int32), valid, stats),
                                      to_rgb8(data.astype(np.int32).astype(np.float32), valid, stats))

    @pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
    def test_percentiles_from_value_counts_equal_numpy(self, dtype: str) -> None:
        rng = np.random.default_rng(4)
        limits = np.iinfo(dtype)
        for trial in range(60):
            shape = (int(rng.integers(1, 5)), int(rng.integers(1, 40)), int(rng.integers(1, 40)))
            top = int(rng.choice([limits.max, limits.min + 3, limits.min + 40]))
            data = rng.integers(limits.min, top, shape, endpoint=True).astype(np.float32)
            valid = rng.random(shape[1:]) < rng.choice([1.0, 0.5, 0.02])
            valid.flat[trial % valid.size] = True
            qs = (0.1, float(rng.uniform(0, 50)), float(rng.uniform(50, 100)), 0.0, 100.0)
            expected = np.percentile(data[:, valid], qs, axis=1)
            got = band_percentiles(data, valid, qs, dtype)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)

    def test_percentiles_large_read(self) -> None:
        rng = np.random.default_rng(5)
        data = rng.normal(100, 30, (3, 700, 900)).clip(0, 255).astype(np.uint8).astype(np.float32)
        valid = rng.random((700, 900)) > 0.1
        qs = (0.1, 2.0, 98.0)
        np.testing.assert_array_equal(band_percentiles(data, valid, qs, "uint8"),
                                      np.percentile(data[:, valid], qs, axis=1))

    @pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
    def test_stats_with_source_dtype_unchanged(self, dtype: str, lake_scene: Path) -> None:
        with rasterio.open(lake_scene) as ds:
            native = ds.read()
        data = native.astype(dtype).astype(np.float32) * (3 if dtype == "uint16" else 1)
        valid = native.any(axis=0)
        config = SegmentConfig(model="none")
        names = ("red", "green", "blue", "nir")
        assert stats_from_array(data, valid, names, config, source_dtype=dtype) == stats_from_array(
            data, valid, names, config
        )

    @pytest.mark.parametrize("nodata", [0, 7, None, 300, -1.0, 2.5])
    def test_nodata_valid_integer_path(self, nodata: float | None) -> None:
        rng = np.random.default_rng(6)
        native = rng.integers(0, 9, (3, 20, 30), dtype=np.uint8)
        native[:, :5] = 7
        native[:, 5:9] = 0
        expected = np.ones((20, 30), bool)
        usable = nodata is not None and float(nodata).is_integer() and 0 <= nodata <= 255
        if usable:
            expected = ~(native == np.uint8(nodata)).all(axis=0)
        np.testing.assert_array_equal(nodata_valid(native, nodata), expected)

    def test_threaded_decimated_read_equals_serial(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(7)
        image = rng.integers(0, 255, (4, 300, 410), dtype=np.uint8)
        image[:, :, :13] = 0
        path = write_raster(tmp_path / "noise.tif", image)
        info = inspect_raster(path)
        with rasterio.open(path) as ds:
            for resampling in (Resampling.nearest, Resampling.average):
                serial = read_decimated(ds, info, (97, 133), resampling, chunk=64)
                threaded = read_decimated(ds, info, (97, 133), resampling, chunk=64, workers=3)
                np.testing.assert_array_equal(threaded[0], serial[0])
                np.testing.assert_array_equal(threaded[1], serial[1])


def test_statistics_do_not_depend_on_the_files_overviews(tmp_path: Path) -> None:
    """A decimated read would come from overviews, whose values their resampling made: not used."""
    rng = np.random.default_rng(11)
    image = rng.integers(1, 255, (4, 256, 256), dtype=np.uint8)
    image[3, 40:140, 30:200] = 5  # dark NIR: a lake
    plain = write_raster(tmp_path / "plain.tif", image)
    with_overviews = write_raster(tmp_path / "overviews.tif", image)
    with rasterio.open(with_overviews, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    config = SegmentConfig(stats_size=64)
    info = inspect_raster(with_overviews)
    with rasterio.open(with_overviews) as ds:
        assert ds.overviews(1) == [2, 4]
        got = compute_stats(ds, info, config)
        from_overview = ds.read(1, out_shape=(64, 64), resampling=Resampling.nearest)
    with rasterio.open(plain) as ds:
        expected = compute_stats(ds, inspect_raster(plain), config)
        full_resolution = ds.read(1, out_shape=(64, 64), resampling=Resampling.nearest)
    assert not np.array_equal(from_overview, full_resolution)  # GDAL does serve it from the overview
    assert got == expected
    with rasterio.open(with_overviews) as ds:
        for workers in (1, 3):
            data, _ = read_decimated(ds, info, (64, 64), Resampling.nearest, chunk=32, workers=workers)
            np.testing.assert_array_equal(data[0], full_resolution)
