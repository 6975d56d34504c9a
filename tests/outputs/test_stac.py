"""STAC out (item.json per output folder, catalog.json per root) and STAC in (an Item as input)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp

pystac = pytest.importorskip("pystac")

from samgeo_pipeline.cli import main  # noqa: E402
from samgeo_pipeline.errors import InputError  # noqa: E402
from samgeo_pipeline.outputs.fingerprint import file_sha256  # noqa: E402
from samgeo_pipeline.outputs.stac import acquisition_datetime, validate_offline  # noqa: E402
from samgeo_pipeline.outputs.stac_catalog import rebuild_remote_catalog, register_item  # noqa: E402
from samgeo_pipeline.io.stac_input import open_stac_item  # noqa: E402
from tests.scenes import disc, multiband_scene, write_raster  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
L8 = DATA / "landsat8_cloudy_nowater"
HAVEL = DATA / "sentinel2_havel_winter" / "s2l1c_T33UUU_20170216_13band_10m.tif"


def segment(*args: object) -> int:
    return main(["segment", *map(str, args), "--model", "none", "--tile-size", "256", "--halo", "32", "--no-progress"])


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def check_catalog(root: Path) -> dict[str, dict]:
    """Validate ``root/catalog.json`` and every Item it links; the Items by folder name."""
    catalog = load(root / "catalog.json")
    validate_offline(catalog)
    items = {}
    for link in (x for x in catalog["links"] if x["rel"] == "item"):
        item = load(root / link["href"])
        validate_offline(item)
        items[Path(link["href"]).parent.name] = item
    assert {i.id for i in pystac.Catalog.from_file(str(root / "catalog.json")).get_items()} == set(items)
    return items


@pytest.fixture(scope="module")
def lake() -> np.ndarray:
    return disc((300, 300), (150, 150), 60)


@pytest.fixture
def scenes(tmp_path: Path, lake: np.ndarray) -> Path:
    """Two 4-band scenes, one with its date in the name and one without."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("scene_20210704.tif", "plain.tif"):
        write_raster(folder / name, multiband_scene(lake, 4, {"red": 1, "green": 2, "blue": 3, "nir": 4}),
                     nodata=None, photometric="minisblack")  # fmt: skip
    return folder


