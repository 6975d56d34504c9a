"""Every supported model family through the one predictor seam (issue 25), with tiny random models
saved to temp dirs (never a download): loading as itself, refusal of an unsupported folder,
batching, dry tiles skipped, determinism, outputs on the input grid, the manifest's record, the
CLI on real imagery, and fine-tuning / evaluate per family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import ConfigError, ModelUnavailableError
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.models.families import FAMILIES, read_family
from samgeo_pipeline.run.batch import describe_model, load_predictor
from samgeo_pipeline.run.image import segment_raster
from samgeo_pipeline.sam.predictor import load_sam_model
from samgeo_pipeline.water.prompts import ComponentPrompt
from tests.scenes import check_mask_on_input_grid
from tests.tiny_sam import save_tiny_sam, tiny_sam

NAIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "naip_potholes" / "m_4709963_se_14_1_20200831.tif"
OTHER_FAMILIES = ("sam_hq", "sam2")
CLASSES = {"sam": "SamModel", "sam_hq": "SamHQModel", "sam2": "Sam2Model", "sam3": "Sam3Model"}
PREDICTORS = {"sam": "SamPredictor", "sam_hq": "SamHQPredictor", "sam2": "Sam2Predictor", "sam3": "Sam3Predictor"}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: save_tiny_sam(root / family, image_size=256, family=family) for family in FAMILIES}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "scene.tif", height=600, width=800)


def family_config(model_dir: Path, **changes: object) -> SegmentConfig:
    base = SegmentConfig(model=str(model_dir), tile_size=256, halo=32, batch_size=2, progress=False, device="cpu")
    return base.merged(changes)


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_loads_as_itself(model_dirs: dict[str, Path], family: str) -> None:
    """The issue's bug: a Sam2Model folder was loaded by SamModel.from_pretrained as a random SAM."""
    model, source = load_sam_model(str(model_dirs[family]))
    assert type(model).__name__ == CLASSES[family] and source.family == family
    saved = tiny_sam(256, 0, family).state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    config = family_config(model_dirs[family], **({"prompt": "text", "text": "water"} if family == "sam3" else {}))
    predictor, source = load_predictor(config)
    assert type(predictor).__name__ == PREDICTORS[family] and predictor.family == family
    assert f"model: {FAMILIES[family].label} {model_dirs[family]} (local directory)" in describe_model(config, predictor, source)


@pytest.mark.parametrize("model_type", ["edgetam", "sam3_video", None])
def test_unsupported_folder_is_refused_in_one_line(model_dirs: dict[str, Path], tmp_path: Path, scene: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   model_type: str | None) -> None:  # fmt: skip
    folder = tmp_path / "other"
    folder.mkdir()
    config = json.loads((model_dirs["sam"] / "config.json").read_text())
    config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((model_dirs["sam"] / "model.safetensors").read_bytes())
    with pytest.raises(ModelUnavailableError, match=rf"{folder}: model_type {model_type!r} is not a supported model family "
                                                    r"\(supported: SAM \(sam\), SAM-HQ \(sam_hq\), "
                                                    r"SAM 2 \(sam2\), SAM 3 \(sam3\)\)"):  # fmt: skip
        read_family(folder)
    code = main(["segment", str(scene), "--out", str(tmp_path / "out"), "--model", str(folder), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "not a supported model family" in err and "--model none" in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "model_type" in line]) == 1
    assert not (tmp_path / "out" / "scene" / "manifest.json").exists()


