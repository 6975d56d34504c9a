"""Parity of the project's SAM path with Meta's ``segment_anything`` ``SamPredictor``.

Both run the same small random-weight SAM (built with segment_anything's classes, converted to a
transformers ``SamModel`` with the key mapping of transformers' ``convert_sam_to_hf.py``; see
``tests/sam_reference.py``) on the same tiles and prompts. The reference is
``SamPredictor.set_image(tile)`` + ``predict(point_coords, point_labels, box,
multimask_output=False)``, one call per component, masks united; the project is
:meth:`samgeo_pipeline.sam.predictor.SamPredictor.embed` + ``predict_logits`` (and ``predict_masks``, the
pipeline's batched entry point) with ``point_merge="joint"``. Masks are compared as
``logits > 0`` by IoU (>= 0.999).

The project's path has no known difference left (project issue 9): tiles are resized as uint8 with
PIL exactly as the reference resizes them, and prompts are never padded (rows of different point
counts go to different decoder calls). ``mean``/``best`` merges are compared with the reference's
rows decoded one by one (logits averaged / the row of highest predicted IoU).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from samgeo_pipeline.sam.geometry import resize_tile, resized_shape
from samgeo_pipeline.sam.predictor import SamPredictor
from samgeo_pipeline.water.prompts import ComponentPrompt
from tests.sam_reference import IMAGE_SIZE, build_reference_sam, convert_to_hf, import_segment_anything

try:
    segment_anything = import_segment_anything()
except ImportError as exc:  # the `test` extra installs it: pip install -e ".[test]"
    pytest.skip(f"segment_anything is not importable ({exc})", allow_module_level=True)

MIN_IOU = 0.999
SEED = 2  # reference masks cover 47-92 % of a tile, with long boundaries: IoU is sensitive here

#: name -> (rows, cols). SAM sees the longest side at 1024 px, zero-padded bottom/right.
TILES = {
    "1024x1024": (1024, 1024),  # no resize, no padding
    "800x1024": (800, 1024),  # padding only
    "512x512": (512, 512),  # upscaling
    "1536x1536": (1536, 1536),  # downscaling
    "400x600": (400, 600),  # upscaling and padding
}


def _points(rows: int, cols: int, fractions, labels) -> ComponentPrompt:
    xy = np.round(np.asarray(fractions, np.float64) * [cols, rows]).astype(np.float32)
    return ComponentPrompt(xy, np.asarray(labels, np.int64), None, 100)


def make_prompts(name: str, rows: int, cols: int) -> list[ComponentPrompt]:
    """The prompts of a case, in tile pixels ``(col, row)`` (integers, as the coarse-mask sampler gives)."""
    if name == "one_point":
        return [_points(rows, cols, [(0.40, 0.45)], [1])]
    if name == "joint_points":
        return [_points(rows, cols, [(0.40, 0.45), (0.30, 0.40), (0.55, 0.50)], [1, 1, 0])]
    if name == "box":
        box = np.round(np.array([0.12, 0.25, 0.68, 0.65]) * [cols, rows, cols, rows]).astype(np.float32)
        return [ComponentPrompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), box, 100)]
    if name == "two_components":  # 4 and 2 points: the 2-point component is padded
        return [
            _points(rows, cols, [(0.40, 0.45), (0.30, 0.40), (0.55, 0.50), (0.45, 0.55)], [1, 1, 1, 0]),
            _points(rows, cols, [(0.20, 0.80), (0.50, 0.82)], [1, 1]),
        ]
    if name == "two_components_same_count":  # 3 and 3 points: one call, no padding
        return [
            _points(rows, cols, [(0.40, 0.45), (0.30, 0.40), (0.55, 0.50)], [1, 1, 0]),
            _points(rows, cols, [(0.20, 0.80), (0.50, 0.82), (0.35, 0.70)], [1, 1, 0]),
        ]
    raise KeyError(name)


PROMPTS = ("one_point", "joint_points", "box", "two_components", "two_components_same_count")


def merge_prompts(rows: int, cols: int) -> list[ComponentPrompt]:
    """Two components with 2 positives each and 2 / 1 negatives: mean/best rows of 3 and 2 points."""
    return [
        _points(rows, cols, [(0.40, 0.45), (0.30, 0.40), (0.55, 0.50), (0.45, 0.60)], [1, 1, 0, 0]),
        _points(rows, cols, [(0.20, 0.80), (0.50, 0.82), (0.35, 0.70)], [1, 1, 0]),
    ]


def make_tile(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A synthetic ``uint8 (rows, cols, 3)`` scene: smooth land, a dark lake and river, sensor noise."""
    import cv2

    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.normal(0, 1, (8, 8, 3)).astype(np.float32), (cols, rows), interpolation=cv2.INTER_CUBIC)
    image = 120 + 25 * low
    yy, xx = np.mgrid[0:rows, 0:cols] / max(rows, cols)
    water = (((yy - 0.45) / 0.2) ** 2 + ((xx - 0.4) / 0.28) ** 2 < 1) | (
        np.abs(yy - (0.8 + 0.08 * np.sin(xx * 9))) < 0.03
    )
    image[water] = [40, 60, 80] + 6 * low[water]
    image += rng.normal(0, 8, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class Parity:
    """Both predictors on one model, with per-tile caches (the reference holds one image at a time)."""

    def __init__(self) -> None:
        with torch.random.fork_rng():  # SamModel's own init draws from the global generator
            sam = build_reference_sam(SEED)
            model = convert_to_hf(sam)
        self.reference = segment_anything.SamPredictor(sam)
        self.project = SamPredictor(model, torch.device("cpu"))
        # Per-instance caches (functools.cache on the methods would keep every instance alive).
        self.tile = functools.cache(self.tile)
        self.reference_run = functools.cache(self.reference_run)
        self.embed = functools.cache(self.embed)

    def tile(self, name: str) -> np.ndarray:
        return make_tile(*TILES[name])

    def reference_run(self, name: str) -> tuple[torch.Tensor, dict[str, list[np.ndarray]], np.ndarray, tuple]:
        """``(features, {prompt: [mask per component]}, resized uint8 pixels, resized size)`` of the reference."""
        tile = self.tile(name)
        self.reference.set_image(tile)
        masks = {}
        for prompt in PROMPTS:
            masks[prompt] = []
            for p in make_prompts(prompt, *tile.shape[:2]):
                if p.box_xyxy is not None:
                    m, _, _ = self.reference.predict(box=p.box_xyxy, multimask_output=False)
                else:
                    m, _, _ = self.reference.predict(point_coords=p.points_xy, point_labels=p.labels,
                                                     multimask_output=False)
                masks[prompt].append(m[0])
        pixels = self.reference.transform.apply_image(tile)
        return self.reference.features.clone(), masks, pixels, tuple(self.reference.input_size)

    def reference_mask(self, name: str, prompt: str) -> np.ndarray:
        return np.logical_or.reduce(self.reference_run(name)[1][prompt])

    def embed(self, name: str) -> tuple[torch.Tensor, tuple[int, int]]:
        """The project's embedding of a tile (its own preprocessing)."""
        return self.project.embed(self.tile(name)[None])

    def project_mask(self, name: str, prompts: list[ComponentPrompt], api: str = "predict_logits") -> np.ndarray:
        embedding, resized = self.embed(name)
        shape = TILES[name]
        if api == "predict_masks":
            return self.project.predict_masks(embedding, [prompts], shape, resized, "joint")[0]
        return self.project.predict_logits(embedding, prompts, shape, resized, "joint") > 0


@pytest.fixture(scope="module")
def parity() -> Parity:
    return Parity()


@pytest.mark.parametrize("tile", list(TILES))
def test_resized_pixels_match(parity, tile):
    """The project's uint8 resize gives the reference's pixels exactly (and its size)."""
    pixels, size = parity.reference_run(tile)[2:]
    ours = resize_tile(parity.tile(tile), IMAGE_SIZE)
    assert ours.shape[:2] == size == resized_shape(TILES[tile], IMAGE_SIZE)
    np.testing.assert_array_equal(ours, pixels)


@pytest.mark.parametrize("tile", list(TILES))
def test_image_embeddings_match(parity, tile):
    features = parity.reference_run(tile)[0]
    ours, resized = parity.embed(tile)
    assert tuple(resized) == parity.reference_run(tile)[3]
    torch.testing.assert_close(ours, features, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("tile", "prompt", "api"),
    [(t, p, api) for t in TILES for p in PROMPTS for api in ("predict_logits", "predict_masks")],
)
def test_masks_match(parity, tile, prompt, api):
    expected = parity.reference_mask(tile, prompt)
    ours = parity.project_mask(tile, make_prompts(prompt, *TILES[tile]), api=api)
    assert ours.shape == expected.shape == TILES[tile]
    assert iou(ours, expected) >= MIN_IOU, f"IoU {iou(ours, expected):.5f}"


@pytest.mark.parametrize("tile", list(TILES))
def test_components_decoded_one_by_one_match(parity, tile):
    """Each component of the 4- and 2-point case alone agrees with the reference's mask of it."""
    components = make_prompts("two_components", *TILES[tile])
    for component, expected in zip(components, parity.reference_run(tile)[1]["two_components"], strict=True):
        ours = parity.project_mask(tile, [component])
        assert iou(ours, expected) >= MIN_IOU, f"IoU {iou(ours, expected):.5f}"


@pytest.mark.parametrize("merge", ["mean", "best"])
@pytest.mark.parametrize("tile", ["1024x1024", "400x600"])
def test_point_merges_match(parity, tile, merge):
    """mean / best with components whose rows have 3 and 2 points (different negative counts)."""
    shape = TILES[tile]
    parity.reference.set_image(parity.tile(tile))
    expected = []
    for p in merge_prompts(*shape):
        negatives = p.points_xy[p.labels == 0]
        rows = []
        for xy in p.points_xy[p.labels == 1]:
            coords = np.concatenate([xy[None], negatives])
            labels = np.r_[1, np.zeros(len(negatives), np.int64)]
            logits, score, _ = parity.reference.predict(point_coords=coords, point_labels=labels,
                                                        multimask_output=False, return_logits=True)
            rows.append((logits[0], float(score[0])))
        if merge == "mean":
            expected.append(np.mean([r[0] for r in rows], axis=0))
        else:
            expected.append(max(rows, key=lambda r: r[1])[0])
    expected = np.max(expected, axis=0)  # logits of the union of the components
    assert 0.05 < (expected > 0).mean() < 0.95
    embedding, resized = parity.embed(tile)
    ours = parity.project.predict_masks(embedding, [merge_prompts(*shape)], shape, resized, merge, logits=True)[0]
    assert iou(ours > 0, expected > 0) >= MIN_IOU, f"IoU {iou(ours > 0, expected > 0):.5f}"
    assert np.abs(ours - expected).mean() < 1e-3 * np.abs(expected).mean()


@pytest.mark.parametrize("tile", list(TILES))
def test_reference_masks_are_informative(parity, tile):
    """Guard of the comparison's sensitivity: no mask is (almost) empty or (almost) the whole tile."""
    for prompt in PROMPTS:
        fraction = parity.reference_mask(tile, prompt).mean()
        assert 0.05 < fraction < 0.95, (prompt, fraction)
