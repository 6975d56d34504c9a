"""STAC out: item.json per output folder, catalog.json per root (the Items are validated offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp

pystac = pytest.importorskip("pystac")

from samgeo_pipeline.cli import main
from samgeo_pipeline.outputs.fingerprint import file_sha256
from samgeo_pipeline.outputs.stac import acquisition_datetime, validate_offline
from tests.scenes import disc, multiband_scene, write_raster

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


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
        classes = [(c["value"], c["name"]) for c in mask["classification:classes"]]
        assert classes == [(0, "not_water"), (1, "water"), (255, "nodata")]
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
        catalog = json.loads(urllib.request.urlopen(base + "catalog.json", timeout=10).read())  # noqa: S310 - loopback http
        item_url = base + catalog["links"][-1]["href"][2:]
        item = json.loads(urllib.request.urlopen(item_url, timeout=10).read())  # noqa: S310 - loopback http
        assert item["id"] == "plain"
    finally:
        server.shutdown()
        server.server_close()
