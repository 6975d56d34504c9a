"""The SAM path with a tiny random-weight model saved to a temp dir (never a download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import ModelUnavailableError
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.run.batch import describe_model, load_predictor
from samgeo_pipeline.run.image import segment_raster
from samgeo_pipeline.sam.predictor import SamPredictor, load_sam_model, preprocess_torch, resolve_dtype
from tests.tiny_sam import save_tiny_sam

IMAGE_SIZE = 256


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("tiny_sam") / "model", image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "scene.tif", height=600, width=800)


def sam_config(model_dir, **changes) -> SegmentConfig:
    base = SegmentConfig(model=str(model_dir), tile_size=256, halo=32, batch_size=2, progress=False)
    return base.merged(changes)


def read_mask(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


class TestPreprocessing:
    """Exact pixel values at other tile sizes: tests/sam/test_pixels.py (TestGeometry)."""

    def test_pads_bottom_right_with_zeros(self):
        images = torch.full((1, 128, 64, 3), 255, dtype=torch.uint8)
        values, resized = preprocess_torch(images, IMAGE_SIZE)
        assert resized == (256, 128)
        assert torch.all(values[..., :, 128:] == 0)
        assert torch.all(values[..., :, :128] > 0)


class TestLoading:
    def test_local_dir(self, tiny_model_dir):
        model, source = load_sam_model(str(tiny_model_dir))
        assert source.origin == "local directory"
        assert model.config.vision_config.image_size == IMAGE_SIZE

    def test_dir_without_config(self, tmp_path):
        with pytest.raises(ModelUnavailableError, match="no config.json"):
            load_sam_model(str(tmp_path))

    def test_hub_id_offline_without_cache(self, tmp_path, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
        with pytest.raises(ModelUnavailableError, match=r"--model /path/to/dir.*--model none"):
            load_sam_model("facebook/sam-vit-base")

    def test_cli_offline_says_how_to_pass_a_local_model(self, tmp_path, monkeypatch, capsys, scene):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        code = main(["segment", str(scene), "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1
        assert "error:" in err and "--model none" in err
        assert "Traceback" not in err
        assert not (tmp_path / "out" / "scene" / "mask.tif").exists()

    def test_run_says_which_model(self, tiny_model_dir):
        config = sam_config(tiny_model_dir)
        predictor, source = load_predictor(config)
        line = describe_model(config, predictor, source)
        assert str(tiny_model_dir) in line and "local directory" in line and "cpu" in line
        assert "none" in describe_model(SegmentConfig(model="none"), None, None)


class TestSegmentWithSam:
    def test_outputs_grid_and_counts(self, tiny_model_dir, scene, tmp_path):
        config = sam_config(tiny_model_dir)
        predictor, source = load_predictor(config)
        result = segment_raster(scene, tmp_path / "out", config, predictor, source)
        assert result.status == "done"
        with rasterio.open(scene) as src, rasterio.open(tmp_path / "out" / "mask.tif") as out:
            assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
            assert out.dtypes[0] == "uint8" and out.nodata == 255
            mask = out.read(1)
            nodata = src.read_masks(1) == 0
        assert np.all(mask[nodata] == 255)
        assert set(np.unique(mask[~nodata])) <= {0, 1}
        tiles = result.tiles
        assert tiles.total == len(make_grid(inspect_raster(scene), config))
        assert tiles.sam > 0 and tiles.skipped > 0
        assert tiles.sam + tiles.skipped + tiles.failed == tiles.total
        assert result.manifest.model.origin == "local directory"
        assert result.manifest.tiles.sam == tiles.sam

    def test_deterministic_and_batch_independent(self, tiny_model_dir, scene, tmp_path):
        masks = []
        for i, batch in enumerate([1, 3, 3]):
            config = sam_config(tiny_model_dir, batch_size=batch, probability=True)
            predictor, source = load_predictor(config)
            segment_raster(scene, tmp_path / str(i), config, predictor, source)
            masks.append(read_mask(tmp_path / str(i) / "probability.tif"))
        np.testing.assert_array_equal(masks[1], masks[2])
        np.testing.assert_allclose(masks[0], masks[1], atol=1e-4, equal_nan=True)

    def test_dry_and_nodata_tiles_skip_sam(self, tiny_model_dir, tmp_path, monkeypatch):
        # Water only in the top-left corner: one tile has prompts, every other tile skips SAM.
        path = write_demo_scene(tmp_path / "dry.tif", height=400, width=600)
        with rasterio.open(path, "r+") as ds:
            data = ds.read()
            land = np.array([95, 110, 80, 170], np.uint8)[:, None, None]
            dry = np.broadcast_to(land, data.shape).copy()
            dry[:, 40:120, 60:140] = np.array([60, 80, 95, 30], np.uint8)[:, None, None]
            dry[:, :, :30] = 0
            ds.write(dry)
        config = sam_config(tiny_model_dir)
        predictor, source = load_predictor(config)
        embedded = []
        original = SamPredictor.embed

        def counting_embed(self, tiles):
            embedded.append(len(tiles))
            return original(self, tiles)

        monkeypatch.setattr(SamPredictor, "embed", counting_embed)
        result = segment_raster(path, tmp_path / "out", config, predictor, source)
        assert sum(embedded) == result.tiles.sam == 1
        assert result.tiles.skipped == result.tiles.total - 1
        mask = read_mask(tmp_path / "out" / "mask.tif")
        assert np.all(mask[:, :30] == 255)
        assert not np.any(mask[200:, 300:] == 1)

    @pytest.mark.parametrize("changes", [{"prompt": "box", "box_jitter": 5}, {"point_merge": "mean"},
                                         {"point_merge": "best", "negatives": 2}])
    def test_prompt_variants_run(self, tiny_model_dir, scene, tmp_path, changes):
        config = sam_config(tiny_model_dir, **changes)
        predictor, source = load_predictor(config)
        result = segment_raster(scene, tmp_path / "out", config, predictor, source)
        assert result.status == "done" and result.tiles.sam > 0

    def test_restrict_dilation_limits_mask_to_coarse(self, tiny_model_dir, scene, tmp_path):
        free = sam_config(tiny_model_dir)
        limited = sam_config(tiny_model_dir, restrict_dilation=2)
        coarse = SegmentConfig(model="none", tile_size=256, halo=32, progress=False)
        predictor, source = load_predictor(free)
        segment_raster(scene, tmp_path / "free", free, predictor, source)
        segment_raster(scene, tmp_path / "limited", limited, predictor, source)
        segment_raster(scene, tmp_path / "coarse", coarse)
        m_free, m_lim, m_coarse = (read_mask(tmp_path / n / "mask.tif") for n in ("free", "limited", "coarse"))
        from scipy import ndimage

        allowed = ndimage.binary_dilation(m_coarse == 1, iterations=3)
        assert np.all(~(m_lim == 1) | allowed)
        assert (m_lim == 1).sum() <= (m_free == 1).sum()


def test_failed_tile_is_reported_and_written_as_nodata(tiny_model_dir, scene, tmp_path, monkeypatch):
    config = sam_config(tiny_model_dir, batch_size=2)
    predictor, source = load_predictor(config)
    original = SamPredictor.predict_masks
    fail_always = {"first": None}

    def flaky_tile(self, embeddings, prompts, tile_shape, resized, merge="joint", logits=False):
        if fail_always["first"] is None:
            fail_always["first"] = prompts[0][0].area
        if any(tile[0].area == fail_always["first"] for tile in prompts):  # the batch holds the bad tile
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, embeddings, prompts, tile_shape, resized, merge, logits)

    monkeypatch.setattr(SamPredictor, "predict_masks", flaky_tile)
    result = segment_raster(scene, tmp_path / "out", config, predictor, source)
    assert result.status == "partial"
    assert result.tiles.failed >= 1 and len(result.tiles.failed_tiles) == result.tiles.failed
    assert "SAM failed" in result.error
    assert result.manifest.tiles.failed == result.tiles.failed
    mask = read_mask(tmp_path / "out" / "mask.tif")
    failed = result.tiles.failed_tiles[0]
    tile = next(t for t in make_grid(inspect_raster(scene), config) if (t.row, t.col) == (failed["row"], failed["col"]))
    core = mask[tile.core_window(*mask.shape).toslices()]
    assert np.all(core == 255)


NAIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "naip_potholes" / "m_4709963_se_14_1_20200831.tif"


@pytest.mark.skipif(not NAIP.exists(), reason="../shared/data is not present")
def test_sam_path_on_real_naip(tiny_model_dir, tmp_path):
    """The whole SAM path on real imagery: tiling, prompts, encoder batches, stitching, outputs."""
    config = sam_config(tiny_model_dir, bands="naip", restrict_dilation=8)
    predictor, source = load_predictor(config)
    result = segment_raster(NAIP, tmp_path / "out", config, predictor, source)
    assert result.status == "done"
    assert result.tiles.sam > 0 and result.tiles.total == result.tiles.sam + result.tiles.skipped
    with rasterio.open(NAIP) as src, rasterio.open(tmp_path / "out" / "mask.tif") as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert set(np.unique(out.read(1))) <= {0, 1, 255}
    assert result.manifest.model.id == str(tiny_model_dir)
    assert (tmp_path / "out" / "water.gpkg").is_file() and (tmp_path / "out" / "quicklook.png").is_file()


class TestBatchedDecoder:
    """Issue 8: one decoder call per encoder batch gives each tile's own logits."""

    @staticmethod
    def prompts(kind: str, rng: np.random.Generator, components: int, positives: int, negatives: int) -> list:
        from samgeo_pipeline.water.prompts import ComponentPrompt

        out = []
        for _ in range(components):
            if kind == "box":
                x0, y0 = rng.uniform(0, 120, 2)
                box = np.array([x0, y0, x0 + rng.uniform(10, 70), y0 + rng.uniform(10, 70)], np.float32)
                out.append(ComponentPrompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), box, 100))
            else:
                xy = rng.uniform(0, 199, (positives + negatives, 2)).astype(np.float32)
                labels = np.r_[np.ones(positives, np.int64), np.zeros(negatives, np.int64)]
                out.append(ComponentPrompt(xy, labels, None, 100))
        return out

    @pytest.mark.parametrize(("merge", "kind"), [("joint", "points"), ("mean", "points"), ("best", "points"),
                                                 ("joint", "box")])
    def test_predict_masks_equals_per_tile_logits(self, tiny_model_dir, merge, kind):
        model, _ = load_sam_model(str(tiny_model_dir))
        predictor = SamPredictor(model, torch.device("cpu"))
        rng = np.random.default_rng(1)
        tiles = rng.integers(0, 256, (4, 200, 200, 3), dtype=np.uint8)
        # different prompt counts per tile, and (points) different points per prompt
        shapes = [(1, 3, 2), (3, 3, 2), (2, 2, 0), (2, 3, 2)]
        prompts = [self.prompts(kind, rng, *shape) for shape in shapes]
        embeddings, resized = predictor.embed(list(tiles))
        stacked, _ = predictor.embed(tiles)
        torch.testing.assert_close(embeddings, stacked, rtol=0, atol=0)
        shape = (200, 200)
        expected = [predictor.predict_logits(embeddings[i : i + 1], p, shape, resized, merge) for i, p in enumerate(prompts)]
        logits = predictor.predict_masks(embeddings, prompts, shape, resized, merge, logits=True)
        masks = predictor.predict_masks(embeddings, prompts, shape, resized, merge)
        for got, mask, want in zip(logits, masks, expected, strict=True):
            assert got.dtype == np.float32 and got.shape == shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
            assert mask.dtype == bool and mask.shape == shape
            np.testing.assert_array_equal(mask, got > 0)
        single = predictor.predict_masks(embeddings[1:2], prompts[1:2], shape, resized, merge, logits=True)
        np.testing.assert_array_equal(single[0], expected[1])  # a batch of one: the very same numbers


