"""SAM 2.1 on single tiles (:mod:`samgeo_pipeline.models.sam2`): the tile stretched to the square input, three
feature levels to the decoder, masks resized straight to the tile. Loading and the pipeline runs of every
family are in ``tests/models/test_families.py``."""

from __future__ import annotations

import numpy as np
import torch

from samgeo_pipeline.models.sam2 import Sam2Predictor
from samgeo_pipeline.sam.geometry import square_pixels
from samgeo_pipeline.water.prompts import ComponentPrompt
from tests.tiny_sam import tiny_sam


def predictor() -> Sam2Predictor:
    return Sam2Predictor(tiny_sam(128, 0, "sam2"), torch.device("cpu"))


def test_a_tile_is_stretched_to_the_square_input_and_its_masks_back_to_the_tile() -> None:
    sam2 = predictor()
    assert sam2.image_size == 128
    tiles = np.random.default_rng(0).integers(0, 256, (2, 60, 90, 3), dtype=np.uint8)
    pixels, resized = sam2._pixel_values(tiles)
    assert resized == (128, 128)
    torch.testing.assert_close(pixels, square_pixels(torch.from_numpy(tiles), 128))
    embeddings, resized = sam2.embed(tiles)
    levels = embeddings["image_embeddings"]
    assert len(levels) == 3 and [lvl.shape[-1] for lvl in levels] == [32, 16, 8]  # 1/4, 1/8, 1/16 of the input
    prompt = ComponentPrompt(np.array([[45.0, 30.0]], np.float32), np.array([1]), None, 1)
    logits = sam2.predict_masks(embeddings, [[prompt], []], (60, 90), resized)
    assert [tuple(x.shape) for x in logits] == [(60, 90), (60, 90)] and not logits[1].any()  # no prompt, no water
