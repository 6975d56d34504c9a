"""SAM sees the pixels under its prompts: a tiny SAM whose encoder works (tests/tiny_sam.py).

With transformers' default init the image embeddings are ~0 and the masks depend on the prompts
alone, so a wrong channel order or tiles misaligned with their prompts would pass unnoticed.
These tests fail in that case (each compares outputs that must differ), and pin the geometry:
resize, prompt scaling and mask upsampling equal Meta's ``segment_anything`` for tiles smaller,
larger and non-square relative to the model's input, and a batch decodes as its tiles one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samgeo_pipeline.sam.predictor import SamPredictor
from samgeo_pipeline.water.prompts import ComponentPrompt
from tests.tiny_sam import tiny_sam

IMAGE_SIZE = 128
#: (rows, cols) of tiles: as the model's input, padding only, upscaling, downscaling, non-square edge tiles.
SHAPES = [(128, 128), (128, 96), (100, 100), (200, 200), (70, 128), (150, 90)]
LAND, WATER = (150, 140, 90), (30, 60, 90)


@pytest.fixture(scope="module")
def predictor() -> SamPredictor:
    return SamPredictor(tiny_sam(IMAGE_SIZE), torch.device("cpu"))


def lakes(rows: int = IMAGE_SIZE, cols: int = IMAGE_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb, lake_a, lake_b)``: two separate elliptic lakes (left, right) on land, with noise."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    lake_a = ((yy - rows / 2) / (rows / 4)) ** 2 + ((xx - cols / 4) / (cols * 0.15)) ** 2 < 1
    lake_b = ((yy - rows / 2) / (rows / 4)) ** 2 + ((xx - 3 * cols / 4) / (cols * 0.15)) ** 2 < 1
    rgb = np.where((lake_a | lake_b)[..., None], WATER, LAND).astype(np.float32)
    rgb += np.random.default_rng(seed).normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), lake_a, lake_b


def points(xy, labels) -> ComponentPrompt:
    return ComponentPrompt(np.asarray(xy, np.float32), np.asarray(labels, np.int64), None, 100)


def box(xyxy) -> ComponentPrompt:
    return ComponentPrompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.asarray(xyxy, np.float32), 100)


def logits(predictor: SamPredictor, rgb: np.ndarray, prompts: list[ComponentPrompt], merge: str = "joint") -> np.ndarray:
    embedding, resized = predictor.embed(rgb[None])
    return predictor.predict_logits(embedding, prompts, rgb.shape[:2], resized, merge)


def differ(a: np.ndarray, b: np.ndarray) -> None:
    """The two logit maps differ clearly: beyond float noise (1e-5), and in the masks."""
    assert np.abs(a - b).max() > 0.05
    assert ((a > 0) != (b > 0)).mean() > 0.01


class TestPixelsMatter:
    """Outputs that must differ when pixels and prompts disagree (equal with a blind encoder)."""

    PROMPT = [points([(IMAGE_SIZE * 0.25, IMAGE_SIZE * 0.5), (IMAGE_SIZE * 0.2, IMAGE_SIZE * 0.45)], [1, 1])]

    def test_encoder_output_depends_on_the_image(self, predictor):
        rgb, _, _ = lakes()
        a, _ = predictor.embed(rgb[None])
        b, _ = predictor.embed(np.ascontiguousarray(rgb[..., ::-1])[None])
        assert float(a.abs().mean()) > 0.1  # features at a real scale, not ~0
        assert float((a - b).abs().mean()) > 0.1 * float(a.abs().mean())

    def test_swapped_channels_change_the_mask(self, predictor):
        rgb, _, _ = lakes()
        differ(logits(predictor, rgb, self.PROMPT), logits(predictor, np.ascontiguousarray(rgb[..., ::-1]), self.PROMPT))

    def test_two_lakes_the_prompted_lake_matters(self, predictor):
        """A prompt in lake A: the same prompt once lake A is land gives another mask."""
        rgb, lake_a, _ = lakes()
        dried = rgb.copy()
        dried[lake_a] = LAND
        differ(logits(predictor, rgb, self.PROMPT), logits(predictor, dried, self.PROMPT))

    def test_prompts_shifted_against_the_tile_change_the_mask(self, predictor):
        """The tile moved by 16 px under fixed prompts (prompts misaligned with their tile)."""
        rgb, _, _ = lakes()
        differ(logits(predictor, rgb, self.PROMPT), logits(predictor, np.roll(rgb, 16, axis=1), self.PROMPT))

    def test_mask_is_decided(self, predictor):
        """Logits are well away from 0 (a trained model's scale), so masks do not hinge on rounding."""
        rgb, _, _ = lakes()
        values = logits(predictor, rgb, self.PROMPT)
        assert np.abs(values).mean() > 0.02
        assert 0.05 < (values > 0).mean() < 0.95


def tile_prompts(kind: str, shape: tuple[int, int], seed: int) -> list[list[ComponentPrompt]]:
    """Prompts of four tiles: components of different point counts (positives and negatives), or boxes."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    per_tile = []
    for counts in [((1, 0),), ((3, 2), (2, 0), (1, 1)), ((2, 2), (2, 1)), ((4, 0), (1, 2))]:
        tile = []
        for positives, negatives in counts:
            if kind == "box":
                y0, x0 = rng.uniform(0, 0.6) * rows, rng.uniform(0, 0.6) * cols
                tile.append(box([x0, y0, x0 + rng.uniform(0.1, 0.4) * cols, y0 + rng.uniform(0.1, 0.4) * rows]))
            else:
                xy = rng.uniform(0, 1, (positives + negatives, 2)) * [cols - 1, rows - 1]
                tile.append(points(np.round(xy), [1] * positives + [0] * negatives))
        per_tile.append(tile)
    return per_tile


class TestBatching:
    @pytest.mark.parametrize("shape", [(128, 128), (100, 100), (150, 90)], ids=lambda s: f"{s[0]}x{s[1]}")
    @pytest.mark.parametrize(("merge", "kind"), [("joint", "points"), ("mean", "points"), ("best", "points"),
                                                 ("joint", "box")])  # fmt: skip
    def test_batch_equals_one_by_one(self, predictor, shape, merge, kind):
        """Four tiles encoded and decoded together = each tile alone, each component alone (max)."""
        tiles = [lakes(*shape, seed=i)[0] for i in range(4)]
        tiles[1] = np.ascontiguousarray(tiles[1][..., ::-1])  # tiles that differ in their pixels
        prompts = tile_prompts(kind, shape, seed=len(merge))
        embeddings, resized = predictor.embed(tiles)
        batched = predictor.predict_masks(embeddings, prompts, shape, resized, merge, logits=True)
        masks = predictor.predict_masks(embeddings, prompts, shape, resized, merge)
        for tile, tile_prompt, got, mask in zip(tiles, prompts, batched, masks, strict=True):
            alone = [logits(predictor, tile, [component], merge) for component in tile_prompt]
            np.testing.assert_allclose(got, np.max(alone, axis=0), rtol=0, atol=1e-5)
            np.testing.assert_array_equal(mask, got > 0)
            assert got.shape == shape and got.dtype == np.float32

    def test_decoder_calls_one_per_prompt_shape(self, predictor, monkeypatch):
        """Decoding stays batched: one decoder call per (point count, box) shape, not per component."""
        shape = (128, 128)
        tiles = [lakes(*shape, seed=i)[0] for i in range(4)]
        prompts = tile_prompts("points", shape, seed=0)
        embeddings, resized = predictor.embed(tiles)
        calls = []
        original = predictor.model.forward
        monkeypatch.setattr(predictor.model, "forward", lambda **kw: calls.append(kw) or original(**kw))
        predictor.predict_masks(embeddings, prompts, shape, resized, "joint")
        counts = {len(c.labels) for tile in prompts for c in tile}
        assert len(calls) == len(counts)
        assert all(c["input_points"].shape[2] in counts for c in calls)