class TestPrecision:
    """resolve_dtype's choice of autocast dtype, and the predictor under autocast."""

    @pytest.mark.parametrize(("device", "precision", "bf16", "expected"), [
        ("cpu", "auto", True, None), ("mps", "auto", True, None), ("cuda", "auto", True, torch.bfloat16),
        ("cuda", "auto", False, torch.float16), ("cuda", "fp32", True, None), ("cpu", "bf16", False, torch.bfloat16),
        ("cuda", "bf16", False, torch.bfloat16), ("cpu", "fp16", True, torch.float16), ("cuda", "fp16", True, torch.float16),
    ])  # fmt: skip
    def test_resolve_dtype(self, monkeypatch, device, precision, bf16, expected):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
        assert resolve_dtype(torch.device(device), precision) == expected

    def test_bf16_autocast_runs_and_stays_close(self, tiny_model_dir):
        """The autocast path (bf16, here on the CPU): float32 logits close to fp32's, masks mostly equal."""
        from tests.sam.test_pixels import lakes, points

        model, _ = load_sam_model(str(tiny_model_dir))
        rgb = lakes(IMAGE_SIZE, IMAGE_SIZE)[0]
        prompts = [[points([(64, 128), (50, 120)], [1, 1]), points([(192, 128)], [1])]]
        out = {}
        for dtype in (None, torch.bfloat16):
            predictor = SamPredictor(model, torch.device("cpu"), dtype)
            embeddings, resized = predictor.embed([rgb])
            assert embeddings.dtype == (dtype or torch.float32)
            out[dtype] = predictor.predict_masks(embeddings, prompts, rgb.shape[:2], resized, logits=True)[0]
        assert out[torch.bfloat16].dtype == np.float32
        assert np.abs(out[torch.bfloat16] - out[None]).mean() < 0.15 * np.abs(out[None]).mean()  # bf16: 8-bit mantissa
        assert ((out[torch.bfloat16] > 0) == (out[None] > 0)).mean() > 0.97


