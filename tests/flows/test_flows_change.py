"""The change flow: dated images segmented by the segment flow (a subflow), then compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samgeo_pipeline.demo import write_demo_scene

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


@pytest.mark.usefixtures("prefect_harness")
def test_flow_segments_dated_images_then_compares(tmp_path: Path, monkeypatch) -> None:
    """Three dated scenes, the middle one uncertain: it is left out and named; the other two are compared."""
    from dataclasses import replace

    import samgeo_pipeline.run.image_stats as pipeline
    from flows.change import change_flow
    from samgeo_pipeline.change.compare import run_change

    real = pipeline.stats_from_array

    def stats(*args, **kwargs):  # the 2015 scene's coarse rule abstains
        found = real(*args, **kwargs)
        abstains = "2015" in str(args[4] if len(args) > 4 else kwargs.get("where"))
        return replace(found, coarse=replace(found.coarse, uncertain="dark and smooth")) if abstains else found

    monkeypatch.setattr(pipeline, "stats_from_array", stats)
    images = tmp_path / "images"
    images.mkdir()
    for seed, name in ((1, "site_20090818.tif"), (2, "site_20150926.tif"), (3, "site_20200831.tif")):
        write_demo_scene(images / name, 200, 300, seed=seed)
    out = tmp_path / "out"
    state = change_flow([str(images)], str(out), OPTIONS, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert [(d["date"], d["source"]) for d in summary["dates"]] == [("2009-08-18", "file name"),
                                                                    ("2020-08-31", "file name")]  # fmt: skip
    assert "site_20150926: uncertain, no mask.tif (dark and smooth)" in summary["left_out"][0]["reason"]
    names = {p.name for p in (out / "change").iterdir()}
    assert {"change.tif", "occurrence.tif", "change.gpkg", "areas.csv", "change.png", "manifest.json"} <= names
    manifest = json.loads((out / "change" / "manifest.json").read_text())
    direct = run_change([out / "site_20090818", out / "site_20200831"], tmp_path / "direct", log=lambda m: None)
    assert [manifest["change"]["classes"][str(c)]["pixels"] for c in range(11)] == [direct.class_pixels[c] for c in range(11)]
    assert direct.class_pixels[1] > 0  # the demo water, on both dates

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["change-summary"])))
    text = found[0].data
    assert "| 2009-08-18 | file name |" in text and "change/change.png" in text and "Left out:" in text
