"""Batched, differentiable decoding equals the segment pipeline's SamPredictor, prompt for prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samgeo_pipeline.finetune.decode import decode_components, merge_components, native_prediction
from samgeo_pipeline.finetune.samples import collate, lowres_target
from samgeo_pipeline.sam.decode import prompt_rows
from samgeo_pipeline.sam.geometry import resized_shape, upsample_masks
from samgeo_pipeline.sam.predictor import SamPredictor
from samgeo_pipeline.water.prompts import component_prompts
from tests.finetune_data import disc, rgbn
from tests.tiny_sam import tiny_sam

IMAGE_SIZE = 128


@pytest.fixture(scope="module")
def predictor() -> SamPredictor:
    return SamPredictor(tiny_sam(IMAGE_SIZE), torch.device("cpu"))


def scene(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb, mask)``: two water discs in a non-square image."""
    mask = disc(shape, (shape[0] * 0.3, shape[1] * 0.3), shape[0] * 0.2)
    mask |= disc(shape, (shape[0] * 0.7, shape[1] * 0.75), shape[0] * 0.15)
    return np.moveaxis(rgbn(mask, seed)[:3], 0, -1).copy(), mask


def item(prompts, merge: str, shape: tuple[int, int], position: int = 0) -> dict:
    resized = resized_shape(shape, IMAGE_SIZE)
    target, weight = lowres_target(np.zeros(shape, bool), np.ones(shape, bool), resized, IMAGE_SIZE, IMAGE_SIZE // 4)
    return {"position": position, "rows": prompt_rows(prompts, merge, shape, resized), "target": target,
            "weight": weight, "shape": shape, "resized": resized}  # fmt: skip


@pytest.mark.parametrize(("kind", "merge"), [("points", "joint"), ("points", "mean"), ("points", "best"), ("box", "joint")])
def test_matches_predictor(predictor: SamPredictor, kind: str, merge: str) -> None:
    shapes = [(96, 64), (80, 120)]
    embeddings, items, expected = [], [], []
    for i, shape in enumerate(shapes):
        rgb, mask = scene(shape, i)
        rng = np.random.default_rng(i)
        prompts = component_prompts(mask, np.ones(shape, bool), kind=kind, n_points=3, n_negatives=1 if i else 0,
                                    erosion=None, box_jitter=3, max_components=8, rng=rng)  # fmt: skip
        prompts = prompts[: i + 1]  # one component in the first image, two in the second: padding
        emb, resized = predictor.embed(rgb[None])
        expected.append(predictor.predict_logits(emb, prompts, shape, resized, merge))
        embeddings.append(emb)
        items.append(item(prompts, merge, shape, i))
    batch = collate(items)
    with torch.no_grad():
        components, present = decode_components(predictor.model, torch.cat(embeddings), batch, merge)
    assert present.sum(1).tolist() == [1, 2]
    for b, shape in enumerate(shapes):
        logits = upsample_masks(components[b][present[b]], shape, batch.resized[b], IMAGE_SIZE).max(0).values
        np.testing.assert_allclose(logits.numpy(), expected[b], atol=1e-4)
        pred = native_prediction(components[b], present[b], shape, batch.resized[b], IMAGE_SIZE)
        assert (pred.numpy() != (expected[b] > 0)).sum() <= 2  # ties at 0 aside


def test_gradients_reach_the_decoder_only(predictor: SamPredictor) -> None:
    from samgeo_pipeline.finetune.train import freeze_for_finetuning

    model = tiny_sam(IMAGE_SIZE)
    trainable = freeze_for_finetuning(model, train_prompt_encoder=False)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("mask_decoder.") for n in names)
    rgb, mask = scene((64, 64), 0)
    prompts = component_prompts(mask, np.ones((64, 64), bool), kind="points", n_points=2, n_negatives=0, erosion=None,
                                box_jitter=0, max_components=2, rng=np.random.default_rng(0))  # fmt: skip
    batch = collate([item(prompts, "joint", (64, 64))])
    embedding = torch.randn(1, 32, IMAGE_SIZE // 16, IMAGE_SIZE // 16)
    merge_components(decode_components(model, embedding, batch, "joint")[0]).sum().backward()
    # Mask decoder weights used with multimask_output=False get gradients; frozen parts none at all.
    assert any(p.grad is not None for p in trainable)
    assert model.mask_decoder.upscale_conv1.weight.grad is not None
    assert all(p.grad is None for p in model.vision_encoder.parameters())
    assert all(p.grad is None for p in model.prompt_encoder.parameters())
    with_prompt = freeze_for_finetuning(model, train_prompt_encoder=True)
    assert len(with_prompt) > len(trainable)