class TestItemsOut:
    def test_every_output_folder_has_a_valid_item_in_a_valid_catalog(self, scenes: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        assert segment(scenes, "--out", out) == 0
        items = check_catalog(out)
        assert set(items) == {"scene_20210704", "plain"}
        item, manifest = items["scene_20210704"], load(out / "scene_20210704" / "manifest.json")
        props = item["properties"]
        assert (props["datetime"], props["samgeo:datetime_source"]) == ("2021-07-04T00:00:00Z", "file name")
        assert items["plain"]["properties"]["samgeo:datetime_source"] == "none found: the run's time"
        assert props["proj:code"] == "EPSG:32633" and props["proj:shape"] == [300, 300]
        assert props["proj:transform"] == manifest["input"]["transform"]
        with rasterio.open(scenes / "scene_20210704.tif") as ds:
            expected = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        assert item["bbox"] == pytest.approx(list(expected), abs=1e-6)
        assert item["geometry"]["coordinates"][0][0] == pytest.approx([expected[0], expected[3]], abs=1e-4)
        mask = item["assets"]["mask"]
        assert mask["roles"] == ["data"] and "cloud-optimized" in mask["type"]
        assert [(c["value"], c["name"]) for c in mask["classification:classes"]] == [(0, "not_water"), (1, "water"), (255, "nodata")]
        assert mask["raster:bands"][0]["nodata"] == 255
        for key, name in (("mask", "mask.tif"), ("polygons", "water.gpkg"), ("quicklook", "quicklook.png")):
            asset = item["assets"][key]
            assert asset["href"] == f"./{name}"
            assert asset["file:size"] == (out / "scene_20210704" / name).stat().st_size
            assert asset["file:checksum"] == "1220" + file_sha256(out / "scene_20210704" / name)
        assert item["assets"]["quicklook"]["roles"][0] == "thumbnail"
        assert item["assets"]["manifest"]["href"] == "./manifest.json"
        assert props["processing:software"]["samgeo-pipeline"] == manifest["versions"]["samgeo-pipeline"]
        assert "item.json" in manifest["outputs"]  # written before the manifest, which lists it

    def test_a_rerun_lists_each_item_once_and_keeps_other_links(self, scenes: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        assert segment(scenes / "plain.tif", "--out", out) == 0
        assert segment(scenes, "--out", out) == 0  # plain.tif reused, the other one new
        hrefs = [x["href"] for x in load(out / "catalog.json")["links"] if x["rel"] == "item"]
        assert hrefs == ["./plain/item.json", "./scene_20210704/item.json"]

    def test_an_uncertain_image_has_an_item_without_a_mask(
        self, scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from tests.test_cli import REASON, abstain

        abstain(monkeypatch)
        assert segment(scenes / "plain.tif", "--out", tmp_path / "out") == 3
        item = check_catalog(tmp_path / "out")["plain"]
        assert set(item["assets"]) == {"quicklook", "manifest"}
        assert item["properties"]["samgeo:status"] == "uncertain"
        assert item["properties"]["samgeo:uncertain"]["reason"] == REASON

    def test_a_catalog_of_the_user_is_not_replaced(self, scenes: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / "catalog.json").write_text('{"type": "Catalog", "id": "mine"}')
        segment(scenes / "plain.tif", "--out", out)
        assert load(out / "catalog.json") == {"type": "Catalog", "id": "mine"}


@pytest.mark.parametrize(("tags", "name", "expected"), [
    ({"IMAGERY": {"ACQUISITIONDATETIME": "2015-08-04 16:19:21"}}, "x_20200101.tif",
     ("2015-08-04T16:19:21Z", None, "tag IMAGERY:ACQUISITIONDATETIME")),
    ({"IMAGERY": {"ACQUISITIONDATETIME": "1970-01-01 00:00:00"}}, "m_4709963_se_14_1_20090818.tif",
     ("2009-08-18T00:00:00Z", None, "file name")),  # the epoch is a placeholder
    ({}, "S2_2017-02-16.tif", ("2017-02-16T00:00:00Z", None, "file name")),
    ({}, "landsat_1985.tif", (None, "1985-01-01T00:00:00Z", "file name (year)")),
    ({"": {"TIFFTAG_DATETIME": "2019:05:06 07:08:09"}}, "scene.tif", ("2019-05-06T07:08:09Z", None, "tag TIFFTAG_DATETIME")),
    ({}, "scene_12345678.tif", (None, None, None)),
])  # fmt: skip
def test_acquisition_datetime_says_where_it_came_from(tags: dict, name: str, expected: tuple) -> None:
    found = acquisition_datetime(tags, name)
    assert (found["datetime"], found["start_datetime"], found["source"]) == expected


def _register_many(root: str, names: list[str]) -> None:
    for name in names:
        register_item(Path(root), Path(root) / name)


def test_concurrent_processes_lose_no_catalog_link(tmp_path: Path) -> None:
    names = [f"img{i:03d}" for i in range(120)]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "item.json").write_text("{}")
        (tmp_path / name / "manifest.json").write_text("{}")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_register_many, args=(str(tmp_path), names[k::6])) for k in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    hrefs = sorted(x["href"] for x in load(tmp_path / "catalog.json")["links"] if x["rel"] == "item")
    assert hrefs == [f"./{n}/item.json" for n in names]


class TestRemoteCatalog:
    def fs_with(self, folders: dict[str, list[str]]):
        from fsspec.implementations.memory import MemoryFileSystem

        fs = MemoryFileSystem()
        fs.store.clear()
        for folder, files in folders.items():
            for name in files:
                fs.pipe_file(f"/bucket/out/{folder}/{name}", b"{}")
        return fs

    def test_lists_finished_folders_only(self) -> None:
        fs = self.fs_with({"a": ["item.json", "manifest.json"], "b": ["item.json"], "c/d": ["item.json", "manifest.json"],
                           ".samgeo-staging/x": ["item.json", "manifest.json"]})  # fmt: skip
        assert rebuild_remote_catalog(fs, "/bucket/out") == ["a", "c/d"]
        catalog = json.loads(fs.cat_file("/bucket/out/catalog.json"))
        validate_offline(catalog)
        assert [x["href"] for x in catalog["links"] if x["rel"] == "item"] == ["./a/item.json", "./c/d/item.json"]

    def test_a_put_that_missed_an_item_is_written_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Writer A listed before writer B's item arrived; B's catalog was then overwritten by A's put:
        A's second listing sees B's item and A writes again."""
        fs = self.fs_with({"a": ["item.json", "manifest.json"]})
        real_pipe = fs.pipe_file
        puts = []

        def pipe_then_b_arrives(path: str, data: bytes, **kw: object) -> None:
            real_pipe(path, data, **kw)
            puts.append(json.loads(data))
            if len(puts) == 1:  # B uploads its folder (and its own catalog, overwritten above) meanwhile
                real_pipe("/bucket/out/b/item.json", b"{}")
                real_pipe("/bucket/out/b/manifest.json", b"{}")

        monkeypatch.setattr(fs, "pipe_file", pipe_then_b_arrives)  # fsspec caches the instance: undone after
        assert rebuild_remote_catalog(fs, "/bucket/out") == ["a", "b"]
        assert len(puts) == 2
        assert [x["title"] for x in puts[-1]["links"] if x["rel"] == "item"] == ["a", "b"]


def test_serve_serves_the_catalog(scenes: Path, tmp_path: Path) -> None:
    import threading
    import urllib.request

    from samgeo_pipeline.serve.server import make_server

    out = tmp_path / "out"
    assert segment(scenes / "plain.tif", "--out", out) == 0
    server = make_server(out, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        catalog = json.loads(urllib.request.urlopen(base + "catalog.json", timeout=10).read())
        item = json.loads(urllib.request.urlopen(base + catalog["links"][-1]["href"][2:], timeout=10).read())
        assert item["id"] == "plain"
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- STAC in


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
