"""The manifest is read and written as a typed :class:`Manifest`, and a manifest of a newer schema
version is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ManifestVersionError
from samgeo_pipeline.outputs.manifest import MANIFEST_VERSION, Manifest, load_manifest, write_manifest
from samgeo_pipeline.run.image import segment_raster
from tests.scenes import write_raster


def _finished(tmp_path: Path) -> Path:
    """The output folder of one finished ``--model none`` run."""
    path = write_raster(tmp_path / "plain.tif", np.random.default_rng(0).integers(50, 3000, (4, 64, 64)).astype(np.uint16))
    config = SegmentConfig(model="none", tile_size=64, halo=8, progress=False)
    assert segment_raster(path, tmp_path / "out", config).status in ("done", "uncertain")
    return tmp_path / "out"


def test_the_typed_manifest_reads_and_writes_the_same_json(tmp_path: Path) -> None:
    out = _finished(tmp_path)
    text = (out / "manifest.json").read_text()
    manifest = load_manifest(out / "manifest.json")
    assert manifest.manifest_version == MANIFEST_VERSION and manifest.input.path.endswith("plain.tif")
    assert manifest.tiles.total == 1 and manifest.model.id == "none" and manifest.grid.tile_size == 64
    assert "stac" not in manifest.to_dict()["input"]  # only for a STAC Item input
    write_manifest(tmp_path / "again.json", manifest)
    assert (tmp_path / "again.json").read_text() == text  # same keys, order and values


def test_a_manifest_without_a_version_reads_as_version_1(tmp_path: Path) -> None:
    out = _finished(tmp_path)
    data = json.loads((out / "manifest.json").read_text())
    del data["manifest_version"]
    assert Manifest.from_dict(data).manifest_version == 1


@pytest.mark.parametrize("version", [MANIFEST_VERSION + 1, "2.0", None])
def test_a_newer_or_unknown_manifest_version_is_refused(tmp_path: Path, version: object) -> None:
    """The loader refuses it in one line naming the file and the fix; a run into that folder fails
    and leaves the newer outputs as they are (an older package never replaces them)."""
    out = _finished(tmp_path)
    data = json.loads((out / "manifest.json").read_text())
    data["manifest_version"] = version
    (out / "manifest.json").write_text(json.dumps(data))
    before = (out / "mask.tif").read_bytes() if (out / "mask.tif").exists() else None
    with pytest.raises(ManifestVersionError, match=r"manifest\.json: manifest version .* newer or unknown .*upgrade"):
        load_manifest(out / "manifest.json")
    config = SegmentConfig(model="none", tile_size=64, halo=8, progress=False)
    with pytest.raises(ManifestVersionError, match="upgrade samgeo-pipeline"):
        segment_raster(tmp_path / "plain.tif", out, config)
    assert json.loads((out / "manifest.json").read_text())["manifest_version"] == version
    assert (before is None) or (out / "mask.tif").read_bytes() == before
