"""Fine-tuning on real Cellula chips with a tiny SAM: loss, cache, resume, checkpoint -> segment."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.train import FinetuneResult, finetune
from samgeo_pipeline.run.batch import load_predictor
from samgeo_pipeline.run.image import segment_raster
from samgeo_pipeline.sam.predictor import SamPredictor, checkpoint_config
from tests.finetune_data import CELLULA
from tests.tiny_sam import save_tiny_sam

pytestmark = pytest.mark.skipif(not CELLULA.is_dir(), reason="../shared/data/cellula_water absent")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM whose random encoder gives informative features (tests/tiny_sam.py)."""
    return save_tiny_sam(tmp_path_factory.mktemp("model") / "tiny128", image_size=128)


def cellula_config(model: Path, out: Path, **options: object) -> FinetuneConfig:
    """12 training + 12 validation Cellula chips, bands 2-6 only, false colour (NIR, SWIR, green)."""
    base = FinetuneConfig(
        data=str(CELLULA), bands="landsat8", composite="nir,swir,green", model=str(model), max_images=12,
        epochs=2, batch_size=4, lr=5e-3, warmup_steps=1, device="cpu", progress=False, out=str(out),
    )  # fmt: skip
    return base.merged(options)


def run(config: FinetuneConfig) -> FinetuneResult:
    return finetune(config, log=None)


def losses(result: FinetuneResult) -> np.ndarray:
    return np.array([[h["train_loss"], h["val_loss"], h["val"]["iou_mean"]] for h in result.history])


def test_loss_falls(tiny_model: Path, tmp_path: Path) -> None:
    result = run(cellula_config(tiny_model, tmp_path / "run", epochs=5, batch_size=2, lr=1e-2))
    train = [h["train_loss"] for h in result.history]
    assert len(train) == 5 and result.completed
    assert train[-1] < 0.8 * train[0] and min(train[2:]) < train[0], train
    assert result.counts["train"] >= 8 and result.counts["val"] == 12
    assert (result.best_dir / "samgeo_checkpoint.json").is_file() and result.curves is not None
    assert (result.last_dir / "training_state.pt").is_file()


@pytest.mark.parametrize("cache", ["off", "disk"])
def test_embedding_cache_does_not_change_losses(tiny_model: Path, tmp_path: Path, cache: str) -> None:
    memory = run(cellula_config(tiny_model, tmp_path / "memory"))
    other = run(cellula_config(tiny_model, tmp_path / cache, cache=cache))
    np.testing.assert_allclose(losses(other), losses(memory), rtol=1e-5, atol=1e-6)
    if cache == "disk":
        assert len(list((tmp_path / "disk" / "embedding_cache").rglob("*.pt"))) > 0


def test_resume_equals_uninterrupted(tiny_model: Path, tmp_path: Path) -> None:
    full = run(cellula_config(tiny_model, tmp_path / "full", epochs=3))
    first = run(cellula_config(tiny_model, tmp_path / "split", epochs=3, stop_after_epoch=1))
    assert not first.completed and len(first.history) == 1
    resumed = run(cellula_config(tiny_model, tmp_path / "split", epochs=3, resume=True, workers=0))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    np.testing.assert_array_equal(losses(resumed), losses(full))
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_other_options(tiny_model: Path, tmp_path: Path) -> None:
    from samgeo_pipeline.errors import ConfigError

    run(cellula_config(tiny_model, tmp_path / "run", epochs=2, stop_after_epoch=1))
    with pytest.raises(ConfigError, match="lr: run 0.005"):
        run(cellula_config(tiny_model, tmp_path / "run", epochs=2, lr=0.1, resume=True))


def test_checkpoint_segments_like_the_model_in_memory(tiny_model: Path, tmp_path: Path) -> None:
    result = run(cellula_config(tiny_model, tmp_path / "run", epochs=1, lr=1e-4))
    chip = CELLULA / "images" / "2.tif"
    common = {"tile_size": 128, "halo": 0, "progress": False, "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # In memory: the trained model, with the training composite given explicitly.
        explicit = SegmentConfig(model=str(result.last_dir), bands="landsat8", composite="nir,swir,green", **common)
        segment_raster(chip, tmp_path / "memory", explicit, SamPredictor(result.model, torch.device("cpu")))
        # From disk: only the checkpoint folder; its samgeo_checkpoint.json supplies bands and composite.
        config = SegmentConfig(model=str(result.last_dir), **common)
        predictor, source = load_predictor(config)
        assert checkpoint_config(config).composite == "nir,swir,green"
        loaded = segment_raster(chip, tmp_path / "disk", config, predictor, source)
    assert loaded.manifest.parameters["composite"] == "nir,swir,green"
    assert loaded.manifest.parameters["bands"] == "landsat8"
    with rasterio.open(tmp_path / "memory" / "mask.tif") as a, rasterio.open(tmp_path / "disk" / "mask.tif") as b:
        mask_a, mask_b = a.read(1), b.read(1)
    assert (mask_a == 1).sum() > 100  # SAM found water: the comparison is not trivially empty
    np.testing.assert_array_equal(mask_a, mask_b)
