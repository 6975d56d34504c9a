"""Inputs: expanding paths, inspecting headers, reading windows with their validity."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from samgeo_pipeline.errors import InputError, NotGeoreferencedWarning
from samgeo_pipeline.io.ground import source_resolution
from samgeo_pipeline.io.raster import (
    as_float32,
    decimated_shape,
    expand_inputs,
    inspect_raster,
    nodata_valid,
    read_bands,
    window_str,
)
from tests.scenes import UTM_TRANSFORM, write_raster


@pytest.fixture
def rgbn(tmp_path: Path) -> Path:
    """32x48 4-band uint8 raster, values 10 * band + column % 10, nodata 0 on row 0."""
    data = np.empty((4, 32, 48), np.uint8)
    for b in range(4):
        data[b] = 10 * (b + 1) + np.arange(48)[None, :] % 10
    data[:, 0, :] = 0
    return write_raster(tmp_path / "rgbn.tif", data)


class TestExpandInputs:
    def test_directory_recursive_rasters_only(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        for name in ("a.tif", "sub/b.TIFF", "sub/c.vrt", "notes.txt", "sub/d.png"):
            (tmp_path / name).write_bytes(b"x")
        found = expand_inputs([tmp_path])
        assert [p.name for p in found] == ["a.tif", "b.TIFF", "c.vrt"]
        assert all(p.is_absolute() for p in found)

    def test_glob(self, tmp_path: Path) -> None:
        for name in ("a.tif", "b.tif", "c.txt"):
            (tmp_path / name).write_bytes(b"x")
        assert [p.name for p in expand_inputs([str(tmp_path / "*")])] == ["a.tif", "b.tif"]

    def test_explicit_file_kept_whatever_suffix(self, tmp_path: Path) -> None:
        path = tmp_path / "scene.dat"
        path.write_bytes(b"x")
        assert expand_inputs([path]) == [path.resolve()]

    def test_duplicates_dropped_order_kept(self, tmp_path: Path) -> None:
        for name in ("b.tif", "a.tif"):
            (tmp_path / name).write_bytes(b"x")
        found = expand_inputs([tmp_path / "b.tif", tmp_path, str(tmp_path / "a.tif")])
        assert [p.name for p in found] == ["b.tif", "a.tif"]

    def test_missing(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match=r"missing.tif: no such file or directory"):
            expand_inputs([tmp_path / "missing.tif"])

    def test_nothing_matches(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_bytes(b"x")
        with pytest.raises(InputError, match=r"matches no raster file \(.tif"):
            expand_inputs([tmp_path])
        with pytest.raises(InputError, match=r"matches no raster file"):
            expand_inputs([str(tmp_path / "*.tif")])


class TestInspect:
    def test_header(self, rgbn: Path) -> None:
        info = inspect_raster(rgbn)
        assert (info.width, info.height, info.count, info.dtype) == (48, 32, 4, "uint8")
        assert info.crs.to_epsg() == 32633
        assert info.transform == UTM_TRANSFORM
        assert info.nodata == 0
        assert info.georeferenced
        assert info.band_names == ["red", "green", "blue", "nir"]
        assert info.band_indexes == [1, 2, 3, 4]

    def test_nodata_override(self, rgbn: Path) -> None:
        assert inspect_raster(rgbn, nodata=-1.0).nodata == -1.0

    def test_band_mapping(self, rgbn: Path) -> None:
        info = inspect_raster(rgbn, "green=2,nir=4")
        assert info.band_names == ["green", "nir"] and info.band_indexes == [2, 4]

    def test_missing_band(self, rgbn: Path) -> None:
        with pytest.raises(InputError, match=r"rgbn.tif: band nir=9 does not exist \(the file has 4 band\(s\)\)"):
            inspect_raster(rgbn, "green=2,nir=9")

    def test_auto_impossible(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "two.tif", np.ones((2, 8, 8), np.uint8))
        with pytest.raises(InputError, match=r"^.*two.tif: cannot guess the band order of a 2-band file"):
            inspect_raster(path)

    def test_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.tif"
        path.touch()
        with pytest.raises(InputError, match=r"empty.tif: empty file \(0 bytes\)"):
            inspect_raster(path)

    def test_not_a_raster(self, tmp_path: Path) -> None:
        path = tmp_path / "text.tif"
        path.write_text("not a raster\n")
        with pytest.raises(InputError, match=r"text.tif: not a readable raster"):
            inspect_raster(path)

    def test_no_such_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match=r"gone.tif: no such file"):
            inspect_raster(tmp_path / "gone.tif")

    def test_not_georeferenced_warns(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "plain.tif", np.ones((4, 8, 8), np.uint8), crs=None)
        with pytest.warns(NotGeoreferencedWarning, match=r"plain.tif: no CRS or geotransform"):
            info = inspect_raster(path)
        assert not info.georeferenced and info.crs is None
        assert source_resolution(info) == 1.0

    def test_georeferenced_does_not_warn(self, rgbn: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            inspect_raster(rgbn)

    def test_mask_band_detected(self, tmp_path: Path) -> None:
        data = np.full((4, 8, 8), 50, np.uint8)
        path = write_raster(tmp_path / "masked.tif", data, nodata=None, photometric="minisblack")
        assert not inspect_raster(path).has_mask
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(np.pad(np.full((8, 4), 255, np.uint8), ((0, 0), (0, 4))))
        assert inspect_raster(path).has_mask

    def test_unmapped_alpha_is_a_mask(self, tmp_path: Path) -> None:
        # GDAL writes a 4-band uint8 GeoTIFF as RGB + alpha by default.
        path = write_raster(tmp_path / "rgba.tif", np.full((4, 8, 8), 50, np.uint8), nodata=None)
        with rasterio.open(path) as ds:
            assert ds.colorinterp[3] == ColorInterp.alpha
        assert inspect_raster(path, "rgb").has_mask

    def test_mapped_alpha_is_data(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "rgbn.tif", np.full((4, 8, 8), 50, np.uint8), nodata=None)
        assert not inspect_raster(path, "naip").has_mask


class TestReadBands:
    def test_values_and_nodata(self, rgbn: Path) -> None:
        info = inspect_raster(rgbn, "green=2,nir=4")
        with rasterio.open(rgbn) as ds:
            data, valid = read_bands(ds, info, Window(2, 0, 10, 4))
        assert data.dtype == np.float32 and data.shape == (2, 4, 10)
        assert valid.dtype == bool and valid.shape == (4, 10)
        assert not valid[0].any() and valid[1:].all()
        np.testing.assert_array_equal(data[0, 1], 20 + np.arange(2, 12) % 10)
        np.testing.assert_array_equal(data[1, 1], 40 + np.arange(2, 12) % 10)

    def test_nodata_in_one_band_is_data(self, tmp_path: Path) -> None:
        """GDAL's per-band rule: deep water in NAIP has NIR = 0 (the nodata value) while R, G, B
        hold data; only a pixel where every mapped band is nodata is nodata."""
        data = np.full((4, 8, 8), 7, np.uint8)
        data[3, 2, 5] = 0  # NIR only: data
        data[:, 4, 4] = 0  # every band: nodata
        data[:3, 6, 6] = 0  # R, G, B nodata, NIR 7: data
        path = write_raster(tmp_path / "x.tif", data)
        with rasterio.open(path) as ds:
            values, valid = read_bands(ds, inspect_raster(path), Window(0, 0, 8, 8))
            _, valid_rgb = read_bands(ds, inspect_raster(path, "rgb"), Window(0, 0, 8, 8))
        assert valid.sum() == 63 and not valid[4, 4] and valid[2, 5] and valid[6, 6]
        assert values[3, 2, 5] == 0.0  # the value itself is kept
        assert valid_rgb.sum() == 62 and not valid_rgb[6, 6]  # NIR is not mapped: R, G, B all nodata

    def test_mask_band_when_no_nodata(self, tmp_path: Path) -> None:
        data = np.full((4, 8, 8), 50, np.uint8)
        path = write_raster(tmp_path / "masked.tif", data, nodata=None, photometric="minisblack")
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(np.pad(np.full((8, 4), 255, np.uint8), ((0, 0), (0, 4))))
        with rasterio.open(path) as ds:
            _, valid = read_bands(ds, inspect_raster(path), Window(0, 0, 8, 8))
        assert valid[:, :4].all() and not valid[:, 4:].any()

    def test_alpha_band_masks_unmapped(self, tmp_path: Path) -> None:
        data = np.full((4, 8, 8), 50, np.uint8)
        data[3, :, :3] = 0  # transparent
        path = write_raster(tmp_path / "rgba.tif", data, nodata=None)
        with rasterio.open(path) as ds:
            _, valid = read_bands(ds, inspect_raster(path, "rgb"), Window(0, 0, 8, 8))
        assert not valid[:, :3].any() and valid[:, 3:].all()

    def test_nir_of_zero_is_valid_when_band4_is_flagged_alpha(self, tmp_path: Path) -> None:
        # Dark water has NIR 0 in 8-bit imagery; GDAL's default alpha flag on band 4 must not
        # turn it into nodata when band 4 is mapped as NIR.
        data = np.full((4, 8, 8), 50, np.uint8)
        data[3, :, :3] = 0
        path = write_raster(tmp_path / "rgbn.tif", data, nodata=None)
        with rasterio.open(path) as ds:
            _, valid = read_bands(ds, inspect_raster(path, "naip"), Window(0, 0, 8, 8))
        assert valid.all()

    def test_float_nan_and_inf(self, tmp_path: Path) -> None:
        """NaN / inf in one band: the pixel keeps its other bands (that band reads 0); NaN in every
        band: nodata."""
        data = np.ones((4, 4, 4), np.float32)
        data[0, 0, 0] = np.nan
        data[1, 1, 1] = np.inf
        data[:, 3, 3] = np.nan
        path = write_raster(tmp_path / "f.tif", data, nodata=float("nan"))
        with rasterio.open(path) as ds:
            values, valid = read_bands(ds, inspect_raster(path), Window(0, 0, 4, 4))
        assert valid.sum() == 15 and not valid[3, 3] and valid[0, 0] and valid[1, 1]
        assert values[0, 0, 0] == 0.0 and values[1, 1, 1] == 0.0 and np.isfinite(values).all()

    def test_out_shape(self, rgbn: Path) -> None:
        info = inspect_raster(rgbn)
        with rasterio.open(rgbn) as ds:
            data, valid = read_bands(ds, info, Window(0, 0, 48, 32), out_shape=(16, 24))
        assert data.shape == (4, 16, 24) and valid.shape == (16, 24)


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [((1000, 500), 2048, (1000, 500)), ((4000, 2000), 2000, (2000, 1000)), ((3, 10000), 100, (1, 100))],
)
def test_decimated_shape(shape: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    assert decimated_shape(*shape, max_side) == expected


def test_window_str() -> None:
    assert window_str(Window(5, 10, 30, 20)) == "row 10, col 5, 20x30"


class TestExact:
    """Pixel-exact reads, validity rules and messages that a regression would change."""

    def test_mask_read_follows_window_and_out_shape(self, tmp_path: Path) -> None:
        data = np.full((3, 8, 8), 50, np.uint8)
        path = write_raster(tmp_path / "masked.tif", data, nodata=None, photometric="minisblack")
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 4:8] = 255
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(mask)
        info = inspect_raster(path, "rgb")
        with rasterio.open(path) as ds:
            _, valid = read_bands(ds, info, Window(4, 2, 4, 4))
            assert valid.all()  # the window lies inside the masked-in block
            _, valid = read_bands(ds, info, Window(0, 0, 8, 8), out_shape=(4, 4))
        np.testing.assert_array_equal(valid, mask[::2, ::2] > 0)

    def test_resampling_is_passed_to_the_read(self, rgbn: Path) -> None:
        """A 3x decimation: nearest takes each triple's middle column; average differs where the
        column pattern wraps from 9 to 0; the default is bilinear."""
        info = inspect_raster(rgbn)
        window, shape = Window(0, 8, 48, 24), (8, 16)
        with rasterio.open(rgbn) as ds:
            nearest, _ = read_bands(ds, info, window, shape, Resampling.nearest)
            average, _ = read_bands(ds, info, window, shape, Resampling.average)
            default, _ = read_bands(ds, info, window, shape)
            bilinear, _ = read_bands(ds, info, window, shape, Resampling.bilinear)
        np.testing.assert_array_equal(nearest[0, 0], 10 + np.arange(1, 48, 3) % 10)
        assert not np.array_equal(average, nearest)
        np.testing.assert_array_equal(default, bilinear)

    @pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
    def test_nodata_valid_per_band_rule(self, dtype: str) -> None:
        """Valid where ANY band differs from nodata, whichever band holds the data."""
        native = np.full((3, 2, 3), -1, dtype) if dtype != "uint8" else np.full((3, 2, 3), 255, dtype)
        nodata = float(native[0, 0, 0])
        native[0, 0, 0] = native[1, 0, 1] = native[2, 0, 2] = 7  # data in band 0, 1, 2 only
        np.testing.assert_array_equal(nodata_valid(native, nodata), [[True, True, True], [False, False, False]])
        np.testing.assert_array_equal(nodata_valid(native, None), np.ones((2, 3), bool))

    def test_nodata_valid_float_nan_and_value(self) -> None:
        native = np.ones((2, 1, 4), np.float32)
        native[:, 0, 0] = [np.nan, 6.0]  # NaN in one band: valid
        native[:, 0, 1] = [np.nan, np.inf]  # nothing finite: nodata
        native[:, 0, 2] = [5.0, np.nan]  # nodata value and NaN: nodata
        np.testing.assert_array_equal(nodata_valid(native, 5.0), [[True, False, False, True]])
        np.testing.assert_array_equal(nodata_valid(native, None), [[True, False, True, True]])

    @pytest.mark.parametrize(("dtype", "nodata", "usable"), [
        ("bool", 1, True), ("bool", 2, False), ("uint8", 255, True), ("uint8", 256, False),
        ("int16", -1, True), ("uint8", 1.5, False),
    ])
    def test_nodata_outside_the_dtype_is_ignored(self, dtype: str, nodata: float, usable: bool) -> None:
        native = np.ones((2, 2, 2), dtype)
        native[:, 0, 0] = 0
        expected = np.ones((2, 2), bool)
        if usable:
            expected = ~(native == np.asarray(nodata).astype(dtype)).all(axis=0)
        np.testing.assert_array_equal(nodata_valid(native, nodata), expected)

    def test_as_float32_in_place_and_finite(self) -> None:
        native = np.array([np.nan, np.inf, -np.inf, 2.5], np.float32)
        data = as_float32(native)
        assert data is native  # no copy (documented)
        np.testing.assert_array_equal(data, [0.0, 0.0, 0.0, 2.5])
        ints = np.array([1, 2], np.uint16)
        assert as_float32(ints).dtype == np.float32 and ints.dtype == np.uint16

    def test_inspect_keeps_the_path_and_names_it_once(self, rgbn: Path) -> None:
        info = inspect_raster(rgbn)
        assert info.path == rgbn and info.dtype == "uint8"
        with pytest.raises(InputError) as raised:
            inspect_raster(rgbn, "red=1,green=2,blue=3,nir=9")
        assert str(raised.value).startswith(f"{rgbn}: ") and str(raised.value).count(str(rgbn)) == 1

    def test_not_georeferenced_resolution_is_one(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "plain.tif", np.ones((3, 4, 4), np.uint8), crs=None, transform=None)
        assert source_resolution(_quiet_inspect(path)) == 1.0

    def test_recursive_glob(self, tmp_path: Path) -> None:
        (tmp_path / "a" / "b").mkdir(parents=True)
        for name in ("top.tif", "a/b/deep.tif"):
            write_raster(tmp_path / name, np.ones((1, 2, 2), np.uint8))
        assert expand_inputs([str(tmp_path / "**" / "*.tif")]) == sorted([tmp_path / "top.tif", tmp_path / "a/b/deep.tif"])

    def test_nothing_matches_lists_the_suffixes(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match=r"matches no raster file \(\.tif, \.tiff"):
            expand_inputs([str(tmp_path / "*.tif")])


def _quiet_inspect(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return inspect_raster(path)


def test_decimated_shape_keeps_a_one_pixel_side() -> None:
    assert decimated_shape(1000, 1, 100) == (100, 1)
