"""Real imagery from ``../shared/data`` (outside the repository), ``--model none``; skipped when absent.

Expected ranges come from the data's README and from runs of this pipeline (see each test).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import NotGeoreferencedWarning
from samgeo_pipeline.pipeline import SegmentResult, segment_raster
from tests.scenes import DATA_DIR, M_PER_DEG_LAT, M_PER_DEG_LON

pytestmark = pytest.mark.slow

NONE = SegmentConfig(model="none", progress=False)


def dataset(name: str) -> Path:
    folder = DATA_DIR / name
    if not folder.is_dir():
        pytest.skip(f"real data not found: {folder} (../shared/data beside the project)")
    return folder


def files(name: str, pattern: str = "*.tif") -> list[Path]:
    found = sorted(dataset(name).glob(pattern))
    if not found:
        pytest.skip(f"no {pattern} in {DATA_DIR / name}")
    return found


def check_outputs_on_input_grid(path: Path, result: SegmentResult) -> gpd.GeoDataFrame:
    """Mask on the input grid, polygons in the input CRS and inside its bounds."""
    assert result.status == "done", result.error
    with rasterio.open(path) as src, rasterio.open(result.out_dir / "mask.tif") as out:
        assert (out.crs, out.transform, out.width, out.height) == (src.crs, src.transform, src.width, src.height)
        assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        bounds = src.bounds
    frame = gpd.read_file(result.out_dir / "water.gpkg", layer="water")
    assert frame.crs == src.crs
    if len(frame):
        x0, y0, x1, y1 = frame.total_bounds
        assert bounds.left <= x0 < x1 <= bounds.right and bounds.bottom <= y0 < y1 <= bounds.top
    return frame


class TestNaip:
    """NAIP RGBN, prairie-pothole lakes, 5 m, EPSG:26914; NDWI > 0 covers 14-58 % (README).

    Measured with --model none (Otsu >= 0 on NDWI): 2009 12.0 %, 2015 22.7 %, 2020 25.0 % water.
    """

    @pytest.mark.parametrize("index", [0, 1, 2], ids=["2009", "2015", "2020"])
    def test_water_fraction(self, index: int, tmp_path: Path) -> None:
        paths = files("naip_potholes")
        if index >= len(paths):
            pytest.skip("fewer NAIP dates than expected")
        path = paths[index]
        result = segment_raster(path, tmp_path / "out", NONE.merged({"bands": "naip"}))
        frame = check_outputs_on_input_grid(path, result)
        assert result.manifest["radiometry"]["index"] == "ndwi"
        assert result.manifest["input"]["crs"] == "EPSG:26914"
        assert 0.05 < result.water_fraction < 0.6
        # The image threshold is >= 0, so the water is a subset of NDWI > 0 (computed here).
        with rasterio.open(path) as ds:
            green, nir = ds.read(2).astype(float), ds.read(4).astype(float)
            valid = ds.read_masks(1) > 0
        ndwi_positive = (green - nir) > 0
        assert result.water_fraction <= (ndwi_positive & valid).sum() / valid.sum() + 1e-9
        assert len(frame) >= 10  # many pothole lakes
        np.testing.assert_allclose(frame.area_m2, frame.geometry.area)
        assert frame.area_m2.sum() == pytest.approx(result.water_fraction * valid.sum() * 25.0, rel=1e-6)


class TestLandsatPucallpa:
    """Landsat, Ucayali river near Pucallpa, EPSG:4326, ~90 m, nodata 0; water about 3-5 % (README).

    Measured (MNDWI, Otsu): 1985 5.2 %, 2000 4.7 %, 2020 3.9 %.
    """

    @pytest.mark.parametrize("index", [0, 1, 2], ids=["1985", "2000", "2020"])
    def test_river(self, index: int, tmp_path: Path) -> None:
        paths = files("landsat_pucallpa")
        if index >= len(paths):
            pytest.skip("fewer Pucallpa years than expected")
        path = paths[index]
        result = segment_raster(path, tmp_path / "out", NONE.merged({"bands": "swir=1,nir=2,red=3,green=4"}))
        frame = check_outputs_on_input_grid(path, result)
        assert result.manifest["input"]["crs"] == "EPSG:4326"
        assert result.manifest["radiometry"]["index"] == "mndwi"
        assert 0.02 < result.water_fraction < 0.08
        assert len(frame) >= 1
        # Geodesic areas: the pixels' area from their latitude, independent of pyproj.
        with rasterio.open(result.out_dir / "mask.tif") as ds:
            mask, transform = ds.read(1), ds.transform
        rows = np.nonzero(mask == 1)[0]
        lat = transform.f + (rows + 0.5) * transform.e
        pixel_m2 = (transform.a * M_PER_DEG_LON * np.cos(np.radians(lat))) * (abs(transform.e) * M_PER_DEG_LAT)
        assert frame.area_m2.sum() == pytest.approx(pixel_m2.sum(), rel=0.01)


class TestLandsat8CloudyNoWater:
    """Landsat 8 L1, heavy cumulus, almost no water (NDWI > 0 on 0.1 %, README).

    One file per band, stacked here into a VRT. Measured: MNDWI 0.06 % water, NDWI 0 %.
    """

    def stack(self, tmp_path: Path) -> Path:
        folder = dataset("landsat8_cloudy_nowater")
        bands = [folder / f"l8_B{b}.tif" for b in range(2, 7)]
        if not all(p.is_file() for p in bands):
            pytest.skip(f"missing l8_B2..B6 in {folder}")
        with rasterio.open(bands[0]) as ds:
            width, height, crs, transform = ds.width, ds.height, ds.crs, ds.transform
        sources = "".join(
            f'<VRTRasterBand dataType="UInt16" band="{i}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{p}</SourceFilename><SourceBand>1</SourceBand>'
            "</SimpleSource></VRTRasterBand>"
            for i, p in enumerate(bands, start=1)
        )
        vrt = tmp_path / "l8_stack.vrt"
        vrt.write_text(
            f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs.to_wkt()}</SRS>'
            f"<GeoTransform>{', '.join(map(str, transform.to_gdal()))}</GeoTransform>{sources}</VRTDataset>"
        )
        return vrt

    @pytest.mark.parametrize("bands", ["blue=1,green=2,red=3,nir=4,swir=5", "blue=1,green=2,red=3,nir=4"])
    def test_almost_no_water(self, bands: str, tmp_path: Path) -> None:
        vrt = self.stack(tmp_path)
        result = segment_raster(vrt, tmp_path / "out", NONE.merged({"bands": bands}))
        check_outputs_on_input_grid(vrt, result)
        assert result.manifest["input"]["crs"] == "EPSG:32616"
        assert result.water_fraction < 0.01
        # The clip of the Otsu threshold keeps cloud vs land from being called water.
        assert result.manifest["radiometry"]["threshold"] >= 0.0


class TestCellulaChips:
    """Multispectral 128x128 chips without CRS, hand-made water labels; bands 1-7 only (8-12 leak
    the answer). Plain NDWI > 0 gives pooled IoU 0.57 over all chips (README).

    Measured with --model none, MNDWI: pooled IoU 0.565 over all 150 chips, 0.56 over the 15 used here.
    """

    BANDS = "blue=2,green=3,red=4,nir=5,swir=6"

    @pytest.mark.filterwarnings("ignore:'crs' was not provided")  # pyogrio, on the CRS-less GeoPackage
    def test_pooled_iou(self, tmp_path: Path) -> None:
        folder = dataset("cellula_water")
        chips = sorted((folder / "images").glob("*.tif"), key=lambda p: int(p.stem))[::10]
        if not chips:
            pytest.skip(f"no chips in {folder / 'images'}")
        intersection = union = 0
        for chip in chips:
            with pytest.warns(NotGeoreferencedWarning, match=rf"{chip.name}: no CRS or geotransform"):
                result = segment_raster(chip, tmp_path / chip.stem, NONE.merged({"bands": self.BANDS}))
            assert result.status == "done" and result.water_area_m2 is None
            assert result.manifest["radiometry"]["index"] == "mndwi"
            assert max(result.manifest["input"]["band_map"].values()) <= 7
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(result.out_dir / "mask.tif") as ds:
                    assert ds.crs is None and (ds.width, ds.height) == (128, 128)
                    predicted = ds.read(1) == 1
            label = np.asarray(Image.open(folder / "labels" / f"{chip.stem}.png"))
            assert label.shape == (128, 128) and set(np.unique(label)) <= {0, 1}
            intersection += int((predicted & (label == 1)).sum())
            union += int((predicted | (label == 1)).sum())
        assert len(chips) >= 10
        assert intersection / union > 0.45
