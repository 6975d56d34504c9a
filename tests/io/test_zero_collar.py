"""Nodata the file does not tag: a collar of zeros at the image border (Landsat L1, reprojected scenes).

Each scene has no nodata tag and no mask. A collar of 0 in every mapped band covering at least
1 % of the border makes 0 the run's nodata (mask 255, no polygon, a warning naming
``--no-zero-collar``, recorded in the manifest); the option or its YAML key turns it off, and
zeros inside the image alone change nothing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio import features
from rasterio.transform import Affine

from samgeo_pipeline.cli import main
from samgeo_pipeline.errors import NodataWarning
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.zero_collar import with_zero_collar, zero_border_share
from tests.scenes import DATA_DIR, disc, iou, read_mask, rgbn_scene, run, write_raster

SHAPE = (256, 256)
COLLAR_WARNING = r"no nodata tagged, but \d+% of the image border is 0 in every mapped band .*--no-zero-collar"


def rotated_footprint(shape: tuple[int, int], degrees: float = 20.0, scale: float = 0.82) -> np.ndarray:
    """``bool shape``: a square turned by ``degrees`` about the centre (a Landsat L1 scene's footprint)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    y, x = rows - shape[0] / 2, cols - shape[1] / 2
    angle = np.radians(degrees)
    u = np.cos(angle) * x + np.sin(angle) * y
    v = -np.sin(angle) * x + np.cos(angle) * y
    half = scale * min(shape) / 2
    return (np.abs(u) < half) & (np.abs(v) < half)


@pytest.fixture(scope="module")
def lake() -> np.ndarray:
    """``bool SHAPE``: a lake inside the footprint."""
    return disc(SHAPE, (120, 135), 40)


@pytest.fixture(scope="module")
def collar_scene(tmp_path_factory: pytest.TempPathFactory, lake: np.ndarray) -> tuple[Path, np.ndarray]:
    """An RGBN scene with a lake, 0 in every band outside a rotated footprint, no nodata tag."""
    collar = ~rotated_footprint(SHAPE)
    path = tmp_path_factory.mktemp("collar") / "collar.tif"
    return write_raster(path, rgbn_scene(lake, collar), nodata=None), collar


def burnt_polygons(out_dir: Path) -> np.ndarray:
    """``bool (rows, cols)``: the polygons of ``water.gpkg`` rasterised on the mask's grid."""
    frame = gpd.read_file(out_dir / "water.gpkg", layer="water")
    with rasterio.open(out_dir / "mask.tif") as ds:
        shape, transform = ds.shape, ds.transform
    if frame.empty:
        return np.zeros(shape, bool)
    return features.rasterize(frame.geometry, out_shape=shape, transform=transform, fill=0, default_value=1) == 1


def cli(*args: object) -> int:
    return main(["segment", *map(str, args), "--model", "none", "--no-progress"])


class TestCollar:
    def test_collar_is_nodata_everywhere(self, collar_scene: tuple[Path, np.ndarray], lake: np.ndarray,
                                         tmp_path: Path) -> None:
        path, collar = collar_scene
        with pytest.warns(NodataWarning, match=r"collar.tif: " + COLLAR_WARNING):
            result = run(path, tmp_path / "out", tile_size=128, halo=16)
        assert result.status == "done"
        mask = read_mask(tmp_path / "out")
        np.testing.assert_array_equal(mask == 255, collar)  # the collar, and nothing else
        assert iou(mask == 1, lake) > 0.97
        polygons = burnt_polygons(tmp_path / "out")
        assert polygons.any() and not (polygons & collar).any()
        manifest = result.manifest
        assert manifest.input.nodata == 0 and manifest.input.nodata_source == "zero collar"
        assert any("--no-zero-collar" in w for w in manifest.warnings)
        assert manifest.radiometry["valid_fraction"] == pytest.approx(1 - collar.mean(), abs=0.01)
        assert result.water_fraction == pytest.approx(lake.sum() / (~collar).sum(), abs=0.01)

    def test_resampled_tiles_read_as_from_a_tagged_file(self, collar_scene: tuple[Path, np.ndarray],
                                                        tmp_path: Path) -> None:
        """With --gsd the fill is left out of the resampling, as GDAL does for a tagged file: blended
        into the footprint's edge it made a dark fringe of false water."""
        path, collar = collar_scene
        with rasterio.open(path) as ds:
            tagged = write_raster(tmp_path / "tagged.tif", ds.read(), nodata=0)
        with pytest.warns(NodataWarning, match=COLLAR_WARNING):
            run(path, tmp_path / "collar", tile_size=128, halo=16, gsd=4.0)
        run(tagged, tmp_path / "tagged", tile_size=128, halo=16, gsd=4.0)
        np.testing.assert_array_equal(read_mask(tmp_path / "collar"), read_mask(tmp_path / "tagged"))

    @pytest.mark.filterwarnings("ignore::samgeo_pipeline.errors.CoarseMaskWarning")
    def test_rgb_only_collar_is_not_water(self, lake: np.ndarray, tmp_path: Path) -> None:
        """The hold-out's case: blue, green, red digital numbers and a collar read as dark smooth water."""
        collar = ~rotated_footprint(SHAPE)
        image = (rgbn_scene(lake, collar)[:3].astype(np.uint16) * 40)  # 16-bit DN, 0 on the collar
        path = write_raster(tmp_path / "l1.tif", image, nodata=None, photometric="minisblack")
        with pytest.warns(NodataWarning, match=COLLAR_WARNING):
            run(path, tmp_path / "out", bands="rgb", tile_size=128, halo=16)
        mask = read_mask(tmp_path / "out")
        np.testing.assert_array_equal(mask == 255, collar)
        assert not (burnt_polygons(tmp_path / "out") & collar).any()

    def test_option_turns_it_off(self, collar_scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
        path, collar = collar_scene
        with warnings.catch_warnings():
            warnings.simplefilter("error", NodataWarning)
            assert cli(path, "--out", tmp_path / "flag", "--no-zero-collar") == 0
        config = tmp_path / "run.yaml"
        config.write_text("zero_collar: false\n")
        assert cli(path, "--out", tmp_path / "yaml", "--config", config) == 0
        for out in (tmp_path / "flag" / "collar", tmp_path / "yaml" / "collar"):
            assert not (read_mask(out) == 255).any()  # the collar is data again
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["input"]["nodata"] is None and manifest["input"]["nodata_source"] is None
            assert manifest["parameters"]["zero_collar"] is False
            assert not any("zero-collar" in w for w in manifest["warnings"])

    def test_interior_zeros_change_nothing(self, lake: np.ndarray, tmp_path: Path) -> None:
        image = rgbn_scene(lake)
        image[:, 60:63, 30:33] = 0  # a block and scattered pixels at 0 in every band, none on the border
        image[:, [5, 90, 200], [40, 180, 7]] = 0
        path = write_raster(tmp_path / "inner.tif", image, nodata=None)
        with warnings.catch_warnings():
            warnings.simplefilter("error", NodataWarning)
            on = run(path, tmp_path / "on", tile_size=128, halo=16)
        run(path, tmp_path / "off", tile_size=128, halo=16, zero_collar=False)
        assert on.manifest.input.nodata is None and on.manifest.input.nodata_source is None
        np.testing.assert_array_equal(read_mask(tmp_path / "on"), read_mask(tmp_path / "off"))
        assert not (read_mask(tmp_path / "on") == 255).any()


class TestDetection:
    def test_border_share(self) -> None:
        data = np.ones((2, 10, 10), np.float32)
        valid = np.ones((10, 10), bool)
        assert zero_border_share(data, valid) == 0.0
        data[:, 0, :] = 0  # the top row: 10 of the 36 ring pixels
        assert zero_border_share(data, valid) == pytest.approx(10 / 36)
        data[1, 0, :5] = 7  # not 0 in every band
        assert zero_border_share(data, valid) == pytest.approx(5 / 36)
        assert zero_border_share(data, np.zeros((10, 10), bool)) == 0.0  # already invalid (NaN): not a collar
        assert zero_border_share(np.zeros((1, 1, 4), np.float32), np.ones((1, 4), bool)) == 1.0  # one row

    def test_a_few_zeros_on_the_border_are_not_a_collar(self, tmp_path: Path) -> None:
        path = write_raster(tmp_path / "a.tif", np.full((3, 200, 200), 50, np.uint8), nodata=None)
        info = inspect_raster(path)
        data = np.full((3, 200, 200), 50, np.float32)
        data[:, 0, 10:17] = 0  # 7 of 796 ring pixels: under 1 %
        valid = np.ones((200, 200), bool)
        assert with_zero_collar(info, data, valid)[0] is info
        data[:, 0, 10:20] = 0  # 10: over 1 %
        found, found_valid, share = with_zero_collar(info, data, valid)
        assert (found.nodata, found.nodata_source) == (0.0, "zero collar") and share == pytest.approx(10 / 796)
        assert found_valid.sum() == 200 * 200 - 10

    def test_tagged_nodata_or_mask_wins(self, tmp_path: Path) -> None:
        data = np.zeros((3, 20, 20), np.float32)
        valid = np.ones((20, 20), bool)
        tagged = inspect_raster(write_raster(tmp_path / "t.tif", np.ones((3, 20, 20), np.int16), nodata=-9999))
        assert tagged.nodata_source == "file"
        assert with_zero_collar(tagged, data, valid)[0] is tagged
        given = inspect_raster(tmp_path / "t.tif", nodata=5)
        assert given.nodata_source == "option" and with_zero_collar(given, data, valid)[0] is given
        rgba = inspect_raster(write_raster(tmp_path / "rgba.tif", np.full((4, 20, 20), 50, np.uint8), nodata=None),
                              bands="rgb")
        assert rgba.has_mask and with_zero_collar(rgba, data, valid)[0] is rgba


REAL = [
    ("landsat_pucallpa/landsat_2000.tif", "swir=1,nir=2,red=3,green=4"),
    ("naip_potholes/m_4709963_se_14_1_20200831.tif", "naip"),
]


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize(("name", "bands"), REAL, ids=[name.split("/")[0] for name, _ in REAL])
def test_real_scene_with_a_collar_added(name: str, bands: str, tmp_path: Path) -> None:
    """A shared scene padded with 0 and its corners cut off, without a nodata tag: the collar is
    nodata and the water share of the original footprint moves by less than 1 point."""
    source = DATA_DIR / name
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    with rasterio.open(source) as ds:
        image, profile = ds.read(), ds.profile
    pad = 40
    padded = np.zeros((image.shape[0], image.shape[1] + 2 * pad, image.shape[2] + 2 * pad), image.dtype)
    padded[:, pad:-pad, pad:-pad] = image
    collar = np.ones(padded.shape[1:], bool)
    collar[pad:-pad, pad:-pad] = False
    rows, cols = np.mgrid[0 : padded.shape[1], 0 : padded.shape[2]]
    corner = rows + cols < pad + 60  # a wedge cut off one corner of the footprint, as a rotated scene's
    padded[:, corner] = 0
    collar |= corner
    transform = profile["transform"] * Affine.translation(-pad, -pad)
    path = write_raster(tmp_path / "collar.tif", padded, crs=profile["crs"], transform=transform, nodata=None,
                        photometric="minisblack")
    with pytest.warns(NodataWarning, match=COLLAR_WARNING):
        collared = run(path, tmp_path / "collared", bands=bands)
    run(source, tmp_path / "plain", bands=bands)
    mask = read_mask(tmp_path / "collared")
    np.testing.assert_array_equal(mask == 255, collar)
    plain = read_mask(tmp_path / "plain")
    footprint = ~collar[pad:-pad, pad:-pad]
    share = (mask[pad:-pad, pad:-pad][footprint] == 1).mean()
    assert abs(share - (plain[footprint] == 1).mean()) < 0.01
    assert collared.manifest.input.nodata_source == "zero collar"
