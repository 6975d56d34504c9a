"""STAC in the segment flow: every finished folder's item.json in the root's catalog.json (local
root and S3), a link artifact to the catalog, and a STAC Item as an input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("pystac")

from samgeo_pipeline.outputs.stac import validate_offline
from tests.io.test_stac_input import L8, landsat_item

try:  # the moto server fixture (its module skips without s3fs or moto)
    from tests.flows.test_flows_remote import s3  # noqa: F401 - the S3 server fixture, used by name
except pytest.skip.Exception:
    pass

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


def _catalog_items(root: Path) -> dict[str, dict]:
    catalog = json.loads((root / "catalog.json").read_text())
    validate_offline(catalog)
    items = {}
    for link in (x for x in catalog["links"] if x["rel"] == "item"):
        item = json.loads((root / link["href"]).read_text())
        validate_offline(item)
        items[item["id"]] = item
    return items


@pytest.mark.usefixtures("prefect_harness")
def test_flow_outputs_are_valid_items_in_a_valid_catalog(two_scenes: Path, tmp_path: Path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows import segment as seg
    from flows.links import BASE_URL_ENV

    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    inputs = [str(two_scenes)] + ([str(landsat_item(tmp_path))] if L8.is_dir() else [])
    out = tmp_path / "out"
    state = seg.segment_flow(inputs, str(out), OPTIONS, return_state=True)
    assert state.is_completed()
    items = _catalog_items(out)
    assert {"alpha", "beta"} <= set(items) and all("mask" in i["assets"] for i in items.values())
    if L8.is_dir():
        manifest = json.loads((out / "l8_json" / "manifest.json").read_text())  # the flow keeps the suffix
        assert manifest["input"]["band_map_source"] == "STAC eo:bands"
        assert manifest["input"]["stac"]["assets"]["red"]["asset"] == "B4"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    links = {m for a in artifacts if a.type == "markdown" for m in re.findall(r"\]\((http[^)]+)\)", a.data)}
    assert "http://127.0.0.1:8000/catalog.json" in links and "http://127.0.0.1:8000/alpha/item.json" in links


@pytest.mark.usefixtures("prefect_harness")
def test_s3_root_gets_a_catalog_of_the_uploaded_items(two_scenes: Path, monkeypatch, request) -> None:
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from flows import remote
    from flows import segment as seg

    _, options = request.getfixturevalue("s3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    seg.segment_flow([str(two_scenes)], "s3://shared/stac", OPTIONS, output_storage_options=options)
    fs, _ = remote.remote_fs("s3://shared", options)
    catalog = json.loads(fs.cat_file("shared/stac/catalog.json"))
    validate_offline(catalog)
    assert [x["href"] for x in catalog["links"] if x["rel"] == "item"] == ["./alpha/item.json", "./beta/item.json"]
    for name in ("alpha", "beta"):
        validate_offline(json.loads(fs.cat_file(f"shared/stac/{name}/item.json")))


def test_a_fetched_item_keeps_its_assets_beside_its_url(tmp_path: Path) -> None:
    """The segment flow stages a remote Item: its relative asset hrefs are made absolute against its URL."""
    import fsspec

    from flows.inputs import fetch_to

    item = {"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None, "properties": {"datetime": None},
            "links": [], "assets": {"B4": {"href": "bands/B4.tif"}, "B3": {"href": "https://h.example/B3.tif"}}}
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/stac-bucket/items/x.json", json.dumps(item).encode())
    copy = fetch_to("memory://stac-bucket/items/x.json", tmp_path / "staging")
    hrefs = {k: v["href"] for k, v in json.loads(copy.read_text())["assets"].items()}
    assert hrefs == {"B4": "memory://stac-bucket/items/bands/B4.tif", "B3": "https://h.example/B3.tif"}
