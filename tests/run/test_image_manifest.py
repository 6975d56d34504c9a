"""The manifest of a finished image run (:mod:`samgeo_pipeline.run.image_manifest`) says where the
image ran: host, the device actually used (not ``auto``), the card, ``CUDA_VISIBLE_DEVICES``, and who
ran it (a Prefect worker's name)."""

from __future__ import annotations

import platform
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.run.image import RasterRun
from samgeo_pipeline.run.image_manifest import runtime_info
from tests.scenes import write_raster


def test_manifest_records_host_device_gpu_mapping_and_runner(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    path = write_raster(tmp_path / "plain.tif", np.random.default_rng(0).integers(50, 3000, (4, 64, 64)).astype(np.uint16))
    config = SegmentConfig(model="none", tile_size=64, halo=8, progress=False)
    run = RasterRun(path, tmp_path / "out", config, runner={"worker": "ProcessWorker 1234", "flow_run": "abc"})
    assert run.prepare() is None
    run.tiles()
    runtime = run.finish().manifest.runtime
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
