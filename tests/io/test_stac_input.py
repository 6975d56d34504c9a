"""STAC Items as inputs (:mod:`samgeo_pipeline.io.stac_input`): assets mapped by ``eo:bands``, read on the finest grid."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.stac_input import open_stac_item
from tests.outputs.test_stac import DATA, check_catalog, load, segment
from tests.scenes import disc, multiband_scene, write_raster

L8 = DATA / "landsat8_cloudy_nowater"
HAVEL = DATA / "sentinel2_havel_winter" / "s2l1c_T33UUU_20170216_13band_10m.tif"


@pytest.fixture(scope="module")
def lake() -> np.ndarray:
    return disc((300, 300), (150, 150), 60)


def write_item(path: Path, assets: dict[str, tuple[Path, str, dict]], datetime: str = "2015-08-04T16:19:21Z") -> Path:
    """A STAC 1.0 Item at ``path`` with one single-band asset per ``key: (file, common name, raster band)``."""
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": path.stem, "geometry": None, "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "properties": {"datetime": datetime},
        "assets": {key: {"href": os.path.relpath(file, path.parent), "type": "image/tiff; application=geotiff",
                         "roles": ["data"], "eo:bands": [{"name": key, "common_name": common}],
                         **({"raster:bands": [raster]} if raster else {})}
                   for key, (file, common, raster) in assets.items()},
    }  # fmt: skip
    path.write_text(json.dumps(item))
    return path


needs_l8 = pytest.mark.skipif(not L8.is_dir(), reason="../shared/data/landsat8_cloudy_nowater not present")
needs_havel = pytest.mark.skipif(not HAVEL.is_file(), reason="../shared/data/sentinel2_havel_winter not present")
L8_SCALE = {"scale": 2e-5, "offset": -0.1}


def landsat_item(tmp_path: Path) -> Path:
    bands = {"B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B6": "swir16"}
    # assets listed out of band order: the mapping comes from the common names, not the order; a
    # JPEG 2000 copy of red listed first (never opened: the GeoTIFF asset of the same band wins)
    assets = {"B4-jp2": (tmp_path / "missing_B4.jp2", "red", L8_SCALE)}
    assets.update({b: (L8 / f"l8_{b}.tif", c, L8_SCALE) for b, c in reversed(bands.items())})
    path = write_item(tmp_path / "l8.json", assets)
    item = load(path)
    item["assets"]["B4-jp2"]["type"] = "image/jp2"
    path.write_text(json.dumps(item))
    return path


@needs_l8
class TestLandsatItem:
    def test_each_band_reads_its_own_file(self, tmp_path: Path) -> None:
        stac = open_stac_item(landsat_item(tmp_path), tmp_path / "vrt")
        assert stac.bands.as_dict() == {"red": 1, "green": 2, "blue": 3, "nir": 4, "swir": 5}
        assert stac.bands.source == "stac"
        with rasterio.open(stac.vrt) as vrt:
            assert vrt.descriptions == ("red", "green", "blue", "nir", "swir")
            for index, band in zip(range(1, 6), ("B4", "B3", "B2", "B5", "B6"), strict=True):
                with rasterio.open(L8 / f"l8_{band}.tif") as src:
                    assert np.array_equal(vrt.read(index), src.read(1)), band

    def test_segments_with_the_items_bands_and_reflectance(self, tmp_path: Path) -> None:
        item = landsat_item(tmp_path)
        out = tmp_path / "out"
        assert segment(item, "--out", out) == 0
        manifest = load(out / "l8" / "manifest.json")
        inp = manifest["input"]
        assert inp["band_map_source"] == "STAC eo:bands" and inp["path"] == str(item)
        assert {k: v["asset"] for k, v in inp["stac"]["assets"].items()} == {
            "red": "B4", "green": "B3", "blue": "B2", "nir": "B5", "swir": "B6"}
        coarse = manifest["radiometry"]["coarse"]
        assert (coarse["method"], coarse["reflectance_source"], coarse["scale"]) == ("dswe", "STAC raster:bands", 2e-5)
        assert inp["datetime"]["source"] == "STAC item"
        items = check_catalog(out)
        assert items["l8"]["properties"]["datetime"] == "2015-08-04T16:19:21Z"
        assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("samgeo-stac-*/l8.vrt"))  # VRT removed

    def test_bands_option_and_items_without_eo_bands_are_refused(self, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
        assert segment(landsat_item(tmp_path), "--out", tmp_path / "out", "--bands", "landsat8") == 1
        assert "drop --bands landsat8" in capsys.readouterr().err
        bare = write_item(tmp_path / "bare.json", {"B2": (L8 / "l8_B2.tif", "coastal", {})})
        with pytest.raises(InputError, match="no asset of this STAC Item has eo:bands common names"):
            open_stac_item(bare, tmp_path / "vrt")


def test_an_asset_in_the_output_folder_is_refused(tmp_path: Path, lake: np.ndarray) -> None:
    out = tmp_path / "out"
    (out / "scene").mkdir(parents=True)
    asset = write_raster(out / "scene" / "mask.tif", multiband_scene(lake, 1, {"nir": 1}), nodata=None)
    item = write_item(tmp_path / "scene.json", {"B8": (asset, "nir", {}), "B3": (asset, "green", {})})
    before = asset.read_bytes()
    assert segment(item, "--out", out, "--overwrite") == 1  # --overwrite: the folder's owner is not asked
    assert asset.read_bytes() == before and not (out / "scene" / "manifest.json").exists()


@pytest.fixture
def serve_folder(tmp_path: Path):
    """``serve FOLDER`` in a subprocess (GDAL opens /vsicurl/ URLs holding the GIL: an in-process
    server would never answer); yields a function ``folder -> base URL``."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    procs = []

    def start(folder: Path) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        code = "import sys; from samgeo_pipeline.cli import main; sys.exit(main())"
        procs.append(subprocess.Popen([sys.executable, "-c", code, "serve", str(folder), "--port", str(port)],
                                      cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL))  # fmt: skip
        base = f"http://127.0.0.1:{port}/"
        for _ in range(200):
            try:
                urllib.request.urlopen(base, timeout=2).close()
                return base
            except OSError:
                time.sleep(0.1)
        raise AssertionError("serve did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(20)


@needs_l8
def test_an_item_url_is_fetched_and_its_relative_assets_read_over_http(tmp_path: Path, serve_folder) -> None:
    """An Item given by URL (served by ``serve``): copied locally, its relative asset hrefs made
    absolute against the URL and read through /vsicurl/; the manifest names the URL."""
    served = tmp_path / "served"
    served.mkdir()
    for band in ("B3", "B4", "B5"):
        shutil.copy(L8 / f"l8_{band}.tif", served)
    write_item(served / "scene.json", {b: (served / f"l8_{b}.tif", c, L8_SCALE)
                                       for b, c in {"B3": "green", "B4": "red", "B5": "nir"}.items()})  # fmt: skip
    base = serve_folder(served)
    url = base + "scene.json"
    assert segment(url, "--out", tmp_path / "out") == 0
    manifest = load(tmp_path / "out" / "scene" / "manifest.json")
    assert manifest["input"]["source"] == url
    assert manifest["input"]["stac"]["assets"]["red"]["href"] == f"/vsicurl/{base}l8_B4.tif"
    assert manifest["input"]["band_map_source"] == "STAC eo:bands"
    assert check_catalog(tmp_path / "out")["scene"]["properties"]["samgeo:input"] == url


def test_an_item_url_that_is_not_an_item_is_one_error_line(tmp_path: Path, serve_folder,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    (tmp_path / "x.json").write_text('{"type": "FeatureCollection"}')
    base = serve_folder(tmp_path)
    assert segment(base + "x.json", "--out", tmp_path / "out") == 1
    assert segment(base + "missing.json?sig=secret", "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "x.json: not a STAC Item" in err and "missing.json?sig=***: cannot read this STAC Item" in err
    assert "secret" not in err


@needs_havel
def test_sentinel2_bands_at_two_resolutions_are_read_on_the_finest_grid(tmp_path: Path) -> None:
    """The Havel scene's bands split into files, SWIR at 20 m: the Item run finds the same water as
    the 13-band file with the sentinel2 preset."""
    with rasterio.open(HAVEL) as src:
        profile = {"crs": src.crs, "nodata": None, "photometric": "minisblack"}
        for name, index in {"B02": 2, "B03": 3, "B04": 4, "B08": 8}.items():
            write_raster(tmp_path / f"{name}.tif", src.read([index]), transform=src.transform, **profile)
        for name, index in {"B11": 12, "B12": 13}.items():  # 20 m: every other pixel (they were upsampled by nearest)
            coarse = src.read([index])[:, ::2, ::2]
            write_raster(tmp_path / f"{name}.tif", coarse, transform=src.transform @ src.transform.scale(2, 2), **profile)
    scale = {"scale": 1e-4, "offset": 0.0}
    item = write_item(tmp_path / "havel.json", {
        n: (tmp_path / f"{n}.tif", c, scale) for n, c in
        {"B12": "swir22", "B11": "swir16", "B08": "nir", "B04": "red", "B03": "green", "B02": "blue"}.items()
    }, datetime="2017-02-16T10:00:00Z")  # fmt: skip
    stac = open_stac_item(item, tmp_path / "vrt")
    with rasterio.open(stac.vrt) as vrt, rasterio.open(HAVEL) as src:
        assert (vrt.width, vrt.height, vrt.transform) == (src.width, src.height, src.transform)
        swir2 = vrt.read(stac.bands.swir2)
        assert np.array_equal(swir2, np.repeat(np.repeat(src.read(13)[::2, ::2], 2, 0), 2, 1)[:src.height, :src.width])
    assert segment(item, "--out", tmp_path / "a") == 0
    assert segment(HAVEL, "--out", tmp_path / "b", "--bands", "sentinel2") == 0
    a, b = load(tmp_path / "a" / "havel" / "manifest.json"), load(tmp_path / "b" / HAVEL.stem / "manifest.json")
    assert a["radiometry"]["coarse"]["reflectance_source"] == "STAC raster:bands"
    assert set(a["input"]["band_map"]) == {"red", "green", "blue", "nir", "swir", "swir2"}
    assert a["water"]["fraction_of_valid"] == pytest.approx(b["water"]["fraction_of_valid"], abs=0.005)
    shutil.rmtree(tmp_path / "vrt")