@pytest.mark.parametrize("tile_size", [160, 384])
def test_prompts_sit_on_their_tiles_water(tiny_model_dir, scene, tmp_path, monkeypatch, tile_size):
    """Tiles smaller / larger than the model's input (resized to it): the pixels SAM gets for a tile
    and the prompts given with them belong together (positives on the tile's water, darker red
    than its negatives on land), and the tile's result is the predictor's for it alone."""
    config = sam_config(tiny_model_dir, tile_size=tile_size, halo=16, negatives=2, probability=True)
    predictor, source = load_predictor(config)
    calls: list[tuple[list[np.ndarray], list, list[np.ndarray]]] = []
    embed, predict = SamPredictor.embed, SamPredictor.predict_masks

    def spy_embed(self, tiles):
        calls.append(([np.array(t) for t in tiles], [], []))
        return embed(self, tiles)

    def spy_predict(self, embeddings, prompts, *args, **kwargs):
        out = predict(self, embeddings, prompts, *args, **kwargs)
        calls[-1][1].extend(prompts)
        calls[-1][2].extend(out)
        return out

    monkeypatch.setattr(SamPredictor, "embed", spy_embed)
    monkeypatch.setattr(SamPredictor, "predict_masks", spy_predict)
    result = segment_raster(scene, tmp_path / "out", config, predictor, source)
    monkeypatch.undo()
    assert result.status == "done" and result.tiles.sam == sum(len(c[1]) for c in calls) > 1
    for rgbs, prompts, outputs in calls:
        for rgb, tile_prompts, output in zip(rgbs, prompts, outputs, strict=True):
            assert rgb.shape[:2] == output.shape == (tile_size, tile_size)
            xy = np.concatenate([p.points_xy for p in tile_prompts]).astype(int)
            labels = np.concatenate([p.labels for p in tile_prompts])
            red = rgb[xy[:, 1], xy[:, 0], 0].astype(float)
            assert (labels == 0).any() and red[labels == 1].max() < red[labels == 0].min()
            embedding, resized = predictor.embed([rgb])
            alone = predictor.predict_masks(embedding, [tile_prompts], rgb.shape[:2], resized, logits=True)[0]
            np.testing.assert_allclose(output, alone, rtol=0, atol=1e-5)


