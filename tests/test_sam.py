"""The SAM path with a tiny random-weight model saved to a temp dir (never a download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from transformers import SamImageProcessor

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import ModelUnavailableError
from samgeo_pipeline.pipeline import segment_raster
from samgeo_pipeline.runner import describe_model, load_predictor
from samgeo_pipeline.sam import SamPredictor, load_sam_model, preprocess_torch
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
    @pytest.mark.parametrize("tile", [IMAGE_SIZE, 200, 384])
    def test_matches_sam_processor(self, tile):
        rng = np.random.default_rng(tile)
        images = rng.integers(0, 256, (2, tile, tile, 3), dtype=np.uint8)
        processor = SamImageProcessor(
            size={"longest_edge": IMAGE_SIZE}, pad_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        )
        expected = processor(images=list(images), return_tensors="pt")
        ours, resized = preprocess_torch(torch.from_numpy(images), IMAGE_SIZE)
        assert ours.shape == expected["pixel_values"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
        assert list(resized) == expected["reshaped_input_sizes"][0].tolist()
        diff = (ours - expected["pixel_values"]).abs()
        if tile == IMAGE_SIZE:
            assert float(diff.max()) < 1e-5
        else:  # resampling kernels differ slightly between PIL and torch
            assert float(diff.mean()) < 0.02
            assert float(diff.max()) < 0.6

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
        assert tiles.total == 4 * 5  # 600/192 -> 4 rows, 800/192 -> 5 cols
        assert tiles.sam > 0 and tiles.skipped > 0
        assert tiles.sam + tiles.skipped + tiles.failed == tiles.total
        assert result.manifest["model"]["origin"] == "local directory"
        assert result.manifest["tiles"]["sam"] == tiles.sam

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
    assert result.manifest["tiles"]["failed"] == result.tiles.failed
    mask = read_mask(tmp_path / "out" / "mask.tif")
    row, col = map(int, result.tiles.failed_tiles[0].split(","))
    core = mask[row * 192 : (row + 1) * 192, col * 192 : (col + 1) * 192]
    assert np.all(core == 255)


NAIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "naip_potholes" / "m_4709963_se_14_1_20200831.tif"


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
    assert result.manifest["model"]["id"] == str(tiny_model_dir)
    assert (tmp_path / "out" / "water.gpkg").is_file() and (tmp_path / "out" / "quicklook.png").is_file()


class TestBatchedDecoder:
    """Issue 8: one decoder call per encoder batch gives each tile's own logits."""

    @staticmethod
    def prompts(kind: str, rng: np.random.Generator, components: int, positives: int, negatives: int) -> list:
        from samgeo_pipeline.prompts import ComponentPrompt

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
        for got, mask, want in zip(logits, masks, expected):
            assert got.dtype == np.float32 and got.shape == shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
            assert mask.dtype == bool and mask.shape == shape
            np.testing.assert_array_equal(mask, got > 0)
        single = predictor.predict_masks(embeddings[1:2], prompts[1:2], shape, resized, merge, logits=True)
        np.testing.assert_array_equal(single[0], expected[1])  # a batch of one: the very same numbers
