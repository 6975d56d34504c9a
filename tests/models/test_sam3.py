"""SAM 3 text prompts through the tiled pipeline (issue 25), with a tiny random SAM 3 and a CLIP
tokenizer built here (never a download): loading, batching, determinism, outputs on the input
grid, text reaching the model, the combination modes, uncertain images, refusals, the manifest
and ``segment`` on real imagery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import ConfigError, ModelUnavailableError
from samgeo_pipeline.models.sam3 import Sam3Predictor, TextOptions, TextRecordOptions, combine_used, prompt_record
from samgeo_pipeline.run.batch import load_predictor
from samgeo_pipeline.run.image import segment_raster
from tests.scenes import check_mask_on_input_grid, options_only
from tests.test_cli import abstain
from tests.tiny_sam import save_tiny_sam

NAIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "naip_potholes" / "m_4709963_se_14_1_20200831.tif"


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("sam3") / "tiny", image_size=256, family="sam3")


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny", image_size=256, family="sam")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "scene.tif", height=600, width=800)


def text_config(model_dir: Path, **changes: object) -> SegmentConfig:
    base = SegmentConfig(model=str(model_dir), tile_size=256, halo=32, batch_size=2, progress=False, device="cpu",
                         prompt="text", text="water", text_threshold=0.22, text_combine="none")  # fmt: skip
    return base.merged(changes)


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def tiles(seed: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 200, 300, 3), dtype=np.uint8)


class TestModel:
    def test_loads_as_sam3_with_the_folders_tokenizer(self, sam3_dir: Path) -> None:
        predictor, source = load_predictor(text_config(sam3_dir))
        assert isinstance(predictor, Sam3Predictor) and source.family == "sam3" and predictor.image_size == 252
        assert predictor.tokenizer("water").input_ids != predictor.tokenizer("lake").input_ids

    def test_a_folder_without_tokenizer_is_refused_in_one_line(self, sam3_dir: Path, tmp_path: Path) -> None:
        folder = tmp_path / "no_tokenizer"
        folder.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(sam3_dir / name, folder / name)
        with pytest.raises(ModelUnavailableError, match=rf"^{folder}: no SAM 3 tokenizer .*Sam3Processor"):
            load_predictor(text_config(folder))

    def test_batched_text_equals_each_tile_alone(self, sam3_dir: Path) -> None:
        predictor, _ = load_predictor(text_config(sam3_dir))
        batch = tiles(1)
        embeddings, _ = predictor.embed(batch)
        together = predictor.predict_text(embeddings, ["water", "river"], 0.22, (200, 300))
        assert any(len(t) for t in together)
        for tile, masks in zip(batch, together, strict=True):
            alone, _ = predictor.embed(tile[None])
            expected = predictor.predict_text(alone, ["water", "river"], 0.22, (200, 300))[0]
            assert masks.shape == expected.shape and masks.dtype == bool and masks.shape[1:] == (200, 300)
            assert np.mean(masks == expected) > 0.999  # float rounding of the batched call may flip an edge pixel

    def test_the_text_reaches_the_model(self, sam3_dir: Path) -> None:
        predictor, _ = load_predictor(text_config(sam3_dir))
        embeddings, _ = predictor.embed(tiles(2, 1))
        vision = embeddings["vision_embeds"]
        scores = {}
        for phrase in ("water", "lake"):
            features, mask = predictor._text_features((phrase,))
            scores[phrase] = predictor._decode(vision, features, mask)[1]
        assert not np.allclose(scores["water"].numpy(), scores["lake"].numpy(), atol=1e-4)

    def test_the_threshold_keeps_the_instances_above_it(self, sam3_dir: Path) -> None:
        predictor, _ = load_predictor(text_config(sam3_dir))
        embeddings, _ = predictor.embed(tiles(2, 1))
        features, mask = predictor._text_features(("water",))
        scores = predictor._decode(embeddings["vision_embeds"], features, mask)[1][0]
        middle = float(scores.median())
        kept = predictor.predict_text(embeddings, ["water"], middle, (200, 300))[0]
        assert len(kept) == int((scores > middle).sum()) and 0 < len(kept) < len(scores)
        assert len(predictor.predict_text(embeddings, ["water"], 0.999999, (200, 300))[0]) == 0

    def test_point_prompts_are_refused(self, sam3_dir: Path) -> None:
        predictor, _ = load_predictor(text_config(sam3_dir))
        embeddings, resized = predictor.embed(tiles(3, 1))
        with pytest.raises(ConfigError, match="SAM 3 takes text prompts here, not --prompt points"):
            predictor.predict_masks(embeddings, [[]], (200, 300), resized)


class TestCombineThroughThePipeline:
    """The modes through the pipeline with a tiny SAM 3 (the modes on a controlled tile: tests/run/test_text_prompts.py)."""

    @pytest.mark.parametrize("combine", ["none", "agree", "add", "skip-dry"])
    def test_through_the_pipeline(self, sam3_dir: Path, scene: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, combine: str) -> None:  # fmt: skip
        """Instances patched to one square per tile (none under add: every coarse component is then
        missed and added): the mask written is the mode's combination of them with the coarse mask,
        on the tile cores; dry tiles skip SAM 3 under agree / skip-dry."""
        config = text_config(sam3_dir, text_combine=combine)
        predictor, source = load_predictor(config)
        square = np.zeros((256, 256), bool)
        square[100:140, 100:140] = True
        seen: list[tuple[str, ...]] = []

        def fixed(self, embeddings, phrases, threshold, tile_shape):
            seen.append(tuple(phrases))
            instances = square[None][:0] if combine == "add" else square[None]
            return [instances.copy() for _ in range(embeddings["vision_embeds"].fpn_hidden_states[0].shape[0])]

        monkeypatch.setattr(Sam3Predictor, "predict_text", fixed)
        result = segment_raster(scene, tmp_path / "out", config, predictor, source)
        segment_raster(scene, tmp_path / "coarse", config.merged({"model": "none", "prompt": "points", "text": ""}))
        mask, coarse_mask = read_band(tmp_path / "out" / "mask.tif"), read_band(tmp_path / "coarse" / "mask.tif")
        assert set(seen) == {("water",)}
        dry = result.tiles.total - result.tiles.sam
        assert (dry > 0) is (combine in ("agree", "skip-dry")) and result.tiles.sam > 0
        water, coarse_water = mask == 1, coarse_mask == 1
        if combine == "add":
            np.testing.assert_array_equal(water, coarse_water)
        else:
            assert water.sum() <= result.tiles.sam * 40 * 40 and water.any()
        assert np.array_equal(mask == 255, coarse_mask == 255)  # nodata as the input's


class TestPipeline:
    def test_outputs_on_the_input_grid_and_manifest(self, sam3_dir: Path, scene: Path, tmp_path: Path) -> None:
        config = text_config(sam3_dir, text="water, river", text_combine="agree")
        predictor, source = load_predictor(config)
        result = segment_raster(scene, tmp_path / "out", config, predictor, source)
        assert result.status == "done"
        check_mask_on_input_grid(scene, tmp_path / "out")
        m = result.manifest
        assert m.model.family == "sam3" and m.model.image_size == 252
        assert m.prompt == {"kind": "text", "text": ["water", "river"], "threshold": 0.22, "combine": "agree",
                               "combine_used": "agree"}  # fmt: skip
        assert m.parameters["text"] == "water, river" and (tmp_path / "out" / "water.gpkg").is_file()

    def test_deterministic_and_batch_independent(self, sam3_dir: Path, scene: Path, tmp_path: Path) -> None:
        masks = []
        for i, batch in enumerate([1, 3, 3]):
            config = text_config(sam3_dir, batch_size=batch)
            predictor, source = load_predictor(config)
            segment_raster(scene, tmp_path / str(i), config, predictor, source)
            masks.append(read_band(tmp_path / str(i) / "mask.tif"))
        np.testing.assert_array_equal(masks[1], masks[2])
        assert np.mean(masks[0] == masks[1]) > 0.999
        assert 0 < np.mean(masks[1] == 1) < 1

    def test_different_texts_give_different_masks(self, sam3_dir: Path, scene: Path, tmp_path: Path) -> None:
        masks = []
        for text in ("water", "lake"):
            config = text_config(sam3_dir, text=text)
            predictor, source = load_predictor(config)
            segment_raster(scene, tmp_path / text, config, predictor, source)
            masks.append(read_band(tmp_path / text / "mask.tif"))
        assert not np.array_equal(masks[0], masks[1])

    def test_an_uncertain_image_still_gets_a_text_mask(self, sam3_dir: Path, scene: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
        abstain(monkeypatch)
        config = text_config(sam3_dir, text_combine="agree")  # on_uncertain: skip (the default)
        predictor, source = load_predictor(config)
        result = segment_raster(scene, tmp_path / "out", config, predictor, source)
        assert result.status == "uncertain" and (tmp_path / "out" / "mask.tif").is_file()
        assert result.tiles.sam == result.tiles.total - result.tiles.skipped > 0
        prompt = result.manifest.prompt
        assert (prompt["combine"], prompt["combine_used"]) == ("agree", "none") and "uncertain" in prompt["note"]
        assert np.any(read_band(tmp_path / "out" / "mask.tif") == 1)


    def test_a_new_text_is_not_taken_for_the_old_outputs(self, sam3_dir: Path, scene: Path, tmp_path: Path) -> None:
        config = text_config(sam3_dir)
        predictor, source = load_predictor(config)
        assert segment_raster(scene, tmp_path / "out", config, predictor, source).status == "done"
        assert segment_raster(scene, tmp_path / "out", config, predictor, source).status == "skipped"
        other = config.merged({"text": "lake"})
        assert segment_raster(scene, tmp_path / "out", other, predictor, source).status == "done"

    def test_probability_holds_the_combined_mask(self, sam3_dir: Path, scene: Path, tmp_path: Path) -> None:
        config = text_config(sam3_dir, probability=True)
        predictor, source = load_predictor(config)
        segment_raster(scene, tmp_path / "out", config, predictor, source)
        mask, prob = read_band(tmp_path / "out" / "mask.tif"), read_band(tmp_path / "out" / "probability.tif")
        np.testing.assert_array_equal(prob[mask != 255], (mask[mask != 255] == 1).astype(np.float32))


def test_the_manifests_prompt_reads_only_its_options() -> None:
    config = SegmentConfig(model="facebook/sam3", prompt="text", text="water, river", text_threshold=0.3)
    assert (combine_used(options_only(config, TextOptions), None), combine_used(config, "uncertain")) == ("agree", "none")
    record = prompt_record(options_only(config, TextRecordOptions), "uncertain")
    assert record == prompt_record(config, "uncertain") and record["text"] == ["water", "river"] and "note" in record
    assert prompt_record(options_only(SegmentConfig(), TextRecordOptions), None) == {"kind": "points"}


def test_yaml_text_may_be_a_list(tmp_path: Path) -> None:
    from samgeo_pipeline.config import load_config_file

    path = tmp_path / "c.yaml"
    path.write_text("prompt: text\ntext: [water, river lake]\nmodel: facebook/sam3\n")
    config = SegmentConfig().merged(load_config_file(path))
    assert config.phrases == ("water", "river lake")


class TestRefusals:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"text": ""}, r"prompt=text needs --text: comma-separated phrases"),
            ({"text": " , "}, r"prompt=text needs --text"),
            ({"model": "none"}, r"prompt=text needs a SAM 3 model: pass --model facebook/sam3"),
            ({"prompt": "points"}, r"text='water' is only used with --prompt text"),
            ({"text_threshold": 1.0}, r"text_threshold=1.0: must be > 0 and < 1"),
            ({"text_combine": "both"}, r"text_combine='both': choose one of agree, none, add, skip-dry"),
        ],
    )
    def test_bad_options_are_refused(self, sam3_dir: Path, changes: dict, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            text_config(sam3_dir, **changes)

    def test_text_with_another_family_is_refused(self, sam_dir: Path) -> None:
        with pytest.raises(ConfigError, match=rf"{sam_dir}: --prompt text needs a SAM 3 model \(SAM takes points or boxes\)"):
            load_predictor(text_config(sam_dir))

    @pytest.mark.parametrize("prompt", ["points", "box"])
    def test_sam3_with_points_or_boxes_is_refused(self, sam3_dir: Path, prompt: str) -> None:
        config = SegmentConfig(model=str(sam3_dir), prompt=prompt, device="cpu", progress=False)
        with pytest.raises(ConfigError, match=rf"SAM 3 takes text prompts here, not --prompt {prompt}"):
            load_predictor(config)

    @pytest.mark.parametrize(
        ("flags", "message"),
        [(["--prompt", "text"], "prompt=text needs --text"), (["--prompt", "text", "--text", "water"], "needs a SAM 3 model")],
    )
    def test_cli_refuses_in_one_line_before_any_read(self, sam_dir: Path, scene: Path, tmp_path: Path, flags: list[str],
                                                     message: str, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
        code = main(["segment", str(scene), "--out", str(tmp_path / "out"), "--model", str(sam_dir), "--device", "cpu",
                     "--no-progress", *flags])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1 and message in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
        assert not (tmp_path / "out" / "scene").exists()

    def test_finetuning_refuses_sam3_and_text(self, sam3_dir: Path, tmp_path: Path) -> None:
        from samgeo_pipeline.finetune.config import FinetuneConfig
        from samgeo_pipeline.finetune.train import finetune
        from tests.finetune_data import write_chip_folder

        chips = write_chip_folder(tmp_path / "chips", n=4)
        config = FinetuneConfig(data=str(chips), bands="naip", model=str(sam3_dir), device="cpu", epochs=1,
                                progress=False, out=str(tmp_path / "run"))  # fmt: skip
        with pytest.raises(ConfigError, match="fine-tuning does not support SAM 3 models yet"):
            finetune(config, log=None)
        with pytest.raises(ConfigError, match="prompt=text: fine-tuning and evaluate take points or box prompts"):
            FinetuneConfig(data=str(chips), prompt="text")

    def test_evaluate_refuses_sam3_in_one_line(self, sam3_dir: Path, tmp_path: Path) -> None:
        from samgeo_pipeline.finetune.config import FinetuneConfig
        from samgeo_pipeline.finetune.evaluate import evaluate
        from tests.finetune_data import write_chip_folder

        chips = write_chip_folder(tmp_path / "chips", n=4)
        config = FinetuneConfig(data=str(chips), bands="naip", val_fraction=0.5, device="cpu")
        with pytest.raises(ConfigError, match=rf"{sam3_dir}: evaluate takes point and box prompts; SAM 3 answers text"):
            evaluate(config, [str(sam3_dir)], tmp_path / "eval", "val", log=None)


@pytest.mark.skipif(not NAIP.exists(), reason="../shared/data is not present")
def test_cli_segment_text_on_real_naip(sam3_dir: Path, tmp_path: Path) -> None:
    """``segment --prompt text`` end to end on a real NAIP scene with the tiny SAM 3."""
    code = main(["segment", str(NAIP), "--out", str(tmp_path / "out"), "--model", str(sam3_dir), "--bands", "naip",
                 "--tile-size", "256", "--halo", "32", "--device", "cpu", "--no-progress", "--prompt", "text",
                 "--text", "water,pond", "--text-combine", "none", "--text-threshold", "0.22"])  # fmt: skip
    folder = tmp_path / "out" / NAIP.stem
    manifest = json.loads((folder / "manifest.json").read_text())
    assert code in (0, 3) and manifest["model"]["family"] == "sam3" and manifest["tiles"]["sam"] > 0
    assert manifest["prompt"]["text"] == ["water", "pond"]
    with rasterio.open(NAIP) as src, rasterio.open(folder / "mask.tif") as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
    assert (folder / "water.gpkg").is_file()