def test_a_checkpoints_preprocessing_applies_to_either_config(tmp_path: Path) -> None:
    """checkpoint_config is the one reader of a checkpoint's preprocessing, for segment and evaluate alike."""
    import json

    from samgeo_pipeline.finetune.config import FinetuneConfig
    from samgeo_pipeline.sam.predictor import CHECKPOINT_META, checkpoint_config

    (tmp_path / CHECKPOINT_META).write_text(json.dumps(
        {"preprocessing": {"composite": ["nir", "swir", "green"], "percentiles": [1, 99], "bands": "landsat8"}}))
    segment = checkpoint_config(SegmentConfig(model=str(tmp_path)))
    finetune = checkpoint_config(FinetuneConfig(data="d"), str(tmp_path))  # evaluate: the model compared
    for config in (segment, finetune):
        assert (config.composite, config.percentiles, config.bands) == ("nir,swir,green", (1.0, 99.0), "landsat8")
    assert isinstance(finetune, FinetuneConfig) and finetune.model == FinetuneConfig(data="d").model
    assert checkpoint_config(segment) == segment  # applying it again changes nothing
    assert checkpoint_config(SegmentConfig(model="none")) == SegmentConfig(model="none")
    assert checkpoint_config(FinetuneConfig(data="d"), "none") == FinetuneConfig(data="d")