@pytest.mark.parametrize("family", OTHER_FAMILIES)
class TestFamilyThroughThePipeline:
    def test_outputs_on_the_input_grid_and_manifest(self, model_dirs, scene, tmp_path, family):
        config = family_config(model_dirs[family])
        predictor, source = load_predictor(config)
        result = segment_raster(scene, tmp_path / "out", config, predictor, source)
        assert result.status == "done"
        check_mask_on_input_grid(scene, tmp_path / "out")
        tiles = result.tiles
        assert tiles.total == len(make_grid(inspect_raster(scene), config)) == tiles.sam + tiles.skipped
        assert tiles.sam > 0 and tiles.skipped > 0
        model = result.manifest.model
        assert model.family == family and model.image_size == 256
        assert model.parameters == sum(p.numel() for p in predictor.model.parameters())
        assert model.fingerprint.startswith("sha256:")

    def test_deterministic_and_batch_independent(self, model_dirs, scene, tmp_path, family):
        logits = []
        for i, batch in enumerate([1, 3, 3]):
            config = family_config(model_dirs[family], batch_size=batch, probability=True)
            predictor, source = load_predictor(config)
            segment_raster(scene, tmp_path / str(i), config, predictor, source)
            logits.append(read_band(tmp_path / str(i) / "probability.tif"))
        np.testing.assert_array_equal(logits[1], logits[2])
        np.testing.assert_allclose(logits[0], logits[1], atol=1e-4, equal_nan=True)

    def test_dry_and_nodata_tiles_skip_the_model(self, model_dirs, tmp_path, monkeypatch, family):
        path = write_demo_scene(tmp_path / "dry.tif", height=400, width=600)
        with rasterio.open(path, "r+") as ds:
            land = np.array([95, 110, 80, 170], np.uint8)[:, None, None]
            dry = np.broadcast_to(land, (ds.count, ds.height, ds.width)).copy()
            dry[:, 40:120, 60:140] = np.array([60, 80, 95, 30], np.uint8)[:, None, None]
            dry[:, :, :30] = 0
            ds.write(dry)
        config = family_config(model_dirs[family])
        predictor, source = load_predictor(config)
        embedded: list[int] = []
        original = type(predictor).embed

        def counting_embed(self, tiles):
            embedded.append(len(tiles))
            return original(self, tiles)

        monkeypatch.setattr(type(predictor), "embed", counting_embed)
        result = segment_raster(path, tmp_path / "out", config, predictor, source)
        assert sum(embedded) == result.tiles.sam == 1
        assert result.tiles.skipped == result.tiles.total - 1
        assert np.all(read_band(tmp_path / "out" / "mask.tif")[:, :30] == 255)

    @pytest.mark.parametrize("merge", ["joint", "mean", "best"])
    def test_batched_decoding_equals_each_tile_alone(self, model_dirs, family, merge):
        """Tiles of a batch with different prompt shapes: each decoder call selects its images from
        every embedding the family has (HQ's intermediate ones, SAM 2's three levels)."""
        predictor, _ = load_predictor(family_config(model_dirs[family]))
        rng = np.random.default_rng(3)
        tiles = rng.integers(0, 256, (3, 200, 300, 3), dtype=np.uint8)
        box = ComponentPrompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.array([5, 5, 120, 90], np.float32), 9)
        prompts = [
            [ComponentPrompt(np.array([[10, 20], [50, 60], [80, 20]], np.float32), np.array([1, 1, 0]), None, 9)],
            [],
            [box, ComponentPrompt(np.array([[150, 120], [40, 160]], np.float32), np.array([1, 0]), None, 9)],
        ]
        embeddings, resized = predictor.embed(tiles)
        batched = predictor.predict_masks(embeddings, prompts, (200, 300), resized, merge, logits=True)
        for tile, tile_prompts, logits in zip(tiles, prompts, batched, strict=True):
            alone, _ = predictor.embed(tile[None])
            expected = predictor.predict_logits(alone, tile_prompts, (200, 300), resized, merge)
            np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
        assert batched[0].shape == (200, 300) and np.all(batched[1] == -1.0e4)

    def test_prompts_change_the_mask(self, model_dirs, family):
        predictor, _ = load_predictor(family_config(model_dirs[family]))
        tile = np.random.default_rng(4).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
        embeddings, resized = predictor.embed(tile)
        a = predictor.predict_logits(embeddings, [ComponentPrompt(np.array([[40, 40]], np.float32), np.array([1]), None, 9)],
                                     (256, 256), resized)  # fmt: skip
        b = predictor.predict_logits(embeddings, [ComponentPrompt(np.array([[200, 210]], np.float32), np.array([1]), None, 9)],
                                     (256, 256), resized)  # fmt: skip
        assert not np.allclose(a, b)

    def test_attention_rows_is_refused_for_a_non_sam_encoder(self, model_dirs, family):
        with pytest.raises(ConfigError, match=rf"attention_rows: {FAMILIES[family].label}'s encoder"):
            load_predictor(family_config(model_dirs[family], attention_rows=4))

    def test_finetuning_says_it_does_not_support_the_family(self, model_dirs, tmp_path, family):
        from samgeo_pipeline.finetune.config import FinetuneConfig
        from samgeo_pipeline.finetune.train import finetune
        from tests.finetune_data import write_chip_folder

        chips = write_chip_folder(tmp_path / "chips", n=4)
        config = FinetuneConfig(data=str(chips), bands="naip", model=str(model_dirs[family]), device="cpu",
                                epochs=1, progress=False, out=str(tmp_path / "run"))  # fmt: skip
        with pytest.raises(ConfigError, match=rf"fine-tuning does not support {FAMILIES[family].label} models yet"):
            finetune(config, log=None)

    def test_evaluate_runs_the_family(self, model_dirs, tmp_path, family):
        from samgeo_pipeline.finetune.config import FinetuneConfig
        from samgeo_pipeline.finetune.evaluate import evaluate
        from tests.finetune_data import write_chip_folder

        chips = write_chip_folder(tmp_path / "chips", n=4)
        config = FinetuneConfig(data=str(chips), bands="naip", val_fraction=0.5, device="cpu", box_jitter=0)
        result = evaluate(config, [str(model_dirs[family])], tmp_path / "eval", "val", log=None)
        assert f"{family} points@coarse" in result.methods and f"{family} box@label" in result.methods


@pytest.mark.skipif(not NAIP.exists(), reason="../shared/data is not present")
@pytest.mark.parametrize("family", OTHER_FAMILIES)
def test_cli_segment_on_real_naip(model_dirs: dict[str, Path], tmp_path: Path, family: str) -> None:
    """``segment`` end to end on a real NAIP scene with the family's tiny model."""
    code = main(["segment", str(NAIP), "--out", str(tmp_path / "out"), "--model", str(model_dirs[family]),
                 "--bands", "naip", "--tile-size", "256", "--halo", "32", "--device", "cpu", "--no-progress"])  # fmt: skip
    folder = tmp_path / "out" / NAIP.stem
    manifest = json.loads((folder / "manifest.json").read_text())
    assert code == 0 and manifest["status"] == "done" and manifest["model"]["family"] == family
    assert manifest["tiles"]["sam"] > 0
    with rasterio.open(NAIP) as src, rasterio.open(folder / "mask.tif") as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
    assert (folder / "water.gpkg").is_file()
