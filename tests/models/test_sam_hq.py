"""Parity of the project's SAM-HQ path with the authors' ``segment_anything_hq`` ``SamPredictor``.

Both run the same small random-weight SAM-HQ (built with segment_anything_hq's classes, converted
to a transformers ``SamHQModel``; ``tests/sam_hq_reference.py``) on the same tiles and prompts.
The reference is ``SamPredictor.set_image(tile)`` + ``predict(point_coords, point_labels, box,
multimask_output=False)`` (``hq_token_only=False``, its default), one call per component, masks
united; the project is :class:`samgeo_pipeline.models.sam_hq.SamHQPredictor` (``embed`` +
``predict_masks``, ``point_merge="joint"``). Masks are compared as ``logits > 0`` by IoU (>= 0.999),
the final and intermediate embeddings within float tolerance.

Skipped unless segment_anything_hq is importable (it is not a dependency of the project: install
it apart, ``pip install --no-deps --target DIR segment-anything-hq==0.3``, and run this file with
``PYTHONPATH=DIR``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from samgeo_pipeline.models.sam_hq import SamHQPredictor
from samgeo_pipeline.water.prompts import ComponentPrompt
from tests.sam_hq_reference import build_reference_sam_hq, convert_to_hf, import_segment_anything_hq

try:
    segment_anything_hq = import_segment_anything_hq()
except ImportError as exc:
    pytest.skip(f"segment_anything_hq is not importable ({exc})", allow_module_level=True)

from tests.sam.test_parity import PROMPTS, iou, make_prompts, make_tile

MIN_IOU = 0.999
SEED = 2
TILES = {"1024x1024": (1024, 1024), "400x600": (400, 600), "1536x1536": (1536, 1536)}


class HQParity:
    """Both predictors on one model, with per-tile caches."""

    def __init__(self) -> None:
        with torch.random.fork_rng():  # SamHQModel's own init draws from the global generator
            sam = build_reference_sam_hq(SEED)
            model = convert_to_hf(sam)
        self.reference = segment_anything_hq.SamPredictor(sam)
        self.project = SamHQPredictor(model, torch.device("cpu"))
        # Per-instance caches (functools.cache on the methods would keep every instance alive).
        self.tile = functools.cache(self.tile)
        self.reference_run = functools.cache(self.reference_run)
        self.embed = functools.cache(self.embed)

    def tile(self, name: str) -> np.ndarray:
        return make_tile(*TILES[name])

    def reference_run(self, name: str) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, list[np.ndarray]]]:
        """``(features, intermediate features, {prompt: [mask per component]})`` of the reference."""
        tile = self.tile(name)
        self.reference.set_image(tile)
        masks: dict[str, list[np.ndarray]] = {}
        for prompt in PROMPTS:
            masks[prompt] = []
            for p in make_prompts(prompt, *tile.shape[:2]):
                if p.box_xyxy is not None:
                    m, _, _ = self.reference.predict(box=p.box_xyxy, multimask_output=False)
                else:
                    m, _, _ = self.reference.predict(point_coords=p.points_xy, point_labels=p.labels,
                                                     multimask_output=False)  # fmt: skip
                masks[prompt].append(m[0])
        return self.reference.features.clone(), [f.clone() for f in self.reference.interm_features], masks

    def embed(self, name: str):
        return self.project.embed(self.tile(name)[None])

    def project_mask(self, name: str, prompts: list[ComponentPrompt]) -> np.ndarray:
        embeddings, resized = self.embed(name)
        return self.project.predict_masks(embeddings, [prompts], TILES[name], resized, "joint")[0]


@pytest.fixture(scope="module")
def parity() -> HQParity:
    return HQParity()


@pytest.mark.parametrize("tile", list(TILES))
def test_image_embeddings_match(parity: HQParity, tile: str) -> None:
    features, intermediate, _ = parity.reference_run(tile)
    ours, _ = parity.embed(tile)
    torch.testing.assert_close(ours["image_embeddings"], features, atol=1e-4, rtol=1e-4)
    assert len(ours["intermediate_embeddings"]) == len(intermediate) > 0
    for a, b in zip(ours["intermediate_embeddings"], intermediate, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("tile", "prompt"), [(t, p) for t in TILES for p in PROMPTS])
def test_masks_match(parity: HQParity, tile: str, prompt: str) -> None:
    expected = np.logical_or.reduce(parity.reference_run(tile)[2][prompt])
    assert 0.05 < expected.mean() < 0.95, "the reference mask must be informative for the comparison to mean anything"
    ours = parity.project_mask(tile, make_prompts(prompt, *TILES[tile]))
    assert ours.shape == expected.shape == TILES[tile]
    assert iou(ours, expected) >= MIN_IOU, f"IoU {iou(ours, expected):.5f}"
