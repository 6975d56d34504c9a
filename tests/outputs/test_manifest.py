"""The manifest says where an image ran: host, the device actually used (not ``auto``), the card,
``CUDA_VISIBLE_DEVICES``, and who ran it (a Prefect worker's name); it is read and written as a
typed :class:`Manifest`, and a manifest of a newer schema version is refused."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ManifestVersionError
from samgeo_pipeline.outputs.manifest import MANIFEST_VERSION, Manifest, load_manifest, runtime_info, write_manifest
from samgeo_pipeline.run.image import RasterRun, segment_raster
from tests.scenes import write_raster


def test_manifest_records_host_device_gpu_mapping_and_runner(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    path = write_raster(tmp_path / "plain.tif", np.random.default_rng(0).integers(50, 3000, (4, 64, 64)).astype(np.uint16))
    config = SegmentConfig(model="none", tile_size=64, halo=8, progress=False)
    run = RasterRun(path, tmp_path / "out", config, runner={"worker": "ProcessWorker 1234", "flow_run": "abc"})
    assert run.prepare() is None
    run.tiles()
    runtime = run.finish().manifest["runtime"]
    assert runtime["host"] == platform.node() and runtime["cuda_visible_devices"] == "3"
    assert runtime["device"] == "cpu" and runtime["device_name"] is None  # --model none: the coarse mask, on the CPU
    assert runtime["worker"] == "ProcessWorker 1234" and runtime["flow_run"] == "abc"


def test_a_cuda_device_is_recorded_with_its_index_and_card_name(monkeypatch) -> None:
    """``cuda`` (the current device) is written as ``cuda:N`` with the card's name, as torch numbers it
    below ``CUDA_VISIBLE_DEVICES``."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"Card {index}")
    info = runtime_info(SimpleNamespace(device=torch.device("cuda")))
    assert (info["device"], info["device_name"]) == ("cuda:1", "Card 1")
    info = runtime_info(SimpleNamespace(device=torch.device("cuda:0")))
    assert (info["device"], info["device_name"]) == ("cuda:0", "Card 0")


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
