"""The segment flow's plain steps (:mod:`flows.segment_steps`): its configuration, one image's summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import segment_steps
from samgeo_pipeline.outputs.manifest import Manifest


def test_build_config_layers_file_then_options(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: none\ntile_size: 512\nhalo: 64\n")
    config = segment_steps.build_config({"halo": 32}, path)
    assert (config.model, config.tile_size, config.halo, config.progress) == ("none", 512, 32, False)
    with pytest.raises(ValueError, match="unknown option 'tiles'"):
        segment_steps.build_config({"tiles": 3})


def test_summary_of_a_manifest(tmp_path: Path) -> None:
    data = {
        "input": {"path": "/staged/x.tif", "source": "https://u:secret@h.example/x.tif", "sha256": "ab"},
        "tiles": {"total": 4, "sam": 2, "coarse_only": 1, "skipped": 1, "failed": 0, "other": 9},
        "water": {"area_m2": 1.5e6, "fraction_of_valid": 0.25, "polygons": 3},
        "seconds": {"total": 12.5}, "model": {"id": "none"}, "params_hash": "p1",
        "uncertain": {"reason": "poorly separated"}, "outputs": ["mask.tif"], "status": "done",
    }  # fmt: skip
    manifest = Manifest.from_dict(data)
    summary = segment_steps.summarize(manifest, "done", tmp_path)
    assert summary["input"] == "https://***@h.example/x.tif" and summary["uncertain"] == "poorly separated"
    assert summary["tiles"] == {"total": 4, "sam": 2, "coarse_only": 1, "skipped": 1, "failed": 0}
    assert summary["outputs"] == [str(tmp_path / "mask.tif"), str(tmp_path / "manifest.json")]
    assert segment_steps.summarize(manifest, "skipped", tmp_path, source="/here/x.tif")["input"] == "/here/x.tif"
    del data["uncertain"]
    assert segment_steps.summarize(Manifest.from_dict(data), "done", tmp_path)["uncertain"] is None
